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
} from "./bundle";
export type { BundleManifest, CompileOptions, ProofResult, ProveOptions, VerifyResult } from "./bundle";
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
export { dequantizeOutput, executeProgram, executeQuantized, quantizeInput } from "./quant/executor";
export type { QuantizedResult } from "./quant/executor";
export type { QProgram } from "./quant/program";
export { DEFAULT_QUANTIZE, SUPPORTED_OPS, quantizeGraph } from "./quant/quantize";
export { referenceSession, runReference } from "./reference";
