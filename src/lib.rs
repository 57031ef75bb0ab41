//! preheat learns from access logs which cache entries are hot and warms them before traffic
//! arrives.
//!
//! Layout, in pipeline order:
//! - [`logformat`]: one log line → [`logformat::Record`] (combined, common, JSON, nginx
//!   `log_format` strings).
//! - [`rules`]: a record → (rule, key) via match patterns and key templates.
//! - [`config`]: `preheat.toml` → validated [`config::Config`].
//! - [`analyze`]: logs → ranked (rule, key) rows and a summary, in parallel, in bounded memory.
//! - [`profile`]: those rows as Parquet, in a store with a `latest` pointer.
//! - [`generate`]: synthetic Zipf-distributed logs with exact ground truth, for demos, tests
//!   and benchmarks.
//!
//! The `preheat` binary (`src/cli/`) is a thin layer over these modules.

pub mod analyze;
pub mod config;
pub mod generate;
pub mod logformat;
pub mod profile;
pub mod rules;
