//! The contracts live mode talks to, as `sol!` interfaces: an EIP-3009 token (USDC's
//! FiatTokenV2_2 implements every function here), the FiatToken administration the devnet uses
//! to deploy and mint, and Multicall3 for batched settlement.

// The generated call builders take one argument per ABI parameter.
#![allow(clippy::too_many_arguments)]

alloy::sol! {
    /// An EIP-3009 token: the ERC-20 reads, the authorization state and the transfer a
    /// facilitator relays (the `bytes signature` overload, which also accepts ERC-1271 wallets).
    #[sol(rpc)]
    interface IEip3009Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

        function name() external view returns (string memory);
        function version() external view returns (string memory);
        function decimals() external view returns (uint8);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transfer(address to, uint256 value) external returns (bool);
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            bytes memory signature
        ) external;
    }

    /// FiatTokenV2_2's set-up, in the order a fresh deployment needs it.
    #[sol(rpc)]
    interface IFiatTokenAdmin {
        function initialize(
            string memory tokenName,
            string memory tokenSymbol,
            string memory tokenCurrency,
            uint8 tokenDecimals,
            address newMasterMinter,
            address newPauser,
            address newBlacklister,
            address newOwner
        ) external;
        function initializeV2(string calldata newName) external;
        function initializeV2_1(address lostAndFound) external;
        function initializeV2_2(address[] calldata accountsToBlacklist, string calldata newSymbol) external;
        function configureMinter(address minter, uint256 minterAllowedAmount) external returns (bool);
        function mint(address _to, uint256 _amount) external returns (bool);
    }

    /// Multicall3 (deployed at the same address on most chains).
    #[sol(rpc)]
    interface IMulticall3 {
        struct Call3 {
            address target;
            bool allowFailure;
            bytes callData;
        }
        struct Result {
            bool success;
            bytes returnData;
        }
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
    }
}
