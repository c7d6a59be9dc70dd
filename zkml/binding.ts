import { AbiCoder, keccak256 } from "ethers";
import { SNARK_SCALAR_FIELD } from "./field";

/**
 * The task binding public signal: uint256(keccak256(abi.encode(uint256 chainId, address registry,
 * uint256 taskId, address node))) mod r. The TaskRegistry computes the same value on-chain, so a proof is
 * valid for one (chain, registry, task, node) only.
 */
export function taskBinding(
  chainId: bigint | number,
  registry: string,
  taskId: bigint | number,
  node: string,
): bigint {
  const encoded = AbiCoder.defaultAbiCoder().encode(
    ["uint256", "address", "uint256", "address"],
    [BigInt(chainId), registry, BigInt(taskId), node],
  );
  return BigInt(keccak256(encoded)) % SNARK_SCALAR_FIELD;
}
