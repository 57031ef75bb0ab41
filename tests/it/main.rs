//! Integration tests: real files, real compression, the real binary.

mod analyze;
mod backends;
mod capacity;
mod cli;
mod cluster;
mod deploy;
mod formats;
mod invalidation;
mod mysql;
mod outcomes;
mod pacing;
mod plan;
mod properties;
mod recipes;
mod room;
mod servers;
mod sources;
mod support;
mod verify;
mod warm;
