//! The reports: what a profile, the logs and a warm say about the cache, for the engineers
//! who size it and the deploys that check a warm paid off.
//!
//! - [`capacity`]: from a profile, how many keys and how much memory buy which coverage;
//! - [`mrc`]: from a request trace, the hit ratio of an LRU cache of each size;
//! - [`simulate`]: the same traffic through a cold and a pre-warmed cache;
//! - [`verify`]: the traffic after a deploy against the warm's plan: did it pay off?
//! - [`metrics`]: a warm's run report as Prometheus metrics;
//! - [`html`]: the capacity report as one self-contained page.

pub mod capacity;
pub mod html;
pub mod metrics;
pub mod mrc;
pub mod simulate;
pub mod verify;
