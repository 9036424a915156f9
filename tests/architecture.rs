//! The crate's modules form layers: `src/lib.rs` lists them lowest first in its opening comment
//! (section "Layers"),
//! and a module may use only the modules listed above it (and its own submodules). This test
//! reads every file of `src/` and fails on an upward or unlisted `crate::` path, which also rules
//! out import cycles between modules.

use std::path::{Path, PathBuf};

/// The top-level modules in the order `src/lib.rs`'s opening comment names them.
fn layer_order(root: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let mut order: Vec<String> = vec![];
    let doc = lib.lines().take_while(|l| l.starts_with("//!"));
    for line in doc.skip_while(|l| !l.starts_with("//! # Layers")) {
        for piece in line.split("[`").skip(1) {
            let name = piece.split(['`', ':']).next().unwrap_or("").to_string();
            if !name.is_empty() && !order.contains(&name) {
                order.push(name);
            }
        }
    }
    order
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every module named right after `crate::` in `text`, with its line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for piece in code.split("crate::").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
        // `use crate::{a, b::c}`
        if let Some(rest) = code.split("crate::{").nth(1) {
            for part in rest.split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
        }
    }
    out
}

/// The module behind a name `src/lib.rs` re-exports at the crate root.
fn reexported(name: &str) -> Option<&'static str> {
    Some(match name {
        "Error" | "Result" => "error",
        "Classifier" => "classifier",
        "EncoderConfig" | "ModelFiles" | "PoolingConfig" => "config",
        "EncodeOptions" | "SentenceEncoder" => "embed",
        "Params" => "params",
        _ => return None,
    })
}

#[test]
fn every_module_uses_only_modules_listed_above_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let order = layer_order(&root);
    let src = root.join("src");
    let mut declared: Vec<String> = vec![];
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        if (p.is_dir() && p.join("mod.rs").is_file()) || (p.extension().is_some_and(|x| x == "rs") && stem != "lib") {
            declared.push(stem);
        }
    }
    let mut problems = vec![];
    for m in &declared {
        if !order.contains(m) {
            problems.push(format!("module {m} is not named in src/lib.rs's opening list"));
        }
    }
    let mut files = vec![];
    rust_files(&src, &mut files);
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        if first == "lib.rs" || first == "bin" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let Some(own) = order.iter().position(|m| *m == module) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, used) in crate_paths(&text) {
            let used = reexported(&used).unwrap_or(&used).to_string();
            if used == module {
                continue;
            }
            match order.iter().position(|m| *m == used) {
                Some(i) if i < own => {}
                Some(_) => problems.push(format!("src/{}:{line}: {module} uses crate::{used}, which src/lib.rs lists below it", rel.display())),
                None => problems.push(format!("src/{}:{line}: crate::{used} is not a module listed in src/lib.rs", rel.display())),
            }
        }
    }
    assert!(problems.is_empty(), "{} layering problem(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_checker_sees_upward_paths() {
    let found = crate_paths("use crate::train::{a, b};\nlet x = crate::serve::f(); // crate::cli in a comment\nuse crate::{data, error::Result};");
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["train", "serve", "data", "error"]);
}
