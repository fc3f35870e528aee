//! int8 pointwise convs on aarch64 ([`Precision::Int8`](crate::session::Precision)): an
//! ungrouped 1x1 conv (stride 1, no padding) whose weights are quantized per output channel
//! and whose inputs are quantized per pixel ([`int8`] defines both), multiplied by `SDOT`
//! (FEAT_DotProd: Armv8.2, e.g. Cortex-A55, A75, A76 and later), which adds four products
//! of bytes into each 32-bit lane: 16 multiply-adds per instruction against 4 for `FMLA` on
//! f32.
//!
//! The same computation as the x86 kernel (`kernels/x86/int8.rs`), on the NEON table's
//! `ConvOcBlock(8)` weights ([`int8::pack_blocked`] with blocks of 8): per chunk of output
//! pixels, the chunk's input pixels are quantized into scratch (per pixel its range, its
//! step and zero point, its bytes four channels per word); then every block of 8 output
//! channels runs an 8-pixel x 8-channel register tile over them: per four quads of input
//! channels, one 16-byte load per pixel and two weight vectors per quad feed 64 `SDOT`s by
//! element, in 16 accumulators. `SDOT` multiplies signed bytes, so the input bytes are
//! stored less 128 (`q - 128`, the top bit flipped), and the store adds `(128 - z) · Σq_w`
//! back: the same exact integer as the x86 kernel's. Bias, residual and activation are
//! applied at the store in f32, as in the f32 kernels.
//!
//! `SDOT` is written as inline assembly: its intrinsic is not stable in Rust.

use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, Store, TileFn};
use crate::graph::{Conv, Layout};
use crate::kernels::int8::{self, QUAD};
use crate::kernels::rows::Inputs;
use crate::kernels::{Act4, ConvArgs, ConvKernel};
use std::arch::aarch64::*;
use std::arch::asm;

/// Bytes of quantized input per chunk: as the f32 kernel's 16 KiB blocks of input, the chunk
/// stays in L1 beside one block's weights while every block of 8 output channels runs over
/// it; in int8 the same bytes hold four times the pixels.
const CHUNK_BYTES: usize = 16 << 10;

/// Words per quantized input pixel in scratch: the channels in quads, rounded up to 16
/// channels (one vector of 4 words), and one vector more, into which the last part of a
/// concatenation may write past its channels.
fn row_stride(ic: usize) -> usize {
    ic.div_ceil(16) * 4 + 4
}

/// Pixels per chunk for `ic` input channels: a multiple of the tile.
fn chunk_pixels(ic: usize) -> usize {
    (CHUNK_BYTES / 4 / (row_stride(ic) + 2)).clamp(8, 1024) / 8 * 8
}

/// Scratch floats of [`conv1x1`]: one chunk of quantized rows, then each pixel's step and
/// zero point.
pub(crate) fn scratch(c: &Conv, _: Act4, _: Act4) -> usize {
    let ic = c.in_c as usize;
    chunk_pixels(ic) * (row_stride(ic) + 2)
}

/// The weights of the kernel: [`int8::pack_blocked`] in blocks of 8 output channels.
pub(crate) fn pack(w: &[f32], layout: Layout, in_c: usize, out_c: usize) -> Option<Vec<u32>> {
    int8::pack_blocked(w, layout, in_c, out_c, LANES)
}

/// The int8 kernel for `c`, whose weights are stored as `layout`, when this CPU has
/// FEAT_DotProd and the conv is one the kernel runs: ungrouped 1x1, stride 1, no padding,
/// weights `ConvOcBlock(8)`. It reads a concatenation in place when every part but the last
/// has a channel count that is a multiple of 4.
pub(crate) fn select(c: &Conv, layout: Layout) -> Option<ConvKernel> {
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let ok = pointwise
        && c.groups == 1
        && layout == Layout::ConvOcBlock(LANES as u16)
        && std::arch::is_aarch64_feature_detected!("dotprod");
    ok.then_some(ConvKernel {
        name: "conv1x1_int8_8x8_neon",
        layout,
        scratch_len: scratch,
        run: conv1x1,
        reads_parts: true,
    })
}

/// The int8 pointwise conv: `args.w` holds [`pack`]'s words (each f32 slot one word, as
/// bits).
pub(crate) fn conv1x1(a: &mut ConvArgs) {
    #[target_feature(enable = "dotprod")]
    unsafe fn inner(a: &mut ConvArgs) {
        run(a)
    }
    assert!(std::arch::is_aarch64_feature_detected!("dotprod"));
    // SAFETY: the CPU has FEAT_DotProd (checked above; `select` returns this kernel only
    // then).
    unsafe { inner(a) }
}

/// `acc` plus, per lane, the four products of `w`'s bytes of that lane and `x`'s word `L`:
/// `SDOT` by element.
///
/// # Safety
/// FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn dot<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut a = acc;
    asm!(
        "sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
        a = inout(vreg) a,
        w = in(vreg) w,
        x = in(vreg) x,
        l = const L,
        options(pure, nomem, nostack, preserves_flags)
    );
    a
}

/// The smallest and largest of the `k` channels at `x`, each with zero (NaN ignored, as
/// `int8::min_max`: `FMINNM`, `FMAXNM`), folded into `range`.
///
/// # Safety
/// `x` valid for `k` reads.
#[inline(always)]
unsafe fn fold_range(x: *const f32, k: usize, range: &mut (float32x4_t, float32x4_t)) {
    let mut c = 0;
    while c + 4 <= k {
        let v = vld1q_f32(x.add(c));
        range.0 = vminnmq_f32(range.0, v);
        range.1 = vmaxnmq_f32(range.1, v);
        c += 4;
    }
    while c < k {
        let v = vdupq_n_f32(*x.add(c));
        range.0 = vminnmq_f32(range.0, v);
        range.1 = vmaxnmq_f32(range.1, v);
        c += 1;
    }
}

/// Eight values quantized with the factor `inv` and zero point `zero` (`int8::quantize_input`:
/// `FCVTNS` rounds to nearest, ties to even; the narrowing saturates to [0, 255]), less 128.
#[inline(always)]
fn quantize8(lo: float32x4_t, hi: float32x4_t, inv: float32x4_t, zero: int32x4_t) -> uint8x8_t {
    // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
    unsafe {
        let q = |v| vaddq_s32(vcvtnq_s32_f32(vmulq_f32(v, inv)), zero);
        let wide = vcombine_u16(vqmovun_s32(q(lo)), vqmovun_s32(q(hi)));
        veor_u8(vqmovn_u16(wide), vdup_n_u8(0x80))
    }
}

/// The `k` channels at `x` quantized into the bytes at `row`, 8 at a time (the last 8 from a
/// copy padded with zeros: up to 7 bytes past `k` are written).
///
/// # Safety
/// `x` valid for `k` reads, `row` for `k` rounded up to 8 writes.
#[inline(always)]
unsafe fn quantize_channels(
    x: *const f32,
    k: usize,
    row: *mut u8,
    inv: float32x4_t,
    zero: int32x4_t,
) {
    let mut c = 0;
    while c + 8 <= k {
        let q = quantize8(vld1q_f32(x.add(c)), vld1q_f32(x.add(c + 4)), inv, zero);
        vst1_u8(row.add(c), q);
        c += 8;
    }
    if c < k {
        let mut t = [0f32; 8];
        std::ptr::copy_nonoverlapping(x.add(c), t.as_mut_ptr(), k - c);
        let q = quantize8(
            vld1q_f32(t.as_ptr()),
            vld1q_f32(t.as_ptr().add(4)),
            inv,
            zero,
        );
        vst1_u8(row.add(c), q);
    }
}

/// The driver of [`conv1x1`].
///
/// # Safety
/// FEAT_DotProd.
#[inline(always)]
unsafe fn run(a: &mut ConvArgs) {
    let c = a.conv;
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let ycs = a.ys.cs;
    let ow = a.ys.shape.w as usize;
    let words = row_stride(ic);
    let quads = ic.div_ceil(QUAD);
    let blocks = oc.div_ceil(LANES);
    let chunk = chunk_pixels(ic);
    // These bounds make every pointer formed below valid. The inputs are `x`, then the
    // further parts of a concatenation read in place, each at a channel offset that is a
    // multiple of 4, so that its quads of channels are words of the row.
    let inputs = Inputs::of(a, QUAD);
    let weights = blocks * quads * LANES;
    assert!(a.w.len() >= weights + 2 * blocks * LANES);
    assert!(a.scratch.len() >= chunk * (words + 2));
    let pixels = a.rows.start * ow..a.rows.end * ow;
    let w = a.w.as_ptr().cast::<u32>();
    let rows = a.scratch.as_mut_ptr().cast::<u32>();
    let quant = rows.add(chunk * words);
    let store = Store {
        residual: a.residual,
        act: c.act,
        cs: ycs,
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        for (i, p) in (start..end).enumerate() {
            let mut range = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            inputs.for_each_part(p, |x, k, _| fold_range(x, k, &mut range));
            let (lo, hi) = (vminnmvq_f32(range.0), vmaxnmvq_f32(range.1));
            let (inv, step, zero) = int8::input_quant(lo, hi);
            *quant.add(2 * i) = step.to_bits();
            *quant.add(2 * i + 1) = zero as u32;
            let (inv, zero) = (vdupq_n_f32(inv), vdupq_n_s32(zero));
            let row = rows.add(i * words).cast::<u8>();
            // Each part may write up to 7 bytes past its channels, which the next part
            // overwrites; the last part's stay inside the row's extra vector.
            inputs.for_each_part(p, |x, k, c0| {
                quantize_channels(x, k, row.add(c0), inv, zero)
            });
        }
        for b in 0..blocks {
            let o0 = b * LANES;
            let mut tile = Int8Tile {
                w: w.add(b * quads * LANES),
                quads,
                steps: w.add(weights + o0).cast(),
                sums: w.add(weights + blocks * LANES + o0).cast(),
                rows,
                quant,
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
struct Int8Tile<'a> {
    /// The block's packed weights, `quads` steps of 8 words; its channels' steps and weight
    /// sums.
    w: *const u32,
    quads: usize,
    steps: *const f32,
    sums: *const i32,
    /// The chunk's quantized rows (`words` apart) from pixel `pix0` on, and their steps and
    /// zero points.
    rows: *const u32,
    quant: *const u32,
    words: usize,
    pix0: usize,
    ycs: usize,
    bias: V8,
    o0: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl TileFn for Int8Tile<'_> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, p: usize) {
        let at = |m: usize| p - self.pix0 + m;
        let xr: [*const u32; M] =
            std::array::from_fn(|m| self.rows.wrapping_add(at(m) * self.words));
        // SAFETY: the driver's checks hold (`run` asserted the weights' length, and the tile's
        // pixels are rows of the chunk in scratch); FEAT_DotProd (the only caller is `run`,
        // reached through the target-feature `conv1x1`).
        let acc = unsafe {
            let zero = vdupq_n_s32(0);
            mac::<M>([(zero, zero); M], &xr, self.w, self.quads)
        };
        let mut out = [self.bias; M];
        // SAFETY: the block's steps and sums are 8 values each (`run` asserted the length);
        // the tile's pixels have their step and zero point in the chunk's area.
        unsafe {
            let steps = (vld1q_f32(self.steps), vld1q_f32(self.steps.add(4)));
            let sums = (vld1q_s32(self.sums), vld1q_s32(self.sums.add(4)));
            for (m, o) in out.iter_mut().enumerate() {
                let step = f32::from_bits(*self.quant.add(2 * at(m)));
                let back = 128 - *self.quant.add(2 * at(m) + 1) as i32;
                // The exact integer sum of the products of the weights and `q - z`.
                let exact0 = vmlaq_n_s32(acc[m].0, sums.0, back);
                let exact1 = vmlaq_n_s32(acc[m].1, sums.1, back);
                let scale0 = vmulq_n_f32(steps.0, step);
                let scale1 = vmulq_n_f32(steps.1, step);
                o.0 = vfmaq_f32(o.0, vcvtq_f32_s32(exact0), scale0);
                o.1 = vfmaq_f32(o.1, vcvtq_f32_s32(exact1), scale1);
            }
        }
        let yoff = std::array::from_fn(|m| (p + m) * self.ycs + self.o0);
        self.store.tile(self.y, out, yoff, self.o0);
    }
}

/// `acc` plus the products of `quads` quads of the rows `xr` and the block's weights `w`:
/// four quads per step (one 16-byte load per pixel, `SDOT` by element), then the last
/// `quads % 4` from the same loads (the rows are readable up to a whole vector; the weights
/// past the channels are zero).
///
/// # Safety
/// Rows valid for `ceil(quads / 4) * 4` words, `w` for `quads * 8`; FEAT_DotProd.
#[inline(always)]
unsafe fn mac<const M: usize>(
    mut acc: [(int32x4_t, int32x4_t); M],
    xr: &[*const u32; M],
    w: *const u32,
    quads: usize,
) -> [(int32x4_t, int32x4_t); M] {
    let mut k = 0;
    while k < quads {
        let xv: [int8x16_t; M] = std::array::from_fn(|m| vld1q_s8(xr[m].add(k).cast()));
        let wk = w.add(k * LANES);
        let n = (quads - k).min(4);
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

/// Quad `L` of the loaded bytes `xv` of every pixel times the weight row at `wr` (8 words).
///
/// # Safety
/// `wr` valid for 8 reads; FEAT_DotProd.
#[inline(always)]
unsafe fn step<const M: usize, const L: i32>(
    acc: &mut [(int32x4_t, int32x4_t); M],
    xv: &[int8x16_t; M],
    wr: *const u32,
) {
    let (w0, w1) = (vld1q_s8(wr.cast()), vld1q_s8(wr.add(4).cast()));
    for (a, &x) in acc.iter_mut().zip(xv) {
        a.0 = dot::<L>(a.0, w0, x);
        a.1 = dot::<L>(a.1, w1, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{suite, Pointwise};

    #[test]
    fn int8_pointwise_matches_the_quantized_reference() {
        if !std::arch::is_aarch64_feature_detected!("dotprod") {
            eprintln!("no FEAT_DotProd on this CPU: the int8 kernel is not run");
            return;
        }
        suite(&Pointwise {
            run: conv1x1,
            scratch,
            nb: LANES,
            pack,
            dot: int8::dot,
            part_multiple: QUAD,
        });
        assert!(chunk_pixels(1536) < 99);
    }

    /// The NEON quantization is the portable one, bit for bit (less 128), on values around
    /// every rounding case.
    #[test]
    fn neon_quantization_is_the_portable_quantization() {
        for (lo, hi) in [(0.0f32, 6.0f32), (-1.0, 3.0), (-2.5, 0.7), (-1e-20, 3e-21)] {
            let (inv, _, zero) = int8::input_quant(lo, hi);
            let xs: Vec<f32> = (0..=4000)
                .map(|i| lo + (hi - lo) * i as f32 / 4000.0)
                .chain((0..=255).map(|q| (q - zero) as f32 / inv + 0.5 / inv))
                .filter(|x| (lo..=hi).contains(x))
                .collect();
            for chunk in xs.chunks(8) {
                let mut row = [0u8; 8];
                // SAFETY: `chunk` holds `chunk.len()` floats, `row` 8 bytes.
                unsafe {
                    let (vinv, vzero) = (vdupq_n_f32(inv), vdupq_n_s32(zero));
                    quantize_channels(chunk.as_ptr(), chunk.len(), row.as_mut_ptr(), vinv, vzero);
                }
                for (i, &x) in chunk.iter().enumerate() {
                    let want = int8::quantize_input(x, inv, zero) ^ 0x80;
                    assert_eq!(row[i], want, "{x:e} in [{lo}, {hi}]");
                }
            }
        }
    }
}
