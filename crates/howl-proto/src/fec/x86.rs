//! x86_64 `pshufb` multiply kernels (AVX2 and SSSE3), chosen at run time.
//!
//! This is the only module in howl-proto that uses `unsafe`: `std::arch` loads/stores take raw
//! pointers and `#[target_feature]` functions may only be called once the feature is detected.
//! The safe wrappers check the CPU feature and every slice length before entering, and return
//! `false` (the caller then runs the portable kernel) if anything does not hold.
//!
//! Kernel shape: for each group of up to four output rows, first resolve every coefficient of
//! the group to its offset in the flattened nibble table `NIB` (32 bytes per coefficient), then
//! for each 64-byte (AVX2) / 32-byte (SSSE3) column keep the accumulators in registers and stream
//! over all inputs: load the input column once, split it into low/high nibbles once, and per
//! output row do two table shuffles and two XORs.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m128i, __m256i, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8, _mm_setzero_si128,
    _mm_shuffle_epi8, _mm_srli_epi16, _mm_storeu_si128, _mm_xor_si128, _mm256_and_si256,
    _mm256_broadcastsi128_si256, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_setzero_si256,
    _mm256_shuffle_epi8, _mm256_srli_epi16, _mm256_storeu_si256, _mm256_xor_si256,
};

use super::{MAX_SHARDS, NIB, ShardsIn, ShardsOut};

/// Rows kept in registers per pass.
const ROWS: usize = 4;

/// Offsets into the flattened `NIB` table for one row group: entry `i·R + r` is the table of
/// coefficient `(r0 + r, i)`.
type Offsets = [u16; ROWS * MAX_SHARDS];

/// Fills `offs[i·n + r]` with the `NIB` byte offset of coefficient `(r0 + r, i)`.
fn row_offsets<F: Fn(usize, usize) -> u8>(
    coef: &F,
    n_in: usize,
    r0: usize,
    n: usize,
    offs: &mut Offsets,
) {
    for i in 0..n_in {
        for r in 0..n {
            offs[i * n + r] = u16::from(coef(r0 + r, i)) * 32;
        }
    }
}

fn lengths_ok<I: ShardsIn, O: ShardsOut>(inputs: &I, outputs: &mut O, len: usize) -> bool {
    inputs.count() <= MAX_SHARDS
        && (0..inputs.count()).all(|i| inputs.shard(i).len() >= len)
        && (0..outputs.count()).all(|r| outputs.shard_mut(r).len() >= len)
}

/// AVX2 kernel. Returns how many leading bytes it computed (a multiple of 32; the caller does
/// the rest), or `None` without touching anything if AVX2 is missing or a shard is shorter
/// than `len`.
pub(super) fn mul_into_avx2<F, I, O>(
    coef: &F,
    inputs: &I,
    outputs: &mut O,
    len: usize,
) -> Option<usize>
where
    F: Fn(usize, usize) -> u8,
    I: ShardsIn,
    O: ShardsOut,
{
    if !std::arch::is_x86_feature_detected!("avx2") || !lengths_ok(inputs, outputs, len) {
        return None;
    }
    // SAFETY: AVX2 was detected just above, every input and output shard holds at least `len`
    // bytes (which is all the kernel reads or writes), and there are at most 255 inputs.
    Some(unsafe { avx2_columns(coef, inputs, outputs, len) })
}

/// SSSE3 kernel; same contract as [`mul_into_avx2`] with 16-byte granularity.
pub(super) fn mul_into_ssse3<F, I, O>(
    coef: &F,
    inputs: &I,
    outputs: &mut O,
    len: usize,
) -> Option<usize>
where
    F: Fn(usize, usize) -> u8,
    I: ShardsIn,
    O: ShardsOut,
{
    if !std::arch::is_x86_feature_detected!("ssse3") || !lengths_ok(inputs, outputs, len) {
        return None;
    }
    // SAFETY: SSSE3 was detected just above, every input and output shard holds at least `len`
    // bytes (which is all the kernel reads or writes), and there are at most 255 inputs.
    Some(unsafe { ssse3_columns(coef, inputs, outputs, len) })
}

/// Processes whole 64- then 32-byte columns; returns how many leading bytes were done.
///
/// # Safety
/// AVX2 must be available and all slices must hold at least `len` bytes.
#[target_feature(enable = "avx2")]
unsafe fn avx2_columns<F: Fn(usize, usize) -> u8, I: ShardsIn, O: ShardsOut>(
    coef: &F,
    inputs: &I,
    outputs: &mut O,
    len: usize,
) -> usize {
    let rows = outputs.count();
    let n_in = inputs.count().min(MAX_SHARDS);
    let mut offs: Offsets = [0; ROWS * MAX_SHARDS];
    let mut r0 = 0;
    while r0 < rows {
        let n = (rows - r0).min(ROWS);
        row_offsets(coef, n_in, r0, n, &mut offs);
        // SAFETY: forwarded caller contract (AVX2 present, slices hold `len` bytes);
        // r0 + n <= rows.
        unsafe {
            match n {
                4 => avx2_rows::<4, I, O>(&offs, n_in, inputs, outputs, r0, len),
                3 => avx2_rows::<3, I, O>(&offs, n_in, inputs, outputs, r0, len),
                2 => avx2_rows::<2, I, O>(&offs, n_in, inputs, outputs, r0, len),
                _ => avx2_rows::<1, I, O>(&offs, n_in, inputs, outputs, r0, len),
            }
        }
        r0 += n;
    }
    len / 32 * 32
}

/// Rows `r0..r0+R`, all whole 32-byte columns.
///
/// # Safety
/// AVX2 must be available; `r0 + R <= outputs.len()`; all slices hold at least `len` bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn avx2_rows<const R: usize, I: ShardsIn, O: ShardsOut>(
    offs: &Offsets,
    n_in: usize,
    inputs: &I,
    outputs: &mut O,
    r0: usize,
    len: usize,
) {
    let offs = &offs.as_chunks::<R>().0[..n_in];
    let mut col = 0;
    while col + 64 <= len {
        // SAFETY: col + 64 <= len; rest forwarded.
        unsafe { avx2_block::<R, 2, I, O>(offs, inputs, outputs, r0, col) };
        col += 64;
    }
    if col + 32 <= len {
        // SAFETY: col + 32 <= len; rest forwarded.
        unsafe { avx2_block::<R, 1, I, O>(offs, inputs, outputs, r0, col) };
    }
}

/// Output rows `r0..r0+R`, bytes `col..col+32·W`.
///
/// # Safety
/// AVX2 must be available; `r0 + R <= outputs.len()`; every slice holds at least `col + 32·W`
/// bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn avx2_block<const R: usize, const W: usize, I: ShardsIn, O: ShardsOut>(
    offs: &[[u16; R]],
    inputs: &I,
    outputs: &mut O,
    r0: usize,
    col: usize,
) {
    let nib = NIB.as_flattened().as_ptr();
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = [[_mm256_setzero_si256(); W]; R];
    for (i, o) in offs.iter().enumerate() {
        let input = inputs.shard(i);
        let mut lo = [_mm256_setzero_si256(); W];
        let mut hi = [_mm256_setzero_si256(); W];
        for w in 0..W {
            // SAFETY: col + 32·W <= input.len() (caller contract), so the 32 bytes at
            // col + 32·w are in bounds; loadu has no alignment requirement.
            let v =
                unsafe { _mm256_loadu_si256(input.as_ptr().add(col + 32 * w).cast::<__m256i>()) };
            lo[w] = _mm256_and_si256(v, mask);
            hi[w] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        }
        for (acc_r, &off) in acc.iter_mut().zip(o) {
            // SAFETY: off = c·32 with c <= 255, so both 16-byte loads lie inside the
            // 8192-byte flattened NIB table.
            let (tl, th) = unsafe {
                let t = nib.add(usize::from(off));
                (
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(t.cast::<__m128i>())),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(t.add(16).cast::<__m128i>())),
                )
            };
            for w in 0..W {
                let prod = _mm256_xor_si256(
                    _mm256_shuffle_epi8(tl, lo[w]),
                    _mm256_shuffle_epi8(th, hi[w]),
                );
                acc_r[w] = _mm256_xor_si256(acc_r[w], prod);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let out = outputs.shard_mut(r0 + r);
        for (w, v) in acc_r.iter().enumerate() {
            // SAFETY: col + 32·W <= out.len() (caller contract); storeu is unaligned.
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr().add(col + 32 * w).cast::<__m256i>(), *v)
            };
        }
    }
}

/// Processes whole 32- then 16-byte columns; returns how many leading bytes were done.
///
/// # Safety
/// SSSE3 must be available and all slices must hold at least `len` bytes.
#[target_feature(enable = "ssse3")]
unsafe fn ssse3_columns<F: Fn(usize, usize) -> u8, I: ShardsIn, O: ShardsOut>(
    coef: &F,
    inputs: &I,
    outputs: &mut O,
    len: usize,
) -> usize {
    let rows = outputs.count();
    let n_in = inputs.count().min(MAX_SHARDS);
    let mut offs: Offsets = [0; ROWS * MAX_SHARDS];
    let mut r0 = 0;
    while r0 < rows {
        let n = (rows - r0).min(ROWS);
        row_offsets(coef, n_in, r0, n, &mut offs);
        // SAFETY: forwarded caller contract (SSSE3 present, slices hold `len` bytes);
        // r0 + n <= rows.
        unsafe {
            match n {
                4 => ssse3_rows::<4, I, O>(&offs, n_in, inputs, outputs, r0, len),
                3 => ssse3_rows::<3, I, O>(&offs, n_in, inputs, outputs, r0, len),
                2 => ssse3_rows::<2, I, O>(&offs, n_in, inputs, outputs, r0, len),
                _ => ssse3_rows::<1, I, O>(&offs, n_in, inputs, outputs, r0, len),
            }
        }
        r0 += n;
    }
    len / 16 * 16
}

/// Rows `r0..r0+R`, all whole 16-byte columns.
///
/// # Safety
/// SSSE3 must be available; `r0 + R <= outputs.len()`; all slices hold at least `len` bytes.
#[target_feature(enable = "ssse3")]
#[inline]
unsafe fn ssse3_rows<const R: usize, I: ShardsIn, O: ShardsOut>(
    offs: &Offsets,
    n_in: usize,
    inputs: &I,
    outputs: &mut O,
    r0: usize,
    len: usize,
) {
    let offs = &offs.as_chunks::<R>().0[..n_in];
    let mut col = 0;
    while col + 32 <= len {
        // SAFETY: col + 32 <= len; rest forwarded.
        unsafe { ssse3_block::<R, 2, I, O>(offs, inputs, outputs, r0, col) };
        col += 32;
    }
    if col + 16 <= len {
        // SAFETY: col + 16 <= len; rest forwarded.
        unsafe { ssse3_block::<R, 1, I, O>(offs, inputs, outputs, r0, col) };
    }
}

/// Output rows `r0..r0+R`, bytes `col..col+16·W`.
///
/// # Safety
/// SSSE3 must be available; `r0 + R <= outputs.len()`; every slice holds at least `col + 16·W`
/// bytes.
#[target_feature(enable = "ssse3")]
#[inline]
unsafe fn ssse3_block<const R: usize, const W: usize, I: ShardsIn, O: ShardsOut>(
    offs: &[[u16; R]],
    inputs: &I,
    outputs: &mut O,
    r0: usize,
    col: usize,
) {
    let nib = NIB.as_flattened().as_ptr();
    let mask = _mm_set1_epi8(0x0f);
    let mut acc = [[_mm_setzero_si128(); W]; R];
    for (i, o) in offs.iter().enumerate() {
        let input = inputs.shard(i);
        let mut lo = [_mm_setzero_si128(); W];
        let mut hi = [_mm_setzero_si128(); W];
        for w in 0..W {
            // SAFETY: col + 16·W <= input.len() (caller contract); loadu is unaligned.
            let v = unsafe { _mm_loadu_si128(input.as_ptr().add(col + 16 * w).cast::<__m128i>()) };
            lo[w] = _mm_and_si128(v, mask);
            hi[w] = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
        }
        for (acc_r, &off) in acc.iter_mut().zip(o) {
            // SAFETY: off = c·32 with c <= 255, so both 16-byte loads lie inside the
            // 8192-byte flattened NIB table.
            let (tl, th) = unsafe {
                let t = nib.add(usize::from(off));
                (
                    _mm_loadu_si128(t.cast::<__m128i>()),
                    _mm_loadu_si128(t.add(16).cast::<__m128i>()),
                )
            };
            for w in 0..W {
                let prod = _mm_xor_si128(_mm_shuffle_epi8(tl, lo[w]), _mm_shuffle_epi8(th, hi[w]));
                acc_r[w] = _mm_xor_si128(acc_r[w], prod);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let out = outputs.shard_mut(r0 + r);
        for (w, v) in acc_r.iter().enumerate() {
            // SAFETY: col + 16·W <= out.len() (caller contract); storeu is unaligned.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(col + 16 * w).cast::<__m128i>(), *v) };
        }
    }
}
