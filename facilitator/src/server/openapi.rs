//! The facilitator's OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' schemas (core's under its `openapi` feature), served at
//! `GET /openapi.json`. A test checks it against `docs/protocol.md` §8 and the live router.

use super::api;
use super::checkpoint::{ChainHead, Checkpoint, CheckpointClaims};
use super::types::{
    CreateProviderRequest, ErrorBody, PaymentList, PaymentRecord, ProviderCreated, ProviderInfo,
    ProviderRotated, Readiness, Revenue, RotateRequest, TopUpRequest, WalletBalance,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi};
use vlexivo_core::payment::{PaymentReceipt, PaymentRequest, TopUpReceipt};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vlexivo facilitator",
        description = "HTTP 402 per-call payments: onboarding, wallets, payments and proof tokens. \
                       Errors are {\"error\": code, \"message\": text} with the code's status \
                       (docs/protocol.md section 9).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        api::create_provider,
        api::provider_me,
        api::provider_payments,
        api::payer_usage,
        api::rotate_provider,
        api::pay,
        api::wallet_balance,
        api::top_up,
        api::jwks,
        api::ledger_checkpoint,
        api::healthz,
        api::readyz,
        api::metrics,
        api::openapi_json,
    ),
    components(schemas(
        CreateProviderRequest,
        ProviderCreated,
        ProviderInfo,
        Revenue,
        PaymentList,
        vlexivo_core::payer_pricing::Usage,
        PaymentRecord,
        PaymentRequest,
        PaymentReceipt,
        WalletBalance,
        TopUpRequest,
        TopUpReceipt,
        ErrorBody,
        Readiness,
        RotateRequest,
        ProviderRotated,
        Checkpoint,
        CheckpointClaims,
        ChainHead,
    )),
    modifiers(&ApiSecret),
    tags(
        (name = "providers", description = "onboarding and the provider's own account"),
        (name = "payments", description = "paying a 402 challenge"),
        (name = "wallets", description = "payer balances and the sandbox faucet"),
        (name = "tokens", description = "keys to verify EdDSA proof tokens"),
        (name = "ledger", description = "signed checkpoints of the ledger's hash chains"),
        (name = "operations", description = "health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// `Authorization: Bearer sk_…` on the provider endpoints.
struct ApiSecret;

impl Modify for ApiSecret {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("the provider's apiSecret (sk_test_… or sk_live_…)"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_secret", SecurityScheme::Http(bearer));
    }
}

/// The document as JSON, naming `public_url` as the server.
pub(crate) fn document(public_url: &str) -> String {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(public_url)]);
    doc.to_json().expect("the OpenAPI document serializes")
}
