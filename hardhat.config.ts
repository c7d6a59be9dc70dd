import path from "node:path";
import { subtask } from "hardhat/config";
import {
  TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD,
  TASK_COMPILE_SOLIDITY_LOG_COMPILATION_ERRORS,
} from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-toolbox";

// The solc compiler ships with the `solc` npm package (solc-js). Hardhat would otherwise download a
// native compiler, which this project's machines cannot reach, so the build is served locally.
// The config's version must equal the installed package's version: checked below.
const SOLC_VERSION = "0.8.28";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper(args);
  const solcPackageDir = path.dirname(require.resolve("solc/package.json"));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const installed: string = require("solc/package.json").version;
  if (installed !== SOLC_VERSION) {
    throw new Error(`solc npm package is ${installed}, hardhat.config.ts expects ${SOLC_VERSION}`);
  }
  return {
    compilerPath: path.join(solcPackageDir, "soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: "0.8.28+commit.7893614a",
  };
});

// solc warns about every use of transient storage (EIP-1153), including OpenZeppelin's
// ReentrancyGuardTransient, which clears its slot before returning: the pattern the warning itself calls
// safe. The one use in this project is that guard, so the warning is dropped; every other warning shows.
const TRANSIENT_STORAGE_WARNING = /^Transient storage as defined by EIP-1153/;
type SolcMessage = { severity: string; message: string; sourceLocation?: { file: string } };

subtask(
  TASK_COMPILE_SOLIDITY_LOG_COMPILATION_ERRORS,
  async (args: { output?: { errors?: SolcMessage[] } }, _hre, runSuper) => {
    const errors = args.output?.errors?.filter(
      (e) =>
        !(
          e.severity === "warning" &&
          TRANSIENT_STORAGE_WARNING.test(e.message) &&
          e.sourceLocation?.file === "@openzeppelin/contracts/utils/TransientSlot.sol"
        ),
    );
    return runSuper({ ...args, output: args.output && { ...args.output, errors } });
  },
);

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
    },
  },
  networks: {
    hardhat: { chainId: 31337 },
    localhost: { url: process.env.OPG_RPC_URL ?? "http://127.0.0.1:8545" },
    // Any EVM testnet (Cancun or later): defined only when its RPC URL is set, so that a fresh checkout needs
    // no secrets. The deployer key comes from the environment and is never written anywhere.
    ...(process.env.OPG_TESTNET_RPC_URL
      ? {
          testnet: {
            url: process.env.OPG_TESTNET_RPC_URL,
            accounts: process.env.OPG_DEPLOYER_KEY ? [process.env.OPG_DEPLOYER_KEY] : [],
          },
        }
      : {}),
  },
  mocha: {
    timeout: 600_000,
    // Tests run the `opg` command line as a user does, from dist/: rebuild it first when a source is newer
    // (`npm test` builds in its pretest step; this covers `npx hardhat test <file>` after an edit).
    rootHooks: {
      beforeAll() {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require("./test/helpers/cli").ensureCliBuilt();
      },
    },
  },
  gasReporter: {
    enabled: process.env.REPORT_GAS === "1",
    offline: true,
    outputFile: process.env.REPORT_GAS_FILE,
    noColors: Boolean(process.env.REPORT_GAS_FILE),
  },
};

export default config;
