//! `vlexivo demo` (the README's main command) runs to completion and shows each step.

use std::process::Command;

#[test]
fn demo_runs_and_every_step_behaves() {
    let out = Command::new(env!("CARGO_BIN_EXE_vlexivo")).arg("demo").output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status.code());
    for needle in [
        "auto top-up",
        "$0.001",
        "$0.01",
        "$0.0001",
        "$0.000505",
        "$0.019",
        "HTTP 503; same token retried → HTTP 200",
        "409 token_replayed",
        "insufficient_funds, needs $0.01",
        "budget_exceeded",
        "provider revenue $",
        "ledger verify    ok",
        "✓ demo complete",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // The provider's secret is never printed in full.
    let secret_line = stdout.lines().find(|l| l.contains("apiSecret")).expect("provider line");
    assert!(secret_line.contains("(hidden)"));
    let shown = secret_line.split("sk_test_").nth(1).unwrap_or_default();
    assert!(shown.split('…').next().unwrap_or_default().len() <= 4, "{secret_line}");
}

#[test]
fn demo_keeps_its_files_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vlexivo"))
        .args(["demo", "--quiet", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("facilitator.db").exists());
    // The kept ledger passes the CLI's own verification too.
    let verify = Command::new(env!("CARGO_BIN_EXE_vlexivo"))
        .args(["ledger", "verify", "--db"])
        .arg(dir.path().join("facilitator.db"))
        .output()
        .expect("runs");
    assert!(
        verify.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
