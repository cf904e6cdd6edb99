//! A small seeded generator (SplitMix64): every decision of a campaign comes from the seed,
//! so a seed names the same stories and the same fault schedule on every run. Threads
//! interleave differently from run to run; the decisions do not.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// An independent stream for one worker or one story: same seed, same stream.
    pub fn fork(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A whole number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_stream_and_streams_differ() {
        let draw = |seed, stream| {
            let mut r = Rng::fork(seed, stream);
            (0..8).map(|_| r.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(2501, 7), draw(2501, 7));
        assert_ne!(draw(2501, 7), draw(2501, 8));
        assert_ne!(draw(2501, 7), draw(2502, 7));
        let mut r = Rng::fork(1, 1);
        for _ in 0..1000 {
            let n = r.range(3, 5);
            assert!((3..=5).contains(&n));
        }
    }
}
