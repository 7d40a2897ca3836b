//! numpy's default generator, `numpy.random.default_rng(seed)` (SeedSequence seeding PCG64),
//! bit for bit, for the draws the experiment's split makes: `permutation` and `random`. The
//! split drew from numpy before it moved into the core; drawing the same numbers keeps every
//! seed's split, and so the cached stages and results made before.

/// SeedSequence's hash constants (numpy/random/bit_generator.pyx).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;
/// PCG64's 128-bit LCG multiplier.
const MULTIPLIER: u128 = (2_549_297_995_355_413_924 << 64) + 4_865_540_595_714_422_341;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

/// SeedSequence's pool for an entropy of non-negative integers (`default_rng(7)` is `[7]`,
/// `default_rng([7, 1])` is `[7, 1]`): each integer as its little-endian 32-bit words.
fn pool(entropy: &[u64]) -> [u32; POOL_SIZE] {
    let mut words = Vec::new();
    for &n in entropy {
        words.push(n as u32);
        if n >> 32 != 0 {
            words.push((n >> 32) as u32);
        }
    }
    let mut hash_const = INIT_A;
    let mut mixer = [0u32; POOL_SIZE];
    for (i, m) in mixer.iter_mut().enumerate() {
        *m = hashmix(words.get(i).copied().unwrap_or(0), &mut hash_const);
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                let h = hashmix(mixer[src], &mut hash_const);
                mixer[dst] = mix(mixer[dst], h);
            }
        }
    }
    for &word in words.iter().skip(POOL_SIZE) {
        for m in mixer.iter_mut() {
            *m = mix(*m, hashmix(word, &mut hash_const));
        }
    }
    mixer
}

/// `numpy.random.default_rng(entropy)`.
pub struct NumpyRng {
    state: u128,
    increment: u128,
    /// The upper half of the last 64-bit draw, which numpy hands out as the next 32-bit one.
    spare: Option<u32>,
}

impl NumpyRng {
    pub fn new(entropy: &[u64]) -> Self {
        // SeedSequence.generate_state(4, uint64): eight 32-bit words, paired little-endian.
        let pool = pool(entropy);
        let mut hash_const = INIT_B;
        let mut words = [0u64; 4];
        for i in 0..8 {
            let mut v = pool[i % POOL_SIZE] ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_B);
            v = v.wrapping_mul(hash_const);
            v ^= v >> XSHIFT;
            words[i / 2] |= u64::from(v) << (32 * (i % 2));
        }
        let initial = (u128::from(words[0]) << 64) | u128::from(words[1]);
        let sequence = (u128::from(words[2]) << 64) | u128::from(words[3]);
        let mut rng = NumpyRng {
            state: 0,
            increment: (sequence << 1) | 1,
            spare: None,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(initial);
        rng.step();
        rng
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(MULTIPLIER).wrapping_add(self.increment);
    }

    /// PCG64's XSL-RR output of the next state.
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        (((s >> 64) as u64) ^ (s as u64)).rotate_right((s >> 122) as u32)
    }

    fn next_u32(&mut self) -> u32 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        let next = self.next_u64();
        self.spare = Some((next >> 32) as u32);
        next as u32
    }

    /// A uniform integer in `0..=max`, by masked rejection (numpy's `random_interval`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let value = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }

    /// `Generator.shuffle` of a 1-d array (and so `permutation`): Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.interval(i as u64) as usize;
            x.swap(i, j);
        }
    }

    /// `Generator.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        self.shuffle(&mut order);
        order
    }

    /// `Generator.random()`: a double in [0, 1) from the top 53 bits of a draw.
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers numpy 2.x draws (`np.random.default_rng(...)`).
    #[test]
    fn draws_what_numpy_draws() {
        let mut raw = NumpyRng::new(&[0]);
        assert_eq!(
            [raw.next_u64(), raw.next_u64()],
            [11_749_869_230_777_074_271, 4_976_686_463_289_251_617]
        );
        assert_eq!(NumpyRng::new(&[0]).permutation(10), [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]);
        let mut values: Vec<usize> = (5..25).collect();
        NumpyRng::new(&[7, 1]).shuffle(&mut values);
        assert_eq!(
            values,
            [
                22, 19, 23, 15, 20, 6, 10, 11, 7, 13, 12, 5, 16, 21, 14, 8, 9, 24, 17, 18
            ]
        );
        let mut rng = NumpyRng::new(&[0, 2]);
        let drawn: Vec<f64> = (0..3).map(|_| rng.random()).collect();
        assert_eq!(drawn, [0.08082403917318748, 0.4024377919935872, 0.6012892062377659]);
        assert_eq!(NumpyRng::new(&[(1 << 40) + 3]).permutation(6), [2, 5, 0, 3, 1, 4]);
    }
}
