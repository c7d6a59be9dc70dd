// A strict decoder and encoder for the subset of CBOR (RFC 8949) that COSE_Sign1 (RFC 9052) and the AWS Nitro
// Enclaves attestation document use: unsigned and negative integers, byte and text strings, arrays, maps,
// tags, false/true/null/undefined. Everything else is refused with a CborError that names the byte offset:
// floats, other simple values, indefinite lengths, map keys that are not integers or text, duplicate map
// keys, invalid UTF-8, trailing bytes, and nesting deeper than MAX_DEPTH. The input is untrusted (anyone can
// hand a node a document), so every length is checked against the bytes that are left before anything is
// allocated. Signatures are checked over the bytes as received, never over a re-encoding, so the decoder
// does not insist on the shortest encoding of arguments.

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

const SIMPLE_FALSE = 20;
const SIMPLE_TRUE = 21;
const SIMPLE_NULL = 22;
const SIMPLE_UNDEFINED = 23;

const UTF8 = new TextDecoder("utf-8", { fatal: true });

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
    if (info === 31) throw new CborError("indefinite-length items are not supported", start);
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

function readItem(r: Reader, depth: number): CborValue {
  if (depth > MAX_DEPTH) throw new CborError(`nesting deeper than ${MAX_DEPTH}`, r.pos);
  const start = r.pos;
  const initial = r.byte("an item");
  const major = initial >> 5;
  const info = initial & 0x1f;
  switch (major) {
    case MAJOR_UNSIGNED:
      return r.argument(info, start);
    case MAJOR_NEGATIVE: {
      const n = r.argument(info, start);
      return typeof n === "bigint" || n === Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
    }
    case MAJOR_BYTES: {
      const n = r.length(info, start, "byte string");
      return new Uint8Array(r.take(n, "a byte string")); // a copy, also when the input is a Buffer
    }
    case MAJOR_TEXT: {
      const n = r.length(info, start, "text string");
      try {
        return UTF8.decode(r.take(n, "a text string"));
      } catch {
        throw new CborError("text string is not valid UTF-8", start);
      }
    }
    case MAJOR_ARRAY: {
      const n = r.length(info, start, "array");
      const out: CborValue[] = [];
      for (let i = 0; i < n; i++) out.push(readItem(r, depth + 1));
      return out;
    }
    case MAJOR_MAP: {
      const n = r.length(info, start, "map");
      const out = new Map<CborKey, CborValue>();
      for (let i = 0; i < n; i++) {
        const keyAt = r.pos;
        const key = readItem(r, depth + 1);
        if (typeof key !== "number" && typeof key !== "bigint" && typeof key !== "string") {
          throw new CborError(`map key of type ${describeCbor(key)} is not supported`, keyAt);
        }
        if (out.has(key)) throw new CborError(`duplicate map key ${JSON.stringify(String(key))}`, keyAt);
        out.set(key, readItem(r, depth + 1));
      }
      return out;
    }
    case MAJOR_TAG: {
      const tag = r.argument(info, start);
      if (typeof tag === "bigint") throw new CborError(`tag number ${tag} is too large`, start);
      return new CborTag(tag, readItem(r, depth + 1));
    }
    default: {
      // MAJOR_SIMPLE: the four simple values; floats and other simple values are outside the subset.
      if (major !== MAJOR_SIMPLE) throw new CborError(`unknown major type ${major}`, start);
      if (info === SIMPLE_FALSE) return false;
      if (info === SIMPLE_TRUE) return true;
      if (info === SIMPLE_NULL) return null;
      if (info === SIMPLE_UNDEFINED) return undefined;
      if (info >= 25 && info <= 27) throw new CborError("floating-point values are not supported", start);
      if (info === 31) throw new CborError("unexpected break code", start);
      throw new CborError(`simple value ${info} is not supported`, start);
    }
  }
}

/**
 * Decodes exactly one CBOR item that spans all of `bytes`. Byte strings are copied out, so the result does
 * not alias the input. Throws CborError on anything outside the supported subset or on trailing bytes.
 */
export function decodeCbor(bytes: Uint8Array): CborValue {
  const r = new Reader(bytes);
  if (bytes.length === 0) throw new CborError("empty input", 0);
  const value = readItem(r, 0);
  if (r.left() !== 0) throw new CborError(`${r.left()} trailing bytes after the item`, r.pos);
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
