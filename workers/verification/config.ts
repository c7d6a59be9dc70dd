import fs from "node:fs";
import { chainNodeSchema, executionSchema, inferenceSchema } from "../inference/config";
import { parse, type OptionSpec } from "../runtime/config";

const opt = <T>(spec: OptionSpec<T>) => spec as OptionSpec<unknown> & OptionSpec<T>;

/**
 * The verification node's options: the chain node's, its execution limits (it re-executes every model it
 * watches), and the phase-1 file its setup checks use.
 */
export const verificationSchema = {
  ...chainNodeSchema,
  ...executionSchema,
  stateDir: opt({ ...chainNodeSchema.stateDir, default: ".opg/verification" }),
  metricsPort: opt({ ...chainNodeSchema.metricsPort, default: 9465 }),
  setupPtau: opt({
    env: "OPG_SETUP_PTAU",
    description:
      "phase-1 (powers of tau) file the models were set up with: their setup is checked against it and " +
      "their zkey verified (without it no model's setup counts as secure); empty: none",
    default: "",
    parse: (raw) => {
      if (raw === "") return "";
      const file = parse.path(raw);
      if (!fs.existsSync(file)) throw new Error(`${file} does not exist`);
      return file;
    },
  }),
  optimistic: opt({
    env: "OPG_OPTIMISTIC",
    description:
      "take part in the optimistic mode: sign attestations of matching results off chain (POST /attest), " +
      "re-execute every posted result and challenge a wrong one (with a proof of the true outputs for a model " +
      "with a circuit; with the dispute manager's bond from the wallet for one without), vote on disputes " +
      "over models without a circuit and settle its ballots; needs the verification role and stake",
    default: true,
    parse: parse.bool,
  }),
  finalizeAfterSeconds: opt({
    env: "OPG_FINALIZE_AFTER_SECONDS",
    description:
      "finalise a result this node attested or re-executed to the same outputs when it is still pending this " +
      "many seconds after its challenge window (its inference node normally does it at once, unless it is down)",
    default: 300,
    parse: parse.int(0, 30 * 86_400),
  }),
  replaceAfterSeconds: inferenceSchema.replaceAfterSeconds,
  maxRetries: inferenceSchema.maxRetries,
};
