//! Property tests of the input readers: arbitrary bytes (and near-valid files built from the
//! pieces that trip parsers: tabs, commas, quotes, braces, CR, empty lines, bytes that are not
//! UTF-8) never panic; a file is either read, with every row's line number inside the file, or
//! rejected with an error that names the file and a line.

use multi_task_transformer::data::{read_labelled, Task};
use multi_task_transformer::textio::split_lines;
use multi_task_transformer::Error;
use proptest::prelude::*;
use std::path::Path;

/// Near-valid content: a plausible header, then lines made of tricky pieces.
fn near_valid(ext: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let header: &'static [u8] = match ext {
        "tsv" => b"text\tlabel\n",
        "csv" => b"text,label\n",
        _ => b"",
    };
    let piece = prop_oneof![
        Just(b"\t".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label\": \"x\"}\n".to_vec()),
        Just(b"{\"text\": ".to_vec()),
        Just(b"}".to_vec()),
        Just(b"what is it ?\tHUM\n".to_vec()),
        Just(b"good,positive\n".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just("é€".as_bytes().to_vec()),
        Just(b" ".to_vec()),
        "[a-z]{1,5}".prop_map(|s| s.into_bytes()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(move |ps| {
        let mut v = header.to_vec();
        for p in ps {
            v.extend(p);
        }
        v
    })
}

fn any_content(ext: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), near_valid(ext)]
}

fn check_labelled(ext: &str, bytes: &[u8], task: Option<Task>) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(format!("data.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let n_lines = bytes.split(|&b| b == b'\n').count();
    match read_labelled(&path, task) {
        Ok(src) => {
            for r in &src.rows {
                prop_assert!(r.line >= 1 && r.line <= n_lines, "row line {} outside 1..={n_lines}", r.line);
                prop_assert!(!r.text.trim().is_empty());
            }
        }
        Err(Error::Data { path: p, line, .. }) => {
            prop_assert_eq!(&p, &path);
            prop_assert!(line >= 1 && line <= n_lines.max(1), "error line {line} outside 1..={}", n_lines.max(1));
        }
        Err(other) => prop_assert!(false, "not a line-numbered data error: {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn tsv_reader_never_panics(bytes in any_content("tsv"), joint in any::<bool>()) {
        check_labelled("tsv", &bytes, if joint { None } else { Some(Task::A) })?;
    }

    #[test]
    fn csv_reader_never_panics(bytes in any_content("csv"), joint in any::<bool>()) {
        check_labelled("csv", &bytes, if joint { None } else { Some(Task::B) })?;
    }

    #[test]
    fn jsonl_reader_never_panics(bytes in any_content("jsonl"), joint in any::<bool>()) {
        check_labelled("jsonl", &bytes, if joint { None } else { Some(Task::A) })?;
    }

    #[test]
    fn text_reader_never_panics(bytes in any_content("txt")) {
        let source = Path::new("input.txt");
        match split_lines(&bytes, source) {
            Ok(lines) => {
                let n = bytes.split(|&b| b == b'\n').count();
                prop_assert!(lines.len() <= n);
                prop_assert!(lines.iter().all(|l| !l.contains('\n')));
            }
            Err(Error::Data { path, line, .. }) => {
                prop_assert_eq!(path.as_path(), source);
                prop_assert!(line >= 1);
            }
            Err(other) => prop_assert!(false, "not a line-numbered data error: {other}"),
        }
    }
}
