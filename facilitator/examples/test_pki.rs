//! A throwaway PKI for the HTTPS tests, generated at test time (rcgen): a CA no system trusts
//! and leaf certificates it signed, as PEM files.
//!
//! ```text
//! cargo run -p vlexivo-facilitator --example test_pki -- DIR
//! ```
//!
//! writes `DIR/ca.pem` and `good.pem`/`good-key.pem` (127.0.0.1 and localhost, valid now),
//! `expired.pem`/`expired-key.pem` (expired in 2021), `wrong-host.pem`/`wrong-host-key.pem`
//! (for another host name). The Rust TLS tests include this file as a module; the Kotlin tests
//! run it.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// A certificate chain and its key, as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct TestPki {
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub good: Leaf,
    pub expired: Leaf,
    pub wrong_host: Leaf,
}

pub fn generate(dir: &Path) -> TestPki {
    std::fs::create_dir_all(dir).expect("create the PKI dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Vlexivo test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf = |name: &str, sans: &[&str], expired: bool| {
        let key = KeyPair::generate().expect("key");
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(DnType::CommonName, sans[0]);
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &issuer).expect("sign");
        let leaf = Leaf { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}-key.pem")) };
        std::fs::write(&leaf.cert, cert.pem()).expect("write");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write");
        leaf
    };
    TestPki {
        ca_file,
        ca_pem,
        good: leaf("good", &["127.0.0.1", "localhost"], false),
        expired: leaf("expired", &["127.0.0.1", "localhost"], true),
        wrong_host: leaf("wrong-host", &["api.other.example"], false),
    }
}

#[allow(dead_code)] // unused where the tests include this file as a module
fn main() {
    let dir = std::env::args().nth(1).expect("usage: test_pki DIR");
    let pki = generate(Path::new(&dir));
    println!("TEST_PKI_CA={}", pki.ca_file.display());
}
