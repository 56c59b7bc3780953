//! Injected time and randomness (as rustls' `TimeProvider`): protocol code never reads the clock
//! or the OS RNG itself, so vectors are reproducible from a seed and a fixed clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> u64;
}

/// A source of cryptographically secure random bytes.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn fill(&self, dest: &mut [u8]);
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests, vectors).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst)
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The operating system's RNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the OS random number generator failed");
    }
}

#[cfg(feature = "testing")]
pub use seeded::SeededEntropy;

#[cfg(feature = "testing")]
mod seeded {
    use super::Entropy;
    use parking_lot::Mutex;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    /// A deterministic ChaCha20 stream from a seed: for test vectors and tests only, so only in
    /// builds with the `testing` feature (this crate's own tests, examples and benches turn it
    /// on; the published API offers no predictable "randomness").
    #[derive(Debug)]
    pub struct SeededEntropy(Mutex<ChaCha20Rng>);

    impl SeededEntropy {
        pub fn new(seed: u64) -> Self {
            Self(Mutex::new(ChaCha20Rng::seed_from_u64(seed)))
        }
    }

    impl Entropy for SeededEntropy {
        fn fill(&self, dest: &mut [u8]) {
            self.0.lock().fill_bytes(dest)
        }
    }
}

/// Random bytes as unpadded base64url.
pub fn random_b64(entropy: &dyn Entropy, len: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; len];
    entropy.fill(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
