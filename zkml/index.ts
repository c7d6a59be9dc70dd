/**
 * Programmatic API of the ZKML toolchain: what the CLI, the worker nodes and the tests call.
 */
export {
  BUNDLE_FORMAT,
  compileModel,
  countWeightMultiplies,
  expectedPublicSignals,
  flattenInput,
  inputWords,
  loadManifest,
  loadProgram,
  proveBundle,
  verifierCalldata,
  verifyBundle,
  witnessInput,
  writeVerificationArtifacts,
} from "./bundle";
export type {
  BundleManifest,
  CompileOptions,
  Phase2Contribution,
  ProofResult,
  ProveOptions,
  PtauRecord,
  VerifyResult,
} from "./bundle";
export { beaconToBundle, contributeToBundle } from "./ceremony/phase2";
export type { BeaconOptions, ContributeOptions } from "./ceremony/phase2";
export {
  PUBLISHED_PTAU,
  PUBLISHED_PTAU_SOURCE,
  checkPtau,
  hashFile,
  isDevelopmentPtau,
  readPtauInfo,
} from "./ceremony/ptau";
export type {
  CheckPtauOptions,
  PtauCheck,
  PtauContribution,
  PtauInfo,
  PtauTrust,
  PublishedPtau,
} from "./ceremony/ptau";
export { checkSetup } from "./ceremony/trust";
export type { CheckSetupOptions, SetupTrustReport } from "./ceremony/trust";
export { readZkeyContributions, verifyZkey } from "./ceremony/zkey";
export type { ZkeyContribution } from "./ceremony/zkey";
export { taskBinding } from "./binding";
export { verificationKeyHash, verificationKeyWords } from "./verification-key";
export type { SnarkjsVerificationKey } from "./verification-key";
export { inputCommitment } from "./commitment";
export { ZkmlError } from "./errors";
export { SNARK_SCALAR_FIELD, fromField, toField } from "./field";
export { loadOnnx, parseOnnx } from "./onnx/parse";
export { WORD_BITS, makeLayout, packValues, unpackWords, valuesPerWord } from "./packing";
export type { PublicSignalLayout } from "./packing";
export { poseidon } from "./poseidon";
export { releaseProver } from "./prover/groth16";
export {
  dequantizeOutput,
  executeProgram,
  executeQuantized,
  namedOutputs,
  quantizeInput,
  type NamedOutput,
} from "./quant/executor";
export type { QuantizedResult } from "./quant/executor";
export type { QProgram } from "./quant/program";
export { DEFAULT_QUANTIZE, SUPPORTED_OPS, quantizeGraph } from "./quant/quantize";
export { referenceOutputs, referenceSession, runReference } from "./reference";
