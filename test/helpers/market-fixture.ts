import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { parseSubmitted, TOPICS, type SubmittedTask } from "../../workers/runtime/tasks";
import { pinNextBlockTime } from "./chain-time";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../scripts/lib/deploy";
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
  const { models, tasks, tasksAddress } = await deployMarket(
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

  /** Submit a task on the tiny model with the given input values; returns what a node reads off the event. */
  async function submit(
    values: bigint[] = [1n, 2n, 3n, 4n],
    opts: {
      fee?: bigint;
      deadlineIn?: number;
      callback?: string;
      callbackGasLimit?: number;
      from?: HardhatEthersSigner;
    } = {},
  ): Promise<SubmittedTask> {
    // The submission's block time is pinned, so the deadline counts from it however slow the machine.
    const now = Number(await pinNextBlockTime());
    const request = {
      modelId,
      input: tinyInputWords(values),
      inputDataHash: ethers.ZeroHash,
      fee: opts.fee ?? MODEL_FEE,
      deadline: now + (opts.deadlineIn ?? 3600),
      callback: opts.callback ?? ethers.ZeroAddress,
      callbackGasLimit: opts.callbackGasLimit ?? 0,
    };
    const receipt = await (await tasks.connect(opts.from ?? requester).submitTask(request)).wait();
    return submittedFrom(receipt!.logs);
  }

  function submittedFrom(logs: readonly { topics: readonly string[]; data: string }[]): SubmittedTask {
    // The node's own reader: the fixture sees a task exactly as an inference node does.
    const log = logs.find((l) => l.topics[0] === TOPICS.submitted);
    if (!log) throw new Error("no TaskSubmitted event");
    return parseSubmitted(log);
  }

  /** Prove `submitted` for `node`: real Groth16 over the tiny circuit with the registry's binding. */
  async function prove(submitted: SubmittedTask, node: HardhatEthersSigner) {
    const binding = await tasks.taskBinding(submitted.taskId, node.address);
    const { proof, publicSignals } = await proveTiny(circuit, submitted.input, binding);
    return { proof, outputs: publicSignals.slice(0, 1), publicSignals };
  }

  return {
    ...economy,
    models,
    tasks,
    tasksAddress,
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
