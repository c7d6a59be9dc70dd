/**
 * The OPG client SDK: what a dapp's off-chain code and an auditor import. See docs/sdk.md.
 */
export {
  OpgClient,
  OpgClientError,
  sendTx,
  TASK_STATUSES,
  TxQueue,
  type AuditReport,
  type AuditSetup,
  type Deployment,
  type Id,
  type ModelInfo,
  type OpgClientOptions,
  type Runner,
  type SubmitOptions,
  type SubmittedRequest,
  type TaskResult,
  type TaskStatusName,
  type TaskWaitStatus,
  type WaitForResultOptions,
} from "./client";
