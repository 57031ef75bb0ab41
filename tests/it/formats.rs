//! Formats read their own generated lines back: Apache `LogFormat` strings to the same fields
//! as the nginx strings that log the same things, every preset to the exact ground truth.

use std::path::{Path, PathBuf};

use preheat::analyze::Analysis;
use preheat::config::Config;
use preheat::generate::generate;
use preheat::logformat::{FormatSpec, JsonFields, LogFormat, Preset, Record};

use crate::support::*;

/// A generated log of `format`, and the format.
fn generated(format: &str, seed: u64) -> (Vec<u8>, FormatSpec) {
    let config = config_with("");
    let spec = FormatSpec::parse(format).expect("a valid format");
    let mut log = Vec::new();
    generate(&config.rules, &in_format(gen_opts(3_000, 200, seed), spec.clone()), &mut log)
        .expect("generated");
    (log, spec)
}

/// Every line's record, `None` for a rejected one.
fn parsed<'a>(log: &'a [u8], spec: &FormatSpec) -> Vec<Option<Record<'a>>> {
    let format = LogFormat::from_spec(spec, &JsonFields::default()).expect("a text format");
    log.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| format.parse_line(l).ok()).collect()
}

/// Pairs of formats that log the same fields, one Apache, one nginx.
const PAIRS: [(&str, &str); 3] = [
    (
        r#"%{X-Forwarded-For}i %h %l %u %t %v "%r" %>s %b %D %{X-Cache}o "%{User-Agent}i""#,
        r#"$http_x_forwarded_for $remote_addr $ident $remote_user [$time_local] $host "$request" $status $body_bytes_sent $request_time $upstream_cache_status "$http_user_agent""#,
    ),
    (
        r#"%h [%{%Y-%m-%dT%H:%M:%S%z}t] "%m %U%q %H" %>s %O %{ms}T"#,
        r#"$remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status $bytes_sent $request_time"#,
    ),
    (
        r#"%a %{msec}t \"%r\" %s %B %{us}T"#,
        r#"$remote_addr $msec "$request" $status $body_bytes_sent $request_time"#,
    ),
];

#[test]
fn apache_lines_read_back_the_fields_of_the_same_requests_in_nginx_lines() {
    for (apache, nginx) in PAIRS {
        let ((a_log, a_spec), (n_log, n_spec)) = (generated(apache, 5), generated(nginx, 5));
        let (a, n) = (parsed(&a_log, &a_spec), parsed(&n_log, &n_spec));
        assert_eq!(a.len(), 3_000, "{apache}");
        assert_eq!(a.len(), n.len());
        let read = a.iter().filter(|r| r.is_some()).count();
        assert!(read > 2_900, "{apache}: {read} of 3000 lines read");
        for (i, (a, n)) in a.iter().zip(&n).enumerate() {
            assert_eq!(a, n, "line {} of {apache}", i + 1);
        }
        let first = a.iter().flatten().next().expect("a record");
        assert!(first.time_ms.is_some() && first.latency_us.is_some() && first.status.is_some(), "{first:?}");
    }
}

/// Writes 20,000 generated lines of `spec` into `dir` and reads them with `spec`: the exact
/// ground truth (keys, counts, rejected lines), and the analysis for more checks.
fn read_back_generated(dir: &Path, config: &Config, spec: &FormatSpec, seed: u64) -> Analysis {
    let path = dir.join(format!("access-{seed}-{}.log", spec.to_string().len()));
    let truth =
        write_log(&path, config, &in_format(gen_opts(20_000, 300, seed), spec.clone()), Compression::Plain);
    let mut opts = config.analyze_options();
    opts.log.format = spec.clone();
    let a = analyze_with(&[path], config, opts, 2);
    assert_eq!(counts(&a), truth_counts(&truth), "{spec}");
    assert_eq!(a.summary.lines.rejected, truth.malformed, "{spec}: {:?}", a.summary.samples);
    a
}

#[test]
fn apache_logs_yield_the_exact_ground_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    for (apache, _) in PAIRS {
        let a = read_back_generated(dir.path(), &config, &FormatSpec::parse(apache).expect("valid"), 3);
        assert!(a.rows().iter().all(|r| r.mean_latency_ms.is_some()), "{apache}: latency is read");
    }
}

#[test]
fn every_preset_reads_its_generated_logs_to_the_exact_ground_truth_and_is_told_by_auto() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let combined = dir.path().join("combined.log");
    write_log(&combined, &config, &gen_opts(20_000, 300, 9), Compression::Plain);
    let clients = analyze_files(&[combined], &config, 2).summary.distinct_clients;
    for preset in Preset::ALL {
        let a = read_back_generated(dir.path(), &config, &FormatSpec::Preset(preset), 9);
        assert!(a.summary.window.start.is_some(), "{preset}: times are read");
        assert!(a.rows().iter().all(|r| r.mean_latency_ms.is_some()), "{preset}: latency is read");
        assert_eq!(a.summary.distinct_clients, clients, "{preset}: clients without their ports");
        let path = PathBuf::from(&a.summary.inputs[0].name);
        let auto = analyze_files(&[path], &config, 2);
        assert_eq!(auto.summary.inputs[0].format.as_deref(), Some(preset.name()), "auto tells {preset}");
    }
}

/// A W3C log whose `#Fields:` line changes midway, far past the first chunk (16 MB of text,
/// four chunks), and gzipped: each part is read with its own columns.
#[test]
fn a_w3c_log_whose_columns_change_midway_reads_to_the_exact_ground_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("u_ex260101.log.gz");
    let spec = FormatSpec::Preset(Preset::W3c);
    let truth = write_log(&path, &config, &in_format(gen_opts(80_000, 300, 4), spec), Compression::Gzip);
    let a = analyze_files(&[path], &config, 2); // auto: told by its `#Fields:` line
    assert_eq!(a.summary.inputs[0].format.as_deref(), Some("w3c"));
    assert_eq!(counts(&a), truth_counts(&truth));
    assert_eq!(a.summary.rejected_by_reason.get("directive"), Some(&6), "{:?}", a.summary.rejected_by_reason);
    assert_eq!(a.summary.lines.rejected, truth.malformed);
}
