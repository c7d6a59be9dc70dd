import { expect } from "chai";
import hre from "hardhat";
import { TASK_COMPILE_SOLIDITY_LOG_COMPILATION_ERRORS } from "hardhat/builtin-tasks/task-names";

/** hardhat.config.ts drops solc's transient-storage warning for OpenZeppelin's guard, and only that one. */
describe("compiler output", function () {
  const warning = (message: string, file: string) => ({
    severity: "warning",
    message,
    formattedMessage: `Warning: ${message}\n --> ${file}`,
    sourceLocation: { file, start: 0, end: 1 },
  });

  async function printed(errors: unknown[]): Promise<string> {
    const lines: string[] = [];
    const original = console.warn;
    console.warn = (...args: unknown[]) => void lines.push(args.join(" "));
    try {
      await hre.run(TASK_COMPILE_SOLIDITY_LOG_COMPILATION_ERRORS, { output: { errors }, quiet: false });
    } finally {
      console.warn = original;
    }
    return lines.join("\n");
  }

  it("does not print the transient-storage warning of OpenZeppelin's TransientSlot", async function () {
    const transient =
      "Transient storage as defined by EIP-1153 can break the composability of smart contracts";
    expect(await printed([warning(transient, "@openzeppelin/contracts/utils/TransientSlot.sol")])).to.equal(
      "",
    );
  });

  it("prints the same warning from the project's own code, and every other warning", async function () {
    const transient =
      "Transient storage as defined by EIP-1153 can break the composability of smart contracts";
    const out = await printed([
      warning(transient, "contracts/tasks/TaskRegistry.sol"),
      warning("Unused local variable.", "contracts/tasks/TaskRegistry.sol"),
    ]);
    expect(out).to.include("Transient storage");
    expect(out).to.include("Unused local variable.");
  });
});
