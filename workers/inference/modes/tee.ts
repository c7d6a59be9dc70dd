/**
 * The TEE mode's steps of the inference node: the enclave (loaded and its key registered at start, renewed at
 * eligibility checks), why it cannot sign a task now (`enclaveSkipReason`), and signing and submitting a
 * task's result with it (`submitTee`). The node's state machine (node.ts) calls `submitTee` for a `seen` TEE
 * task.
 */
import path from "node:path";
import { packValues } from "../../../zkml";
import { RevertedError } from "../../runtime/submitter";
import { modeName, type SubmittedTask } from "../../runtime/tasks";
import { DevEnclave, ensureEnclaveKeyRegistered } from "../../../tee/dev-enclave";
import { parkDryRun, type ModeContext, type Prepared } from "./context";

/** The TEE mode: the node's enclave and the results it signs. */
export class TeeMode {
  /** Set by startEnclave once the enclave's key is registered. */
  private registered?: DevEnclave;

  constructor(private readonly ctx: ModeContext) {}

  /** The enclave that signs TEE results (`--enclave dev`), or undefined: TEE tasks are not claimed. */
  get enclave(): DevEnclave | undefined {
    return this.registered;
  }

  /**
   * `--enclave dev`: load (or create) the development enclave's key and make sure the EnclaveRegistry has
   * it registered and usable; only then are TEE tasks claimed. A deployment without an EnclaveRegistry
   * stops the start; a registration that fails (the node not registered or staked yet, an RPC error) is
   * logged and tried again at every eligibility check, and TEE tasks are left alone meanwhile.
   */
  async startEnclave() {
    if (this.ctx.config.enclave === "none") return;
    if (!this.ctx.chain.enclaves) {
      throw new Error(
        `--enclave ${this.ctx.config.enclave}: the deployment file has no "enclaves" address (EnclaveRegistry)`,
      );
    }
    const first = !this.enclave;
    const enclave = this.enclave ?? DevEnclave.loadOrCreate(path.join(this.ctx.config.stateDir, "enclave"));
    try {
      await ensureEnclaveKeyRegistered({
        enclaves: this.ctx.chain.enclaves,
        enclave,
        log: (msg) => this.ctx.log.info({ key: enclave.address }, msg),
      });
    } catch (err) {
      this.ctx.log.warn(
        { key: enclave.address, err: (err as Error).message },
        "enclave key not registered yet: TEE tasks are left alone until it is (retried at each eligibility check)",
      );
      return;
    }
    this.registered = enclave;
    if (!first) return;
    this.ctx.log.warn(
      { key: enclave.address, measurement: enclave.measurement },
      "TEE mode: signing with the DEVELOPMENT enclave key (no hardware isolation; local chains only)",
    );
  }

  /** For a TEE task: why the enclave key cannot sign it now (not Active in the EnclaveRegistry), or undefined. */
  async enclaveSkipReason(mode: bigint | number | string): Promise<string | undefined> {
    if (modeName(mode) !== "tee" || !this.enclave) return undefined;
    const [node, standing] = await this.ctx.chain.enclaves!.keyStatus(this.enclave.address);
    const ACTIVE = 2n; // IEnclaveRegistry.KeyStanding.Active
    if (node === this.ctx.address && standing === ACTIVE) return undefined;
    return `enclave key ${this.enclave.address} is not Active in the EnclaveRegistry (standing ${standing})`;
  }

  /**
   * Sign the executor's outputs with the enclave key (a raw ECDSA signature over the registry's
   * teeResultDigest) and submit them: the task settles at once.
   */
  async submitTee(submitted: SubmittedTask, prepared: Prepared) {
    const taskId = submitted.taskId;
    const enclave = this.enclave!;
    const outputs = packValues(prepared.outputs, prepared.bundle.manifest.publicSignals.packBits);
    // The hash of the model bytes the enclave ran (the bundle cache checked them against the manifest and
    // the registry): a host feeding it another model's bytes gets a signature the registry refuses.
    const digest = await this.ctx.chain.tasks.teeResultDigest(
      taskId,
      this.ctx.address,
      submitted.task.inputHash,
      "0x" + prepared.bundle.manifest.onnx.sha256,
      outputs,
    );
    const signature = enclave.signDigest(digest);
    const data = this.ctx.chain.tasks.interface.encodeFunctionData("submitResultTee", [
      taskId,
      submitted.task,
      outputs,
      signature,
    ]);
    let receipt;
    try {
      receipt = await this.ctx.submitter.send(
        "result-tee",
        await this.ctx.chain.tasks.getAddress(),
        data,
        taskId,
      );
    } catch (err) {
      // The key may have expired or been revoked since start: register a fresh one, then retry the task.
      if (err instanceof RevertedError && /EnclaveKeyRejected/.test(err.reason)) {
        await ensureEnclaveKeyRegistered({
          enclaves: this.ctx.chain.enclaves!,
          enclave,
          log: (msg) => this.ctx.log.info({ key: enclave.address }, msg),
        });
        throw new Error(`enclave key rejected (${err.reason}); key checked, retrying`);
      }
      throw err;
    }
    if (!receipt) return parkDryRun(this.ctx.journal, taskId, "would submit the TEE result");
    this.ctx.settled(taskId, receipt, null, { mode: "tee", outcome: "verified" });
    this.ctx.log.info(
      { taskId: taskId.toString(), tx: receipt.hash, key: enclave.address },
      "task verified (TEE)",
    );
  }
}
