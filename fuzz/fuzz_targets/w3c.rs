//! W3C extended logs: the first line is taken as a `#Fields:` header, every later line is
//! read by the format it sets. No panic, no hang, the same record on a second reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preheat::logformat::{FormatSpec, JsonFields, LogFormat, Preset, second_reading};

fuzz_target!(|data: &[u8]| {
    let spec = FormatSpec::Preset(Preset::W3c);
    let mut format = LogFormat::from_spec(&spec, &JsonFields::default()).expect("w3c");
    for line in data.split(|&b| b == b'\n') {
        if let Some(headed) = format.after_header(line) {
            format = headed;
        }
        if let Err(why) = second_reading::again(&format, line) {
            panic!("{why}");
        }
    }
});
