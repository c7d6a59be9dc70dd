// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title OPG, the network's token: fees, node stake and governance weight.
/// @notice The whole supply is minted once, at deployment, split among the recipients the deployer names
/// (the token distribution: treasury, operators, community...). There is no owner and no mint function:
/// node rewards come from task fees, not from emissions.
contract OPGToken is ERC20, ERC20Permit, ERC20Votes {
    /// @notice Fixed supply: one billion OPG with 18 decimals.
    uint256 public constant INITIAL_SUPPLY = 1_000_000_000 ether;

    /// @notice Thrown when the distribution is empty, its arrays differ in length, or a recipient is zero.
    error OPGTokenInvalidDistribution();
    /// @notice Thrown when the distributed amounts do not add up to `INITIAL_SUPPLY`.
    error OPGTokenDistributionTotal(uint256 total, uint256 supply);

    constructor(
        address[] memory recipients,
        uint256[] memory amounts
    ) ERC20("OpenGradient", "OPG") ERC20Permit("OpenGradient") {
        if (recipients.length == 0 || recipients.length != amounts.length)
            revert OPGTokenInvalidDistribution();
        uint256 total;
        for (uint256 i = 0; i < recipients.length; ++i) {
            if (recipients[i] == address(0)) revert OPGTokenInvalidDistribution();
            total += amounts[i];
            _mint(recipients[i], amounts[i]);
        }
        if (total != INITIAL_SUPPLY) revert OPGTokenDistributionTotal(total, INITIAL_SUPPLY);
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }

    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }
}
