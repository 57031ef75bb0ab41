//! The profile store: a directory of `<UTC timestamp>.parquet` files and a `latest` pointer.
//!
//! Every file is written under a temporary name, synced and renamed into place, and only then
//! is `latest` (a one-line text file naming the profile) replaced the same way. A process
//! killed at any point leaves either the old pointer or the new one, never a half-written
//! file behind either. Profiles are created owner-only (0600): they describe production traffic.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{ProfileColumns, ProfileError, ProfileMeta, write_profile};
use crate::timestamp::{format_rfc3339, parse_rfc3339};

/// Name of the pointer file.
pub const LATEST: &str = "latest";

/// A profile directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> ProfileError + 'p {
    move |source| ProfileError::Io { action, path: path.to_path_buf(), source }
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// `2026-11-24T06:15:18.123Z` → `20261124T061518Z`.
fn file_stem(now_ms: i64) -> String {
    format_rfc3339(now_ms - now_ms.rem_euclid(1000)).replace(['-', ':'], "")
}

impl Store {
    /// A store at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a new profile and points `latest` at it; returns its path.
    pub fn write(
        &self,
        rows: &ProfileColumns,
        meta: &ProfileMeta,
        now_ms: i64,
    ) -> Result<PathBuf, ProfileError> {
        fs::create_dir_all(&self.dir).map_err(io("cannot create profile directory", &self.dir))?;
        let stem = file_stem(now_ms);
        let mut name = format!("{stem}.parquet");
        let mut n = 1;
        while self.dir.join(&name).exists() {
            name = format!("{stem}-{n}.parquet");
            n += 1;
        }
        let path = self.dir.join(&name);
        write_file(&path, rows, meta)?;
        self.point_latest_at(&name)?;
        Ok(path)
    }

    fn point_latest_at(&self, name: &str) -> Result<(), ProfileError> {
        let tmp = self.dir.join(format!(".{LATEST}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = create_private(&tmp).map_err(io("cannot create", &tmp))?;
        f.write_all(format!("{name}\n").as_bytes()).map_err(io("cannot write", &tmp))?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        let latest = self.dir.join(LATEST);
        fs::rename(&tmp, &latest).map_err(io("cannot update", &latest))?;
        // Make both renames durable.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Profiles in the store, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>, ProfileError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list", &self.dir)(e)),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "parquet")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort_by_cached_key(|p| age_order(p));
        Ok(files)
    }

    /// The profile `latest` points to; the newest file if the pointer is missing or dangling.
    pub fn latest(&self) -> Result<PathBuf, ProfileError> {
        let pointer = self.dir.join(LATEST);
        if let Ok(text) = fs::read_to_string(&pointer) {
            let name = text.trim();
            let path = self.dir.join(name);
            if !name.is_empty() && !name.contains('/') && path.is_file() {
                return Ok(path);
            }
            tracing::warn!(pointer = %pointer.display(), target = name, "`latest` names a missing profile; using the newest file instead");
        }
        self.list()?.pop().ok_or_else(|| ProfileError::Empty(self.dir.clone()))
    }

    /// The file `latest` names, if it names one that exists.
    pub fn pointed(&self) -> Option<PathBuf> {
        let name = fs::read_to_string(self.dir.join(LATEST)).ok()?;
        let path = self.dir.join(name.trim());
        (!name.trim().is_empty() && !name.contains('/') && path.is_file()).then_some(path)
    }

    /// The profiles to delete so that at most `keep` remain (the newest) and none is older
    /// than `older_than` at `now_ms`: with both, a profile goes only when both say so. The
    /// one `latest` names always stays. Leftover temporary files of writers that were killed
    /// (older than an hour) go too. Nothing is deleted unless `delete`.
    pub fn prune(
        &self,
        keep: Option<usize>,
        older_than: Option<std::time::Duration>,
        now_ms: i64,
        delete: bool,
    ) -> Result<Vec<PathBuf>, ProfileError> {
        let latest = self.pointed();
        let files = self.list()?;
        let n = files.len();
        let mut doomed = Vec::new();
        for (i, path) in files.iter().enumerate() {
            if Some(path) == latest.as_ref() {
                continue;
            }
            // `list` is oldest first, so the newest `keep` are the last ones.
            let beyond_keep = keep.is_none_or(|k| i + k < n);
            let too_old = older_than.is_none_or(|limit| {
                super::read_summary(path)
                    .ok()
                    .and_then(|meta| parse_rfc3339(&meta.created))
                    .is_some_and(|created| now_ms - created > limit.as_millis() as i64)
            });
            if beyond_keep && too_old && (keep.is_some() || older_than.is_some()) {
                doomed.push(path.clone());
            }
        }
        for tmp in fs::read_dir(&self.dir).into_iter().flatten().filter_map(Result::ok) {
            let name = tmp.file_name().to_string_lossy().into_owned();
            let stale = tmp.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && stale.is_some_and(|age| age.as_secs() > 3600)
            {
                doomed.push(tmp.path());
            }
        }
        if delete {
            for path in &doomed {
                fs::remove_file(path).map_err(io("cannot delete", path))?;
            }
        }
        Ok(doomed)
    }

    /// Resolves `latest` or a path.
    pub fn resolve(&self, spec: &str) -> Result<PathBuf, ProfileError> {
        if spec == LATEST { self.latest() } else { Ok(PathBuf::from(spec)) }
    }
}

/// Writes a profile to `path` the way the store does: under a temporary name beside it
/// (`.NAME.tmp`), synced, then renamed into place, owner-only.
pub fn write_file(path: &Path, rows: &ProfileColumns, meta: &ProfileMeta) -> Result<(), ProfileError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let file = create_private(&tmp).map_err(io("cannot create", &tmp))?;
    let mut out = BufWriter::new(file);
    let written = write_profile(&mut out, rows, meta)
        .map_err(|e| ProfileError::Corrupt { path: tmp.clone(), message: format!("cannot encode: {e}") })
        .and_then(|()| out.into_inner().map_err(|e| io("cannot write", &tmp)(e.into_error())))
        .and_then(|f| f.sync_all().map_err(io("cannot sync", &tmp)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(io("cannot move profile into place", path))
}

/// Metadata for a profile written now by this build.
pub fn meta_now(summary: super::Summary, sketches: Option<super::Sketches>, now_ms: i64) -> ProfileMeta {
    ProfileMeta {
        sketches,
        schema_version: super::SCHEMA_VERSION,
        generator: format!("preheat {}", env!("CARGO_PKG_VERSION")),
        created: format_rfc3339(now_ms),
        summary,
    }
}

/// Sorts profiles oldest first: by their timestamp, then by the number a profile written in
/// the same second gets (`T-1` after `T`, `T-10` after `T-9`), which plain name order gets
/// wrong since `-` sorts before `.`.
fn age_order(path: &Path) -> (String, u64, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".parquet").unwrap_or(&name);
    match stem.rsplit_once('-') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (base.to_string(), n.parse().unwrap_or(u64::MAX), name.clone())
        }
        _ => (stem.to_string(), 0, name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_of_one_second_sort_in_the_order_they_were_written() {
        let names = [
            "20260101T000001Z.parquet",
            "20260101T000000Z-10.parquet",
            "20260101T000000Z-2.parquet",
            "20260101T000000Z.parquet",
            "20260101T000000Z-1.parquet",
        ];
        let mut paths: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        paths.sort_by_cached_key(|p| age_order(p));
        let sorted: Vec<&str> = paths.iter().filter_map(|p| p.to_str()).collect();
        assert_eq!(
            sorted,
            [
                "20260101T000000Z.parquet",
                "20260101T000000Z-1.parquet",
                "20260101T000000Z-2.parquet",
                "20260101T000000Z-10.parquet",
                "20260101T000001Z.parquet"
            ]
        );
    }

    #[test]
    fn file_names_are_utc_timestamps() {
        assert_eq!(file_stem(971_211_336_250), "20001010T205536Z");
    }
}
