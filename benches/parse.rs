//! Line parsing per format, in MB/s: `cargo bench --bench parse`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use preheat::config::Config;
use preheat::generate::{GenerateOptions, generate};
use preheat::logformat::{FormatSpec, JsonFields, LogFormat, Preset};

const APACHE: &str = r#"%h %l %u %t "%r" %>s %b %D %{X-Cache}o "%{Referer}i" "%{User-Agent}i""#;
const NGINX: &str = r#"$remote_addr - [$time_iso8601] $host "$request" $status $body_bytes_sent rt=$request_time cache=$upstream_cache_status "$http_user_agent""#;

fn sample(format: &FormatSpec) -> Vec<u8> {
    let config = Config::builtin();
    let opts =
        GenerateOptions { lines: 20_000, keys_per_rule: 5_000, format: format.clone(), ..Default::default() };
    let mut out = Vec::new();
    generate(&config.rules, &opts, &mut out).expect("in memory");
    out
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_line");
    let mut specs =
        vec![FormatSpec::Combined, FormatSpec::Common, FormatSpec::Json, FormatSpec::Nginx(NGINX.into())];
    specs.push(FormatSpec::Apache(APACHE.into()));
    specs.extend(Preset::ALL.map(FormatSpec::Preset));
    for spec in specs {
        let data = sample(&spec);
        let format = LogFormat::from_spec(&spec, &JsonFields::default()).expect("concrete format");
        let name = match &spec {
            FormatSpec::Nginx(_) => "nginx_log_format".to_string(),
            FormatSpec::Apache(_) => "apache_log_format".to_string(),
            other => other.to_string(),
        };
        group.throughput(Throughput::Bytes(data.len() as u64));
        if format.follows_headers() {
            // W3C: each `#Fields:` line sets the format of the lines after it.
            group.bench_function(name, |b| {
                b.iter(|| {
                    let (mut ok, mut current) = (0usize, format.clone());
                    for line in data.split(|&c| c == b'\n') {
                        if let Some(headed) = current.after_header(line) {
                            current = headed;
                        }
                        ok += usize::from(current.parse_line(black_box(line)).is_ok());
                    }
                    ok
                })
            });
            continue;
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for line in data.split(|&c| c == b'\n') {
                    ok += usize::from(format.parse_line(black_box(line)).is_ok());
                }
                ok
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
