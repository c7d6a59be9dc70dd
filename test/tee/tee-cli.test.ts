import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { DEV_ENCLAVE_MEASUREMENT, decodeNitroAttestation, measurementFromHex } from "../../tee";
import { hasStackTrace, runOpg } from "../helpers/cli";

/** `opg tee measurement` needs no chain; the chain commands run in test/e2e/tee.e2e.test.ts. */
describe("opg tee measurement", function () {
  this.timeout(60_000);
  const doc = path.join(__dirname, "..", "fixtures", "tee", "cape-js-2022-09-15.cbor");

  it("gives the development enclave's measurement with --dev", async function () {
    const r = await runOpg(["tee", "measurement", "--dev"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout).measurement).to.equal(DEV_ENCLAVE_MEASUREMENT);
  });

  it("reads PCR0-2 from a real attestation document, and takes them as flags", async function () {
    const d = decodeNitroAttestation(new Uint8Array(fs.readFileSync(doc)));
    const want = measurementFromHex(d.pcrs[0], d.pcrs[1], d.pcrs[2]);
    const fromDoc = await runOpg(["tee", "measurement", "--document", doc]);
    expect(fromDoc.code, fromDoc.stderr).to.equal(0);
    expect(JSON.parse(fromDoc.stdout)).to.deep.equal({
      measurement: want,
      pcr0: d.pcrs[0],
      pcr1: d.pcrs[1],
      pcr2: d.pcrs[2],
    });
    const fromFlags = await runOpg([
      "tee",
      "measurement",
      "--pcr0",
      d.pcrs[0].slice(2),
      "--pcr1",
      d.pcrs[1],
      "--pcr2",
      d.pcrs[2],
    ]);
    expect(fromFlags.code, fromFlags.stderr).to.equal(0);
    expect(JSON.parse(fromFlags.stdout).measurement).to.equal(want);
  });

  it("says what is wrong with a short PCR or missing flags, without a stack trace", async function () {
    const short = await runOpg(["tee", "measurement", "--pcr0", "00", "--pcr1", "00", "--pcr2", "00"]);
    expect(short.code).to.equal(1);
    expect(short.stderr).to.equal('error: PCR0 must be 48 bytes (96 hex digits), got "00"\n');
    const missing = await runOpg(["tee", "measurement", "--pcr0", "00"]);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/give --pcr0, --pcr1 and --pcr2, or --document, or --dev/);
    expect(hasStackTrace(short.stderr + missing.stderr)).to.equal(false);
  });
});
