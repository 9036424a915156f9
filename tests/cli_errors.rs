//! A user error ends every binary with status 1 and its message chain, never a Rust stack
//! backtrace, even when `RUST_BACKTRACE` asks for one.

mod common;

use common::Cmd;

#[test]
fn user_errors_print_their_message_without_a_backtrace() {
    let missing = "/nonexistent/mtt-test/model";
    let runs: [(&str, Vec<&str>); 3] = [
        ("mtt", vec!["embed", "--model", missing]),
        ("mtt", vec!["eval", "--model", missing, "--task-a", "/nonexistent/a.tsv"]),
        ("task1", vec!["--model", missing]),
    ];
    for (bin, args) in runs {
        let o = Cmd::bin(bin, &args).env("RUST_BACKTRACE", "1").env("RUST_LIB_BACKTRACE", "1").run();
        let err = &o.stderr;
        assert_eq!(o.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
        assert!(err.contains("/nonexistent/"), "{args:?}: the message names no path: {err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{args:?}: {err}");
    }
}
