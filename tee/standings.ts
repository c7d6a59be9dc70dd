// Enclave key standings as IEnclaveRegistry.KeyStanding numbers them. A pure module (no node:* imports): the
// explorer page imports it as well as the node's code.

/** `IEnclaveRegistry.KeyStanding` by index. */
export const KEY_STANDINGS = [
  "Unknown",
  "Pending",
  "Active",
  "Challenged",
  "Revoked",
  "Expired",
  "MeasurementWithdrawn",
] as const;
export type KeyStandingName = (typeof KEY_STANDINGS)[number];

/** The name of standing `n`; "Unknown" for a number outside the enum. */
export function standingName(n: bigint | number): KeyStandingName {
  return KEY_STANDINGS[Number(n)] ?? "Unknown";
}
