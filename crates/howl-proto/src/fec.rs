//! Reed–Solomon erasure coding over GF(2^8), byte-identical to nanors.
//!
//! Moonlight clients recover lost video datagrams with nanors (`rs.c`, as pinned by
//! moonlight-common-c). A host's parity must therefore be produced with exactly the same field
//! and the same encoding matrix, otherwise recovery "succeeds" with garbage (reference part 2
//! §4.7):
//!
//! * GF(2^8) with reduction polynomial `x^8 + x^4 + x^3 + x^2 + 1` (`0x11D`);
//! * for `D` data and `P` parity shards, parity row `j`, data column `i` has coefficient
//!   `C[j][i] = inv((P + i) XOR j)` (a Cauchy matrix, so every square sub-matrix is
//!   invertible);
//! * `parity_j[k] = XOR_i C[j][i] · data_i[k]` for every byte position `k`.
//!
//! The coefficients are read straight from the inverse table, so building a coder is free: there
//! is no `k × k` matrix inversion per frame. [`ReedSolomon`] is a `Copy` value holding the two
//! shard counts.
//!
//! Encoding multiplies with split low/high nibble tables. On x86_64 the `pshufb` kernels (AVX2,
//! else SSSE3) are chosen at run time; everywhere else, or when asked via [`Backend::Scalar`],
//! a portable table kernel runs. All backends produce identical bytes.
//!
//! Decoding ([`ReedSolomon::reconstruct_data`], [`ReedSolomon::reconstruct`]) solves the small
//! Cauchy system for the missing data shards and then runs the same multiply kernel.

#[cfg(target_arch = "x86_64")]
mod x86;

/// Most shards (data + parity) one Reed–Solomon block can have.
pub const MAX_SHARDS: usize = 255;

/// Errors from building a coder or from encoding/decoding with it.
///
/// Every variant is an API-misuse or unrecoverable-input condition; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    /// Shard counts outside what nanors accepts (`data ≥ 1`, `parity ≥ 1`, `data + parity ≤ 255`).
    #[error("invalid shard counts: {data} data + {parity} parity (need >= 1 each, <= 255 total)")]
    InvalidShardCounts {
        /// Requested data shards.
        data: usize,
        /// Requested parity shards.
        parity: usize,
    },
    /// The number of shard buffers passed does not match the coder.
    #[error("expected {expected} shard buffers, got {got}")]
    WrongShardCount {
        /// What the coder needs.
        expected: usize,
        /// What was passed.
        got: usize,
    },
    /// Shard buffers of different lengths (or a strided layout that does not fit the buffer).
    #[error("shard buffers differ in length or do not fit the buffer")]
    ShardLength,
    /// More shards are missing than parity shards are present.
    #[error("{missing} data shards missing but only {available} parity shards present")]
    TooManyMissing {
        /// Missing data shards.
        missing: usize,
        /// Parity shards available to recover them.
        available: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// GF(2^8) arithmetic, polynomial 0x11D, generator 2. All tables are built at compile time.
// ---------------------------------------------------------------------------------------------

const POLY: u16 = 0x11D;

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    exp
}

const fn build_log(exp: &[u8; 512]) -> [u8; 256] {
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

const EXP: [u8; 512] = build_exp();
const LOG: [u8; 256] = build_log(&EXP);

const fn const_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

const fn build_inv() -> [u8; 256] {
    let mut inv = [0u8; 256];
    let mut a = 1;
    while a < 256 {
        inv[a] = EXP[255 - LOG[a] as usize];
        a += 1;
    }
    inv
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = const_mul(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

const fn build_nibbles() -> [[u8; 32]; 256] {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = const_mul(c as u8, x as u8);
            t[c][16 + x] = const_mul(c as u8, (x << 4) as u8);
            x += 1;
        }
        c += 1;
    }
    t
}

/// Multiplicative inverses (`INV[0] = 0`).
static INV: [u8; 256] = build_inv();
/// Full product table: `MUL[a][b] = a · b`. 64 KiB, used by the portable kernel.
static MUL: [[u8; 256]; 256] = build_mul();
/// Split nibble tables: `NIB[c][0..16] = c · x`, `NIB[c][16..32] = c · (x << 4)` for `x < 16`.
/// `c · b = NIB[c][b & 15] ^ NIB[c][16 + (b >> 4)]`; the `pshufb` kernels use these.
static NIB: [[u8; 32]; 256] = build_nibbles();

/// Multiplies two field elements.
#[must_use]
pub fn gf_mul(a: u8, b: u8) -> u8 {
    MUL[usize::from(a)][usize::from(b)]
}

/// Multiplicative inverse of a field element; `gf_inv(0)` is defined as 0.
#[must_use]
pub fn gf_inv(a: u8) -> u8 {
    INV[usize::from(a)]
}

/// Which multiply kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Portable 256-entry product-table kernel; available everywhere.
    Scalar,
    /// x86_64 SSSE3 `pshufb` kernel, 16 bytes per lane.
    Ssse3,
    /// x86_64 AVX2 `vpshufb` kernel, 32 bytes per lane.
    Avx2,
}

impl Backend {
    /// The fastest backend this CPU supports.
    #[must_use]
    pub fn detect() -> Self {
        if Self::Avx2.is_available() {
            Self::Avx2
        } else if Self::Ssse3.is_available() {
            Self::Ssse3
        } else {
            Self::Scalar
        }
    }

    /// Whether this backend can run here. An unavailable backend passed to an `*_with` method
    /// silently falls back to [`Backend::Scalar`].
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Ssse3 | Self::Avx2 => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The multiply kernel: outputs[r] = XOR_i coef(r, i) · inputs[i], over the first `len` bytes.
// ---------------------------------------------------------------------------------------------

/// Read access to a list of input shards without materialising a slice of references.
pub(crate) trait ShardsIn {
    fn count(&self) -> usize;
    fn shard(&self, i: usize) -> &[u8];
}

/// Write access to a list of output shards.
pub(crate) trait ShardsOut {
    fn count(&self) -> usize;
    fn shard_mut(&mut self, r: usize) -> &mut [u8];
}

/// Shards given as a slice of owned or borrowed buffers.
struct SliceIn<'a, D>(&'a [D]);

impl<D: AsRef<[u8]>> ShardsIn for SliceIn<'_, D> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn shard(&self, i: usize) -> &[u8] {
        self.0[i].as_ref()
    }
}

struct SliceOut<'a, P>(&'a mut [P]);

impl<P: AsMut<[u8]>> ShardsOut for SliceOut<'_, P> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn shard_mut(&mut self, r: usize) -> &mut [u8] {
        self.0[r].as_mut()
    }
}

/// Shard `x` at `buf[x·stride + offset ..][..len]`.
struct StridedIn<'a> {
    buf: &'a [u8],
    stride: usize,
    offset: usize,
    len: usize,
    count: usize,
}

impl ShardsIn for StridedIn<'_> {
    fn count(&self) -> usize {
        self.count
    }
    fn shard(&self, i: usize) -> &[u8] {
        let at = i * self.stride + self.offset;
        &self.buf[at..at + self.len]
    }
}

struct StridedOut<'a> {
    buf: &'a mut [u8],
    stride: usize,
    offset: usize,
    len: usize,
    count: usize,
}

impl ShardsOut for StridedOut<'_> {
    fn count(&self) -> usize {
        self.count
    }
    fn shard_mut(&mut self, r: usize) -> &mut [u8] {
        let at = r * self.stride + self.offset;
        &mut self.buf[at..at + self.len]
    }
}

/// Overwrites every output with its linear combination of the inputs. All shards hold at least
/// `len` bytes (checked by the callers; the SIMD kernels re-check and fall back to scalar).
fn mul_into<F, I, O>(backend: Backend, coef: &F, inputs: &I, outputs: &mut O, len: usize)
where
    F: Fn(usize, usize) -> u8,
    I: ShardsIn,
    O: ShardsOut,
{
    if outputs.count() == 0 || len == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let done = match backend {
            Backend::Avx2 => x86::mul_into_avx2(coef, inputs, outputs, len),
            Backend::Ssse3 => x86::mul_into_ssse3(coef, inputs, outputs, len),
            Backend::Scalar => None,
        };
        if let Some(done) = done {
            if done < len {
                mul_into_scalar(coef, inputs, outputs, done, len);
            }
            return;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = backend;
    mul_into_scalar(coef, inputs, outputs, 0, len);
}

/// Portable kernel over byte range `from..len`. Also used for the SIMD kernels' tails.
fn mul_into_scalar<F, I, O>(coef: &F, inputs: &I, outputs: &mut O, from: usize, len: usize)
where
    F: Fn(usize, usize) -> u8,
    I: ShardsIn,
    O: ShardsOut,
{
    for r in 0..outputs.count() {
        let Some(out) = outputs.shard_mut(r).get_mut(from..len) else {
            continue;
        };
        out.fill(0);
        for i in 0..inputs.count() {
            let Some(input) = inputs.shard(i).get(from..len) else {
                continue;
            };
            let table = &MUL[usize::from(coef(r, i))];
            for (o, &b) in out.iter_mut().zip(input) {
                *o ^= table[usize::from(b)];
            }
        }
    }
}

/// A Reed–Solomon coder for blocks of `data` + `parity` shards, nanors-compatible.
///
/// Building one costs nothing (the coefficients come from a static inverse table), so create
/// it per FEC block. Shards of one call must all have the same length; any length works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReedSolomon {
    data: usize,
    parity: usize,
}

impl ReedSolomon {
    /// A coder for `data` data and `parity` parity shards (`1 ≤ data`, `1 ≤ parity`,
    /// `data + parity ≤ 255`, the limits nanors enforces).
    pub fn new(data: usize, parity: usize) -> Result<Self, FecError> {
        if data == 0 || parity == 0 || data + parity > MAX_SHARDS {
            return Err(FecError::InvalidShardCounts { data, parity });
        }
        Ok(Self { data, parity })
    }

    /// Number of data shards.
    #[must_use]
    pub fn data_shards(&self) -> usize {
        self.data
    }

    /// Number of parity shards.
    #[must_use]
    pub fn parity_shards(&self) -> usize {
        self.parity
    }

    /// Total shards, data + parity.
    #[must_use]
    pub fn total_shards(&self) -> usize {
        self.data + self.parity
    }

    /// The encoding coefficient for parity row `j`, data column `i`: `inv((P + i) XOR j)`.
    /// Out-of-range indices give 0.
    #[must_use]
    pub fn coefficient(&self, j: usize, i: usize) -> u8 {
        if j >= self.parity || i >= self.data {
            return 0;
        }
        // (P + i) ≤ 254 and j < P, so the index stays in 1..=255.
        INV[((self.parity + i) ^ j) & 0xff]
    }

    /// Computes all parity shards from the data shards with the fastest available backend.
    pub fn encode<D: AsRef<[u8]>, P: AsMut<[u8]>>(
        &self,
        data: &[D],
        parity: &mut [P],
    ) -> Result<(), FecError> {
        self.encode_with(Backend::detect(), data, parity)
    }

    /// [`Self::encode`] with an explicit backend (for tests and benchmarks).
    pub fn encode_with<D: AsRef<[u8]>, P: AsMut<[u8]>>(
        &self,
        backend: Backend,
        data: &[D],
        parity: &mut [P],
    ) -> Result<(), FecError> {
        if data.len() != self.data {
            return Err(FecError::WrongShardCount {
                expected: self.data,
                got: data.len(),
            });
        }
        if parity.len() != self.parity {
            return Err(FecError::WrongShardCount {
                expected: self.parity,
                got: parity.len(),
            });
        }
        let len = data[0].as_ref().len();
        if data.iter().any(|d| d.as_ref().len() != len)
            || parity.iter_mut().any(|p| p.as_mut().len() != len)
        {
            return Err(FecError::ShardLength);
        }
        let coef = |j: usize, i: usize| INV[((self.parity + i) ^ j) & 0xff];
        mul_into(backend, &coef, &SliceIn(data), &mut SliceOut(parity), len);
        Ok(())
    }

    /// Encodes shards laid out in one buffer: shard `x` (data `0..D`, then parity `D..D+P`)
    /// occupies `buf[x·stride + offset ..][..len]`. Never allocates. This is the layout the
    /// video packetizer uses (whole datagrams back to back, encryption prefix in front).
    pub fn encode_strided(
        &self,
        buf: &mut [u8],
        stride: usize,
        offset: usize,
        len: usize,
    ) -> Result<(), FecError> {
        self.encode_strided_with(Backend::detect(), buf, stride, offset, len)
    }

    /// [`Self::encode_strided`] with an explicit backend.
    pub fn encode_strided_with(
        &self,
        backend: Backend,
        buf: &mut [u8],
        stride: usize,
        offset: usize,
        len: usize,
    ) -> Result<(), FecError> {
        let total = self.total_shards();
        let fits = offset.checked_add(len).is_some_and(|end| end <= stride)
            && stride.checked_mul(total).is_some_and(|n| n <= buf.len());
        if !fits {
            return Err(FecError::ShardLength);
        }
        let (data_part, parity_part) = buf.split_at_mut(stride * self.data);
        let inputs = StridedIn {
            buf: data_part,
            stride,
            offset,
            len,
            count: self.data,
        };
        let mut outputs = StridedOut {
            buf: parity_part,
            stride,
            offset,
            len,
            count: self.parity,
        };
        let coef = |j: usize, i: usize| INV[((self.parity + i) ^ j) & 0xff];
        mul_into(backend, &coef, &inputs, &mut outputs, len);
        Ok(())
    }

    /// Recovers missing **data** shards in place. `shards` holds all `D + P` shard buffers
    /// (data first), all the same length; `present[x]` says whether shard `x` holds received
    /// bytes. Missing data shards are overwritten; parity shards and `present` are left alone.
    /// Needs at least as many present parity shards as missing data shards.
    pub fn reconstruct_data<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        shards: &mut [S],
        present: &[bool],
    ) -> Result<(), FecError> {
        self.reconstruct_impl(Backend::detect(), shards, present, false)
    }

    /// Like [`Self::reconstruct_data`], then also recomputes missing parity shards.
    pub fn reconstruct<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        shards: &mut [S],
        present: &[bool],
    ) -> Result<(), FecError> {
        self.reconstruct_impl(Backend::detect(), shards, present, true)
    }

    /// [`Self::reconstruct`] / [`Self::reconstruct_data`] with an explicit backend.
    pub fn reconstruct_with<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        backend: Backend,
        shards: &mut [S],
        present: &[bool],
        parity_too: bool,
    ) -> Result<(), FecError> {
        self.reconstruct_impl(backend, shards, present, parity_too)
    }

    fn reconstruct_impl<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        backend: Backend,
        shards: &mut [S],
        present: &[bool],
        parity_too: bool,
    ) -> Result<(), FecError> {
        let total = self.total_shards();
        if shards.len() != total {
            return Err(FecError::WrongShardCount {
                expected: total,
                got: shards.len(),
            });
        }
        if present.len() != total {
            return Err(FecError::WrongShardCount {
                expected: total,
                got: present.len(),
            });
        }
        let len = shards[0].as_ref().len();
        if shards.iter().any(|s| s.as_ref().len() != len) {
            return Err(FecError::ShardLength);
        }
        let (d, p) = (self.data, self.parity);

        // Missing data columns and the parity rows that will stand in for them.
        let missing: Vec<usize> = (0..d).filter(|&i| !present[i]).collect();
        let rows: Vec<usize> = (0..p)
            .filter(|&j| present[d + j])
            .take(missing.len())
            .collect();
        if rows.len() < missing.len() {
            return Err(FecError::TooManyMissing {
                missing: missing.len(),
                available: rows.len(),
            });
        }

        if !missing.is_empty() {
            let e = missing.len();
            // A = C[rows][missing] (e × e Cauchy sub-matrix, always invertible).
            let mut a: Vec<u8> = Vec::with_capacity(e * e);
            for &j in &rows {
                for &m in &missing {
                    a.push(self.coefficient(j, m));
                }
            }
            let ainv = invert(&mut a, e).ok_or(FecError::TooManyMissing {
                missing: e,
                available: rows.len(),
            })?;
            // missing_m = Σ_r Ainv[m][r]·parity_r  ⊕  Σ_{i present} (Σ_r Ainv[m][r]·C[r][i])·data_i
            // Inputs, in order: the present data shards, then the chosen parity shards.
            let present_data: Vec<usize> = (0..d).filter(|&i| present[i]).collect();
            let ni = present_data.len() + e;
            let mut g = vec![0u8; e * ni];
            for m in 0..e {
                for (col, &i) in present_data.iter().enumerate() {
                    let mut acc = 0u8;
                    for (r, &j) in rows.iter().enumerate() {
                        acc ^= gf_mul(ainv[m * e + r], self.coefficient(j, i));
                    }
                    g[m * ni + col] = acc;
                }
                for r in 0..e {
                    g[m * ni + present_data.len() + r] = ainv[m * e + r];
                }
            }

            // Split the shard list into the inputs (shared) and the outputs (missing data).
            let mut data_in: Vec<&[u8]> = Vec::with_capacity(ni);
            let mut parity_in: Vec<&[u8]> = Vec::with_capacity(e);
            let mut outs: Vec<&mut [u8]> = Vec::with_capacity(e);
            let mut row_iter = rows.iter().peekable();
            for (x, s) in shards.iter_mut().enumerate() {
                if x < d {
                    if present[x] {
                        let shared: &S = s;
                        data_in.push(shared.as_ref());
                    } else {
                        outs.push(s.as_mut());
                    }
                } else if row_iter.peek().is_some_and(|&&j| j == x - d) {
                    row_iter.next();
                    let shared: &S = s;
                    parity_in.push(shared.as_ref());
                }
            }
            data_in.extend(parity_in);
            let coef = |m: usize, col: usize| g[m * ni + col];
            mul_into(
                backend,
                &coef,
                &SliceIn(&data_in),
                &mut SliceOut(&mut outs),
                len,
            );
        }

        if parity_too {
            let missing_parity: Vec<usize> = (0..p).filter(|&j| !present[d + j]).collect();
            if !missing_parity.is_empty() {
                let (data_part, parity_part) = shards.split_at_mut(d);
                let mut outs: Vec<&mut [u8]> = parity_part
                    .iter_mut()
                    .enumerate()
                    .filter(|(j, _)| !present[d + j])
                    .map(|(_, s)| s.as_mut())
                    .collect();
                let coef = |r: usize, i: usize| self.coefficient(missing_parity[r], i);
                mul_into(
                    backend,
                    &coef,
                    &SliceIn(&*data_part),
                    &mut SliceOut(&mut outs),
                    len,
                );
            }
        }
        Ok(())
    }
}

/// Gauss–Jordan inverse of an `n × n` matrix over GF(2^8); `None` if singular.
fn invert(a: &mut [u8], n: usize) -> Option<Vec<u8>> {
    let mut inv = vec![0u8; n * n];
    for i in 0..n {
        inv[i * n + i] = 1;
    }
    for col in 0..n {
        let pivot = (col..n).find(|&r| a[r * n + col] != 0)?;
        if pivot != col {
            for k in 0..n {
                a.swap(pivot * n + k, col * n + k);
                inv.swap(pivot * n + k, col * n + k);
            }
        }
        let scale = gf_inv(a[col * n + col]);
        for k in 0..n {
            a[col * n + k] = gf_mul(a[col * n + k], scale);
            inv[col * n + k] = gf_mul(inv[col * n + k], scale);
        }
        for r in 0..n {
            let factor = a[r * n + col];
            if r == col || factor == 0 {
                continue;
            }
            for k in 0..n {
                a[r * n + k] ^= gf_mul(factor, a[col * n + k]);
                inv[r * n + k] ^= gf_mul(factor, inv[col * n + k]);
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_inverses() {
        assert_eq!(gf_inv(2), 0x8e);
        assert_eq!(gf_inv(3), 0xf4);
        assert_eq!(gf_inv(4), 0x47);
        assert_eq!(gf_inv(5), 0xa7);
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "a = {a}");
        }
    }

    #[test]
    fn nibble_tables_agree_with_mul() {
        for c in 0..=255u8 {
            for b in 0..=255u8 {
                let t = &NIB[usize::from(c)];
                assert_eq!(
                    t[usize::from(b & 15)] ^ t[16 + usize::from(b >> 4)],
                    gf_mul(c, b)
                );
            }
        }
    }

    #[test]
    fn reference_rows() {
        let rs = ReedSolomon::new(4, 2).unwrap();
        let rows: Vec<u8> = (0..2)
            .flat_map(|j| (0..4).map(move |i| (j, i)))
            .map(|(j, i)| rs.coefficient(j, i))
            .collect();
        assert_eq!(rows, [0x8e, 0xf4, 0x47, 0xa7, 0xf4, 0x8e, 0xa7, 0x47]);
    }

    #[test]
    fn invert_roundtrip() {
        let rs = ReedSolomon::new(5, 5).unwrap();
        let mut a: Vec<u8> = (0..5)
            .flat_map(|j| (0..5).map(move |i| (j, i)))
            .map(|(j, i)| rs.coefficient(j, i))
            .collect();
        let orig = a.clone();
        let inv = invert(&mut a, 5).unwrap();
        for r in 0..5 {
            for c in 0..5 {
                let mut acc = 0;
                for k in 0..5 {
                    acc ^= gf_mul(orig[r * 5 + k], inv[k * 5 + c]);
                }
                assert_eq!(acc, u8::from(r == c));
            }
        }
    }
}
