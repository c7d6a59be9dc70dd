import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import yaml from "js-yaml";
import { dataNodeSchema } from "../../workers/data/config";
import { inferenceSchema } from "../../workers/inference/config";
import type { Schema } from "../../workers/runtime/config";
import { verificationSchema } from "../../workers/verification/config";
import { ensureCliBuilt, ROOT, runOpg } from "../helpers/cli";

/**
 * docker/Dockerfile and docker/compose.yaml, checked without Docker: the compose services run real `opg`
 * commands with flags that exist, set only OPG_* variables their role reads, listen where their
 * healthchecks and published ports look, and keep state in the volume; the Dockerfile's steps name files
 * and npm scripts that exist.
 */

interface Service {
  build?: { context: string; dockerfile: string };
  image?: string;
  command: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
}

const DOCKER = path.join(ROOT, "docker");
const compose = yaml.load(fs.readFileSync(path.join(DOCKER, "compose.yaml"), "utf8")) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const dockerfile = fs
  .readFileSync(path.join(DOCKER, "Dockerfile"), "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"))
  .join("\n")
  .replace(/\\\n\s*/g, " ")
  .split("\n");

const SCHEMAS: Record<string, Schema> = {
  data: dataNodeSchema,
  inference: inferenceSchema,
  verification: verificationSchema,
};

/** The value after `flag` in a command, or undefined. */
const flagValue = (command: string[], flag: string) => {
  const i = command.indexOf(flag);
  return i < 0 ? undefined : command[i + 1];
};

describe("docker: Dockerfile and compose.yaml", function () {
  before(function () {
    ensureCliBuilt();
  });

  it("compose has the three roles, each an `opg node <role>` command", function () {
    expect(Object.keys(compose.services).sort()).to.deep.equal(["data", "inference", "verification"]);
    for (const [name, service] of Object.entries(compose.services)) {
      expect(service.command.slice(0, 2), name).to.deep.equal(["node", name]);
    }
  });

  for (const role of ["data", "inference", "verification"]) {
    it(`${role}: every flag of its command exists (opg node ${role} --help)`, async function () {
      const service = compose.services[role];
      const positional = service.command.filter(
        (t, i, all) => !t.startsWith("-") && !all[i - 1]?.startsWith("--"),
      );
      const help = await runOpg([...positional, "--help"]);
      expect(help.code, help.stderr).to.equal(0);
      for (const flag of service.command.filter((t) => t.startsWith("--"))) {
        expect(help.stdout, `${role}: ${flag}`).to.match(new RegExp(`^\\s+${flag} `, "m"));
      }
    });

    it(`${role}: its OPG_* variables are ones the role reads`, function () {
      const envNames = new Set(Object.values(SCHEMAS[role]).map((s) => s.env));
      for (const name of Object.keys(compose.services[role].environment ?? {})) {
        expect(envNames, `${role}: ${name}`).to.include(name);
      }
    });

    it(`${role}: listens on all interfaces at the port its healthcheck and published port use`, function () {
      const service = compose.services[role];
      const [hostFlag, portFlag] =
        role === "data" ? ["--host", "--port"] : ["--metrics-host", "--metrics-port"];
      expect(flagValue(service.command, hostFlag)).to.equal("0.0.0.0");
      const port = flagValue(service.command, portFlag);
      expect(port, `${role} ${portFlag}`).to.match(/^\d+$/);
      expect(service.healthcheck!.test.join(" ")).to.contain(`http://127.0.0.1:${port}/healthz`);
      expect(service.ports).to.deep.equal([`127.0.0.1:${port}:${port}`]);
    });

    it(`${role}: keeps its state in the state volume`, function () {
      const service = compose.services[role];
      const dir = flagValue(service.command, role === "data" ? "--dir" : "--state-dir");
      expect(service.volumes).to.include("state:/var/lib/opg");
      expect(dir).to.equal(`/var/lib/opg/${role}`);
      expect(compose.volumes).to.have.property("state");
    });
  }

  it("the chain nodes get the key from the environment, and their deployment from the mounted folder", function () {
    for (const role of ["inference", "verification"]) {
      const env = compose.services[role].environment!;
      expect(env.OPG_PRIVATE_KEY).to.match(/^\$\{OPG_PRIVATE_KEY:\?/);
      expect(env.OPG_DATA_URL).to.equal("http://data:8600");
      expect(env.OPG_DEPLOYMENT).to.match(/^\/opt\/opg\/deployments\//);
      expect(compose.services[role].volumes).to.include("../deployments:/opt/opg/deployments:ro");
      expect(fs.existsSync(path.join(DOCKER, "..", "deployments"))).to.equal(true);
    }
  });

  it("compose builds the image from docker/Dockerfile with the repository as context", function () {
    const build = compose.services.data.build!;
    expect(path.resolve(DOCKER, build.context)).to.equal(ROOT);
    expect(fs.existsSync(path.join(ROOT, build.dockerfile))).to.equal(true);
    const images = new Set(Object.values(compose.services).map((s) => s.image));
    expect([...images]).to.deep.equal([compose.services.data.image]);
  });

  it("the Dockerfile: node:20-bookworm-slim, npm ci, the build script, ENTRYPOINT opg", function () {
    const scripts = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts as Record<
      string,
      string
    >;
    expect(dockerfile[0]).to.equal("FROM node:20-bookworm-slim");
    const workdir = dockerfile.find((l) => l.startsWith("WORKDIR "))!.slice("WORKDIR ".length);
    const runs = dockerfile.filter((l) => l.startsWith("RUN ")).join("\n");
    expect(runs).to.match(/\bnpm ci\b/);
    for (const [, script] of runs.matchAll(/npm run ([\w:-]+)/g)) {
      expect(scripts, `npm run ${script}`).to.have.property(script);
    }
    expect(runs).to.contain("npm run build");
    for (const line of dockerfile.filter((l) => l.startsWith("COPY "))) {
      const sources = line.split(/\s+/).slice(1, -1);
      for (const source of sources) {
        expect(fs.existsSync(path.join(ROOT, source)), `COPY ${source}`).to.equal(true);
      }
    }
    const entrypoint = JSON.parse(dockerfile.find((l) => l.startsWith("ENTRYPOINT "))!.slice(11)) as string[];
    expect(entrypoint[0]).to.equal("node");
    expect(path.posix.relative(workdir, entrypoint[1])).to.equal("bin/opg.js");
    expect(fs.existsSync(path.join(ROOT, "bin", "opg.js"))).to.equal(true);
    // what the entrypoint runs after the build: the compiled command line
    expect(scripts.build).to.contain("tsconfig.build.json");
  });

  it("the Dockerfile's npm ci has what it needs: every file: dependency copied first, onnxruntime's download skipped", function () {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
    const ci = dockerfile.findIndex((l) => l.startsWith("RUN ") && /\bnpm ci\b/.test(l));
    const before = dockerfile.slice(0, ci);
    const copied = before
      .filter((l) => l.startsWith("COPY "))
      .flatMap((l) => l.split(/\s+/).slice(1, -1))
      .map((p) => path.posix.normalize(p));
    const local = Object.values({ ...pkg.dependencies, ...pkg.devDependencies })
      .filter((v) => v.startsWith("file:"))
      .map((v) => path.posix.normalize(v.slice("file:".length)));
    expect(local.length, "file: dependencies").to.be.greaterThan(0);
    for (const dir of local) expect(copied, `COPY ${dir} before npm ci`).to.include(dir);
    // npm 10 (the image's) ignores package.json's allowScripts denial
    expect(before).to.include("ENV ONNXRUNTIME_NODE_INSTALL=skip");
  });

  it("the build context leaves out what the image builds itself", function () {
    const ignore = fs.readFileSync(path.join(DOCKER, "Dockerfile.dockerignore"), "utf8").split("\n");
    for (const entry of ["node_modules", "dist", ".opg", "artifacts", "typechain-types", ".env"]) {
      expect(ignore, entry).to.include(entry);
    }
  });
});
