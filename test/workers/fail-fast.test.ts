import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Command } from "commander";
import { ethers } from "ethers";
import {
  account,
  freePort,
  Proc,
  stakeNode,
  startInferenceNode,
  startNetwork,
  stopAllSpawned,
  waitFor,
  waitForLog,
  type Network,
} from "../../network/local-network";
import { registerWorkerCommands } from "../../workers/cli";
import { dataNodeSchema } from "../../workers/data/config";
import { inferenceSchema } from "../../workers/inference/config";
import {
  checkDeployment,
  DeploymentMismatchError,
  effectiveConfirmations,
} from "../../workers/runtime/chain";
import { flagName, type Schema } from "../../workers/runtime/config";
import { prettyLine } from "../../workers/runtime/logger";
import { verificationSchema } from "../../workers/verification/config";
import { verificationKeyWords } from "../../zkml/verification-key";
import { ensureCliBuilt, OPG_BIN, runOpg } from "../helpers/cli";
import { defaultModelSpec } from "../helpers/market-fixture";
import { tinyInputWords } from "../helpers/tiny-circuit";

/**
 * Start-up failures and readiness of the node processes, as an operator meets them: real `opg node ...`
 * processes against a real hardhat node, each failure ending in one log line that names the problem and
 * the exit code the docs give (1: cannot run, 2: bad configuration).
 */

type LogLine = { level: number; msg: string; [k: string]: unknown };

const jsonLines = (text: string): LogLine[] =>
  text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogLine);

const KEY = account(9).privateKey;

/** The fatal line a node that could not start leaves. */
function fatal(stdout: string): LogLine {
  const line = jsonLines(stdout).find((l) => l.level === 60);
  expect(line, `no fatal log line in:\n${stdout}`).to.not.equal(undefined);
  return line!;
}

/** A Groth16 key that passes ModelRegistry's checks (points on the curve, gamma != delta): G1, G2, 2·G2. */
function syntheticKey(nPublic: number): bigint[] {
  const g1 = ["1", "2"];
  const g2 = [
    [
      "10857046999023057135944570762232829481370756359578518086990519993285655852781",
      "11559732032986387107991004021392285783925812861821192530917403151452391805634",
    ],
    [
      "8495653923123431417604973247489272438418190587263600148770280649306958101930",
      "4082367875863433681332203403145435568316851327593401208105741076214120093531",
    ],
  ];
  const twoG2 = [
    [
      "18029695676650738226693292988307914797657423701064905010927197838374790804409",
      "14583779054894525174450323658765874724019480979794335525732096752006891875705",
    ],
    [
      "2140229616977736810657479771656733941598412651537078903776637920509952744750",
      "11474861747383700316476719153975578001603231366361248090558603872215261634898",
    ],
  ];
  return verificationKeyWords({
    nPublic,
    vk_alpha_1: g1,
    vk_beta_2: g2,
    vk_gamma_2: g2,
    vk_delta_2: twoG2,
    IC: Array.from({ length: nPublic + 1 }, () => g1),
  });
}

async function healthz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The port a chain node logged for /metrics and /healthz. */
async function metricsPort(proc: Proc): Promise<number> {
  return waitFor(
    `${proc.name} to log its metrics port`,
    async () => proc.logs().find((l) => l.msg === "metrics and health listening")?.port as number | undefined,
    undefined,
    100,
    proc,
  );
}

describe("node processes: start-up checks, readiness and defaults", function () {
  describe("flags and defaults (no chain)", function () {
    it("every config key of every role has its --kebab-case flag", function () {
      const program = new Command();
      registerWorkerCommands(program);
      const node = program.commands.find((c) => c.name() === "node")!;
      const roles: [string, Schema][] = [
        ["inference", inferenceSchema],
        ["verification", verificationSchema],
        ["data", dataNodeSchema],
      ];
      for (const [role, schema] of roles) {
        const cmd = node.commands.find((c) => c.name() === role)!;
        const flags = new Set(cmd.options.map((o) => o.long));
        for (const [key, spec] of Object.entries(schema)) {
          expect(flags, `opg node ${role}: ${key}`).to.include(`--${flagName(key)}`);
          const help = cmd.options.find((o) => o.long === `--${flagName(key)}`)!.description;
          expect(help, `opg node ${role} --${flagName(key)}`).to.contain(spec.env);
        }
      }
    });

    it("the roles' defaults do not clash: metrics ports, state directories, data node port", function () {
      const d = (s: Schema, k: string) => s[k].default;
      expect(d(inferenceSchema, "metricsPort")).to.equal(9464);
      expect(d(verificationSchema, "metricsPort")).to.equal(9465);
      expect(d(dataNodeSchema, "port")).to.equal(8600);
      expect(d(inferenceSchema, "stateDir")).to.equal(".opg/inference");
      expect(d(verificationSchema, "stateDir")).to.equal(".opg/verification");
      expect(d(dataNodeSchema, "dir")).to.equal(".opg/data");
      expect(d(inferenceSchema, "metricsHost")).to.equal("127.0.0.1");
      expect(d(inferenceSchema, "confirmations")).to.equal("auto");
    });

    it("confirmations auto: 0 on a local chain (31337, 1337), 2 elsewhere; a number overrides", function () {
      expect(effectiveConfirmations("auto", 31337n)).to.equal(0);
      expect(effectiveConfirmations("auto", 1337n)).to.equal(0);
      expect(effectiveConfirmations("auto", 1n)).to.equal(2);
      expect(effectiveConfirmations("auto", 8453n)).to.equal(2);
      expect(effectiveConfirmations(5, 31337n)).to.equal(5);
      expect(effectiveConfirmations(0, 1n)).to.equal(0);
    });

    it("pretty log lines: time, level, role, message, then key=value", function () {
      const line = prettyLine(
        JSON.stringify({
          level: 40,
          time: "2026-11-30T01:02:03.456Z",
          role: "inference",
          pid: 1,
          taskId: "7",
          reason: "two words",
          msg: "task skipped by policy",
        }),
      );
      expect(line).to.equal(
        '01:02:03.456 WARN  inference  task skipped by policy  taskId=7 reason="two words"\n',
      );
      expect(prettyLine("not json")).to.equal("not json\n");
    });
  });

  describe("against a local chain", function () {
    let net: Network;
    let tmp: string;

    before(async function () {
      ensureCliBuilt();
      net = await startNetwork();
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "opg-fail-fast-"));
    });

    after(async function () {
      await stopAllSpawned();
      await net?.stop();
    });

    /** `opg node <role>` run to its end with the network's files and a short start timeout. */
    function runNode(role: string, over: Record<string, string> = {}, env: Record<string, string> = {}) {
      const flags: Record<string, string> = {
        "--rpc-url": net.chain.url,
        "--deployment": net.deploymentFile,
        "--data-url": net.data.url,
        "--state-dir": fs.mkdtempSync(path.join(tmp, `${role}-`)),
        "--metrics-port": "0",
        "--start-timeout-seconds": "1",
        ...over,
      };
      return runOpg(["node", role, ...Object.entries(flags).flat()], {
        env: { OPG_PRIVATE_KEY: KEY, OPG_LOG_FORMAT: "json", ...env },
      });
    }

    it("an unreachable RPC endpoint: exit 1 with one line naming it, for both chain roles", async function () {
      const url = `http://127.0.0.1:${await freePort()}`;
      for (const role of ["inference", "verification"]) {
        const r = await runNode(role, { "--rpc-url": url });
        expect(r.code, r.stdout + r.stderr).to.equal(1);
        expect(fatal(r.stdout).msg).to.match(
          new RegExp(
            `^cannot start: the RPC endpoint ${url} is unreachable \\(ECONNREFUSED\\) after \\d+ tr`,
          ),
        );
      }
    });

    it("the same failure, forced to pretty logs (--log-format pretty): one readable FATAL line", async function () {
      const url = `http://127.0.0.1:${await freePort()}`;
      const r = await runNode("inference", { "--rpc-url": url, "--log-format": "pretty" });
      expect(r.code).to.equal(1);
      expect(r.stdout).to.not.match(/^\{/m);
      expect(r.stdout).to.match(
        new RegExp(
          `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} FATAL inference  cannot start: the RPC endpoint ${url} is unreachable`,
          "m",
        ),
      );
    });

    it("an unreachable data node: exit 1 with one line naming it", async function () {
      const url = `http://127.0.0.1:${await freePort()}`;
      const r = await runNode("inference", { "--data-url": url });
      expect(r.code, r.stdout + r.stderr).to.equal(1);
      expect(fatal(r.stdout).msg).to.match(new RegExp(`^cannot start: the data node ${url} is unreachable`));
    });

    it("a deployment of another chain: exit 2 naming both chain ids", async function () {
      const file = path.join(tmp, "other-chain.json");
      const deployment = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      fs.writeFileSync(file, JSON.stringify({ ...deployment, chainId: 11155111 }));
      const r = await runNode("inference", { "--deployment": file });
      expect(r.code, r.stdout + r.stderr).to.equal(2);
      const msg = fatal(r.stdout).msg;
      expect(msg).to.contain(`deployment file ${file} is for chain 11155111`);
      expect(msg).to.contain(`the RPC endpoint ${net.chain.url} serves chain 31337`);
      expect(r.stdout + r.stderr).to.not.contain("could not decode result data");
    });

    it("a deployment whose addresses hold no code (chain restarted): exit 2 naming the contract", async function () {
      const file = path.join(tmp, "stale.json");
      const deployment = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      const nowhere = ethers.getAddress("0x" + "77".repeat(20));
      fs.writeFileSync(file, JSON.stringify({ ...deployment, tasks: nowhere }));
      const r = await runNode("verification", { "--deployment": file });
      expect(r.code, r.stdout + r.stderr).to.equal(2);
      expect(fatal(r.stdout).msg).to.contain(
        `names ${nowhere} as the tasks contract but there is no contract code`,
      );
    });

    it("a missing deployment file: exit 2", async function () {
      const r = await runNode("inference", { "--deployment": path.join(tmp, "absent.json") });
      expect(r.code).to.equal(2);
      expect(fatal(r.stdout).msg).to.match(/^cannot start: deployment file .*absent\.json: ENOENT/);
    });

    it("a metrics port already in use: exit 1 naming the address", async function () {
      const { createServer } = await import("node:net");
      const holder = createServer();
      const port = await new Promise<number>((resolve) =>
        holder.listen(0, "127.0.0.1", () => resolve((holder.address() as { port: number }).port)),
      );
      try {
        const r = await runNode("verification", { "--metrics-port": String(port) });
        expect(r.code, r.stdout + r.stderr).to.equal(1);
        expect(fatal(r.stdout).msg).to.contain(`cannot serve /metrics on 127.0.0.1:${port} (EADDRINUSE)`);
      } finally {
        holder.close();
      }
    });

    it("checkDeployment (in process, as the SDK calls it) names the mismatch", async function () {
      const deployment = JSON.parse(fs.readFileSync(net.deploymentFile, "utf8"));
      await checkDeployment(net.provider, deployment);
      const wrong = await rejection(
        checkDeployment(net.provider, { ...deployment, chainId: 1 }, { file: "x.json" }),
      );
      expect(wrong).to.be.instanceOf(DeploymentMismatchError);
      expect(wrong.message).to.match(/^deployment file x\.json is for chain 1 but .* serves chain 31337/);
      // no chainId in the file: the code check still catches addresses of another deployment
      const { chainId: _omitted, ...noChainId } = deployment;
      void _omitted;
      const nowhere = "0x" + "66".repeat(20);
      const stale = await rejection(checkDeployment(net.provider, { ...noChainId, staking: nowhere }));
      expect(stale).to.be.instanceOf(DeploymentMismatchError);
      expect(stale.message).to.contain(
        `names ${nowhere} as the staking contract but there is no contract code`,
      );
    });

    it("an unstaked inference node: /healthz 503 with the reason, no claim attempt, ready once staked", async function () {
      const index = 7;
      const proc = startInferenceNode(net, index, path.join(tmp, "unstaked"), {
        extra: ["--eligibility-check-seconds", "1", "--confirmations", "auto"],
        env: { OPG_LOG_FORMAT: "json" },
      });
      await waitForLog(proc, "inference node started");
      const port = await metricsPort(proc);
      const logs = () => proc.logs() as LogLine[];
      expect(logs().some((l) => l.msg === "confirmations: 0 (auto: local automining chain)")).to.equal(true);

      const notReady = await healthz(port);
      expect(notReady.status).to.equal(503);
      expect(notReady.body).to.include({ ok: false, ready: false });
      expect(notReady.body.reason).to.equal(`${account(index).address} is not registered as a node`);
      const warning = logs().filter((l) => l.msg.startsWith("node not eligible to claim tasks"));
      expect(warning).to.have.length(1);
      expect(warning[0].fix).to.match(/^npx opg operator register --roles inference/);

      // Tasks the node would take: seen and journaled, then left alone (not prepared, refused or claimed).
      const spec = defaultModelSpec(await net.deployer.getAddress());
      const { models, tasks, token } = net.deployment;
      const key = syntheticKey(Number(spec.inputWords) + Number(spec.outputWords) + 1);
      await (await models.connect(net.deployer).registerModel(spec, key)).wait();
      const modelId = await models.modelCount();
      await (await token.connect(net.deployer).approve(await tasks.getAddress(), spec.fee)).wait();
      const now = (await net.provider.getBlock("latest"))!.timestamp;
      const request = {
        modelId,
        input: tinyInputWords([1n, 2n, 3n, 4n]),
        inputDataHash: ethers.ZeroHash,
        fee: spec.fee,
        deadline: now + 3600,
        callback: ethers.ZeroAddress,
        callbackGasLimit: 0,
      };
      await (await tasks.connect(net.deployer).submitTask(request)).wait();
      await waitForLog(proc, "task seen");
      // A second task, seen in a later round: the round that saw the first one has scheduled work.
      await (await token.connect(net.deployer).approve(await tasks.getAddress(), spec.fee)).wait();
      await (await tasks.connect(net.deployer).submitTask(request)).wait();
      await waitFor(
        "the node to see the second task",
        async () => proc.logs().filter((l) => l.msg === "task seen").length === 2,
        undefined,
        100,
        proc,
      );
      const h = await healthz(port);
      expect(h.body.tasks).to.deep.equal({ seen: 2 });
      // No claim (optimistic), no proof or result (ZK and TEE tasks take no claim), no transaction at all.
      const attempts = logs().filter(
        (l) =>
          ["task claimed", "task proved", "transaction sent"].includes(l.msg) ||
          /NodeNotEligible|revert/i.test(JSON.stringify(l)),
      );
      expect(attempts, JSON.stringify(attempts)).to.deep.equal([]);

      await stakeNode(net, index);
      await waitForLog(proc, "node eligible: claiming tasks");
      const ready = await waitFor(
        "/healthz to say ready",
        async () => {
          const r = await healthz(port);
          return r.status === 200 ? r : undefined;
        },
        undefined,
        100,
        proc,
      );
      expect(ready.body).to.include({ ok: true, ready: true });
      expect(ready.body).to.not.have.property("reason");
      // Logged once per reason, not every round: stakeNode registers, then stakes, and a check that falls
      // between the two sees a second reason (registered, no stake) and logs it once too.
      const notEligible = logs().filter((l) => l.msg.startsWith("node not eligible"));
      expect(notEligible.length).to.be.within(1, 2);
      expect(new Set(notEligible.map((l) => l.reason)).size).to.equal(notEligible.length);
      expect(await proc.stop()).to.equal(0);
    });

    it("an inference and a verification node with default ports and state dirs run side by side", async function () {
      for (const port of [9464, 9465]) {
        if (!(await portFree(port))) this.skip(); // another process on this machine holds a default port
      }
      const cwd = fs.mkdtempSync(path.join(tmp, "defaults-"));
      const args = [
        "--rpc-url",
        net.chain.url,
        "--deployment",
        net.deploymentFile,
        "--data-url",
        net.data.url,
      ];
      const spawnRole = (role: string) =>
        new Proc(
          role,
          spawn(process.execPath, [OPG_BIN, "node", role, ...args], {
            cwd,
            env: { ...process.env, OPG_PRIVATE_KEY: KEY, OPG_LOG_FORMAT: "json" },
            stdio: ["ignore", "pipe", "pipe"],
            detached: true,
          }),
        );
      const inference = spawnRole("inference");
      const verification = spawnRole("verification");
      expect(await metricsPort(inference)).to.equal(9464);
      expect(await metricsPort(verification)).to.equal(9465);
      await waitForLog(verification, "verification node started");
      expect((await healthz(9465)).status).to.equal(200);
      expect(fs.existsSync(path.join(cwd, ".opg", "inference", "journal.db"))).to.equal(true);
      expect(fs.existsSync(path.join(cwd, ".opg", "verification", "journal.db"))).to.equal(true);
      expect(await inference.stop()).to.equal(0);
      expect(await verification.stop()).to.equal(0);
    });
  });
});

async function portFree(port: number): Promise<boolean> {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}
