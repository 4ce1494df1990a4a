//! The synthetic test picture, with a frame counter that survives video compression.
//!
//! Tests prove *freshness* (ARCHITECTURE.md invariant 3) by reading the counter back from
//! decoded frames: a viewer must see counters that keep increasing, never a stale frame.
//!
//! # Layout (normative: the Python interop test reimplements [`read_counter`] from this text)
//!
//! The picture is 8-bit I420 (planar Y, then U and V at half width and half height), `width` and
//! `height` even, `width >= 64`, `height >= 16`.
//!
//! - **Counter band**: rows `0 .. band_h` with `band_h = min(max(2 * floor(height / 30), 16),
//!   height)` (48 rows at 720p, 72 at 1080p, 16 at or below 240p).
//!   The band is split into [`BLOCKS`] = 32 blocks; block `i` (0-based) covers columns
//!   `floor(i * width / 32) .. floor((i + 1) * width / 32)` (end exclusive, integer division).
//!   - block 0 is white (luma [`LUMA_ONE`] = 235) and block 1 black (luma [`LUMA_ZERO`] = 16):
//!     sync markers that also tell a reader the band is there at all;
//!   - blocks 2..=31 carry the low [`COUNTER_BITS`] = 30 bits of the counter, most significant
//!     bit first: block `2 + k` holds bit `29 - k`; white (235) is 1, black (16) is 0.
//!   - Chroma under the band is neutral (128).
//! - **Picture**: rows `band_h .. height` hold a vertical luma gradient from 64 to ~192 with a
//!   colour tint, and a coloured bar (luma 220, `width / 16` wide, the middle half of the picture
//!   rows) that moves `max(2, width / 128)` pixels right per counter step, wrapping around. Mean
//!   luma is ~128: a client refuses to start on frames whose mean is under 5.
//!
//! # Reading
//!
//! [`read_counter`]: for each block take the centre `cx = floor((x0 + x1) / 2)`,
//! `cy = floor(band_h / 2)`, average the luma of the square of side `2 * r` with
//! `r = max(1, floor(min(x1 - x0, band_h) / 6))` covering columns `cx - r .. cx + r` and rows
//! `cy - r .. cy + r` (end exclusive); the block is 1 if the average is `>= 128`
//! ([`THRESHOLD`]). The frame is valid only if block 0 reads 1 and block 1 reads 0; the counter
//! is then the 30 bits of blocks 2..=31, MSB first. Averaging a square (12x12 at 720p) far from the
//! block edges keeps the reading right under heavy compression.
//!
//! # Cost
//!
//! Everything is drawn row by row with `fill` / `copy_from_slice` (memset/memcpy), so a whole
//! 720p frame costs well under a millisecond in optimised builds and there is no per-pixel
//! arithmetic. The bar moving over a static background keeps the encoder's work small as well
//! (motion confined to one region), which matters more than the drawing (performance anchors:
//! x264 costs 2–7 ms per 720p frame).

/// Blocks in the counter band.
pub const BLOCKS: usize = 32;
/// Counter bits carried (blocks 2..=31).
pub const COUNTER_BITS: u32 = 30;
/// Mask of the counter bits that survive a round trip.
pub const COUNTER_MASK: u32 = (1 << COUNTER_BITS) - 1;
/// Luma of a 1 bit and of the white marker (video-range white).
pub const LUMA_ONE: u8 = 235;
/// Luma of a 0 bit and of the black marker (video-range black).
pub const LUMA_ZERO: u8 = 16;
/// Averages at or above this read as 1.
pub const THRESHOLD: u32 = 128;
/// Smallest supported width (2 pixels per block).
pub const MIN_WIDTH: usize = 64;
/// Smallest supported height.
pub const MIN_HEIGHT: usize = 16;

/// Why a frame could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Width or height odd or below the minimum.
    #[error("unsupported picture size {width}x{height} (even, at least 64x16)")]
    BadSize {
        /// Requested width.
        width: usize,
        /// Requested height.
        height: usize,
    },
    /// The buffer is smaller than an I420 frame of that size.
    #[error("buffer of {got} bytes is smaller than the {need} bytes of an I420 frame")]
    BufferTooSmall {
        /// Buffer length.
        got: usize,
        /// [`i420_size`].
        need: usize,
    },
}

/// Bytes of an I420 frame of `width` x `height` (both even).
pub fn i420_size(width: usize, height: usize) -> usize {
    width * height + 2 * (width / 2) * (height / 2)
}

/// Height of the counter band for a picture `height` rows high (always even).
pub fn counter_band_height(height: usize) -> usize {
    (2 * (height / 30)).max(MIN_HEIGHT).min(height)
}

/// Column range `[x0, x1)` of block `i`.
pub fn block_columns(i: usize, width: usize) -> (usize, usize) {
    (i * width / BLOCKS, (i + 1) * width / BLOCKS)
}

/// Luma of block `i` for `counter`.
fn block_luma(i: usize, counter: u32) -> u8 {
    let one = match i {
        0 => true,
        1 => false,
        _ => {
            let bit = COUNTER_BITS as usize - 1 - (i - 2);
            (counter >> bit) & 1 == 1
        }
    };
    if one { LUMA_ONE } else { LUMA_ZERO }
}

/// Draws frame number `counter` into `frame` (I420, tightly packed: stride = width).
///
/// Every byte of the frame is written, so the buffer's previous content does not matter.
pub fn draw_i420(
    frame: &mut [u8],
    width: usize,
    height: usize,
    counter: u32,
) -> Result<(), PatternError> {
    if width < MIN_WIDTH
        || height < MIN_HEIGHT
        || !width.is_multiple_of(2)
        || !height.is_multiple_of(2)
    {
        return Err(PatternError::BadSize { width, height });
    }
    let need = i420_size(width, height);
    if frame.len() < need {
        return Err(PatternError::BufferTooSmall {
            got: frame.len(),
            need,
        });
    }
    let (y_plane, chroma) = frame[..need].split_at_mut(width * height);
    let (cw, ch) = (width / 2, height / 2);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);

    let band_h = counter_band_height(height);
    let pic_h = height - band_h;

    // Counter band: build the first row, copy it down.
    let (band, picture) = y_plane.split_at_mut(band_h * width);
    if let Some((first, rest)) = band.split_at_mut_checked(width) {
        for i in 0..BLOCKS {
            let (x0, x1) = block_columns(i, width);
            first[x0..x1].fill(block_luma(i, counter));
        }
        for row in rest.chunks_exact_mut(width) {
            row.copy_from_slice(first);
        }
    }

    // Moving bar geometry (luma coordinates, even so chroma lines up).
    let bar_w = (width / 16).max(2) & !1;
    let speed = (width / 128).max(2) & !1;
    let travel = width - bar_w;
    let bar_x = ((counter as usize).wrapping_mul(speed) % travel.max(1)) & !1;
    let bar_y0 = (band_h + pic_h / 4) & !1;
    let bar_y1 = (band_h + 3 * pic_h / 4) & !1;

    for (r, row) in picture.chunks_exact_mut(width).enumerate() {
        let y = band_h + r;
        // 64 ..= ~192 from the band down.
        let luma = 64 + (128 * r / pic_h.max(1)) as u8;
        row.fill(luma);
        if (bar_y0..bar_y1).contains(&y) {
            row[bar_x..bar_x + bar_w].fill(220);
        }
    }

    let band_ch = band_h / 2;
    for (cy, (u_row, v_row)) in u_plane
        .chunks_exact_mut(cw)
        .zip(v_plane.chunks_exact_mut(cw))
        .enumerate()
    {
        if cy < band_ch {
            u_row.fill(128);
            v_row.fill(128);
            continue;
        }
        // A gentle blue-to-orange tint down the picture.
        let t = (64 * (cy - band_ch) / (ch - band_ch).max(1)) as u8;
        u_row.fill(160 - t);
        v_row.fill(96 + t);
        let y = 2 * cy;
        if (bar_y0..bar_y1).contains(&y) {
            u_row[bar_x / 2..(bar_x + bar_w) / 2].fill(64);
            v_row[bar_x / 2..(bar_x + bar_w) / 2].fill(200);
        }
    }
    Ok(())
}

/// Reads the counter from a decoded luma plane (`stride` bytes per row, at least `width`).
///
/// `None` if the plane is too small for the stated geometry or the sync markers do not read
/// white-then-black (not a test-pattern frame, or one garbled beyond recognition).
pub fn read_counter(luma: &[u8], stride: usize, width: usize, height: usize) -> Option<u32> {
    if width < MIN_WIDTH || height < MIN_HEIGHT || stride < width {
        return None;
    }
    let band_h = counter_band_height(height);
    // Only the band is read; require that much of the plane.
    if luma.len() < stride * (band_h - 1) + width {
        return None;
    }
    let bit = |i: usize| -> Option<bool> {
        let (x0, x1) = block_columns(i, width);
        let cx = (x0 + x1) / 2;
        let cy = band_h / 2;
        let r = ((x1 - x0).min(band_h) / 6).max(1);
        let mut sum = 0u32;
        for y in cy.checked_sub(r)?..cy + r {
            let row = luma.get(y * stride..)?;
            for &p in row.get(cx.checked_sub(r)?..cx + r)? {
                sum += u32::from(p);
            }
        }
        let n = (2 * r * 2 * r) as u32;
        Some(sum >= THRESHOLD * n)
    };
    if !bit(0)? || bit(1)? {
        return None;
    }
    let mut counter = 0u32;
    for i in 2..BLOCKS {
        counter = (counter << 1) | u32::from(bit(i)?);
    }
    Some(counter)
}

/// Mean luma of a tightly packed luma plane (what a client checks before showing frames).
pub fn mean_luma(luma: &[u8]) -> f64 {
    if luma.is_empty() {
        return 0.0;
    }
    let sum: u64 = luma.iter().map(|&p| u64::from(p)).sum();
    sum as f64 / luma.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, counter: u32) -> Vec<u8> {
        let mut f = vec![0u8; i420_size(w, h)];
        draw_i420(&mut f, w, h, counter).unwrap();
        f
    }

    #[test]
    fn round_trip_many_sizes_and_counters() {
        for (w, h) in [
            (1280, 720),
            (1920, 1080),
            (3840, 2160),
            (64, 16),
            (640, 480),
            (1366, 768),
            (800, 600),
        ] {
            for c in [
                0,
                1,
                2,
                0x2AAA_AAAA,
                0x1555_5555,
                COUNTER_MASK,
                123_456,
                1 << 29,
            ] {
                let f = frame(w, h, c);
                assert_eq!(read_counter(&f[..w * h], w, w, h), Some(c), "{w}x{h} {c}");
            }
        }
        // Bits above 30 are dropped.
        let f = frame(1280, 720, u32::MAX);
        assert_eq!(read_counter(&f, 1280, 1280, 720), Some(COUNTER_MASK));
    }

    #[test]
    fn band_geometry() {
        assert_eq!(counter_band_height(720), 48);
        assert_eq!(counter_band_height(1080), 72);
        assert_eq!(counter_band_height(240), 16);
        assert_eq!(counter_band_height(16), 16);
        assert_eq!(block_columns(0, 1280), (0, 40));
        assert_eq!(block_columns(31, 1366), (1323, 1366));
    }

    #[test]
    fn exact_block_values() {
        let (w, h) = (1280, 720);
        let f = frame(w, h, 0b101);
        let at = |x: usize, y: usize| f[y * w + x];
        assert_eq!(at(0, 0), LUMA_ONE);
        assert_eq!(at(40, 47), LUMA_ZERO);
        // last three blocks: 1 0 1
        assert_eq!(at(29 * 40, 10), LUMA_ONE);
        assert_eq!(at(30 * 40, 10), LUMA_ZERO);
        assert_eq!(at(31 * 40 + 39, 10), LUMA_ONE);
        assert_eq!(at(2 * 40, 10), LUMA_ZERO);
        // band chroma is neutral
        assert_eq!(f[w * h], 128);
        assert_eq!(f[w * h + (w / 2) * (h / 2)], 128);
    }

    #[test]
    fn strided_plane_and_noise() {
        let (w, h, stride) = (1280, 720, 1344);
        let f = frame(w, h, 987_654);
        let mut plane = vec![0u8; stride * h];
        for y in 0..h {
            plane[y * stride..y * stride + w].copy_from_slice(&f[y * w..(y + 1) * w]);
        }
        // Compression-like noise of +-60 everywhere keeps the reading.
        for (i, p) in plane.iter_mut().enumerate() {
            let n = ((i * 7919) % 121) as i32 - 60;
            *p = (i32::from(*p) + n).clamp(0, 255) as u8;
        }
        assert_eq!(read_counter(&plane, stride, w, h), Some(987_654));
    }

    #[test]
    fn rejects_non_pattern_and_bad_geometry() {
        let grey = vec![128u8; 1280 * 720];
        assert_eq!(read_counter(&grey, 1280, 1280, 720), None);
        assert_eq!(read_counter(&grey[..100], 1280, 1280, 720), None);
        assert_eq!(read_counter(&grey, 100, 1280, 720), None);
        assert_eq!(read_counter(&grey, 32, 32, 720), None);
        let mut small = vec![0u8; 10];
        assert!(matches!(
            draw_i420(&mut small, 1280, 720, 1),
            Err(PatternError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            draw_i420(&mut small, 1281, 720, 1),
            Err(PatternError::BadSize { .. })
        ));
    }

    #[test]
    fn picture_is_bright_enough_and_moves() {
        let (w, h) = (1280, 720);
        let a = frame(w, h, 10);
        let b = frame(w, h, 11);
        let mean = mean_luma(&a[..w * h]);
        assert!(mean > 80.0, "mean luma {mean}");
        // Something below the band changed.
        let band = counter_band_height(h) * w;
        assert_ne!(a[band..w * h], b[band..w * h]);
    }

    #[test]
    fn draw_cost_720p() {
        let (w, h) = (1280, 720);
        let mut f = vec![0u8; i420_size(w, h)];
        let n = 200u32;
        #[expect(clippy::disallowed_methods, reason = "test-only timing print")]
        let t = std::time::Instant::now();
        for c in 0..n {
            draw_i420(&mut f, w, h, c).unwrap();
        }
        let per = t.elapsed() / n;
        println!("draw_i420 1280x720: {per:?} per frame (not asserted; build profile matters)");
    }
}
