//! The analyzer against generated logs whose exact counts are known.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;

use preheat::logformat::FormatSpec;
use preheat::profile::{ProfileColumns, ProfileRow, Store, read_profile, store};

use crate::support::*;

#[test]
fn every_format_yields_the_exact_ground_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let formats = [
        FormatSpec::Combined,
        FormatSpec::Common,
        FormatSpec::Json,
        FormatSpec::Nginx(
            r#"$remote_addr - [$time_iso8601] $host "$request_method $request_uri" $status $bytes_sent rt=$request_time cache=$upstream_cache_status ua="$http_user_agent""#
                .into(),
        ),
    ];
    for (i, format) in formats.into_iter().enumerate() {
        let path = dir.path().join(format!("access-{i}.log"));
        let truth = write_log(
            &path,
            &config,
            &in_format(gen_opts(20_000, 300, 11), format.clone()),
            Compression::Plain,
        );
        let mut opts = config.analyze_options();
        if let FormatSpec::Nginx(_) = format {
            opts.log.format = format.clone(); // custom strings are never auto-detected
        }
        let a = analyze_with(&[path], &config, opts, 2);
        assert_eq!(counts(&a), truth_counts(&truth), "format {format}");
        // With no half-life the score is the count, so the profile's order is the truth's.
        let order: Vec<_> = a.rows().iter().map(|r| (r.rule.clone(), r.key.clone(), r.count)).collect();
        assert_eq!(order, truth_counts(&truth), "order in format {format}");
        let l = &a.summary.lines;
        assert_eq!(l.read, truth.lines);
        assert_eq!(l.rejected, truth.malformed, "format {format}: {:?}", a.summary.samples);
        assert_eq!(l.unmatched, truth.unmatched);
        assert_eq!(l.status_filtered, truth.status_filtered);
        assert_eq!(l.matched, truth.counts.values().sum::<u64>());
        assert_eq!(l.read, l.parsed + l.rejected);
        assert_eq!(l.parsed, l.out_of_window + l.unmatched + l.status_filtered + l.matched);
        assert!(a.rows().iter().all(|r| !r.params.contains("SECRET")), "unkept query values leaked");
    }
}

#[test]
fn latency_bytes_and_cache_status_are_aggregated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("access.log");
    let format = FormatSpec::Nginx(r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time $upstream_cache_status"#.into());
    write_log(&path, &config, &in_format(gen_opts(5_000, 50, 3), format.clone()), Compression::Plain);
    let mut opts = config.analyze_options();
    opts.log.format = format;
    let a = analyze_with(&[path], &config, opts, 2);
    let top = &a.rows()[0];
    let lat = top.mean_latency_ms.expect("latency logged");
    assert!((1.0..=251.0).contains(&lat), "{lat}");
    assert!(top.max_latency_ms.expect("latency logged") >= lat);
    assert!(top.mean_bytes.expect("bytes logged") >= 200.0);
    // The generator simulates a cache: the first request of a key misses, repeats within 5 minutes hit.
    assert!(top.cache_misses >= 1 && top.cache_hits >= 1, "{top:?}");
    assert_eq!(top.cache_hits + top.cache_misses, top.count);
    assert!(top.first_seen_ms < top.last_seen_ms);
}

#[test]
fn gzip_and_zstd_are_detected_by_content_not_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let opts = gen_opts(8_000, 200, 5);
    let plain = dir.path().join("plain.log");
    let gz = dir.path().join("looks-plain.log");
    let zst = dir.path().join("also-plain.txt");
    let truth = write_log(&plain, &config, &opts, Compression::Plain);
    write_log(&gz, &config, &opts, Compression::Gzip);
    write_log(&zst, &config, &opts, Compression::Zstd);
    for (path, name) in [(gz, "gzip"), (zst, "zstd")] {
        let a = analyze_files(&[path], &config, 2);
        assert_eq!(counts(&a), truth_counts(&truth));
        assert_eq!(a.summary.inputs[0].compression.as_deref(), Some(name));
    }
}

#[test]
fn a_rotated_directory_is_read_oldest_first_and_summed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let mut total: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (name, seed, compression) in [
        ("access.log", 1, Compression::Plain),
        ("access.log.1", 2, Compression::Plain),
        ("access.log.2.gz", 3, Compression::Gzip),
    ] {
        let truth = write_log(&dir.path().join(name), &config, &gen_opts(3_000, 100, seed), compression);
        for (k, n) in truth.counts {
            *total.entry(k).or_insert(0) += n;
        }
    }
    let a = analyze_files(&[dir.path().to_path_buf()], &config, 2);
    let names: Vec<String> =
        a.summary.inputs.iter().map(|i| i.name.rsplit('/').next().unwrap_or_default().to_string()).collect();
    assert_eq!(names, ["access.log.2.gz", "access.log.1", "access.log"]);
    let got: BTreeMap<(String, String), u64> =
        a.rows().iter().map(|r| ((r.rule.clone(), r.key.clone()), r.count)).collect();
    assert_eq!(got, total);
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A half-life (float scores) and a small key table (pruning) are the order-sensitive parts.
    let config = config_with("[analyze]\nhalf_life = \"2h\"\nmax_keys_per_rule = 400\n");
    let path = dir.path().join("access.log");
    write_log(&path, &config, &gen_opts(120_000, 5_000, 9), Compression::Plain);
    let one = analyze_files(std::slice::from_ref(&path), &config, 1);
    assert!(one.summary.rules.iter().all(|r| r.count_error_bound > 0), "the test must exercise pruning");
    for threads in [2, 4] {
        let many = analyze_files(std::slice::from_ref(&path), &config, threads);
        assert_eq!(many.rows(), one.rows(), "{threads} threads");
        let (mut s1, mut s2) = (one.summary.clone(), many.summary.clone());
        s1.elapsed_ms = 0;
        s2.elapsed_ms = 0;
        assert_eq!(s1, s2);
    }
}

#[test]
fn bounded_tables_keep_hot_keys_within_the_recorded_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capacity = 60;
    let config = config_with(&format!("[analyze]\nmax_keys_per_rule = {capacity}\n"));
    let path = dir.path().join("access.log");
    let truth = write_log(&path, &config, &gen_opts(150_000, 20_000, 21), Compression::Plain);
    let a = analyze_files(&[path], &config, 2);
    let bound: BTreeMap<&str, u64> =
        a.summary.rules.iter().map(|r| (r.name.as_str(), r.count_error_bound)).collect();
    for r in &a.summary.rules {
        assert!(r.distinct_keys_estimated);
        // Misra–Gries: the error never exceeds requests / (capacity + 1).
        assert!(r.count_error_bound <= r.requests / (capacity as u64 + 1), "{r:?}");
        // The HyperLogLog estimate of distinct keys is within a few percent.
        let exact = truth.counts.keys().filter(|(rule, _)| *rule == r.name).count() as f64;
        assert!((r.distinct_keys as f64 - exact).abs() / exact < 0.05, "{} vs {exact}", r.distinct_keys);
    }
    for row in &a.rows() {
        let t = truth.counts[&(row.rule.clone(), row.key.clone())];
        assert!(row.count <= t && t <= row.count + bound[row.rule.as_str()], "{row:?} true {t}");
    }
    // Every key hotter than the error bound survives.
    for ((rule, key), &n) in &truth.counts {
        if n > 2 * bound[rule.as_str()] {
            assert!(
                a.rows().iter().any(|r| &r.rule == rule && &r.key == key),
                "{rule} {key} ({n}) was dropped"
            );
        }
    }
}

#[test]
fn a_corrupt_compressed_file_fails_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let good = dir.path().join("a-good.log");
    let bad = dir.path().join("b-bad.log.gz");
    let truth = write_log(&good, &config, &gen_opts(2_000, 50, 1), Compression::Plain);
    write_log(&bad, &config, &gen_opts(50_000, 50, 2), Compression::Gzip);
    let mut bytes = fs::read(&bad).expect("written");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xAA);
    fs::write(&bad, bytes).expect("writable");
    let a = analyze_files(&[good, bad.clone()], &config, 2);
    assert!(a.had_input_errors());
    let failed = &a.summary.inputs[1];
    assert!(failed.error.as_deref().is_some_and(|e| e.contains("gzip stream is damaged")), "{failed:?}");
    assert!(failed.lines > 20_000, "the lines before the damage halfway are read: {failed:?}");
    assert!(a.summary.inputs[0].error.is_none());
    // The good file counts in full; what the bad one held before the damage counts too.
    for ((rule, key), n) in &truth.counts {
        let got = a.rows().iter().find(|r| &r.rule == rule && &r.key == key).map_or(0, |r| r.count);
        assert!(got >= *n);
    }
}

#[test]
fn hostile_lines_are_counted_by_reason_never_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("edge.log");
    let mut f = fs::File::create(&path).expect("temp file");
    let ok = |path: &str| {
        format!("203.0.113.7 - - [01/Jan/2026:10:00:00 +0000] \"GET {path} HTTP/1.1\" 200 10 \"-\" \"ua\"")
    };
    writeln!(f, "{}\r", ok("/api/products/1")).expect("write"); // CRLF
    writeln!(f, "2001:db8::7 - - [01/Jan/2026:10:00:01 +0000] \"GET /api/products/1 HTTP/1.1\" 200 10 \"-\" \"a \\\"quoted\\\" agent\"").expect("write");
    writeln!(f).expect("write"); // empty
    f.write_all(b"203.0.113.7 - - [01/Jan/2026:10:00:02 +0000] \"GET /pages/\xff\xfe HTTP/1.1\" 200 10 \"-\" \"ua\"\n").expect("write");
    f.write_all(b"203.0.113.7 - - [01/Jan/2026:10:00:03 +0000] \"GET /api/products/1 HTTP/1.1\" 200 10 \"-\" \"\xc3\x28 bad utf8 agent\"\n").expect("write");
    let long = format!("{}\n", ok(&format!("/pages/{}", "x".repeat(2 << 20))));
    f.write_all(long.as_bytes()).expect("write");
    let very_long = format!("{}\n", ok(&format!("/pages/{}", "y".repeat(9 << 20))));
    f.write_all(very_long.as_bytes()).expect("write");
    f.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n").expect("write");
    write!(f, "{}", &ok("/api/products/2")[..40]).expect("write"); // truncated last line, no newline
    drop(f);

    let a = analyze_files(&[path], &config, 2);
    let reasons = &a.summary.rejected_by_reason;
    assert_eq!(a.summary.lines.read, 9);
    assert_eq!(reasons.get("empty"), Some(&1));
    assert_eq!(reasons.get("non_utf8_key"), Some(&1));
    assert_eq!(reasons.get("too_long"), Some(&2));
    assert_eq!(reasons.get("format_mismatch"), Some(&2), "{reasons:?}");
    assert_eq!(a.rows().len(), 1);
    assert_eq!((a.rows()[0].key.as_str(), a.rows()[0].count), ("product:1", 3));
    let long_sample = a.summary.samples.iter().find(|s| s.reason == "too_long").expect("sampled");
    assert_eq!(long_sample.line, 6);
    assert!(long_sample.excerpt.chars().count() <= 201);
    // The line after the oversized ones is still found, so line numbers stay right.
    let junk = a
        .summary
        .samples
        .iter()
        .filter(|s| s.reason == "format_mismatch")
        .map(|s| s.line)
        .collect::<Vec<_>>();
    assert_eq!(junk, [8, 9]);
}

#[test]
fn the_longest_accepted_line_is_a_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let line = |path: &str| {
        format!("203.0.113.7 - - [01/Jan/2026:10:00:00 +0000] \"GET {path} HTTP/1.1\" 200 10 \"-\" \"ua\"\n")
    };
    let long = format!("/pages/{}", "x".repeat(300));
    let path = dir.path().join("a.log");
    fs::write(&path, [line("/api/products/1"), line(&long), line("/api/products/2")].concat())
        .expect("writable");
    let a = analyze_files(std::slice::from_ref(&path), &config_with("[log]\nmax_line = \"256B\""), 1);
    assert_eq!(a.summary.rejected_by_reason.get("too_long"), Some(&1), "{:?}", a.summary);
    assert_eq!(a.summary.lines.parsed, 2);
    let a = analyze_files(&[path], &config_with(""), 1);
    assert_eq!(a.summary.rejected_by_reason.get("too_long"), None, "1MiB by default");
    let bad = preheat::config::Config::parse("[log]\nmax_line = \"4MiB\"", "t.toml").expect_err("too big");
    assert!(bad.to_string().contains("t.toml:2:12: log.max_line: `4MiB` is outside 256B to 3MiB"), "{bad}");
}

/// Lines that real logs hold and that once became wrong keys or raw escapes on a terminal.
#[test]
fn spaces_in_paths_missing_statuses_and_control_bytes_are_read_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let line = |path: &str, status: &str| {
        format!(
            "203.0.113.7 - - [01/Jan/2026:10:00:00 +0000] \"GET {path} HTTP/1.1\" {status} 10 \"-\" \"ua\"\n"
        )
    };
    let log = [
        line("/pages/a b c", "200"),                  // a path with spaces, keyed whole
        line("/api/products/7", "-"),                 // no response: not cacheable
        line("/pages/\x1b[2J\x07gotcha", "200"),      // a key with control bytes
        line("/static/\x1b]0;title\x07x.css", "200"), // an unmatched path with them
        "203.0.113.7 - - [01/Jan/2026:10:00:00 +0000] \"GET /a b\" 200 1 \"-\" \"\x1b[31m\"\n".to_string(),
    ]
    .concat();
    fs::write(dir.path().join("hostile.log"), log).expect("writable");
    fs::write(dir.path().join("preheat.toml"), format!("[log]\nformat = \"combined\"\n{RULES}"))
        .expect("writable");
    let out = preheat(dir.path(), &["analyze", "--config", "preheat.toml", "--profiles", "p", "hostile.log"]);
    let stdout = text(&out.stdout);
    for shown in [&out.stdout, &out.stderr] {
        let raw = shown.iter().filter(|&&b| b == 0x1b || b == 0x07).count();
        assert_eq!(raw, 0, "control bytes reached the terminal:\n{stdout}{}", text(&out.stderr));
    }
    assert!(stdout.contains("page:/a b c"), "the whole path is the key:\n{stdout}");
    assert!(stdout.contains("/static/\\x1b]0;title\\x07x.css"), "escaped:\n{stdout}");
    assert!(stdout.contains("\\x1b[2J"), "the rejected line's sample, escaped:\n{stdout}");
    let a = analyze_files(&[dir.path().join("hostile.log")], &config_with(""), 1);
    assert_eq!(a.summary.rejected_by_reason.get("control_char"), Some(&1), "{:?}", a.summary);
    assert_eq!(a.summary.rejected_by_reason.get("bad_request_line"), Some(&1), "`GET /a b` has no end");
    let product = a.summary.rules.iter().find(|r| r.name == "product").expect("rule");
    assert_eq!((product.requests, product.status_filtered), (0, 1), "status `-` is not cacheable");
    let keys: Vec<String> = a.rows().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["page:/a b c"]);
}

#[test]
fn distinct_clients_count_matched_and_unmatched_requests_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clients.log");
    let line = |client: &str, path: &str, status: u16| {
        format!(
            "{client} - - [01/Jan/2026:10:00:00 +0000] \"GET {path} HTTP/1.1\" {status} 10 \"-\" \"ua\"\n"
        )
    };
    let log = [
        line("10.0.0.1", "/api/products/1", 200),  // matched only
        line("10.0.0.2", "/static/site.css", 200), // unmatched only
        line("10.0.0.3", "/api/products/2", 200),  // both
        line("10.0.0.3", "/static/site.css", 200),
        line("10.0.0.4", "/api/products/3", 500), // a status the rule does not cache
    ]
    .concat();
    fs::write(&path, log.repeat(3)).expect("writable");
    let a = analyze_files(&[path], &config_with(""), 2);
    assert_eq!(a.summary.distinct_clients, 3, "each client once, whichever sketch saw it");
    let product = a.summary.rules.iter().find(|r| r.name == "product").expect("rule");
    assert_eq!(product.distinct_clients, 2);
}

#[test]
fn empty_files_are_fine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.log");
    fs::write(&path, b"").expect("writable");
    let a = analyze_files(&[path], &config_with(""), 2);
    assert_eq!(a.summary.lines.read, 0);
    assert!(a.rows().is_empty());
    assert!(!a.had_input_errors());
}

#[test]
fn since_and_until_select_a_time_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("day.log");
    let opts = gen_opts(24_000, 100, 4);
    write_log(&path, &config, &opts, Compression::Plain);
    let mut a_opts = config.analyze_options();
    let hour = 3_600_000;
    a_opts.since_ms = Some(opts.start_ms + 6 * hour);
    a_opts.until_ms = Some(opts.start_ms + 12 * hour);
    let a = analyze_with(&[path], &config, a_opts, 2);
    let inside = a.summary.lines.parsed - a.summary.lines.out_of_window;
    // Lines are spread evenly over the day, so a quarter of them fall inside.
    assert!((5_800..=6_100).contains(&inside), "{inside}");
    assert_eq!(a.summary.window.start.as_deref(), Some("2026-01-01T06:00:00Z"));
    assert!(a.summary.window.end.as_deref().is_some_and(|e| e.starts_with("2026-01-01T11:59")));
    for r in &a.rows() {
        let (first, last) = (r.first_seen_ms.expect("timed"), r.last_seen_ms.expect("timed"));
        assert!(first >= opts.start_ms + 6 * hour && last < opts.start_ms + 12 * hour);
    }
}

#[test]
fn recency_half_life_ranks_recent_traffic_higher() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("[analyze]\nhalf_life = \"1h\"\n");
    let path = dir.path().join("two.log");
    let line = |t: &str, id: u32| {
        format!(
            "1.2.3.4 - - [01/Jan/2026:{t} +0000] \"GET /api/products/{id} HTTP/1.1\" 200 10 \"-\" \"ua\"\n"
        )
    };
    let mut text = String::new();
    for _ in 0..10 {
        text.push_str(&line("00:00:00", 1)); // ten requests, ten hours before the end
    }
    for _ in 0..3 {
        text.push_str(&line("10:00:00", 2)); // three requests at the end
    }
    fs::write(&path, text).expect("writable");
    let a = analyze_files(&[path], &config, 1);
    assert_eq!(a.rows()[0].key, "product:2");
    assert!((a.rows()[0].score - 3.0).abs() < 1e-9);
    assert!((a.rows()[1].score - 10.0 / 1024.0).abs() < 1e-9, "{}", a.rows()[1].score);
}

#[test]
fn profiles_round_trip_through_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("[analyze]\nhalf_life = \"3h\"\n");
    let path = dir.path().join("access.log");
    write_log(&path, &config, &gen_opts(10_000, 300, 8), Compression::Plain);
    let a = analyze_files(&[path], &config, 2);
    let store = Store::new(dir.path().join("profiles"));
    let meta = store::meta_now(a.summary.clone(), Some(a.sketches.clone()), 1_767_225_600_000);
    let written = store.write(&a.profile, &meta, 1_767_225_600_000).expect("written");
    assert_eq!(written.file_name().and_then(|n| n.to_str()), Some("20260101T000000Z.parquet"));
    let again = store.write(&a.profile, &meta, 1_767_225_600_000).expect("written");
    assert_ne!(written, again, "a second profile in the same second gets its own name");
    assert_eq!(store.latest().expect("latest"), again);
    let (read_meta, rows) = read_profile(&store.latest().expect("latest"), None).expect("readable");
    assert_eq!(rows, a.rows());
    assert_eq!(read_meta.summary, a.summary);
    assert_eq!(read_meta.schema_version, preheat::profile::SCHEMA_VERSION);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&again).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let leftovers: Vec<_> = fs::read_dir(store.dir())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn broken_profiles_get_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::new(dir.path());
    let err = store.latest().expect_err("empty store").to_string();
    assert!(err.contains("no profile in") && err.contains("preheat analyze"), "{err}");

    let garbage = dir.path().join("20260101T000000Z.parquet");
    fs::write(&garbage, b"PAR1 not really").expect("writable");
    let err = read_profile(&garbage, None).expect_err("corrupt").to_string();
    assert!(err.contains("20260101T000000Z.parquet") && err.contains("not a readable profile"), "{err}");

    fs::write(dir.path().join("latest"), "gone.parquet\n").expect("writable");
    // A dangling pointer falls back to the newest file rather than failing.
    assert_eq!(store.latest().expect("fallback"), garbage);
}

/// Rows that exercise a profile's encoding: more than one row group, and every optional
/// column both set and unset.
fn synthetic_rows(n: u64) -> Vec<ProfileRow> {
    (0..n)
        .map(|i| ProfileRow {
            rule: if i % 2 == 0 { "product" } else { "page" }.to_string(),
            key: format!("product:{i}"),
            count: n - i,
            score: (n - i) as f64 / 3.0,
            first_seen_ms: (i % 3 != 0).then_some(1_767_225_600_000 + i as i64),
            last_seen_ms: (i % 3 != 1).then_some(1_767_225_700_000 + i as i64),
            mean_bytes: (i % 2 == 0).then_some(i as f64 * 1.5),
            mean_latency_ms: (i % 5 == 0).then_some(0.25),
            max_latency_ms: (i % 7 == 0).then_some(3.5),
            cache_hits: i % 11,
            cache_misses: i % 13,
            params: format!("{{\"id\":\"{i}\"}}"),
        })
        .collect()
}

/// Writes `rows` with another tool's schema (`message` in Parquet's schema syntax): its own
/// column order, optional or required columns, and `count` as any numeric type it names.
fn write_foreign(
    path: &std::path::Path,
    message: &str,
    rows: &[ProfileRow],
    meta: &preheat::profile::ProfileMeta,
) {
    use parquet::basic::Type as Physical;
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(message).expect("schema"));
    let columns = parquet::schema::types::SchemaDescriptor::new(schema.clone());
    let kv = vec![
        KeyValue::new("preheat.schema_version".into(), meta.schema_version.to_string()),
        KeyValue::new("preheat.summary".into(), serde_json::to_string(&meta.summary).expect("JSON")),
    ];
    let props = std::sync::Arc::new(WriterProperties::builder().set_key_value_metadata(Some(kv)).build());
    let file = fs::File::create(path).expect("writable");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut rg = writer.next_row_group().expect("row group");
    let mut index = 0;
    while let Some(mut col) = rg.next_column().expect("column") {
        let descr = columns.column(index);
        index += 1;
        let optional = descr.max_def_level() > 0;
        let levels = |present: &dyn Fn(&ProfileRow) -> bool| -> Option<Vec<i16>> {
            optional.then(|| rows.iter().map(|r| i16::from(present(r))).collect())
        };
        let as_long = |n: u64| n as i64;
        match (descr.name(), descr.physical_type()) {
            (name @ ("rule" | "key" | "params"), _) => {
                let value = |r: &ProfileRow| match name {
                    "rule" => r.rule.clone(),
                    "key" => r.key.clone(),
                    _ => r.params.clone(),
                };
                let v: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(value(r).into_bytes())).collect();
                // A repeated column (a list per row) holds one element per row here.
                let reps = (descr.max_rep_level() > 0).then(|| vec![0i16; rows.len()]);
                col.typed::<ByteArrayType>()
                    .write_batch(&v, levels(&|_| true).as_deref(), reps.as_deref())
                    .expect("written");
            }
            ("count", Physical::DOUBLE) => {
                let v: Vec<f64> = rows.iter().map(|r| r.count as f64).collect();
                col.typed::<DoubleType>()
                    .write_batch(&v, levels(&|_| true).as_deref(), None)
                    .expect("written");
            }
            (name @ ("count" | "cache_hits" | "cache_misses"), _) => {
                let value = |r: &ProfileRow| match name {
                    "count" => r.count,
                    "cache_hits" => r.cache_hits,
                    _ => r.cache_misses,
                };
                let v: Vec<i64> = rows.iter().map(|r| as_long(value(r))).collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, levels(&|_| true).as_deref(), None)
                    .expect("written");
            }
            (name @ ("first_seen" | "last_seen"), _) => {
                let value =
                    |r: &ProfileRow| if name == "first_seen" { r.first_seen_ms } else { r.last_seen_ms };
                let v: Vec<i64> = rows.iter().filter_map(value).collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, levels(&|r| value(r).is_some()).as_deref(), None)
                    .expect("written");
            }
            (name, _) => {
                let value = |r: &ProfileRow| match name {
                    "score" => Some(r.score),
                    "mean_bytes" => r.mean_bytes,
                    "mean_latency_ms" => r.mean_latency_ms,
                    _ => r.max_latency_ms,
                };
                let v: Vec<f64> = rows.iter().filter_map(value).collect();
                col.typed::<DoubleType>()
                    .write_batch(&v, levels(&|r| value(r).is_some()).as_deref(), None)
                    .expect("written");
            }
        }
        col.close().expect("closed");
    }
    rg.close().expect("closed");
    writer.close().expect("closed");
}

#[test]
fn profiles_are_read_by_column_name_and_checked_by_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let log = dir.path().join("access.log");
    write_log(&log, &config, &gen_opts(2_000, 100, 3), Compression::Plain);
    let meta = store::meta_now(analyze_files(&[log], &config, 1).summary, None, 1_767_225_600_000);

    // Our own writer, across three row groups.
    let rows = synthetic_rows(150_000);
    let ours = dir.path().join("ours.parquet");
    store::write_file(&ours, &ProfileColumns::from_rows(&rows), &meta).expect("written");
    assert_eq!(read_profile(&ours, None).expect("readable").1, rows);

    // Another tool's rewrite: columns in reverse order, every one optional.
    let reordered = "message m {
      OPTIONAL BYTE_ARRAY params (UTF8); OPTIONAL INT64 cache_misses; OPTIONAL INT64 cache_hits;
      OPTIONAL DOUBLE max_latency_ms; OPTIONAL DOUBLE mean_latency_ms; OPTIONAL DOUBLE mean_bytes;
      OPTIONAL INT64 last_seen (TIMESTAMP(MILLIS,true)); OPTIONAL INT64 first_seen (TIMESTAMP(MILLIS,true));
      OPTIONAL DOUBLE score; OPTIONAL INT64 count; OPTIONAL BYTE_ARRAY key (UTF8); OPTIONAL BYTE_ARRAY rule (UTF8);
    }";
    let few = &rows[..1000];
    let foreign = dir.path().join("foreign.parquet");
    write_foreign(&foreign, reordered, few, &meta);
    assert_eq!(read_profile(&foreign, None).expect("readable").1, few);

    // A column of the wrong type, or a missing one, is named; nothing panics.
    let wrong_type = reordered.replace("OPTIONAL INT64 count;", "OPTIONAL DOUBLE count;");
    let bad = dir.path().join("bad.parquet");
    write_foreign(&bad, &wrong_type, few, &meta);
    let err = read_profile(&bad, None).expect_err("count is not INT64").to_string();
    assert!(err.contains("not a readable profile") && err.contains("`count`"), "{err}");
    let repeated =
        reordered.replace("OPTIONAL BYTE_ARRAY params (UTF8);", "REPEATED BYTE_ARRAY params (UTF8);");
    write_foreign(&bad, &repeated, few, &meta);
    let err = read_profile(&bad, None).expect_err("params is a list").to_string();
    assert!(err.contains("`params` is a list"), "{err}");
    let missing = reordered.replace("OPTIONAL BYTE_ARRAY params (UTF8);", "");
    write_foreign(&bad, &missing, few, &meta);
    let err = read_profile(&bad, None).expect_err("no params").to_string();
    assert!(err.contains("no `params` column"), "{err}");
}

#[test]
fn rows_are_ranked_by_score_then_count_rule_and_key() {
    // Plain counts (no half-life) over few keys: many rows tie on score and count, so the
    // rule and key decide, and every rule has rows.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("access.log");
    write_log(&path, &config, &gen_opts(20_000, 400, 5), Compression::Plain);
    let rows = analyze_files(&[path], &config, 2).rows();
    let ties = rows.windows(2).filter(|w| w[0].score == w[1].score).count();
    assert!(ties > rows.len() / 2, "only {ties} ties among {} rows", rows.len());
    let rules: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.rule.as_str()).collect();
    assert!(rules.len() > 1, "{rules:?}");
    for w in rows.windows(2) {
        assert_ne!(
            ProfileRow::hotness_order(&w[0], &w[1]),
            std::cmp::Ordering::Greater,
            "{:?} before {:?}",
            w[0],
            w[1]
        );
    }
}
