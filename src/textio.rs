//! Owns reading texts one per line (the input of `embed` and `predict`), whole or as a stream
//! of windows.
//!
//! Every line is a text (an empty line is the empty string), a final newline only ends the last
//! line, one trailing `\r` per line is dropped, and a UTF-8 byte order mark (EF BB BF) at the
//! start of the first line is dropped. A line that is not UTF-8 is an error naming the source and
//! the line number; the texts before it are still delivered first ([`Lines::window`] ends a
//! window early and returns the error on the next call). With [`Lines::skip_invalid`] such lines
//! are skipped instead and recorded (see [`Lines::take_skipped`]). A path that is a directory or a
//! symlink loop is refused before reading; FIFOs and devices are read as they come.

use crate::error::{check_path, Error, Result, Want};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The UTF-8 byte order mark, dropped from the start of the first line.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Texts one per line from a reader, as they come.
pub struct Lines<R> {
    reader: R,
    source: PathBuf,
    line: usize,
    buf: Vec<u8>,
    /// Skip lines that are not UTF-8 (recording them) instead of failing on them.
    skip_invalid: bool,
    /// Lines skipped and not yet taken: (line number, why).
    skipped: Vec<(usize, String)>,
    n_skipped: usize,
    /// An error met after a window already had texts: returned by the next call.
    pending: Option<Error>,
    /// The end of the input was reached: no more reads (a terminal's stdin is not read again).
    done: bool,
}

impl<R: BufRead> Lines<R> {
    /// Texts from `reader`; `source` names it in errors (a path, or `<stdin>`). Invalid
    /// UTF-8 fails unless [`Lines::skip_invalid`] is set.
    pub fn new(reader: R, source: &Path) -> Self {
        Lines { reader, source: source.to_path_buf(), line: 0, buf: Vec::new(), skip_invalid: false, skipped: Vec::new(), n_skipped: 0, pending: None, done: false }
    }

    /// Skips lines that are not valid UTF-8 instead of failing on them; each one is recorded
    /// for [`Lines::take_skipped`]. Read errors still fail.
    pub fn skip_invalid(mut self, skip: bool) -> Self {
        self.skip_invalid = skip;
        self
    }

    /// Up to `n` more texts (fewer at the end of the input, or when a bad line follows: the texts
    /// before it come first and the next call returns its error; none once the input is
    /// exhausted).
    pub fn window(&mut self, n: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next() {
                None => break,
                Some(Ok(text)) => out.push(text),
                Some(Err(e)) if out.is_empty() => return Err(e),
                Some(Err(e)) => {
                    self.pending = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The lines skipped since the last call, as (1-based line number, why), in input order.
    pub fn take_skipped(&mut self) -> Vec<(usize, String)> {
        std::mem::take(&mut self.skipped)
    }

    /// How many lines have been skipped in all.
    pub fn skipped_count(&self) -> usize {
        self.n_skipped
    }

    /// The source named in errors: the path, or `<stdin>`.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Lines read so far (valid, skipped and bad ones).
    pub fn lines_read(&self) -> usize {
        self.line
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        while !self.done {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let mut line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    line = line.strip_suffix(b"\r").unwrap_or(line);
                    if self.line == 1 {
                        line = line.strip_prefix(BOM).unwrap_or(line);
                    }
                    match std::str::from_utf8(line) {
                        Ok(text) => return Some(Ok(text.to_owned())),
                        Err(e) => {
                            let why = format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1);
                            if !self.skip_invalid {
                                return Some(Err(Error::data(&self.source, self.line, why)));
                            }
                            self.skipped.push((self.line, why));
                            self.n_skipped += 1;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(Error::io(&self.source, e))),
            }
        }
        None
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
            check_path(p, "input", Want::Stream)?;
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
        let mut l = Lines::new(&b"a\n\xff\n"[..], Path::new("s"));
        assert_eq!(l.window(5).unwrap(), vec!["a"]);
        let e = l.window(5).unwrap_err().to_string();
        assert!(e.starts_with("s:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn a_window_delivers_the_texts_before_a_bad_line_then_its_error() {
        let mut l = Lines::new(&b"a\nb\n\xff\nc\n"[..], Path::new("s"));
        assert_eq!(l.window(10).unwrap(), vec!["a", "b"]);
        let e = l.window(10).unwrap_err().to_string();
        assert!(e.starts_with("s:3: not valid UTF-8"), "{e}");
        // A bad first line of a window is its error at once.
        let mut l = Lines::new(&b"\xff\na\n"[..], Path::new("s"));
        assert!(l.window(10).unwrap_err().to_string().starts_with("s:1:"));
    }

    #[test]
    fn skip_invalid_records_each_skipped_line() {
        let mut l = Lines::new(&b"a\n\xffx\nb\nbad \xc3\nc"[..], Path::new("s")).skip_invalid(true);
        assert_eq!(l.window(2).unwrap(), vec!["a", "b"]);
        assert_eq!(l.take_skipped(), vec![(2, "not valid UTF-8 (byte 1 of the line)".to_string())]);
        assert_eq!(l.window(2).unwrap(), vec!["c"]);
        assert_eq!(l.take_skipped(), vec![(4, "not valid UTF-8 (byte 5 of the line)".to_string())]);
        assert!(l.window(2).unwrap().is_empty());
        assert_eq!((l.skipped_count(), l.lines_read()), (2, 5));
    }

    #[test]
    fn a_bom_is_dropped_from_the_first_line_only() {
        assert_eq!(lines(b"\xEF\xBB\xBFhello\n\xEF\xBB\xBFx"), vec!["hello", "\u{feff}x"]);
        assert_eq!(lines(b"\xEF\xBB\xBF"), vec![""]);
    }

    #[test]
    fn directories_and_loops_are_refused_fifos_and_devices_are_read() {
        let d = tempfile::tempdir().unwrap();
        let e = open_texts(Some(d.path())).err().unwrap().to_string();
        assert_eq!(e, format!("input {}: is a directory, not a file", d.path().display()));
        #[cfg(unix)]
        {
            let l = d.path().join("loop");
            std::os::unix::fs::symlink(&l, &l).unwrap();
            let e = open_texts(Some(&l)).err().unwrap().to_string();
            assert!(e.ends_with("symlink loop (too many levels of symbolic links)"), "{e}");
            assert!(read_texts(Some(Path::new("/dev/null"))).unwrap().is_empty());
        }
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let e = split_lines(b"ok\nfine\nbad \xff here\n", Path::new("in.txt")).unwrap_err().to_string();
        assert!(e.starts_with("in.txt:3: not valid UTF-8"), "{e}");
    }
}
