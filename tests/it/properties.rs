//! Properties over arbitrary input.

use std::fs;

use preheat::logformat::{FormatSpec, JsonFields, LogFormat};
use preheat::rules::MatchPattern;
use proptest::prelude::*;

use crate::support::*;

fn formats() -> Vec<LogFormat> {
    let json = JsonFields::default();
    [
        FormatSpec::Combined,
        FormatSpec::Common,
        FormatSpec::Json,
        FormatSpec::Nginx(r#"$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent $request_time "$http_user_agent" $upstream_cache_status $host"#.into()),
    ]
    .iter()
    .filter_map(|f| LogFormat::from_spec(f, &json))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(line in proptest::collection::vec(any::<u8>(), 0..400)) {
        for f in formats() {
            let _ = f.parse_line(&line);
        }
    }

    #[test]
    fn parsers_never_panic_on_near_miss_lines(
        ip in "[0-9a-f:.]{0,20}",
        time in "[0-9A-Za-z/: +-]{0,30}",
        request in "[ -~]{0,60}",
        status in "[0-9x-]{0,4}",
        bytes in "[0-9-]{0,8}",
    ) {
        let line = format!("{ip} - - [{time}] \"{request}\" {status} {bytes} \"-\" \"ua\"");
        for f in formats() {
            let _ = f.parse_line(line.as_bytes());
        }
    }

    #[test]
    fn rendered_paths_match_their_own_pattern(
        a in 0u32..1_000_000,
        b in "[a-zA-Z0-9_.~-]{1,12}",
        c in "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,3}",
    ) {
        let p = MatchPattern::parse("GET /x/{a:int}/v{b}.json/{c:path}").expect("valid");
        let values = vec![a.to_string(), b.clone(), c.clone()];
        let path = p.render_path(&values);
        let mut caps = Vec::new();
        prop_assert!(p.path_matches(path.as_bytes(), &mut caps));
        let got: Vec<String> = caps.iter().map(|v| String::from_utf8_lossy(v.expect("captured")).into_owned()).collect();
        prop_assert_eq!(got, values);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Splitting a log into files at any line boundaries changes nothing: chunk boundaries and
    /// merge order are invisible in the result.
    #[test]
    fn splitting_a_log_anywhere_gives_the_same_profile(cuts in proptest::collection::vec(0.0f64..1.0, 0..4)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with("");
        let whole = dir.path().join("whole.log");
        write_log(&whole, &config, &gen_opts(3_000, 80, 17), Compression::Plain);
        let text = fs::read(&whole).expect("written");
        let starts: Vec<usize> = text.iter().enumerate().filter(|(_, c)| **c == b'\n').map(|(i, _)| i + 1).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| starts[(c * (starts.len() - 1) as f64) as usize]).collect();
        points.sort_unstable();
        points.dedup();
        let mut parts = Vec::new();
        let mut from = 0;
        for (i, to) in points.iter().chain(std::iter::once(&text.len())).enumerate() {
            let part = dir.path().join(format!("part-{i}.log"));
            fs::write(&part, &text[from..*to]).expect("writable");
            parts.push(part);
            from = *to;
        }
        let one = analyze_files(&[whole], &config, 2);
        let split = analyze_files(&parts, &config, 2);
        prop_assert_eq!(&one.rows(), &split.rows());
        prop_assert_eq!(one.summary.lines, split.summary.lines);
    }
}
