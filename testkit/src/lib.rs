//! Throwaway Redis and PostgreSQL servers for tests, started by `scripts/test-services.sh`
//! (the script every language's suite uses) in a temporary directory, on free loopback ports,
//! and stopped when the handle drops (a panicking test included).
//!
//! The servers must be installed (`scripts/test-services.sh install`, which `test-all.sh` runs);
//! a missing one fails the test with that hint rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's `scripts/test-services.sh`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-services.sh")
}

fn run(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run test-services.sh: {e}"));
    if !out.status.success() {
        panic!(
            "test-services.sh {} failed: {}\n(install the servers with scripts/test-services.sh install)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One server (or a cluster) in its own temporary directory.
#[derive(Debug)]
pub struct Server {
    dir: tempfile::TempDir,
    kind: Kind,
    /// The URL to connect to.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redis,
    RedisCluster,
    Postgres,
}

impl Server {
    fn start(kind: Kind) -> Self {
        let dir = tempfile::Builder::new().prefix("vlx-svc-").tempdir().expect("temp dir");
        let d = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let url = match kind {
            Kind::Redis => run(&["redis", "start", &d]),
            Kind::RedisCluster => run(&["redis", "cluster", &d]),
            Kind::Postgres => run(&["postgres", "start", &d]),
        };
        Self { dir, kind, url }
    }

    /// A redis-server on a free loopback port.
    pub fn redis() -> Self {
        Self::start(Kind::Redis)
    }

    /// A three-master Redis Cluster on loopback.
    pub fn redis_cluster() -> Self {
        Self::start(Kind::RedisCluster)
    }

    /// A PostgreSQL server on a free loopback port (`postgres` superuser, trust auth).
    pub fn postgres() -> Self {
        Self::start(Kind::Postgres)
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp dir")
    }

    /// The port of a single server.
    pub fn port(&self) -> u16 {
        let rest = self.url.rsplit_once(':').expect("port").1;
        rest.split('/').next().unwrap().parse().expect("port number")
    }

    /// Kill the server with SIGKILL (a crash): connections drop, nothing is flushed.
    pub fn kill(&self) {
        match self.kind {
            Kind::Postgres => {
                run(&["postgres", "kill", self.dir()]);
            }
            _ => {
                for e in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with("redis-") && name.ends_with(".pid") {
                        if let Ok(pid) = std::fs::read_to_string(e.path()) {
                            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                        }
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// Start it again on the same port (after [`kill`](Self::kill) or [`stop`](Self::stop)).
    pub fn restart(&self) {
        let port = self.port().to_string();
        match self.kind {
            Kind::Redis => run(&["redis", "start", self.dir(), &port]),
            Kind::Postgres => run(&["postgres", "start", self.dir(), &port]),
            Kind::RedisCluster => panic!("restart a cluster node by node is not supported"),
        };
    }

    /// Stop it cleanly.
    pub fn stop(&self) {
        run(&["stop", self.dir()]);
    }

    /// Freeze the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// black-holed host. [`resume`](Self::resume) thaws it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        assert_eq!(self.kind, Kind::Redis, "freeze/resume: single Redis servers only");
        let pid =
            std::fs::read_to_string(self.dir.path().join(format!("redis-{}.pid", self.port()))).expect("pid");
        let ok = Command::new("kill").args([sig, pid.trim()]).status().expect("kill").success();
        assert!(ok, "kill {sig} failed");
    }

    /// A URL for another database on this PostgreSQL server, created empty.
    pub fn database(&self, name: &str) -> String {
        assert_eq!(self.kind, Kind::Postgres);
        let out = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &self.url, "-c", &format!("CREATE DATABASE \"{name}\"")])
            .output()
            .expect("psql");
        assert!(out.status.success(), "CREATE DATABASE {name}: {}", String::from_utf8_lossy(&out.stderr));
        format!("{}/{name}", self.url.rsplit_once('/').unwrap().0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Thaw first: a frozen server would not act on the stop.
        for e in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("redis-")
                && name.ends_with(".pid")
                && let Ok(pid) = std::fs::read_to_string(e.path())
            {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            }
        }
        let _ = Command::new("bash").arg(script()).args(["stop", self.dir()]).output();
    }
}

/// A loopback TCP relay in front of a server that can hold back one client chunk: after
/// [`HoldingRelay::arm`], the first chunk a client sends containing `needle` waits until
/// [`HoldingRelay::release`]; later chunks on that connection queue behind it (the order a
/// server sees on one connection is kept), chunks on other connections pass at once. It models a
/// command that is late on its way to the server: a starved client task or a slow link.
#[derive(Debug)]
pub struct HoldingRelay {
    /// The relay's port on 127.0.0.1.
    pub port: u16,
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

const IDLE: u8 = 0;
const ARMED: u8 = 1;
const HOLDING: u8 = 2;

impl HoldingRelay {
    /// A relay to `127.0.0.1:target` (at most 32 connections, threads end with them).
    pub fn start(target: u16, needle: &'static [u8]) -> Self {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let port = listener.local_addr().expect("relay address").port();
        let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(IDLE));
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().take(32) {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { return };
                let (Ok(mut c_in), Ok(mut s_out)) = (client.try_clone(), server.try_clone()) else { return };
                let (mut s_in, mut c_out) = (server, client);
                let st = st.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        let chunk = &buf[..n];
                        let hit = chunk.windows(needle.len()).any(|w| w == needle);
                        if hit && st.compare_exchange(ARMED, HOLDING, SeqCst, SeqCst).is_ok() {
                            while st.load(SeqCst) == HOLDING {
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                        }
                        if s_out.write_all(chunk).is_err() {
                            return;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        if c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, state }
    }

    /// Hold the next chunk containing the needle.
    pub fn arm(&self) {
        self.state.store(ARMED, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a chunk is being held now.
    pub fn holding(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) == HOLDING
    }

    /// Let the held chunk (and everything behind it) go on.
    pub fn release(&self) {
        self.state.store(IDLE, std::sync::atomic::Ordering::SeqCst);
    }
}
