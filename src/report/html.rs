//! The capacity report as one self-contained HTML page: inline CSS and SVG charts, no script
//! and nothing fetched from the network, so it can be mailed, archived or opened offline.
//!
//! The page says what it was made from (profile, logs, when). A chart is drawn only from
//! curves of two points or more; otherwise the page says why there is none. Legends sit
//! below the plot, never over the curves, and time runs on a real clock: an hour with no
//! request is a gap in the line, not a point joined across.

use std::fmt::Write as _;

use super::capacity::CapacityReport;
use super::mrc::MissRatioCurve;
use super::simulate::ColdVsWarm;
use crate::analyze::trace::Hour;
use crate::timestamp::format_rfc3339;

const COLORS: [&str; 8] =
    ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4b5563"];
const WIDTH: f64 = 640.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 12.0;
const PLOT_HEIGHT: f64 = 220.0;
/// Where the plot ends, the tick labels, the axis label and the legend begin.
const PLOT_BOTTOM: f64 = TOP + PLOT_HEIGHT;
const LEGEND_ROW: f64 = 18.0;

/// What the page was made from.
pub struct Provenance {
    /// The profile file and the time its logs span, when a profile was read.
    pub profile: Option<(String, Option<String>, Option<String>)>,
    /// The logs replayed (as given on the command line).
    pub logs: Vec<String>,
    /// When the page was made, Unix ms.
    pub made_ms: i64,
}

/// Text with `&`, `<`, `>` and `"` escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// How a chart's x axis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XAxis {
    Linear,
    Log,
    /// Unix ms, labelled as UTC dates and times; a step longer than the usual one is a gap.
    Time,
}

/// A line chart to draw.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    x_axis: XAxis,
    /// y from 0 to 100%; else from 0 to the largest value.
    percent: bool,
    series: Vec<Series>,
}

/// The chart as a `<figure>` with an SVG, or a paragraph saying why there is none; series too
/// short for a line are named under it.
fn chart(c: &Chart) -> String {
    let (drawn, short): (Vec<&Series>, Vec<&Series>) = c.series.iter().partition(|s| distinct_x(s) >= 2);
    let mut o = String::new();
    if drawn.is_empty() {
        let why = match c.series.iter().map(|s| s.points.len()).max() {
            None | Some(0) => "no data".to_string(),
            Some(_) => "a single point, too few for a curve".to_string(),
        };
        let _ =
            write!(o, r#"<p class="no-chart"><strong>{}</strong>: no chart ({why}).</p>"#, escape(c.title));
        return o;
    }
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 1.0f64);
    for &(x, y) in drawn.iter().flat_map(|s| &s.points) {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        if !c.percent {
            y_max = y_max.max(y);
        }
    }
    let log = c.x_axis == XAxis::Log;
    let tx = |x: f64| {
        let (a, b, v) =
            if log { (x_min.max(1.0).ln(), x_max.max(1.0).ln(), x.max(1.0).ln()) } else { (x_min, x_max, x) };
        LEFT + (v - a) / (b - a) * (WIDTH - LEFT - RIGHT)
    };
    let ty = |y: f64| PLOT_BOTTOM - (y / y_max) * PLOT_HEIGHT;
    let legend = legend_rows(&drawn);
    let height = PLOT_BOTTOM + 56.0 + LEGEND_ROW * legend.len() as f64;
    let _ = write!(
        o,
        r#"<figure><figcaption>{title}</figcaption><svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{title}">"#,
        title = escape(c.title)
    );
    let _ = write!(
        o,
        r##"<rect class="plot" x="{LEFT}" y="{TOP}" width="{}" height="{PLOT_HEIGHT}" fill="none" stroke="#d1d5db"/>"##,
        WIDTH - LEFT - RIGHT
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let label = if c.percent { format!("{:.0}%", 100.0 * y) } else { human(y) };
        let _ = write!(
            o,
            r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#e5e7eb"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            ty(y) + 4.0,
            y0 = ty(y)
        );
    }
    let mut ticks: Vec<(f64, String)> = Vec::new();
    for x in x_ticks(c.x_axis, x_min, x_max) {
        let label = if c.x_axis == XAxis::Time { clock(x) } else { human(x) };
        if !ticks.iter().any(|(_, l)| *l == label) {
            ticks.push((x, label));
        }
    }
    for (i, (x, label)) in ticks.iter().enumerate() {
        // The first and last labels align with the plot's edges, so they stay inside it.
        let anchor = match i {
            0 => "start",
            _ if i + 1 == ticks.len() => "end",
            _ => "middle",
        };
        let _ = write!(
            o,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            tx(*x),
            PLOT_BOTTOM + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        o,
        r#"<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        PLOT_BOTTOM + 34.0,
        escape(c.x_label)
    );
    for (i, s) in drawn.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for run in runs(&s.points, c.x_axis == XAxis::Time) {
            let points: Vec<String> =
                run.iter().map(|&(x, y)| format!("{:.1},{:.1}", tx(x), ty(y))).collect();
            let shape = if run.len() == 1 {
                let (x, y) = run[0];
                format!(r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}""#, tx(x), ty(y))
            } else {
                format!(
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}""#,
                    points.join(" ")
                )
            };
            let _ = write!(o, r#"{shape} class="series" data-series="{}"/>"#, escape(&s.name));
        }
    }
    for (row, items) in legend.iter().enumerate() {
        let y = PLOT_BOTTOM + 52.0 + LEGEND_ROW * row as f64;
        for &(i, x) in items {
            let _ = write!(
                o,
                r#"<g class="legend"><rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{y:.1}">{}</text></g>"#,
                y - 9.0,
                COLORS[i % COLORS.len()],
                x + 14.0,
                escape(&drawn[i].name)
            );
        }
    }
    o.push_str("</svg></figure>");
    if !short.is_empty() {
        let names: Vec<String> =
            short.iter().map(|s| format!("{} ({})", escape(&s.name), s.points.len())).collect();
        let _ =
            write!(o, r#"<p class="note">Not drawn, too few points for a curve: {}.</p>"#, names.join(", "));
    }
    o
}

/// Distinct x values of a series.
fn distinct_x(s: &Series) -> usize {
    let mut xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.len()
}

/// The legend laid out in rows under the plot: (series index, x) per item.
fn legend_rows(series: &[&Series]) -> Vec<Vec<(usize, f64)>> {
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
    let mut x = LEFT;
    for (i, s) in series.iter().enumerate() {
        // About 6.5 px a character at the page's 11 px, the swatch and a gap.
        let width = 14.0 + 6.5 * s.name.chars().count() as f64 + 18.0;
        if x + width > WIDTH - RIGHT && x > LEFT {
            rows.push(Vec::new());
            x = LEFT;
        }
        rows.last_mut().expect("a row").push((i, x));
        x += width;
    }
    rows
}

/// Where to label the x axis.
fn x_ticks(axis: XAxis, min: f64, max: f64) -> Vec<f64> {
    match axis {
        XAxis::Log => vec![min, (min.max(1.0) * max.max(1.0)).sqrt(), max],
        XAxis::Linear => vec![min, ((min + max) / 2.0).round(), max],
        // On whole hours in between, when the span allows.
        XAxis::Time => {
            const HOUR: f64 = 3_600_000.0;
            let inner = (1..3).map(|i| min + (max - min) * f64::from(i) / 3.0);
            let inner = inner.map(|t| if max - min > 3.0 * HOUR { (t / HOUR).round() * HOUR } else { t });
            std::iter::once(min).chain(inner).chain(std::iter::once(max)).collect()
        }
    }
}

/// A series split where time jumps: with `gaps`, a step longer than 1.5 times the shortest one
/// (an hour without requests between two that have some) starts a new run.
fn runs(points: &[(f64, f64)], gaps: bool) -> Vec<Vec<(f64, f64)>> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let step = sorted.windows(2).map(|w| w[1].0 - w[0].0).filter(|d| *d > 0.0).fold(f64::MAX, f64::min);
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for p in sorted {
        match runs.last_mut() {
            Some(run) if !(gaps && run.last().is_some_and(|q| p.0 - q.0 > 1.5 * step)) => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    runs
}

/// Unix ms as `12-01 10:00` (UTC).
fn clock(ms: f64) -> String {
    let t = format_rfc3339(ms as i64);
    t.get(5..16).map_or(t.clone(), |s| s.replace('T', " "))
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

/// What the page was made from, first thing on it.
fn provenance(p: &Provenance) -> String {
    let mut o = String::from(r#"<p class="provenance">"#);
    match &p.profile {
        Some((path, start, end)) => {
            let span = match (start, end) {
                (Some(s), Some(e)) => format!(", whose logs run from {} to {}", escape(s), escape(e)),
                _ => String::new(),
            };
            let _ = write!(o, "Profile <code>{}</code>{span}.", escape(path));
        }
        None => o.push_str("No profile: only the replayed logs."),
    }
    if !p.logs.is_empty() {
        let logs: Vec<String> = p.logs.iter().map(|l| format!("<code>{}</code>", escape(l))).collect();
        let _ = write!(o, "<br>Logs replayed: {}.", logs.join(", "));
    }
    let _ = write!(
        o,
        "<br>Made {} by preheat {}.</p>",
        escape(&format_rfc3339(p.made_ms)),
        env!("CARGO_PKG_VERSION")
    );
    o
}

/// The page. `curve`, `hours` and `simulation` come from replayed logs, when given.
pub fn page(
    provenance_of: &Provenance,
    report: Option<&CapacityReport>,
    curve: Option<&MissRatioCurve>,
    hours: &[Hour],
    simulation: Option<&ColdVsWarm>,
) -> String {
    let mut body = provenance(provenance_of);
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
        let by_keys = std::iter::once(all)
            .chain(&r.rules)
            .map(|s| Series {
                name: s.name.clone(),
                points: s.by_keys.iter().map(|p| (p.keys as f64, p.coverage)).collect(),
            })
            .collect();
        body.push_str(&chart(&Chart {
            title: "Share of requests served by the N most requested keys",
            x_label: "keys",
            x_axis: XAxis::Log,
            percent: true,
            series: by_keys,
        }));
        let by_memory = vec![Series {
            name: "all".into(),
            points: all
                .by_memory
                .iter()
                .map(|p| (p.memory_bytes as f64 / (1 << 20) as f64, p.coverage))
                .collect(),
        }];
        body.push_str(&chart(&Chart {
            title: "Share of requests served within a memory budget",
            x_label: "MiB",
            x_axis: XAxis::Log,
            percent: true,
            series: by_memory,
        }));
    }
    if let Some(c) = curve {
        let how = c.sampling_rate.map_or("exact".to_string(), |r| format!("SHARDS at {:.2}%", 100.0 * r));
        body.push_str(&chart(&Chart {
            title: &format!("LRU hit ratio by cache size ({how})"),
            x_label: "cache size (keys)",
            x_axis: XAxis::Log,
            percent: true,
            series: vec![Series {
                name: "LRU".into(),
                points: c.points.iter().map(|p| (p.keys as f64, p.hit_ratio)).collect(),
            }],
        }));
    }
    if curve.is_some() {
        body.push_str(&chart(&Chart {
            title: "Working set by hour (distinct keys)",
            x_label: "hour (UTC)",
            x_axis: XAxis::Time,
            percent: false,
            series: vec![Series {
                name: "distinct keys".into(),
                points: hours.iter().map(|h| (h.start_ms as f64, h.distinct_keys as f64)).collect(),
            }],
        }));
    }
    if let Some(s) = simulation {
        let series = [("cold", false), ("pre-warmed", true)]
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
        body.push_str(&chart(&Chart {
            title: "Hit ratio, cold against pre-warmed",
            x_label: "requests replayed",
            x_axis: XAxis::Linear,
            percent: true,
            series,
        }));
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
.provenance {{ color: #4b5563; }} .no-chart, .note {{ color: #4b5563; font-style: italic; }}
</style></head>
<body><h1>preheat capacity report</h1>
{body}
</body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_series_breaks_where_hours_are_missing() {
        const H: f64 = 3_600_000.0;
        let points = [(0.0, 1.0), (H, 2.0), (4.0 * H, 3.0), (5.0 * H, 4.0), (6.0 * H, 5.0)];
        let runs = runs(&points, true);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(super::runs(&points, false).len(), 1);
    }

    #[test]
    fn a_curve_of_one_point_is_no_chart_and_says_why() {
        let one = Chart {
            title: "t",
            x_label: "x",
            x_axis: XAxis::Log,
            percent: true,
            series: vec![Series { name: "all".into(), points: vec![(1.0, 1.0)] }],
        };
        let html = chart(&one);
        assert!(!html.contains("<svg") && html.contains("a single point, too few for a curve"), "{html}");
    }
}
