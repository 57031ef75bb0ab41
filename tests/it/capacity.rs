//! The capacity report against generated logs whose exact counts are known.

use preheat::report::capacity::{CapacityReport, TARGETS};

use std::fs;

use crate::support::*;

#[test]
fn coverage_curves_and_sizes_follow_the_true_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let log = dir.path().join("access.log");
    let truth = write_log(&log, &config, &gen_opts(30_000, 2_000, 11), Compression::Plain);
    let a = analyze_files(&[log], &config, 2);
    let report = CapacityReport::build(a.rows().into_iter().map(Ok), &a.summary).expect("report");

    // The true share served by the N most requested keys, from the generator's counts.
    let mut counts: Vec<u64> = truth_counts(&truth).into_iter().map(|(_, _, c)| c).collect();
    counts.sort_unstable_by(|x, y| y.cmp(x));
    let matched = a.summary.lines.matched as f64;
    let served = |n: usize| counts[..n].iter().sum::<u64>() as f64 / matched;
    let all = &report.overall;
    assert_eq!(all.keys, counts.len() as u64);
    assert!(all.by_keys.len() > 3);
    for p in &all.by_keys {
        assert!((p.coverage - served(p.keys as usize)).abs() < 1e-12, "{p:?} vs {}", served(p.keys as usize));
    }
    for rec in &all.recommendations {
        let n = rec.keys.expect("every target is reachable: every request has a key") as usize;
        assert!(served(n) >= rec.target && served(n - 1) < rec.target, "{rec:?}");
        let least = rec.least_memory.expect("reachable");
        assert!(least <= rec.memory_for_keys.expect("reachable"), "{rec:?}");
    }
    let keys: Vec<u64> = all.recommendations.iter().filter_map(|r| r.keys).collect();
    assert_eq!(keys.len(), TARGETS.len());
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "higher targets need more keys: {keys:?}");

    // Per rule: the rule's own keys against the rule's own requests.
    for scope in &report.rules {
        let mut mine: Vec<u64> = truth_counts(&truth)
            .into_iter()
            .filter(|(r, _, _)| *r == scope.name)
            .map(|(_, _, c)| c)
            .collect();
        mine.sort_unstable_by(|x, y| y.cmp(x));
        let requests = a.summary.rules.iter().find(|r| r.name == scope.name).expect("a rule").requests;
        let ten = mine[..10].iter().sum::<u64>() as f64 / requests as f64;
        let point = scope.by_keys.iter().find(|p| p.keys == 10).expect("a point at 10 keys");
        assert!((point.coverage - ten).abs() < 1e-12, "{}: {point:?} vs {ten}", scope.name);
    }
}

#[test]
fn the_lru_curve_of_a_log_counts_every_request_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let log = dir.path().join("access.log.gz");
    let truth = write_log(&log, &config, &gen_opts(20_000, 1_000, 5), Compression::Gzip);
    let inputs = preheat::analyze::input::expand(&[log.display().to_string()]).expect("exists");
    let trace = preheat::analyze::trace::key_trace(&inputs, config.reading());
    let counts = truth_counts(&truth);
    let requests: u64 = counts.iter().map(|(_, _, c)| c).sum();
    assert_eq!(trace.keys.len() as u64, requests, "one entry per matched request");

    let curve = preheat::report::mrc::exact(&trace.keys);
    assert_eq!(curve.distinct_keys, counts.len() as u64);
    assert!(curve.points.windows(2).all(|w| w[0].hit_ratio <= w[1].hit_ratio), "{:?}", curve.points);
    // With room for every key, only each key's first request misses.
    let all = curve.points.last().expect("points");
    assert_eq!(all.keys, counts.len() as u64);
    let cold_only = 1.0 - counts.len() as f64 / requests as f64;
    assert!((all.hit_ratio - cold_only).abs() < 1e-12, "{} vs {cold_only}", all.hit_ratio);
    // The sampled curve of the same trace stays close.
    let sampled = preheat::report::mrc::sampled(&trace.keys, 0.5);
    for p in &curve.points[curve.points.len() / 2..] {
        assert!((sampled.hit_ratio_at(p.keys) - p.hit_ratio).abs() < 0.05, "{p:?}");
    }
}

#[test]
fn the_hourly_working_set_estimates_the_distinct_keys_of_each_hour() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let log = dir.path().join("access.log");
    let mut opts = gen_opts(40_000, 20_000, 3);
    opts.duration = std::time::Duration::from_secs(4 * 3600);
    write_log(&log, &config, &opts, Compression::Plain);
    let inputs = preheat::analyze::input::expand(&[log.display().to_string()]).expect("exists");
    let trace = preheat::analyze::trace::key_trace(&inputs, config.reading());
    // The exact distinct keys per hour, from a second pass.
    let mut exact: std::collections::BTreeMap<i64, std::collections::HashSet<(usize, String)>> =
        Default::default();
    preheat::analyze::trace::for_each_request(&inputs, config.reading(), |r| {
        let hour = r.time_ms.expect("timed").div_euclid(3_600_000) * 3_600_000;
        exact.entry(hour).or_default().insert((r.rule, r.key.to_string()));
    });
    assert_eq!(trace.hours.len(), 4);
    for h in &trace.hours {
        let truth = exact[&h.start_ms].len() as f64;
        let error = (h.distinct_keys as f64 - truth).abs() / truth;
        assert!(error < 0.03, "hour {}: {} estimated, {truth} exact", h.start_ms, h.distinct_keys);
        assert!(h.est_bytes > 0);
    }
    assert_eq!(trace.hours.iter().map(|h| h.requests).sum::<u64>(), trace.keys.len() as u64);
}

#[test]
fn the_cold_cache_replay_agrees_with_the_miss_ratio_curve_and_warming_saves_misses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("");
    let log = dir.path().join("access.log");
    write_log(&log, &config, &gen_opts(30_000, 3_000, 8), Compression::Plain);
    let inputs = preheat::analyze::input::expand(&[log.display().to_string()]).expect("exists");
    let trace = preheat::analyze::trace::key_trace(&inputs, config.reading()).keys;
    let curve = preheat::report::mrc::exact(&trace);
    for size in [10usize, 100, 1000] {
        // The whole trace through a cold LRU cache: exactly the curve's hit ratio.
        let r = preheat::report::simulate::cold_vs_warm(&trace, 0, size, 1);
        let hit_ratio = 1.0 - r.cold_misses as f64 / trace.len() as f64;
        assert!((hit_ratio - curve.hit_ratio_at(size as u64)).abs() < 1e-12, "size {size}");
    }
    let r = preheat::report::simulate::cold_vs_warm(&trace, trace.len() / 2, 1000, 10);
    assert_eq!(r.warmed_keys, 1000);
    assert!(r.warm_misses < r.cold_misses, "{r:?}");
    assert!(r.stretches[0].warm > r.stretches[0].cold, "the warm cache leads at the start: {r:?}");
    assert_eq!(r.stretches.iter().map(|s| s.requests).sum::<u64>(), r.replayed_requests);
}

/// Measures the rendered page in the browser: legends over plots, text over text, text cut
/// off at a chart's edge. The report has no script of its own; this one is added to a copy.
const LAYOUT_CHECK: &str = r#"<script>
const out = [];
const meet = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
for (const fig of document.querySelectorAll('figure')) {
  const name = fig.querySelector('figcaption').textContent;
  const svg = fig.querySelector('svg').getBoundingClientRect();
  const plot = fig.querySelector('rect.plot').getBoundingClientRect();
  for (const item of fig.querySelectorAll('g.legend')) {
    if (meet(item.getBoundingClientRect(), plot)) out.push('legend over the plot: ' + name);
  }
  const texts = [...fig.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
  texts.forEach(([label, box], i) => {
    if (box.left < svg.left - 0.5 || box.right > svg.right + 0.5) out.push('cut off: ' + label + ' in ' + name);
    texts.slice(i + 1).forEach(([other, o]) => { if (meet(box, o)) out.push('overlap: ' + label + ' / ' + other + ' in ' + name); });
  });
}
document.body.insertAdjacentHTML('beforeend', '<pre id="layout">' + JSON.stringify(out) + '</pre>');
</script>"#;

#[test]
fn the_html_report_names_its_sources_and_its_charts_read_clearly_in_a_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("preheat.toml"), RULES).expect("writable");
    // Two stretches of traffic with no request for three hours between them, forty products
    // requested unevenly, and a single page requested once.
    let mut log = String::new();
    for hour in [10, 11, 15, 16] {
        for id in 1..=40u32 {
            for n in 0..(80 / id) {
                log.push_str(&format!(
                    "203.0.113.{} - - [01/Dec/2026:{hour}:{:02}:00 +0000] \"GET /api/products/{id} HTTP/1.1\" 200 900 \"-\" \"t\"\n",
                    n % 200,
                    (n + id) % 60
                ));
            }
        }
    }
    log.push_str(
        "203.0.113.9 - - [01/Dec/2026:16:59:00 +0000] \"GET /pages/about HTTP/1.1\" 200 5000 \"-\" \"t\"\n",
    );
    fs::write(dir.path().join("shop.log"), log).expect("writable");
    let out = preheat(dir.path(), &["analyze", "shop.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = preheat(dir.path(), &["report", "--html", "report.html", "shop.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = fs::read_to_string(dir.path().join("report.html")).expect("written");

    // What it was made from, and when.
    let profile = fs::read_dir(dir.path().join("profiles"))
        .expect("the store")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".parquet"))
        .expect("a profile");
    assert!(page.contains(&profile), "the profile is not named");
    assert!(
        page.contains("2026-12-01T10:00:00Z to 2026-12-01T16:59:00Z"),
        "the profile's window is not named"
    );
    assert!(page.contains("Logs replayed: <code>shop.log</code>"), "the log is not named");
    let today = format_rfc3339_date();
    assert!(page.contains(&format!("Made {today}")), "the date is not named");
    // The working set runs on the clock: the three quiet hours are a gap, not a joined line.
    let working_set = &page[page.find("Working set by hour").expect("the chart")..];
    let working_set = &working_set[..working_set.find("</figure>").expect("its end")];
    assert_eq!(working_set.matches("data-series=\"distinct keys\"").count(), 2, "{working_set}");
    assert!(working_set.contains(">12-01 10:00<") && working_set.contains(">12-01 16:00<"), "{working_set}");
    // A rule with a single key gets no curve, and the page says so.
    assert!(page.contains("Not drawn, too few points for a curve: page (1)."), "{page}");

    // Rendered by a real browser: no legend over a plot, no label over another or cut off.
    fs::write(dir.path().join("check.html"), page.replace("</body>", &format!("{LAYOUT_CHECK}</body>")))
        .expect("writable");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=800,2400",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("chromium").display()))
        .arg(format!("file://{}", dir.path().join("check.html").display()))
        .output()
        .expect("chromium runs (`bash scripts/test.sh` installs it)");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    let dom = text(&out.stdout);
    let start = dom.rfind("<pre id=\"layout\">").expect("the check ran") + "<pre id=\"layout\">".len();
    let found = &dom[start..start + dom[start..].find("</pre>").expect("its end")];
    assert_eq!(found, "[]", "layout problems: {found}");
}

/// Today's date as the page writes it (`2026-12-07`).
fn format_rfc3339_date() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    preheat::timestamp::format_rfc3339(now.as_millis() as i64)[..10].to_string()
}
