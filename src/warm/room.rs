//! The cache's free room: a warm fills only memory the cache has to spare, never making it
//! evict live keys (the rule `pg_prewarm` follows: warming never evicts).
//!
//! Before the first batch each node's memory is read (Redis `INFO memory` and `INFO stats`,
//! the in-process cache's weighted size). A batch starts only if the nodes' used memory, the
//! batches in flight and its own estimated cost stay within `warm.cache_headroom` of each
//! node's limit; after each batch the nodes are read again, and a rise in evicted keys stops
//! the warm at once. Nodes without a limit (`maxmemory 0`) are not watched: there the
//! process's and the host's memory are the guard.

use crate::backend::{Backend, NodeMemory};

/// Bytes a cache spends on a key besides its name and value (Redis: the dictionary entry, the
/// object header, the expiry entry and the allocator's rounding).
pub const PER_KEY_OVERHEAD: u64 = 96;

/// The watched nodes' memory.
pub struct CacheRoom {
    headroom: f64,
    /// The last reading of each node that has a memory limit; empty when none has (then
    /// nothing is watched).
    nodes: Vec<NodeMemory>,
    /// Each node's evicted keys when the warm began.
    evicted_at_start: Vec<u64>,
}

impl CacheRoom {
    /// Reads the nodes. A backend that cannot say leaves the warm unwatched, with a warning:
    /// its writes would fail as well, and say why.
    pub async fn read<B: Backend>(backend: &B, headroom: f64) -> (CacheRoom, Vec<NodeMemory>) {
        let all = match backend.memory().await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache's memory; its free room is not watched");
                Vec::new()
            }
        };
        let nodes: Vec<NodeMemory> = all.iter().filter(|n| n.max_bytes > 0).cloned().collect();
        let evicted_at_start = nodes.iter().map(|n| n.evicted_keys).collect();
        for n in &nodes {
            tracing::info!(
                node = %n.node,
                used_mib = n.used_bytes >> 20,
                max_mib = n.max_bytes >> 20,
                policy = %n.policy,
                "cache memory: the warm fills at most {:.0}% of the limit",
                100.0 * headroom
            );
        }
        (CacheRoom { headroom, nodes, evicted_at_start }, all)
    }

    /// Whether any node has a limit to watch.
    pub fn watched(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Whether `bytes` more, beside `in_flight` bytes of batches under way, fit every node's
    /// headroom; keys spread over a cluster's nodes evenly, so each gets its share.
    pub fn fits(&self, in_flight: u64, bytes: u64) -> bool {
        let share = (in_flight + bytes) / self.nodes.len().max(1) as u64;
        self.nodes.iter().all(|n| n.used_bytes + share <= self.limit(n))
    }

    /// A node's ceiling for the warm.
    fn limit(&self, node: &NodeMemory) -> u64 {
        (self.headroom * node.max_bytes as f64) as u64
    }

    /// Reads the nodes again; returns the keys evicted since the warm began (a node that
    /// does not answer keeps its last reading).
    pub async fn refresh<B: Backend>(&mut self, backend: &B) -> u64 {
        if let Ok(now) = backend.memory().await {
            for n in &mut self.nodes {
                if let Some(fresh) = now.iter().find(|f| f.node == n.node) {
                    n.clone_from(fresh);
                }
            }
        }
        self.nodes
            .iter()
            .zip(&self.evicted_at_start)
            .map(|(n, start)| n.evicted_keys.saturating_sub(*start))
            .sum()
    }

    /// The last readings, for the report.
    pub fn readings(&self) -> &[NodeMemory] {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, used: u64, max: u64) -> NodeMemory {
        NodeMemory {
            node: name.into(),
            used_bytes: used,
            max_bytes: max,
            policy: "allkeys-lru".into(),
            evicted_keys: 0,
        }
    }

    #[test]
    fn a_batch_fits_only_within_every_nodes_headroom() {
        let room = CacheRoom { headroom: 0.9, nodes: vec![node("a", 50, 100)], evicted_at_start: vec![0] };
        assert!(room.fits(20, 20));
        assert!(!room.fits(20, 21), "90 of 100 is the ceiling");
        // Two nodes share a batch; the fuller one decides.
        let room = CacheRoom {
            headroom: 0.9,
            nodes: vec![node("a", 10, 100), node("b", 80, 100)],
            evicted_at_start: vec![0, 0],
        };
        assert!(room.fits(0, 20));
        assert!(!room.fits(0, 22));
    }
}
