/**
 * Every failure a user can cause (a bad file, an unsupported op, an input out of range) is a ZkmlError with
 * a message that names the problem; the CLI prints the message alone, never a stack trace.
 */
export type ZkmlErrorCode =
  | "MALFORMED_MODEL"
  | "UNSUPPORTED_OP"
  | "UNSUPPORTED_ATTRIBUTE"
  | "DYNAMIC_SHAPE"
  | "BAD_INPUT"
  | "OUT_OF_RANGE"
  | "TOOLCHAIN"
  | "BUNDLE"
  | "CEREMONY"
  | "VERIFY_FAILED";

export class ZkmlError extends Error {
  readonly code: ZkmlErrorCode;

  constructor(code: ZkmlErrorCode, message: string) {
    super(message);
    this.name = "ZkmlError";
    this.code = code;
  }
}

export function fail(code: ZkmlErrorCode, message: string): never {
  throw new ZkmlError(code, message);
}
