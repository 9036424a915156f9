//! Parity with Python sentence-transformers 3.3.1 / torch 2.4.0 on the real all-MiniLM-L6-v2.
//! `tests/fixtures/minilm_l6_v2.json` holds, for 20 tricky sentences, the token ids and the
//! mean-pooled and normalised embeddings that `SentenceTransformer.encode` produced.

mod common;

use multi_task_transformer::infer::rows;
use multi_task_transformer::{EncodeOptions, SentenceEncoder};
use serde::Deserialize;
use tch::Device;

const TOLERANCE: f32 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    max_seq_length: usize,
    sentences: Vec<GoldenSentence>,
}

#[derive(Deserialize)]
struct GoldenSentence {
    text: String,
    token_ids: Vec<i64>,
    mean_pooled: Vec<f32>,
    normalized: Vec<f32>,
}

fn golden() -> Golden {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_l6_v2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model() -> SentenceEncoder {
    SentenceEncoder::load(&common::real_model_dir(), Device::Cpu).unwrap().0
}

fn texts(g: &Golden) -> Vec<&str> {
    g.sentences.iter().map(|s| s.text.as_str()).collect()
}

/// Checks every row against the golden vectors; returns the largest error seen.
fn check(got: &[Vec<f32>], g: &Golden, want: impl Fn(&GoldenSentence) -> &[f32], what: &str) -> f32 {
    let mut worst = 0.0f32;
    for (row, s) in got.iter().zip(&g.sentences) {
        assert_eq!(row.len(), 384);
        let err = common::max_abs_diff(row, want(s));
        assert!(err <= TOLERANCE, "{what}: {:?}: max |diff| {err:e} > {TOLERANCE:e}", s.text);
        worst = worst.max(err);
    }
    eprintln!("{what}: max |diff| over {} sentences = {worst:e}", got.len());
    worst
}

#[test]
fn token_ids_match_for_every_sentence() {
    let g = golden();
    let m = model();
    assert_eq!(m.config().max_seq_length, g.max_seq_length);
    for s in &g.sentences {
        assert_eq!(m.tokenizer.encode(&s.text), s.token_ids, "token ids differ for {:?}", s.text);
    }
}

#[test]
fn mean_pooled_match_one_sentence_at_a_time() {
    let g = golden();
    let m = model();
    let got = rows(&m.encode(&texts(&g), EncodeOptions { batch_size: 1, normalize: false, ..Default::default() }).unwrap()).unwrap();
    check(&got, &g, |s| &s.mean_pooled, "mean-pooled, batch 1");
}

#[test]
fn mean_pooled_match_in_one_padded_batch() {
    let g = golden();
    let m = model();
    let got = rows(&m.encode(&texts(&g), EncodeOptions { batch_size: 32, normalize: false, ..Default::default() }).unwrap()).unwrap();
    check(&got, &g, |s| &s.mean_pooled, "mean-pooled, one batch of 20");
}

#[test]
fn mean_pooled_match_with_batches_run_at_once() {
    let g = golden();
    let m = model();
    for workers in [2, 3] {
        let got = rows(&m.encode(&texts(&g), EncodeOptions { batch_size: 3, workers, ..Default::default() }).unwrap()).unwrap();
        check(&got, &g, |s| &s.mean_pooled, &format!("mean-pooled, batches of 3, {workers} workers"));
    }
}

#[test]
fn normalized_match_alone_and_batched() {
    let g = golden();
    let m = model();
    for batch_size in [1, 32] {
        let got = rows(&m.encode(&texts(&g), EncodeOptions { batch_size, normalize: true, ..Default::default() }).unwrap()).unwrap();
        check(&got, &g, |s| &s.normalized, &format!("normalised, batch {batch_size}"));
    }
}

/// `mtt embed` as a user runs it, end to end: texts on stdin, JSON Lines out, same vectors.
/// By default the `mtt` binary of this build; `MTT_EMBED_CMD` runs another command line instead
/// (the image check sets it to `podman run --rm -i IMAGE embed`, so the container's output is held
/// to the same bound).
#[test]
fn mtt_embed_json_lines_match_golden() {
    use common::Cmd;
    let g = golden();
    let cmd = match std::env::var("MTT_EMBED_CMD") {
        Ok(line) => Cmd::new("sh").arg("-c").arg(line),
        Err(_) => Cmd::mtt(["embed", "--model"]).arg(common::real_model_dir()),
    };
    eprintln!("running {cmd:?}");
    let input: String = g.sentences.iter().map(|s| format!("{}\n", s.text)).collect();
    let lines = cmd.stdin(input).run().ok().json_lines();
    assert_eq!(lines.len(), g.sentences.len());
    let mut got = Vec::new();
    for (line, s) in lines.iter().zip(&g.sentences) {
        assert_eq!(line["text"], s.text.as_str());
        got.push(line["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<f32>>());
    }
    check(&got, &g, |s| &s.mean_pooled, "mtt embed JSON Lines");
}

/// Cosine similarity of each row of `a` to the same row of `b`.
fn row_cosines(a: &tch::Tensor, b: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(tch::Tensor::cosine_similarity(a, b, 1, 1e-12)).unwrap()
}

/// `--precision int8` (every plan this CPU runs exactly: the portable one, and the VNNI one where
/// the CPU has VNNI) and `bf16`: every golden sentence and the first 2,000 TREC-6 questions and
/// SST-3 sentences of the training files within cosine 0.99 of fp32. bf16 on a CPU without bf16
/// hardware is emulated and about 20 times slower than fp32, so there it is checked on the golden
/// sentences and the first 100 texts of each file only.
#[test]
fn reduced_precisions_stay_close_to_fp32() {
    use multi_task_transformer::data::{bundled::{TASK_A, TASK_B}, read_labelled, Task};
    use multi_task_transformer::device::CpuFeatures;
    use multi_task_transformer::precision::{Int8Plan, Precision};
    let g = golden();
    let first = |path: &str, task| -> Vec<String> {
        read_labelled(std::path::Path::new(path), Some(task)).unwrap().rows.into_iter().take(2000).map(|r| r.text).collect()
    };
    let (trec, sst) = (first(TASK_A, Task::A), first(TASK_B, Task::B));
    assert_eq!((trec.len(), sst.len()), (2000, 2000));
    let opts = EncodeOptions { batch_size: 256, token_budget: Some(1024), ..Default::default() };
    let golden_texts: Vec<String> = texts(&g).iter().map(|s| s.to_string()).collect();
    let sets = [("golden", golden_texts), ("TREC-6", trec), ("SST-3", sst)];
    let fp32 = model();
    let reference: Vec<_> = sets.iter().map(|(_, t)| fp32.encode(t, opts).unwrap()).collect();
    let bf16_native = CpuFeatures::detect().is_some_and(|c| c.bf16);
    // Every int8 plan this CPU multiplies exactly (the portable one everywhere), then bf16.
    let mut modes = vec![(Precision::Int8, Int8Plan::PORTABLE)];
    if Int8Plan::detect() != Int8Plan::PORTABLE {
        modes.push((Precision::Int8, Int8Plan::detect()));
    }
    modes.push((Precision::Bf16, Int8Plan::detect()));
    for (p, plan) in modes {
        let mut m = model();
        m.set_precision_with_plan(p, plan).unwrap();
        let name = if p == Precision::Int8 { format!("{p} ({})", plan.describe()) } else { p.to_string() };
        // Emulated bf16 (no bf16 hardware) is ~20x slower than fp32: fewer texts there.
        let n = if p == Precision::Bf16 && !bf16_native { 100 } else { 2000 };
        for ((what, texts), want) in sets.iter().zip(&reference) {
            let texts = &texts[..n.min(texts.len())];
            let cos = row_cosines(&want.narrow(0, 0, texts.len() as i64), &m.encode(texts, opts).unwrap());
            let worst = cos.iter().cloned().fold(f32::INFINITY, f32::min);
            let mean = cos.iter().sum::<f32>() / cos.len() as f32;
            eprintln!("{name}: {what} ({} texts): cosine to fp32 min {worst:.5} mean {mean:.5}", cos.len());
            for (i, c) in cos.iter().enumerate() {
                assert!(*c >= 0.99, "{name}: {what} text {i} {:?}: cosine {c} < 0.99", texts[i]);
            }
        }
    }
    // One-way switch: an int8 encoder cannot become bf16.
    let mut m = model();
    m.set_precision(Precision::Int8).unwrap();
    assert!(m.set_precision(Precision::Bf16).unwrap_err().to_string().contains("reload the model"));
}

/// Zero-shot STS-B dev (1,500 bundled pairs): the Spearman and Pearson correlation of the
/// cosine similarities equal sentence-transformers' (`.venv/bin/python scripts/sts_peer.py
/// models/all-MiniLM-L6-v2 data/stsb/dev.tsv`: 0.8103009877 and 0.8351394284 on 2026-12-02).
#[test]
fn stsb_dev_correlations_match_sentence_transformers() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let pairs = multi_task_transformer::similarity::read_scored_pairs(&root.join(multi_task_transformer::similarity::STSB_DEV)).unwrap();
    assert_eq!(pairs.len(), 1500);
    let m = multi_task_transformer::similarity::evaluate(&model(), &pairs, 64).unwrap();
    assert!((m.spearman - 0.810_300_987_7).abs() < 1e-6, "spearman {}", m.spearman);
    assert!((m.pearson - 0.835_139_428_4).abs() < 1e-6, "pearson {}", m.pearson);
}
