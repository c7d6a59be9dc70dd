import { expect } from "chai";
import { commitWords } from "../../zkml/commitment";
import { packValues } from "../../zkml";
import { POSEIDON16_CONSTRAINTS } from "../../zkml/circuit/codegen";
import { TemplateCircuit, compileTemplate, templateWitness, witnessSatisfies } from "./helpers";

const P = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const f = (v: bigint): string => (((v % P) + P) % P).toString();
const signed = (v: bigint): bigint => (v > P / 2n ? v - P : v);

function wire(t: TemplateCircuit, name: string): number {
  const w = t.wires.get(name);
  if (w === undefined) throw new Error(`wire ${name} not in the witness`);
  return w;
}

/**
 * Re-decomposes `value` into `n` bits at the wires of `prefix.out[offset..]`. --O2 removes one bit of each
 * decomposition (it is implied by the linear sum); that bit follows from the others, so it is skipped.
 */
function setBits(
  t: TemplateCircuit,
  w: bigint[],
  prefix: string,
  offset: number,
  n: number,
  value: bigint,
): void {
  for (let j = 0; j < n; j++) {
    const i = t.wires.get(`${prefix}.out[${offset + j}]`);
    if (i !== undefined) w[i] = (value >> BigInt(j)) & 1n;
  }
}

/** Adds `amount` to the value of a decomposition's low bits through the first bit wire still present. */
function addToLowBits(t: TemplateCircuit, w: bigint[], prefix: string, n: number, amount: bigint): void {
  for (let j = 0; j < n; j++) {
    const i = t.wires.get(`${prefix}.out[${j}]`);
    if (i !== undefined) {
      // bit j weighs 2^j: adding amount / 2^j to it adds `amount` to the sum
      w[i] = (((w[i] + amount / (1n << BigInt(j))) % P) + P) % P;
      return;
    }
  }
  throw new Error("no bit wire present");
}

const header = `pragma circom 2.1.0;\ninclude "fixed-point.circom";\ninclude "linear.circom";\ninclude "packing.circom";\ninclude "input-commitment.circom";\ninclude "task-binding.circom";\n`;

describe("circuits/lib", function () {
  describe("Rescale", function () {
    let t: TemplateCircuit;
    const shift = 4;
    const bits = 6;
    before(async function () {
      t = await compileTemplate(
        `${header}template T() { signal input in; signal output out; component r = Rescale(1, ${shift}, ${bits}, 0); r.in[0] <== in; out <== r.out[0]; }\ncomponent main = T();`,
      );
    });

    it("costs exactly shift + bits constraints", function () {
      expect(t.constraints).to.equal(shift + bits);
    });

    it("rounds half up: floor((in + 2^(s-1)) / 2^s)", async function () {
      for (const [input, out] of [
        [100n, 6n],
        [-100n, -6n],
        [-104n, -6n],
        [-105n, -7n],
        [7n, 0n],
        [8n, 1n],
      ]) {
        const w = await templateWitness(t, { in: f(input) });
        expect(signed(w[wire(t, "main.out")])).to.equal(out, `in ${input}`);
        expect(await witnessSatisfies(t.r1cs, w)).to.equal(true);
      }
    });

    it("rejects an input whose quotient does not fit the signed width", async function () {
      // 2^(bits-1) * 2^shift = 512 rounds to 32, one past the largest 6-bit signed value
      await expect(templateWitness(t, { in: "512" })).to.be.rejected;
      await templateWitness(t, { in: "503" });
    });

    it("rejects a tampered output", async function () {
      const w = await templateWitness(t, { in: "100" });
      w[wire(t, "main.out")] += 1n;
      expect(await witnessSatisfies(t.r1cs, w)).to.equal(false);
    });

    it("rejects a forged remainder outside [0, 2^shift) (the assert-only trap)", async function () {
      // A quotient one lower balanced by remainder + 2^shift keeps the bit sum equal: only the booleanity
      // of the bits (the range check) can reject it.
      const w = await templateWitness(t, { in: "100" });
      const half = 1n << BigInt(bits - 1);
      const q = 6n;
      setBits(t, w, "main.r.n2b[0]", shift, bits, q - 1n + half);
      addToLowBits(t, w, "main.r.n2b[0]", shift, 1n << BigInt(shift));
      w[wire(t, "main.out")] = q - 1n;
      expect(await witnessSatisfies(t.r1cs, w)).to.equal(false);
    });
  });

  describe("Rescale with ReLU", function () {
    it("costs one more constraint and clamps negatives", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in; signal output out; component r = Rescale(1, 4, 6, 1); r.in[0] <== in; out <== r.out[0]; }\ncomponent main = T();`,
      );
      expect(t.constraints).to.equal(4 + 6 + 1);
      expect(signed((await templateWitness(t, { in: f(-100n) }))[wire(t, "main.out")])).to.equal(0n);
      expect(signed((await templateWitness(t, { in: f(100n) }))[wire(t, "main.out")])).to.equal(6n);
    });
  });

  describe("Relu", function () {
    let t: TemplateCircuit;
    before(async function () {
      t = await compileTemplate(
        `${header}template T() { signal input in; signal output out; component r = Relu(1, 8); r.in[0] <== in; out <== r.out[0]; }\ncomponent main = T();`,
      );
    });

    it("costs bits + 1 constraints and computes max(x, 0)", async function () {
      expect(t.constraints).to.equal(9);
      for (const x of [-128n, -5n, 0n, 5n, 127n]) {
        const w = await templateWitness(t, { in: f(x) });
        expect(signed(w[wire(t, "main.out")])).to.equal(x > 0n ? x : 0n);
      }
    });

    it("rejects a forged sign bit", async function () {
      const w = await templateWitness(t, { in: f(-5n) });
      // claim the input is non-negative: top bit 1, compensated in a low bit so the sum still matches
      setBits(t, w, "main.r.n2b[0]", 7, 1, 1n);
      addToLowBits(t, w, "main.r.n2b[0]", 7, -128n);
      w[wire(t, "main.out")] = P - 5n;
      expect(await witnessSatisfies(t.r1cs, w)).to.equal(false);
    });
  });

  describe("MaxN and ArgMaxN", function () {
    it("MaxN takes the maximum with (n-1)(bits+1) constraints and rejects a tampered maximum", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in[4]; signal output out; component m = MaxN(4, 10); m.in <== in; out <== m.out; }\ncomponent main = T();`,
      );
      expect(t.constraints).to.equal(3 * 11);
      const w = await templateWitness(t, { in: [f(-3n), f(17n), f(4n), f(17n)] });
      expect(signed(w[wire(t, "main.out")])).to.equal(17n);
      w[wire(t, "main.out")] = 4n;
      expect(await witnessSatisfies(t.r1cs, w)).to.equal(false);
    });

    it("ArgMaxN returns the first index of the maximum with (n-1)(bits+2)-1 constraints", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in[4]; signal output out; component m = ArgMaxN(4, 10); m.in <== in; out <== m.out; }\ncomponent main = T();`,
      );
      // the first step's index update is linear (idx[0] = 0), so one constraint less
      expect(t.constraints).to.equal(3 * 12 - 1);
      const w = await templateWitness(t, { in: [f(-3n), f(17n), f(4n), f(17n)] });
      expect(w[wire(t, "main.out")]).to.equal(1n);
      w[wire(t, "main.out")] = 3n;
      expect(await witnessSatisfies(t.r1cs, w)).to.equal(false);
    });
  });

  describe("SignedRangeCheck", function () {
    it("accepts [-2^(b-1), 2^(b-1)) and nothing else", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in; component r = SignedRangeCheck(1, 8); r.in[0] <== in; }\ncomponent main = T();`,
      );
      expect(t.constraints).to.equal(8);
      await templateWitness(t, { in: f(-128n) });
      await templateWitness(t, { in: f(127n) });
      await expect(templateWitness(t, { in: f(128n) })).to.be.rejected;
      await expect(templateWitness(t, { in: f(-129n) })).to.be.rejected;
    });
  });

  describe("Dense", function () {
    it("spends no constraint on weight multiplies: Dense + Rescale costs only the rescale", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in[5]; signal output out[3];
  var W[15] = [1, -2, 3, 4, 5, 6, -7, 8, 9, 10, 11, 12, 13, -14, 15];
  var B[3] = [100, -200, 300];
  component d = Dense(1, 5, 3, W, B); d.in <== in;
  component r = Rescale(3, 4, 12, 0); r.in <== d.out; out <== r.out; }
component main = T();`,
      );
      expect(t.constraints).to.equal(3 * (4 + 12));
      const x = [3n, -1n, 4n, 1n, -5n];
      const w = await templateWitness(t, { in: x.map(f) });
      const W = [1n, -2n, 3n, 4n, 5n, 6n, -7n, 8n, 9n, 10n, 11n, 12n, 13n, -14n, 15n];
      const B = [100n, -200n, 300n];
      for (let j = 0; j < 3; j++) {
        const acc = B[j] + x.reduce((s, v, i) => s + W[j * 5 + i] * v, 0n);
        expect(signed(w[wire(t, `main.out[${j}]`)])).to.equal((acc + 8n) >> 4n);
      }
    });
  });

  describe("PackValues", function () {
    it("packs exactly like packValues()", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input in[40]; signal output out[3]; component p = PackValues(40, 16); p.in <== in; out <== p.out; }\ncomponent main = T();`,
      );
      const vals = Array.from({ length: 40 }, (_, i) => BigInt((i * 7919) % 65536) - 32768n);
      const w = await templateWitness(t, { in: vals.map(f) });
      const words = packValues(vals, 16);
      expect([0, 1, 2].map((i) => w[wire(t, `main.out[${i}]`)])).to.deep.equal(words);
    });
  });

  describe("InputCommitment", function () {
    it("equals the TypeScript Poseidon chain, one Poseidon(16) per 15 words", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input words[17]; signal output out; component c = InputCommitment(17, 40); c.words <== words; out <== c.out; }\ncomponent main = T();`,
      );
      expect(t.constraints).to.equal(2 * POSEIDON16_CONSTRAINTS);
      const words = Array.from({ length: 17 }, (_, i) => BigInt(i) * 123456789123456789n + 5n);
      const w = await templateWitness(t, { words: words.map(String) });
      expect(w[wire(t, "main.out")]).to.equal(commitWords(words, 40));
    });
  });

  describe("TaskBinding", function () {
    it("keeps an otherwise unused public input in one constraint", async function () {
      const t = await compileTemplate(
        `${header}template T() { signal input binding; component b = TaskBinding(); b.binding <== binding; }\ncomponent main {public [binding]} = T();`,
      );
      expect(t.constraints).to.equal(1);
    });
  });
});
