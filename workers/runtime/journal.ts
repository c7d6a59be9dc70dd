import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

/**
 * The node's durable memory (SQLite): the chain checkpoint with recent block hashes (reorg detection), one
 * row per task with its pipeline state, and every transaction sent. Every stage reads and writes its row,
 * so a restarted node resumes where it stopped and never repeats a stage that completed.
 */
export interface TaskRow {
  taskId: string;
  modelId: string;
  state: string;
  /** Block that delivered the TaskSubmitted event: reorgs above it send the task back to `seen`. */
  block: number;
  data: string;
  proof: string | null;
  reason: string | null;
  attempts: number;
  updatedAt: number;
  /** While `watching`: when another node's claim on the task lapses (unix seconds); null otherwise. */
  until: number | null;
}

export interface TxRow {
  hash: string;
  nonce: number;
  kind: string;
  taskId: string | null;
  status: string;
  sentAt: number;
}

/**
 * States that wait for a chain time, kept in `until`: `watching` (another node's claim lapses), and the
 * optimistic mode's `posted`, `attested`, `challenged`, `disputed`, `voted` (a challenge window or a
 * dispute's vote deadline ends).
 */
export const TIMED_STATES: ReadonlySet<string> = new Set([
  "watching",
  "posted",
  "attested",
  "challenged",
  "disputed",
  "voted",
]);

export class Journal {
  private readonly db: Database.Database;

  constructor(file: string) {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS tasks (
        taskId TEXT PRIMARY KEY, modelId TEXT NOT NULL, state TEXT NOT NULL, block INTEGER NOT NULL,
        data TEXT NOT NULL, proof TEXT, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0, updatedAt INTEGER NOT NULL,
        until INTEGER
      );
      CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
      CREATE TABLE IF NOT EXISTS txs (
        hash TEXT PRIMARY KEY, nonce INTEGER NOT NULL, kind TEXT NOT NULL, taskId TEXT, status TEXT NOT NULL,
        sentAt INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS earnings (taskId TEXT PRIMARY KEY, amount TEXT NOT NULL, block INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS amounts (
        taskId TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, amount TEXT NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (taskId, kind, ref)
      );
    `);
    // Journals written before claim take-over have no `until` column: add it in place.
    const columns = this.db.prepare("PRAGMA table_info(tasks)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "until")) this.db.exec("ALTER TABLE tasks ADD COLUMN until INTEGER");
  }

  close() {
    this.db.close();
  }

  // ---------------------------------------------------------------- checkpoint

  /** Last block fully processed, or undefined before the first poll. */
  checkpoint(): { number: number; hash: string } | undefined {
    const row = this.db.prepare("SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1").get() as
      { number: number; hash: string } | undefined;
    return row;
  }

  blockHash(number: number): string | undefined {
    const row = this.db.prepare("SELECT hash FROM blocks WHERE number = ?").get(number) as
      { hash: string } | undefined;
    return row?.hash;
  }

  /** Record `number` as processed with `hash`, keeping the last `keep` hashes for reorg detection. */
  advance(number: number, hash: string, keep = 256) {
    this.db.transaction(() => {
      this.db.prepare("INSERT OR REPLACE INTO blocks (number, hash) VALUES (?, ?)").run(number, hash);
      this.db.prepare("DELETE FROM blocks WHERE number < ?").run(number - keep);
    })();
  }

  /** Forget processed blocks above `ancestor` after a reorg. */
  rewindTo(ancestor: number) {
    this.db.prepare("DELETE FROM blocks WHERE number > ?").run(ancestor);
  }

  knownBlocksDescending(): { number: number; hash: string }[] {
    return this.db.prepare("SELECT number, hash FROM blocks ORDER BY number DESC").all() as {
      number: number;
      hash: string;
    }[];
  }

  getMeta(key: string): string | undefined {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as
      { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string) {
    this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(key, value);
  }

  // ---------------------------------------------------------------- tasks

  /**
   * Insert a task seen on chain. Events are replayed after restarts and reorgs: the same event leaves the row
   * as it is; a different task under the same id (a reorg replaced it) resets the row to `seen`.
   */
  upsertTask(taskId: bigint, modelId: bigint, block: number, data: string): boolean {
    const result = this.db
      .prepare(
        `INSERT INTO tasks (taskId, modelId, state, block, data, updatedAt) VALUES (?, ?, 'seen', ?, ?, ?)
         ON CONFLICT(taskId) DO UPDATE SET
           block = excluded.block,
           modelId = excluded.modelId,
           state = CASE WHEN tasks.data != excluded.data THEN 'seen' ELSE tasks.state END,
           proof = CASE WHEN tasks.data != excluded.data THEN NULL ELSE tasks.proof END,
           until = CASE WHEN tasks.data != excluded.data THEN NULL ELSE tasks.until END,
           data = excluded.data,
           updatedAt = excluded.updatedAt
         WHERE tasks.block != excluded.block OR tasks.data != excluded.data`,
      )
      .run(taskId.toString(), modelId.toString(), block, data, Date.now());
    return result.changes > 0;
  }

  task(taskId: bigint): TaskRow | undefined {
    return this.db.prepare("SELECT * FROM tasks WHERE taskId = ?").get(taskId.toString()) as
      TaskRow | undefined;
  }

  tasksIn(...states: string[]): TaskRow[] {
    const marks = states.map(() => "?").join(",");
    return this.db
      .prepare(`SELECT * FROM tasks WHERE state IN (${marks}) ORDER BY CAST(taskId AS INTEGER)`)
      .all(...states) as TaskRow[];
  }

  /**
   * Move a task to `state`. `until` (a chain timestamp the state waits for: a claim lapsing, a challenge
   * window or a dispute deadline ending) is kept only while the task is in one of TIMED_STATES.
   */
  setState(
    taskId: bigint,
    state: string,
    fields: { proof?: string | null; reason?: string | null; until?: number | null } = {},
  ) {
    const row = this.task(taskId);
    if (!row) throw new Error(`journal: unknown task ${taskId}`);
    this.db
      .prepare(
        "UPDATE tasks SET state = ?, proof = ?, reason = ?, until = ?, attempts = ?, updatedAt = ? WHERE taskId = ?",
      )
      .run(
        state,
        fields.proof === undefined ? row.proof : fields.proof,
        fields.reason === undefined ? row.reason : fields.reason,
        !TIMED_STATES.has(state) ? null : fields.until === undefined ? row.until : fields.until,
        state === row.state ? row.attempts + 1 : row.attempts,
        Date.now(),
        taskId.toString(),
      );
  }

  countByState(): Record<string, number> {
    const rows = this.db.prepare("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state").all() as {
      state: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** Tasks delivered by blocks above `ancestor`: a reorg may have removed them. */
  tasksAbove(ancestor: number): TaskRow[] {
    return this.db.prepare("SELECT * FROM tasks WHERE block > ?").all(ancestor) as TaskRow[];
  }

  deleteTask(taskId: bigint) {
    this.db.prepare("DELETE FROM tasks WHERE taskId = ?").run(taskId.toString());
  }

  // ---------------------------------------------------------------- transactions and earnings

  recordTx(tx: { hash: string; nonce: number; kind: string; taskId?: bigint; status: string }) {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO txs (hash, nonce, kind, taskId, status, sentAt) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(tx.hash, tx.nonce, tx.kind, tx.taskId?.toString() ?? null, tx.status, Date.now());
  }

  setTxStatus(hash: string, status: string) {
    this.db.prepare("UPDATE txs SET status = ? WHERE hash = ?").run(status, hash);
  }

  txsFor(taskId: bigint, kind?: string): TxRow[] {
    return (
      kind
        ? this.db
            .prepare("SELECT * FROM txs WHERE taskId = ? AND kind = ? ORDER BY sentAt")
            .all(taskId.toString(), kind)
        : this.db.prepare("SELECT * FROM txs WHERE taskId = ? ORDER BY sentAt").all(taskId.toString())
    ) as TxRow[];
  }

  recordEarning(taskId: bigint, amount: bigint, block: number) {
    this.db
      .prepare("INSERT OR REPLACE INTO earnings (taskId, amount, block) VALUES (?, ?, ?)")
      .run(taskId.toString(), amount.toString(), block);
  }

  totalEarned(): bigint {
    const rows = this.db.prepare("SELECT amount FROM earnings").all() as { amount: string }[];
    return rows.reduce((sum, r) => sum + BigInt(r.amount), 0n);
  }

  /**
   * Record an amount of `kind` (e.g. a dispute's `won`, `lost`, `slashed`) for `taskId`, once per `ref` (the
   * log it was read from: a replayed log records nothing new). Returns whether it was new.
   */
  recordAmount(taskId: bigint, kind: string, ref: string, amount: bigint, block: number): boolean {
    const result = this.db
      .prepare("INSERT OR IGNORE INTO amounts (taskId, kind, ref, amount, block) VALUES (?, ?, ?, ?, ?)")
      .run(taskId.toString(), kind, ref, amount.toString(), block);
    return result.changes > 0;
  }

  /** The amounts recorded for `taskId` (all tasks when omitted), summed by kind. */
  amountsByKind(taskId?: bigint): Record<string, bigint> {
    const rows = (
      taskId === undefined
        ? this.db.prepare("SELECT kind, amount FROM amounts").all()
        : this.db.prepare("SELECT kind, amount FROM amounts WHERE taskId = ?").all(taskId.toString())
    ) as { kind: string; amount: string }[];
    const totals: Record<string, bigint> = {};
    for (const r of rows) totals[r.kind] = (totals[r.kind] ?? 0n) + BigInt(r.amount);
    return totals;
  }
}
