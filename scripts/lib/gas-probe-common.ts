/**
 * What the gas probes of bench:gas share (scripts/lib/gas-probe.ts for this checkout,
 * scripts/lib/gas-probe-baseline.ts for the baseline revision): the protocol deployed on the in-process
 * Hardhat network as test/helpers/settlement-fixture.ts deploys it, the digits MLP bundle registered, and one
 * task of each verification mode submitted, proved or signed, with the gas of every transaction.
 *
 * bench:gas copies this file into the baseline revision's worktree and runs it there, so it imports only
 * modules that exist, with the same exports, at that revision (network/deploy, network/local-network,
 * network/register-model, workers/runtime/tasks, zkml) and calls only registry functions both ABIs have.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ethers, network } from "hardhat";
import type { ContractTransactionResponse } from "ethers";
import { DEFAULT_ECONOMY_PARAMS, deployEconomy, deployMarket } from "../../network/deploy";
import { fixtureBundle } from "../../network/local-network";
import {
  bundleKeyWords,
  bundleModelSpec,
  registerBundle,
  sendRegistration,
} from "../../network/register-model";
import { parseSubmitted, proofWords, TOPICS, type SubmittedTask } from "../../workers/runtime/tasks";
import {
  executeQuantized,
  flattenInput,
  inputWords,
  loadManifest,
  loadProgram,
  packValues,
  proveBundle,
  releaseProver,
} from "../../zkml";

export const DIGITS_MODEL = "test/fixtures/models/digits_mlp.onnx";
const FEE = ethers.parseEther("1");
const MODE_ZK = 1;
const MODE_OPTIMISTIC = 2;
const MODE_TEE = 4;
/** The enclave measurement governance approves for the probe's key (the tests' development measurement). */
const DEV_MEASUREMENT = ethers.id("opg.test.enclave-measurement");

/** One measured path: gas per task (every transaction counted, divided by the tasks), and each transaction. */
export interface ProbeRow {
  tasks: number;
  perTask: number;
  transactions: { name: string; gas: number }[];
}

/** The one line a probe prints on standard output (scripts/lib/baseline.ts's runProbe reads it). */
export interface ProbeResult {
  probe: string;
  commit: string;
  rows: Record<string, ProbeRow>;
}

export function row(tasks: number, transactions: { name: string; gas: number }[]): ProbeRow {
  const total = transactions.reduce((sum, t) => sum + t.gas, 0);
  return { tasks, perTask: Math.round(total / tasks), transactions };
}

/** Print the probe's result line (and nothing else on standard output; progress goes to standard error). */
export function printResult(result: ProbeResult) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

export function progress(message: string) {
  process.stderr.write(`[gas probe] ${message}\n`);
}

/** Gas used by a transaction. */
export async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<number> {
  return Number((await (await tx).wait())!.gasUsed);
}

/** Pin the next block one second after the latest (deterministic timestamps) and return that time. */
async function nextBlockTime(): Promise<number> {
  const latest = (await ethers.provider.getBlock("latest"))!.timestamp;
  await network.provider.send("evm_setNextBlockTimestamp", [latest + 1]);
  return latest + 1;
}

/** Move the chain's clock to `timestamp` (a block is mined there). */
export async function advanceTo(timestamp: number | bigint) {
  await network.provider.send("evm_setNextBlockTimestamp", [Number(timestamp)]);
  await network.provider.send("evm_mine", []);
}

/**
 * The protocol with the digits MLP: economy and market deployed as settlement-fixture.ts does, one inference
 * node staked with 5,000 OPG (with an active enclave key of the approved development measurement), one
 * verification node staked with 1,000 OPG (the optimistic attester), and a requester with 1,000 OPG of
 * prepaid credits (so each submission takes its fee from them, as issue 21's baseline "submitTask prepaid"
 * did). Two models on the same bundle: `zkModelId` registered by registerBundle (ZK only), `anyModeModelId`
 * the same spec and key with every mode (ZK | OPTIMISTIC | TEE), for the TEE and optimistic tasks.
 */
export async function digitsProtocol() {
  const bundleDir = await fixtureBundle(DIGITS_MODEL);
  const manifest = loadManifest(bundleDir);
  const program = loadProgram(bundleDir);
  const root = path.resolve(__dirname, "..", "..");
  const digits = JSON.parse(
    fs.readFileSync(path.join(root, "test/fixtures/models/digits_test.json"), "utf8"),
  ) as {
    scale: number;
    inputs: number[][];
  };

  const [deployer, treasury, governance, modelOwner, requester, node, attester] = await ethers.getSigners();
  const economy = await deployEconomy(deployer, {
    ...DEFAULT_ECONOMY_PARAMS,
    treasury: treasury.address,
    parameterOwner: governance.address,
  });
  const market = await deployMarket(
    deployer,
    economy,
    { treasury: treasury.address, parameterOwner: governance.address },
    governance,
  );
  const { token, staking } = economy;
  const { tasks, models, enclaves } = market;
  const stakingAddress = await staking.getAddress();

  await (await token.connect(treasury).transfer(node.address, ethers.parseEther("5000"))).wait();
  await (await token.connect(node).approve(stakingAddress, ethers.MaxUint256)).wait();
  await (await staking.connect(node).register(1, "")).wait();
  await (await staking.connect(node).stake(ethers.parseEther("5000"))).wait();

  await (await token.connect(treasury).transfer(attester.address, ethers.parseEther("1000"))).wait();
  await (await token.connect(attester).approve(stakingAddress, ethers.MaxUint256)).wait();
  await (await staking.connect(attester).register(2, "")).wait();
  await (await staking.connect(attester).stake(ethers.parseEther("1000"))).wait();

  await (await token.connect(treasury).transfer(requester.address, ethers.parseEther("1000"))).wait();
  await (await token.connect(requester).approve(market.tasksAddress, ethers.MaxUint256)).wait();
  await (await tasks.connect(requester).deposit(ethers.parseEther("1000"))).wait();

  const { modelId: zkModelId } = await registerBundle(modelOwner, models, bundleDir, {
    bundleId: "11".repeat(32),
    fee: FEE,
  });
  const anyMode = {
    ...bundleModelSpec(manifest, {
      bundleId: "12".repeat(32),
      fee: FEE,
      royaltyReceiver: modelOwner.address,
    }),
    verificationModes: MODE_ZK | MODE_OPTIMISTIC | MODE_TEE,
  };
  const anyModeModelId = (
    await sendRegistration(models.connect(modelOwner), anyMode, bundleKeyWords(bundleDir))
  ).args.modelId as bigint;

  // The development enclave: a key of the approved measurement registered by the node, then its activation
  // delay waited out.
  await (await enclaves.connect(governance).approveMeasurement(DEV_MEASUREMENT, "gas probe enclave")).wait();
  const enclaveKey = new ethers.Wallet(ethers.id("opg.bench.gas.enclave-key"));
  const document = ethers.toUtf8Bytes("gas probe attestation document");
  const expiresAt = (await nextBlockTime()) + 6 * 24 * 3600;
  const registration = await enclaves.registrationDigest(
    node.address,
    enclaveKey.address,
    DEV_MEASUREMENT,
    ethers.keccak256(document),
    expiresAt,
  );
  await (
    await enclaves
      .connect(node)
      .registerKey(
        enclaveKey.address,
        DEV_MEASUREMENT,
        expiresAt,
        document,
        enclaveKey.signingKey.sign(registration).serialized,
      )
  ).wait();
  const activeFrom =
    (await ethers.provider.getBlock("latest"))!.timestamp + Number(await enclaves.activationDelay());
  await advanceTo(activeFrom + 1);

  let sample = 0;

  /**
   * The requester's next task (the next digit of the held-out set): `submitTask` on the ZK model when `mode`
   * is undefined, else `submitTaskInMode` on the every-mode model. Deadline an hour ahead.
   */
  async function submit(mode?: number) {
    const image = digits.inputs[sample++ % digits.inputs.length].map((v) => v * digits.scale);
    const quantized = executeQuantized(program, flattenInput(image, manifest.input.shape));
    const request = {
      modelId: mode === undefined ? zkModelId : anyModeModelId,
      input: inputWords(manifest, quantized.input),
      inputDataHash: ethers.ZeroHash,
      fee: FEE,
      deadline: (await nextBlockTime()) + 3600,
      callback: ethers.ZeroAddress,
      callbackGasLimit: 0,
    };
    const from = tasks.connect(requester);
    const tx = mode === undefined ? from.submitTask(request) : from.submitTaskInMode(request, mode);
    const receipt = (await (await tx).wait())!;
    const s = parseSubmitted(receipt.logs.find((l) => l.topics[0] === TOPICS.submitted)!);
    return {
      s,
      gas: Number(receipt.gasUsed),
      image,
      outputs: packValues(quantized.quantized, manifest.publicSignals.packBits),
    };
  }

  /** A real Groth16 proof of `image` for task `s`, bound to the node. */
  async function prove(s: SubmittedTask, image: number[]) {
    const binding = await tasks.taskBinding(s.taskId, node.address);
    const { proof, publicSignals } = await proveBundle(bundleDir, image, binding, { reference: false });
    return {
      outputs: publicSignals.slice(0, manifest.publicSignals.outputWords).map(BigInt),
      proof: proofWords(proof),
    };
  }

  /** The enclave key's signature over the node's result of `s`. */
  async function teeSignature(s: SubmittedTask, outputs: bigint[]) {
    const onnxHash = await models.onnxHashOf(s.task.modelId);
    const digest = await tasks.teeResultDigest(s.taskId, node.address, s.task.inputHash, onnxHash, outputs);
    return enclaveKey.signingKey.sign(digest).serialized;
  }

  /** The attester's off-chain attestation of the node's outputs of `s` (as the verification node signs). */
  async function attestation(s: SubmittedTask, outputs: bigint[]) {
    const outputsHash = ethers.solidityPackedKeccak256(
      outputs.map(() => "uint256"),
      outputs,
    );
    const digest = await tasks.attestationDigest(s.taskId, node.address, outputsHash);
    return attester.signMessage(ethers.getBytes(digest));
  }

  /** Fails unless every one of `ids` is Verified (status 3). */
  async function expectVerified(ids: bigint[]) {
    for (const id of ids) {
      const status = await tasks.taskStatus(id);
      if (status !== 3n)
        throw new Error(`task ${id} is in status ${status} after its settlement, not Verified`);
    }
  }

  return {
    tasks,
    node,
    attester,
    submit,
    prove,
    teeSignature,
    attestation,
    expectVerified,
    modes: { zk: MODE_ZK, optimistic: MODE_OPTIMISTIC, tee: MODE_TEE },
  };
}

export type DigitsProtocol = Awaited<ReturnType<typeof digitsProtocol>>;

/** The commit the probe runs in (the tree's HEAD, as git says), or "unknown". */
export function headCommit(): string {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: __dirname, encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

/** Run a probe's `main` and exit (the prover's workers would otherwise keep the process alive). */
export function runMain(main: () => Promise<ProbeResult>) {
  main().then(
    async (result) => {
      printResult(result);
      await releaseProver();
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
