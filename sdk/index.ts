/**
 * The OPG client SDK: what a dapp's off-chain code and an auditor import. See docs/sdk.md.
 */
export {
  OpgClient,
  OpgClientError,
  sendTx,
  TASK_STATUSES,
  type AuditReport,
  type AuditSetup,
  type Deployment,
  type ModelInfo,
  type OpgClientOptions,
  type SubmitOptions,
  type SubmittedRequest,
  type TaskResult,
  type TaskStatusName,
} from "./client";
