//! Owns reading texts one per line (the input of `embed` and `predict`).

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Splits `bytes` into lines: every line is a text (an empty line is the empty string), a final
/// newline only ends the last line, and one trailing `\r` per line is dropped. A line that is not
/// UTF-8 is an error naming `source` and the line number.
pub fn split_lines(bytes: &[u8], source: &Path) -> Result<Vec<String>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            std::str::from_utf8(line)
                .map(str::to_owned)
                .map_err(|e| Error::data(source, i + 1, format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1)))
        })
        .collect()
}

/// Reads texts from `path`, or from standard input when `path` is `None` or `-`.
pub fn read_texts(path: Option<&Path>) -> Result<Vec<String>> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            split_lines(&bytes, p)
        }
        _ => {
            let mut bytes = Vec::new();
            let stdin = Path::new("<stdin>");
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| Error::io(stdin, e))?;
            split_lines(&bytes, stdin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(b: &[u8]) -> Vec<String> {
        split_lines(b, Path::new("x")).unwrap()
    }

    #[test]
    fn line_rules() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"a\n"), vec!["a"]);
        assert_eq!(lines(b"a"), vec!["a"]);
        assert_eq!(lines(b"\n"), vec![""]);
        assert_eq!(lines(b"a\n\nb\r\n"), vec!["a", "", "b"]);
        assert_eq!(lines(b"a\n\n"), vec!["a", ""]);
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let e = split_lines(b"ok\nfine\nbad \xff here\n", Path::new("in.txt")).unwrap_err().to_string();
        assert!(e.starts_with("in.txt:3: not valid UTF-8"), "{e}");
    }
}
