// A strict decoder and encoder for the subset of CBOR (RFC 8949) that COSE_Sign1 (RFC 9052) and the AWS Nitro
// Enclaves attestation document use: unsigned and negative integers, byte and text strings, arrays, maps,
// tags, false/true/null/undefined. Arrays, maps and strings may have definite or indefinite length (the Nitro
// Security Module writes the payload map as `0xbf ... 0xff` since 2025); an indefinite-length string is a
// sequence of definite-length chunks of its own major type (RFC 8949 section 3.2.3). Everything else is refused
// with a CborError that names the byte offset: floats, other simple values, a break code outside an
// indefinite-length item, an indefinite-length item without its break code, nested indefinite-length string
// chunks, map keys that are not integers or text, duplicate map keys, invalid UTF-8, trailing bytes, and
// nesting deeper than MAX_DEPTH. The input is untrusted (anyone can hand a node a document), so every length is
// checked against the bytes that are left before anything is allocated, and an indefinite-length item claims
// no length at all: what it holds is read item by item. Signatures are checked over the bytes as received,
// never over a re-encoding, so the decoder does not insist on the shortest encoding of arguments; a caller
// that needs one canonical form (tee/nitro.ts, for the unsigned outer COSE structure) reads the heads with
// readCborHead, which says whether each one is in its shortest form.

/** A decoded CBOR tag: `tag` is the tag number, `value` the item it wraps. */
export class CborTag {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {}
}

/** Map keys are restricted to the primitive types a JavaScript Map compares by value. */
export type CborKey = number | bigint | string;

export type CborValue =
  | number
  | bigint
  | string
  | Uint8Array
  | boolean
  | null
  | undefined
  | CborValue[]
  | Map<CborKey, CborValue>
  | CborTag;

export class CborError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (at byte ${offset})`);
    this.name = "CborError";
  }
}

/** Deep enough for any COSE or Nitro structure (which nest at most 3 levels), shallow enough for the stack. */
export const MAX_DEPTH = 16;

const MAJOR_UNSIGNED = 0;
const MAJOR_NEGATIVE = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
const MAJOR_SIMPLE = 7;

/** Additional information 31: an indefinite length (major types 2-5), or the break code (major type 7). */
const INFO_INDEFINITE = 31;
/** The break code that ends an indefinite-length item: major type 7, additional information 31. */
const BREAK = 0xff;

const SIMPLE_FALSE = 20;
const SIMPLE_TRUE = 21;
const SIMPLE_NULL = 22;
const SIMPLE_UNDEFINED = 23;

const UTF8 = new TextDecoder("utf-8", { fatal: true });

const MAJOR_NAMES = [
  "unsigned integer",
  "negative integer",
  "byte string",
  "text string",
  "array",
  "map",
  "tag",
];

/**
 * The head of one data item (RFC 8949 section 3): its major type, its argument (undefined for an indefinite
 * length), where it starts and where its head ends, and whether the argument is in its shortest form (an
 * argument below 24 in the initial byte, below 2^8 in one byte, below 2^16 in two, below 2^32 in four).
 */
export interface CborHead {
  major: number;
  /** The additional information (low 5 bits of the initial byte). */
  info: number;
  /** The argument: a value, length or count; undefined for an indefinite length. */
  argument: number | bigint | undefined;
  /** Offset of the initial byte. */
  start: number;
  /** Offset just after the head (the initial byte and its argument bytes). */
  end: number;
  /** False when the argument takes more bytes than it needs (e.g. length 5 written as 0x58 0x05). */
  shortest: boolean;
}

/** The smallest additional information that can carry `v`: v itself below 24, else 24..27 for 1..8 bytes. */
function shortestInfo(v: number | bigint): number {
  const b = BigInt(v);
  if (b < 24n) return Number(b);
  if (b <= 0xffn) return 24;
  if (b <= 0xffffn) return 25;
  if (b <= 0xffffffffn) return 26;
  return 27;
}

class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  left(): number {
    return this.bytes.length - this.pos;
  }

  need(n: number, what: string): void {
    if (n > this.left()) {
      throw new CborError(`truncated input: ${what} needs ${n} bytes, ${this.left()} left`, this.pos);
    }
  }

  byte(what: string): number {
    this.need(1, what);
    return this.bytes[this.pos++];
  }

  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Whether the next byte is the break code; an error naming the open item when the input ends first. */
  atBreak(what: string, start: number): boolean {
    if (this.left() === 0) {
      throw new CborError(
        `truncated input: the indefinite-length ${what} that starts at byte ${start} has no break code`,
        this.pos,
      );
    }
    if (this.bytes[this.pos] !== BREAK) return false;
    this.pos++;
    return true;
  }

  /** The argument of an initial byte: a value in 0..2^64-1, as a number when safe, else a bigint. */
  argument(info: number, start: number): number | bigint {
    if (info < 24) return info;
    if (info === 24) return this.byte("a 1-byte argument");
    if (info === 25) {
      const b = this.take(2, "a 2-byte argument");
      return (b[0] << 8) | b[1];
    }
    if (info === 26) {
      const b = this.take(4, "a 4-byte argument");
      return ((b[0] << 24) >>> 0) + ((b[1] << 16) | (b[2] << 8) | b[3]);
    }
    if (info === 27) {
      const b = this.take(8, "an 8-byte argument");
      let v = 0n;
      for (const x of b) v = (v << 8n) | BigInt(x);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    throw new CborError(`reserved additional information value ${info}`, start);
  }

  /** A length or count: must fit in the bytes that are left (each element takes at least one byte). */
  length(info: number, start: number, what: string): number {
    const n = this.argument(info, start);
    if (typeof n === "bigint" || n > this.left()) {
      throw new CborError(`${what} of length ${n} exceeds the ${this.left()} bytes left`, start);
    }
    return n;
  }
}

/**
 * Reads the head of the item at `pos` without reading what follows it. Throws CborError on a truncated head, a
 * reserved additional information value (28-30), or additional information 31 where RFC 8949 gives it no meaning
 * (major types 0, 1 and 6).
 */
export function readCborHead(bytes: Uint8Array, pos: number): CborHead {
  const r = new Reader(bytes);
  r.pos = pos;
  const initial = r.byte("an item");
  const major = initial >> 5;
  const info = initial & 0x1f;
  if (info === INFO_INDEFINITE) {
    if ((major >= MAJOR_BYTES && major <= MAJOR_MAP) || major === MAJOR_SIMPLE) {
      // An indefinite length (major types 2-5), or the break code (major type 7).
      return { major, info, argument: undefined, start: pos, end: r.pos, shortest: true };
    }
    throw new CborError(`a ${MAJOR_NAMES[major]} cannot have an indefinite length`, pos);
  }
  const argument = r.argument(info, pos);
  // Major type 7 carries simple values and floats, whose width is their type, not a length to minimise.
  const shortest = major === MAJOR_SIMPLE || info === shortestInfo(argument);
  return { major, info, argument, start: pos, end: r.pos, shortest };
}

/** The chunks of an indefinite-length byte or text string: definite-length strings of the same major type. */
function readChunks(
  r: Reader,
  major: number,
  start: number,
  depth: number,
): { at: number; bytes: Uint8Array }[] {
  const what = MAJOR_NAMES[major];
  const chunks: { at: number; bytes: Uint8Array }[] = [];
  while (!r.atBreak(what, start)) {
    if (depth + 1 > MAX_DEPTH) throw new CborError(`nesting deeper than ${MAX_DEPTH}`, r.pos);
    const at = r.pos;
    const initial = r.byte("a string chunk");
    const chunkMajor = initial >> 5;
    const info = initial & 0x1f;
    if (chunkMajor !== major) {
      const found = chunkMajor === MAJOR_SIMPLE ? "a simple value or float" : `a ${MAJOR_NAMES[chunkMajor]}`;
      throw new CborError(`a chunk of an indefinite-length ${what} must be a ${what}, found ${found}`, at);
    }
    if (info === INFO_INDEFINITE) {
      throw new CborError(
        `an indefinite-length ${what} cannot be a chunk of an indefinite-length ${what} (RFC 8949 section 3.2.3)`,
        at,
      );
    }
    const n = r.length(info, at, `${what} chunk`);
    chunks.push({ at, bytes: r.take(n, `a ${what} chunk`) });
  }
  return chunks;
}

function decodeText(bytes: Uint8Array, start: number): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new CborError("text string is not valid UTF-8", start);
  }
}

function readMapEntries(r: Reader, depth: number, out: Map<CborKey, CborValue>, keyAt: number): void {
  const key = readItem(r, depth + 1);
  if (typeof key !== "number" && typeof key !== "bigint" && typeof key !== "string") {
    throw new CborError(`map key of type ${describeCbor(key)} is not supported`, keyAt);
  }
  if (out.has(key)) throw new CborError(`duplicate map key ${JSON.stringify(String(key))}`, keyAt);
  if (r.left() > 0 && r.bytes[r.pos] === BREAK) {
    throw new CborError(
      `break code where the value of map key ${JSON.stringify(String(key))} belongs`,
      r.pos,
    );
  }
  out.set(key, readItem(r, depth + 1));
}

function readItem(r: Reader, depth: number): CborValue {
  if (depth > MAX_DEPTH) throw new CborError(`nesting deeper than ${MAX_DEPTH}`, r.pos);
  const start = r.pos;
  const initial = r.byte("an item");
  const major = initial >> 5;
  const info = initial & 0x1f;
  const indefinite = info === INFO_INDEFINITE;
  switch (major) {
    case MAJOR_UNSIGNED:
    case MAJOR_NEGATIVE:
    case MAJOR_TAG: {
      if (indefinite) throw new CborError(`a ${MAJOR_NAMES[major]} cannot have an indefinite length`, start);
      const n = r.argument(info, start);
      if (major === MAJOR_UNSIGNED) return n;
      if (major === MAJOR_NEGATIVE) {
        return typeof n === "bigint" || n === Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
      }
      if (typeof n === "bigint") throw new CborError(`tag number ${n} is too large`, start);
      return new CborTag(n, readItem(r, depth + 1));
    }
    case MAJOR_BYTES: {
      if (indefinite)
        return Uint8Array.from(Buffer.concat(readChunks(r, major, start, depth).map((c) => c.bytes)));
      const n = r.length(info, start, "byte string");
      return new Uint8Array(r.take(n, "a byte string")); // a copy, also when the input is a Buffer
    }
    case MAJOR_TEXT: {
      if (indefinite) {
        // Each chunk is a whole text string: RFC 8949 forbids splitting a UTF-8 character across chunks.
        return readChunks(r, major, start, depth)
          .map((c) => decodeText(c.bytes, c.at))
          .join("");
      }
      const n = r.length(info, start, "text string");
      return decodeText(r.take(n, "a text string"), start);
    }
    case MAJOR_ARRAY: {
      const out: CborValue[] = [];
      if (indefinite) {
        while (!r.atBreak("array", start)) out.push(readItem(r, depth + 1));
        return out;
      }
      const n = r.length(info, start, "array");
      for (let i = 0; i < n; i++) out.push(readItem(r, depth + 1));
      return out;
    }
    case MAJOR_MAP: {
      const out = new Map<CborKey, CborValue>();
      if (indefinite) {
        while (!r.atBreak("map", start)) readMapEntries(r, depth, out, r.pos);
        return out;
      }
      const n = r.length(info, start, "map");
      for (let i = 0; i < n; i++) readMapEntries(r, depth, out, r.pos);
      return out;
    }
    default: {
      // MAJOR_SIMPLE: the four simple values; floats and other simple values are outside the subset.
      if (info === SIMPLE_FALSE) return false;
      if (info === SIMPLE_TRUE) return true;
      if (info === SIMPLE_NULL) return null;
      if (info === SIMPLE_UNDEFINED) return undefined;
      if (info >= 25 && info <= 27) throw new CborError("floating-point values are not supported", start);
      if (info === INFO_INDEFINITE) {
        throw new CborError("unexpected break code: no indefinite-length item is open here", start);
      }
      throw new CborError(`simple value ${info} is not supported`, start);
    }
  }
}

/**
 * Decodes the one CBOR item that starts at byte 0 of `bytes` and returns it with the offset just after it
 * (bytes after it are left to the caller). Throws CborError on anything outside the supported subset.
 */
export function decodeCborPrefix(bytes: Uint8Array): { value: CborValue; end: number } {
  const r = new Reader(bytes);
  if (bytes.length === 0) throw new CborError("empty input", 0);
  const value = readItem(r, 0);
  return { value, end: r.pos };
}

/**
 * Decodes exactly one CBOR item that spans all of `bytes`. Byte strings are copied out, so the result does
 * not alias the input. Throws CborError on anything outside the supported subset or on trailing bytes.
 */
export function decodeCbor(bytes: Uint8Array): CborValue {
  const { value, end } = decodeCborPrefix(bytes);
  if (end !== bytes.length) throw new CborError(`${bytes.length - end} trailing bytes after the item`, end);
  return value;
}

/** A short human description of a decoded value's type, for error messages. */
export function describeCbor(v: CborValue): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined";
  if (v instanceof Uint8Array) return `byte string (${v.length} bytes)`;
  if (Array.isArray(v)) return `array of ${v.length}`;
  if (v instanceof Map) return `map of ${v.size}`;
  if (v instanceof CborTag) return `tag ${v.tag}`;
  if (typeof v === "string") return "text string";
  if (typeof v === "number" || typeof v === "bigint") return v < 0 ? "negative integer" : "unsigned integer";
  return typeof v;
}

function head(major: number, n: number | bigint): number[] {
  const v = BigInt(n);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`CBOR argument out of range: ${v}`);
  const m = major << 5;
  if (v < 24n) return [m | Number(v)];
  if (v <= 0xffn) return [m | 24, Number(v)];
  if (v <= 0xffffn) return [m | 25, Number(v >> 8n), Number(v & 0xffn)];
  const width = v <= 0xffffffffn ? 4 : 8;
  const out = [m | (width === 4 ? 26 : 27)];
  for (let i = width - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

function writeItem(v: CborValue, out: number[]): void {
  if (v === false) out.push((MAJOR_SIMPLE << 5) | SIMPLE_FALSE);
  else if (v === true) out.push((MAJOR_SIMPLE << 5) | SIMPLE_TRUE);
  else if (v === null) out.push((MAJOR_SIMPLE << 5) | SIMPLE_NULL);
  else if (v === undefined) out.push((MAJOR_SIMPLE << 5) | SIMPLE_UNDEFINED);
  else if (typeof v === "number" || typeof v === "bigint") {
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw new RangeError(`not an integer: ${v}`);
    const b = BigInt(v);
    out.push(...(b >= 0n ? head(MAJOR_UNSIGNED, b) : head(MAJOR_NEGATIVE, -1n - b)));
  } else if (typeof v === "string") {
    const bytes = new TextEncoder().encode(v);
    out.push(...head(MAJOR_TEXT, bytes.length));
    for (const x of bytes) out.push(x);
  } else if (v instanceof Uint8Array) {
    out.push(...head(MAJOR_BYTES, v.length));
    for (const x of v) out.push(x);
  } else if (Array.isArray(v)) {
    out.push(...head(MAJOR_ARRAY, v.length));
    for (const x of v) writeItem(x, out);
  } else if (v instanceof Map) {
    out.push(...head(MAJOR_MAP, v.size));
    for (const [k, x] of v) {
      writeItem(k, out);
      writeItem(x, out);
    }
  } else {
    out.push(...head(MAJOR_TAG, v.tag));
    writeItem(v.value, out);
  }
}

/**
 * Encodes a value with definite lengths and the shortest argument encoding (RFC 8949 preferred
 * serialization). Map entries are written in insertion order. Used for the COSE Sig_structure, which must
 * be encoded exactly so, and by tests to build documents.
 */
export function encodeCbor(v: CborValue): Uint8Array {
  const out: number[] = [];
  writeItem(v, out);
  return Uint8Array.from(out);
}
