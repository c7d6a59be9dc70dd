import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { expect } from "chai";
import { account, Proc, ROOT, waitFor, waitForRpc } from "../../network/local-network";
import { ensureCliBuilt, ensureExplorerBuilt } from "../helpers/cli";

/**
 * The README's "Run it by hand on a local chain", literally: every ```sh block right after a
 * `<!-- manual-path -->` marker, each line run by bash in the repository root as a user types it. A line
 * marked `# terminal N` (or ending in `&`) is long-running: it is started in the background and waited for
 * (the RPC answering, /healthz ready). The path must end with a verified task and an agreeing audit.
 *
 * The README's commands use the default ports (8545, 8600, 9464, 9465) and write deployments/localhost.json,
 * .opg/data, .opg/inference, .opg/verification and build/iris: the ports must be free, and those paths are
 * moved aside for the test and put back afterwards.
 */

const MARKER = "<!-- manual-path -->";
const WRITTEN = [
  "deployments/localhost.json",
  ".opg/data",
  ".opg/inference",
  ".opg/verification",
  "build/iris",
];
const PORTS = [8545, 8600, 9464, 9465, 8700];
/** No wall-clock deadline of its own: mocha's timeout bounds every wait. */
const NO_DEADLINE = 24 * 3600_000;

interface Step {
  line: string;
  background: boolean;
}

/** The lines of every ```sh block that follows the marker, in order (comment-only lines left out). */
function manualPath(readme: string): Step[] {
  const steps: Step[] = [];
  const lines = readme.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== MARKER) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === "") j++;
    if (lines[j]?.trim() !== "```sh")
      throw new Error(`README line ${i + 1}: ${MARKER} is not followed by a sh block`);
    for (j++; j < lines.length && lines[j].trim() !== "```"; j++) {
      const line = lines[j].trim();
      if (!line || line.startsWith("#")) continue;
      if (line.endsWith("\\"))
        throw new Error(`README line ${j + 1}: continued lines are not supported here`);
      steps.push({ line, background: /#\s*terminal\s+\d+/.test(line) || /&\s*$/.test(line) });
    }
  }
  return steps;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** The environment a user's shell would have: none of this process's OPG_* settings leak in. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("OPG_")) delete env[k];
  return env;
}

/** One README line run by bash in the repository root, in its own process group; stdout kept apart. */
function shell(name: string, line: string): { proc: Proc; stdout: () => string } {
  const child = spawn("bash", ["-c", line.replace(/&\s*$/, "")], {
    cwd: ROOT,
    env: userEnv(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  return { proc: new Proc(name, child), stdout: () => stdout };
}

const urlOf = (line: string, flag: string, fallback: number) =>
  `http://127.0.0.1:${line.match(new RegExp(`${flag}[ =](\\d+)`))?.[1] ?? fallback}`;

/** Wait until a long-running README command serves what the next steps need. */
async function ready(proc: Proc, line: string) {
  const ok = (url: string) => async () => (await fetch(url)).ok;
  if (/hardhat node/.test(line)) return waitForRpc(urlOf(line, "--port", 8545), proc, NO_DEADLINE);
  if (/opg explorer/.test(line)) {
    const url = urlOf(line, "--port", 8700);
    return waitFor(`the explorer's ${url}/healthz`, ok(`${url}/healthz`), NO_DEADLINE, 500, proc);
  }
  const node = line.match(/opg node (data|inference|verification)/)?.[1];
  if (!node) throw new Error(`no readiness check for the long-running README command: ${line}`);
  const url =
    node === "data"
      ? urlOf(line, "--port", 8600)
      : urlOf(line, "--metrics-port", node === "inference" ? 9464 : 9465);
  // /healthz answers 200 once the node is up and, for a chain node, eligible to work.
  await waitFor(`${node} node's ${url}/healthz`, ok(`${url}/healthz`), NO_DEADLINE, 500, proc);
}

describe("README: run it by hand on a local chain (each command as a user types it)", function () {
  this.timeout(1_200_000);
  const background: Proc[] = [];
  let backup: string;

  before(async function () {
    for (const port of PORTS) {
      if (!(await portFree(port))) {
        throw new Error(
          `port ${port} is in use: the README's manual path needs ports ${PORTS.join(", ")} free`,
        );
      }
    }
    ensureCliBuilt();
    ensureExplorerBuilt();
    // Inside the repository, so that moving aside is a rename on the same file system.
    fs.mkdirSync(path.join(ROOT, ".opg"), { recursive: true });
    backup = fs.mkdtempSync(path.join(ROOT, ".opg", "readme-test-backup-"));
    for (const rel of WRITTEN) {
      const p = path.join(ROOT, rel);
      if (fs.existsSync(p)) {
        fs.mkdirSync(path.dirname(path.join(backup, rel)), { recursive: true });
        fs.renameSync(p, path.join(backup, rel));
      }
    }
  });

  after(async function () {
    await Promise.all(background.map((p) => p.stop("SIGTERM", 20_000).catch(() => p.stop("SIGKILL"))));
    for (const rel of WRITTEN) {
      const p = path.join(ROOT, rel);
      fs.rmSync(p, { recursive: true, force: true });
      if (fs.existsSync(path.join(backup, rel))) fs.renameSync(path.join(backup, rel), p);
    }
    fs.rmSync(backup, { recursive: true, force: true });
  });

  it("ends with a verified task and an agreeing audit", async function () {
    const steps = manualPath(fs.readFileSync(path.join(ROOT, "README.md"), "utf8"));
    expect(steps.filter((s) => s.background)).to.have.length(5);
    const outputs: { line: string; stdout: string }[] = [];
    for (const [i, step] of steps.entries()) {
      const { proc, stdout } = shell(`step ${i + 1}`, step.line);
      if (step.background) {
        background.push(proc);
        await ready(proc, step.line);
        continue;
      }
      const code = await proc.exited;
      const crashed = background
        .filter((p) => p.hasExited())
        .map((p) => `${p.name} exited: ${p.output.join("\n")}`);
      expect(code, `${step.line}\n${proc.output.join("\n")}\n${crashed.join("\n")}`).to.equal(0);
      outputs.push({ line: step.line, stdout: stdout() });
    }

    const submit = outputs.find((o) => / task submit .*--wait/.test(o.line));
    expect(submit, "the README submits a task with --wait").to.not.equal(undefined);
    const result = JSON.parse(submit!.stdout) as {
      taskId: string;
      node: string;
      output: number[];
      argmax: number;
    };
    expect(result.node).to.equal(account(1).address); // the README's inference operator
    expect(result.output).to.have.length(3); // iris: three classes
    expect(result.argmax).to.be.within(0, 2);

    const audit = outputs.find((o) => / task audit /.test(o.line));
    expect(audit, "the README audits the task").to.not.equal(undefined);
    expect(audit!.stdout).to.match(/"agree": true/);

    // The explorer the README starts serves the page and points it at the README's chain and data node.
    const explorer = steps.find((s) => /opg explorer/.test(s.line));
    expect(explorer, "the README starts the explorer").to.not.equal(undefined);
    const base = urlOf(explorer!.line, "--port", 8700);
    const config = (await (await fetch(`${base}/config.json`)).json()) as {
      rpc: string;
      data: string;
      chainId: number;
    };
    expect(config).to.include({
      rpc: "http://127.0.0.1:8545",
      data: "http://127.0.0.1:8600",
      chainId: 31337,
    });
    expect((await fetch(`${base}/`)).status).to.equal(200);
    for (const p of background)
      expect(p.hasExited(), `${p.name} exited before the end: ${p.output.join("\n")}`).to.equal(false);
  });
});
