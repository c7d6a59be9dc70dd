/** The BN254 scalar field modulus r: every public signal must be below it. */
export const SNARK_SCALAR_FIELD =
  21888242871839275222246405745257275088548364400416034343698204186575808495617n;

/** The field element representing a signed integer (negative values wrap to r - |v|). */
export function toField(v: bigint): bigint {
  const m = v % SNARK_SCALAR_FIELD;
  return m < 0n ? m + SNARK_SCALAR_FIELD : m;
}

/** The signed integer a field element represents (elements above r/2 are negative). */
export function fromField(v: bigint): bigint {
  return v > SNARK_SCALAR_FIELD / 2n ? v - SNARK_SCALAR_FIELD : v;
}
