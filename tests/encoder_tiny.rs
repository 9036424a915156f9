//! Task 1 on a tiny random BERT folder (no model files): loading, pooling, batching, and the
//! `mtt embed` / `task1` command lines.

mod common;

use common::{bin, p, tiny_model, Cmd};
use multi_task_transformer::device::ThreadsGuard;
use multi_task_transformer::infer::rows;
use multi_task_transformer::{EncodeOptions, SentenceEncoder};
use std::io::Write;
use std::process::{Command, Stdio};
use tch::{Device, Tensor};

const TEXTS: [&str; 5] = ["what is the city ?", "i love this film !", "", "a", "how many films was this not very fun , awful ?"];

#[test]
fn loads_with_seed_names_and_pinned_parameter_count() {
    let t = tiny_model(1);
    let (enc, report) = SentenceEncoder::load(&t.model, Device::Cpu).unwrap();
    assert!(report.unexpected.is_empty() && report.missing.is_empty());
    // vocab 64 x 32 + positions 64 x 32 + types 2 x 32 + LayerNorm 2 x 32, then per layer
    // 4 x (32x32+32) + 2 x 2 x 32 (LayerNorms) + 32x64+64 + 64x32+32.
    let embeddings = 64 * 32 + 64 * 32 + 2 * 32 + 2 * 32;
    let layer = 4 * (32 * 32 + 32) + 4 * 32 + (32 * 64 + 64) + (64 * 32 + 32);
    assert_eq!(enc.params.numel(), embeddings + 2 * layer);
    let names: Vec<String> = enc.params.subsets().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, vec!["encoder.embeddings", "encoder.encoder.layer.0", "encoder.encoder.layer.1"]);
    assert!(enc.params.named_variables().iter().any(|(n, _)| n == "encoder.encoder.layer.1.attention.self.query.weight"));
}

#[test]
fn padding_and_batching_do_not_change_vectors_and_rows_keep_input_order() {
    let t = tiny_model(1);
    let (enc, _) = SentenceEncoder::load(&t.model, Device::Cpu).unwrap();
    let one = rows(&enc.encode(&TEXTS, EncodeOptions { batch_size: 1, normalize: false, ..Default::default() }).unwrap()).unwrap();
    let all = rows(&enc.encode(&TEXTS, EncodeOptions { batch_size: 5, normalize: false, ..Default::default() }).unwrap()).unwrap();
    for (i, (a, b)) in one.iter().zip(&all).enumerate() {
        let err = common::max_abs_diff(a, b);
        assert!(err <= 1e-5, "text {i}: alone vs padded batch differ by {err}");
    }
    // Row order is input order: encoding a text alone gives its row.
    let third = rows(&enc.encode(&[TEXTS[2]], EncodeOptions::default()).unwrap()).unwrap();
    assert!(common::max_abs_diff(&third[0], &all[2]) <= 1e-5);
    let normed = enc.encode(&TEXTS, EncodeOptions { batch_size: 2, normalize: true, ..Default::default() }).unwrap();
    let norms = Vec::<f32>::try_from(normed.norm_scalaropt_dim(2, [1].as_slice(), false)).unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    assert!(enc.encode(&TEXTS, EncodeOptions { batch_size: 0, normalize: false, ..Default::default() }).is_err());
}

/// Workers take batches in turn and put each row back in its place. Each worker runs on its
/// share of the threads (one each here), and libtorch may round a product or a reduction
/// differently on one thread than on two (~6e-7 on the tiny model on an AVX-512 AMD EPYC), so the
/// reference is one pass on one thread: the workers must give its vectors bitwise.
/// (`golden_minilm` holds the workers to Python's vectors on the real model.)
#[test]
fn batches_run_at_once_give_the_same_vectors_bitwise() {
    let t = tiny_model(1);
    let (enc, _) = SentenceEncoder::load(&t.model, Device::Cpu).unwrap();
    let threads = tch::get_num_threads();
    {
        // Two threads, whatever the machine: every worker count below then gives each worker one.
        let _two = ThreadsGuard::set(2);
        for batch_size in [1, 2] {
            let one = {
                let _one = ThreadsGuard::set(1);
                enc.encode(&TEXTS, EncodeOptions { batch_size, ..Default::default() }).unwrap()
            };
            for workers in [2, 3, 8] {
                let many = enc.encode(&TEXTS, EncodeOptions { batch_size, workers, ..Default::default() }).unwrap();
                if !one.equal(&many) {
                    let diff = (&one - &many).abs().max().double_value(&[]);
                    panic!("batch {batch_size}, {workers} workers: vectors differ by up to {diff:e}");
                }
            }
            assert_eq!(tch::get_num_threads(), 2, "the workers restore the caller's thread count");
        }
    }
    assert_eq!(tch::get_num_threads(), threads);
}

#[test]
fn incomplete_folders_and_weights_are_reported_by_name() {
    let t = tiny_model(1);
    let m = &t.model;
    // A variable missing from the weights file is an error naming it.
    let mut tensors = Tensor::read_safetensors(m.join("model.safetensors")).unwrap();
    tensors.retain(|(n, _)| n != "encoder.encoder.layer.1.output.dense.bias");
    tensors.push(("encoder.extra.weight".into(), Tensor::zeros([2], (tch::Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, m.join("model.safetensors")).unwrap();
    let e = SentenceEncoder::load(m, Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("encoder.encoder.layer.1.output.dense.bias"), "{e}");
    // Missing files are named, with the set-up hint.
    for file in ["vocab.txt", "config.json", "1_Pooling/config.json", "model.safetensors"] {
        let t = tiny_model(1);
        let m = &t.model;
        std::fs::remove_file(m.join(file)).unwrap();
        let e = SentenceEncoder::load(m, Device::Cpu).err().unwrap().to_string();
        assert!(e.contains(file.trim_end_matches(".safetensors")) && e.contains("scripts/setup.sh"), "{file}: {e}");
    }
}

#[test]
fn unexpected_tensors_are_listed() {
    let t = tiny_model(1);
    let m = &t.model;
    let mut tensors = Tensor::read_safetensors(m.join("model.safetensors")).unwrap();
    tensors.push(("encoder.extra.weight".into(), Tensor::zeros([2], (tch::Kind::Float, Device::Cpu))));
    tensors.push(("pooler.dense.bias".into(), Tensor::zeros([32], (tch::Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, m.join("model.safetensors")).unwrap();
    let (_, report) = SentenceEncoder::load(m, Device::Cpu).unwrap();
    assert_eq!(report.unexpected, vec!["encoder.extra.weight"]);
    assert_eq!(report.ignored, vec!["pooler.dense.bias"]);
}

#[test]
fn mtt_embed_line_rules_and_errors() {
    let t = tiny_model(1);
    let m = &t.model;
    // `mtt embed --model M EXTRA...` with `stdin`.
    let embed = |extra: &[&str], stdin: &[u8]| Cmd::mtt(["embed", "--model", p(m)]).args(extra).stdin(stdin).run();
    let o = embed(&["--batch-size", "2"], b"what is it ?\r\n\nlove\n");
    assert!(o.success(), "{}", o.stderr);
    let lines = o.json_lines();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["what is it ?", "", "love"]);
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 32);
    // Same vectors as the library, un-normalised unless --normalize.
    let (enc, _) = SentenceEncoder::load(m, Device::Cpu).unwrap();
    let want = rows(&enc.encode(&texts, EncodeOptions::default()).unwrap()).unwrap();
    let got: Vec<f32> = lines[2]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert!(common::max_abs_diff(&got, &want[2]) <= 1e-6);
    let out = embed(&["--normalize"], b"love").stdout;
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let norm: f64 = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap().powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    // Empty input: no output. Bad bytes, device and folder: clear errors, no panic.
    let o = embed(&[], b"");
    assert!(o.success() && o.stdout.is_empty());
    let o = embed(&[], b"fine\nbad \xff\n");
    assert!(!o.success() && o.stderr.contains("<stdin>:2: not valid UTF-8"), "{}", o.stderr);
    // Streaming: small windows give the same lines as one big window; a bad line stops after
    // the windows before its own were written.
    let input = b"how many films ?\nlove\n\nwhat is the name of the city ?\ngood\nbad film\nit\n";
    let whole = embed(&[], input).stdout;
    let windowed = embed(&["--window", "2", "--batch-size", "3"], input);
    assert!(windowed.success());
    let parse = |t: &str| -> Vec<(String, Vec<f64>)> {
        t.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["text"].as_str().unwrap().to_string(), v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            })
            .collect()
    };
    let (w, s) = (parse(&whole), parse(&windowed.stdout));
    assert_eq!(w.len(), 7);
    for ((ta, va), (tb, vb)) in w.iter().zip(&s) {
        assert_eq!(ta, tb, "input order");
        // Other batch neighbours pad differently: float noise only.
        assert!(va.iter().zip(vb).all(|(x, y)| (x - y).abs() < 1e-5), "{ta}");
    }
    let o = embed(&["--window", "2"], b"a\nb\nc\nd\nbad \xff\nf\n");
    assert!(!o.success() && o.stderr.contains("<stdin>:5: not valid UTF-8"), "{}", o.stderr);
    assert_eq!(o.stdout_lines().len(), 4, "{}", o.stdout);
    let o = embed(&["--device", "tpu"], b"x");
    assert!(!o.success() && o.stderr.contains("unknown device 'tpu'"), "{}", o.stderr);
    let o = Cmd::mtt(["embed", "--model", p(&t.dir.path().join("nope"))]).stdin("x").run();
    assert!(!o.success() && o.stderr.contains("scripts/setup.sh") && !o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn task1_prints_shape_and_first_values() {
    let t = tiny_model(1);
    let o = Cmd::bin("task1", ["--model", p(&t.model)]).stdin("").run();
    assert!(o.success(), "{}", o.stderr);
    let out = &o.stdout;
    assert_eq!(out.matches("Embedding shape: [1, 32]").count(), 3, "{out}");
    assert!(out.contains("Sentence: The quick brown fox jumps over the lazy dog."));
    assert_eq!(out.matches("First 5 values: [").count(), 3);
}

/// A reader that stops early (`mtt embed | head -1`) ends the process by SIGPIPE, quietly, not with
/// a panic from `println!` or a Broken-pipe error.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_mtt_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let t = tiny_model(1);
    for args in [vec!["doctor", "--model", p(&t.model)], vec!["embed", "--model", p(&t.model)]] {
        let mut child = Command::new(bin("mtt"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close our end of stdout before the program has written anything.
        drop(child.stdout.take());
        let text: String = (0..200).map(|i| format!("what is the city {i} ?\n")).collect();
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?} {err}", out.status);
    }
}

// The stored int8 calibration (model::calibration): read back, keyed by the weights, recalibrated
// when damaged, and optional when the cache cannot be written.
mod stored_calibration {
    use multi_task_transformer::model::calibration::CalibrationSource;
    use multi_task_transformer::precision::{Int8Plan, Precision};
    use multi_task_transformer::testing::write_tiny_model_folder;
    use multi_task_transformer::{EncodeOptions, SentenceEncoder};
    use std::path::Path;
    use tch::Device;

    fn int8(model: &Path, store: Option<&Path>) -> (SentenceEncoder, CalibrationSource) {
        let (mut e, _) = SentenceEncoder::load(model, Device::Cpu).unwrap();
        e.encoder.set_precision_stored(&mut e.params, Precision::Int8, Int8Plan::PORTABLE, &e.tokenizer, store).unwrap();
        let source = e.encoder.calibration().cloned().expect("int8 records its calibration");
        (e, source)
    }

    fn vectors(e: &SentenceEncoder) -> Vec<f32> {
        let t = e.encode(&["the cat sat on the mat", "a dog", ""], EncodeOptions::default()).unwrap();
        Vec::<f32>::try_from(&t.view([-1])).unwrap()
    }

    #[test]
    fn a_stored_calibration_is_read_back_and_gives_the_same_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let (model, other, store) = (tmp.path().join("m"), tmp.path().join("o"), tmp.path().join("store"));
        write_tiny_model_folder(&model, 1).unwrap();
        write_tiny_model_folder(&other, 2).unwrap();

        let (fresh, s) = int8(&model, None);
        assert!(matches!(s, CalibrationSource::Computed(_)), "{s:?}");
        let (first, s) = int8(&model, Some(&store));
        let CalibrationSource::ComputedAndStored(path) = s else { panic!("first start stores: {s:?}") };
        let (second, s) = int8(&model, Some(&store));
        assert_eq!(s, CalibrationSource::Stored(path.clone()), "second start reads it");
        assert_eq!(vectors(&second), vectors(&fresh), "stored calibration gives bitwise the vectors of a fresh one");
        assert_eq!(vectors(&first), vectors(&fresh));

        // Other weights: another key, never the first model's file.
        let (_, s) = int8(&other, Some(&store));
        assert!(matches!(&s, CalibrationSource::ComputedAndStored(p) if *p != path), "{s:?}");

        // A damaged file is calibrated again and replaced.
        std::fs::write(&path, b"not safetensors").unwrap();
        let (third, s) = int8(&model, Some(&store));
        assert_eq!(s, CalibrationSource::ComputedAndStored(path.clone()));
        assert_eq!(vectors(&third), vectors(&fresh));
        let (_, s) = int8(&model, Some(&store));
        assert_eq!(s, CalibrationSource::Stored(path));
    }

    #[test]
    fn an_unwritable_store_still_calibrates() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("m");
        write_tiny_model_folder(&model, 1).unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let (e, s) = int8(&model, Some(&blocker.join("store")));
        assert!(matches!(&s, CalibrationSource::Computed(why) if why.contains("file")), "{s:?}");
        let (fresh, _) = int8(&model, None);
        assert_eq!(vectors(&e), vectors(&fresh));
    }
}
