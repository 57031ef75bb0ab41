//! Every text format's line parser: the first byte picks the format, the rest is the line.
//! No panic, no hang, the same record on a second reading, and for `combined` and `common`
//! the same record from the written-out parser and the format-string interpreter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preheat::logformat::{FormatSpec, JsonFields, LogFormat, second_reading};

const FORMATS: [&str; 10] = [
    "combined",
    "common",
    r#"$remote_addr - [$time_iso8601] $host "$request" $status $body_bytes_sent rt=$request_time cache=$upstream_cache_status "$http_x_forwarded_for""#,
    r#"%h %l %u %t "%r" %>s %b %D %{X-Cache}o "%{Referer}i" "%{User-Agent}i""#,
    r#"%{X-Forwarded-For}i %h [%{%Y-%m-%dT%H:%M:%S%z}t] "%m %U%q %H" %>s %O %{ms}T"#,
    "vhost_combined",
    "aws-alb",
    "aws-elb",
    "haproxy",
    "envoy",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, line)) = data.split_first() else { return };
    let name = FORMATS[usize::from(pick) % FORMATS.len()];
    let spec = FormatSpec::parse(name).expect("the targets' formats are valid");
    let format = LogFormat::from_spec(&spec, &JsonFields::default()).expect("a text format");
    if let Err(why) = second_reading::again(&format, line) {
        panic!("{name}: {why}");
    }
    if let Err(why) = second_reading::clf(line, pick % 2 == 0) {
        panic!("{why}");
    }
});
