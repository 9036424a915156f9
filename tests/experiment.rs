//! `mtt experiment --quick` on the tiny model and tiny data: every output file, the dropped
//! weights, the searches, and a resumed run that redoes only what is missing.

mod common;

use common::fixture;
use std::path::Path;

fn experiment(f: &common::Fixture, out: &Path, extra: &[&str]) -> String {
    let p = |x: &Path| x.display().to_string();
    let mut args = vec!["experiment".to_string(), "--quick".into()];
    args.extend(f.cli_args());
    args.extend([
        "--dev-a".into(),
        p(&f.task_a),
        "--dev-b".into(),
        p(&f.task_b),
        "--ood-b".into(),
        p(&f.task_b),
        "--device".into(),
        "cpu".into(),
        "--out".into(),
        p(out),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mtt")).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "mtt experiment failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    stdout
}

#[test]
fn quick_grid_writes_every_file_and_resumes() {
    let f = fixture();
    // The default grid freezes 3 layers: a 4-layer tiny model.
    std::fs::remove_dir_all(&f.model).unwrap();
    multi_task_transformer::testing::write_tiny_model_folder_with_layers(&f.model, 11, 4).unwrap();
    let out = f.root.join("exp");
    let log = experiment(&f, &out, &[]);
    for file in ["results.json", "results.csv", "results.md", "grid.json", "final_accuracy.png", "dev_accuracy.png", "training_loss.png", "search/tuned.json", "search/heads-only-tuned.json"] {
        assert!(out.join(file).is_file(), "{file} missing\n{log}");
    }
    for png in ["final_accuracy.png", "dev_accuracy.png", "training_loss.png"] {
        assert!(std::fs::read(out.join(png)).unwrap().starts_with(b"\x89PNG"), "{png}");
    }
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let rows = results["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["uniform", "layerwise", "freeze:encoder", "freeze:all", "freeze:head-a", "freeze:head-b", "freeze:layers:3", "layer-decay:0.8", "tuned", "heads-only:tuned"]);
    for r in rows {
        assert_eq!(r["seeds"], serde_json::json!([0, 1]), "{}", r["name"]);
        for k in ["a_accuracy", "b_accuracy", "ood_b_accuracy"] {
            let m = r[k]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&m), "{} {k} {m}", r["name"]);
        }
    }
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(row("freeze:all")["trainable_params"], 0);
    assert!(row("freeze:encoder")["trainable_params"].as_u64().unwrap() < row("uniform")["trainable_params"].as_u64().unwrap());
    // Run folders: metrics, config and result, no weights.
    let run = out.join("runs/freeze-layers-3/seed-1");
    for file in ["metrics.json", "config.json", "result.json"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    assert!(!run.join("model.safetensors").exists(), "weights are dropped without --keep-weights");
    // The searches record their trials and the chosen options, which the recipe's runs use.
    let tuned: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("search/tuned.json")).unwrap()).unwrap();
    assert_eq!(tuned["trials"].as_array().unwrap().len(), 2);
    let chosen: Vec<String> = serde_json::from_value(tuned["chosen"].clone()).unwrap();
    let args: Vec<String> = serde_json::from_value(row("tuned")["args"].clone()).unwrap();
    assert!(args.windows(2).any(|w| w[0] == "--lr" && w[1] == chosen[chosen.iter().position(|x| x == "--lr").unwrap() + 1]));
    assert!(args.iter().any(|a| a == "--linear-decay"));
    let heads: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("search/heads-only-tuned.json")).unwrap()).unwrap();
    assert!(heads["chosen"].as_array().unwrap().iter().any(|a| a == "encoder"));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| heads-only:tuned |") && md.contains("## Search for `tuned`"), "{md}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 11);
    assert!(csv.starts_with("config,seeds,a_accuracy_mean,"));
    // To look at the page and plots: MTT_EXPERIMENT_KEEP=/some/dir cargo test --test experiment
    if let Ok(keep) = std::env::var("MTT_EXPERIMENT_KEEP") {
        for file in ["results.md", "final_accuracy.png", "dev_accuracy.png", "training_loss.png"] {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(out.join(file), Path::new(&keep).join(file)).unwrap();
        }
    }
    // A second invocation finds every result and trains nothing.
    let again = experiment(&f, &out, &[]);
    assert_eq!(again.matches(", stored)").count(), 20, "{again}");
    assert!(!again.contains("training on"), "{again}");
    // An interrupted grid (a run without its result) continues with just that run.
    std::fs::remove_file(out.join("runs/layerwise/seed-1/result.json")).unwrap();
    let resumed = experiment(&f, &out, &[]);
    assert_eq!(resumed.matches(", stored)").count(), 19, "{resumed}");
    assert!(resumed.contains("] layerwise seed 1: dev A"), "{resumed}");
    // Same seed, same numbers: every column but the timings (wall time, sentences/s).
    let metrics_only = |t: &str| -> Vec<String> {
        t.lines().map(|l| l.split(',').enumerate().filter(|(i, _)| ![15, 16].contains(i)).map(|(_, c)| c).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(metrics_only(&std::fs::read_to_string(out.join("results.csv")).unwrap()), metrics_only(&csv));
    // Different options for a stored run: it runs again.
    let changed = experiment(&f, &out, &["--seeds", "1", "--epochs", "2"]);
    assert!(changed.contains("options changed since the stored result"), "{changed}");
}

#[test]
fn a_bad_grid_file_is_refused_before_training() {
    let f = fixture();
    let grid = f.root.join("grid.toml");
    std::fs::write(&grid, "[[config]]\nname = \"ok\"\nargs = \"--freeze encoder\"\n\n[[config]]\nname = \"bad\"\nargs = \"--freeze elbows\"\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mtt"))
        .args(["experiment", "--quick", "--grid", &grid.display().to_string(), "--out", &f.root.join("x").display().to_string()])
        .args(["--model", &f.model.display().to_string(), "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("configuration 'bad'") && err.contains("elbows"), "{err}");
    assert!(!f.root.join("x/runs").exists(), "nothing trained");
}
