import { keccak256, solidityPacked } from "ethers";
import { taskBinding } from "../../../zkml/binding";
import {
  snarkjsProof,
  verificationKeyHash,
  verificationKeyWords,
  type SnarkjsVerificationKey,
} from "../../../zkml/verification-key";
import type { Ctx } from "../ctx";
import { short } from "../format";
import type { ModelRow, TaskRow } from "../types";
import { jsonFile } from "./archive";
import type { LoadedBundle } from "./bundle";
import type { BatchPlace, Settlement } from "./settlement";
import { errorText, type Check } from "./types";

type ProofSettlement = Extract<Settlement, { via: "submitResult" | "challengeWithProof" }>;

/** Whom a proof is bound to: the node that settled (ZK), or the challenger whose disproof rejected. */
const proverRole = (s: ProofSettlement) => (s.via === "challengeWithProof" ? "challenger" : "node");

/** Packed keccak256 of uint256 words, as the contracts hash input and output word arrays. */
export const wordsHash = (ws: readonly bigint[]) =>
  keccak256(
    solidityPacked(
      ws.map(() => "uint256"),
      ws,
    ),
  );

/** zkml/verification-key.ts snarkjsKeyFromWords, re-exported for the page's checks. */
export { snarkjsKeyFromWords } from "../../../zkml/verification-key";

const hex = (w: bigint) => "0x" + w.toString(16);

/** The verification key as the data node's bundle holds it, or why it cannot be read. */
export function bundleKey(loaded: LoadedBundle | undefined): { vk?: SnarkjsVerificationKey; error?: string } {
  if (!loaded?.archive) return { error: loaded?.error ?? "the bundle could not be loaded" };
  const ref = loaded.archive.manifest.artifacts?.verificationKey;
  if (!ref)
    return { error: "the bundle's manifest names no verification key (a plain bundle has no circuit)" };
  try {
    return { vk: jsonFile(loaded.archive.files, ref.file) as SnarkjsVerificationKey };
  } catch (e) {
    return { error: errorText(e) };
  }
}

/** The verification key words the model registry stores on chain (verificationKeyOf). */
export async function onChainKeyWords(ctx: Ctx, modelId: bigint): Promise<bigint[]> {
  return [...((await ctx.store.contracts.models.verificationKeyOf(modelId)) as bigint[])].map((w) =>
    BigInt(w),
  );
}

/** `bundle-hash`: the data node's bundle is the one whose sha256 the registry records. */
export function bundleHashCheck(
  model: ModelRow,
  loaded: LoadedBundle | undefined,
  loadError?: string,
): Check {
  const base = {
    id: "bundle-hash",
    title: "Model bundle is the registered one",
    trusted: "the data node only to serve the bytes: a different bundle would hash differently and fail here",
  };
  if (!loaded) {
    return {
      ...base,
      status: "fail",
      message: `cannot fetch the bundle from the data node: ${loadError ?? "unknown error"}`,
    };
  }
  const want = model.bundleHash.replace(/^0x/, "").toLowerCase();
  const details: [string, string][] = [
    ["registry bundleHash", model.bundleHash],
    ["sha256 of the bytes served", "0x" + loaded.id],
    ["from", loaded.url],
    ["size", `${loaded.size.toLocaleString("en-US")} bytes`],
  ];
  if (loaded.id !== want) {
    return {
      ...base,
      status: "fail",
      details,
      message: `bundle hash mismatch: registry 0x${want}, data node's bytes 0x${loaded.id}`,
    };
  }
  if (!loaded.archive) {
    return { ...base, status: "fail", details, message: `the bundle archive is unreadable: ${loaded.error}` };
  }
  const a = loaded.archive;
  details.push(["files", a.entries.map((e) => e.name).join(", ")]);
  const onnx = a.manifest.onnx?.sha256;
  if (onnx && "0x" + onnx !== model.onnxHash.toLowerCase()) {
    return {
      ...base,
      status: "fail",
      details,
      message: `ONNX hash mismatch: registry ${model.onnxHash}, bundle manifest 0x${onnx}`,
    };
  }
  return {
    ...base,
    status: "pass",
    details,
    proved:
      `the ${a.entries.length} files the data node serves (sha256 computed here) hash to the registry's bundle ` +
      "hash, each file matches its sha256 in the archive header and manifest" +
      (onnx ? ", and the manifest's ONNX hash is the registry's onnxHash" : ""),
  };
}

/** `vk-hash`: the bundle's verification key hashes to the registry's verificationKeyHash. */
export async function vkHashCheck(
  ctx: Ctx,
  model: ModelRow,
  loaded: LoadedBundle | undefined,
): Promise<Check> {
  const base = {
    id: "vk-hash",
    title: "Verification key is the registered one",
    trusted:
      "the registry's hash from its ModelRegistered log and the key words from verificationKeyOf, both read " +
      "from the RPC",
  };
  const details: [string, string][] = [["registry verificationKeyHash", model.verificationKeyHash]];
  const problems: string[] = [];
  let dataHash: string | undefined;
  const { vk, error } = bundleKey(loaded);
  let dataWords: bigint[] | undefined;
  if (vk) {
    try {
      dataWords = verificationKeyWords(vk);
      dataHash = verificationKeyHash(dataWords);
      details.push(["data node key's hash", dataHash]);
      if (dataHash.toLowerCase() !== model.verificationKeyHash.toLowerCase()) {
        problems.push(
          `verification key hash mismatch: registry ${model.verificationKeyHash}, data node ${dataHash}`,
        );
      }
    } catch (e) {
      problems.push(`the data node's verification key is malformed: ${errorText(e)}`);
    }
  } else problems.push(`no verification key from the data node: ${error}`);
  // A second source: the words the registry stores, which its verifier uses.
  let chainNote = "";
  try {
    const words = await onChainKeyWords(ctx, model.id);
    if (words.length === 0) {
      problems.push(
        "the registry stores no verification key words for this model (verificationKeyOf is empty)",
      );
    } else {
      const chainHash = verificationKeyHash(words);
      details.push(["on-chain key words' hash (verificationKeyOf)", chainHash]);
      if (chainHash.toLowerCase() !== model.verificationKeyHash.toLowerCase()) {
        problems.push(
          `verification key hash mismatch: registry ${model.verificationKeyHash}, on-chain key words ${chainHash}`,
        );
      }
      if (dataWords && (dataWords.length !== words.length || dataWords.some((w, i) => w !== words[i]))) {
        const i = dataWords.findIndex((w, k) => w !== words[k]);
        problems.push(
          `the data node's key differs from the on-chain key words (word ${i < 0 ? words.length : i})`,
        );
      }
      chainNote =
        ", and equal to the key words the registry stores on chain (verificationKeyOf, a second source)";
    }
  } catch (e) {
    details.push(["on-chain key words", `not read: ${errorText(e)}`]);
  }
  if (problems.length > 0) return { ...base, status: "fail", details, message: problems.join("; ") };
  return {
    ...base,
    status: "pass",
    details,
    proved:
      "the bundle's verification_key.json, converted to the registry's word order and hashed here " +
      `(keccak256 of the packed words), equals the registry's verificationKeyHash${chainNote}`,
  };
}

/** The public signals a proof of `s` must have been made for: [...outputs, ...input, binding]. */
export interface SignalsResult {
  check: Check;
  signals?: bigint[];
}

/**
 * `public-signals`: the calldata's input is the committed one and the binding is this task's and `prover`'s
 * (the settling node, or the challenger of a disproof). `batch`: the task's place in a `submitResults` batch,
 * whose submission `s` is.
 */
export async function publicSignalsCheck(
  ctx: Ctx,
  row: TaskRow,
  prover: string,
  s: ProofSettlement,
  txHash: string,
  vk: SnarkjsVerificationKey | undefined,
  batch?: BatchPlace,
): Promise<SignalsResult> {
  const base = {
    id: "public-signals",
    title: "Public signals rebuilt from chain data",
    trusted: "the task's committed inputHash and TaskSubmitted input, as the RPC serves its logs",
  };
  const problems: string[] = [];
  const inputHash = wordsHash(s.input);
  const details: [string, string][] = [
    [
      "settled by",
      batch
        ? `submitResults in ${short(txHash, 8)}: a batch of ${batch.size}, this task's submission ` +
          `${batch.index + 1} of ${batch.size}`
        : `${s.via} in ${short(txHash, 8)}`,
    ],
    ["committed inputHash", row.task.inputHash],
    ["calldata input hash", inputHash],
  ];
  if (inputHash.toLowerCase() !== row.task.inputHash.toLowerCase()) {
    problems.push(`input hash mismatch: committed ${row.task.inputHash}, calldata input ${inputHash}`);
  }
  if (s.input.length !== row.input.length || s.input.some((w, i) => w !== BigInt(row.input[i]))) {
    const i = s.input.findIndex((w, k) => w !== BigInt(row.input[k] ?? -1n));
    problems.push(
      `the calldata input differs from the TaskSubmitted input at word ${i < 0 ? s.input.length : i}`,
    );
  }
  const role = proverRole(s);
  const binding = taskBinding(ctx.snap.chainId, ctx.config.contracts.tasks, row.id, prover);
  details.push([`binding (chain, registry, task, ${role})`, hex(binding)]);
  try {
    const onChain = BigInt(await ctx.store.contracts.tasks.taskBinding(row.id, prover));
    if (onChain !== binding) {
      problems.push(
        `binding mismatch: computed here ${hex(binding)}, registry's taskBinding ${hex(onChain)}`,
      );
    }
  } catch {
    // an older registry without the view: the binding computed here is what the proof must match
  }
  const signals = [...s.outputs, ...s.input, binding];
  details.push(["signals", `${s.outputs.length} output word(s), ${s.input.length} input word(s), 1 binding`]);
  if (vk && vk.nPublic !== signals.length) {
    problems.push(`${signals.length} public signals, but the verification key expects ${vk.nPublic}`);
  }
  if (s.proof.length !== 8) problems.push(`the proof has ${s.proof.length} words, not 8`);
  if (problems.length > 0)
    return { check: { ...base, status: "fail", details, message: problems.join("; ") }, signals };
  return {
    signals,
    check: {
      ...base,
      status: "pass",
      details,
      proved:
        "the settling calldata's input hashes to the committed inputHash and equals the TaskSubmitted input; " +
        `the binding of chain ${ctx.snap.chainId}, registry, task ${row.id} and ${role} ${short(prover, 4)} is ` +
        `computed here; signals = ${s.via === "challengeWithProof" ? "the proved outputs" : "outputs"}, input, binding`,
    },
  };
}

/** `groth16`: the proof verifies in this page with snarkjs. */
export async function groth16Check(
  vk: SnarkjsVerificationKey | undefined,
  keySource: string,
  signals: bigint[] | undefined,
  proofWords: bigint[],
  vkOk: boolean,
  role: "node" | "challenger" = "node",
): Promise<Check> {
  const base = {
    id: "groth16",
    title: "Groth16 proof verifies in this page",
    trusted: `the verification key: ${keySource}${vkOk ? "" : " (which FAILED the key check)"}`,
  };
  if (!vk) return { ...base, status: "fail", message: "no verification key to verify the proof with" };
  if (!signals) return { ...base, status: "fail", message: "no public signals to verify the proof with" };
  if (proofWords.length !== 8)
    return { ...base, status: "fail", message: `the proof has ${proofWords.length} words` };
  const t0 = performance.now();
  const { groth16 } = await import("snarkjs");
  const ok = await groth16.verify(vk, signals.map(String), snarkjsProof(proofWords));
  const ms = Math.round(performance.now() - t0);
  const details: [string, string][] = [
    ["key", keySource],
    ["verified in", `${ms} ms (snarkjs, in this browser)`],
  ];
  if (!ok) {
    return {
      ...base,
      status: "fail",
      details,
      message: "the proof does NOT verify against this key with the public signals rebuilt from chain data",
    };
  }
  if (!vkOk) {
    return {
      ...base,
      status: "fail",
      details,
      message: "the proof verifies, but against a key that is not the registered one (see the key check)",
    };
  }
  return {
    ...base,
    status: "pass",
    details,
    proved:
      "the 8 proof words from the settling calldata verify (snarkjs groth16.verify, run here) against the " +
      "model's key with the public signals above: the outputs are the circuit's on this input, for this task " +
      `and ${role}`,
  };
}

/** `setup`: what the manifest says about the trusted setup (the page cannot re-check it). */
export function setupCheck(loaded: LoadedBundle | undefined, bundleHash: string | undefined): Check {
  const base = {
    id: "setup",
    title: "Trusted setup (who could forge proofs)",
    trusted:
      "the bundle manifest's own claim about its setup, not re-checked here: that needs the ptau file " +
      "(opg task audit --ptau)",
  };
  const m = loaded?.archive?.manifest;
  if (!m) return { ...base, status: "skip", message: "the bundle's manifest could not be read" };
  if (bundleHash !== undefined && "0x" + loaded!.id !== bundleHash.toLowerCase()) {
    return {
      ...base,
      status: "skip",
      message: "the data node's bundle is not the registered one: its manifest says nothing",
    };
  }
  const trust = m.ptau?.trust ?? (m.ptau?.source === "dev" ? "development" : m.ptau ? "unknown" : "none");
  const contribs = m.phase2?.contributions ?? [];
  const details: [string, string][] = [
    [
      "phase 1 (powers of tau)",
      `${trust}${m.ptau?.power ? `, 2^${m.ptau.power}` : ""}${m.ptau?.published ? `, ${m.ptau.published}` : ""}`,
    ],
    [
      "phase 2 contributions",
      contribs.length
        ? contribs.map((c) => `'${c.name ?? "unnamed"}' (${c.type ?? "?"})`).join(", ")
        : "none recorded",
    ],
  ];
  if (trust === "development") {
    return {
      ...base,
      status: "trust",
      details,
      message:
        "DEVELOPMENT setup (single-machine): whoever ran compile knows the toxic waste and could forge a proof " +
        "of any output for this model",
    };
  }
  if (trust === "published-ceremony") {
    return {
      ...base,
      status: "trust",
      details,
      message:
        `the manifest says phase 1 is the published ceremony ${m.ptau?.published ?? ""} and records ` +
        `${contribs.length} phase-2 contribution(s); forging needs every contributor's secret`,
    };
  }
  return { ...base, status: "trust", details, message: `the manifest gives the setup's trust as ${trust}` };
}

/**
 * `output-match`: the outputs shown are the ones the settlement carried, and the ones the registry keeps: it
 * keeps no outputs, only a hash of (node, settled block, outputs) per verified task, which `isVerifiedResult`
 * checks the shown result against.
 */
export async function outputMatchCheck(
  ctx: Ctx,
  row: TaskRow,
  calldata: bigint[] | undefined,
  what: string,
): Promise<Check> {
  const base = {
    id: "output-match",
    title: "Outputs shown are the settled ones",
    trusted:
      "nothing beyond the RPC: the outputs shown are compared with the settlement's and checked against the " +
      "registry's stored hash",
  };
  const shown = (row.outputs ?? []).map((w) => BigInt(w));
  const sources: [string, bigint[]][] = [];
  if (calldata) sources.push([`the ${what}`, calldata]);
  const posted = row.events.filter((e) => e.name === "TaskResultPosted").at(-1);
  if (posted)
    sources.push(["the TaskResultPosted log", (posted.args.outputs as bigint[]).map((w) => BigInt(w))]);
  const problems: string[] = [];
  const stored = "the registry's stored hash (isVerifiedResult)";
  let hashMatches = false;
  if (row.node === undefined || row.settledBlock === undefined) {
    problems.push("the TaskVerified log names no node or block to check against the registry's stored hash");
  } else {
    try {
      const result = { node: row.node, settledBlock: BigInt(row.settledBlock), outputs: shown };
      hashMatches = Boolean(await ctx.store.contracts.tasks.isVerifiedResult(row.id, result));
      if (!hashMatches) {
        problems.push(
          `${stored} does not match the result shown (node ${short(row.node, 4)}, block ` +
            `${row.settledBlock}, ${shown.length} output word(s)): the TaskVerified log shown is not the ` +
            "settled result",
        );
      }
    } catch (e) {
      problems.push(`isVerifiedResult(${row.id}, …) could not be read: ${errorText(e)}`);
    }
  }
  for (const [name, ws] of sources) {
    if (ws.length !== shown.length) {
      problems.push(`${name} has ${ws.length} output word(s), the TaskVerified log ${shown.length}`);
      continue;
    }
    const i = ws.findIndex((w, k) => w !== shown[k]);
    if (i >= 0) {
      problems.push(
        `output word ${i} differs: the TaskVerified log (shown) has ${hex(shown[i])}, ${name} has ${hex(ws[i])}`,
      );
    }
  }
  if (!calldata) problems.push(`the ${what} could not be read`);
  const details: [string, string][] = [
    ["compared", ["the TaskVerified log", ...sources.map(([n]) => n)].join(", ")],
    [stored, hashMatches ? "matches the node, block and outputs shown" : "no match"],
  ];
  if (problems.length > 0) return { ...base, status: "fail", details, message: problems.join("; ") };
  return {
    ...base,
    status: "pass",
    details,
    proved:
      `the ${shown.length} output word(s) shown (TaskVerified log) equal ` +
      `${sources.map(([n]) => n).join(" and ")}, and with the node and block shown they match ${stored}`,
  };
}

/**
 * `disproof-outputs`: the challenge names the outputs the node posted (their hash), and the outputs it proves
 * are other ones: the proof shows the posted outputs are not the circuit's on this input.
 */
export function disproofOutputsCheck(
  row: TaskRow,
  s: Extract<Settlement, { via: "challengeWithProof" }>,
): Check {
  const base = {
    id: "disproof-outputs",
    title: "The proof is of other outputs than the posted ones",
    trusted: "the TaskResultPosted log as the RPC serves it",
  };
  const posted = (row.outputs ?? []).map((w) => BigInt(w));
  const postedHash = wordsHash(posted);
  const details: [string, string][] = [
    ["posted outputs' hash", postedHash],
    ["hash the challenge names", s.outputsHash],
    ["proved outputs", s.outputs.map(hex).join(", ")],
  ];
  if (postedHash.toLowerCase() !== s.outputsHash.toLowerCase()) {
    return {
      ...base,
      status: "fail",
      details,
      message: "the challenge names other outputs than the ones posted",
    };
  }
  const i = s.outputs.findIndex((w, k) => w !== posted[k]);
  if (i < 0 && s.outputs.length === posted.length) {
    return { ...base, status: "fail", details, message: "the proved outputs ARE the posted ones" };
  }
  details.push(["first difference", `word ${i < 0 ? posted.length : i}`]);
  return {
    ...base,
    status: "pass",
    details,
    proved:
      "the challenge names the posted outputs (keccak256 computed here) and proves other words: the posted " +
      "outputs are not the circuit's on this input",
  };
}
