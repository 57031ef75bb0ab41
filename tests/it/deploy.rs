//! Running preheat in a pipeline: `config check`, overrides by flag and environment, stale
//! profiles.

use std::fs;
use std::process::{Command, Output};

use crate::support::*;

/// `preheat` in `dir` with extra environment variables.
fn preheat_env(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_preheat"));
    cmd.args(args).current_dir(dir);
    isolate(&mut cmd, env);
    cmd.output().expect("the binary runs")
}

#[test]
fn config_check_says_what_would_run_and_whether_it_answers() {
    let (dir, _) = after_the_demo();
    let out = preheat(dir.path(), &["config", "check", "--config", "data/preheat.toml", "--connect"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for needle in [
        "data/preheat.toml is valid: 4 rules, 1 source",
        "deadline 1m, at most 2000 keys",
        "backend   memory://",
        "source    shop         sql      sqlite://data/shop.db",
        "rule      product      GET /api/products/{id:int} -> product:{id}: from `shop`, ttl 10m",
        "(no age limit: set warm.max_profile_age",
        "connect   backend: ok",
        "connect   source `shop`: ok",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }

    // Nothing answers: exit 1, each failure named, no password shown.
    let port = crate::servers::free_port();
    fs::write(
        dir.path().join("down.toml"),
        format!(
            "[backend]\nurl = \"redis://:hunter2@127.0.0.1:{port}/0\"\n[sources.db]\nurl = \"sqlite://nowhere/x.db\"\n\
             [sources.app]\nurl = \"http://127.0.0.1:{port}\"\n[sources.calc]\ncommand = [\"no-such-program-here\"]\n\
             [[rule]]\nname = \"a\"\nmatch = \"GET /a/{{id}}\"\nkey = \"a:{{id}}\"\nsource = \"db\"\nsql = \"SELECT id, v FROM t WHERE id IN ($1)\"\nttl = \"1m\"\n"
        ),
    )
    .expect("writable");
    let out = preheat(dir.path(), &["config", "check", "--config", "down.toml", "--connect", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("hunter2"), "{all}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let failed: Vec<&str> = v["connect"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["what"].as_str())
        .collect();
    assert_eq!(failed, ["backend", "source `app`", "source `calc`", "source `db`"], "{v:#}");
    assert_eq!(v["warm"]["backend_url"], format!("redis://:***@127.0.0.1:{port}/0"));

    // An invalid config: exit 2 with the line and column.
    fs::write(
        dir.path().join("bad.toml"),
        "[warm]\ndeadline = \"9m\"\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n",
    )
    .expect("writable");
    let out = preheat(dir.path(), &["config", "check", "--config", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.toml:2:12: warm.deadline: `9m` is longer than the 5m"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let (dir, _) = after_the_demo();
    let deadline = |env: &[(&str, &str)], flags: &[&str]| -> serde_json::Value {
        let mut args = vec!["config", "check", "--config", "data/preheat.toml", "--json"];
        args.extend(flags);
        let out = preheat_env(dir.path(), env, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v["warm"]["deadline"].clone()
    };
    assert_eq!(deadline(&[], &[]), "1m", "the file");
    assert_eq!(deadline(&[("PREHEAT_DEADLINE", "2m")], &[]), "2m", "the environment");
    assert_eq!(deadline(&[("PREHEAT_DEADLINE", "2m")], &["--deadline", "30s"]), "30s", "the flag");
    let out =
        preheat_env(dir.path(), &[("PREHEAT_DEADLINE", "1h")], &["warm", "--config", "data/preheat.toml"]);
    assert_eq!(out.status.code(), Some(2), "an invalid override is a usage error");
    assert!(
        text(&out.stderr).contains("PREHEAT_DEADLINE: `1h` is longer than the 5m"),
        "{}",
        text(&out.stderr)
    );
    // The warm itself takes them: two keys at most.
    let out = preheat_env(
        dir.path(),
        &[("PREHEAT_MAX_KEYS", "2")],
        &["warm", "--config", "data/preheat.toml", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["planned"], 2);
}

#[test]
fn a_stale_profile_is_warned_about_or_not_used() {
    let (dir, _) = after_the_demo();
    let config = fs::read_to_string(dir.path().join("data/preheat.toml")).expect("readable");
    // The demo's log ends on a fixed past day, so any age limit of an hour makes it stale.
    let with = |name: &str, warm: &str| {
        let text = config.replacen("[warm]\n", &format!("[warm]\n{warm}\n"), 1);
        fs::write(dir.path().join(name), text).expect("writable");
    };
    with("warn.toml", "max_profile_age = \"1h\"");
    let out = preheat(dir.path(), &["warm", "--config", "warn.toml", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr_has(&out, "stale profile: its logs end"), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "completed", "warn: warms anyway");

    with("skip.toml", "max_profile_age = \"1h\"\nstale_profile = \"skip\"");
    let metrics = dir.path().join("preheat.prom");
    let metrics_arg = metrics.display().to_string();
    let out = preheat(dir.path(), &["warm", "--config", "skip.toml", "--metrics-file", &metrics_arg]);
    assert_eq!(out.status.code(), Some(0), "a stale profile never fails a deploy by itself");
    assert!(text(&out.stdout).contains("warm      skipped: the profile is stale"), "{}", text(&out.stdout));
    assert!(
        fs::read_to_string(&metrics).expect("written").contains("preheat_warm_status{status=\"stale\"} 1")
    );
    let out = preheat(dir.path(), &["warm", "--config", "skip.toml", "--strict"]);
    assert_eq!(out.status.code(), Some(4), "unless --strict");

    // Other rules than the profile's: stale too.
    let renamed = config.replace("key = \"product:{id}\"", "key = \"item:{id}\"");
    fs::write(
        dir.path().join("rules.toml"),
        renamed.replacen("[warm]\n", "[warm]\nstale_profile = \"skip\"\n", 1),
    )
    .expect("writable");
    let out = preheat(dir.path(), &["warm", "--config", "rules.toml", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "stale");
    assert!(report["errors"][0].as_str().is_some_and(|e| e.contains("made with other rules")), "{report}");
}

#[test]
fn completions_and_the_man_page_come_from_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = preheat(dir.path(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = dir.path().join("preheat.bash");
    fs::write(&script, &out.stdout).expect("writable");
    let check = Command::new("bash").arg("-n").arg(&script).output().expect("bash runs");
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    assert!(text(&out.stdout).contains("config"), "subcommands are completed");
    let man = preheat(dir.path(), &["man"]);
    assert_eq!(man.status.code(), Some(0));
    let page = text(&man.stdout);
    assert!(page.contains(".TH PREHEAT 1 \"\" \"preheat ") && page.contains("profile schema 1"), "{page}");
    let version = preheat(dir.path(), &["--version"]);
    assert_eq!(
        text(&version.stdout).trim(),
        format!("preheat {} (profile schema 1)", env!("CARGO_PKG_VERSION"))
    );
}

/// Runs `preheat analyze` of the demo log into `profiles/` under `dir`.
fn analyze_demo(dir: &std::path::Path) {
    let out =
        preheat(dir, &["-q", "analyze", "--config", "data/preheat.toml", "--top", "0", "data/access.log.gz"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn listed(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = preheat(dir, &["profiles", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("JSON")
}

#[test]
fn profiles_are_listed_and_pruned_but_latest_stays() {
    let (dir, _) = after_the_demo();
    for _ in 0..3 {
        analyze_demo(dir.path());
    }
    let all = listed(dir.path());
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|p| p["latest"] == true).count(), 1);
    assert_eq!(all[3]["latest"], true, "the newest is latest");
    assert_eq!(all[0]["lines"], 20000);
    let text_list = preheat(dir.path(), &["profiles", "list"]);
    assert!(
        text(&text_list.stdout).contains("4 profiles in profiles; * = latest"),
        "{}",
        text(&text_list.stdout)
    );

    let dry = preheat(dir.path(), &["profiles", "prune", "--keep", "2", "--dry-run"]);
    assert_eq!(text(&dry.stdout).lines().filter(|l| l.starts_with("would delete")).count(), 2);
    assert_eq!(listed(dir.path()).len(), 4, "a dry run deletes nothing");
    let none = preheat(dir.path(), &["profiles", "prune", "--keep", "1", "--older-than", "1d"]);
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(listed(dir.path()).len(), 4, "none is a day old");

    // Point `latest` at the oldest: pruning to one keeps it and the newest.
    let oldest = all[0]["path"].as_str().expect("a path").rsplit('/').next().expect("a name").to_string();
    fs::write(dir.path().join("profiles/latest"), format!("{oldest}\n")).expect("writable");
    let leftover = dir.path().join("profiles/.20200101T000000Z.parquet.tmp");
    fs::write(&leftover, b"half a profile").expect("writable");
    let touched =
        Command::new("touch").args(["-d", "2 hours ago"]).arg(&leftover).status().expect("touch runs");
    assert!(touched.success());
    let out = preheat(dir.path(), &["profiles", "prune", "--keep", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left = listed(dir.path());
    let names: Vec<&str> = left.iter().filter_map(|p| p["path"].as_str()).collect();
    assert_eq!(left.len(), 2, "{names:?}");
    assert!(names[0].ends_with(&oldest) && left[0]["latest"] == true, "{names:?}");
    assert!(!leftover.exists(), "a killed writer's temporary file goes too");

    let out = preheat(dir.path(), &["profiles", "prune"]);
    assert_eq!(out.status.code(), Some(2), "prune needs a rule");
}

#[test]
fn latest_never_dangles_even_when_the_writer_is_killed() {
    let (dir, _) = after_the_demo();
    let log = dir.path().join("big.log");
    let out = preheat(
        dir.path(),
        &[
            "-q",
            "generate-log",
            "--config",
            "data/preheat.toml",
            "--lines",
            "200000",
            "-o",
            &log.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Kill the analyzer at moments spread over its run, the profile write included.
    for (i, delay_ms) in [50u64, 300, 600, 900, 1200, 1500, 1800, 2200].iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_preheat"))
            .args(["-q", "analyze", "--config", "data/preheat.toml", "--top", "0", "big.log"])
            .current_dir(dir.path())
            .env_remove("PREHEAT_PROFILES")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("runs");
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let pointer = fs::read_to_string(dir.path().join("profiles/latest")).expect("latest is there");
        let name = pointer.trim();
        assert!(!name.is_empty() && pointer.ends_with('\n'), "round {i}: half-written pointer {pointer:?}");
        let show = preheat(dir.path(), &["profile", "show", "latest", "--top", "1"]);
        assert_eq!(
            show.status.code(),
            Some(0),
            "round {i}: `latest` ({name}) must read: {}",
            text(&show.stderr)
        );
        for p in listed(dir.path()) {
            assert!(p.get("error").is_none(), "round {i}: a visible profile is damaged: {p}");
        }
    }
}

#[test]
fn the_library_example_reports_ready_once_its_warm_covers_enough() {
    // `cargo test` builds the examples next to the test binaries.
    let exe = std::env::current_exe().expect("test binary");
    let example =
        exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples/warm_in_process");
    assert!(example.is_file(), "{} was not built", example.display());
    let out = Command::new(&example).output().expect("the example runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("/ready says (503, \"warming\")"), "{stdout}");
    assert!(
        lines[1].starts_with("ready: warm.ready_at reached ") && lines[1].contains("(Completed)"),
        "{stdout}"
    );
    assert!(lines[2].contains("-> 200 {\"id\""), "the hottest product is served from the cache: {stdout}");
}

#[test]
fn merged_host_profiles_equal_one_analysis_of_all_their_logs() {
    let (dir, _) = after_the_demo();
    let d = dir.path();
    let config = fs::read_to_string(d.join("data/preheat.toml")).expect("readable");
    assert!(config.contains("half_life = \"6h\""), "scores decay, so the merge must rescale them");
    // Two hosts' logs: the generated log cut in two.
    let out = preheat(
        d,
        &[
            "-q",
            "generate-log",
            "--config",
            "data/preheat.toml",
            "--lines",
            "40000",
            "--seed",
            "7",
            "-o",
            "all.log",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = fs::read_to_string(d.join("all.log")).expect("readable");
    let lines: Vec<&str> = all.lines().collect();
    let (one, two) = lines.split_at(lines.len() / 3);
    fs::write(d.join("host1.log"), one.join("\n") + "\n").expect("writable");
    fs::write(d.join("host2.log"), two.join("\n") + "\n").expect("writable");
    for (store, log) in [("p1", "host1.log"), ("p2", "host2.log"), ("pall", "all.log")] {
        let out = preheat(
            d,
            &["-q", "analyze", "--config", "data/preheat.toml", "--profiles", store, "--top", "0", log],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let latest = |store: &str| {
        d.join(store).join(fs::read_to_string(d.join(store).join("latest")).expect("latest").trim())
    };
    let (p1, p2) = (latest("p1").display().to_string(), latest("p2").display().to_string());
    let out = preheat(d, &["profiles", "merge", &p1, &p2, "-o", "merged.parquet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("merged 2 profiles into merged.parquet"), "{}", text(&out.stdout));

    let (merged_meta, merged) =
        preheat::profile::read_profile(&d.join("merged.parquet"), None).expect("readable");
    let (whole_meta, whole) = preheat::profile::read_profile(&latest("pall"), None).expect("readable");
    assert_eq!(merged.len(), whole.len());
    let by_key: std::collections::HashMap<(&str, &str), &preheat::profile::ProfileRow> =
        whole.iter().map(|r| ((r.rule.as_str(), r.key.as_str()), r)).collect();
    for m in &merged {
        let w = by_key[&(m.rule.as_str(), m.key.as_str())];
        assert_eq!(
            (m.count, m.first_seen_ms, m.last_seen_ms, m.cache_hits, m.cache_misses),
            (w.count, w.first_seen_ms, w.last_seen_ms, w.cache_hits, w.cache_misses),
            "{}",
            m.key
        );
        assert!(
            (m.score - w.score).abs() <= 1e-6 * w.score.max(1.0),
            "{}: {} vs {}",
            m.key,
            m.score,
            w.score
        );
        if let (Some(a), Some(b)) = (m.mean_bytes, w.mean_bytes) {
            assert!((a - b).abs() < 1e-6 * b.max(1.0), "{}", m.key);
        }
    }
    let (ms, ws) = (&merged_meta.summary, &whole_meta.summary);
    assert_eq!(
        (ms.lines.read, ms.lines.matched, ms.lines.rejected),
        (ws.lines.read, ws.lines.matched, ws.lines.rejected)
    );
    assert_eq!((&ms.window.start, &ms.window.end), (&ws.window.start, &ws.window.end));
    assert_eq!(ms.distinct_clients, ws.distinct_clients, "sketches merge into the same estimate");
    for (m, w) in ms.rules.iter().zip(&ws.rules) {
        assert_eq!(
            (&m.name, m.requests, m.distinct_keys, m.distinct_clients),
            (&w.name, w.requests, w.distinct_keys, w.distinct_clients)
        );
    }
    // A plan from the merge equals one from the whole.
    let plan = |path: &std::path::Path| -> Vec<String> {
        let out = preheat(
            d,
            &["plan", "--config", "data/preheat.toml", "--profile", &path.display().to_string(), "--json"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["key"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(plan(&d.join("merged.parquet")), plan(&latest("pall")));

    // Profiles of other rules do not merge.
    let other = config.replace("key = \"product:{id}\"", "key = \"item:{id}\"");
    fs::write(d.join("other.toml"), other).expect("writable");
    let out = preheat(
        d,
        &["-q", "analyze", "--config", "other.toml", "--profiles", "pother", "--top", "0", "host1.log"],
    );
    assert_eq!(out.status.code(), Some(0));
    let other_profile = latest("pother").display().to_string();
    let out = preheat(d, &["profiles", "merge", &p1, &other_profile, "-o", "bad.parquet"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("config fingerprint") && text(&out.stderr).contains("pother"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("bad.parquet").exists());
}

#[test]
fn profiles_keep_no_query_parameter_a_rule_did_not_keep() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("preheat.toml"),
        "[[rule]]\nname = \"category\"\nmatch = \"GET /c/{slug}\"\nkey = \"c:{slug}:{page}\"\nkeep_query = [\"page\"]\n",
    )
    .expect("writable");
    let line = |path: &str| {
        format!("203.0.113.7 - - [01/Dec/2026:10:00:00 +0000] \"GET {path} HTTP/1.1\" 200 99 \"-\" \"t\"\n")
    };
    let mut log = String::new();
    for _ in 0..3 {
        log.push_str(&line("/c/shoes?page=2&token=SECRET-1&session=SECRET-2"));
        log.push_str(&line("/unmatched/path?api_key=SECRET-3"));
    }
    log.push_str("garbage line with ?password=SECRET-4 in it\n");
    fs::write(dir.path().join("access.log"), log).expect("writable");
    let out = preheat(dir.path(), &["analyze", "--json", "access.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let show = preheat(dir.path(), &["profile", "show", "--json", "--top", "100"]);
    assert_eq!(show.status.code(), Some(0));
    let everything =
        format!("{}{}{}{}", text(&out.stdout), text(&out.stderr), text(&show.stdout), text(&show.stderr));
    assert!(!everything.contains("SECRET"), "a query value leaked:\n{everything}");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON");
    assert_eq!(v["top"][0]["key"], "c:shoes:2");
    assert_eq!(v["top"][0]["params"], serde_json::json!({"slug": "shoes", "page": "2"}));
    let perms = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(
            dir.path()
                .join("profiles")
                .join(fs::read_to_string(dir.path().join("profiles/latest")).expect("latest").trim()),
        )
        .expect("profile")
        .permissions(),
    );
    assert_eq!(perms & 0o777, 0o600, "profiles describe production traffic: owner only");
}
