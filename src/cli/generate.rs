//! `preheat generate-log`: a synthetic log and its ground truth.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use preheat::generate::{GenerateOptions, generate};
use preheat::logformat::FormatSpec;
use preheat::logformat::time::parse_iso8601;

use super::{Exit, UsageError, load_config};

/// Flags of `preheat generate-log`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Config whose rules the requests follow [default: ./preheat.toml, else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG", alias = "rules")]
    config: Option<PathBuf>,
    /// Lines to write.
    #[arg(long, default_value_t = 10_000)]
    lines: u64,
    /// Random seed (same seed, same log).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Distinct keys per rule.
    #[arg(long, default_value_t = 1000)]
    keys: u32,
    /// Output format: `combined`, `common`, `json`, an nginx `log_format` string or an Apache
    /// `LogFormat` string.
    #[arg(long, default_value = "combined")]
    format: String,
    /// First request time (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: String,
    /// Time span of the log.
    #[arg(long, default_value = "24h")]
    duration: humantime::Duration,
    /// Share of requests no rule matches.
    #[arg(long, default_value_t = 0.05)]
    unmatched: f64,
    /// Share of requests with an uncached status (404/500).
    #[arg(long, default_value_t = 0.02)]
    errors: f64,
    /// Share of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// Output file (`.gz` or `.zst` compresses); `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: PathBuf,
    /// Write the exact per-key counts here (TSV: rule, key, count; hottest first).
    #[arg(long)]
    truth: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<Exit> {
    let config = load_config(args.config.as_ref())?;
    let format =
        FormatSpec::parse(&args.format).map_err(|e| UsageError::new(format!("--format: {e}"), None))?;
    let start_ms = parse_iso8601(args.start.as_bytes())
        .ok_or_else(|| UsageError::new(format!("--start `{}` is not an RFC 3339 time", args.start), None))?;
    for (name, share) in
        [("--unmatched", args.unmatched), ("--errors", args.errors), ("--malformed", args.malformed)]
    {
        if !(0.0..=1.0).contains(&share) {
            return Err(UsageError::new(format!("{name} must be between 0 and 1"), None).into());
        }
    }
    let opts = GenerateOptions {
        lines: args.lines,
        seed: args.seed,
        zipf: args.zipf,
        keys_per_rule: args.keys.max(1),
        format,
        start_ms,
        duration: Duration::from(args.duration),
        unmatched_share: args.unmatched,
        error_share: args.errors,
        malformed_share: args.malformed,
    };
    let name = args.output.to_string_lossy().to_string();
    let sink: Box<dyn Write> = if name == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(&args.output).with_context(|| format!("creating `{name}`"))?)
    };
    let mut out = Output::new(&name, BufWriter::with_capacity(1 << 20, sink))?;
    let truth = generate(&config.rules, &opts, &mut out).with_context(|| format!("writing `{name}`"))?;
    out.finish().with_context(|| format!("writing `{name}`"))?;
    if let Some(path) = &args.truth {
        let mut f =
            BufWriter::new(File::create(path).with_context(|| format!("creating `{}`", path.display()))?);
        truth.write_tsv(&mut f)?;
        f.flush()?;
    }
    tracing::info!(
        lines = truth.lines,
        keys = truth.counts.len(),
        unmatched = truth.unmatched,
        status_filtered = truth.status_filtered,
        malformed = truth.malformed,
        "log written"
    );
    Ok(Exit::Ok)
}

/// The output stream, compressed as its name says.
enum Output<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Output<W> {
    fn new(name: &str, inner: W) -> std::io::Result<Self> {
        Ok(if name.ends_with(".gz") {
            Output::Gzip(flate2::write::GzEncoder::new(inner, flate2::Compression::fast()))
        } else if name.ends_with(".zst") {
            Output::Zstd(zstd::stream::write::Encoder::new(inner, 3)?)
        } else {
            Output::Plain(inner)
        })
    }

    /// Writes the compressed stream's trailer and flushes: errors surface here, not in a drop.
    fn finish(self) -> std::io::Result<()> {
        let mut inner = match self {
            Output::Plain(w) => w,
            Output::Gzip(g) => g.finish()?,
            Output::Zstd(z) => z.finish()?,
        };
        inner.flush()
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Plain(w) => w.write(buf),
            Output::Gzip(g) => g.write(buf),
            Output::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Gzip(g) => g.flush(),
            Output::Zstd(z) => z.flush(),
        }
    }
}
