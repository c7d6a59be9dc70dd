import { enclaveDocumentBinding } from "../../tee/binding";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Wallet } from "ethers";
import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import pino from "pino";
import { fixtureBundle } from "../../network/local-network";
import { bundleKeyWords, bundleModelSpec } from "../../network/register-model";
import { OpgClient } from "../../sdk";
import { encodeCbor, type CborKey, type CborValue } from "../../tee/cbor";
import { DEV_ATTESTATION_FORMAT, DEV_ENCLAVE_MODULE_ID } from "../../tee/dev-enclave";
import { DEV_ENCLAVE_MEASUREMENT, DEV_ENCLAVE_PCRS } from "../../tee/measurement";
import { bundleArchiveId, packBundle } from "../../workers/data/bundle-archive";
import { DataClient } from "../../workers/data/client";
import { startDataNode, type RunningDataNode } from "../../workers/data/server";
import { executeProgram, loadManifest, loadProgram, packValues, quantizeInput } from "../../zkml";
import { modesFixture } from "../helpers/market-fixture";
import { pinNextBlockTime } from "../helpers/chain-time";

/** The iris model (inline input, a real zkml bundle with its Groth16 key), compiled once and cached. */
export const IRIS = "test/fixtures/models/iris_mlp.onnx";
export const IRIS_INPUT = [[5.1, 3.5, 1.4, 0.2]];
export const IRIS_FEE = ethers.parseEther("10");

/**
 * The SDK's view of every verification mode on the in-process chain: H1's modesFixture (verification nodes,
 * dispute manager, enclave registry) plus the iris model registered for every mode (ZK | OPTIMISTIC | TEE)
 * with its bundle served by an in-process data node, the development enclave's measurement approved, and an
 * OpgClient for the requester. One chain for a whole describe: tests run in order on it.
 */
export async function sdkModesFixture() {
  const f = await modesFixture();
  const bundleDir = await fixtureBundle(IRIS);
  const manifest = loadManifest(bundleDir);
  const program = loadProgram(bundleDir);
  const archive = packBundle(bundleDir);
  const bundleId = bundleArchiveId(archive);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opg-sdk-modes-"));
  const data: RunningDataNode = await startDataNode(
    {
      host: "127.0.0.1",
      port: 0,
      dir: path.join(dir, "data"),
      maxBlobBytes: 64 * 1024 * 1024,
      shutdownTimeoutMs: 2000,
      logLevel: "silent",
      logFormat: "json",
    },
    { logger: pino({ level: "silent" }) },
  );
  await new DataClient(data.url).put(archive);
  const spec = {
    ...bundleModelSpec(manifest, { bundleId, fee: IRIS_FEE, royaltyReceiver: f.modelOwner.address }),
    verificationModes: 1 | 2 | 4,
  };
  await f.models.connect(f.modelOwner).registerModel(spec, bundleKeyWords(bundleDir, manifest));
  const irisModelId = await f.models.modelCount();
  await f.enclaves.connect(f.governance).approveMeasurement(DEV_ENCLAVE_MEASUREMENT, "development enclave");

  const deployment = {
    token: await f.token.getAddress(),
    staking: await f.staking.getAddress(),
    models: await f.models.getAddress(),
    tasks: await f.tasks.getAddress(),
    enclaves: await f.enclaves.getAddress(),
    disputes: await f.disputes.getAddress(),
  };
  const client = new OpgClient({
    runner: f.requester,
    deployment,
    dataUrl: data.url,
    cacheDir: path.join(dir, "bundles"),
  });

  /** A client with a bare provider, which submitted nothing: what it knows of a task it reads from the chain. */
  const reader = new OpgClient({
    runner: ethers.provider,
    deployment,
    dataUrl: data.url,
    cacheDir: path.join(dir, "bundles-reader"),
  });

  /** The honest output words of the iris model on `input` (floats): what a node posts or signs. */
  function honestOutputs(input: number[][] = IRIS_INPUT): bigint[] {
    const q = quantizeInput(program, input.flat());
    const values = executeProgram(program, q)[program.output.tensor];
    return packValues(values, manifest.publicSignals.packBits);
  }

  /**
   * A development attestation document for `key` (the fields tee/dev-enclave.ts writes), stamped with the
   * chain's time so that the freshness check holds however far the test moved the clock, its nonce binding
   * this chain, the enclave registry, `node` and the key (tee/binding.ts).
   */
  async function devDocument(key: Wallet, node: string): Promise<Uint8Array> {
    const nonce = enclaveDocumentBinding({
      chainId: (await ethers.provider.getNetwork()).chainId,
      registry: await f.enclaves.getAddress(),
      node,
      key: key.address,
    });
    const pcrs = new Map<CborKey, CborValue>([
      [0, new Uint8Array(DEV_ENCLAVE_PCRS[0])],
      [1, new Uint8Array(DEV_ENCLAVE_PCRS[1])],
      [2, new Uint8Array(DEV_ENCLAVE_PCRS[2])],
    ]);
    return encodeCbor(
      new Map<CborKey, CborValue>([
        ["format", DEV_ATTESTATION_FORMAT],
        ["module_id", DEV_ENCLAVE_MODULE_ID],
        ["digest", "SHA384"],
        ["timestamp", (await time.latest()) * 1000],
        ["pcrs", pcrs],
        ["public_key", ethers.getBytes(key.signingKey.publicKey)],
        ["user_data", ethers.getBytes(key.address)],
        ["nonce", ethers.getBytes(nonce)],
      ]),
    );
  }

  /**
   * Register a fresh enclave key (a raw ethers SigningKey) for `node` with `measurement` and `document`
   * (default: the development enclave's measurement and a development document), then wait out the
   * activation delay.
   */
  async function registerKey(
    node: HardhatEthersSigner,
    opts: { measurement?: string; document?: Uint8Array } = {},
  ): Promise<Wallet> {
    const key = new ethers.Wallet(ethers.hexlify(ethers.randomBytes(32)));
    const measurement = opts.measurement ?? DEV_ENCLAVE_MEASUREMENT;
    const document = opts.document ?? (await devDocument(key, node.address));
    const expiresAt = Number(await pinNextBlockTime()) + 7 * 24 * 3600;
    const digest = await f.enclaves.registrationDigest(
      node.address,
      key.address,
      measurement,
      ethers.keccak256(document),
      expiresAt,
    );
    const signature = key.signingKey.sign(digest).serialized;
    await f.enclaves.connect(node).registerKey(key.address, measurement, expiresAt, document, signature);
    await time.increase(Number(await f.enclaves.activationDelay()) + 1);
    return key;
  }

  async function stop() {
    await client.close();
    await reader.close();
    await data.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }

  return {
    ...f,
    irisModelId,
    bundleDir,
    dataUrl: data.url,
    deployment,
    client,
    reader,
    honestOutputs,
    registerKey,
    stop,
  };
}
