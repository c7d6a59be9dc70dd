import fs from "node:fs";
import { ethers, type Wallet } from "ethers";
import { executeQuantized, inputWords, loadManifest, loadProgram } from "../../zkml";
import { MODES, parseSubmitted, TOPICS } from "../../workers/runtime/tasks";
import { account, fixtureBundle, type Network } from "../../network/local-network";

/**
 * The benchmarks' normal load: the digits MLP (64-32-16-10) compiled once (cached), held-out sklearn digits
 * as its inputs, a requester account with prepaid credits, and one task submitted at a time.
 */
export const DIGITS_MODEL = "test/fixtures/models/digits_mlp.onnx";

export async function digitsWorkload() {
  const bundleDir = await fixtureBundle(DIGITS_MODEL);
  const manifest = loadManifest(bundleDir);
  const program = loadProgram(bundleDir);
  // Stored divided by `scale`: multiply back to the model's input range.
  const digits = JSON.parse(fs.readFileSync("test/fixtures/models/digits_test.json", "utf8")) as {
    scale: number;
    inputs: number[][];
  };
  const samples = digits.inputs.map((x) => x.map((v) => v * digits.scale));
  return {
    bundleDir,
    /** The input words of the i-th sample (cycling). */
    words: (i: number) => inputWords(manifest, executeQuantized(program, samples[i % samples.length]).input),
  };
}

/** Account 1 with `budget` OPG deposited as registry credits (the deployer holds the supply). */
export async function fundedRequester(network: Network, budget: bigint): Promise<Wallet> {
  const requester = account(1).connect(network.provider) as unknown as Wallet;
  const { token, tasks } = network.deployment;
  await (await token.connect(network.deployer).transfer(requester.address, budget)).wait();
  await (await token.connect(requester).approve(await tasks.getAddress(), ethers.MaxUint256)).wait();
  await (await tasks.connect(requester).deposit(budget)).wait();
  return requester;
}

/** Submits one task from `from` (deadline an hour ahead of the chain) and returns its id and block. */
export async function submitOne(
  network: Network,
  from: Wallet,
  task: { modelId: bigint; input: bigint[]; fee: bigint; mode?: number },
): Promise<{ taskId: bigint; block: number }> {
  const now = (await network.provider.getBlock("latest"))!.timestamp;
  const receipt = await (
    await network.deployment.tasks.connect(from).submitTaskInMode(
      {
        modelId: task.modelId,
        input: task.input,
        inputDataHash: ethers.ZeroHash,
        fee: task.fee,
        deadline: now + 3600,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      },
      task.mode ?? MODES.zk,
    )
  ).wait();
  const taskId = parseSubmitted(receipt!.logs.find((l) => l.topics[0] === TOPICS.submitted)!).taskId;
  return { taskId, block: receipt!.blockNumber };
}
