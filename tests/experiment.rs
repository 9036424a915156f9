//! `mtt experiment --quick` on the tiny model and tiny data, with small grid files: every output
//! file, the dropped weights, the searches, and resuming (a second invocation trains nothing, a
//! grid with reordered or equivalent settings trains nothing, an interrupted grid redoes only
//! what is missing, changed settings rerun).

mod common;

use common::{fixture, p, Cmd};
use std::path::Path;

/// Runs `mtt experiment --quick --grid GRID` on the fixture (dev = training files) into `out`.
fn experiment(f: &common::Fixture, grid: &Path, out: &Path, extra: &[&str]) -> String {
    Cmd::mtt(["experiment", "--quick", "--grid", p(grid)])
        .args(f.cli_args())
        .args(["--dev-a", p(&f.task_a), "--dev-b", p(&f.task_b), "--ood-b", p(&f.task_b), "--device", "cpu", "--out", p(out)])
        .args(extra)
        .run()
        .ok()
        .stdout
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// `results.csv`'s header and rows, read with a CSV reader.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap();
    r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect()
}

/// A name with a comma and a quote: it must not shift `results.csv`'s columns.
const NAME: &str = "uniform, \"2 epochs\"";

#[test]
fn a_grid_file_writes_every_file_and_resumes() {
    let f = fixture();
    let grid = f.root.join("grid.toml");
    std::fs::write(&grid, "[[config]]\nname = 'uniform, \"2 epochs\"'\nlr_plan = \"uniform\"\nepochs = 2\n\n[[config]]\nname = \"tuned\"\nsearch = \"tuned\"\n").unwrap();
    let out = f.root.join("exp");
    let log = experiment(&f, &grid, &out, &[]);
    let pngs = ["final_accuracy.png", "dev_accuracy.png", "training_loss.png", "accuracy_vs_time.png"];
    for file in ["results.json", "results.csv", "results.md", "grid.json", "search/tuned.json"].iter().chain(&pngs) {
        assert!(out.join(file).is_file(), "{file} missing\n{log}");
    }
    for png in pngs {
        assert!(std::fs::read(out.join(png)).unwrap().starts_with(b"\x89PNG"), "{png}");
    }
    let results = json(&out.join("results.json"));
    let rows = results["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, [NAME, "tuned"]);
    for r in rows {
        assert_eq!(r["seeds"], serde_json::json!([0, 1]), "{}", r["name"]);
        for k in ["a_accuracy", "b_accuracy", "ood_b_accuracy"] {
            let m = r[k]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&m), "{} {k} {m}", r["name"]);
        }
    }
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(row(NAME)["settings"], serde_json::json!({"lr_plan": "uniform", "epochs": 2}));
    assert_eq!(results["base"]["limit"], 64);
    // Per-epoch points and the loss curve are named.
    let per_epoch = row(NAME)["per_epoch"].as_array().unwrap();
    assert_eq!(per_epoch.len(), 2);
    assert_eq!(per_epoch[1]["epoch"], 2);
    assert!(per_epoch[1]["dev_a_accuracy"].as_f64().is_some() && per_epoch[1]["loss_b"].as_f64().is_some(), "{per_epoch:?}");
    assert!(row(NAME)["loss_curve"][0]["epoch"].as_f64().unwrap() > 0.0);
    // Run folders: metrics, config and result (with the configuration it trained), no weights.
    let run = out.join("runs/uniform-2-epochs/seed-1");
    for file in ["metrics.json", "config.json", "result.json"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    assert!(!run.join("model.safetensors").exists(), "weights are dropped without --keep-weights");
    let result = json(&run.join("result.json"));
    assert_eq!((result["config"]["seed"].as_u64(), result["config"]["epochs"].as_u64(), result["config"]["lr_plan"].as_str()), (Some(1), Some(2), Some("Uniform")));
    // The search records its trials and its choice, which the recipe's runs use; the warm-up is
    // 10% of an epoch's steps (16 rows at batch 16: 1 step, so 1).
    let tuned = json(&out.join("search/tuned.json"));
    assert_eq!(tuned["trials"].as_array().unwrap().len(), 2);
    let chosen = &tuned["chosen"];
    assert_eq!((chosen["lr_plan"].as_str(), chosen["linear_decay"].as_bool(), chosen["warmup_steps"].as_u64()), (Some("uniform"), Some(true), Some(1)));
    assert!([1e-4, 3e-4].contains(&chosen["lr"].as_f64().unwrap()), "{chosen}");
    assert_eq!(&row("tuned")["settings"], chosen);
    assert_eq!(tuned["trials"][0]["settings"]["limit"], 64);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| tuned |") && md.contains("## Search for `tuned`") && md.contains("accuracy_vs_time.png"), "{md}");
    let csv = csv_rows(&out.join("results.csv"));
    assert_eq!(csv.len(), 3);
    assert_eq!((csv[0][0].as_str(), csv[0][2].as_str(), csv[0][18].as_str()), ("config", "a_accuracy_mean", "args"));
    assert_eq!((csv[1][0].as_str(), csv[1][18].as_str(), csv[2][0].as_str()), (NAME, "lr_plan=uniform epochs=2", "tuned"));
    assert!(csv.iter().all(|r| r.len() == 19), "{csv:?}");
    // grid.json is the grid as a grid file.
    assert_eq!(json(&out.join("grid.json"))["config"][0], serde_json::json!({"name": NAME, "lr_plan": "uniform", "epochs": 2}));
    // To look at the page and plots: MTT_EXPERIMENT_KEEP=/some/dir cargo test --test experiment
    if let Ok(keep) = std::env::var("MTT_EXPERIMENT_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        for file in pngs.iter().chain(&["results.md", "results.json", "results.csv"]) {
            std::fs::copy(out.join(file), Path::new(&keep).join(file)).unwrap();
        }
    }

    // A second invocation finds every result and trains nothing.
    let again = experiment(&f, &grid, &out, &[]);
    assert_eq!(again.matches(", stored)").count(), 4, "{again}");
    assert!(!again.contains("training on"), "{again}");
    // The same settings reordered, or in the older `args` form, are the same runs.
    let same = f.root.join("same.json");
    std::fs::write(&same, r#"{"config": [{"args": "--epochs 2 --lr-plan uniform", "name": "uniform, \"2 epochs\""}, {"search": "tuned", "name": "tuned"}]}"#).unwrap();
    let reordered = experiment(&f, &same, &out, &[]);
    assert_eq!(reordered.matches(", stored)").count(), 4, "{reordered}");
    assert!(!reordered.contains("training on") && !reordered.contains("settings changed"), "{reordered}");
    // An interrupted grid (a run without its result) continues with just that run.
    std::fs::remove_file(run.join("result.json")).unwrap();
    let resumed = experiment(&f, &grid, &out, &[]);
    assert_eq!(resumed.matches(", stored)").count(), 3, "{resumed}");
    assert!(resumed.contains(&format!("] {NAME} seed 1: dev A")), "{resumed}");
    // Same seed, same numbers: every column but the timings (wall time, sentences/s).
    let metrics_only = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        rows.into_iter().map(|r| r.into_iter().enumerate().filter(|(i, _)| ![15, 16].contains(i)).map(|(_, c)| c).collect()).collect()
    };
    assert_eq!(metrics_only(csv_rows(&out.join("results.csv"))), metrics_only(csv));
    // Changed settings for a stored run: it runs again, saying what changed. The search's trials
    // set their own limit and stay stored.
    let changed = experiment(&f, &grid, &out, &["--seeds", "1", "--limit", "6"]);
    assert!(changed.contains("settings changed since the stored result (limit: 64 → 6)"), "{changed}");
    assert_eq!(changed.matches("training on").count(), 2, "{changed}");
}

#[test]
fn the_heads_only_search_picks_a_head_rate_and_epochs() {
    let f = fixture();
    let grid = f.root.join("grid.toml");
    std::fs::write(&grid, "[[config]]\nname = \"heads-only:tuned\"\nsearch = \"heads-only\"\n").unwrap();
    let out = f.root.join("exp");
    let log = experiment(&f, &grid, &out, &["--seeds", "1"]);
    let heads = json(&out.join("search/heads-only-tuned.json"));
    assert_eq!(heads["trials"].as_array().unwrap().len(), 1, "{log}");
    let chosen = &heads["chosen"];
    assert_eq!((chosen["freeze"].as_str(), chosen["lr"].as_f64()), (Some("encoder"), Some(1e-2)), "{chosen}");
    assert!((1..=3).contains(&chosen["epochs"].as_u64().unwrap()), "{chosen}");
    let result = json(&out.join("runs/heads-only-tuned/seed-0/result.json"));
    assert_eq!(result["config"]["freeze"], "Encoder");
    assert_eq!(result["epochs_run"], chosen["epochs"]);
}

#[test]
fn a_bad_grid_file_is_refused_before_training() {
    let f = fixture();
    let grid = f.root.join("grid.toml");
    let refused = |text: &str| -> String {
        std::fs::write(&grid, text).unwrap();
        let o = Cmd::mtt(["experiment", "--quick", "--grid", p(&grid), "--out", p(&f.root.join("x"))]).args(["--model", p(&f.model), "--device", "cpu"]).run();
        assert!(!o.success());
        assert!(!f.root.join("x/runs").exists(), "nothing trained");
        o.stderr
    };
    let err = refused("[[config]]\nname = \"ok\"\nfreeze = \"encoder\"\n\n[[config]]\nname = \"bad\"\nfreeze = \"elbows\"\n");
    assert!(err.contains("grid.toml:7:") && err.contains("configuration 'bad'") && err.contains("elbows"), "{err}");
    let err = refused("[[config]]\nname = \"ok\"\nargs = \"--freeze encoder\"\n\n[[config]]\nname = \"bad\"\nargs = \"--freeze elbows\"\n");
    assert!(err.contains("configuration 'bad'") && err.contains("elbows"), "{err}");
    let err = refused("[[config]]\nname = \"bad\"\nbatch_size = 0\n");
    assert!(err.contains("configuration 'bad'") && err.contains("batch_size must be at least 1"), "{err}");
}
