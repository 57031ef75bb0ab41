//! Access logs of products by name: the default formats of load balancers and proxies,
//! each written out from the product's documentation as a format string over the same
//! fields as nginx's, plus the few fields of their own (an address with its port,
//! HAProxy's timers).
//!
//! Latency is the request's duration as the product logs it: the target's processing time
//! for AWS load balancers, HAProxy's total active time `Ta`, Envoy's `%DURATION%`.

use std::fmt;

use super::compiled::{CompiledFormat, Var};
use super::json::{JsonFields, LatencyUnit};

/// A product whose access-log format preheat knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// AWS Application Load Balancer access logs (`type time elb client:port ...`).
    AwsAlb,
    /// AWS Classic Load Balancer access logs (`time elb client:port ...`).
    AwsElb,
    /// HAProxy's HTTP log format (`option httplog`), with or without a syslog tag.
    Haproxy,
    /// Envoy's default text access-log format.
    Envoy,
    /// The W3C extended log format (IIS, CloudFront), its columns named by `#Fields:`.
    W3c,
    /// Caddy's JSON access log (`request.uri`, `duration` in seconds, `ts`).
    Caddy,
    /// Traefik's JSON access log (`RequestPath`, `Duration` in nanoseconds, `StartUTC`).
    Traefik,
    /// Google Cloud load balancer logs as Cloud Logging writes them (`httpRequest.*`).
    GcpLb,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 8] = [
        Preset::AwsAlb,
        Preset::AwsElb,
        Preset::Haproxy,
        Preset::Envoy,
        Preset::W3c,
        Preset::Caddy,
        Preset::Traefik,
        Preset::GcpLb,
    ];

    /// The name `--format` and `log.format` take.
    pub fn name(self) -> &'static str {
        match self {
            Preset::AwsAlb => "aws-alb",
            Preset::AwsElb => "aws-elb",
            Preset::Haproxy => "haproxy",
            Preset::Envoy => "envoy",
            Preset::W3c => "w3c",
            Preset::Caddy => "caddy",
            Preset::Traefik => "traefik",
            Preset::GcpLb => "gcp-lb",
        }
    }

    /// The preset of a name.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The format as a string over `$names` (see [`var`]); `None` for W3C, whose columns
    /// each file names.
    fn format_string(self) -> Option<&'static str> {
        Some(match self {
            Preset::W3c | Preset::Caddy | Preset::Traefik | Preset::GcpLb => return None,
            Preset::AwsAlb => concat!(
                "$type $time_iso8601 $elb $client_port $target_port $request_processing_time ",
                "$upstream_response_time $response_processing_time $status $target_status_code ",
                "$received_bytes $body_bytes_sent \"$request\" \"$http_user_agent\" $ssl_cipher ",
                "$ssl_protocol $target_group_arn \"$trace_id\" \"$host\""
            ),
            Preset::AwsElb => concat!(
                "$time_iso8601 $elb $client_port $backend_port $request_processing_time ",
                "$upstream_response_time $response_processing_time $status $backend_status_code ",
                "$received_bytes $body_bytes_sent \"$request\" \"$http_user_agent\" $ssl_cipher $ssl_protocol"
            ),
            // The queues field runs up to the request's quote, so it takes the captured
            // headers (`{...}`) that `capture request header` adds before the request.
            Preset::Haproxy => concat!(
                "$client_port [$time_local] $frontend $backend_server $haproxy_timers $status ",
                "$haproxy_bytes $captured_request_cookie $captured_response_cookie ",
                "$termination_state $connections $haproxy_queues\"$request\""
            ),
            Preset::Envoy => concat!(
                "[$time_iso8601] \"$request\" $status $response_flags $bytes_received $body_bytes_sent ",
                "$duration_ms $upstream_service_time \"$http_x_forwarded_for\" \"$http_user_agent\" ",
                "\"$request_id\" \"$host\" \"$upstream_host\""
            ),
        })
    }

    /// The JSON field names of a JSON preset.
    pub(super) fn json_fields(self) -> Option<JsonFields> {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = Vec::new;
        Some(match self {
            Preset::Caddy => JsonFields {
                time: names(&["ts"]),
                request: none(),
                method: names(&["request.method"]),
                uri: names(&["request.uri"]),
                status: names(&["status"]),
                bytes: names(&["size"]),
                latency: names(&["duration"]),
                client: names(&["request.client_ip", "request.remote_ip"]),
                cache_status: none(),
                host: names(&["request.host"]),
                latency_unit: LatencyUnit::S,
            },
            Preset::Traefik => JsonFields {
                time: names(&["StartUTC", "StartLocal", "time"]),
                request: none(),
                method: names(&["RequestMethod"]),
                uri: names(&["RequestPath"]),
                status: names(&["DownstreamStatus"]),
                bytes: names(&["DownstreamContentSize"]),
                latency: names(&["Duration"]),
                client: names(&["ClientHost"]),
                cache_status: none(),
                host: names(&["RequestHost"]),
                latency_unit: LatencyUnit::Ns,
            },
            // The host comes from `requestUrl`, which is absolute.
            Preset::GcpLb => JsonFields {
                time: names(&["timestamp"]),
                request: none(),
                method: names(&["httpRequest.requestMethod"]),
                uri: names(&["httpRequest.requestUrl"]),
                status: names(&["httpRequest.status"]),
                bytes: names(&["httpRequest.responseSize"]),
                latency: names(&["httpRequest.latency"]),
                client: names(&["httpRequest.remoteIp"]),
                cache_status: names(&["httpRequest.cacheHit"]),
                host: none(),
                latency_unit: LatencyUnit::S,
            },
            _ => return None,
        })
    }

    /// The line parser, which also writes the preset's lines for the generator (`None` for
    /// W3C). Later fields, which newer versions of these products append, are allowed.
    pub(super) fn compiled(self) -> Option<CompiledFormat> {
        let format =
            CompiledFormat::compile_named(self.format_string()?, true, var).expect("presets compile");
        Some(if self == Preset::Haproxy { format.after_syslog_tag() } else { format })
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a preset's `$name` stands for: nginx's variables, and the presets' own fields.
fn var(name: &str) -> Var {
    match name {
        "client_port" => Var::ClientPort,
        "haproxy_timers" => Var::HaproxyTimers,
        "haproxy_bytes" => Var::HaproxyBytes,
        "duration_ms" => Var::LatencyMillis,
        other => Var::from_name(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logformat::{CacheStatus, NO_RESPONSE};

    fn parse(preset: Preset, line: &'static str) -> crate::logformat::Record<'static> {
        preset
            .compiled()
            .expect("a text preset")
            .parse(line.as_bytes())
            .unwrap_or_else(|e| panic!("{preset}: {line}: {e}"))
    }

    // Lines in each product's documented default format, written for these tests.
    #[test]
    fn each_preset_reads_its_products_lines() {
        let r = parse(
            Preset::AwsAlb,
            r#"https 2026-03-02T10:00:01.500000Z app/shop/0a1b 198.51.100.7:40312 10.0.1.9:8080 0.001 0.042 0.000 200 200 310 5120 "GET https://shop.example:443/api/products/42?x=1 HTTP/2.0" "curl/8.5" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:eu-west-1:111:targetgroup/t/1 "Root=1-abc" "shop.example" "arn:aws:acm:eu-west-1:111:certificate/c" 0 2026-03-02T10:00:01.457000Z "forward" "-" "-" "10.0.1.9:8080" "200" "-" "-""#,
        );
        assert_eq!(r.client.as_deref(), Some(&b"198.51.100.7"[..]));
        assert_eq!((r.path.as_ref(), r.query.as_deref()), (&b"/api/products/42"[..], Some(&b"x=1"[..])));
        assert_eq!((r.status, r.bytes, r.latency_us), (Some(200), Some(5120), Some(42_000)));
        assert_eq!((r.host.as_deref(), r.time_ms), (Some(&b"shop.example"[..]), Some(1_772_445_601_500)));
        let r = parse(
            Preset::AwsElb,
            r#"2026-03-02T10:00:01.500000Z shop 198.51.100.7:40312 - -1 -1 -1 503 - 0 0 "GET http://shop.example:80/p/1 HTTP/1.1" "curl/8.5" - -"#,
        );
        assert_eq!((r.status, r.latency_us, r.path.as_ref()), (Some(503), None, &b"/p/1"[..]));
        assert_eq!(r.host.as_deref(), Some(&b"shop.example:80"[..]));
        let haproxy = r#"198.51.100.7:40312 [02/Mar/2026:10:00:01.500] www~ shop/app1 0/0/1/40/41 200 +5120 - - ---- 3/3/1/1/0 0/0 {shop.example|curl/8.5} "GET /p/1 HTTP/1.1""#;
        let r = parse(Preset::Haproxy, haproxy);
        assert_eq!((r.latency_us, r.bytes, r.time_ms), (Some(41_000), Some(5120), Some(1_772_445_601_500)));
        assert_eq!((r.client.as_deref(), r.path.as_ref()), (Some(&b"198.51.100.7"[..]), &b"/p/1"[..]));
        let tagged = format!("Mar  2 10:00:01 lb1 haproxy[674]: {haproxy}").leak();
        assert_eq!(parse(Preset::Haproxy, tagged), r, "a syslog tag before the line");
        let r = parse(
            Preset::Haproxy,
            r#"10.0.0.1:34552 [02/Mar/2026:10:00:01.500] www shop/<NOSRV> 3183/-1/-1/-1/11215 -1 0 - - SC-- 205/202/202/115/3 0/0 "HEAD / HTTP/1.0""#,
        );
        assert_eq!(r.status, Some(NO_RESPONSE));
        let r = parse(
            Preset::Envoy,
            r#"[2026-03-02T10:00:01.500Z] "GET /api/products/42 HTTP/1.1" 200 - 0 5120 41 40 "198.51.100.7, 10.0.0.2" "curl/8.5" "7f0c-1" "shop.example" "10.0.1.9:8080""#,
        );
        assert_eq!((r.client.as_deref(), r.latency_us), (Some(&b"198.51.100.7"[..]), Some(41_000)));
        assert_eq!((r.host.as_deref(), r.cache), (Some(&b"shop.example"[..]), None::<CacheStatus>));
    }

    #[test]
    fn addresses_lose_their_ports_only_where_one_can_be_told() {
        for (logged, client) in [
            ("192.0.2.7:4711", "192.0.2.7"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("192.0.2.7", "192.0.2.7"),
        ] {
            let line = format!("{logged} [02/Mar/2026:10:00:01.500] f b/s 0/0/0/1/1 200 1 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"").leak();
            assert_eq!(parse(Preset::Haproxy, line).client.as_deref(), Some(client.as_bytes()), "{logged}");
        }
    }
}
