import { expect } from "chai";
import { describeSnarkjsMessage, elapsed, ptauPercent, startStage } from "../../zkml/prover/progress";

describe("zkml progress lines", () => {
  it("says what snarkjs is doing, with a percentage where it gives counts", () => {
    expect(describeSnarkjsMessage("processing: tauG1: 16384/32767")).to.equal("tauG1 50%");
    expect(describeSnarkjsMessage("tauG2: fft 7 mix start: 0/2")).to.equal("tauG2, fft round 7");
    expect(describeSnarkjsMessage("Contribution Response Hash imported: \n\t\t7617663a")).to.equal(undefined);
    expect(elapsed(12_340)).to.equal("12.3 s");
    expect(elapsed(125_000)).to.equal("2 min 05 s");
  });

  it("turns a ptau step's section and round into a share of the whole step", () => {
    expect(ptauPercent("contribute", 14, "processing: tauG1: 0/32767")).to.equal(0);
    const mid = ptauPercent("contribute", 14, "processing: tauG2: 8192/16384")!;
    expect(mid).to.be.within(40, 60);
    expect(ptauPercent("contribute", 14, "processing: betaTauG1: 16384/16384")).to.equal(100);
    const early = ptauPercent("prepare", 14, "tauG1: fft 10 mix start: 0/2")!;
    const late = ptauPercent("prepare", 14, "betaTauG1: fft 14 mix start: 0/2")!;
    expect(early).to.be.lessThan(late);
    expect(ptauPercent("prepare", 14, "Starting section: tauG1")).to.equal(undefined);
  });

  it("prints a start line, at most one line per interval, and an end line", () => {
    let t = 0;
    const lines: string[] = [];
    const stage = startStage("ptau 2^14: contribute", (m) => lines.push(m), {
      intervalMs: 5000,
      now: () => t,
      ptau: { step: "contribute", power: 14 },
    });
    for (let i = 0; i <= 20; i++) {
      t = i * 1000;
      stage.logger.debug(`processing: tauG1: ${i * 1000}/32767`);
    }
    t = 21_000;
    stage.done();
    expect(lines[0]).to.equal("ptau 2^14: contribute ...");
    expect(lines.at(-1)).to.equal("ptau 2^14: contribute: done in 21.0 s");
    expect(lines.length).to.equal(2 + 4); // at 5, 10, 15 and 20 s
    expect(lines[1]).to.match(/^ptau 2\^14: contribute: \d+% \(tauG1 15%\) \(5\.0 s\)$/);
  });

  it("takes snarkjs's `log` calls too (newAccumulator uses it from 2^16 points on)", () => {
    let t = 0;
    const lines: string[] = [];
    const stage = startStage("ptau 2^16: new accumulator", (m) => lines.push(m), { now: () => t });
    t = 6000;
    stage.logger.log?.("tauG1: 100000");
    stage.done();
    expect(lines.length).to.equal(3);
    expect(lines[1]).to.match(/^ptau 2\^16: new accumulator: /);
  });

  it("is silent without a log", () => {
    const stage = startStage("quiet", undefined);
    stage.logger.info("processing: tauG1: 1/2");
    stage.done();
  });
});
