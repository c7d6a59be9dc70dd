// Trusted execution environment attestation: verification of enclave attestation documents off chain.
export * from "./nitro";
export { CborError, CborTag, decodeCbor, encodeCbor } from "./cbor";
export type { CborKey, CborValue } from "./cbor";
export * from "./measurement";
export * from "./dev-enclave";
export * from "./check-key";
