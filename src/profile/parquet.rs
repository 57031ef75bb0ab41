//! The profile's Parquet encoding.
//!
//! Plain, widely readable types: UTF-8 strings, INT64, DOUBLE, and INT64 timestamps in
//! milliseconds (UTC). Rows are written in row groups of 64 Ki rows, so readers can stream.
//! The [`Summary`] is stored as JSON under the `preheat.summary` metadata key, next to
//! `preheat.schema_version`, `preheat.generator` and `preheat.created`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::record::reader::RowIter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::{ProfileError, ProfileRow, SCHEMA_VERSION, Sketches, Summary};

const SCHEMA: &str = "
message preheat_profile {
  REQUIRED BYTE_ARRAY rule (UTF8);
  REQUIRED BYTE_ARRAY key (UTF8);
  REQUIRED INT64 count;
  REQUIRED DOUBLE score;
  OPTIONAL INT64 first_seen (TIMESTAMP(MILLIS,true));
  OPTIONAL INT64 last_seen (TIMESTAMP(MILLIS,true));
  OPTIONAL DOUBLE mean_bytes;
  OPTIONAL DOUBLE mean_latency_ms;
  OPTIONAL DOUBLE max_latency_ms;
  REQUIRED INT64 cache_hits;
  REQUIRED INT64 cache_misses;
  REQUIRED BYTE_ARRAY params (UTF8);
}";

const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Metadata stored beside the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileMeta {
    /// Schema version of the file.
    pub schema_version: u32,
    /// The program that wrote it, e.g. `preheat 0.1.0`.
    pub generator: String,
    /// When it was written (RFC 3339).
    pub created: String,
    /// The analysis summary.
    pub summary: Summary,
    /// The distinct-key and distinct-client sketches, for merging profiles (`None` in
    /// profiles written before they were kept).
    pub sketches: Option<Sketches>,
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> ProfileError {
    ProfileError::Corrupt { path: path.to_path_buf(), message: e.to_string() }
}

/// Writes rows (already in hotness order) and metadata to `out`.
pub fn write_profile<W: std::io::Write + Send>(
    out: W,
    rows: &[ProfileRow],
    meta: &ProfileMeta,
) -> Result<(), parquet::errors::ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let summary = serde_json::to_string(&meta.summary)
        .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
    let kv = vec![
        KeyValue::new("preheat.schema_version".into(), meta.schema_version.to_string()),
        KeyValue::new("preheat.generator".into(), meta.generator.clone()),
        KeyValue::new("preheat.created".into(), meta.created.clone()),
        KeyValue::new("preheat.summary".into(), summary),
    ];
    let mut kv = kv;
    if let Some(sketches) = &meta.sketches {
        let text = serde_json::to_string(sketches)
            .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
        kv.push(KeyValue::new("preheat.sketches".into(), text));
    }
    // `key` and `params` are unique per row: a dictionary or min/max statistics over them
    // cost more to build (measured: most of the write time) than they could ever save.
    let unique = |name: &str| ColumnPath::from(name);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_column_dictionary_enabled(unique("key"), false)
            .set_column_dictionary_enabled(unique("params"), false)
            .set_column_statistics_enabled(unique("key"), EnabledStatistics::None)
            .set_column_statistics_enabled(unique("params"), EnabledStatistics::None)
            .set_key_value_metadata(Some(kv))
            .set_created_by(meta.generator.clone())
            .build(),
    );
    let mut writer = SerializedFileWriter::new(out, schema, props)?;
    for group in rows.chunks(ROW_GROUP_ROWS) {
        let mut rg = writer.next_row_group()?;
        let mut column = 0;
        while let Some(mut col) = rg.next_column()? {
            write_column(&mut col, column, group)?;
            col.close()?;
            column += 1;
        }
        rg.close()?;
    }
    writer.close()?;
    Ok(())
}

fn strings(rows: &[ProfileRow], f: impl Fn(&ProfileRow) -> &str) -> Vec<ByteArray> {
    rows.iter().map(|r| ByteArray::from(f(r).as_bytes().to_vec())).collect()
}

fn optional<T: Copy>(rows: &[ProfileRow], f: impl Fn(&ProfileRow) -> Option<T>) -> (Vec<T>, Vec<i16>) {
    let values = rows.iter().filter_map(&f).collect();
    let levels = rows.iter().map(|r| i16::from(f(r).is_some())).collect();
    (values, levels)
}

fn write_column(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    index: usize,
    rows: &[ProfileRow],
) -> Result<(), parquet::errors::ParquetError> {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    match index {
        0 => col.typed::<ByteArrayType>().write_batch(&strings(rows, |r| &r.rule), None, None)?,
        1 => col.typed::<ByteArrayType>().write_batch(&strings(rows, |r| &r.key), None, None)?,
        2 => col.typed::<Int64Type>().write_batch(
            &rows.iter().map(|r| as_i64(r.count)).collect::<Vec<_>>(),
            None,
            None,
        )?,
        3 => col.typed::<DoubleType>().write_batch(
            &rows.iter().map(|r| r.score).collect::<Vec<_>>(),
            None,
            None,
        )?,
        4 | 5 => {
            let (v, d) = optional(rows, |r| if index == 4 { r.first_seen_ms } else { r.last_seen_ms });
            col.typed::<Int64Type>().write_batch(&v, Some(&d), None)?
        }
        6..=8 => {
            let (v, d) = optional(rows, |r| match index {
                6 => r.mean_bytes,
                7 => r.mean_latency_ms,
                _ => r.max_latency_ms,
            });
            col.typed::<DoubleType>().write_batch(&v, Some(&d), None)?
        }
        9 => col.typed::<Int64Type>().write_batch(
            &rows.iter().map(|r| as_i64(r.cache_hits)).collect::<Vec<_>>(),
            None,
            None,
        )?,
        10 => col.typed::<Int64Type>().write_batch(
            &rows.iter().map(|r| as_i64(r.cache_misses)).collect::<Vec<_>>(),
            None,
            None,
        )?,
        11 => col.typed::<ByteArrayType>().write_batch(&strings(rows, |r| &r.params), None, None)?,
        _ => return Err(parquet::errors::ParquetError::General(format!("unexpected column {index}"))),
    };
    Ok(())
}

fn open_reader(path: &Path) -> Result<SerializedFileReader<File>, ProfileError> {
    let file = File::open(path).map_err(|source| ProfileError::Io {
        action: "cannot open profile",
        path: path.to_path_buf(),
        source,
    })?;
    SerializedFileReader::new(file).map_err(|e| corrupt(path, e))
}

fn meta_of(path: &Path, reader: &SerializedFileReader<File>) -> Result<ProfileMeta, ProfileError> {
    let incompatible = |message: String| ProfileError::Incompatible { path: path.to_path_buf(), message };
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let version: u32 = get("preheat.schema_version")
        .ok_or_else(|| incompatible("it has no `preheat.schema_version` metadata".into()))?
        .parse()
        .map_err(|_| incompatible("its schema version is not a number".into()))?;
    if version > SCHEMA_VERSION {
        return Err(incompatible(format!(
            "schema version {version} is newer than {SCHEMA_VERSION}; upgrade preheat"
        )));
    }
    let summary =
        get("preheat.summary").ok_or_else(|| incompatible("it has no `preheat.summary` metadata".into()))?;
    let summary: Summary = serde_json::from_str(&summary)
        .map_err(|e| incompatible(format!("its summary cannot be read: {e}")))?;
    Ok(ProfileMeta {
        schema_version: version,
        generator: get("preheat.generator").unwrap_or_default(),
        created: get("preheat.created").unwrap_or_default(),
        summary,
        // Damaged sketches cost only exact merging, not the profile.
        sketches: get("preheat.sketches").and_then(|t| serde_json::from_str(&t).ok()),
    })
}

/// Reads a profile's metadata only.
pub fn read_summary(path: &Path) -> Result<ProfileMeta, ProfileError> {
    let reader = open_reader(path)?;
    meta_of(path, &reader)
}

/// A profile's rows, hottest first, decoded one row group at a time: a warm plan reads only
/// as far as its budgets reach, never the whole file.
pub struct ProfileRows {
    path: PathBuf,
    rows: RowIter<'static>,
}

impl Iterator for ProfileRows {
    type Item = Result<ProfileRow, ProfileError>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err(corrupt(&self.path, e))),
        };
        Some(
            row_from_fields(row.get_column_iter().map(|(_, f)| f))
                .ok_or_else(|| corrupt(&self.path, "a row does not have the profile's columns")),
        )
    }
}

/// Opens a profile: its metadata now, its rows as a stream.
pub fn open_profile(path: &Path) -> Result<(ProfileMeta, ProfileRows), ProfileError> {
    let reader = open_reader(path)?;
    let meta = meta_of(path, &reader)?;
    let rows = RowIter::from_file_into(Box::new(reader));
    Ok((meta, ProfileRows { path: path.to_path_buf(), rows }))
}

/// Reads metadata and up to `limit` rows (all when `None`), hottest first.
pub fn read_profile(
    path: &Path,
    limit: Option<usize>,
) -> Result<(ProfileMeta, Vec<ProfileRow>), ProfileError> {
    let (meta, rows) = open_profile(path)?;
    let rows = rows.take(limit.unwrap_or(usize::MAX)).collect::<Result<Vec<_>, _>>()?;
    Ok((meta, rows))
}

fn row_from_fields<'a>(mut fields: impl Iterator<Item = &'a Field>) -> Option<ProfileRow> {
    let mut next = || fields.next();
    let string = |f: Option<&Field>| match f {
        Some(Field::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let long = |f: Option<&Field>| match f {
        Some(Field::Long(n)) => Some(Some(*n)),
        Some(Field::TimestampMillis(n)) => Some(Some(*n)),
        Some(Field::Null) => Some(None),
        _ => None,
    };
    let double = |f: Option<&Field>| match f {
        Some(Field::Double(n)) => Some(Some(*n)),
        Some(Field::Null) => Some(None),
        _ => None,
    };
    let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
    Some(ProfileRow {
        rule: string(next())?,
        key: string(next())?,
        count: as_u64(long(next())??),
        score: double(next())??,
        first_seen_ms: long(next())?,
        last_seen_ms: long(next())?,
        mean_bytes: double(next())?,
        mean_latency_ms: double(next())?,
        max_latency_ms: double(next())?,
        cache_hits: as_u64(long(next())??),
        cache_misses: as_u64(long(next())??),
        params: string(next())?,
    })
}
