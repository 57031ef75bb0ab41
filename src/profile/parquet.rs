//! The profile's Parquet encoding.
//!
//! Plain, widely readable types: UTF-8 strings, INT64, DOUBLE, and INT64 timestamps in
//! milliseconds (UTC). Rows are written in row groups of at most 64 Ki rows, so readers can
//! stream.
//! The [`Summary`] is stored as JSON under the `preheat.summary` metadata key, next to
//! `preheat.schema_version`, `preheat.generator` and `preheat.created`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::{ColumnCloseResult, get_column_writer};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{
    OnCloseColumnChunk, SerializedColumnWriter, SerializedFileWriter, SerializedPageWriter, TrackedWrite,
};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::{ColumnDescPtr, ColumnPath, SchemaDescriptor};
use rayon::prelude::*;

use super::columns::{ProfileColumns, RowGroup, TextColumn};
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

/// Writes rows (already in hotness order) and metadata to `out`, a Parquet row group for
/// each of the rows' groups.
pub fn write_profile<W: std::io::Write + Send>(
    out: W,
    rows: &ProfileColumns,
    meta: &ProfileMeta,
) -> Result<(), ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let summary = serde_json::to_string(&meta.summary).map_err(|e| ParquetError::General(e.to_string()))?;
    let kv = vec![
        KeyValue::new("preheat.schema_version".into(), meta.schema_version.to_string()),
        KeyValue::new("preheat.generator".into(), meta.generator.clone()),
        KeyValue::new("preheat.created".into(), meta.created.clone()),
        KeyValue::new("preheat.summary".into(), summary),
    ];
    let mut kv = kv;
    if let Some(sketches) = &meta.sketches {
        let text = serde_json::to_string(sketches).map_err(|e| ParquetError::General(e.to_string()))?;
        kv.push(KeyValue::new("preheat.sketches".into(), text));
    }
    // `key` and `params` are unique per row: a dictionary or min/max statistics over them
    // cost more to build (measured: most of the write time) than they could ever save. Rows
    // are in hotness order, so every row group holds nearly every rule, and min/max
    // statistics on `rule` could never let a reader skip one (they took 5 ms of the
    // column's 13 on the benchmark log). Scores, times and means are nearly unique too, so
    // they get no dictionary; `rule` and the counts repeat, and keep theirs.
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_key_value_metadata(Some(kv))
        .set_created_by(meta.generator.clone());
    for name in ["key", "params", "rule"] {
        builder = builder.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
    }
    const REPEATING: [&str; 4] = ["rule", "count", "cache_hits", "cache_misses"];
    for name in COLUMNS.iter().filter(|c| !REPEATING.contains(c)) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*name), false);
    }
    let props = Arc::new(builder.build());
    // Every column chunk of every row group is encoded and compressed on its own, in
    // parallel, then spliced into the file in order: written one after the other, they kept
    // one core busy for a sixth of the analyzer's run while the other waited.
    let columns = SchemaDescriptor::new(schema.clone());
    let groups: Vec<&RowGroup> = rows.groups().iter().filter(|g| !g.is_empty()).collect();
    let chunks: Vec<(usize, usize)> =
        (0..groups.len()).flat_map(|g| (0..columns.num_columns()).map(move |c| (g, c))).collect();
    let mut encoded = chunks
        .par_iter()
        .map(|&(g, c)| encode_column(columns.column(c), &props, c, groups[g], rows.rules()))
        .collect::<Vec<_>>()
        .into_iter();
    let mut writer = SerializedFileWriter::new(out, schema, props.clone())?;
    for _ in &groups {
        let mut rg = writer.next_row_group()?;
        for _ in 0..columns.num_columns() {
            let (data, close) =
                encoded.next().ok_or_else(|| ParquetError::General("a column is missing".into()))??;
            rg.append_column(&data, close)?;
        }
        rg.close()?;
    }
    writer.close()?;
    Ok(())
}

/// Encodes and compresses one column chunk into memory, with what the file's footer needs
/// to know about it.
fn encode_column(
    descr: ColumnDescPtr,
    props: &WriterPropertiesPtr,
    index: usize,
    rows: &RowGroup,
    rules: &[String],
) -> Result<(bytes::Bytes, ColumnCloseResult), ParquetError> {
    let mut sink = TrackedWrite::new(Vec::new());
    let mut closed = None;
    {
        let pages = Box::new(SerializedPageWriter::new(&mut sink));
        let on_close: OnCloseColumnChunk<'_> = Box::new(|result| {
            closed = Some(result);
            Ok(())
        });
        let mut col =
            SerializedColumnWriter::new(get_column_writer(descr, props.clone(), pages), Some(on_close));
        write_column(&mut col, index, rows, rules)?;
        col.close()?;
    }
    let closed = closed.ok_or_else(|| ParquetError::General("a column was not closed".into()))?;
    Ok((bytes::Bytes::from(sink.into_inner()?), closed))
}

/// A string column's values as slices of one shared buffer, rather than one allocation each.
fn strings(column: &TextColumn) -> Vec<ByteArray> {
    let (text, ends) = column.parts();
    let all = bytes::Bytes::copy_from_slice(text.as_bytes());
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let value = ByteArray::from(all.slice(start..end));
            start = end;
            value
        })
        .collect()
}

fn write_column(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    index: usize,
    rows: &RowGroup,
    rules: &[String],
) -> Result<(), ParquetError> {
    let as_i64 = |n: &[u64]| n.iter().map(|&n| i64::try_from(n).unwrap_or(i64::MAX)).collect::<Vec<_>>();
    match index {
        0 => {
            // Copies of the names for this task alone: every value clones one, and clones of
            // shared ones would bump reference counts that the other core bumps too.
            let own: Vec<ByteArray> = rules.iter().map(|r| ByteArray::from(r.as_str())).collect();
            let names = rows.rule.iter().map(|&r| own.get(r as usize).cloned().unwrap_or_default());
            col.typed::<ByteArrayType>().write_batch(&names.collect::<Vec<_>>(), None, None)?
        }
        1 => col.typed::<ByteArrayType>().write_batch(&strings(&rows.key), None, None)?,
        2 => col.typed::<Int64Type>().write_batch(&as_i64(&rows.count), None, None)?,
        3 => col.typed::<DoubleType>().write_batch(&rows.score, None, None)?,
        4 | 5 => {
            let (v, d) = if index == 4 { &rows.first_seen_ms } else { &rows.last_seen_ms }.present();
            col.typed::<Int64Type>().write_batch(&v, Some(d), None)?
        }
        6..=8 => {
            let (v, d) = match index {
                6 => &rows.mean_bytes,
                7 => &rows.mean_latency_ms,
                _ => &rows.max_latency_ms,
            }
            .present();
            col.typed::<DoubleType>().write_batch(&v, Some(d), None)?
        }
        9 => col.typed::<Int64Type>().write_batch(&as_i64(&rows.cache_hits), None, None)?,
        10 => col.typed::<Int64Type>().write_batch(&as_i64(&rows.cache_misses), None, None)?,
        11 => col.typed::<ByteArrayType>().write_batch(&strings(&rows.params), None, None)?,
        _ => return Err(ParquetError::General(format!("unexpected column {index}"))),
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
    reader: SerializedFileReader<File>,
    /// Where each of the profile's columns (in [`COLUMNS`] order) is in the file.
    columns: [usize; COLUMNS.len()],
    next_group: usize,
    decoded: std::vec::IntoIter<ProfileRow>,
}

/// The profile's columns, by name, so a file rewritten by another tool with its columns in
/// another order still reads.
const COLUMNS: [&str; 12] = [
    "rule",
    "key",
    "count",
    "score",
    "first_seen",
    "last_seen",
    "mean_bytes",
    "mean_latency_ms",
    "max_latency_ms",
    "cache_hits",
    "cache_misses",
    "params",
];

impl Iterator for ProfileRows {
    type Item = Result<ProfileRow, ProfileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.decoded.next() {
                return Some(Ok(row));
            }
            if self.next_group >= self.reader.num_row_groups() {
                return None;
            }
            let group = self.next_group;
            self.next_group += 1;
            match self.decode_group(group) {
                Ok(rows) => self.decoded = rows.into_iter(),
                Err(e) => {
                    self.next_group = usize::MAX; // nothing after a damaged group is trusted
                    return Some(Err(corrupt(&self.path, e)));
                }
            }
        }
    }
}

impl ProfileRows {
    /// Decodes a row group column by column: the record API built a `Field` per cell and
    /// took a fifth of a warm's CPU reading a large profile.
    fn decode_group(&self, group: usize) -> Result<Vec<ProfileRow>, String> {
        let rg = self.reader.get_row_group(group).map_err(|e| e.to_string())?;
        let n = usize::try_from(rg.metadata().num_rows()).map_err(|e| e.to_string())?;
        let [rule, key, count, score, first, last, bytes, latency, max_latency, hits, misses, params] =
            self.columns;
        let strings = |i| read_column::<ByteArrayType>(rg.as_ref(), i, n);
        let longs = |i| read_column::<Int64Type>(rg.as_ref(), i, n);
        let doubles = |i| read_column::<DoubleType>(rg.as_ref(), i, n);
        let (rule, key, params) = (strings(rule)?, strings(key)?, strings(params)?);
        let (count, hits, misses, first, last) =
            (longs(count)?, longs(hits)?, longs(misses)?, longs(first)?, longs(last)?);
        let (score, bytes, latency, max_latency) =
            (doubles(score)?, doubles(bytes)?, doubles(latency)?, doubles(max_latency)?);
        let text = |v: &Option<ByteArray>, name: &str| match v {
            Some(b) => b.as_utf8().map(str::to_string).map_err(|_| format!("a `{name}` is not UTF-8")),
            None => Err(format!("a `{name}` is missing")),
        };
        let required = |v: Option<i64>, name: &str| v.ok_or_else(|| format!("a `{name}` is missing"));
        let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            rows.push(ProfileRow {
                rule: text(&rule[i], "rule")?,
                key: text(&key[i], "key")?,
                count: as_u64(required(count[i], "count")?),
                score: score[i].ok_or("a `score` is missing")?,
                first_seen_ms: first[i],
                last_seen_ms: last[i],
                mean_bytes: bytes[i],
                mean_latency_ms: latency[i],
                max_latency_ms: max_latency[i],
                cache_hits: as_u64(required(hits[i], "cache_hits")?),
                cache_misses: as_u64(required(misses[i], "cache_misses")?),
                params: text(&params[i], "params")?,
            });
        }
        Ok(rows)
    }
}

/// Reads `n` values of column `i` of a row group, `None` where a value is null. Each column
/// must hold exactly `n` values of type `T`.
fn read_column<T: DataType>(
    rg: &dyn parquet::file::reader::RowGroupReader,
    i: usize,
    n: usize,
) -> Result<Vec<Option<T::T>>, String> {
    let descr = rg.metadata().column(i).column_descr_ptr();
    let name = descr.name().to_string();
    if descr.max_rep_level() > 0 {
        return Err(format!("column `{name}` is a list, not one value per row"));
    }
    let column = rg.get_column_reader(i).map_err(|e| e.to_string())?;
    // Checked, not assumed: a typed reader of the wrong type panics.
    let mut reader = T::get_column_reader(column)
        .ok_or_else(|| format!("column `{name}` does not have the profile's type"))?;
    let max_def = descr.max_def_level();
    let (mut values, mut defs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut read = 0;
    while read < n {
        let (records, _, _) = reader
            .read_records(n - read, (max_def > 0).then_some(&mut defs), None, &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            break;
        }
        read += records;
    }
    if read != n {
        return Err(format!("column `{name}` has {read} values where its row group has {n} rows"));
    }
    if max_def == 0 {
        return Ok(values.into_iter().map(Some).collect());
    }
    let mut values = values.into_iter();
    Ok(defs.iter().map(|&d| if d == max_def { values.next() } else { None }).collect())
}

/// Opens a profile: its metadata now, its rows as a stream.
pub fn open_profile(path: &Path) -> Result<(ProfileMeta, ProfileRows), ProfileError> {
    let reader = open_reader(path)?;
    let meta = meta_of(path, &reader)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut columns = [0; COLUMNS.len()];
    for (slot, name) in columns.iter_mut().zip(COLUMNS) {
        *slot = (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == name)
            .ok_or_else(|| corrupt(path, format!("it has no `{name}` column")))?;
    }
    let rows = ProfileRows {
        path: path.to_path_buf(),
        reader,
        columns,
        next_group: 0,
        decoded: Vec::new().into_iter(),
    };
    Ok((meta, rows))
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
