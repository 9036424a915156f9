//! A user error ends every binary with status 1 and its message chain, never a Rust stack
//! backtrace, even when `RUST_BACKTRACE` asks for one.

use std::process::Command;

#[test]
fn user_errors_print_their_message_without_a_backtrace() {
    let missing = "/nonexistent/mtt-test/model";
    let runs: [(&str, Vec<&str>); 3] = [
        (env!("CARGO_BIN_EXE_mtt"), vec!["embed", "--model", missing]),
        (env!("CARGO_BIN_EXE_mtt"), vec!["eval", "--model", missing, "--task-a", "/nonexistent/a.tsv"]),
        (env!("CARGO_BIN_EXE_task1"), vec!["--model", missing]),
    ];
    for (bin, args) in runs {
        let o = Command::new(bin).args(&args).env("RUST_BACKTRACE", "1").env("RUST_LIB_BACKTRACE", "1").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
        assert!(err.contains("/nonexistent/"), "{args:?}: the message names no path: {err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{args:?}: {err}");
    }
}
