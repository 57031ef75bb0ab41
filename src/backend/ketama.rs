//! Which memcached server holds a key: the ketama continuum, so that preheat writes each key
//! where the application's client will look for it.
//!
//! This is libketama's continuum, which twemproxy (`distribution: ketama`), spymemcached's and
//! Couchbase's ketama locators and libmemcached's weighted ketama follow too: every server
//! (of equal weight) is placed at 160 points on a circle of `u32`, four from each MD5 of
//! `host:port-N` for N in 0..40 (each four bytes read little-endian); a key goes to the first
//! point at or after the first four bytes of its own MD5, wrapping around. The server string
//! is the `host:port` the URL names, so the application must list its servers by the same
//! names.

use md5::{Digest, Md5};

/// Hashes per server; each gives four points.
const HASHES_PER_SERVER: u32 = 40;

/// The continuum of a list of servers.
#[derive(Debug, Clone)]
pub struct Continuum {
    /// Points in ascending order, each with the index of its server.
    points: Vec<(u32, usize)>,
}

impl Continuum {
    /// The continuum of `servers` (`host:port` each, in the order the URL lists them).
    pub fn new(servers: &[String]) -> Continuum {
        let mut points = Vec::with_capacity(servers.len() * HASHES_PER_SERVER as usize * 4);
        for (index, server) in servers.iter().enumerate() {
            for n in 0..HASHES_PER_SERVER {
                let digest = Md5::digest(format!("{server}-{n}").as_bytes());
                for quarter in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes([quarter[0], quarter[1], quarter[2], quarter[3]]);
                    points.push((point, index));
                }
            }
        }
        points.sort_unstable();
        Continuum { points }
    }

    /// The index of the server that holds `key`.
    pub fn server(&self, key: &str) -> usize {
        let digest = Md5::digest(key.as_bytes());
        self.at(u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }

    /// The server of the first point at or after `hash`, wrapping around.
    fn at(&self, hash: u32) -> usize {
        let at = self.points.partition_point(|&(point, _)| point < hash);
        self.points.get(at).or(self.points.first()).map_or(0, |&(_, server)| server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:11211", i + 1)).collect()
    }

    #[test]
    fn keys_spread_evenly_and_one_server_more_moves_few_of_them() {
        let three = Continuum::new(&servers(3));
        let four = Continuum::new(&servers(4));
        let keys: Vec<String> = (0..30_000).map(|i| format!("product:{i}")).collect();
        let mut per_server = [0usize; 3];
        for k in &keys {
            per_server[three.server(k)] += 1;
        }
        // 160 points each: every server within a fifth of its even share.
        assert!(per_server.iter().all(|&n| (8_000..=12_000).contains(&n)), "{per_server:?}");
        // A fourth server takes about a quarter of the keys, from the others; none move between
        // the first three.
        let moved: Vec<&String> = keys.iter().filter(|k| three.server(k) != four.server(k)).collect();
        assert!(moved.iter().all(|k| four.server(k) == 3), "keys only move to the new server");
        assert!((5_000..=10_000).contains(&moved.len()), "{} moved", moved.len());
    }

    #[test]
    fn the_continuum_is_md5_of_host_port_and_index() {
        // The first point of a server is the first four bytes of MD5("host:port-0").
        let c = Continuum::new(&["127.0.0.1:11211".to_string()]);
        let digest = Md5::digest(b"127.0.0.1:11211-0");
        let first = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        assert!(c.points.iter().any(|&(p, _)| p == first));
        assert_eq!(c.points.len(), 160);
        assert!(c.points.windows(2).all(|w| w[0].0 <= w[1].0));
        // A hash goes to the first point at or after it; past the last, to the first.
        let two = Continuum { points: vec![(10, 0), (20, 1)] };
        assert_eq!([two.at(5), two.at(10), two.at(11), two.at(20), two.at(21)], [0, 0, 1, 1, 0]);
    }
}
