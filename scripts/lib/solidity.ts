/**
 * Compile one generated Solidity source (a snarkjs verifier) with the `solc` npm package, the same compiler
 * and settings as hardhat.config.ts, so a verifier made at run time deploys like the project's contracts.
 */
// solc ships no TypeScript types: the one call used here is typed by hand.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const solc = require("solc") as { compile(input: string): string };

export function compileSolidity(source: string, contractName: string): { abi: unknown[]; bytecode: string } {
  const output = JSON.parse(
    solc.compile(
      JSON.stringify({
        language: "Solidity",
        sources: { "Generated.sol": { content: source } },
        settings: {
          optimizer: { enabled: true, runs: 200 },
          evmVersion: "cancun",
          outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
        },
      }),
    ),
  );
  const errors = (output.errors ?? []).filter((e: { severity: string }) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(
      `${contractName} does not compile: ${errors.map((e: { message: string }) => e.message).join("; ")}`,
    );
  }
  const contract = output.contracts?.["Generated.sol"]?.[contractName];
  if (!contract) throw new Error(`${contractName} not found in the generated source`);
  return { abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
}
