import { AbiCoder, getAddress, id as keccakUtf8, keccak256, recoverAddress } from "ethers";
import { KEY_STANDINGS } from "../../../tee/standings";
import { taskBinding } from "../../../zkml/binding";
import type { Ctx } from "../ctx";
import { short, time } from "../format";
import type { ChainEvent, ModelRow, TaskRow } from "../types";
import { errorText, type Check } from "./types";
import { wordsHash } from "./zk";

/**
 * The development enclave's measurement (tee/measurement.ts DEV_ENCLAVE_MEASUREMENT: keccak256 of three
 * SHA-384 label hashes), copied because that module needs node:crypto. Only local chains approve it.
 */
export const DEV_ENCLAVE_MEASUREMENT = "0x4b9a8b338f44a2e245ce54ac89ba2d0a4faf4b034f571d313c4239421a0e9932";

/** TaskRegistry.teeResultDigest, computed here. */
export function teeResultDigest(
  chainId: number,
  registry: string,
  taskId: bigint,
  node: string,
  inputHash: string,
  onnxHash: string,
  outputs: readonly bigint[],
): string {
  return keccak256(
    AbiCoder.defaultAbiCoder().encode(
      ["bytes32", "uint256", "bytes32", "bytes32", "bytes32"],
      [
        keccakUtf8("opg.task.tee-result"),
        taskBinding(chainId, registry, taskId, node),
        inputHash,
        onnxHash,
        wordsHash(outputs),
      ],
    ),
  );
}

/** `enclave-signature`: the calldata's signature over the digest recovers to the key the registry recorded. */
export async function enclaveSignatureCheck(
  ctx: Ctx,
  row: TaskRow,
  model: ModelRow | undefined,
  node: string,
  outputs: bigint[],
  signature: string,
): Promise<Check> {
  const base = {
    id: "enclave-signature",
    title: "Enclave signature recovers to the recorded key",
    trusted: "the model's onnxHash as the registry serves it (onnxHashOf)",
  };
  const signed = row.events.find((e) => e.name === "TaskEnclaveSigned");
  if (!signed) return { ...base, status: "fail", message: "no TaskEnclaveSigned log for this task" };
  const key = getAddress(signed.args.key as string);
  let onnxHash = model?.onnxHash;
  try {
    onnxHash = (await ctx.store.contracts.models.onnxHashOf(row.modelId)) as string;
  } catch {
    // the ModelRegistered log's onnxHash stands in
  }
  if (!onnxHash) return { ...base, status: "fail", message: "the model's onnxHash is unknown" };
  const digest = teeResultDigest(
    ctx.snap.chainId,
    ctx.config.contracts.tasks,
    row.id,
    node,
    row.task.inputHash,
    onnxHash,
    outputs,
  );
  const details: [string, string][] = [
    ["digest (computed here)", digest],
    ["TaskEnclaveSigned key", key],
  ];
  const problems: string[] = [];
  try {
    const onChain = (await ctx.store.contracts.tasks.teeResultDigest(
      row.id,
      node,
      row.task.inputHash,
      onnxHash,
      outputs,
    )) as string;
    if (onChain.toLowerCase() !== digest.toLowerCase()) {
      problems.push(`digest mismatch: computed here ${digest}, registry's teeResultDigest ${onChain}`);
    }
  } catch {
    // a registry without the view: the digest computed here stands
  }
  let recovered: string | undefined;
  try {
    // The registry recovers over the raw digest (EnclaveRegistry.signerStatus: ECDSA.tryRecover), no EIP-191 prefix.
    recovered = recoverAddress(digest, signature);
    details.push(["recovered signer", recovered]);
  } catch (e) {
    problems.push(`the calldata's signature does not recover: ${errorText(e)}`);
  }
  if (recovered && recovered !== key)
    problems.push(`the signature recovers to ${recovered}, not the recorded key ${key}`);
  if (problems.length > 0) return { ...base, status: "fail", details, message: problems.join("; ") };
  return {
    ...base,
    status: "pass",
    details,
    proved:
      "the signature in the submitResultTee calldata, over teeResultDigest (domain tag, the binding of chain, " +
      "registry, task and node, inputHash, onnxHash, the outputs' hash) computed here, recovers to the key the " +
      "registry recorded: this enclave key signed these outputs for this input and model",
  };
}

/** `key-standing`: the key's registration, node, measurement and standing, and what they mean. */
export async function keyStandingCheck(ctx: Ctx, row: TaskRow, node: string): Promise<Check> {
  const base = {
    id: "key-standing",
    title: "Enclave key registration and standing",
    trusted:
      "the attestation document behind the key: it is checked off chain by `opg tee check-key`, not here " +
      "(the page does not verify Nitro certificate chains), and the hardware vendor behind it",
  };
  const signed = row.events.find((e) => e.name === "TaskEnclaveSigned");
  if (!signed) return { ...base, status: "fail", message: "no TaskEnclaveSigned log for this task" };
  const key = getAddress(signed.args.key as string);
  const ofKey = (e: ChainEvent) => typeof e.args.key === "string" && getAddress(e.args.key) === key;
  const events = ctx.snap.enclaveEvents.filter(ofKey);
  const reg = events.find((e) => e.name === "EnclaveKeyRegistered");
  const details: [string, string][] = [["key", key]];
  const problems: string[] = [];
  const warnings: string[] = [];
  let development = false;
  if (!reg) problems.push(`no EnclaveKeyRegistered log found for key ${key}`);
  else {
    const measurement = String(reg.args.measurement);
    development = measurement.toLowerCase() === DEV_ENCLAVE_MEASUREMENT;
    details.push(
      ["registered", `block ${reg.block} by node ${reg.args.node as string}`],
      ["measurement", `${measurement}${development ? " (the DEVELOPMENT enclave)" : ""}`],
      ["active", `${time(Number(reg.args.activeFrom))} to ${time(Number(reg.args.expiresAt))}`],
    );
    if (getAddress(reg.args.node as string) !== getAddress(node)) {
      problems.push(
        `the key is registered to node ${reg.args.node as string}, the task was settled by ${node}`,
      );
    }
  }
  for (const e of events) {
    if (e.name === "EnclaveKeyChallengeResolved" && e.args.documentValid === false) {
      problems.push(`governance judged the key's attestation document INVALID at block ${e.block}`);
    }
    if (e.name === "EnclaveKeyRevoked") warnings.push(`revoked at block ${e.block}`);
    if (e.name === "EnclaveKeyChallenged")
      warnings.push(`challenged at block ${e.block}: ${String(e.args.reason)}`);
  }
  try {
    const enclaves = ctx.store.contracts.enclaves;
    if (!enclaves) throw new Error("the deployment has no enclave registry");
    if (row.settledBlock !== undefined) {
      try {
        const [, then] = (await enclaves.keyStatus(key, { blockTag: row.settledBlock })) as [string, bigint];
        const at = KEY_STANDINGS[Number(then)] ?? `standing ${then}`;
        details.push(["standing at settlement", at]);
        if (at !== "Active")
          problems.push(`the key was ${at}, not Active, at the settlement block ${row.settledBlock}`);
      } catch {
        details.push(["standing at settlement", "not read: this RPC serves no state that old"]);
      }
    }
    const [, st] = (await enclaves.keyStatus(key)) as [string, bigint];
    const standing = KEY_STANDINGS[Number(st)] ?? `standing ${st}`;
    details.push(["standing now", standing]);
    if (standing === "Revoked")
      warnings.push("the key is REVOKED now (it was Active when the result settled)");
    else if (standing === "Challenged")
      warnings.push("the key is CHALLENGED now: its document is under review");
    else if (standing === "MeasurementWithdrawn") warnings.push("its measurement is no longer approved");
  } catch (e) {
    details.push(["standing now", `not read: ${errorText(e)}`]);
  }
  if (problems.length > 0)
    return { ...base, status: "fail", details, message: [...problems, ...warnings].join("; ") };
  const meaning = development
    ? "DEVELOPMENT enclave: its key lives in the node's process and its attestation is signed by nobody; " +
      "the signature proves nothing about how the output was computed"
    : "an approved enclave measurement: the output is as good as the enclave image and the hardware vendor's " +
      `attestation (check it with: opg tee check-key ${key})`;
  return {
    ...base,
    status: "trust",
    details,
    proved:
      `the key was registered to the settling node ${short(node, 4)} (EnclaveKeyRegistered)` +
      (details.some(([k, v]) => k === "standing at settlement" && v === "Active")
        ? " and was Active at the settlement block"
        : ""),
    message: [meaning, ...warnings].join("; "),
  };
}
