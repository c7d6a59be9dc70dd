// What an enclave key's attestation document must carry in its `nonce` to be accepted by `check-key`: a binding to
// the chain, the EnclaveRegistry, the registering node and the key. Without it, a document made for one chain or
// one registry (a testnet, a fork, another deployment) or handed to another node could be registered again
// elsewhere, and a watcher could not tell. The registry's own `registrationDigest` cannot be the nonce: it
// covers keccak256(document), which would then have to contain itself. So the binding is the part of it that
// is known before the document exists.

import { ethers } from "ethers";

/** Domain separator of the binding, like the registry's REGISTRATION_TYPEHASH ("opg.enclave.key-registration"). */
export const ENCLAVE_DOCUMENT_BINDING_TYPEHASH = ethers.id("opg.enclave.document-binding");

/** Who a document is made for. */
export interface DocumentBindingFields {
  chainId: bigint | number;
  /** The EnclaveRegistry's address. */
  registry: string;
  /** The node that registers the key (msg.sender of registerKey). */
  node: string;
  /** The enclave key's address. */
  key: string;
}

/**
 * The 32-byte value a document's `nonce` must hold: keccak256(abi.encode(ENCLAVE_DOCUMENT_BINDING_TYPEHASH,
 * chainId, registry, node, key)), as 0x-prefixed lowercase hex. A real enclave computes it from the registry
 * coordinates the host hands it (and its own key), and passes it as the NSM attestation request's `nonce`.
 */
export function enclaveDocumentBinding(f: DocumentBindingFields): string {
  return ethers.keccak256(
    ethers.AbiCoder.defaultAbiCoder().encode(
      ["bytes32", "uint256", "address", "address", "address"],
      [ENCLAVE_DOCUMENT_BINDING_TYPEHASH, BigInt(f.chainId), f.registry, f.node, f.key],
    ),
  );
}
