//! An installed `mtt` works from any folder: without `--model` it takes `$MTT_MODEL`, then
//! `./models/all-MiniLM-L6-v2`, then the user cache that scripts/setup.sh also fills, and
//! `mtt doctor` says which.

use multi_task_transformer::testing::write_tiny_model_folder;
use std::process::Command;

fn doctor(cwd: &std::path::Path, home: &std::path::Path, model_env: Option<&std::path::Path>) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mtt"));
    c.arg("doctor").current_dir(cwd).env("HOME", home).env_remove("MTT_CACHE_DIR").env_remove("MTT_MODEL");
    if let Some(m) = model_env {
        c.env("MTT_MODEL", m);
    }
    let o = c.output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
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
    write_tiny_model_folder(&cached, 1).unwrap();
    let (ok, out) = doctor(&elsewhere, &home, None);
    assert!(ok && out.contains(&format!("model folder: {} (the user cache", cached.display())), "{out}");
    // ./models in the working folder wins over the cache.
    write_tiny_model_folder(&clone.join("models/all-MiniLM-L6-v2"), 2).unwrap();
    let (ok, out) = doctor(&clone, &home, None);
    assert!(ok && out.contains("model folder: models/all-MiniLM-L6-v2 (./models/all-MiniLM-L6-v2 in the working folder)"), "{out}");
    // $MTT_MODEL wins over both.
    let mine = d.path().join("mine");
    write_tiny_model_folder(&mine, 3).unwrap();
    let (ok, out) = doctor(&clone, &home, Some(&mine));
    assert!(ok && out.contains(&format!("model folder: {} (from $MTT_MODEL)", mine.display())), "{out}");
    // And an embedding from a folder that is not a clone.
    let o = Command::new(env!("CARGO_BIN_EXE_mtt")).args(["embed"]).current_dir(&elsewhere).env("HOME", &home).env_remove("MTT_CACHE_DIR").env_remove("MTT_MODEL")
        .stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    let mut o = o;
    o.stdin.take().unwrap().write_all(b"the film\n").unwrap();
    let o = o.wait_with_output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"embedding\""), "{}", String::from_utf8_lossy(&o.stderr));
}
