//! TLS options of the library's HTTP client (its calls to the facilitator). The app's own HTTP
//! stack (OkHttp, URLSession) verifies the paid API itself; these settings are vlexivo-client's
//! `tls` module, converted.

use vlexivo_client::tls::{TlsConfig, TrustRoots as Roots};
use vlexivo_core::Error;

/// Which certificate authorities the library trusts, besides `TlsOptions.caPem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TrustRoots {
    /// The OS verifier on iOS and macOS; Mozilla's roots (built in) on Android and Linux.
    Auto,
    /// Mozilla's root certificates, built into the library: the same on every device.
    WebPki,
    /// The operating system's verifier (iOS/macOS Keychain, Windows, Linux CA files).
    Platform,
}

/// How the library verifies the facilitator. The defaults verify against public CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct TlsOptions {
    /// `null`/`nil`: `Auto`.
    #[uniffi(default)]
    pub roots: Option<TrustRoots>,
    /// PEM text of private certificate authorities to trust as well (one or more
    /// `-----BEGIN CERTIFICATE-----` blocks).
    #[uniffi(default)]
    pub ca_pem: Option<String>,
    /// Refuse plain-http facilitators: a 402 naming one throws `facilitator_untrusted`.
    #[uniffi(default)]
    pub https_only: bool,
}

impl TlsOptions {
    pub(crate) fn to_config(&self) -> Result<TlsConfig, Error> {
        let roots = match self.roots.unwrap_or(TrustRoots::Auto) {
            TrustRoots::Auto => Roots::Auto,
            TrustRoots::WebPki => Roots::WebPki,
            TrustRoots::Platform => Roots::Platform,
        };
        let mut cfg = TlsConfig::new().roots(roots).https_only(self.https_only);
        if let Some(pem) = &self.ca_pem {
            cfg = cfg.add_ca_pem(pem.as_bytes())?;
        }
        Ok(cfg)
    }
}
