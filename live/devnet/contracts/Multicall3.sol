// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// Multicall3's `aggregate3` (github.com/mds1/multicall, deployed at 0xcA11bde0…CA11 on most
/// chains), the one entry batched settlement uses: each call is made in order from this
/// contract; a failing call reverts the batch only when its `allowFailure` is false.
/// Rebuild the checked-in artifact with `npm run build:multicall --prefix live/devnet`.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; i++) {
            Call3 calldata c = calls[i];
            (bool ok, bytes memory data) = c.target.call(c.callData);
            require(ok || c.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(ok, data);
        }
    }
}
