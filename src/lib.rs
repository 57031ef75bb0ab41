//! x
pub mod config;
pub mod logformat;
pub mod rules;
