//! File sources: static content under a root directory, one file per key.
//!
//! A key's path comes from the profiled request, so it is hostile input: it is
//! percent-decoded first (so `%2e%2e` is `..`), and refused when it is absolute, has a `..`
//! component, a NUL or a backslash ([`relative_path`], at plan time, so the key counts as
//! invalid). At read time the path is resolved with symlinks followed and must still lie
//! under the root, so a link that points outside is refused too.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{Fetched, SourceError};
use crate::failure::FailureReason;

/// Percent-decodes `text` (`%2F` → `/`); a `%` not followed by two hex digits stays as is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The path of a key's file relative to the root, or why it is refused.
pub fn relative_path(rendered: &str) -> Result<String, &'static str> {
    let decoded = percent_decode(rendered);
    let Ok(text) = String::from_utf8(decoded) else { return Err("its file path is not UTF-8") };
    if text.contains(['\0', '\\']) {
        return Err("its file path has a NUL or a backslash");
    }
    let path = Path::new(text.trim_start_matches('/'));
    if path.as_os_str().is_empty() {
        return Err("its file path is empty");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("its file path leaves the root (`..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("its file path is absolute"),
        }
    }
    Ok(path.to_string_lossy().into_owned())
}

/// A directory of static content.
pub struct FileSource {
    name: String,
    root: PathBuf,
    max_bytes: u64,
    timeout: Duration,
}

impl FileSource {
    /// A source reading under `root`, which must exist (symlinks in it are resolved now).
    pub fn new(name: &str, root: &Path, max_bytes: u64, timeout: Duration) -> Result<Self, SourceError> {
        let root = root.canonicalize().map_err(|e| {
            SourceError::fatal(name, format!("root `{}` cannot be opened: {e}", root.display()))
        })?;
        if !root.is_dir() {
            return Err(SourceError::fatal(name, format!("root `{}` is not a directory", root.display())));
        }
        Ok(FileSource { name: name.to_string(), root, max_bytes, timeout })
    }

    /// Whether the root can still be listed.
    pub fn ping(&self) -> Result<(), SourceError> {
        std::fs::read_dir(&self.root)
            .map(|_| ())
            .map_err(|e| SourceError::fatal(&self.name, format!("root `{}`: {e}", self.root.display())))
    }

    /// Reads the file at `relative` (as [`relative_path`] returned it).
    pub async fn fetch(&self, relative: &str) -> Result<Fetched, SourceError> {
        let root = self.root.clone();
        let path = self.root.join(relative);
        let max = self.max_bytes;
        let read = tokio::task::spawn_blocking(move || read_under(&root, &path, max));
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(result)) => result.map_err(|(reason, message)| SourceError {
                source_name: self.name.clone(),
                message: format!("`{relative}`: {message}"),
                retryable: false,
                reason,
            }),
            Ok(Err(join)) => Err(SourceError::fatal(&self.name, format!("`{relative}`: {join}"))),
            Err(_) => Err(SourceError {
                source_name: self.name.clone(),
                message: format!("reading `{relative}` took longer than {:?}", self.timeout),
                retryable: true,
                reason: FailureReason::SourceTimeout,
            }),
        }
    }
}

/// Reads `path` if, with symlinks resolved, it is a regular file under `root` of at most
/// `max` bytes.
fn read_under(root: &Path, path: &Path, max: u64) -> Result<Fetched, (FailureReason, String)> {
    let resolved = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Fetched::Missing),
        Err(e) => return Err((FailureReason::SourceError, e.to_string())),
    };
    if !resolved.starts_with(root) {
        return Err((
            FailureReason::SourceRefused,
            "resolves outside the root (a symlink?); not read".into(),
        ));
    }
    let file = std::fs::File::open(&resolved).map_err(|e| (FailureReason::SourceError, e.to_string()))?;
    let meta = file.metadata().map_err(|e| (FailureReason::SourceError, e.to_string()))?;
    if meta.is_dir() {
        return Ok(Fetched::Missing);
    }
    if !meta.is_file() {
        return Err((FailureReason::SourceRefused, "is not a regular file; not read".into()));
    }
    if meta.len() > max {
        return Err((
            FailureReason::TooLarge,
            format!("{} bytes, more than max_value_size ({max})", meta.len()),
        ));
    }
    let mut value = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the size check and the read: read one byte past the limit.
    file.take(max + 1).read_to_end(&mut value).map_err(|e| (FailureReason::SourceError, e.to_string()))?;
    if value.len() as u64 > max {
        return Err((FailureReason::TooLarge, format!("more than max_value_size ({max})")));
    }
    Ok(Fetched::Value { value, max_ttl: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused_before_any_read() {
        assert_eq!(relative_path("/css/site.css"), Ok("css/site.css".into()));
        assert_eq!(relative_path("img/a%20b.png"), Ok("img/a b.png".into()));
        assert_eq!(relative_path("./a.txt"), Ok("./a.txt".into()));
        for bad in [
            "../etc/passwd",
            "a/../../etc/passwd",
            "%2e%2e/etc/passwd",
            "a/%2E%2E/%2e%2e/x",
            "..%2fetc%2fpasswd",
            "a\\..\\b",
            "a%00.txt",
            "",
            "/",
            "%ff",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn percent_decoding_leaves_stray_percents() {
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%41%zz"), b"A%zz");
    }
}
