//! Owns reading texts one per line (the input of `embed` and `predict`), whole or as a stream
//! of windows.
//!
//! Every line is a text (an empty line is the empty string), a final newline only ends the last
//! line, and one trailing `\r` per line is dropped. A line that is not UTF-8 is an error naming
//! the source and the line number.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Texts one per line from a reader, as they come.
pub struct Lines<R> {
    reader: R,
    source: PathBuf,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, source: &Path) -> Self {
        Lines { reader, source: source.to_path_buf(), line: 0, buf: Vec::new() }
    }

    /// Up to `n` more texts (fewer only at the end of the input; none once it is exhausted).
    pub fn window(&mut self, n: usize) -> Result<Vec<String>> {
        self.by_ref().take(n).collect()
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                let mut line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                line = line.strip_suffix(b"\r").unwrap_or(line);
                Some(std::str::from_utf8(line).map(str::to_owned).map_err(|e| {
                    Error::data(&self.source, self.line, format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))
                }))
            }
            Err(e) => Some(Err(Error::io(&self.source, e))),
        }
    }
}

/// Splits `bytes` into texts, one per line (see the module's rules).
pub fn split_lines(bytes: &[u8], source: &Path) -> Result<Vec<String>> {
    Lines::new(bytes, source).collect()
}

/// Texts from `path`, or from standard input when `path` is `None` or `-`, as a stream.
pub fn open_texts(path: Option<&Path>) -> Result<Lines<Box<dyn BufRead>>> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            Ok(Lines::new(Box::new(BufReader::with_capacity(1 << 16, f)), p))
        }
        _ => Ok(Lines::new(Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())), Path::new("<stdin>"))),
    }
}

/// All texts from `path`, or from standard input when `path` is `None` or `-`.
pub fn read_texts(path: Option<&Path>) -> Result<Vec<String>> {
    open_texts(path)?.collect()
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
        assert_eq!(lines(b"\r\n\r"), vec!["", ""]);
    }

    #[test]
    fn windows_cover_the_input_in_order() {
        let mut l = Lines::new(&b"a\nb\nc\nd\ne"[..], Path::new("x"));
        assert_eq!(l.window(2).unwrap(), vec!["a", "b"]);
        assert_eq!(l.window(2).unwrap(), vec!["c", "d"]);
        assert_eq!(l.window(2).unwrap(), vec!["e"]);
        assert!(l.window(2).unwrap().is_empty());
        let e = Lines::new(&b"a\n\xff\n"[..], Path::new("s")).window(5).unwrap_err().to_string();
        assert!(e.starts_with("s:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let e = split_lines(b"ok\nfine\nbad \xff here\n", Path::new("in.txt")).unwrap_err().to_string();
        assert!(e.starts_with("in.txt:3: not valid UTF-8"), "{e}");
    }
}
