/**
 * Progress of the long snarkjs steps (development powers of tau, Groth16 setup): a start line, then at most
 * one line per `intervalMs` with the stage, the section snarkjs is in, a percentage where snarkjs gives
 * counts, and the elapsed time, then an end line. Lines go to the caller's `log` (the CLI prints them on
 * stderr; a library caller that passes no log hears nothing).
 */

export type Log = (message: string) => void;

/** The logger object snarkjs takes (it calls debug, info and, for large ptau files, log with its progress). */
export interface SnarkjsLogger {
  debug: (m: string) => void;
  info: (m: string) => void;
  log?: (m: string) => void;
  warn: (m: string) => void;
  error: (m: string) => void;
}

export interface StageOptions {
  /** Smallest time between two progress lines (default 5,000 ms). */
  intervalMs?: number;
  /** A powers-of-tau step of this power: its progress messages give a percentage of the whole step. */
  ptau?: { step: "contribute" | "prepare"; power: number };
  /** Warnings and errors snarkjs reports (default: dropped). */
  onError?: (m: string) => void;
  /** The clock (tests). */
  now?: () => number;
}

/** "12.3 s" / "2 min 05 s". */
export function elapsed(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${String(Math.floor(s - 60 * m)).padStart(2, "0")} s`;
}

/** A G2 point operation costs about three G1 operations (measured: contribute's tauG2 vs tauG1 per point). */
const G2_COST = 3;
/** The sections of a ptau file in the order snarkjs processes them: group and points (2^power units). */
const PTAU_SECTIONS = (power: number) => [
  { name: "tauG1", cost: 1, rounds: power + 1 }, // 2^(power+1) - 1 points; preparePhase2 goes to power + 1
  { name: "tauG2", cost: G2_COST, rounds: power },
  { name: "alphaTauG1", cost: 1, rounds: power },
  { name: "betaTauG1", cost: 1, rounds: power },
];

/**
 * The share of a powers-of-tau step done when snarkjs reports `message` (0-100), from the sections' sizes:
 * `contribute` reports "processing: <section>: i/n" (work linear in the points), `prepare` reports
 * "<section>: fft <p> ..." (an FFT of 2^p points per round p, work about p * 2^p). Undefined when the message
 * says nothing about progress.
 */
export function ptauPercent(
  step: "contribute" | "prepare",
  power: number,
  message: string,
): number | undefined {
  const sections = PTAU_SECTIONS(power);
  const work = (rounds: number, upTo: number) => {
    let w = 0;
    for (let p = 0; p < Math.min(upTo, rounds + 1); p++) w += Math.max(1, p) * 2 ** p;
    return w;
  };
  const size = (s: (typeof sections)[number]) =>
    step === "contribute" ? s.cost * 2 ** s.rounds : s.cost * work(s.rounds, s.rounds + 1);
  const total = sections.reduce((t, s) => t + size(s), 0);
  let done: number | undefined;
  const m =
    step === "contribute"
      ? /processing: (\w+): (\d+)\/(\d+)/.exec(message)
      : /^(\w+): fft\s+(\d+)/.exec(message.trim());
  if (!m) return undefined;
  const i = sections.findIndex((s) => s.name === m[1]);
  if (i < 0) return undefined;
  const before = sections.slice(0, i).reduce((t, s) => t + size(s), 0);
  const s = sections[i];
  if (step === "contribute") done = before + (size(s) * Number(m[2])) / Math.max(1, Number(m[3]));
  else done = before + s.cost * work(s.rounds, Number(m[2]));
  return Math.min(100, Math.floor((100 * done) / total));
}

/**
 * What a snarkjs progress message says, in a few words: "tauG1 45%" (a count), "tauG1 fft 7" or the
 * message's first line; undefined for messages with nothing to show (hash dumps).
 */
export function describeSnarkjsMessage(message: string): string | undefined {
  const line = String(message).split("\n")[0].replace(/\s+/g, " ").trim();
  if (!line || /hash/i.test(line)) return undefined;
  const fft = /(\w+): fft (\d+)/.exec(line);
  if (fft) return `${fft[1]}, fft round ${fft[2]}`;
  const count = /(\w[\w ]*?):\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(line);
  if (count && Number(count[3]) > 1) {
    const pct = Math.min(100, Math.floor((100 * Number(count[2])) / Number(count[3])));
    return `${count[1].replace(/^processing /, "").trim()} ${pct}%`;
  }
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}

/** One long step: `logger` goes to snarkjs; `done()` prints the end line and stops the heartbeat. */
export interface Stage {
  logger: SnarkjsLogger;
  done(note?: string): void;
}

/**
 * Start a stage named `name`: prints "<name> ..." now, then a throttled line for snarkjs's progress (or, when
 * snarkjs is silent, a heartbeat with the elapsed time), and "<name>: done in <t>" from `done()`.
 */
export function startStage(name: string, log: Log | undefined, opts: StageOptions = {}): Stage {
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 5000;
  const started = now();
  let lastLine = started;
  let detail: string | undefined;
  const emit = () => {
    lastLine = now();
    log?.(`${name}: ${detail ?? "working"} (${elapsed(lastLine - started)})`);
  };
  log?.(`${name} ...`);
  const heard = (m: string) => {
    const said = describeSnarkjsMessage(m);
    const pct = opts.ptau ? ptauPercent(opts.ptau.step, opts.ptau.power, String(m)) : undefined;
    if (said) detail = pct === undefined ? said : `${pct}% (${said})`;
    if (now() - lastLine >= interval) emit();
  };
  // snarkjs works in worker threads: the main thread's timers still run, so a silent stretch shows too
  const timer = log
    ? setInterval(() => now() - lastLine >= interval && emit(), Math.min(interval, 1000))
    : undefined;
  timer?.unref();
  const dropped = () => {};
  return {
    // snarkjs also calls `log` (newAccumulator, from 2^16 points on): without it a large ptau fails
    logger: {
      debug: heard,
      info: heard,
      log: heard,
      warn: opts.onError ?? dropped,
      error: opts.onError ?? dropped,
    },
    done(note?: string) {
      if (timer) clearInterval(timer);
      log?.(`${name}: done in ${elapsed(now() - started)}${note ? `, ${note}` : ""}`);
    },
  };
}
