/**
 * The OPG client SDK: what a dapp's off-chain code and an auditor import. See docs/sdk.md.
 */
export {
  chooseMode,
  OpgClient,
  OpgClientError,
  TaskRejectedError,
  VERIFICATION_MODES,
  sendTx,
  TASK_STATUSES,
  TxQueue,
  type AuditReport,
  type AuditSetup,
  type Deployment,
  type Id,
  type ModelInfo,
  type OptimisticAudit,
  type TeeAudit,
  type VerificationModeName,
  type OpgClientOptions,
  type Runner,
  type SubmitOptions,
  type SubmittedRequest,
  type TaskResult,
  type TaskStatusName,
  type TaskWaitStatus,
  type WaitForResultOptions,
} from "./client";
