//! An installed `mtt` works from any folder: without `--model` it takes `$MTT_MODEL`, then
//! `./models/all-MiniLM-L6-v2`, then the user cache that scripts/setup.sh also fills, and
//! `mtt doctor` says which.

mod common;

use common::{write_tiny_model, Cmd};
use std::path::Path;

/// `mtt ARGS` run in `cwd` with `HOME=home`, `$MTT_MODEL` as given and no `$MTT_CACHE_DIR`.
fn mtt_in(cwd: &Path, home: &Path, model_env: Option<&Path>, args: &[&str]) -> Cmd {
    let c = Cmd::mtt(args).current_dir(cwd).env("HOME", home).env_remove("MTT_CACHE_DIR").env_remove("MTT_MODEL");
    match model_env {
        Some(m) => c.env("MTT_MODEL", m),
        None => c,
    }
}

fn doctor(cwd: &Path, home: &Path, model_env: Option<&Path>) -> (bool, String) {
    let o = mtt_in(cwd, home, model_env, &["doctor"]).run();
    (o.success(), format!("{}{}", o.stdout, o.stderr))
}

#[test]
fn the_default_model_comes_from_the_env_then_the_working_folder_then_the_user_cache() {
    let d = tempfile::tempdir().unwrap();
    let (home, elsewhere, clone) = (d.path().join("home"), d.path().join("elsewhere"), d.path().join("clone"));
    for p in [&home, &elsewhere, &clone] {
        std::fs::create_dir_all(p).unwrap();
    }
    // Nothing anywhere: the error names the folder and how to get it.
    let (ok, out) = doctor(&elsewhere, &home, None);
    assert!(!ok && out.contains("not found: not in $MTT_MODEL, ./models/ or the user cache"), "{out}");
    // The user cache.
    let cached = home.join(".cache/multi-task-transformer/models/all-MiniLM-L6-v2");
    write_tiny_model(&cached, 1);
    let (ok, out) = doctor(&elsewhere, &home, None);
    assert!(ok && out.contains(&format!("model folder: {} (the user cache", cached.display())), "{out}");
    // ./models in the working folder wins over the cache.
    write_tiny_model(&clone.join("models/all-MiniLM-L6-v2"), 2);
    let (ok, out) = doctor(&clone, &home, None);
    assert!(ok && out.contains("model folder: models/all-MiniLM-L6-v2 (./models/all-MiniLM-L6-v2 in the working folder)"), "{out}");
    // $MTT_MODEL wins over both.
    let mine = d.path().join("mine");
    write_tiny_model(&mine, 3);
    let (ok, out) = doctor(&clone, &home, Some(&mine));
    assert!(ok && out.contains(&format!("model folder: {} (from $MTT_MODEL)", mine.display())), "{out}");
    // And an embedding from a folder that is not a clone.
    let o = mtt_in(&elsewhere, &home, None, &["embed"]).stdin("the film\n").run();
    assert!(o.success() && o.stdout.contains("\"embedding\""), "{}", o.stderr);
}
