//! Recency weighting: a request `gap` ms older than another counts 2^(−gap / half-life) of it.

/// Whole-second gaps with a precomputed weight: 17 minutes of them, 8 KiB.
const PRECOMPUTED_SECONDS: usize = 1024;

/// A half-life, with the weights of short whole-second gaps computed once.
///
/// Most logs stamp requests to the second, and a key's next request in the same chunk of
/// lines usually comes within minutes, so nearly every weight the tally needs is in the
/// table: `exp2` on every matched line took 2% of the analyzer's samples.
#[derive(Debug, Clone)]
pub struct HalfLife {
    ms: f64,
    whole_seconds: Box<[f64]>,
}

impl HalfLife {
    /// A half-life of `ms` milliseconds.
    pub fn new(ms: f64) -> Self {
        let whole_seconds = (0..PRECOMPUTED_SECONDS as i64).map(|s| exact(s * 1000, ms)).collect();
        HalfLife { ms, whole_seconds }
    }

    /// 2^(−gap_ms / half-life), bit for bit what `exp2` gives (a negative gap weighs more
    /// than 1).
    #[inline]
    pub fn weight(&self, gap_ms: i64) -> f64 {
        if gap_ms % 1000 == 0
            && let Ok(seconds) = usize::try_from(gap_ms / 1000)
            && let Some(&w) = self.whole_seconds.get(seconds)
        {
            return w;
        }
        exact(gap_ms, self.ms)
    }
}

#[inline]
fn exact(gap_ms: i64, half_life_ms: f64) -> f64 {
    (-gap_ms as f64 / half_life_ms).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn halves_every_half_life() {
        let h = HalfLife::new(60_000.0);
        assert_eq!(h.weight(0), 1.0);
        assert_eq!(h.weight(60_000), 0.5);
        assert_eq!(h.weight(120_000), 0.25);
        assert_eq!(h.weight(-60_000), 2.0);
        assert_eq!(h.weight(30_000), 0.5f64.sqrt());
    }

    proptest! {
        #[test]
        fn equals_exp2_bit_for_bit(
            gap in prop_oneof![
                (0i64..1100).prop_map(|s| s * 1000),
                (-5i64..5).prop_map(|s| s * 1000),
                -10_000_000i64..10_000_000,
                any::<i32>().prop_map(i64::from),
            ],
            half_life_ms in prop_oneof![Just(1.0), Just(3_600_000.0), Just(21_600_000.0), 1.0f64..1e10],
        ) {
            let expected = (-gap as f64 / half_life_ms).exp2();
            prop_assert_eq!(HalfLife::new(half_life_ms).weight(gap).to_bits(), expected.to_bits());
        }
    }
}
