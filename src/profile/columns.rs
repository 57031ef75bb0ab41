//! Profile rows stored column by column, in row groups: the layout of the Parquet file.
//!
//! The analyzer fills them straight from its key tables, in parallel, one row group per
//! task: building a [`ProfileRow`] per key first took three allocations a row and kept one
//! core busy while the other waited (measured: a quarter of the time after the merge), and
//! the Parquet encoder then copied every row back into columns.

use super::ProfileRow;

/// The most rows in a row group: readers can stream a profile one group at a time.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per row group for a profile of `rows` rows: as few groups as [`ROW_GROUP_ROWS`]
/// allows, all of the same size but the last, so that the tasks filling them in parallel
/// take as long as one another (a short last group left one core idle).
pub fn row_group_size(rows: usize) -> usize {
    rows.div_ceil(rows.div_ceil(ROW_GROUP_ROWS).max(1)).max(1)
}

/// The values of a string column, end to end.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TextColumn {
    text: String,
    ends: Vec<usize>,
}

impl TextColumn {
    fn with_capacity(rows: usize) -> Self {
        TextColumn { text: String::new(), ends: Vec::with_capacity(rows) }
    }

    fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// The value of row `i`.
    pub(super) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// All values, end to end, and where each ends.
    pub(super) fn parts(&self) -> (&str, &[usize]) {
        (&self.text, &self.ends)
    }
}

/// The values of a column that may be absent: a placeholder where absent, and the Parquet
/// definition level of each row (1 present, 0 absent). Half the size of `Vec<Option<T>>`
/// for 8-byte values, and the levels are what the encoder takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct OptionalColumn<T> {
    values: Vec<T>,
    levels: Vec<i16>,
}

impl<T: Copy + Default> OptionalColumn<T> {
    fn with_capacity(rows: usize) -> Self {
        OptionalColumn { values: Vec::with_capacity(rows), levels: Vec::with_capacity(rows) }
    }

    fn push(&mut self, value: Option<T>) {
        self.values.push(value.unwrap_or_default());
        self.levels.push(i16::from(value.is_some()));
    }

    fn get(&self, i: usize) -> Option<T> {
        (self.levels[i] == 1).then(|| self.values[i])
    }

    /// The present values, in order, and every row's definition level.
    pub(super) fn present(&self) -> (Vec<T>, &[i16]) {
        let values = self.values.iter().zip(&self.levels).filter(|(_, l)| **l == 1).map(|(v, _)| *v);
        (values.collect(), &self.levels)
    }
}

/// One row's values, borrowed, for [`RowGroup::push`]; `rule` is a position in the rule
/// names of the [`ProfileColumns`] the group goes into.
#[derive(Debug, Clone, Copy)]
pub struct RowValues<'a> {
    /// Rule, as a position in [`ProfileColumns::rules`].
    pub rule: u32,
    /// See [`ProfileRow::key`].
    pub key: &'a str,
    /// See [`ProfileRow::count`].
    pub count: u64,
    /// See [`ProfileRow::score`].
    pub score: f64,
    /// See [`ProfileRow::first_seen_ms`].
    pub first_seen_ms: Option<i64>,
    /// See [`ProfileRow::last_seen_ms`].
    pub last_seen_ms: Option<i64>,
    /// See [`ProfileRow::mean_bytes`].
    pub mean_bytes: Option<f64>,
    /// See [`ProfileRow::mean_latency_ms`].
    pub mean_latency_ms: Option<f64>,
    /// See [`ProfileRow::max_latency_ms`].
    pub max_latency_ms: Option<f64>,
    /// See [`ProfileRow::cache_hits`].
    pub cache_hits: u64,
    /// See [`ProfileRow::cache_misses`].
    pub cache_misses: u64,
    /// See [`ProfileRow::params`].
    pub params: &'a str,
}

/// Up to [`ROW_GROUP_ROWS`] rows, one vector per column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowGroup {
    pub(super) rule: Vec<u32>,
    pub(super) key: TextColumn,
    pub(super) count: Vec<u64>,
    pub(super) score: Vec<f64>,
    pub(super) first_seen_ms: OptionalColumn<i64>,
    pub(super) last_seen_ms: OptionalColumn<i64>,
    pub(super) mean_bytes: OptionalColumn<f64>,
    pub(super) mean_latency_ms: OptionalColumn<f64>,
    pub(super) max_latency_ms: OptionalColumn<f64>,
    pub(super) cache_hits: Vec<u64>,
    pub(super) cache_misses: Vec<u64>,
    pub(super) params: TextColumn,
}

impl RowGroup {
    /// An empty group with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        RowGroup {
            rule: Vec::with_capacity(rows),
            key: TextColumn::with_capacity(rows),
            count: Vec::with_capacity(rows),
            score: Vec::with_capacity(rows),
            first_seen_ms: OptionalColumn::with_capacity(rows),
            last_seen_ms: OptionalColumn::with_capacity(rows),
            mean_bytes: OptionalColumn::with_capacity(rows),
            mean_latency_ms: OptionalColumn::with_capacity(rows),
            max_latency_ms: OptionalColumn::with_capacity(rows),
            cache_hits: Vec::with_capacity(rows),
            cache_misses: Vec::with_capacity(rows),
            params: TextColumn::with_capacity(rows),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: RowValues<'_>) {
        self.rule.push(row.rule);
        self.key.push(row.key);
        self.count.push(row.count);
        self.score.push(row.score);
        self.first_seen_ms.push(row.first_seen_ms);
        self.last_seen_ms.push(row.last_seen_ms);
        self.mean_bytes.push(row.mean_bytes);
        self.mean_latency_ms.push(row.mean_latency_ms);
        self.max_latency_ms.push(row.max_latency_ms);
        self.cache_hits.push(row.cache_hits);
        self.cache_misses.push(row.cache_misses);
        self.params.push(row.params);
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rule.len()
    }

    /// Whether the group holds no row.
    pub fn is_empty(&self) -> bool {
        self.rule.is_empty()
    }

    fn row(&self, i: usize, rules: &[String]) -> ProfileRow {
        ProfileRow {
            rule: rules.get(self.rule[i] as usize).cloned().unwrap_or_default(),
            key: self.key.get(i).to_string(),
            count: self.count[i],
            score: self.score[i],
            first_seen_ms: self.first_seen_ms.get(i),
            last_seen_ms: self.last_seen_ms.get(i),
            mean_bytes: self.mean_bytes.get(i),
            mean_latency_ms: self.mean_latency_ms.get(i),
            max_latency_ms: self.max_latency_ms.get(i),
            cache_hits: self.cache_hits[i],
            cache_misses: self.cache_misses[i],
            params: self.params.get(i).to_string(),
        }
    }
}

/// A profile's rows, hottest first, stored by column: what [`super::write_profile`] writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileColumns {
    rules: Vec<String>,
    groups: Vec<RowGroup>,
}

impl ProfileColumns {
    /// Rows in `groups`, in order, whose rules are positions in `rules`.
    pub fn new(rules: Vec<String>, groups: Vec<RowGroup>) -> Self {
        ProfileColumns { rules, groups }
    }

    /// The same rows, stored by column.
    pub fn from_rows(rows: &[ProfileRow]) -> Self {
        let mut rules: Vec<String> = Vec::new();
        let groups = rows
            .chunks(row_group_size(rows.len()))
            .map(|chunk| {
                let mut group = RowGroup::with_capacity(chunk.len());
                for r in chunk {
                    let rule = match rules.iter().position(|name| *name == r.rule) {
                        Some(at) => at,
                        None => {
                            rules.push(r.rule.clone());
                            rules.len() - 1
                        }
                    };
                    group.push(RowValues {
                        rule: rule as u32,
                        key: &r.key,
                        count: r.count,
                        score: r.score,
                        first_seen_ms: r.first_seen_ms,
                        last_seen_ms: r.last_seen_ms,
                        mean_bytes: r.mean_bytes,
                        mean_latency_ms: r.mean_latency_ms,
                        max_latency_ms: r.max_latency_ms,
                        cache_hits: r.cache_hits,
                        cache_misses: r.cache_misses,
                        params: &r.params,
                    });
                }
                group
            })
            .collect();
        ProfileColumns { rules, groups }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.groups.iter().map(RowGroup::len).sum()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(RowGroup::is_empty)
    }

    /// The rule names that rows refer to by position.
    pub fn rules(&self) -> &[String] {
        &self.rules
    }

    /// The row groups, in order.
    pub fn groups(&self) -> &[RowGroup] {
        &self.groups
    }

    /// The rows, hottest first, each built on demand.
    pub fn rows(&self) -> impl Iterator<Item = ProfileRow> + '_ {
        self.groups.iter().flat_map(move |g| (0..g.len()).map(move |i| g.row(i, &self.rules)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rule: &str, key: &str, count: u64) -> ProfileRow {
        ProfileRow {
            rule: rule.into(),
            key: key.into(),
            count,
            score: count as f64 / 2.0,
            first_seen_ms: count.is_multiple_of(2).then_some(count as i64),
            last_seen_ms: Some(7),
            mean_bytes: None,
            mean_latency_ms: Some(1.5),
            max_latency_ms: count.is_multiple_of(3).then_some(2.0),
            cache_hits: count / 2,
            cache_misses: count / 3,
            params: format!(r#"{{"id":"{count}"}}"#),
        }
    }

    #[test]
    fn row_groups_are_even_and_never_too_large() {
        for rows in
            [0, 1, ROW_GROUP_ROWS - 1, ROW_GROUP_ROWS, ROW_GROUP_ROWS + 1, 239_948, 10 * ROW_GROUP_ROWS + 7]
        {
            let size = row_group_size(rows);
            let groups = rows.div_ceil(size);
            assert!((1..=ROW_GROUP_ROWS).contains(&size), "{rows}: {size}");
            assert_eq!(groups, rows.div_ceil(ROW_GROUP_ROWS), "{rows}: as few groups as allowed");
            assert!(rows == 0 || rows - (groups - 1) * size <= size, "{rows}");
        }
        assert_eq!(row_group_size(239_948), 59_987);
    }

    #[test]
    fn rows_come_back_as_they_went_in_across_row_groups() {
        let rows: Vec<ProfileRow> = (0..ROW_GROUP_ROWS as u64 + 3)
            .map(|n| row(["a", "bb", ""][n as usize % 3], &format!("k{n}"), n))
            .collect();
        let columns = ProfileColumns::from_rows(&rows);
        assert_eq!(columns.groups().iter().map(RowGroup::len).collect::<Vec<_>>(), [32770, 32769]);
        assert_eq!(columns.rules(), ["a", "bb", ""]);
        assert_eq!((columns.len(), columns.is_empty()), (rows.len(), false));
        assert!(columns.rows().eq(rows.iter().cloned()));
        assert!(ProfileColumns::from_rows(&[]).is_empty());
    }
}
