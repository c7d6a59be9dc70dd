import { createHash } from "node:crypto";
import { ethers } from "ethers";

/**
 * How an enclave image is named on chain: `keccak256(PCR0 || PCR1 || PCR2)` for AWS Nitro Enclaves (the
 * enclave image file, the kernel and boot ramdisk, the application: 48 bytes each, SHA-384). The
 * EnclaveRegistry stores only this 32-byte value; the attestation document carries the PCRs it is computed
 * from, so anyone re-checking a document recomputes it.
 */
export function nitroMeasurement(pcrs: { 0: Uint8Array; 1: Uint8Array; 2: Uint8Array }): string {
  for (const i of [0, 1, 2] as const) {
    if (pcrs[i].length !== 48) throw new Error(`PCR${i} must be 48 bytes (SHA-384), got ${pcrs[i].length}`);
  }
  return ethers.keccak256(ethers.concat([pcrs[0], pcrs[1], pcrs[2]]));
}

/**
 * The development enclave: no hardware, the signing key lives in the node process. Its "PCRs" are fixed
 * SHA-384 values of a label, so its measurement is a well-known constant that only local chains approve
 * (the deploy script does so on chain ids 31337 and 1337). A development attestation is never evidence of
 * anything: `opg tee check-key` reports it as such.
 */
export const DEV_ENCLAVE_PCRS = {
  0: createHash("sha384").update("opg development enclave: PCR0").digest(),
  1: createHash("sha384").update("opg development enclave: PCR1").digest(),
  2: createHash("sha384").update("opg development enclave: PCR2").digest(),
} as const;

/** The measurement of the development enclave (`nitroMeasurement(DEV_ENCLAVE_PCRS)`). */
export const DEV_ENCLAVE_MEASUREMENT = nitroMeasurement(DEV_ENCLAVE_PCRS);

/** The measurement of PCR0-2 given as hex (with or without 0x), e.g. from `nitro-cli describe-eif`. */
export function measurementFromHex(pcr0: string, pcr1: string, pcr2: string): string {
  const bytes = (s: string, i: number): Uint8Array => {
    const h = s.trim().replace(/^0x/i, "");
    if (!/^[0-9a-fA-F]*$/.test(h) || h.length !== 96) {
      throw new Error(`PCR${i} must be 48 bytes (96 hex digits), got ${JSON.stringify(s)}`);
    }
    return Buffer.from(h, "hex");
  };
  return nitroMeasurement({ 0: bytes(pcr0, 0), 1: bytes(pcr1, 1), 2: bytes(pcr2, 2) });
}
