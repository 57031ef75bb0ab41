//! The `preheat` binary as a user runs it: exit codes, stdout, stderr.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

#[test]
fn the_demo_analyzes_the_sample_and_shows_top_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(
        dir.path(),
        &["analyze", "--config", &repo("data/preheat.toml"), &repo("data/access.log.gz")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("gzip"), "{stdout}");
    assert!(stdout.contains("product:"), "{stdout}");
    assert!(stdout.contains("profiles/"), "{stdout}");
    assert!(stderr_has(&out, "analysis finished"));

    let show = preheat(dir.path(), &["profile", "show", "--json", "--top", "5"]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON on stdout");
    assert_eq!(v["top"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["schema_version"], 1);
    assert!(v["top"][0]["params"].is_object());
}

#[test]
fn a_bad_config_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nname = \"product\"\nmatch = \"GET /p/{id:uuid}\"\nkey = \"product:{id}\"\n\n[[rule]]\nname = \"page\"\nmatch = \"GET /x/{slug}\"\nkey = \"page:{sulg}\"\ntll = \"5m\"\n",
    )
    .expect("writable");
    fs::write(dir.path().join("a.log"), "").expect("writable");
    let out = preheat(dir.path(), &["analyze", "--config", "bad.toml", "a.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    // Unknown fields and the checks of what is known, all at once.
    assert!(err.contains("error: invalid config `bad.toml` (3 problems)"), "{err}");
    assert!(err.contains("bad.toml:10:1: rule[1].tll: unknown field `tll`"), "{err}");
    assert!(err.contains("bad.toml:3:17: rule `product`: match: unknown capture type `uuid`"), "{err}");
    assert!(err.contains("bad.toml:9:13: rule `page`: key: `{sulg}` is not a capture"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    // Wrong types name the field's path and both types, beside unknown fields and semantic
    // problems; a value refused for its type is not reported again as missing.
    fs::write(
        dir.path().join("types.toml"),
        "[warm]\nmax_keys = \"lots\"\ndeadlne = \"1m\"\n\n[sources.shop]\nurl = \"sqlite://x.db\"\ntimeout = 5\n\n\
         [[rule]]\nname = \"product\"\nmatch = \"GET /p/{id:uuid}\"\nkey = \"product:{id}\"\nttl = 5\nsource = \"shop\"\n\
         sql = \"SELECT id, body FROM products WHERE id IN ($1)\"\n",
    )
    .expect("writable");
    let out = preheat(dir.path(), &["config", "check", "--config", "types.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for line in [
        "error: invalid config `types.toml` (5 problems)",
        "types.toml:2:12: warm.max_keys: expected an integer, found a string",
        "types.toml:3:1: warm.deadlne: unknown field `deadlne`",
        "types.toml:7:11: sources.shop.timeout: expected a string, found an integer",
        "types.toml:11:17: rule `product`: match: unknown capture type `uuid`",
        "types.toml:13:7: rule[0].ttl: expected a string, found an integer",
    ] {
        assert!(err.contains(line), "no `{line}` in\n{err}");
    }

    fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nname = \"product\"\nmatch = \"GET /p/{id:uuid}\"\nkey = \"product:{id}\"\n\n[[rule]]\nname = \"page\"\nmatch = \"GET /x/{slug}\"\nkey = \"page:{sulg}\"\n",
    )
    .expect("writable");
    let out = preheat(dir.path(), &["analyze", "--config", "bad.toml", "a.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("(2 problems)"), "{err}");
    assert!(err.contains("bad.toml:3:17: rule `product`: match: unknown capture type `uuid`"), "{err}");
    assert!(err.contains("bad.toml:9:13: rule `page`: key: `{sulg}` is not a capture"), "{err}");
    assert!(err.contains("known: `slug`"), "{err}");
}

#[test]
fn usage_mistakes_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(dir.path(), &["analyze", "missing.log"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "error: log `missing.log` does not exist"));
    assert!(stderr_has(&out, "hint: pass files, directories, globs"));

    let out = preheat(dir.path(), &["analyze", "--format", "apache", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "unknown log format `apache`"));

    let out = preheat(dir.path(), &["analyze", "--since", "yesterday-ish", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "--since `yesterday-ish` is neither a time nor an age"));

    let out = preheat(dir.path(), &["analyze", "logs/*.gz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "no file matches `logs/*.gz`"));
}

#[test]
fn a_damaged_input_exits_3_and_still_writes_the_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    write_log(&dir.path().join("good.log"), &config, &gen_opts(1_000, 20, 1), Compression::Plain);
    fs::write(dir.path().join("bad.log.gz"), [0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        .expect("writable");
    let out = preheat(dir.path(), &["analyze", "good.log", "bad.log.gz"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ERROR"));
    assert!(stderr_has(&out, "bad.log.gz"));
    assert!(dir.path().join("profiles/latest").is_file());

    // With no other input, nothing could be read: a failure that says what to check, and
    // the profile written before stays the latest.
    let latest = fs::read_to_string(dir.path().join("profiles/latest")).expect("latest exists");
    let out = preheat(dir.path(), &["analyze", "bad.log.gz"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "no input could be read"), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "hint: check that the files are readable"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dir.path().join("profiles/latest")).expect("latest exists"), latest);
}

#[test]
fn an_analysis_that_counts_no_key_writes_no_profile_and_keeps_latest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = repo("data/preheat.toml");
    let sample = repo("data/access.log.gz");
    let out = preheat(dir.path(), &["analyze", "--config", &config, &sample]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let latest = || fs::read_to_string(dir.path().join("profiles/latest")).expect("latest exists");
    let profiles = || fs::read_dir(dir.path().join("profiles")).expect("store").count();
    let good = latest();
    let stored = profiles();

    // The wrong log format: every line is rejected.
    let out = preheat(dir.path(), &["analyze", "--config", &config, "--format", "json", &sample]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "most lines were rejected"));
    assert!(stderr_has(&out, "error: no profile written: none of the 20000 lines is a request"));
    assert!(stderr_has(&out, &format!("`latest` still points to `profiles/{}`", good.trim())));
    assert!(stderr_has(&out, "hint: check the log format"));
    assert_eq!((latest(), profiles()), (good.clone(), stored));

    // Analyzes the sample with a config of its own.
    let analyze_with = |file: &str, config: &str| {
        fs::write(dir.path().join(file), config).expect("writable");
        preheat(dir.path(), &["analyze", "--config", file, &sample])
    };

    // Rules that match nothing in the log.
    let out = analyze_with(
        "other.toml",
        "[[rule]]\nname = \"cart\"\nmatch = \"GET /cart/{id}\"\nkey = \"cart:{id}\"\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "no request was counted for a key: of 19968 requests, "));
    assert!(stderr_has(&out, "hint: add rules for the unmatched paths listed above"));
    assert!(text(&out.stdout).contains("top unmatched paths"));
    assert!(text(&out.stdout).contains("profile   not written (no key was counted, see below)"));
    assert_eq!((latest(), profiles()), (good.clone(), stored));

    // A rule that matches every request but caches none of their statuses.
    let out = analyze_with(
        "status.toml",
        "[[rule]]\nname = \"all\"\nmatch = \"GET /{rest:path}\"\nkey = \"all:{rest}\"\nstatus = [599]\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "of 19968 requests, 19968 had a status no rule caches"));
    assert!(stderr_has(&out, "hint: check the rules' `status` filters"));
    assert_eq!((latest(), profiles()), (good.clone(), stored));

    // A dry run counts keys and says why it wrote nothing.
    let out = preheat(dir.path(), &["analyze", "--config", &config, "--dry-run", &sample]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("profile   not written (--dry-run)"));
    assert_eq!((latest(), profiles()), (good.clone(), stored));

    // An empty log, and a window that holds none of the log's requests.
    fs::write(dir.path().join("empty.log"), "").expect("writable");
    let out = preheat(dir.path(), &["analyze", "--config", &config, "empty.log"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "error: no profile written: the logs hold no lines"));
    let out =
        preheat(dir.path(), &["analyze", "--config", &config, "--since", "2030-01-01T00:00:00Z", &sample]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "of 19968 requests, 19968 were outside --since/--until"));
    assert!(stderr_has(&out, "hint: check --since and --until"));
    assert_eq!((latest(), profiles()), (good.clone(), stored));

    // Asked for, the empty profile is written and becomes the latest.
    let out = preheat(dir.path(), &["analyze", "--config", "other.toml", "--allow-empty", &sample]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_ne!(latest(), good);
    assert_eq!(profiles(), stored + 1);
    // and a plan from it says why it is empty.
    let out = preheat(dir.path(), &["plan", "--config", "other.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "nothing to warm: the profile holds no keys"));
}

#[test]
fn stdin_and_json_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let path = dir.path().join("in.log");
    let truth = write_log(&path, &config, &gen_opts(3_000, 40, 2), Compression::Zstd);
    fs::write(dir.path().join("preheat.toml"), RULES).expect("writable");
    let mut child = Command::new(env!("CARGO_BIN_EXE_preheat"))
        .args(["--log-format", "json", "analyze", "--json", "--dry-run", "-"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let bytes = fs::read(&path).expect("written");
    child.stdin.take().expect("piped").write_all(&bytes).expect("writes");
    let out = child.wait_with_output().expect("finishes");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["summary"]["lines"]["matched"], truth.counts.values().sum::<u64>());
    assert_eq!(v["summary"]["inputs"][0]["compression"], "zstd");
    assert!(v["profile"].is_null());
    for line in text(&out.stderr).lines() {
        let log: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(log["level"].is_string());
    }
}

#[test]
fn profile_show_without_profiles_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(dir.path(), &["profile", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "no profile in `profiles`: run `preheat analyze` first"));
}

#[test]
fn generate_log_writes_truth_that_analyze_confirms() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("preheat.toml"), RULES).expect("writable");
    let out = preheat(
        dir.path(),
        &[
            "generate-log",
            "--lines",
            "4000",
            "--keys",
            "50",
            "--seed",
            "3",
            "-o",
            "g.log.gz",
            "--truth",
            "truth.tsv",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["analyze", "--json", "--top", "3", "g.log.gz"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let truth = fs::read_to_string(dir.path().join("truth.tsv")).expect("written");
    for (i, line) in truth.lines().skip(1).take(3).enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(v["top"][i]["key"], cols[1]);
        assert_eq!(v["top"][i]["count"].to_string(), cols[2]);
    }
}

/// Analyzes the sample log into a temporary store, then runs `script` with python3 beside its
/// `profiles/`; the script asserts what a reader using `module` sees and prints the row count.
/// A missing module fails the test with the install hint (`scripts/test.sh` installs it).
fn check_profile_with_python(module: &str, script: &str) {
    require_python_module(module);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(
        dir.path(),
        &["analyze", "--config", &repo("data/preheat.toml"), &repo("data/access.log.gz")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let py =
        Command::new("python3").args(["-c", script]).current_dir(dir.path()).output().expect("python runs");
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert!(text(&py.stdout).trim().parse::<u64>().is_ok_and(|n| n > 100));
}

#[test]
fn other_parquet_readers_can_read_a_profile() {
    check_profile_with_python(
        "pyarrow",
        r#"
import glob, json, pyarrow.parquet as pq
path = glob.glob("profiles/*.parquet")[0]
t = pq.read_table(path)
meta = pq.read_metadata(path).metadata
summary = json.loads(meta[b"preheat.summary"])
rows = t.to_pylist()
assert [f.name for f in t.schema][:4] == ["rule", "key", "count", "score"], t.schema
assert str(t.schema.field("first_seen").type) == "timestamp[ms, tz=UTC]"
assert sum(r["count"] for r in rows) == summary["lines"]["matched"]
assert rows[0]["score"] >= rows[-1]["score"]
print(len(rows))
"#,
    );
}

/// Column types as SQL sees them, the metadata through DuckDB's own reader, the rows in file
/// order sorted by score, and a row's parameters as JSON.
#[test]
fn duckdb_can_query_a_profile() {
    check_profile_with_python(
        "duckdb",
        r#"
import duckdb, glob, json
path = glob.glob("profiles/*.parquet")[0]
con = duckdb.connect()
q = lambda sql: con.execute(sql).fetchall()
types = dict(q(f"select column_name, column_type from (describe select * from '{path}')"))
assert types["first_seen"] == "TIMESTAMP WITH TIME ZONE", types
assert (types["rule"], types["count"], types["score"], types["params"]) == ("VARCHAR", "BIGINT", "DOUBLE", "VARCHAR"), types
meta = dict(q(f"select decode(key), decode(value) from parquet_kv_metadata('{path}')"))
summary = json.loads(meta["preheat.summary"])
[(rows, total)] = q(f"select count(*), sum(count) from '{path}'")
assert total == summary["lines"]["matched"], (total, summary["lines"])
[(out_of_order,)] = q(f"select count(*) from (select score, lag(score) over (order by file_row_number) as prev from read_parquet('{path}', file_row_number = true)) where prev < score")
assert out_of_order == 0, out_of_order
[(key, params)] = q(f"select key, params from '{path}' where rule = 'product' order by score desc limit 1")
assert key == "product:" + json.loads(params)["id"], (key, params)
print(rows)
"#,
    );
}

#[test]
fn plan_shows_the_warm_set_within_budgets() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("preheat.toml"), format!("[warm]\nmax_keys = 25\n{RULES}")).expect("writable");
    let demo = repo("data/preheat.toml");
    let out = preheat(dir.path(), &["analyze", "--config", &demo, &repo("data/access.log.gz")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Planned with the test rules, which share three of the demo's four.
    let out = preheat(dir.path(), &["plan", "--json", "--top", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(25));
    assert_eq!(v["limit"], "max_keys");
    let coverage = v["predicted_coverage"].as_f64().expect("a number");
    assert!(coverage > 0.0 && coverage < 1.0, "{coverage}");
    assert!(
        v["rows_of_unknown_rules"].as_u64().is_some_and(|n| n > 0),
        "user_profile rows are not in these rules"
    );
    assert!(stderr_has(&out, "stale profile: it was made with other rules"), "{}", text(&out.stderr));

    // Without --top, --json lists every planned key, as its help says; --top cuts the list.
    let out = preheat(dir.path(), &["plan", "--json", "--max-keys", "40"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(40));
    let out = preheat(dir.path(), &["plan", "--json", "--top", "7"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(7));

    let out = preheat(dir.path(), &["plan", "--top", "3"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.contains("coverage  ") && table.contains("stopped at warm.max_keys"), "{table}");

    let out = preheat(dir.path(), &["plan", "--profile", "nope.parquet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "cannot open profile `nope.parquet`"));
}

#[test]
fn warm_can_be_skipped_by_config_or_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("preheat.toml"), format!("[warm]\nenabled = false\n{RULES}"))
        .expect("writable");
    let out = preheat(dir.path(), &["warm", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["status"], "skipped");
    assert!(stderr_has(&out, "warm.enabled = false"));

    fs::write(dir.path().join("preheat.toml"), RULES).expect("writable");
    let out = Command::new(env!("CARGO_BIN_EXE_preheat"))
        .args(["warm", "--strict"])
        .current_dir(dir.path())
        .env("PREHEAT_SKIP", "1")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("skipped"));

    // `PREHEAT_SKIP=0` does not skip (here the warm then fails to start: there is no profile),
    // and a value that is neither yes nor no is refused with the accepted values, not guessed.
    let with_skip = |value: &str| {
        Command::new(env!("CARGO_BIN_EXE_preheat"))
            .args(["warm"])
            .current_dir(dir.path())
            .env("PREHEAT_SKIP", value)
            .output()
            .expect("runs")
    };
    let out = with_skip("no");
    assert!(text(&out.stdout).contains("failed"), "{}", text(&out.stdout));
    let out = with_skip("maybe");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "PREHEAT_SKIP=\"maybe\": expected 1, 0, true, false, yes or no"));
    let out = Command::new(env!("CARGO_BIN_EXE_preheat"))
        .args(["warm"])
        .current_dir(dir.path())
        .env("PREHEAT_STRICT", "maybe")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "expected 1, 0, true, false, yes or no"), "{}", text(&out.stderr));
}

/// Checks Prometheus text with `promtool check metrics` (Debian's `prometheus` package).
fn promtool_accepts(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus; `bash scripts/test.sh` installs it)");
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("written");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(out.status.success(), "promtool: {}{}\n{metrics}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool lint: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_missing_profile_fails_the_warm_only_when_strict() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("preheat.toml"), RULES).expect("writable");
    let out = preheat(dir.path(), &["warm", "--report", "run.json", "--metrics-file", "warm.prom"]);
    assert_eq!(out.status.code(), Some(0), "a missing profile must not fail a deploy");
    assert!(stderr_has(&out, "warm not run") && stderr_has(&out, "no profile in"));
    // The report and the metrics say so, for the pipeline and for alerts.
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("run.json")).expect("report written"))
            .expect("JSON");
    assert_eq!(report["status"], "failed");
    assert!(report["errors"][0].as_str().is_some_and(|e| e.contains("no profile in")), "{report}");
    let metrics = fs::read_to_string(dir.path().join("warm.prom")).expect("metrics written");
    promtool_accepts(&metrics);
    assert!(metrics.lines().any(|l| l == "preheat_warm_status{status=\"failed\"} 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "preheat_warm_success 0"), "{metrics}");
    let out = preheat(dir.path(), &["warm", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "no profile in `profiles`"));
}

/// A directory with a copy of `data/` in which `preheat demo` ran (profile, `shop.db`).
#[test]
fn the_demo_warms_from_its_database_and_reports() {
    let (dir, out) = after_the_demo();
    let data = dir.path().join("data");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("== 3. warm") && stdout.contains("== 4. size the cache"), "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(stdout.contains("not in source"), "{stdout}");
    assert!(data.join("shop.db").is_file());

    // The same warm through `preheat warm`, with a JSON report file and --strict: rows missing
    // from the database are not failures.
    let out = preheat(
        dir.path(),
        &[
            "warm",
            "--config",
            "data/preheat.toml",
            "--strict",
            "--report",
            "run.json",
            "--metrics-file",
            "warm.prom",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let metrics = fs::read_to_string(dir.path().join("warm.prom")).expect("metrics written");
    promtool_accepts(&metrics);
    assert!(metrics.lines().any(|l| l == "preheat_warm_status{status=\"completed\"} 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "preheat_warm_success 1"), "{metrics}");
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("run.json")).expect("report written"))
            .expect("JSON");
    assert_eq!(report["status"], "completed");
    assert!(report["written"].as_u64().is_some_and(|n| n > 1000), "{report}");
    assert!(report["missing_in_source"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(report["failed"], serde_json::json!({}));
    assert!(report["peak_memory"].as_u64().is_some_and(|p| p > 0), "{report}");
    assert!(report["memory_budget"].as_u64().is_some_and(|b| b > 0), "{report}");

    // Into a Redis of its own, with JSON log lines: a start line, a final status, all JSON.
    let redis = crate::servers::Redis::start();
    let out = preheat(
        dir.path(),
        &[
            "--log-format",
            "json",
            "warm",
            "--config",
            "data/preheat.toml",
            "--backend",
            &redis.url(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.contains(&"warming") && messages.contains(&"warm finished"), "{messages:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["written"].as_u64().is_some_and(|n| n > 1000), "{report}");
    let mut c = redis.client().get_connection().expect("connects");
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(Some(size), report["written"].as_u64(), "the lock was released; only values remain");
}

#[test]
fn a_corrupt_profile_is_named_and_fails_the_warm_only_when_strict() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("broken.parquet"), b"PAR1 this is not a profile").expect("writable");
    let out = preheat(dir.path(), &["warm", "--profile", "broken.parquet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "broken.parquet") && stderr_has(&out, "warm not run"), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["warm", "--profile", "broken.parquet", "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "broken.parquet"), "{}", text(&out.stderr));
}

#[test]
fn warm_strict_exits_4_when_keys_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    fs::create_dir(&data).expect("writable");
    for f in ["preheat.toml", "access.log.gz"] {
        fs::copy(repo(&format!("data/{f}")), data.join(f)).expect("copy");
    }
    // No shop.db: every source query fails.
    let out = preheat(dir.path(), &["analyze", "--config", "data/preheat.toml", "data/access.log.gz"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["warm", "--config", "data/preheat.toml"]);
    assert_eq!(out.status.code(), Some(0), "degraded but not strict: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("failed"));
    let out = preheat(dir.path(), &["warm", "--config", "data/preheat.toml", "--strict"]);
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn a_backend_url_of_another_scheme_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, log) = (repo("data/preheat.toml"), repo("data/access.log.gz"));
    let out = preheat(dir.path(), &["analyze", "--config", &config, &log]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let warm = |strict: bool| {
        let mut args = vec!["warm", "--config", &config, "--backend", "http://ops:s3cret@cache:80"];
        if strict {
            args.push("--strict");
        }
        preheat(dir.path(), &args)
    };
    let out = warm(false);
    assert_eq!(out.status.code(), Some(0), "not strict: the deploy goes on: {}", text(&out.stderr));
    let out = warm(true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "is not `redis://`"), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "hint: set --backend / PREHEAT_BACKEND"), "{}", text(&out.stderr));
    assert!(!stderr_has(&out, "s3cret"), "{}", text(&out.stderr));
}

#[test]
fn warm_over_tls_as_an_acl_user_never_shows_the_password() {
    let redis = crate::servers::Redis::start_tls();
    let mut admin = redis.client().get_connection().expect("connects over TLS");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "warmer", "on", ">s3cret-pass", "~*", "+@all"])
        .query(&mut admin)
        .expect("ACL SETUSER");
    let (dir, _) = after_the_demo();
    let demo_config = fs::read_to_string(dir.path().join("data/preheat.toml")).expect("readable");
    let with_backend = |password: &str, ca: bool| {
        let mut backend = format!("url = \"rediss://warmer:{password}@127.0.0.1:{}/0\"", redis.port);
        if ca {
            backend.push_str(&format!("\nca_file = \"{}\"", redis.ca_file().display()));
        }
        demo_config.replace("url = \"memory://\"", &backend)
    };

    fs::write(dir.path().join("tls.toml"), with_backend("s3cret-pass", true)).expect("writable");
    let out = preheat(dir.path(), &["warm", "--config", "tls.toml", "--json", "--strict"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["written"].as_u64().is_some_and(|n| n > 1000), "{report}");
    assert_eq!(report["backend"], format!("rediss://warmer:***@127.0.0.1:{}/0", redis.port));
    let size: u64 = redis::cmd("DBSIZE").query(&mut admin).expect("DBSIZE");
    assert_eq!(Some(size), report["written"].as_u64());

    // A wrong password, and a server certificate no trusted CA signed: the warm degrades,
    // says why, exits 0, and the password appears nowhere.
    for (name, config) in
        [("wrong", with_backend("not-the-pass", true)), ("no-ca", with_backend("s3cret-pass", false))]
    {
        fs::write(dir.path().join("bad.toml"), config).expect("writable");
        let out = preheat(dir.path(), &["warm", "--config", "bad.toml", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains("not-the-pass") && !all.contains("s3cret-pass"),
            "{name}: password shown: {all}"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(report["written"], 0, "{name}: {report}");
        assert!(report["failed"].as_object().is_some_and(|f| !f.is_empty()), "{name}: {report}");
    }
}

#[test]
fn report_sizes_the_cache_from_the_latest_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(dir.path(), &["report"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "no profile in `profiles`"), "{}", text(&out.stderr));

    let out = preheat(
        dir.path(),
        &["analyze", "--config", &repo("data/preheat.toml"), &repo("data/access.log.gz")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["report"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("fewest keys") && table.contains("80.0%") && table.contains("product"), "{table}");

    let out = preheat(dir.path(), &["report", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let recs = report["overall"]["recommendations"].as_array().expect("recommendations");
    assert_eq!(recs.len(), 4);
    let keys: Vec<u64> = recs.iter().map(|r| r["keys"].as_u64().expect("reachable")).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
    assert_eq!(report["rules"].as_array().map(Vec::len), Some(4), "{report}");

    // With the log replayed: the LRU curve, and its hit ratios at the recommended sizes.
    let log = repo("data/access.log.gz");
    let out = preheat(dir.path(), &["report", "--config", &repo("data/preheat.toml"), &log]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("LRU hit ratio by cache size"), "{}", text(&out.stdout));
    let out = preheat(dir.path(), &["report", "--json", "--config", &repo("data/preheat.toml"), &log]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let curve = &report["miss_ratio_curve"];
    assert!(curve["sampling_rate"].is_null(), "a small log gets the exact curve: {curve}");
    assert_eq!(curve["distinct_keys"], report["overall"]["keys"], "the profile and the replay agree");
    let sim = &report["cold_vs_warm"];
    assert_eq!(sim["capacity"], report["overall"]["recommendations"][1]["keys"], "sized for 90% by default");
    assert!(sim["warm_misses"].as_u64() < sim["cold_misses"].as_u64(), "{sim}");

    // The same as one self-contained HTML page, which a real browser renders.
    let out = preheat(
        dir.path(),
        &["report", "--config", &repo("data/preheat.toml"), "--html", "report.html", &log],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = fs::read_to_string(dir.path().join("report.html")).expect("written");
    assert_eq!(html.matches("<svg").count(), 5, "five charts");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "self-contained"
    );
    let shot = dir.path().join("report.png");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=800,2400",
            "--enable-logging=stderr",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.path().join("report.html").display()))
        .output()
        .expect("chromium runs (`bash scripts/test.sh` installs it)");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    let console_errors: Vec<&str> =
        std::str::from_utf8(&out.stderr).unwrap_or("").lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console_errors.is_empty(), "the page logged errors: {console_errors:?}");
    let png = fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());

    // A log no rule matches says what to check.
    fs::write(dir.path().join("other.log"), "not a log line\n").expect("writable");
    let out = preheat(dir.path(), &["report", "--config", &repo("data/preheat.toml"), "other.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "no request in 1 line matched a rule"), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "hint: check the rules (--config) and the log format"), "{}", text(&out.stderr));
}

#[test]
fn verify_reports_a_verdict_or_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = repo("data/preheat.toml");
    let out = preheat(dir.path(), &["verify", "--config", &config, "after.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_has(&out, "no profile in `profiles`"), "{}", text(&out.stderr));

    let out = preheat(dir.path(), &["analyze", "--config", &config, &repo("data/access.log.gz")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let args = [
        "generate-log",
        "--config",
        &config,
        "--format",
        "json",
        "--seed",
        "9",
        "--lines",
        "3000",
        "-o",
        "after.log",
    ];
    let out = preheat(dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out =
        preheat(dir.path(), &["verify", "--config", &config, "after.log", "--metrics-file", "verify.prom"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let metrics = fs::read_to_string(dir.path().join("verify.prom")).expect("metrics written");
    promtool_accepts(&metrics);
    assert!(metrics.contains("preheat_verify_hit_ratio{keys=\"warmed\"}"), "{metrics}");
    let table = text(&out.stdout);
    assert!(table.contains("* the warm set covered") && table.contains("minute"), "{table}");
    let out = preheat(dir.path(), &["verify", "--json", "--config", &config, "after.log"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v["requests"].as_u64(),
        Some(v["rules"].as_array().expect("rules").iter().map(|r| r["requests"].as_u64().expect("n")).sum())
    );
}

#[test]
fn verify_asks_redis_which_warmed_keys_were_read_and_how_it_hits() {
    let redis = crate::servers::Redis::start();
    let (dir, _) = after_the_demo();
    let config = "data/preheat.toml";
    let out =
        preheat(dir.path(), &["warm", "--config", config, "--backend", &redis.url(), "--report", "run.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("run.json")).expect("report")).expect("JSON");
    let out = preheat(dir.path(), &["plan", "--config", config, "--json", "--top", "100000"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let products: Vec<String> = plan["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["key"].as_str().is_some_and(|s| s.starts_with("product:")))
        .map(|k| k["key"].as_str().expect("a key").to_string())
        .collect();

    // Some time after the warm, the application reads every product.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let mut c = redis.client().get_connection().expect("connects");
    let mut present = 0;
    for k in &products {
        let v: Option<String> = redis::cmd("GET").arg(k).query(&mut c).expect("GET");
        present += u64::from(v.is_some());
    }
    // During the window: 40 hits and 10 misses.
    let url = redis.url();
    let traffic = std::thread::spawn({
        let products = products.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(700));
            let mut c = redis::Client::open(url).expect("valid").get_connection().expect("connects");
            for k in products.iter().filter(|k| !k.ends_with('0')).take(40) {
                let _: Option<String> = redis::cmd("GET").arg(k).query(&mut c).expect("GET");
            }
            for i in 0..10 {
                let _: Option<String> =
                    redis::cmd("GET").arg(format!("absent:{i}")).query(&mut c).expect("GET");
            }
        }
    });
    let out = preheat(
        dir.path(),
        &[
            "verify",
            "--config",
            config,
            "--redis",
            &redis.url(),
            "--window",
            "3s",
            "--sample",
            "100000",
            "--warm-report",
            "run.json",
            "--json",
        ],
    );
    traffic.join().expect("traffic ran");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let r = &v["redis"];
    assert_eq!(r["keyspace"], serde_json::json!({"hits": 40, "misses": 10}), "{v}");
    // Only the keys the warm wrote are sampled: the plan's keys missing in the shop's database
    // were never cached.
    let planned = plan["keys"].as_array().map(|k| k.len() as u64).expect("keys");
    assert!(run["written"].as_u64().is_some_and(|w| w < planned), "{run}");
    assert_eq!(r["sampled"], run["written"], "{v}");
    assert_eq!(r["present"], run["written"], "{v}");
    // Idle times are whole seconds of Redis's own LRU clock, which its cron advances: the
    // keys read during the window always count as read, and no more keys than are cached.
    let read = r["read_since_warm"].as_u64().expect("a count");
    assert!((40..=present).contains(&read), "{read} read of {present}: {v}");
    assert_eq!(r["signal"], "idle_time");
    assert!(
        v["verdict"].as_array().is_some_and(|l| l
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.contains("keyspace hit ratio 80%")))),
        "{v}"
    );
}

#[test]
fn one_flag_name_means_one_thing_and_help_lists_every_subcommand() {
    // `--format` is the access log's format for analyze, report and verify alike.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = repo("data/preheat.toml");
    let out = preheat(dir.path(), &["analyze", "--config", &config, &repo("data/access.log.gz")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    fs::write(dir.path().join("x.log"), "").expect("writable");
    for command in ["analyze", "report", "verify"] {
        let out = preheat(dir.path(), &[command, "--config", &config, "--format", "hello", "x.log"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out.stderr));
        assert!(stderr_has(&out, "--format:"), "{command}: {}", text(&out.stderr));
    }
    // A combined log read as JSON lines matches nothing: the flag is used, not ignored.
    let log = repo("data/access.log.gz");
    let out = preheat(dir.path(), &["report", "--config", &config, "--format", "json", &log]);
    assert!(stderr_has(&out, "matched a rule"), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["verify", "--config", &config, "--format", "json", &log]);
    assert!(text(&out.stdout).contains("no request in the logs matched a rule"), "{}", text(&out.stdout));
    let out = preheat(dir.path(), &["verify", "--config", &config, "--format", "combined", &log]);
    assert!(text(&out.stdout).contains("the warm set covered"), "{}", text(&out.stdout));

    // `profile --help` names every subcommand, and so does `profiles`, its visible alias.
    for name in ["profile", "profiles"] {
        let out = preheat(dir.path(), &[name, "--help"]);
        let help = text(&out.stdout);
        for sub in ["list", "show", "prune", "merge"] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(sub)),
                "{name} --help lacks {sub}: {help}"
            );
        }
        assert!(help.contains("list, show, prune, merge"), "{help}");
    }

    // bash completes `preheat profiles <TAB>` with its subcommands.
    let script = preheat(dir.path(), &["completions", "bash"]);
    fs::write(dir.path().join("preheat.bash"), &script.stdout).expect("writable");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source ./preheat.bash; COMP_WORDS=(preheat profiles ''); COMP_CWORD=2; \
             COMP_LINE='preheat profiles '; COMP_POINT=${#COMP_LINE}; _preheat preheat '' profiles; \
             echo \"${COMPREPLY[@]}\"",
        )
        .current_dir(dir.path())
        .output()
        .expect("bash runs");
    let offered = text(&out.stdout);
    for sub in ["list", "show", "prune", "merge"] {
        assert!(offered.split_whitespace().any(|w| w == sub), "`preheat profiles <TAB>` offers: {offered}");
    }
}

#[test]
fn small_things_read_right() {
    let (dir, _) = after_the_demo();
    // Two profiles, so that prune has something to do.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = preheat(dir.path(), &["analyze", "--config", "data/preheat.toml", "data/access.log.gz"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // `profiles list` shows whole timestamps, to the second with their zone.
    let out = preheat(dir.path(), &["profiles", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let created = rows[0]["created"].as_str().expect("a time");
    let to_the_second = format!("{}Z", &created[..created.find('.').unwrap_or(19)]);
    let table = text(&preheat(dir.path(), &["profiles", "list"]).stdout);
    assert!(table.contains(&format!(" {to_the_second} ")), "{to_the_second} in\n{table}");

    // `prune --dry-run` deletes nothing and does not log that it pruned.
    let out = preheat(dir.path(), &["profiles", "prune", "--keep", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("would delete"), "{}", text(&out.stdout));
    assert!(!stderr_has(&out, "pruned") && stderr_has(&out, "would be deleted"), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_dir(dir.path().join("profiles")).expect("store").count(),
        3,
        "two profiles and latest"
    );

    // `config check` calls a profile fresh only against an age limit.
    let out = preheat(dir.path(), &["config", "check", "--config", "data/preheat.toml"]);
    assert!(text(&out.stdout).contains("(no age limit: set warm.max_profile_age"), "{}", text(&out.stdout));
    // (The sample log is from 2026-01-01.)
    let out = preheat(
        dir.path(),
        &["config", "check", "--config", "data/preheat.toml", "--max-profile-age", "10000d"],
    );
    assert!(
        text(&out.stdout).contains("(fresh: younger than warm.max_profile_age = "),
        "{}",
        text(&out.stdout)
    );

    // An error says its cause once.
    let out = preheat(dir.path(), &["config", "check", "--config", "no-such.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).matches("No such file or directory").count(), 1, "{}", text(&out.stderr));
}

#[test]
fn the_demo_runs_from_any_directory() {
    // No sample here: the one built into the binary is used, and nothing is left behind but
    // the profile store.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = preheat(empty.path(), &["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("using the one built into preheat"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("warm      completed"), "{}", text(&out.stdout));
    let left: Vec<_> =
        fs::read_dir(empty.path()).expect("listable").filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert_eq!(left, ["profiles"], "only the profile store is written here");

    // A sample elsewhere, named with --data from another directory: its own database is used.
    let (elsewhere, _) = after_the_demo();
    let out =
        preheat(empty.path(), &["demo", "--data", &elsewhere.path().join("data").display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("warm      completed"), "{}", text(&out.stdout));

    let out = preheat(empty.path(), &["demo", "--data", "profiles"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_has(&out, "--data `profiles` has no `preheat.toml`"), "{}", text(&out.stderr));
    assert!(stderr_has(&out, "leave it out to use the sample built into preheat"), "{}", text(&out.stderr));
}

#[test]
fn the_manual_has_every_command_and_option_the_configuration_the_environment_and_exit_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(dir.path(), &["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    fs::write(dir.path().join("preheat.1"), &out.stdout).expect("writable");
    // Rendered as man(1) does it (preconv for UTF-8), with every warning on.
    let rendered = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-P", "-c", "-rLL=200n"])
        .arg(dir.path().join("preheat.1"))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("groff runs (Debian's groff-base; `bash scripts/test.sh` installs it)");
    assert!(rendered.status.success() && rendered.stderr.is_empty(), "groff: {}", text(&rendered.stderr));
    // Bold text is overstruck (`-P -c` keeps the backspaces): read the letters only.
    let page = strip_overstrike(&text(&rendered.stdout));
    for section in ["GLOBAL OPTIONS", "COMMANDS", "CONFIGURATION", "ENVIRONMENT", "EXIT STATUS"] {
        assert!(page.lines().any(|l| l == section), "no {section} section");
    }
    // Every command and subcommand, and every option each one has in its --help.
    let commands = [
        "analyze",
        "demo",
        "plan",
        "warm",
        "report",
        "verify",
        "config check",
        "profile list",
        "profile prune",
        "profile merge",
        "profile show",
        "generate-log",
        "completions",
        "man",
    ];
    for command in commands {
        assert!(page.contains(&format!("preheat {command}")), "`preheat {command}` is not in the manual");
        let words: Vec<&str> = command.split(' ').collect();
        let help = preheat(dir.path(), &[&words[..], &["--help"]].concat());
        for flag in text(&help.stdout).split_whitespace().filter(|w| w.starts_with("--")) {
            let flag = flag.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            if flag != "--help" {
                assert!(page.contains(flag), "`preheat {command}` {flag} is not in the manual");
            }
        }
    }
    for field in ["max_keys_per_rule", "on_existing", "stale_profile", "keep_query", "ttl_jitter", "ca_file"]
    {
        assert!(page.contains(field), "configuration field {field} is not in the manual");
    }
    for variable in [
        "PREHEAT_STRICT",
        "PREHEAT_SKIP",
        "PREHEAT_CONFIG",
        "PREHEAT_PROFILES",
        "PREHEAT_BACKEND",
        "RUST_LOG",
    ] {
        assert!(page.contains(variable), "{variable} is not in the manual");
    }
    let exit = &page[page.find("EXIT STATUS").expect("the section")..];
    for code in 0..=4 {
        let explained = exit.lines().any(|l| l.split_whitespace().next() == Some(&code.to_string()));
        assert!(explained, "exit status {code} is not explained");
    }
}

/// Text of an overstruck (bold) terminal rendering: `x\bx` becomes `x`, `_\bx` becomes `x`.
fn strip_overstrike(page: &str) -> String {
    let mut out = String::new();
    for c in page.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}
