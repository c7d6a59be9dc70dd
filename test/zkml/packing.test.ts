import { expect } from "chai";
import fc from "fast-check";
import { AbiCoder, keccak256 } from "ethers";
import {
  SNARK_SCALAR_FIELD,
  makeLayout,
  packValues,
  taskBinding,
  unpackWords,
  valuesPerWord,
} from "../../zkml";

describe("zkml packing and task binding", function () {
  it("unpackWords inverts packValues for every width and length", function () {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 64 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer(),
        (bits, n, seed) => {
          const lim = 1n << BigInt(bits - 1);
          const values = Array.from(
            { length: n },
            (_, i) => (BigInt(seed) * 7919n + BigInt(i) * 104729n) % lim,
          );
          const words = packValues(values, bits);
          expect(words.length).to.equal(Math.ceil(n / valuesPerWord(bits)));
          words.forEach((w) => expect(w < SNARK_SCALAR_FIELD).to.equal(true));
          expect(unpackWords(words, n, bits)).to.deep.equal(values);
        },
      ),
    );
  });

  it("encodes v as v + 2^(B-1), k = floor(252 / B) per word, low bits first", function () {
    expect(packValues([-1n, 2n], 16)).to.deep.equal([32767n + ((32768n + 2n) << 16n)]);
    expect(valuesPerWord(16)).to.equal(15);
    expect(() => packValues([32768n], 16)).to.throw(/does not fit in 16 signed bits/);
    expect(makeLayout(64, 10, 16, "inline")).to.deep.equal({
      outputWords: 1,
      inputWords: 5,
      inputMode: "inline",
      packBits: 16,
      valuesPerWord: 15,
      outputCount: 10,
      inputCount: 64,
      bindingIndex: 6,
    });
    expect(makeLayout(784, 10, 16, "commitment").inputWords).to.equal(1);
  });

  it("taskBinding is keccak256(abi.encode(chainId, registry, taskId, node)) mod r", function () {
    const registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
    const node = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    const enc = AbiCoder.defaultAbiCoder().encode(
      ["uint256", "address", "uint256", "address"],
      [31337n, registry, 7n, node],
    );
    const b = taskBinding(31337, registry, 7, node);
    expect(b).to.equal(BigInt(keccak256(enc)) % SNARK_SCALAR_FIELD);
    expect(b).to.not.equal(taskBinding(31337, registry, 8, node));
    expect(b).to.not.equal(taskBinding(1, registry, 7, node));
  });
});
