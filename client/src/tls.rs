//! TLS for every Rust HTTP client of Vlexivo (this crate, the `vlexivo` CLI, the Kotlin/Swift
//! library): rustls, with the roots chosen here, and one clear sentence when a handshake fails.
//!
//! - [`TrustRoots::WebPki`]: Mozilla's root certificates, compiled in (`webpki-root-certs`), so
//!   a minimal container without a CA bundle verifies the same as a laptop.
//! - [`TrustRoots::Platform`]: the operating system's verifier (`rustls-platform-verifier`):
//!   Keychain on macOS/iOS, the Windows store, the CA files on Linux.
//! - [`TrustRoots::Auto`] (default): the platform verifier where the OS has its own (macOS, iOS,
//!   Windows), WebPki elsewhere (Linux, Android, whose verifier needs the app's JNI context).
//!
//! A private CA ([`TlsConfig::add_ca_pem`], `VLX_CA_FILE`) is trusted in addition to the roots.

use std::error::Error as StdError;
use std::path::Path;
use vlexivo_core::Error;
use vlexivo_core::envvars::{self, CA_FILE, HTTPS_ONLY, TLS_ROOTS};

/// Which certificate authorities a client trusts (besides any private CA it is given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrustRoots {
    #[default]
    Auto,
    WebPki,
    Platform,
}

impl TrustRoots {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "webpki" => Ok(Self::WebPki),
            "platform" => Ok(Self::Platform),
            _ => Err(Error::Config(format!("{}: {s:?} is not auto, webpki or platform", TLS_ROOTS.name))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::WebPki => "webpki",
            Self::Platform => "platform",
        }
    }

    /// What `Auto` means on this platform.
    fn resolve(self) -> Self {
        match self {
            Self::Auto if cfg!(any(target_os = "macos", target_os = "ios", target_os = "windows")) => {
                Self::Platform
            }
            Self::Auto => Self::WebPki,
            other => other,
        }
    }
}

/// How a client verifies servers. `Default` is [`TrustRoots::Auto`], no private CA, http allowed.
#[derive(Clone, Default)]
pub struct TlsConfig {
    roots: TrustRoots,
    private_cas: Vec<reqwest::Certificate>,
    https_only: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots)
            .field("private_cas", &self.private_cas.len())
            .field("https_only", &self.https_only)
            .finish()
    }
}

impl TlsConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, then `VLX_TLS_ROOTS`, `VLX_CA_FILE` and `VLX_HTTPS_ONLY` when set.
    pub fn from_env() -> Result<Self, Error> {
        let mut cfg = Self::default();
        if let Some(r) = TLS_ROOTS.from_process()? {
            cfg.roots = TrustRoots::parse(&r)?;
        }
        if let Some(path) = CA_FILE.from_process()? {
            cfg = cfg.add_ca_file(path)?;
        }
        if let Some(v) = HTTPS_ONLY.from_process()? {
            cfg.https_only = envvars::parse_flag(&HTTPS_ONLY, &v)?;
        }
        Ok(cfg)
    }

    pub fn roots(mut self, roots: TrustRoots) -> Self {
        self.roots = roots;
        self
    }

    /// Refuse plain-http URLs (the API's and the facilitator's) before anything is sent.
    pub fn https_only(mut self, on: bool) -> Self {
        self.https_only = on;
        self
    }

    pub fn is_https_only(&self) -> bool {
        self.https_only
    }

    pub fn trust_roots(&self) -> TrustRoots {
        self.roots
    }

    /// Trust the certificate authorities in this PEM text (one or more `CERTIFICATE` blocks) in
    /// addition to the roots. Each must parse as an X.509 trust anchor.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut n = 0;
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| Error::Config(format!("CA certificate: not valid PEM ({e})")))?;
            // Parse it now, so a bad file is named here and not at the first request.
            rustls::RootCertStore::empty().add(der.clone()).map_err(|e| {
                Error::Config(format!("CA certificate {}: not a usable X.509 CA ({e})", n + 1))
            })?;
            let cert = reqwest::Certificate::from_der(&der)
                .map_err(|e| Error::Config(format!("CA certificate {}: {e}", n + 1)))?;
            self.private_cas.push(cert);
            n += 1;
        }
        if n == 0 {
            return Err(Error::Config("CA certificate: no PEM CERTIFICATE block found".into()));
        }
        Ok(self)
    }

    /// [`TlsConfig::add_ca_pem`] from a file.
    pub fn add_ca_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem =
            std::fs::read(path).map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
        self.add_ca_pem(&pem).map_err(|e| match e {
            Error::Config(why) => Error::Config(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// A reqwest builder that verifies servers as configured; add timeouts and the rest.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder().tls_backend_rustls().https_only(self.https_only);
        match self.roots.resolve() {
            TrustRoots::Platform => b.tls_certs_merge(self.private_cas.iter().cloned()),
            _ => {
                let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .filter_map(|der| reqwest::Certificate::from_der(der).ok());
                b.tls_certs_only(roots.chain(self.private_cas.iter().cloned()))
            }
        }
    }

    /// [`TlsConfig::client_builder`], built.
    pub fn client(&self) -> Result<reqwest::Client, Error> {
        self.client_builder().build().map_err(|e| Error::Config(format!("HTTP client: {}", describe(&e))))
    }
}

/// A reqwest error as one sentence with its causes. TLS failures say what is wrong with the
/// certificate and what to do; a refused plain-http URL says so.
pub fn describe(e: &reqwest::Error) -> String {
    let target = e
        .url()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")))
        .map(|s| match e.url().and_then(|u| u.port()) {
            Some(p) => format!("{s}:{p}"),
            None => s,
        })
        .unwrap_or_else(|| "the server".into());
    if e.is_builder() && e.url().is_some_and(|u| u.scheme() == "http") && is_bad_scheme(e) {
        return format!("https only: refusing the plain-http URL {target}");
    }
    if let Some(why) = tls_failure(e) {
        return format!("TLS: {target} {why}");
    }
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

fn is_bad_scheme(e: &reqwest::Error) -> bool {
    // reqwest's https_only refusal; its error type is private, its message is not.
    e.source().is_some_and(|s| s.to_string().contains("URL scheme is not allowed"))
}

/// The rustls error somewhere in the chain. hyper-rustls wraps it in `io::Error`s, whose
/// `source()` skips their payload, so those are opened by hand.
fn tls_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(explain(r));
        }
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(payload) => Some(payload as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    None
}

fn explain(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    const HINT: &str = "for a private CA, set VLX_CA_FILE or pass --ca-file";
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!("presented a certificate from an untrusted authority ({HINT})"),
            C::Expired | C::ExpiredContext { .. } => "presented an expired certificate".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "presented a certificate that is not valid yet".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "presented a certificate for another host name".into()
            }
            C::Revoked => "presented a revoked certificate".into(),
            C::BadSignature | C::BadEncoding => "presented a malformed or badly signed certificate".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "presented a certificate that is not for TLS servers".into()
            }
            other => format!("presented a certificate that does not verify ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) => "does not speak TLS (is it a plain http:// server?)".into(),
        rustls::Error::AlertReceived(a) => format!("refused the TLS handshake ({a:?})"),
        other => format!("TLS handshake failed ({other})"),
    }
}
