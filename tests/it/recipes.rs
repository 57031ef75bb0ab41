//! The deploy recipes in `deploy/`, exercised: the container entrypoint runs, the systemd
//! units verify, every preheat command in every recipe parses, the Kubernetes deadlines cover
//! the warm's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// The entrypoint wrapper around `sh -c 'echo app started'`, in a dir after the demo.
fn entrypoint(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo("deploy/entrypoint.sh")).args(["--", "sh", "-c", "echo app started"]).current_dir(dir);
    // The test's own settings come after the defaults, so they win.
    let mut all =
        vec![("PREHEAT_BIN", env!("CARGO_BIN_EXE_preheat")), ("PREHEAT_CONFIG", "data/preheat.toml")];
    all.extend_from_slice(env);
    isolate(&mut cmd, &all);
    cmd.output().expect("sh runs")
}

#[test]
fn the_entrypoint_warms_then_starts_the_application_whatever_happens() {
    let (dir, _) = after_the_demo();
    let out = entrypoint(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let warm = stdout.find("warm      completed").expect("the warm ran");
    let app = stdout.find("app started").expect("the application started");
    assert!(warm < app, "warm first: {stdout}");

    // Strict, as the README spells it, on a healthy warm: the warm runs and the application
    // starts; every documented spelling of yes and no is understood.
    for yes in ["1", "true", "yes", "TRUE"] {
        let out = entrypoint(dir.path(), &[("PREHEAT_STRICT", yes)]);
        assert_eq!(out.status.code(), Some(0), "PREHEAT_STRICT={yes}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("warm      completed"), "{}", text(&out.stdout));
        assert!(text(&out.stdout).contains("app started"));
    }
    for no in ["0", "false", "no"] {
        let out = entrypoint(dir.path(), &[("PREHEAT_PROFILES", "no-such-store"), ("PREHEAT_STRICT", no)]);
        assert_eq!(out.status.code(), Some(0), "PREHEAT_STRICT={no}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("app started"));
    }

    // No profile: the warm degrades, the application starts.
    let out = entrypoint(dir.path(), &[("PREHEAT_PROFILES", "no-such-store")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("app started"));
    assert!(text(&out.stdout).contains("failed to start"), "{}", text(&out.stdout));

    // Unless strict: then the application does not start.
    let out = entrypoint(dir.path(), &[("PREHEAT_PROFILES", "no-such-store"), ("PREHEAT_STRICT", "1")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("app started"));
    assert!(text(&out.stderr).contains("not starting"), "{}", text(&out.stderr));

    // Skipped by the environment: straight to the application.
    let out = entrypoint(dir.path(), &[("PREHEAT_SKIP", "1")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("warm      skipped") && text(&out.stdout).contains("app started"));

    // A warm that hangs past the hard timeout is cut off, and the application still starts.
    let hang = dir.path().join("hang.sh");
    fs::write(&hang, "#!/bin/sh\nsleep 30\n").expect("writable");
    let chmod = Command::new("chmod").arg("+x").arg(&hang).status().expect("chmod runs");
    assert!(chmod.success());
    let started = std::time::Instant::now();
    let out = entrypoint(
        dir.path(),
        &[("PREHEAT_BIN", &hang.display().to_string()), ("PREHEAT_HARD_TIMEOUT", "1")],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("app started"));
}

/// Every file of `deploy/`.
fn recipes() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::from(repo("deploy"))];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("deploy/ is readable").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

/// YAML as JSON, through PyYAML.
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    require_python_module("yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{} is not valid YAML: {}", path.display(), text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Splits a shell-ish command line, dropping quotes.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string()).collect()
}

/// The argument lists of every preheat invocation in a recipe.
fn preheat_commands(path: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).expect("readable");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut found = Vec::new();
    let from_line = |line: &str, found: &mut Vec<Vec<String>>| {
        for part in line.split("&&") {
            let w = words(part);
            // A path to the binary first: a cron line names the user `preheat` before it.
            let program = w
                .iter()
                .position(|w| w.ends_with("/preheat"))
                .or_else(|| w.iter().position(|w| w == "preheat"));
            if let Some(at) = program {
                found.push(w[at + 1..].to_vec());
            }
        }
    };
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        let mut stack = yaml_documents(path);
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(map) => {
                    let image = map.get("image").and_then(|i| i.as_str()).unwrap_or("");
                    if image.contains("/preheat:")
                        && let Some(args) = map.get("args").and_then(|a| a.as_array())
                    {
                        found.push(args.iter().filter_map(|a| a.as_str().map(String::from)).collect());
                    }
                    stack.extend(map.into_values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                serde_json::Value::String(s) if s.trim_start().starts_with("preheat ") => {
                    from_line(&s, &mut found)
                }
                _ => {}
            }
        }
    } else if name.ends_with(".sh") {
        // The entrypoint runs `"$preheat" warm`; it is exercised above.
    } else if path.parent().is_some_and(|d| d.ends_with("systemd")) {
        for line in text.lines() {
            if let Some((_, command)) = line.split_once('=').filter(|(k, _)| k.starts_with("Exec")) {
                from_line(command, &mut found);
            }
        }
    } else {
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            from_line(line, &mut found);
        }
    }
    found
}

#[test]
fn every_preheat_command_in_the_recipes_parses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seen = 0;
    for recipe in recipes() {
        for args in preheat_commands(&recipe) {
            seen += 1;
            // clap rejects an unknown flag or a malformed value before it reaches `--help`.
            let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
            with_help.push("--help");
            let out = preheat(dir.path(), &with_help);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: `preheat {}`: {}",
                recipe.display(),
                args.join(" "),
                text(&out.stderr)
            );
        }
    }
    assert!(seen >= 12, "the recipes hold {seen} preheat commands");
}

#[test]
fn kubernetes_deadlines_cover_the_warm_and_hooks_follow_releases() {
    let docs = yaml_documents(Path::new(&repo("deploy/kubernetes/warm-job.yaml")));
    let job = &docs[0];
    assert_eq!(job["kind"], "Job");
    let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().expect("a deadline");
    // The warm's maximum deadline (5m) plus its grace, and not much more.
    assert!((302..=360).contains(&deadline), "{deadline}");
    let hooks = job["metadata"]["annotations"]["helm.sh/hook"].as_str().expect("a Helm hook");
    assert!(hooks.contains("post-install") && hooks.contains("post-upgrade"), "{hooks}");
    let init = &yaml_documents(Path::new(&repo("deploy/kubernetes/init-container.yaml")))[0];
    assert!(init["spec"]["template"]["spec"]["initContainers"][0]["args"][0] == "warm");
}

#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_preheat");
    let mut units = Vec::new();
    for recipe in recipes().into_iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("systemd"))) {
        let name = recipe.file_name().expect("a name").to_string_lossy().into_owned();
        let text = fs::read_to_string(&recipe).expect("readable").replace("/usr/local/bin/preheat", bin);
        // The drop-in is checked inside a unit of its own.
        let (name, text) = if name.ends_with(".conf") {
            (
                "app.service".to_string(),
                format!(
                    "[Unit]\nDescription=app\n[Service]\nExecStart=/bin/true\n{}",
                    text.replace("[Service]\n", "")
                ),
            )
        } else {
            (name, text)
        };
        fs::write(dir.path().join(&name), text).expect("writable");
        units.push(dir.path().join(name));
    }
    assert_eq!(units.len(), 4);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs (Debian's systemd; `bash scripts/test.sh` installs it)");
    let complaints: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| units.iter().any(|u| l.contains(&*u.to_string_lossy())))
        .map(String::from)
        .collect();
    assert!(out.status.success() && complaints.is_empty(), "{complaints:#?}\n{}", text(&out.stderr));
}
