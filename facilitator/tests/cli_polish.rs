//! The `vlexivo` command as a shell user meets it: completions that load, exit codes and
//! environment names in `--help`, colour only on a terminal (and never with NO_COLOR).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_vlexivo");

fn vlexivo(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("NO_COLOR").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Run `cmd` under a pseudo-terminal (util-linux `script`), bounded in time; what it printed.
fn on_a_terminal(cmd: &str, no_color: bool) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("timeout -s INT 2 {cmd}"), "/dev/null"]).env_remove("NO_COLOR");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    String::from_utf8_lossy(&c.output().expect("util-linux script").stdout).into_owned()
}

#[test]
fn help_lists_exit_codes_and_environment_names() {
    for args in [&["--help"][..], &["pay", "--help"], &["serve", "--help"], &["wallet", "--help"]] {
        let out = text(&vlexivo(args));
        for (code, what) in vlexivo_facilitator::exit::TABLE {
            assert!(
                out.contains(&format!("  {code}  {what}")),
                "{args:?} --help lacks exit code {code}:\n{out}"
            );
        }
    }
    let serve = text(&vlexivo(&["serve", "--help"]));
    for var in ["VLX_ADDR", "VLX_DB", "VLX_TLS_CERT", "VLX_CORS_ORIGINS", "VLX_CA_FILE"] {
        assert!(serve.contains(&format!("[env: {var}")), "serve --help lacks {var}:\n{serve}");
    }
}

#[test]
fn completions_for_each_shell_load() {
    let bash = vlexivo(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(script.contains("pay") && script.contains("--max-price"), "bash completion lacks commands");
    // bash accepts it and registers the completion.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vlexivo.bash");
    std::fs::write(&file, &script).unwrap();
    let loaded = Command::new("bash")
        .args(["-c", &format!("source {} && complete -p vlexivo", file.display())])
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("vlexivo"));

    let zsh = String::from_utf8(vlexivo(&["completions", "zsh"]).stdout).unwrap();
    assert!(zsh.starts_with("#compdef vlexivo"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = String::from_utf8(vlexivo(&["completions", "fish"]).stdout).unwrap();
    assert!(fish.contains("complete -c vlexivo"));
    for shell in ["powershell", "elvish"] {
        assert!(vlexivo(&["completions", shell]).status.success(), "{shell}");
    }
    assert_eq!(vlexivo(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    const ESC: char = '\u{1b}';
    // Piped: no escape codes in help, errors or logs.
    assert!(!text(&vlexivo(&["--help"])).contains(ESC));
    assert!(!text(&vlexivo(&["--bogus"])).contains(ESC));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let serve = format!("{BIN} serve --addr 127.0.0.1:0 --db {}", db.display());
    let piped = Command::new("timeout")
        .args(["-s", "INT", "2"])
        .args(serve.split(' '))
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&piped.stderr);
    assert!(logs.contains("facilitator listening") && !logs.contains(ESC), "{logs}");

    // On a terminal: colour, unless NO_COLOR is set.
    let tty_err = on_a_terminal(&format!("{BIN} --bogus"), false);
    assert!(tty_err.contains("unexpected argument") && tty_err.contains(ESC), "{tty_err:?}");
    let tty_logs = on_a_terminal(&serve, false);
    assert!(tty_logs.contains("facilitator listening") && tty_logs.contains(ESC), "{tty_logs:?}");
    for cmd in [format!("{BIN} --bogus"), serve.replace("c.db", "d.db")] {
        let plain = on_a_terminal(&cmd, true);
        assert!(!plain.is_empty() && !plain.contains(ESC), "NO_COLOR: {plain:?}");
    }
}
