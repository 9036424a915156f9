//! Owns sentence-similarity evaluation: files of scored sentence pairs (`text_a`, `text_b`,
//! `score`, such as STS-B's 0-5 scores; TSV without quoting, CSV or JSON Lines, every bad row an
//! error naming the file and line), and how well an encoder's cosine similarities rank them
//! ([`SimilarityMetrics`]: Spearman and Pearson correlation). This is what a fine-tune keeps or
//! loses of the embeddings themselves.

use crate::data::{parse_score, read_pairs, PairNames};
use crate::embed::{EncodeOptions, SentenceEncoder};
use crate::error::Result;
use crate::metrics::{pearson, spearman, SimilarityMetrics};
use std::path::Path;

/// The bundled STS-B dev split (scores 0-5), relative to the repository root.
pub const STSB_DEV: &str = "data/stsb/dev.tsv";

/// One scored pair as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPair {
    /// 1-based line of the row in its file (the header is line 1).
    pub line: usize,
    /// The first text.
    pub text_a: String,
    /// The second text.
    pub text_b: String,
    /// The gold similarity (any finite scale: only its order and linear fit are compared).
    pub score: f64,
}

/// Reads a file of scored pairs: `.tsv` (tab-separated, no quoting) or `.csv` with a header
/// naming `text_a`, `text_b` and `score`, or `.jsonl` objects with those keys (the extensions
/// [`crate::data`] reads).
pub fn read_scored_pairs(path: &Path) -> Result<Vec<ScoredPair>> {
    read_pairs(path, PairNames::SCORED)?
        .into_iter()
        .map(|r| Ok(ScoredPair { line: r.line, score: parse_score(path, r.line, &r.value)?, text_a: r.text_a, text_b: r.text_b }))
        .collect()
}

/// How well `encoder`'s cosine similarities rank `pairs` (both texts embedded on their own and
/// L2-normalised, as sentence-transformers' `EmbeddingSimilarityEvaluator` does).
pub fn evaluate(encoder: &SentenceEncoder, pairs: &[ScoredPair], batch_size: usize) -> Result<SimilarityMetrics> {
    let opts = EncodeOptions { batch_size, normalize: true, ..Default::default() };
    let a: Vec<&str> = pairs.iter().map(|p| p.text_a.as_str()).collect();
    let b: Vec<&str> = pairs.iter().map(|p| p.text_b.as_str()).collect();
    let (ea, eb) = (encoder.encode(&a, opts)?, encoder.encode(&b, opts)?);
    let cos = Vec::<f64>::try_from((ea * eb).sum_dim_intlist(1, false, tch::Kind::Double))?;
    let gold: Vec<f64> = pairs.iter().map(|p| p.score).collect();
    Ok(SimilarityMetrics { spearman: spearman(&cos, &gold), pearson: pearson(&cos, &gold), n: pairs.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pairs_are_read_from_every_format_and_bad_rows_name_their_line() {
        let d = tempfile::tempdir().unwrap();
        let tsv = write(d.path(), "p.tsv", "text_a\ttext_b\tscore\n\"A man\tA \"man\"\t4.25\nx\ty\t0\n");
        let rows = read_scored_pairs(&tsv).unwrap();
        assert_eq!(rows[0], ScoredPair { line: 2, text_a: "\"A man".into(), text_b: "A \"man\"".into(), score: 4.25 });
        assert_eq!(rows[1].line, 3);
        let csv = write(d.path(), "p.csv", "score,text_a,text_b\n1.5,\"a, b\",c\n");
        assert_eq!(read_scored_pairs(&csv).unwrap()[0].text_a, "a, b");
        let jsonl = write(d.path(), "p.jsonl", "{\"text_a\": \"a\", \"text_b\": \"b\", \"score\": 3}\n\n");
        assert_eq!(read_scored_pairs(&jsonl).unwrap()[0].score, 3.0);
        for (name, text, want) in [
            ("bad.tsv", "text_a\ttext_b\tscore\na\tb\tfive\n", "bad.tsv:2: score 'five' is not a number"),
            ("nan.tsv", "text_a\ttext_b\tscore\na\tb\tNaN\n", "nan.tsv:2: score 'NaN' is not finite"),
            ("cols.tsv", "text_a\ttext_b\tscore\na\tb\n", "cols.tsv:2: expected 3 columns, found 2"),
            ("empty.tsv", "text_a\ttext_b\tscore\na\t \t1\n", "empty.tsv:2: 'text_b' is empty"),
            ("head.tsv", "a\tb\tscore\n", "head.tsv:1: header"),
            ("key.jsonl", "{\"text_a\": \"a\", \"score\": 1}\n", "key.jsonl:1: key 'text_b' is missing"),
        ] {
            let e = read_scored_pairs(&write(d.path(), name, text)).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
