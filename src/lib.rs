//! preheat learns from access logs which cache entries are hot and warms them before traffic
//! arrives.
//!
//! Layout, in pipeline order (`docs/ARCHITECTURE.md` says what each may import):
//! - [`logformat`]: one log line → [`logformat::Record`] (combined, common, JSON, nginx
//!   `log_format` and Apache `LogFormat` strings).
//! - [`rules`]: a record → (rule, key) via match patterns and key templates.
//! - [`analyze`]: logs → ranked (rule, key) rows and a summary, in parallel, in bounded memory.
//! - [`profile`]: those rows as Parquet, in a store with a `latest` pointer; merging
//!   profiles of several hosts; [`sketch`]: the HyperLogLog sketches they carry.
//! - [`plan`]: the hottest profiled keys that fit the warm budgets, and their predicted
//!   coverage.
//! - [`warm`]: a plan's values loaded from [`source`]s in batches and written to a
//!   [`backend`] (Redis, Redis Cluster, or an in-process cache), inside the deadline and the
//!   [`memory`] budget, with the run report.
//! - [`report`]: capacity, miss-ratio curves, cold against warm, verification of a warm, its
//!   metrics and the HTML page.
//! - [`config`]: `preheat.toml` → validated [`config::Config`], which builds each stage's
//!   settings; no stage reads it.
//! - Shared by all: [`secret`] (passwords kept out of output), [`timestamp`] and [`units`]
//!   (times, sizes and durations as text), [`generate`] (synthetic Zipf-distributed logs with
//!   exact ground truth, for demos, tests and benchmarks).
//!
//! The `preheat` binary (`src/cli/`) is a thin layer over these modules;
//! `examples/warm_in_process.rs` shows a service warming its own cache at start-up.
//!
//! # Example
//!
//! From a log line to a cache key, as the analyzer does for every line:
//!
//! ```
//! use preheat::config::Config;
//! use preheat::logformat::{FormatSpec, JsonFields, LogFormat};
//! use preheat::rules::Outcome;
//!
//! let config = Config::parse(
//!     r#"
//!     [[rule]]
//!     name = "product"
//!     match = "GET /api/products/{id:int}"
//!     key = "product:{id}"
//!     "#,
//!     "example",
//! )?;
//! let format = LogFormat::from_spec(&FormatSpec::Combined, &JsonFields::default()).unwrap();
//! let line = br#"203.0.113.9 - - [24/Nov/2026:06:15:00 +0000] "GET /api/products/42?token=x HTTP/1.1" 200 512 "-" "curl/8""#;
//! let record = format.parse_line(line)?;
//!
//! let mut values = Vec::new();
//! let Outcome::Matched(rule) = config.rules.classify(&record, &mut values) else { panic!("no match") };
//! let mut key = Vec::new();
//! assert_eq!(config.rules.rules()[rule].key.render(&values, &mut key)?, "product:42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analyze;
pub mod backend;
pub mod config;
pub mod failure;
pub mod generate;
pub mod logformat;
pub mod memory;
pub mod plan;
pub mod printable;
pub mod profile;
pub mod report;
pub mod rules;
pub mod secret;
pub mod sketch;
pub mod source;
pub mod timestamp;
pub mod units;
pub mod warm;
