//! bf16 pointwise convs on aarch64 ([`Precision::Bf16`](crate::session::Precision)): an
//! ungrouped 1x1 conv (stride 1, no padding) whose inputs and weights are rounded to bf16 and
//! multiplied by `BFDOT` (FEAT_BF16: Armv8.6, e.g. Cortex-A510, A710, X2 and later, Apple
//! M2), which adds two products of bf16 pairs into each f32 lane: 8 multiply-adds per
//! instruction against 4 for `FMLA` on f32.
//!
//! The same computation as the x86 kernel (`kernels/x86/bf16.rs`), on the NEON table's
//! `ConvOcBlock(8)` weights: per chunk of output pixels, the chunk's input pixels are rounded
//! to bf16 into scratch in pairs of channels (one 32-bit word per pair; the integer rounding
//! of [`bf16::round`](crate::kernels::bf16::round), so the operands are those of the portable definition to the bit); then
//! every block of 8 output channels runs an 8-pixel x 8-channel register tile over them: per
//! four pairs of input channels, one 4-word load per pixel and two weight vectors per pair
//! feed 64 `BFDOT`s by element, in 16 accumulators. Weights are
//! [`bf16::pack_pointwise`](crate::kernels::bf16::pack_pointwise)'s (`[OC/8][IC/2][8]` words); bias, residual and activation are
//! applied at the store in f32, as in the f32 kernels.
//!
//! `BFDOT` is written as inline assembly: its intrinsic is not stable in Rust.

use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, Store, TileFn};
use crate::graph::{Conv, Layout};
use crate::kernels::rows::Inputs;
use crate::kernels::{Act4, ConvArgs, ConvKernel};
use std::arch::aarch64::*;
use std::arch::asm;

/// Bytes of rounded input per chunk: as the f32 kernel's 16 KiB blocks of input, the chunk
/// stays in L1 (32 or 64 KiB on the cores with FEAT_BF16) beside one block's weights (15 KiB
/// at 960 input channels) while every block of 8 output channels runs over it; in bf16 the
/// same bytes hold twice the pixels.
const CHUNK_BYTES: usize = 16 << 10;

/// Words per rounded input pixel in scratch: the channels in pairs, rounded up to 8 channels
/// (one vector of 4 words), and one vector more, into which the last part of a concatenation
/// may write its zeros.
fn row_stride(ic: usize) -> usize {
    ic.div_ceil(8) * 4 + 4
}

/// Pixels per chunk for `ic` input channels: a multiple of the tile.
fn chunk_pixels(ic: usize) -> usize {
    (CHUNK_BYTES / 4 / row_stride(ic)).clamp(8, 1024) / 8 * 8
}

/// Scratch floats of [`conv1x1`]: one chunk of rounded input.
pub(crate) fn scratch(c: &Conv, _: Act4, _: Act4) -> usize {
    let ic = c.in_c as usize;
    chunk_pixels(ic) * row_stride(ic)
}

/// The bf16 kernel for `c`, whose weights are stored as `layout`, when this CPU has FEAT_BF16
/// and the conv is one the kernel runs: ungrouped 1x1, stride 1, no padding, weights
/// `ConvOcBlock(8)`. It reads a concatenation in place when every part but the last has an
/// even channel count.
pub(crate) fn select(c: &Conv, layout: Layout) -> Option<ConvKernel> {
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let ok = pointwise
        && c.groups == 1
        && layout == Layout::ConvOcBlock(LANES as u16)
        && std::arch::is_aarch64_feature_detected!("bf16");
    ok.then_some(ConvKernel {
        name: "conv1x1_bf16_8x8_neon",
        layout,
        scratch_len: scratch,
        run: conv1x1,
        reads_parts: true,
    })
}

/// The bf16 pointwise conv: `args.w` holds [`bf16::pack_pointwise`](crate::kernels::bf16::pack_pointwise)'s words (each f32 slot
/// one word, as bits).
pub(crate) fn conv1x1(a: &mut ConvArgs) {
    #[target_feature(enable = "bf16")]
    unsafe fn inner(a: &mut ConvArgs) {
        run(a)
    }
    assert!(std::arch::is_aarch64_feature_detected!("bf16"));
    // SAFETY: the CPU has FEAT_BF16 (checked above; `select` returns this kernel only then).
    unsafe { inner(a) }
}

/// `acc + sum over the pair (w lane's, x's word L)` per lane: `BFDOT` by element.
///
/// # Safety
/// FEAT_BF16.
#[target_feature(enable = "bf16")]
#[inline]
unsafe fn dot<const L: i32>(acc: float32x4_t, w: uint32x4_t, x: uint32x4_t) -> float32x4_t {
    let mut a = acc;
    asm!(
        "bfdot {a:v}.4s, {w:v}.8h, {x:v}.2h[{l}]",
        a = inout(vreg) a,
        w = in(vreg) w,
        x = in(vreg) x,
        l = const L,
        options(pure, nomem, nostack, preserves_flags)
    );
    a
}

/// Four lanes rounded as [`bf16::round`](crate::kernels::bf16::round) does (NaN aside), as the bf16 bits in the low 16
/// bits of each lane's high half; `>> 16` gives them.
#[inline(always)]
fn round4(v: float32x4_t) -> uint16x4_t {
    // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
    unsafe {
        let b = vreinterpretq_u32_f32(v);
        let odd = vandq_u32(vshrq_n_u32::<16>(b), vdupq_n_u32(1));
        let r = vaddq_u32(vaddq_u32(b, vdupq_n_u32(0x7fff)), odd);
        // Subnormal inputs (and zeros) keep their sign only.
        let tiny = vcaltq_f32(v, vdupq_n_f32(f32::MIN_POSITIVE));
        let sign = vandq_u32(b, vdupq_n_u32(0x8000_0000));
        vshrn_n_u32::<16>(vbslq_u32(tiny, sign, r))
    }
}

/// Rounds the `ic` channels at `x` to bf16 into `row`: `ceil(ic / 8) * 4` words, zeros past
/// `ic`.
///
/// # Safety
/// `x` valid for `ic` reads, `row` for `ceil(ic / 8) * 4` writes.
#[inline(always)]
unsafe fn round_row(x: *const f32, ic: usize, row: *mut u32) {
    let mut c = 0;
    while c + 8 <= ic {
        let lo = round4(vld1q_f32(x.add(c)));
        let hi = round4(vld1q_f32(x.add(c + 4)));
        vst1q_u16(row.add(c / 2).cast(), vcombine_u16(lo, hi));
        c += 8;
    }
    if c < ic {
        let mut t = [0f32; 8];
        std::ptr::copy_nonoverlapping(x.add(c), t.as_mut_ptr(), ic - c);
        let lo = round4(vld1q_f32(t.as_ptr()));
        let hi = round4(vld1q_f32(t.as_ptr().add(4)));
        vst1q_u16(row.add(c / 2).cast(), vcombine_u16(lo, hi));
    }
}

/// The driver of [`conv1x1`].
///
/// # Safety
/// FEAT_BF16.
#[inline(always)]
unsafe fn run(a: &mut ConvArgs) {
    let c = a.conv;
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let ycs = a.ys.cs;
    let ow = a.ys.shape.w as usize;
    let words = row_stride(ic);
    let pairs = ic.div_ceil(2);
    let blocks = oc.div_ceil(LANES);
    let chunk = chunk_pixels(ic);
    // These bounds make every pointer formed below valid. The inputs are `x`, then the
    // further parts of a concatenation read in place, each at an even channel offset (every
    // part but the last has an even channel count), so that its pairs of channels are pairs
    // of the row.
    let inputs = Inputs::of(a, 2);
    assert!(a.w.len() >= blocks * pairs * LANES);
    assert!(a.scratch.len() >= chunk * words);
    let pixels = a.rows.start * ow..a.rows.end * ow;
    let w = a.w.as_ptr().cast::<u32>();
    let rows = a.scratch.as_mut_ptr().cast::<u32>();
    let store = Store {
        residual: a.residual,
        act: c.act,
        cs: ycs,
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        // Each part writes whole vectors past its channels (zeros), which the next part
        // overwrites; the last part's stay inside the row's extra vector.
        inputs.convert(start..end, (rows, words, 2), |x, k, at| round_row(x, k, at));
        for b in 0..blocks {
            let o0 = b * LANES;
            let mut tile = Bf16Tile {
                w: w.add(b * pairs * LANES),
                pairs,
                rows,
                words,
                pix0: start,
                ycs,
                bias: bias8(a.bias, o0, oc),
                o0,
                y: a.y,
                store: &store,
            };
            for_each_tile(start, end, &mut tile);
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * ycs, pixels.len(), oc, ycs);
}

/// One block of 8 output channels over a chunk's pixels.
struct Bf16Tile<'a> {
    /// The block's packed weights, `pairs` steps of 8 words.
    w: *const u32,
    pairs: usize,
    /// The chunk's rounded input rows (`words` apart) from pixel `pix0` on.
    rows: *const u32,
    words: usize,
    pix0: usize,
    ycs: usize,
    bias: V8,
    o0: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl TileFn for Bf16Tile<'_> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, p: usize) {
        let xr: [*const u32; M] =
            std::array::from_fn(|m| self.rows.wrapping_add((p - self.pix0 + m) * self.words));
        // SAFETY: the driver's checks hold (`run` asserted the weights' length, and the tile's
        // pixels are rows of the chunk in scratch); FEAT_BF16 (the only caller is `run`,
        // reached through the target-feature `conv1x1`).
        let acc = unsafe { mac::<M>([self.bias; M], &xr, self.w, self.pairs) };
        let yoff = std::array::from_fn(|m| (p + m) * self.ycs + self.o0);
        self.store.tile(self.y, acc, yoff, self.o0);
    }
}

/// `acc` plus the products of `pairs` pairs of the rows `xr` and the block's weights `w`:
/// four pairs per step (one 4-word load per pixel, `BFDOT` by element), then the last
/// `pairs % 4` from the same loads (the rows hold zeros up to a whole vector).
///
/// # Safety
/// Rows valid for `ceil(pairs / 4) * 4` words, `w` for `pairs * 8`; FEAT_BF16.
#[inline(always)]
unsafe fn mac<const M: usize>(
    mut acc: [V8; M],
    xr: &[*const u32; M],
    w: *const u32,
    pairs: usize,
) -> [V8; M] {
    let mut k = 0;
    while k < pairs {
        let xv: [uint32x4_t; M] = std::array::from_fn(|m| vld1q_u32(xr[m].add(k)));
        let wk = w.add(k * LANES);
        let n = (pairs - k).min(4);
        step::<M, 0>(&mut acc, &xv, wk);
        if n > 1 {
            step::<M, 1>(&mut acc, &xv, wk.add(LANES));
        }
        if n > 2 {
            step::<M, 2>(&mut acc, &xv, wk.add(2 * LANES));
        }
        if n > 3 {
            step::<M, 3>(&mut acc, &xv, wk.add(3 * LANES));
        }
        k += 4;
    }
    acc
}

/// Pair `L` of the loaded words `xv` of every pixel times the weight row at `wr` (8 words).
///
/// # Safety
/// `wr` valid for 8 reads; FEAT_BF16.
#[inline(always)]
unsafe fn step<const M: usize, const L: i32>(
    acc: &mut [V8; M],
    xv: &[uint32x4_t; M],
    wr: *const u32,
) {
    let (w0, w1) = (vld1q_u32(wr), vld1q_u32(wr.add(4)));
    for (a, &x) in acc.iter_mut().zip(xv) {
        a.0 = dot::<L>(a.0, w0, x);
        a.1 = dot::<L>(a.1, w1, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16;
    use crate::kernels::testing::{suite, Pointwise};

    #[test]
    fn bf16_pointwise_matches_the_rounded_reference() {
        if !std::arch::is_aarch64_feature_detected!("bf16") {
            eprintln!("no FEAT_BF16 on this CPU: the bf16 kernel is not run");
            return;
        }
        suite(&Pointwise {
            run: conv1x1,
            scratch,
            nb: LANES,
            pack: crate::kernels::bf16::pack_pointwise,
            dot: crate::kernels::bf16::dot,
            part_multiple: 2,
        });
        assert!(chunk_pixels(1536) < 99);
    }

    /// The NEON rounding is the portable one, bit for bit, on values around every rounding
    /// case (ties, carries into the exponent, subnormals, infinities).
    #[test]
    fn neon_rounding_is_the_portable_rounding() {
        let mut xs: Vec<f32> = vec![0.0, -0.0, 1e-40, -1e-40, f32::MAX, f32::MIN, f32::INFINITY];
        xs.extend([f32::NEG_INFINITY, f32::MIN_POSITIVE, -f32::MIN_POSITIVE]);
        for i in 0..20_000u32 {
            let b = i.wrapping_mul(2_654_435_761) ^ (i << 3);
            xs.push(f32::from_bits(b & !0x7f80_0000 | 0x3f80_0000));
            xs.push(f32::from_bits(b));
            xs.push(1.0 + (i as f32) * 2f32.powi(-16));
        }
        for chunk in xs.chunks(8) {
            let x: Vec<f32> = chunk
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { *v })
                .collect();
            let mut row = [0u32; 4];
            // SAFETY: `x` holds `x.len()` floats, `row` 4 words.
            unsafe { round_row(x.as_ptr(), x.len(), row.as_mut_ptr()) };
            for (i, &v) in x.iter().enumerate() {
                let got = (row[i / 2] >> (16 * (i % 2))) as u16;
                assert_eq!(got, bf16::round(v), "{v:e}");
            }
        }
    }
}
