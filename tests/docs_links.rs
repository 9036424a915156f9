//! The documentation a newcomer walks: every relative link and image in `README.md` and in every
//! Markdown page under `docs/` (recursively) points at a file or folder of the repository, every
//! `#anchor` into a Markdown page names one of that page's headings (GitHub's slug rule), every
//! page directly under `docs/` is linked from the index `docs/README.md`, and `README.md` stays
//! within 12 KB. Plain `std`: no libtorch, no model, no network.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The README's size limit in bytes (12 KB).
const README_LIMIT: u64 = 12 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and every `.md` file under `docs/`, recursively, sorted.
fn pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if path.is_dir() && !hidden {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut out);
    out.sort();
    out
}

/// A fenced code block's opening fence (character and length), if `line` opens or closes one.
fn fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = t.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// The lines of `text` outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n && line.trim().chars().all(|x| x == c) => open = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` with every inline code span (backtick run to the next run of the same length)
/// replaced by spaces, so that nothing inside code counts as a link.
fn mask_code(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out[i..end].fill(' ');
                i = end;
            }
            None => i += n,
        }
    }
    out.into_iter().collect()
}

/// The target of an inline link whose `(` is at `s[0]`: up to the matching `)`, without a
/// title; `<...>` targets unwrapped.
fn inline_target(s: &str) -> Option<String> {
    let rest = s.strip_prefix('(')?.trim_start();
    if let Some(r) = rest.strip_prefix('<') {
        return r.find('>').map(|e| r[..e].to_string());
    }
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..i].to_string()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..i].to_string()),
            _ => {}
        }
    }
    None
}

/// The value of `attr="..."` (or single quotes) inside the HTML tag that starts `tag`.
fn attribute(tag: &str, attr: &str) -> Option<String> {
    let end = tag.find('>').unwrap_or(tag.len());
    let tag = &tag[..end];
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(attr) {
        let at = from + p;
        let before_ok = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[at + attr.len()..].trim_start();
        if before_ok {
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start();
                let offset = tag.len() - v.len();
                let q = v.chars().next()?;
                if q == '"' || q == '\'' {
                    let body = &tag[offset + 1..];
                    return body.find(q).map(|e| body[..e].to_string());
                }
                let e = v.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(v.len());
                return Some(tag[offset..offset + e].to_string());
            }
        }
        from = at + attr.len();
    }
    None
}

/// Every link target on a page with its line: inline links and images `[text](target)`,
/// reference definitions `[name]: target`, and `<img src=...>` / `<a href=...>`.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let masked = mask_code(line);
        let mut from = 0;
        while let Some(p) = masked[from..].find("](") {
            let at = from + p + 1;
            if let Some(t) = inline_target(&masked[at..]) {
                out.push((n, t));
            }
            from = at + 1;
        }
        let t = masked.trim_start();
        if t.starts_with('[') && !t.starts_with("[^") {
            if let Some(p) = t.find("]:") {
                if !t[..p].contains("](") {
                    if let Some(target) = t[p + 2..].split_whitespace().next() {
                        out.push((n, target.trim_start_matches('<').trim_end_matches('>').to_string()));
                    }
                }
            }
        }
        let lower = masked.to_ascii_lowercase();
        for (tag, attr) in [("<img", "src"), ("<a ", "href")] {
            let mut from = 0;
            while let Some(p) = lower[from..].find(tag) {
                let at = from + p;
                if let Some(v) = attribute(&masked[at..], attr) {
                    out.push((n, v));
                }
                from = at + tag.len();
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: the rendered text (link targets, HTML tags and code marks
/// gone), lower-cased; letters, digits, `-` and `_` kept, spaces turned into `-`, every other
/// character dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("](") {
            // Skip a link's target: `[text](target)` renders as `text`.
            let mut depth = 0usize;
            let mut end = r.len();
            for (i, c) in r.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i + 1;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            rest = &r[end.min(r.len())..];
        } else if let Some(close) = rest.starts_with('<').then(|| rest.find('>')).flatten() {
            rest = &rest[close + 1..];
        } else {
            let c = rest.chars().next().expect("not empty");
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The text of an ATX heading line (`# Title`, closing `#`s dropped), if it is one.
fn atx_heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let t = line.trim_start_matches(' ');
    let level = t.chars().take_while(|&c| c == '#').count();
    if indent > 3 || level == 0 || level > 6 {
        return None;
    }
    let rest = &t[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let rest = rest.trim();
    let closed = rest.trim_end_matches('#');
    Some(if closed.is_empty() || closed.ends_with(' ') { closed.trim_end() } else { rest })
}

/// Every anchor a page offers: its headings' slugs (a repeated slug gets `-1`, `-2`, … as on
/// GitHub) and explicit HTML `id` / `name` attributes.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashSet::new();
    let mut add = |base: String, out: &mut HashSet<String>| {
        let k = seen.entry(base.clone()).or_insert(0);
        out.insert(if *k == 0 { base } else { format!("{base}-{k}") });
        *k += 1;
    };
    let lines = prose_lines(text);
    for (i, &(n, line)) in lines.iter().enumerate() {
        if let Some(h) = atx_heading(line) {
            add(slug(h), &mut out);
            continue;
        }
        // Setext heading: a text line directly above a line of only `=` or `-`.
        let t = line.trim();
        let underline = t.len() >= 2 && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'));
        if underline && i > 0 {
            let (pn, prev) = lines[i - 1];
            let prev_t = prev.trim();
            if pn + 1 == n && !prev_t.is_empty() && atx_heading(prev).is_none() && !prev_t.starts_with(['-', '*', '>', '|']) {
                add(slug(prev_t), &mut out);
            }
        }
        let lower = line.to_ascii_lowercase();
        for attr in ["id", "name"] {
            let mut from = 0;
            while let Some(p) = lower[from..].find('<') {
                let at = from + p;
                if let Some(v) = attribute(&line[at..], attr) {
                    out.insert(v);
                }
                from = at + 1;
            }
        }
    }
    out
}

/// `%XX` escapes decoded (targets such as `my%20file.md`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above `root`.
fn normalise_within(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(p) => parts.push(p),
            _ => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Simple patterns of the repository's `.gitignore` (no wildcards, no negations): a link into
/// such a path works in this work tree but not in a fresh clone.
fn ignored_patterns(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join(".gitignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!') && !l.contains(['*', '?', '[']))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// The `.gitignore` pattern that ignores `rel` (a path relative to the repository), if any.
fn ignored_by<'a>(patterns: &'a [String], rel: &Path) -> Option<&'a str> {
    let rel_s = rel.to_string_lossy().replace('\\', "/");
    patterns.iter().map(String::as_str).find(|p| match p.strip_prefix('/') {
        Some(anchored) => rel_s == anchored || rel_s.starts_with(&format!("{anchored}/")),
        None if p.contains('/') => rel_s == *p || rel_s.starts_with(&format!("{p}/")),
        None => rel.components().any(|c| c.as_os_str() == std::ffi::OsStr::new(p)),
    })
}

fn is_external(target: &str) -> bool {
    let t = target.to_ascii_lowercase();
    t.starts_with("http://") || t.starts_with("https://") || t.starts_with("mailto:")
}

/// Every broken link of every page, as `page:line: message`.
fn broken_links(root: &Path) -> Vec<String> {
    let patterns = ignored_patterns(root);
    let mut anchor_cache: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut anchors_of = |file: &Path| -> HashSet<String> {
        anchor_cache.entry(file.to_path_buf()).or_insert_with(|| anchors(&fs::read_to_string(file).unwrap_or_default())).clone()
    };
    let mut problems = Vec::new();
    for page in pages(root) {
        let text = fs::read_to_string(&page).unwrap_or_else(|e| panic!("reading {}: {e}", page.display()));
        let shown = page.strip_prefix(root).unwrap_or(&page).display().to_string();
        let dir = page.parent().expect("a page has a folder");
        for (line, raw) in links(&text) {
            let target = raw.trim();
            if target.is_empty() {
                problems.push(format!("{shown}:{line}: empty link target"));
                continue;
            }
            if is_external(target) {
                continue;
            }
            let target = percent_decode(target);
            let (path_part, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let path_part = path_part.split('?').next().unwrap_or_default();
            let file = if path_part.is_empty() {
                page.clone()
            } else {
                let joined = match path_part.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => dir.join(path_part),
                };
                let Some(rel) = normalise_within(root, &joined) else {
                    problems.push(format!("{shown}:{line}: `{target}` points outside the repository"));
                    continue;
                };
                if let Some(p) = ignored_by(&patterns, &rel) {
                    problems.push(format!("{shown}:{line}: `{target}` points into a git-ignored path (.gitignore: {p}), missing from a fresh clone"));
                    continue;
                }
                let file = root.join(&rel);
                if !file.exists() {
                    problems.push(format!("{shown}:{line}: `{target}`: no such file or folder ({})", rel.display()));
                    continue;
                }
                file
            };
            if let Some(anchor) = anchor.filter(|a| !a.is_empty()) {
                if file.is_file() && file.extension().is_some_and(|e| e == "md") && !anchors_of(&file).contains(anchor) {
                    let mut known: Vec<String> = anchors_of(&file).into_iter().collect();
                    known.sort();
                    problems.push(format!(
                        "{shown}:{line}: `{target}`: no heading with anchor #{anchor} in {} (anchors there: {})",
                        file.strip_prefix(root).unwrap_or(&file).display(),
                        known.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_in_the_documentation_resolves() {
    let root = root();
    let pages = pages(&root);
    assert!(pages.len() > 1, "no pages under docs/");
    let problems = broken_links(&root);
    assert!(problems.is_empty(), "{} broken link(s) in README.md and docs/:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn readme_is_at_most_12_kb() {
    let size = fs::metadata(root().join("README.md")).expect("README.md").len();
    assert!(size <= README_LIMIT, "README.md is {size} bytes, over the limit of {README_LIMIT} (12 KB): move detail to a page under docs/");
}

#[test]
fn every_page_directly_under_docs_is_linked_from_the_index() {
    let root = root();
    let index = fs::read_to_string(root.join("docs/README.md")).expect("docs/README.md, the documentation index");
    let linked: BTreeSet<String> = links(&index)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap_or_default().trim_start_matches("./").to_string())
        .collect();
    let mut missing = Vec::new();
    for entry in fs::read_dir(root.join("docs")).expect("docs/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" && !linked.contains(&name) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "docs/README.md does not link: {}", missing.join(", "));
}

#[test]
fn slugs_follow_githubs_rule() {
    assert_eq!(slug("Quick start (fresh Linux x86_64 machine)"), "quick-start-fresh-linux-x86_64-machine");
    assert_eq!(slug("`mtt`, the command line"), "mtt-the-command-line");
    assert_eq!(slug("Earlier check against the peer (`task4` / `task3` binaries)"), "earlier-check-against-the-peer-task4--task3-binaries");
    assert_eq!(slug("See [the index](README.md) now"), "see-the-index-now");
    assert_eq!(slug("Crashes and Ctrl-C: `--resume`"), "crashes-and-ctrl-c---resume");
    let a = anchors("# Title\n\n## Same\n\n```sh\n# not a heading\n```\n\n## Same\n\nSetext\n------\n<a id=\"custom\"></a>\n");
    for want in ["title", "same", "same-1", "setext", "custom"] {
        assert!(a.contains(want), "{want} missing from {a:?}");
    }
    assert!(!a.contains("not-a-heading"));
}

#[test]
fn links_are_found_outside_code_only() {
    let page = "See [a](a.md#x) and ![img](b.png \"title\").\n`[not](code.md)` and <img src=\"c.png\" alt=\"\">\n\n```md\n[fenced](nope.md)\n```\n[ref]: d.md\n";
    let found: Vec<(usize, String)> = links(page);
    let want: [(usize, String); 4] = [(1, "a.md#x".into()), (1, "b.png".into()), (2, "c.png".into()), (7, "d.md".into())];
    assert_eq!(found, want);
    let root = Path::new("/repo");
    assert_eq!(normalise_within(root, &root.join("docs/../README.md")), Some(PathBuf::from("README.md")));
    assert_eq!(normalise_within(root, &root.join("../shared/peer/python_peer.py")), None);
    let patterns = ["/models".to_string(), "__pycache__".to_string()];
    assert_eq!(ignored_by(&patterns, Path::new("models/all-MiniLM-L6-v2")), Some("/models"));
    assert_eq!(ignored_by(&patterns, Path::new("docs/models.md")), None);
    assert_eq!(ignored_by(&patterns, Path::new("tests/python/__pycache__")), Some("__pycache__"));
    assert_eq!(percent_decode("my%20file.md"), "my file.md");
}
