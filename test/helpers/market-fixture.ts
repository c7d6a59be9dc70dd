import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { SigningKey } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { parseSubmitted, TOPICS, type SubmittedTask } from "../../workers/runtime/tasks";
import { pinNextBlockTime } from "./chain-time";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../network/deploy";
import {
  buildTinyCircuit,
  proveTiny,
  tinyInputWords,
  TINY_INPUT_BITS,
  TINY_INPUTS,
  TINY_PACK_BITS,
  type TinyCircuit,
} from "./tiny-circuit";

export const MODEL_FEE = ethers.parseEther("10");
export const NODE_STAKE = ethers.parseEther("5000");
export const CLAIM_COLLATERAL = ethers.parseEther("100");
export const CLAIM_WINDOW = 600;
export const VERIFICATION_MODE_ZK = 1;
export { TINY_PACK_BITS };

export type { SubmittedTask };

/** The tiny model's registration: its real layout (24 inputs in 4 words, one output word). */
export function defaultModelSpec(royaltyReceiver: string) {
  return {
    name: "tiny-linear",
    onnxHash: ethers.id("onnx:tiny-linear"),
    bundleHash: ethers.id("bundle:tiny-linear"),
    royaltyReceiver,
    fee: MODEL_FEE,
    verificationModes: VERIFICATION_MODE_ZK,
    inputMode: 0,
    inputWords: 4,
    outputWords: 1,
    scaleBits: 0,
    packBits: TINY_PACK_BITS,
    inputBits: TINY_INPUT_BITS,
    inputShape: [1, TINY_INPUTS],
    outputShape: [1, 1],
  };
}

/**
 * The whole market on a Hardhat chain with a real Groth16 verifier for the tiny circuit: economy (an EOA
 * `governance` owns the parameter setters), model and task registries, model 1 registered by `modelOwner`,
 * three inference nodes staked, and a `requester` holding OPG with the task registry approved.
 */
export async function marketFixture() {
  const circuit: TinyCircuit = await buildTinyCircuit();
  const [deployer, treasury, governance, modelOwner, requester, stranger, ...rest] =
    await ethers.getSigners();
  const nodes = rest.slice(0, 3);
  const economy = await deployEconomy(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: treasury.address,
    parameterOwner: governance.address,
  });
  const { token, staking } = economy;
  const { models, tasks, tasksAddress, enclaves, disputes } = await deployMarket(
    deployer,
    economy,
    { treasury: treasury.address, parameterOwner: governance.address },
    governance,
  );
  await tasks.connect(governance).setTaskParameters(CLAIM_WINDOW, CLAIM_COLLATERAL, 500_000, 7 * 24 * 3600);

  const verificationKey = circuit.verificationKey.map(BigInt);
  await models.connect(modelOwner).registerModel(defaultModelSpec(modelOwner.address), verificationKey);
  const modelId = 1n;

  const stakingAddress = await staking.getAddress();
  for (const node of nodes) {
    await token.connect(treasury).transfer(node.address, NODE_STAKE);
    await token.connect(node).approve(stakingAddress, ethers.MaxUint256);
    await staking.connect(node).register(1, `http://${node.address.slice(2, 8)}.example:8080`);
    await staking.connect(node).stake(NODE_STAKE);
  }
  await token.connect(treasury).transfer(requester.address, ethers.parseEther("100000"));
  await token.connect(requester).approve(tasksAddress, ethers.MaxUint256);

  /**
   * Submit a task on the tiny model (or `opts.modelId`, same layout) with the given input values, in the
   * model's strongest mode or `opts.mode`; returns what a node reads off the event.
   */
  async function submit(
    values: bigint[] = [1n, 2n, 3n, 4n],
    opts: {
      fee?: bigint;
      deadlineIn?: number;
      callback?: string;
      callbackGasLimit?: number;
      from?: HardhatEthersSigner;
      modelId?: bigint;
      mode?: number;
    } = {},
  ): Promise<SubmittedTask> {
    // The submission's block time is pinned, so the deadline counts from it however slow the machine.
    const now = Number(await pinNextBlockTime());
    const request = {
      modelId: opts.modelId ?? modelId,
      input: tinyInputWords(values),
      inputDataHash: ethers.ZeroHash,
      fee: opts.fee ?? MODEL_FEE,
      deadline: now + (opts.deadlineIn ?? 3600),
      callback: opts.callback ?? ethers.ZeroAddress,
      callbackGasLimit: opts.callbackGasLimit ?? 0,
    };
    const from = tasks.connect(opts.from ?? requester);
    const tx = opts.mode === undefined ? from.submitTask(request) : from.submitTaskInMode(request, opts.mode);
    const receipt = await (await tx).wait();
    return submittedFrom(receipt!.logs);
  }

  function submittedFrom(logs: readonly { topics: readonly string[]; data: string }[]): SubmittedTask {
    // The node's own reader: the fixture sees a task exactly as an inference node does.
    const log = logs.find((l) => l.topics[0] === TOPICS.submitted);
    if (!log) throw new Error("no TaskSubmitted event");
    return parseSubmitted(log);
  }

  /** Prove `submitted` for `node`: real Groth16 over the tiny circuit with the registry's binding. */
  async function prove(submitted: SubmittedTask, node: { address: string }) {
    const binding = await tasks.taskBinding(submitted.taskId, node.address);
    const { proof, publicSignals } = await proveTiny(circuit, submitted.input, binding);
    return { proof, outputs: publicSignals.slice(0, 1), publicSignals };
  }

  return {
    ...economy,
    models,
    tasks,
    tasksAddress,
    enclaves,
    disputes,
    verificationKey,
    circuit,
    modelId,
    deployer,
    treasury,
    governance,
    modelOwner,
    requester,
    stranger,
    nodes,
    submit,
    submittedFrom,
    prove,
  };
}

export const VERIFICATION_MODE_OPTIMISTIC = 2;
export const VERIFICATION_MODE_TEE = 4;
/** Verification nodes' stake: above the 500 OPG minimum, with room for a locked challenge bond elsewhere. */
export const VERIFIER_STAKE = ethers.parseEther("1000");
/** NodeStaking's role bits: Inference 1 << 0, Verification 1 << 1. */
export const ROLE_VERIFICATION = 2;
export const DEV_MEASUREMENT = ethers.id("opg.test.enclave-measurement");

/** keccak256 of the packed words, as the contracts hash outputs and attester lists. */
export function hashWords(words: readonly bigint[]): string {
  return ethers.solidityPackedKeccak256(
    words.map(() => "uint256"),
    words,
  );
}

export function hashAddresses(addresses: readonly string[]): string {
  return ethers.solidityPackedKeccak256(
    addresses.map(() => "address"),
    addresses,
  );
}

/**
 * The market fixture plus what the optimistic and TEE modes need: four verification nodes (Verification role
 * only, `VERIFIER_STAKE` each, holding OPG for bonds with the dispute manager and the enclave registry
 * approved), model 2 (the tiny circuit again, every mode: ZK | OPTIMISTIC | TEE, so an optimistic dispute is
 * settled by proof, and the gas of each mode is measured on one task shape) and
 * model 3 (same layout, modes OPTIMISTIC | TEE, no circuit: disputes go to a vote), and the governance-
 * approved test measurement.
 */
export async function modesFixture() {
  const f = await marketFixture();
  const signers = await ethers.getSigners();
  const verifiers = signers.slice(9, 13);
  const { token, staking, enclaves, disputes } = f;
  const stakingAddress = await staking.getAddress();
  const disputesAddress = await disputes.getAddress();
  const enclavesAddress = await enclaves.getAddress();
  for (const v of verifiers) {
    await token.connect(f.treasury).transfer(v.address, VERIFIER_STAKE + ethers.parseEther("1000"));
    await token.connect(v).approve(stakingAddress, ethers.MaxUint256);
    await token.connect(v).approve(disputesAddress, ethers.MaxUint256);
    await token.connect(v).approve(enclavesAddress, ethers.MaxUint256);
    await staking.connect(v).register(ROLE_VERIFICATION, `http://${v.address.slice(2, 8)}.example:8080`);
    await staking.connect(v).stake(VERIFIER_STAKE);
  }
  for (const n of f.nodes) {
    await token.connect(f.treasury).transfer(n.address, ethers.parseEther("1000"));
    await token.connect(n).approve(enclavesAddress, ethers.MaxUint256);
  }
  await models(f);
  await enclaves.connect(f.governance).approveMeasurement(DEV_MEASUREMENT, "test enclave");
  return { ...f, verifiers, optimisticModelId: 2n, voteModelId: 3n };

  async function models(m: typeof f) {
    const everyMode = {
      ...defaultModelSpec(m.modelOwner.address),
      name: "tiny-linear-optimistic",
      verificationModes: VERIFICATION_MODE_ZK | VERIFICATION_MODE_OPTIMISTIC | VERIFICATION_MODE_TEE,
    };
    await m.models.connect(m.modelOwner).registerModel(everyMode, m.verificationKey);
    const noCircuit = {
      ...defaultModelSpec(m.modelOwner.address),
      name: "tiny-linear-no-circuit",
      verificationModes: VERIFICATION_MODE_OPTIMISTIC | VERIFICATION_MODE_TEE,
    };
    await m.models.connect(m.modelOwner).registerModel(noCircuit, []);
  }
}

/** What signs as an enclave key: an ethers wallet (its raw secp256k1 key). */
export type EnclaveKeyWallet = { address: string; signingKey: SigningKey };

export const ENCLAVE_ACTIVATION_DELAY = 3600;
export const TEST_DOCUMENT = ethers.toUtf8Bytes("test attestation document");

/**
 * Sign an enclave key's registration for `node` (proof of possession: the key's raw ECDSA signature over
 * `registrationDigest`), as the enclave would. Options shape a bad registration for the error tests.
 */
export async function signKeyRegistration(
  f: Awaited<ReturnType<typeof modesFixture>>,
  node: string,
  opts: {
    key?: EnclaveKeyWallet;
    signer?: EnclaveKeyWallet;
    measurement?: string;
    expiresIn?: number;
    document?: Uint8Array;
  } = {},
) {
  const key = opts.key ?? ethers.Wallet.createRandom();
  const measurement = opts.measurement ?? DEV_MEASUREMENT;
  const document = opts.document ?? TEST_DOCUMENT;
  // The registration's block time is pinned, so the expiry counts from it.
  const now = Number(await pinNextBlockTime());
  const expiresAt = now + (opts.expiresIn ?? 7 * 24 * 3600);
  const digest = await f.enclaves.registrationDigest(
    node,
    key.address,
    measurement,
    ethers.keccak256(document),
    expiresAt,
  );
  const signature = (opts.signer ?? key).signingKey.sign(digest).serialized;
  return { key, args: [key.address, measurement, expiresAt, document, signature] as const };
}

/** Register a fresh enclave key for `node` and, unless `activate` is false, wait out the activation delay. */
export async function registerEnclaveKey(
  f: Awaited<ReturnType<typeof modesFixture>>,
  node: HardhatEthersSigner,
  opts: { expiresIn?: number; activate?: boolean } = {},
) {
  const { key, args } = await signKeyRegistration(f, node.address, { expiresIn: opts.expiresIn });
  await f.enclaves.connect(node).registerKey(...args);
  if (opts.activate !== false) await time.increase(ENCLAVE_ACTIVATION_DELAY);
  return key;
}

/** The enclave's signature over a TEE result: `teeResultDigest` signed raw by `key`. */
export async function signTeeResult(
  f: Awaited<ReturnType<typeof modesFixture>>,
  key: EnclaveKeyWallet,
  s: SubmittedTask,
  node: string,
  outputs: bigint[],
) {
  const onnxHash = await f.models.onnxHashOf(s.task.modelId);
  const digest = await f.tasks.teeResultDigest(s.taskId, node, s.task.inputHash, onnxHash, outputs);
  return key.signingKey.sign(digest).serialized;
}
