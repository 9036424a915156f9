//! `mtt eval --sts FILE`: the Spearman and Pearson correlation of an encoder's cosine
//! similarities with scored pairs, for a base folder (here a tiny random one) or a checkpoint.

mod common;

use common::{fixture, p, Cmd};

#[test]
fn eval_sts_scores_pairs_by_cosine_similarity() {
    let f = fixture();
    let pairs = f.root.join("pairs.tsv");
    // An identical pair (cosine 1) scored highest, a different one lowest: Spearman 1.
    std::fs::write(&pairs, "text_a\ttext_b\tscore\nthe film was great .\tthe film was great .\t5\nwho is it ?\ti hate this movie\t0.5\n").unwrap();
    let out = Cmd::mtt(["eval", "--model", p(&f.model), "--sts", p(&pairs), "--device", "cpu"]).run().ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["sts"]["n"], 2, "{v}");
    assert!((v["sts"]["spearman"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{v}");
    let bad = f.root.join("bad.tsv");
    std::fs::write(&bad, "text_a\ttext_b\tscore\na\tb\thigh\n").unwrap();
    let o = Cmd::mtt(["eval", "--model", p(&f.model), "--sts", p(&bad)]).run();
    assert_eq!(o.code(), Some(1));
    assert!(o.stderr.contains("bad.tsv:2: score 'high' is not a number"), "{}", o.stderr);
}
