//! Flags, logging set-up, dispatch and exit codes. Commands live one per file.

mod analyze;
mod config;
mod demo;
mod generate;
mod manual;
mod plan;
mod profile;
mod report;
mod verify;
mod warm;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use preheat::config::{Config, ConfigError};

/// Exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// A runtime failure (cannot write the profile, nothing readable, ...).
    Failure = 1,
    /// Bad invocation or invalid configuration.
    Usage = 2,
    /// The analysis finished and wrote a profile, but some inputs could not be read in full.
    Partial = 3,
    /// `warm --strict`: some keys failed, were invalid or were not started.
    Strict = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// preheat: learn which cache entries are hot from access logs, and warm them before traffic
/// arrives.
#[derive(Debug, Parser)]
#[command(name = "preheat", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// `preheat --version`: the program's version and the profile schema it reads and writes
/// (checked against [`preheat::profile::SCHEMA_VERSION`] by a test).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (profile schema 1)");

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "PREHEAT_LOG_FORMAT")]
    pub log_format: LogFormatArg,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr, and no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Which profile a command reads (`plan`, `warm`, `report`, `verify`).
#[derive(Debug, Args)]
pub struct ProfileChoice {
    /// `latest`, or a profile file.
    #[arg(long, default_value = "latest")]
    pub profile: String,
    /// Profile store directory (for `latest`).
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    pub profiles: PathBuf,
}

impl ProfileChoice {
    /// The profile file it names.
    pub fn resolve(&self) -> Result<PathBuf, preheat::profile::ProfileError> {
        preheat::profile::Store::new(&self.profiles).resolve(&self.profile)
    }
}

/// The access logs' format (`analyze`, `report`, `verify`): one flag, one meaning.
#[derive(Debug, Args)]
pub struct AccessLogFormat {
    /// Log format: `auto`, `combined`, `common`, `json`, `vhost_combined`, an nginx
    /// `log_format` string or an Apache `LogFormat` string
    /// (overrides the config's `[log] format`).
    #[arg(long)]
    pub format: Option<String>,
}

impl AccessLogFormat {
    /// The format the flag names, if given.
    pub fn parse(&self) -> Result<Option<preheat::logformat::FormatSpec>, UsageError> {
        let Some(f) = &self.format else { return Ok(None) };
        preheat::logformat::FormatSpec::parse(f).map(Some).map_err(|e| {
            UsageError::new(
                format!("--format: {e}"),
                Some("use `combined`, `common`, `json`, `auto`, an nginx `log_format` string or an Apache `LogFormat` string"),
            )
        })
    }
}

/// Warm settings that flags and `PREHEAT_*` variables override (`plan`, `warm`, `config
/// check`): a flag wins over its variable, which wins over the config file.
#[derive(Debug, Args)]
pub struct WarmOverrides {
    /// Backend URL (`redis://host:port/db`, `redis+cluster://host:port,host:port`, `memory://`,
    /// `env:NAME`); overrides `[backend] url`.
    #[arg(long, env = "PREHEAT_BACKEND")]
    pub backend: Option<String>,
    /// Hard end of the warm, at most 5m; overrides `warm.deadline`.
    #[arg(long, env = "PREHEAT_DEADLINE")]
    pub deadline: Option<String>,
    /// At most this many keys; overrides `warm.max_keys`.
    #[arg(long, env = "PREHEAT_MAX_KEYS")]
    pub max_keys: Option<u64>,
    /// Memory budget (`30%` or `2GiB`, at most 50% of available memory); overrides
    /// `warm.max_memory`.
    #[arg(long, env = "PREHEAT_MAX_MEMORY")]
    pub max_memory: Option<String>,
    /// A profile whose logs end longer ago than this is stale; overrides
    /// `warm.max_profile_age`.
    #[arg(long, env = "PREHEAT_MAX_PROFILE_AGE")]
    pub max_profile_age: Option<String>,
}

impl WarmOverrides {
    /// As the library's overrides.
    pub fn to_overrides(&self) -> preheat::config::Overrides {
        preheat::config::Overrides {
            backend: self.backend.clone(),
            deadline: self.deadline.clone(),
            max_keys: self.max_keys,
            max_memory: self.max_memory.clone(),
            max_profile_age: self.max_profile_age.clone(),
        }
    }
}

/// The yes/no values flags and `PREHEAT_*` variables accept, as the README documents them.
pub const BOOL_VALUES: &str = "1, 0, true, false, yes or no";

/// Parses a yes/no value (`1/0/true/false/yes/no`, any case): the value parser of boolean
/// flags backed by a variable, and of `PREHEAT_SKIP`.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(format!("expected {BOOL_VALUES}")),
    }
}

/// A yes/no environment variable: `false` when unset or empty, a usage error naming the
/// variable when it holds something else.
pub fn env_bool(name: &str) -> Result<bool, UsageError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_bool(&v).map_err(|why| {
            UsageError::new(
                format!("{name}={v:?}: {why}"),
                Some("set it to 1 or 0 (true/false and yes/no work too), or unset it"),
            )
        }),
        _ => Ok(false),
    }
}

pub use preheat::timestamp::now_ms;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn access logs into a hotness profile (Parquet) in the profile store.
    Analyze(analyze::AnalyzeArgs),
    /// Run the whole pipeline on the sample data, with no server: analyze, plan, warm an
    /// in-memory cache from a SQLite database built from `data/shop.sql`, size the cache.
    Demo(demo::DemoArgs),
    /// Show what a warm would write: the hottest profiled keys within the budgets, and the
    /// share of requests they cover.
    Plan(plan::PlanArgs),
    /// Warm the cache from the latest profile: plan, load values, write them, report.
    Warm(warm::WarmArgs),
    /// Size the cache: how many keys and how much memory buy 80/90/95/99% of requests, per
    /// rule and overall, from the latest profile.
    Report(report::ReportArgs),
    /// Check a warm against the traffic after the deploy: coverage against the prediction,
    /// hit ratios per minute against the profile's, warmed keys never read, and a verdict.
    Verify(verify::VerifyArgs),
    /// Check a config: what a warm would do, and whether its backend and sources answer.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Inspect and tidy the profile store: list, show, prune, merge.
    #[command(subcommand, visible_alias = "profiles")]
    Profile(profile::ProfileCommand),
    /// Write a synthetic Zipf-distributed access log and its exact ground truth.
    GenerateLog(generate::GenerateArgs),
    /// Print a shell completion script (`preheat completions bash > /etc/bash_completion.d/preheat`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual (roff): every command and option, the configuration file, the
    /// environment and the exit codes (`preheat man > /usr/local/share/man/man1/preheat.1`).
    Man,
}

/// Sets up tracing on stderr (`RUST_LOG` overrides the level flags).
pub fn init_logging(g: &GlobalArgs) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("preheat={level},warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match g.log_format {
        LogFormatArg::Json => builder.json().init(),
        LogFormatArg::Text => builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).init(),
    }
}

/// Whether to draw progress bars: a terminal, text logs, not quiet.
pub fn show_bar(g: &GlobalArgs) -> bool {
    std::io::stderr().is_terminal() && g.log_format == LogFormatArg::Text && !g.quiet
}

/// Runs the command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Analyze(a) => analyze::run(a, &cli.global),
        Command::Demo(d) => demo::run(d, &cli.global),
        Command::Plan(p) => plan::run(p),
        Command::Warm(w) => warm::run(w, &cli.global),
        Command::Report(r) => report::run(r),
        Command::Verify(v) => verify::run(v),
        Command::Config(c) => config::run(c),
        Command::Profile(p) => profile::run(p),
        Command::GenerateLog(g) => generate::run(g),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "preheat", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Man => {
            print!("{}", manual::render(&Cli::command()));
            Ok(Exit::Ok)
        }
    }
}

/// The config a command uses: `--config`/`PREHEAT_CONFIG`, else `./preheat.toml` if present,
/// else the built-in defaults.
pub fn load_config(flag: Option<&PathBuf>) -> anyhow::Result<Config> {
    if let Some(path) = flag {
        return Ok(Config::load(path)?);
    }
    let local = PathBuf::from("preheat.toml");
    if local.is_file() {
        return Config::load(&local).context("loading `preheat.toml` from the current directory");
    }
    tracing::info!("no --config and no preheat.toml here: using the built-in rules (one key per GET path)");
    Ok(Config::builtin())
}

/// A user mistake rather than a failure of the run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    message: String,
    hint: Option<String>,
}

impl UsageError {
    /// A usage error with an optional hint.
    pub fn new(message: impl Into<String>, hint: Option<&str>) -> Self {
        UsageError { message: message.into(), hint: hint.map(str::to_string) }
    }
}

/// A failure of the run (exit 1) that the user can do something about.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    message: String,
    hint: String,
}

impl RunError {
    /// A failure with what to do about it.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        RunError { message: message.into(), hint: hint.into() }
    }
}

fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<ConfigError>()
            || e.is::<UsageError>()
            || e.is::<preheat::analyze::input::InputError>()
            || e.is::<preheat::logformat::FormatStringError>()
    })
}

/// Exit code for an error.
pub fn exit_code_for(err: &anyhow::Error) -> Exit {
    if is_usage(err) { Exit::Usage } else { Exit::Failure }
}

/// The error and its causes, one line each; a cause whose text the line before already
/// quotes (`cannot read config `x`: No such file...`, then the I/O error itself) is left out.
fn error_lines(err: &anyhow::Error) -> Vec<String> {
    let mut said = err.to_string();
    let mut lines = vec![format!("error: {said}")];
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !said.contains(&text) {
            lines.push(format!("  caused by: {text}"));
        }
        said = text;
    }
    lines
}

/// Prints an error and its causes to stderr, with a hint where one helps.
pub fn report_error(err: &anyhow::Error) {
    for line in error_lines(err) {
        eprintln!("{line}");
    }
    let hint = err.chain().find_map(|e| {
        if let Some(u) = e.downcast_ref::<UsageError>() {
            return u.hint.clone();
        }
        if let Some(r) = e.downcast_ref::<RunError>() {
            return Some(r.hint.clone());
        }
        if let Some(ConfigError::Invalid { .. }) = e.downcast_ref::<ConfigError>() {
            return Some(
                "fix the lines above; docs/configuration.md (or `preheat man`) lists every field".into(),
            );
        }
        if let Some(preheat::analyze::input::InputError::NotFound(_)) = e.downcast_ref() {
            return Some(
                "pass files, directories, globs such as `logs/access.log*`, or `-` for stdin".into(),
            );
        }
        None
    });
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_profile_schema() {
        assert!(super::VERSION.ends_with(&format!("(profile schema {})", preheat::profile::SCHEMA_VERSION)));
    }

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let read = preheat::config::ConfigError::Read { path: "x.toml".into(), source: io };
        let err = anyhow::Error::new(read).context("loading the config");
        assert_eq!(
            super::error_lines(&err),
            [
                "error: loading the config",
                "  caused by: cannot read config `x.toml`: No such file or directory (os error 2)",
            ]
        );
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
