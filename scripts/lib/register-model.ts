import fs from "node:fs";
import path from "node:path";
import { ContractFactory, type Signer } from "ethers";
import type { ModelRegistry } from "../../typechain-types";
import { Groth16VerifierAdapter__factory } from "../../typechain-types";
import { loadManifest } from "../../zkml";
import { compileSolidity } from "./solidity";

const VERIFICATION_MODE_ZK = 1;

/**
 * Put a compiled ZKML bundle on chain: deploy its generated Groth16 verifier and the IProofVerifier adapter,
 * then register the model with the hashes workers check bundles against: the ONNX sha256, the
 * verification key's sha256, and `bundleHash` = the data-layer id of the packed bundle (sha256 of the
 * archive the data node stores). `opts.verifier` registers an IProofVerifier deployed beforehand instead.
 */
export async function registerBundle(
  signer: Signer,
  models: ModelRegistry,
  bundleDir: string,
  opts: { bundleId: string; fee: bigint; royaltyReceiver?: string; verifier?: string },
): Promise<{ modelId: bigint; verifier: string; adapter: string }> {
  const manifest = loadManifest(bundleDir, { checkHashes: true });
  const verifierRef = manifest.artifacts.verifier;
  const vkRef = manifest.artifacts.verificationKey;
  if (!verifierRef || !vkRef || !manifest.verifierContract) {
    throw new Error(`bundle ${bundleDir} has no verifier: compile it with trusted setup`);
  }
  const layout = manifest.publicSignals;
  let verifierAddress: string;
  let adapterAddress: string;
  if (opts.verifier) {
    // An IProofVerifier deployed beforehand (shared across versions, or a test's deliberately broken one).
    verifierAddress = adapterAddress = opts.verifier;
  } else {
    const source = fs.readFileSync(path.join(bundleDir, verifierRef.file), "utf8");
    const { abi, bytecode } = compileSolidity(source, manifest.verifierContract);
    const verifier = await new ContractFactory(abi as never, bytecode, signer).deploy();
    await verifier.waitForDeployment();
    verifierAddress = await verifier.getAddress();
    const signalCount = layout.outputWords + layout.inputWords + 1;
    const adapter = await new Groth16VerifierAdapter__factory(signer).deploy(verifierAddress, signalCount);
    await adapter.waitForDeployment();
    adapterAddress = await adapter.getAddress();
  }
  const spec = {
    name: manifest.name,
    onnxHash: "0x" + manifest.onnx.sha256,
    verificationKeyHash: "0x" + vkRef.sha256,
    bundleHash: "0x" + opts.bundleId,
    verifier: adapterAddress,
    royaltyReceiver: opts.royaltyReceiver ?? (await signer.getAddress()),
    fee: opts.fee,
    verificationModes: VERIFICATION_MODE_ZK,
    inputMode: layout.inputMode === "inline" ? 0 : 1,
    inputWords: layout.inputWords,
    outputWords: layout.outputWords,
    scaleBits: manifest.quantization.scaleBits,
    packBits: layout.packBits,
    inputShape: manifest.input.shape,
    outputShape: manifest.output.shape,
  };
  const modelId = await models.connect(signer).registerModel.staticCall(spec);
  await (await models.connect(signer).registerModel(spec)).wait();
  return { modelId, verifier: verifierAddress, adapter: adapterAddress };
}
