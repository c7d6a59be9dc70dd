// Trusted execution environment attestation: verification of enclave attestation documents off chain.
export * from "./nitro";
export * from "./binding";
export { CborError, CborTag, decodeCbor, decodeCborPrefix, encodeCbor, readCborHead } from "./cbor";
export type { CborHead, CborKey, CborValue } from "./cbor";
export * from "./measurement";
export * from "./dev-enclave";
export * from "./check-key";
