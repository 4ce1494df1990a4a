//! The input generator: a small deterministic PRNG and the mutations.

/// SplitMix64: tiny, fast, good enough to pick mutations; fixed seeds make runs repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// FNV-1a of a name: a per-target seed offset.
pub fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'\r', b'\n', b':'];
const EXTREMES: [&[u8]; 8] = [
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"99999999999999999999999999",
    b"",
];

/// Writes the next input into `out`: random bytes (up to `max_len`) or a mutated seed.
pub fn next_input(rng: &mut Rng, seeds: &[Vec<u8>], text: bool, max_len: usize, out: &mut Vec<u8>) {
    out.clear();
    if seeds.is_empty() || rng.below(2) == 0 {
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 => rng.below(64),
            _ => rng.below(max_len + 1),
        };
        out.extend((0..len).map(|_| rng.byte()));
        return;
    }
    out.extend_from_slice(&seeds[rng.below(seeds.len())]);
    for _ in 0..=rng.below(8) {
        mutate(rng, seeds, text, out);
    }
    out.truncate(max_len.max(1) * 2);
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], text: bool, d: &mut Vec<u8>) {
    let len = d.len();
    match rng.below(if text { 9 } else { 8 }) {
        0 if len > 0 => {
            let i = rng.below(len);
            d[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            d[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 if len > 0 => {
            let i = rng.below(len);
            d[i] = rng.byte();
        }
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            d.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(32)).min(len);
            d.drain(a..b);
        }
        5 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64)).min(len);
            let copy = d[a..b].to_vec();
            let at = rng.below(len + 1);
            d.splice(at..at, copy);
        }
        6 => d.truncate(rng.below(len + 1)),
        7 => {
            // Splice: the head of this input, the tail of another seed.
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            d.truncate(cut);
            d.extend_from_slice(&other[from..]);
        }
        8 => {
            // Text: a run of digits becomes an extreme number.
            let digits: Vec<usize> = (0..len).filter(|&i| d[i].is_ascii_digit()).collect();
            if let Some(&start) = digits.get(rng.below(digits.len().max(1))) {
                let end = (start..len)
                    .find(|&i| !d[i].is_ascii_digit())
                    .unwrap_or(len);
                d.splice(
                    start..end,
                    EXTREMES[rng.below(EXTREMES.len())].iter().copied(),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_bounded() {
        let seeds = vec![b"GET /x 1\r\n".to_vec(), vec![1, 2, 3]];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            (0..500)
                .map(|_| {
                    next_input(&mut rng, &seeds, true, 100, &mut out);
                    assert!(out.len() <= 200);
                    out.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
