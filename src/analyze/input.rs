//! Inputs: which files to read, in which order, and how they become chunks of whole lines.
//!
//! Paths, globs, directories and `-` (stdin) expand to a list ordered oldest first for rotated
//! sets (`access.log.2.gz`, `access.log.1`, `access.log`). Each input is read with plain
//! buffered reads (no mmap: a log truncated by `copytruncate` mid-run must not crash us),
//! decompressed when its first bytes are a gzip or zstd magic number, and cut into chunks that
//! end at a newline. A line longer than the 4 MiB chunk is cut short, so the parser rejects
//! it as too long instead of the reader growing without bound.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

use crate::logformat::{FormatSpec, KNOWN_FORMATS, LogFormat, LogSettings, detect};

/// Bytes per chunk. Fixed (never derived from the thread count), so results are too.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Lines sampled to detect a file's format.
const DETECT_LINES: usize = 64;

/// One input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// How reports name it.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// Size on disk, if known.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Stdin => None,
            Input::File(p) => std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len()),
        }
    }
}

/// An input argument that names nothing readable.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path that does not exist.
    #[error("log `{0}` does not exist")]
    NotFound(PathBuf),
    /// A glob that matches no file.
    #[error("no file matches `{0}`")]
    NoMatch(String),
    /// A malformed glob.
    #[error("`{pattern}` is not a valid glob: {message}")]
    BadGlob {
        /// The argument.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A directory that cannot be listed.
    #[error("cannot list directory `{path}`: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No inputs at all.
    #[error("no logs given")]
    Empty,
}

/// Expands arguments into inputs: `-`, files, globs (`logs/*.gz`), directories (their
/// non-hidden files). Rotated sets come oldest first; a file named twice is read once.
pub fn expand(args: &[String]) -> Result<Vec<Input>, InputError> {
    let mut out: Vec<Input> = Vec::new();
    let push = |input: Input, out: &mut Vec<Input>| {
        if !out.contains(&input) {
            out.push(input);
        }
    };
    for arg in args {
        if arg == "-" {
            push(Input::Stdin, &mut out);
            continue;
        }
        let path = Path::new(arg);
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|source| InputError::ReadDir { path: path.to_path_buf(), source })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect();
            sort_rotated(&mut files);
            for f in files {
                push(Input::File(f), &mut out);
            }
        } else if path.exists() {
            push(Input::File(path.to_path_buf()), &mut out);
        } else if arg.contains(['*', '?', '[']) {
            let matches = glob::glob(arg)
                .map_err(|e| InputError::BadGlob { pattern: arg.clone(), message: e.msg.to_string() })?;
            let mut files: Vec<PathBuf> = matches.filter_map(Result::ok).filter(|p| p.is_file()).collect();
            if files.is_empty() {
                return Err(InputError::NoMatch(arg.clone()));
            }
            sort_rotated(&mut files);
            for f in files {
                push(Input::File(f), &mut out);
            }
        } else {
            return Err(InputError::NotFound(path.to_path_buf()));
        }
    }
    if out.is_empty() {
        return Err(InputError::Empty);
    }
    Ok(out)
}

/// `access.log.2.gz` → (`access.log`, 2); `access.log` → (`access.log`, 0).
fn rotation_key(path: &Path) -> (PathBuf, std::cmp::Reverse<u64>) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).unwrap_or(&name);
    let (stem, n) = match base.rsplit_once('.') {
        Some((stem, num)) if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
            (stem.to_string(), num.parse().unwrap_or(u64::MAX))
        }
        _ => (base.to_string(), 0),
    };
    (path.with_file_name(stem), std::cmp::Reverse(n))
}

/// Orders files by name, rotated generations of one log oldest first.
pub fn sort_rotated(files: &mut [PathBuf]) {
    files.sort_by_cached_key(|p| (rotation_key(p), p.clone()));
}

/// Counts bytes as they are read: all inputs' for progress, and this input's, to say where
/// a damaged one broke off.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        self.own.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The compression an input turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip (one or more members).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "text",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Opens an input for reading, decompressed (gzip and zstd are told by their first bytes,
/// never by the file's name).
pub fn open_decompressed(input: &Input) -> io::Result<Box<dyn Read + Send>> {
    let unused = || Arc::new(AtomicU64::new(0));
    open(input, unused(), unused()).map(|(reader, _)| reader)
}

fn open(
    input: &Input,
    counter: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
) -> io::Result<(Box<dyn Read + Send>, Compression)> {
    let raw: Box<dyn Read + Send> = match input {
        Input::Stdin => Box::new(io::stdin()),
        Input::File(p) => Box::new(File::open(p)?),
    };
    let mut reader = BufReader::with_capacity(256 << 10, Counting { inner: raw, counter, own });
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        (Box::new(flate2::read::MultiGzDecoder::new(reader)), Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (Box::new(zstd::stream::read::Decoder::with_buffer(reader)?), Compression::Zstd)
    } else {
        (Box::new(reader), Compression::None)
    })
}

/// A chunk of whole lines from one input.
pub struct Chunk {
    /// Index of the input in the expanded list.
    pub input: usize,
    /// The lines (the last may lack its newline at end of file).
    pub data: Vec<u8>,
    /// The format to parse them with.
    pub format: Arc<LogFormat>,
}

/// What the reader sends, in input order.
pub enum Event {
    /// An input was opened.
    Opened {
        /// Which.
        input: usize,
        /// Its detected or configured format.
        format: String,
        /// Its compression.
        compression: Compression,
    },
    /// The next chunk.
    Chunk(Chunk),
    /// An input failed (cannot be opened, or a read or decompression error mid-way); what
    /// was read of it before the error has been sent as chunks, up to its last whole line.
    Failed {
        /// Which.
        input: usize,
        /// Why.
        error: String,
    },
}

/// The inputs' events in order, read by whichever thread asks for the next one. The analyzer
/// asks from the worker that will tally the chunk, so the bytes it parses are the ones it just
/// copied, still in its core's cache; read on another core, they came to the parser from
/// memory, which cost as much as copying every chunk once more.
pub struct Reader<'a> {
    inputs: &'a [Input],
    log: &'a LogSettings,
    spare: Receiver<Vec<u8>>,
    bytes_read: Arc<AtomicU64>,
    next_input: usize,
    open: Option<OpenInput>,
    /// A chunk that follows the `Opened` event just returned.
    pending: Option<Event>,
}

/// The input being read.
struct OpenInput {
    index: usize,
    reader: Box<dyn Read + Send>,
    compression: Compression,
    format: Option<Arc<LogFormat>>,
    /// The start of the next chunk: the unfinished line at the end of the last one.
    carry: Vec<u8>,
    /// Inside a line longer than a chunk, whose start was sent cut short.
    skipping_long_line: bool,
    ended: bool,
    /// Bytes of the file (compressed, if it is) read so far.
    consumed: Arc<AtomicU64>,
    /// The error that ended the input early, reported after the chunk read up to it.
    broken: Option<String>,
}

impl<'a> Reader<'a> {
    /// Reads `inputs` in order; `spare` returns used buffers for reuse.
    pub fn new(
        inputs: &'a [Input],
        log: &'a LogSettings,
        spare: Receiver<Vec<u8>>,
        bytes_read: Arc<AtomicU64>,
    ) -> Self {
        Reader { inputs, log, spare, bytes_read, next_input: 0, open: None, pending: None }
    }
}

impl Iterator for Reader<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.take() {
                return Some(event);
            }
            let Some(input) = &mut self.open else {
                let index = self.next_input;
                let next = self.inputs.get(index)?;
                self.next_input += 1;
                let consumed = Arc::new(AtomicU64::new(0));
                match open(next, self.bytes_read.clone(), consumed.clone()) {
                    Ok((reader, compression)) => {
                        self.open = Some(OpenInput {
                            index,
                            reader,
                            compression,
                            format: None,
                            carry: Vec::new(),
                            skipping_long_line: false,
                            ended: false,
                            consumed,
                            broken: None,
                        });
                    }
                    Err(error) => return Some(Event::Failed { input: index, error: error.to_string() }),
                }
                continue;
            };
            let index = input.index;
            let data = match input.next_chunk(&self.spare, self.log.max_line) {
                Ok(Some(data)) => data,
                Ok(None) => {
                    self.open = None;
                    continue;
                }
                Err(error) => {
                    self.open = None;
                    return Some(Event::Failed { input: index, error });
                }
            };
            let mut data = data;
            if let Some(format) = &input.format {
                let format = input.follow_headers(&mut data, format.clone());
                return Some(Event::Chunk(Chunk { input: index, data, format }));
            }
            let (format_name, parsed) = resolve_format(self.log, &data);
            let format = input.follow_headers(&mut data, Arc::new(parsed));
            self.pending = Some(Event::Chunk(Chunk { input: index, data, format }));
            return Some(Event::Opened { input: index, format: format_name, compression: input.compression });
        }
    }
}

impl OpenInput {
    /// The next chunk of whole lines, or `None` at the end of the input. A read or
    /// decompression error ends the input like its end would, after the lines read up to it
    /// (what `zcat` prints of a file cut mid-rotation); the error comes next.
    fn next_chunk(&mut self, spare: &Receiver<Vec<u8>>, max_line: usize) -> Result<Option<Vec<u8>>, String> {
        loop {
            if self.ended && self.carry.is_empty() {
                return self.broken.take().map_or(Ok(None), Err);
            }
            // A recycled buffer keeps its length, so making it full-size again zeroes only the
            // few bytes it was short (zeroing 2 MiB per chunk was measurable). What a W3C
            // header cut off may make the carry longer than a chunk.
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(CHUNK_BYTES.max(self.carry.len()), 0);
            buf[..self.carry.len()].copy_from_slice(&self.carry);
            let filled = self.carry.len();
            self.carry.clear();
            let (filled, outcome) =
                if self.ended { (filled, Filled::End) } else { fill(&mut self.reader, &mut buf, filled) };
            buf.truncate(filled);
            self.ended = !matches!(outcome, Filled::Full);
            if let Filled::Failed(error) = &outcome {
                // The line the damage cut is unfinished: a key read from it could be wrong.
                let whole = memchr::memrchr(b'\n', &buf).map_or(0, |nl| nl + 1);
                let cut = buf.len() - whole;
                buf.truncate(whole);
                self.broken = Some(self.damage(error, cut));
            }
            if self.skipping_long_line {
                match memchr::memchr(b'\n', &buf) {
                    Some(nl) => {
                        buf.drain(..=nl);
                        self.skipping_long_line = false;
                    }
                    None => continue,
                }
            }
            if buf.is_empty() {
                continue;
            }
            if matches!(outcome, Filled::Full) {
                match memchr::memrchr(b'\n', &buf) {
                    Some(nl) => {
                        self.carry.extend_from_slice(&buf[nl + 1..]);
                        buf.truncate(nl + 1);
                    }
                    None => {
                        // One line fills the whole chunk: keep enough of it to be rejected as
                        // too long, and drop the rest up to its newline.
                        buf.truncate(max_line + 1);
                        buf.push(b'\n');
                        self.skipping_long_line = true;
                    }
                }
            }
            return Ok(Some(buf));
        }
    }
}

impl OpenInput {
    /// The format of a chunk, given the one in effect before it. For a format whose lines
    /// set the format of the lines after them (W3C's `#Fields:`), the chunk is cut before such
    /// a line after its first, the rest going back to be read next, so that every chunk is
    /// read in one format: the one its first line sets, or the one in effect.
    /// The format returned is also the one in effect for the next chunk.
    fn follow_headers(&mut self, data: &mut Vec<u8>, format: Arc<LogFormat>) -> Arc<LogFormat> {
        if !format.follows_headers() {
            self.format = Some(format.clone());
            return format;
        }
        if let Some(at) = memchr::memmem::find(data, b"\n#Fields:") {
            let mut rest = data.split_off(at + 1);
            rest.extend_from_slice(&self.carry);
            self.carry = rest;
        }
        let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
        let format = match format.after_header(first) {
            Some(headed) => Arc::new(headed),
            None => format,
        };
        self.format = Some(format.clone());
        format
    }

    /// What broke the input off, where, and what was kept.
    fn damage(&self, error: &io::Error, unfinished: usize) -> String {
        let at = self.consumed.load(Ordering::Relaxed);
        let stream = self.compression.name();
        let what = match (self.compression, error.kind()) {
            (Compression::None, _) => format!("reading failed near byte {at} ({error})"),
            (_, io::ErrorKind::UnexpectedEof) => {
                format!("the {stream} stream is cut short at byte {at}, its end (a copy taken mid-rotation?)")
            }
            _ => format!("the {stream} stream is damaged before byte {at} ({error})"),
        };
        let kept = if unfinished > 0 {
            format!("; the lines before it were read, the unfinished one it cut ({unfinished} bytes) was not")
        } else {
            "; the lines before it were read".to_string()
        };
        what + &kept
    }
}

/// The configured format, or the one detected from the first lines, and how to name it. A
/// file no known format reads is read as combined, so that its lines are rejected with
/// samples, and named so that the summary says what to pass.
fn resolve_format(log: &LogSettings, first: &[u8]) -> (String, LogFormat) {
    let (spec, name) = match &log.format {
        FormatSpec::Auto => {
            let lines = first.split(|&c| c == b'\n').filter(|l| !l.is_empty()).take(DETECT_LINES);
            match detect(lines, &log.json) {
                Some(spec) => {
                    let name = spec.to_string();
                    (spec, name)
                }
                None => (FormatSpec::Combined, format!("unknown: not {KNOWN_FORMATS}; pass --format")),
            }
        }
        other => (other.clone(), other.to_string()),
    };
    let parsed = LogFormat::from_spec(&spec, &log.json).expect("a concrete, validated format");
    (name, parsed.with_max_line(log.max_line))
}

/// How a [`fill`] ended.
enum Filled {
    /// The buffer is full.
    Full,
    /// The input ended.
    End,
    /// Reading failed; what was read before is in the buffer.
    Failed(io::Error),
}

/// Reads into `buf[filled..]` until it is full, the input ends or reading fails; returns the
/// bytes filled (those before an error too) and how it ended.
fn fill(reader: &mut dyn Read, buf: &mut [u8], mut filled: usize) -> (usize, Filled) {
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return (filled, Filled::End),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Filled::Failed(e)),
        }
    }
    (filled, Filled::Full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logformat::DEFAULT_MAX_LINE;

    fn combined() -> LogSettings {
        LogSettings { format: FormatSpec::Combined, ..LogSettings::default() }
    }

    #[test]
    fn rotated_sets_oldest_first() {
        let mut files: Vec<PathBuf> = [
            "access.log",
            "access.log.1",
            "access.log.10.gz",
            "access.log.2.gz",
            "error.log",
            "access.log.3.zst",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        sort_rotated(&mut files);
        let names: Vec<_> = files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "access.log.10.gz",
                "access.log.3.zst",
                "access.log.2.gz",
                "access.log.1",
                "access.log",
                "error.log"
            ]
        );
    }

    /// The lines of every chunk read from `data`, each without its newline.
    fn lines_read(data: &[u8]) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, data).expect("written");
        let inputs = [Input::File(path)];
        let (_keep, spare) = std::sync::mpsc::channel();
        let mut lines = Vec::new();
        let counter = Arc::new(AtomicU64::new(0));
        for event in Reader::new(&inputs, &combined(), spare, counter) {
            if let Event::Chunk(c) = event {
                let whole = c.data.strip_suffix(b"\n").unwrap_or(&c.data);
                lines.extend(whole.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            }
        }
        lines
    }

    #[test]
    fn a_long_line_ending_where_a_chunk_ends_costs_no_other_line() {
        let good = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua""#;
        let mut data = vec![b'a'; 2 * CHUNK_BYTES - 1];
        data.push(b'\n');
        data.extend_from_slice(good);
        data.push(b'\n');
        let lines = lines_read(&data);
        assert_eq!(lines.len(), 2, "the long line and the next one");
        assert_eq!(lines[0].len(), DEFAULT_MAX_LINE + 1, "the long line, cut short to be rejected");
        assert_eq!(lines[1], good);
    }

    /// The lines read from a file holding `data`, and the error that ended it early.
    fn read_back(data: &[u8]) -> (usize, Option<String>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log.gz");
        std::fs::write(&path, data).expect("written");
        let inputs = [Input::File(path)];
        let (_keep, spare) = std::sync::mpsc::channel();
        let (mut lines, mut failed) = (0, None);
        let counter = Arc::new(AtomicU64::new(0));
        for event in Reader::new(&inputs, &combined(), spare, counter) {
            match event {
                Event::Chunk(c) => lines += c.data.iter().filter(|&&b| b == b'\n').count(),
                Event::Failed { error, .. } => failed = Some(error),
                Event::Opened { .. } => {}
            }
        }
        (lines, failed)
    }

    /// What a streaming decoder gives of a cut file before it fails, as whole lines: `zcat`.
    fn whole_lines_before_the_cut(mut decoder: impl Read) -> usize {
        let mut out = Vec::new();
        let _ = decoder.read_to_end(&mut out); // keeps what came before the error
        out.iter().filter(|&&b| b == b'\n').count()
    }

    #[test]
    fn a_cut_gzip_or_zstd_file_is_read_up_to_the_cut() {
        use std::io::Write as _;
        let mut text = Vec::new();
        for i in 0..20_000 {
            let line = format!(
                "10.0.{}.{} - - [17/May/2015:10:05:03 +0000] \"GET /p/{} HTTP/1.1\" 200 {} \"-\" \"ua\"\n",
                i % 250,
                i % 7,
                i * 7919 % 100_003,
                i * 31 % 9973
            );
            text.extend_from_slice(line.as_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).expect("compressed");
        let gz = gz.finish().expect("compressed");
        let zst = zstd::stream::encode_all(&text[..], 3).expect("compressed");
        for (name, whole) in [("gzip", &gz), ("zstd", &zst)] {
            assert_eq!(read_back(whole), (20_000, None), "{name}: the whole file");
            let cuts = (1..24).map(|i| whole.len() * i / 24).chain([whole.len() - 10, whole.len() - 1]);
            for cut in cuts {
                let part = &whole[..cut];
                let expected = if name == "gzip" {
                    whole_lines_before_the_cut(flate2::read::MultiGzDecoder::new(part))
                } else {
                    whole_lines_before_the_cut(zstd::stream::read::Decoder::new(part).expect("a zstd header"))
                };
                let (lines, failed) = read_back(part);
                assert_eq!(lines, expected, "{name} cut at byte {cut} of {}", whole.len());
                let failed = failed.unwrap_or_else(|| panic!("{name} cut at {cut}: no warning"));
                assert!(failed.contains(&format!("{name} stream is cut short at byte {cut}")), "{failed}");
                if cut >= whole.len() - 10 {
                    // gzip decodes up to the cut; zstd decodes whole blocks (at most 128 KiB of
                    // text each), so a cut costs it the last block's lines.
                    let lost: usize = text.split(|&b| b == b'\n').skip(lines).map(|l| l.len() + 1).sum();
                    let most = if name == "gzip" { 1 << 10 } else { 128 << 10 };
                    assert!(lost <= most, "{name}: a cut in the last 10 bytes costs {lost} bytes of text");
                }
            }
        }
    }

    #[test]
    fn a_log_of_many_chunks_is_opened_and_its_format_told_once() {
        let line = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua""#;
        let mut data = Vec::new();
        while data.len() < 3 * CHUNK_BYTES {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, &data).expect("written");
        let inputs = [Input::File(path)];
        let (_keep, spare) = std::sync::mpsc::channel();
        let counter = Arc::new(AtomicU64::new(0));
        let (mut opened, mut chunks) = (0, 0);
        for event in Reader::new(&inputs, &LogSettings::default(), spare, counter) {
            match event {
                Event::Opened { format, .. } => {
                    opened += 1;
                    assert_eq!(format, "combined");
                }
                Event::Chunk(_) => chunks += 1,
                Event::Failed { error, .. } => panic!("{error}"),
            }
        }
        assert_eq!((opened, chunks), (1, 4), "one Opened event, then the chunks");
    }
}
