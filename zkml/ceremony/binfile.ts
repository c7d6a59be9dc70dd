import fs from "node:fs";
import { fail } from "../errors";

/**
 * Reader for the section table of snarkjs's binary files (ptau, zkey): a 4-byte magic, a u32 version, a
 * u32 section count, then per section a u32 type, a u64 size and the data. Sections are read on demand
 * by offset, so a multi-gigabyte ceremony file is never loaded whole.
 */
export interface BinSection {
  type: number;
  offset: number;
  size: number;
}

export class BinFile {
  readonly sections: BinSection[] = [];
  private readonly fd: number;

  private constructor(
    readonly file: string,
    readonly kind: string,
  ) {
    this.fd = fs.openSync(file, "r");
  }

  /** Opens `file` and reads its section table; a wrong magic or a truncated table is a CEREMONY error. */
  static open(file: string, magic: "ptau" | "zkey"): BinFile {
    let f: BinFile;
    try {
      f = new BinFile(file, magic);
    } catch (e) {
      fail("CEREMONY", `cannot open ${file}: ${(e as Error).message}`);
    }
    try {
      f.readTable(magic);
    } catch (e) {
      f.close();
      throw e;
    }
    return f;
  }

  private readTable(magic: string): void {
    const size = fs.fstatSync(this.fd).size;
    const head = this.read(0, 12, "file header");
    if (head.toString("latin1", 0, 4) !== magic) {
      fail("CEREMONY", `${this.file} is not a ${magic} file (its first bytes are not '${magic}')`);
    }
    const n = head.readUInt32LE(8);
    let pos = 12;
    for (let i = 0; i < n; i++) {
      const h = this.read(pos, 12, "section table");
      const s = { type: h.readUInt32LE(0), offset: pos + 12, size: Number(h.readBigUInt64LE(4)) };
      if (s.offset + s.size > size) {
        fail("CEREMONY", `${this.file} is truncated: section ${s.type} runs past the end of the file`);
      }
      this.sections.push(s);
      pos = s.offset + s.size;
    }
  }

  section(type: number): BinSection | undefined {
    return this.sections.find((s) => s.type === type);
  }

  /** Exactly `length` bytes at `offset`, or a CEREMONY error naming what was being read. */
  read(offset: number, length: number, what: string): Buffer {
    const b = Buffer.alloc(length);
    const got = fs.readSync(this.fd, b, 0, length, offset);
    if (got !== length) fail("CEREMONY", `${this.file} is truncated (reading its ${what})`);
    return b;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * The optional parameters snarkjs appends to a contribution record (ptau and zkey alike): a u32 byte
 * length, then tagged fields in increasing tag order: 1 name, 2 beacon iterations exponent, 3 beacon hash.
 */
export function readContributionParams(
  f: BinFile,
  offset: number,
): { next: number; name: string; iterationsExp?: number; beaconHash?: string } {
  const len = f.read(offset, 4, "contribution parameters").readUInt32LE(0);
  const p = f.read(offset + 4, len, "contribution parameters");
  let name = "";
  let iterationsExp: number | undefined;
  let beaconHash: string | undefined;
  let i = 0;
  while (i < len) {
    const tag = p[i++];
    if (tag === 1) {
      name = p.toString("utf8", i + 1, i + 1 + p[i]);
      i += 1 + p[i];
    } else if (tag === 2) {
      iterationsExp = p[i++];
    } else if (tag === 3) {
      beaconHash = p.toString("hex", i + 1, i + 1 + p[i]);
      i += 1 + p[i];
    } else {
      fail("CEREMONY", `${f.file}: unknown contribution parameter ${tag}`);
    }
  }
  return { next: offset + 4 + len, name, iterationsExp, beaconHash };
}
