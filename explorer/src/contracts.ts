import { Contract, type Interface, type Provider } from "ethers";
import { IEnclaveRegistry__factory } from "../../typechain-types/factories/contracts/interfaces/IEnclaveRegistry__factory";
import { IModelRegistry__factory } from "../../typechain-types/factories/contracts/interfaces/IModelRegistry__factory";
import { INodeStaking__factory } from "../../typechain-types/factories/contracts/interfaces/INodeStaking__factory";
import { ITaskRegistry__factory } from "../../typechain-types/factories/contracts/interfaces/ITaskRegistry.sol/ITaskRegistry__factory";
import { DisputeManager__factory } from "../../typechain-types/factories/contracts/tasks/DisputeManager__factory";
import { TaskRegistry__factory } from "../../typechain-types/factories/contracts/tasks/TaskRegistry__factory";

/** The protocol contracts' ABIs (interfaces only where they cover every event and view the page reads). */
export const ifaces = {
  tasks: TaskRegistry__factory.createInterface(),
  models: IModelRegistry__factory.createInterface(),
  staking: INodeStaking__factory.createInterface(),
  disputes: DisputeManager__factory.createInterface(),
  enclaves: IEnclaveRegistry__factory.createInterface(),
} satisfies Record<string, Interface>;

export type Source = keyof typeof ifaces;

// The typechain interface for ITaskRegistry is kept for its struct types only.
export type { ITaskRegistry__factory };

/** Read-only handles on the protocol contracts at `addresses`. */
export function contractsAt(provider: Provider, addresses: Partial<Record<Source, string>>) {
  const at = (s: Source) => (addresses[s] ? new Contract(addresses[s]!, ifaces[s], provider) : undefined);
  return {
    tasks: at("tasks")!,
    models: at("models")!,
    staking: at("staking")!,
    disputes: at("disputes"),
    enclaves: at("enclaves"),
  };
}
export type Contracts = ReturnType<typeof contractsAt>;
