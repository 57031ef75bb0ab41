//! The capacity report as one self-contained HTML page: inline CSS and SVG charts, no script
//! and nothing fetched from the network, so it can be mailed, archived or opened offline.

use std::fmt::Write as _;

use preheat::analyze::trace::Hour;
use preheat::capacity::CapacityReport;
use preheat::mrc::MissRatioCurve;
use preheat::simulate::ColdVsWarm;

const COLORS: [&str; 8] =
    ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4b5563"];
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 48.0;

/// Text with `&`, `<`, `>` and `"` escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A line chart; x on a log scale when `log_x`, y from 0 to `y_max` shown as a percentage
/// when `percent`.
fn line_chart(title: &str, x_label: &str, series: &[Series], log_x: bool, percent: bool) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x_min, mut x_max) = (f64::MAX, f64::MIN);
    for x in xs {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
    }
    if x_min > x_max {
        return String::new();
    }
    let y_max = if percent {
        1.0
    } else {
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max).max(1.0)
    };
    let tx = |x: f64| {
        let (a, b, v) = if log_x {
            (x_min.max(1.0).ln(), x_max.max(1.0).ln(), x.max(1.0).ln())
        } else {
            (x_min, x_max, x)
        };
        MARGIN + if b > a { (v - a) / (b - a) } else { 0.5 } * (WIDTH - 2.0 * MARGIN)
    };
    let ty = |y: f64| HEIGHT - MARGIN - (y / y_max) * (HEIGHT - 2.0 * MARGIN);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    // Axes, grid and labels.
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let label = if percent { format!("{:.0}%", 100.0 * y) } else { format!("{y:.0}") };
        let _ = write!(
            o,
            r##"<line x1="{MARGIN}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            WIDTH - MARGIN,
            MARGIN - 6.0,
            ty(y) + 4.0,
            y0 = ty(y)
        );
    }
    let middle =
        if log_x { (x_min.max(1.0) * x_max.max(1.0)).sqrt() } else { ((x_min + x_max) / 2.0).round() };
    for x in [x_min, middle, x_max] {
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            tx(x),
            HEIGHT - MARGIN + 16.0,
            human(x)
        );
    }
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        HEIGHT - 8.0,
        escape(x_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", tx(x), ty(y))).collect();
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let _ = write!(
            o,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            WIDTH - MARGIN - 150.0,
            MARGIN + 14.0 * i as f64 - 10.0,
            WIDTH - MARGIN - 136.0,
            MARGIN + 14.0 * i as f64,
            escape(&s.name)
        );
    }
    o.push_str("</svg></figure>");
    o
}

/// 1234567 as `1.2M`.
fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The page. `curve`, `hours` and `simulation` come from replayed logs, when given.
pub fn page(
    report: Option<&CapacityReport>,
    curve: Option<&MissRatioCurve>,
    hours: &[Hour],
    simulation: Option<&ColdVsWarm>,
) -> String {
    let mut body = String::new();
    if let Some(r) = report {
        let all = &r.overall;
        let _ = write!(
            body,
            "<p>{} requests matched rules; {} keys serve {:.1}% of them in about {}.</p>",
            all.requests,
            all.keys,
            100.0 * all.by_keys.last().map_or(0.0, |p| p.coverage),
            mib(all.memory_bytes)
        );
        body.push_str(
            "<table><tr><th>coverage</th><th>fewest keys</th><th>their memory</th><th>least memory</th></tr>",
        );
        for rec in &all.recommendations {
            let cell = |v: Option<String>| v.unwrap_or_else(|| "not reachable".into());
            let _ = write!(
                body,
                "<tr><td>{:.0}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                100.0 * rec.target,
                cell(rec.keys.map(|k| k.to_string())),
                cell(rec.memory_for_keys.map(mib)),
                cell(rec.least_memory.map(mib))
            );
        }
        body.push_str("</table>");
        let by_keys: Vec<Series> = std::iter::once(all)
            .chain(&r.rules)
            .map(|s| Series {
                name: s.name.clone(),
                points: s.by_keys.iter().map(|p| (p.keys as f64, p.coverage)).collect(),
            })
            .collect();
        body.push_str(&line_chart(
            "Share of requests served by the N most requested keys",
            "keys",
            &by_keys,
            true,
            true,
        ));
        let by_memory = vec![Series {
            name: "all".into(),
            points: all
                .by_memory
                .iter()
                .map(|p| (p.memory_bytes as f64 / (1 << 20) as f64, p.coverage))
                .collect(),
        }];
        body.push_str(&line_chart(
            "Share of requests served within a memory budget",
            "MiB",
            &by_memory,
            true,
            true,
        ));
    }
    if let Some(c) = curve {
        let series = vec![Series {
            name: "LRU".into(),
            points: c.points.iter().map(|p| (p.keys as f64, p.hit_ratio)).collect(),
        }];
        let how = c.sampling_rate.map_or("exact".to_string(), |r| format!("SHARDS at {:.2}%", 100.0 * r));
        body.push_str(&line_chart(
            &format!("LRU hit ratio by cache size ({how})"),
            "cache size (keys)",
            &series,
            true,
            true,
        ));
    }
    if !hours.is_empty() {
        let series = vec![Series {
            name: "distinct keys".into(),
            points: hours.iter().enumerate().map(|(i, h)| (i as f64, h.distinct_keys as f64)).collect(),
        }];
        body.push_str(&line_chart(
            "Working set by hour (distinct keys)",
            "hours from the log's start",
            &series,
            false,
            false,
        ));
    }
    if let Some(s) = simulation {
        let series: Vec<Series> = [("cold", false), ("pre-warmed", true)]
            .iter()
            .map(|&(name, warm)| Series {
                name: name.into(),
                points: s
                    .stretches
                    .iter()
                    .map(|st| ((st.from_request + st.requests) as f64, if warm { st.warm } else { st.cold }))
                    .collect(),
            })
            .collect();
        let _ = write!(
            body,
            "<p>Replaying the later half of the logs through an LRU cache of {} keys: {} misses cold, {} pre-warmed.</p>",
            s.capacity, s.cold_misses, s.warm_misses
        );
        body.push_str(&line_chart(
            "Hit ratio, cold against pre-warmed",
            "requests replayed",
            &series,
            false,
            true,
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>preheat capacity report</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; max-width: 720px; margin: 2em auto; color: #111827; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #d1d5db; padding: 4px 10px; text-align: right; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: 600; }}
svg {{ width: 100%; height: auto; font-size: 11px; fill: #374151; }}
</style></head>
<body><h1>preheat capacity report</h1>
{body}
</body></html>
"#
    )
}
