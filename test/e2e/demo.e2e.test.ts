import path from "node:path";
import { expect } from "chai";
import { runToEnd } from "../../network/local-network";

describe("npm run demo (scripts/demo.ts as a child process)", function () {
  this.timeout(600_000);

  it("runs the whole network and ends with every task verified, audited and agreed", async function () {
    const { code, stdout, stderr } = await runToEnd(
      [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join("scripts", "demo.ts")],
      { OPG_DEMO_TASKS: "2" },
      540_000,
    );
    expect(code, `${stdout}\n${stderr}`).to.equal(0);
    expect(stdout).to.include("all 2 tasks verified on chain, audited and agreed");
    expect(stdout).to.include("verification node re-checked 2 tasks: 2 agree");
    // Table rows: task, label, proven answer, onnxruntime answer, submit gas, latency, node.
    const rows = stdout
      .split("\n")
      .filter((l) => /^\d+\s+\d\s+\d\s+\d\s+[0-9,]+\s+[0-9.]+ s\s+0x[0-9a-fA-F]{40}$/.test(l));
    expect(rows).to.have.length(2);
    for (const row of rows) {
      const [, , proven, reference] = row.split(/\s+/);
      expect(proven).to.equal(reference);
    }
  });
});
