//! JSON lines with nginx's field names and with each JSON preset's (nested ones included): no
//! panic, no hang, the same record on a second reading, and the one-pass reader agreeing with
//! serde_json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preheat::logformat::{FormatSpec, JsonFields, JsonFormat, LogFormat, second_reading};

fuzz_target!(|data: &[u8]| {
    let json = JsonFields::default();
    if let Err(why) = second_reading::json(&JsonFormat::new(&json), data) {
        panic!("{why}");
    }
    for name in ["json", "caddy", "traefik", "gcp-lb"] {
        let spec = FormatSpec::parse(name).expect("a known name");
        let format = LogFormat::from_spec(&spec, &json).expect("a JSON format");
        if let Err(why) = second_reading::again(&format, data) {
            panic!("{name}: {why}");
        }
    }
});
