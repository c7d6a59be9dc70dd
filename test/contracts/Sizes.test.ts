import { expect } from "chai";
import { artifacts } from "hardhat";

/** EIP-170: the most runtime code a contract may have (bytes). */
const EIP170 = 24_576;
/** Every contract keeps a fifth of the limit free, so the next feature has room (issue 21). */
const BUDGET = Math.floor(EIP170 * 0.8);
/** EIP-3860: the most init code a deployment may run; TaskRegistry's includes its settlement modules'. */
const EIP3860 = 2 * EIP170;

describe("Contract sizes", function () {
  it("every deployable contract's runtime code is at most 80% of EIP-170, its init code within EIP-3860", async function () {
    const names = (await artifacts.getAllFullyQualifiedNames()).filter((n) => n.startsWith("contracts/"));
    const rows: [string, number, number][] = [];
    for (const name of names) {
      const artifact = await artifacts.readArtifact(name);
      const runtime = (artifact.deployedBytecode.length - 2) / 2;
      if (runtime === 0) continue; // interfaces, libraries of internal functions, abstract contracts
      rows.push([name.split(":")[1], runtime, (artifact.bytecode.length - 2) / 2]);
    }
    rows.sort((a, b) => b[1] - a[1]);
    console.log(`\n      contract sizes (runtime bytes, % of EIP-170's ${EIP170}; init code bytes)`);
    for (const [name, runtime, init] of rows) {
      const share = ((100 * runtime) / EIP170).toFixed(1).padStart(5);
      console.log(`        ${name.padEnd(28)} ${String(runtime).padStart(6)}  ${share}%   init ${init}`);
    }
    expect(rows.map((r) => r[0])).to.include.members([
      "TaskRegistry",
      "ZkSettlement",
      "OptimisticSettlement",
    ]);
    const over = rows.filter(([, runtime]) => runtime > BUDGET).map(([n, r]) => `${n} ${r}`);
    expect(over, `above 80% of EIP-170 (${BUDGET} bytes)`).to.deep.equal([]);
    const initOver = rows.filter(([, , init]) => init > EIP3860).map(([n, , i]) => `${n} ${i}`);
    expect(initOver, `init code above EIP-3860 (${EIP3860} bytes)`).to.deep.equal([]);
  });
});
