import { keccak256, solidityPacked } from "ethers";
import { fail } from "./errors";

/** A Groth16 verification key as snarkjs writes it (verification_key.json). */
export interface SnarkjsVerificationKey {
  protocol?: string;
  curve?: string;
  nPublic: number;
  vk_alpha_1: string[];
  vk_beta_2: string[][];
  vk_gamma_2: string[][];
  vk_delta_2: string[][];
  IC: string[][];
}

/**
 * The key as the ModelRegistry stores it and the protocol's Groth16 verifier (contracts/libraries/Groth16.sol)
 * reads it: alpha1 (x, y), beta2, gamma2, delta2 (each x_imag, x_real, y_imag, y_real: the EIP-197 pairing
 * order), then IC[0..nPublic] (x, y each). 14 + 2 * (nPublic + 1) words.
 */
export function verificationKeyWords(vk: SnarkjsVerificationKey): bigint[] {
  if (vk.protocol !== undefined && vk.protocol !== "groth16") {
    fail("BAD_INPUT", `verification key protocol is ${vk.protocol}, expected groth16`);
  }
  if (vk.curve !== undefined && vk.curve !== "bn128") {
    fail("BAD_INPUT", `verification key curve is ${vk.curve}, expected bn128`);
  }
  if (!Array.isArray(vk.IC) || vk.IC.length !== vk.nPublic + 1) {
    fail("BAD_INPUT", `verification key has ${vk.IC?.length} IC points for ${vk.nPublic} public signals`);
  }
  const g1 = (p: string[]) => [BigInt(p[0]), BigInt(p[1])];
  const g2 = (p: string[][]) => [BigInt(p[0][1]), BigInt(p[0][0]), BigInt(p[1][1]), BigInt(p[1][0])];
  return [
    ...g1(vk.vk_alpha_1),
    ...g2(vk.vk_beta_2),
    ...g2(vk.vk_gamma_2),
    ...g2(vk.vk_delta_2),
    ...vk.IC.flatMap(g1),
  ];
}

/**
 * The snarkjs form of a key in the registry's word order (the inverse of verificationKeyWords): G2
 * coordinates are stored imaginary part first, snarkjs writes them real part first. Used by the verification
 * node's audit (workers/runtime/audit.ts) and the explorer page (explorer/src/checks/zk.ts).
 */
export function snarkjsKeyFromWords(words: readonly bigint[]): SnarkjsVerificationKey {
  const w = words.map(String);
  const g1 = (i: number) => [w[i], w[i + 1], "1"];
  const g2 = (i: number) => [
    [w[i + 1], w[i]],
    [w[i + 3], w[i + 2]],
    ["1", "0"],
  ];
  const ic: string[][] = [];
  for (let i = 14; i + 1 < w.length; i += 2) ic.push(g1(i));
  return {
    protocol: "groth16",
    curve: "bn128",
    nPublic: ic.length - 1,
    vk_alpha_1: g1(0),
    vk_beta_2: g2(2),
    vk_gamma_2: g2(6),
    vk_delta_2: g2(10),
    IC: ic,
  };
}

/** The 8 proof words of the calldata as snarkjs's proof: pi_b's coordinates come imaginary part first. */
export function snarkjsProof(words: readonly bigint[]) {
  const p = words.map(String);
  return {
    pi_a: [p[0], p[1], "1"],
    pi_b: [
      [p[3], p[2]],
      [p[5], p[4]],
      ["1", "0"],
    ],
    pi_c: [p[6], p[7], "1"],
    protocol: "groth16",
    curve: "bn128",
  };
}

/** keccak256 of the packed key words: the `verificationKeyHash` the ModelRegistry records. */
export function verificationKeyHash(words: readonly bigint[]): string {
  return keccak256(
    solidityPacked(
      words.map(() => "uint256"),
      words,
    ),
  );
}
