//! f16 pointwise convs on aarch64 ([`Precision::F16`](crate::session::Precision)): an
//! ungrouped 1x1 conv (stride 1, no padding) whose inputs and weights are rounded to f16 and
//! multiplied and added in f16 by `FMLA` on 8 half-precision lanes (FEAT_FP16: Armv8.2, e.g.
//! Cortex-A55, A75, A76 and later), twice the lanes of `FMLA` on f32; every [`RUN`] input
//! channels the f16 sums are widened and added to f32 accumulators ([`f16::dot`] defines the
//! result).
//!
//! Per chunk of output pixels, each input pixel's channels are rounded to f16 into scratch
//! (`FCVTN`, to nearest even with subnormals, as `half::f16` rounds) while their largest
//! magnitude is found, and rounded again, times the power of two [`f16::input_scale`] gives
//! for it, where that is not 1; the scale's inverse is kept beside them. Then every block of
//! 16 output channels runs a 4-pixel x 16-channel register tile over them: per 8 input
//! channels, one 8-lane load per pixel and two weight vectors per channel feed 8 `FMLA`s by
//! element, into 8 f16 accumulators; the 16 f32 accumulators take their sums after each run,
//! and at the end are multiplied by the pixel's and the output channels' inverse scales and
//! added to the bias. Weights are [`f16::pack_pointwise`]'s (`[OC/16][IC][16]` scaled halves,
//! then the inverse scales); residual and activation are applied at the store in f32, as in
//! the f32 kernels. A concatenation is read in place, any channel counts.
//!
//! `FMLA` on half-precision lanes, `FCVTN` and `FCVTL` are inline assembly: Rust's f16
//! vector types and their intrinsics are not stable.

use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, Store};
use crate::graph::{Conv, Layout};
use crate::kernels::f16::{self, BLOCK, RUN};
use crate::kernels::rows::Inputs;
use crate::kernels::{Act4, ConvArgs, ConvKernel};
use std::arch::aarch64::*;
use std::arch::asm;

/// Pixels per register tile: 4 x 2 f16 accumulators, 4 x 4 f32 accumulators, 4 input and 2
/// weight registers (30 of the 32).
const MR: usize = 4;

/// Bytes of rounded input per chunk (see the bf16 kernel): with a block's weights, in L1.
const CHUNK_BYTES: usize = 16 << 10;

/// Halves per rounded input pixel in scratch: the channels rounded up to 8 (one vector), and
/// one vector more, into which the last part of a concatenation may write its zeros.
fn row_stride(ic: usize) -> usize {
    ic.div_ceil(8) * 8 + 8
}

/// Pixels per chunk for `ic` input channels: a multiple of the tile.
fn chunk_pixels(ic: usize) -> usize {
    (CHUNK_BYTES / 2 / row_stride(ic)).clamp(MR, 1024) / MR * MR
}

/// Floats of scratch that one chunk of rounded input takes (two halves a float).
fn rows_floats(ic: usize) -> usize {
    (chunk_pixels(ic) * row_stride(ic)).div_ceil(2)
}

/// Scratch floats of [`conv1x1`]: one chunk of rounded input, then its pixels' inverse
/// scales.
pub(crate) fn scratch(c: &Conv, _: Act4, _: Act4) -> usize {
    let ic = c.in_c as usize;
    rows_floats(ic) + chunk_pixels(ic)
}

/// Whether this CPU runs the f16 kernel (FEAT_FP16, with its NEON instructions).
pub(crate) fn has_f16() -> bool {
    std::arch::is_aarch64_feature_detected!("fp16")
}

/// The f16 kernel for `c`, whose weights are stored as `layout`, when this CPU has FEAT_FP16
/// and the conv is one the kernel runs: ungrouped 1x1, stride 1, no padding, weights
/// `ConvOcBlock(8)`.
pub(crate) fn select(c: &Conv, layout: Layout) -> Option<ConvKernel> {
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let ok = pointwise && c.groups == 1 && layout == Layout::ConvOcBlock(LANES as u16) && has_f16();
    ok.then_some(ConvKernel {
        name: "conv1x1_f16_4x16_neon",
        layout,
        scratch_len: scratch,
        run: conv1x1,
        reads_parts: true,
    })
}

/// The f16 pointwise conv: `args.w` holds the packed halves, two per f32 slot.
pub(crate) fn conv1x1(a: &mut ConvArgs) {
    #[target_feature(enable = "fp16")]
    unsafe fn inner(a: &mut ConvArgs) {
        run(a)
    }
    assert!(has_f16());
    // SAFETY: the CPU has FEAT_FP16 (checked above; `select` returns this kernel only then).
    unsafe { inner(a) }
}

/// `acc + w * x[L]` on 8 half-precision lanes: `FMLA` by element.
///
/// # Safety
/// FEAT_FP16.
#[target_feature(enable = "fp16")]
#[inline]
unsafe fn fmla<const L: i32>(acc: uint16x8_t, w: uint16x8_t, x: uint16x8_t) -> uint16x8_t {
    let mut a = acc;
    // The element operand of a half-precision `FMLA` must be one of v0-v15.
    asm!(
        "fmla {a:v}.8h, {w:v}.8h, {x:v}.h[{l}]",
        a = inout(vreg) a,
        w = in(vreg) w,
        x = in(vreg_low16) x,
        l = const L,
        options(pure, nomem, nostack, preserves_flags)
    );
    a
}

/// The 8 halves of `h` widened to f32: lanes 0-3 and 4-7 (`FCVTL`, `FCVTL2`; exact).
#[inline(always)]
pub(super) fn widen(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: register-only conversions of the Armv8.0 baseline.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    (lo, hi)
}

/// Eight f32 lanes rounded to f16 (`FCVTN`, `FCVTN2`: the FPCR's rounding, to nearest even by
/// default, subnormals kept).
#[inline(always)]
fn narrow(lo: float32x4_t, hi: float32x4_t) -> uint16x8_t {
    let h: uint16x8_t;
    // SAFETY: register-only conversions of the Armv8.0 baseline.
    unsafe {
        asm!(
            "fcvtn {h:v}.4h, {lo:v}.4s",
            "fcvtn2 {h:v}.8h, {hi:v}.4s",
            h = out(vreg) h,
            lo = in(vreg) lo,
            hi = in(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    h
}

/// Rounds the `ic` channels at `x` to f16 into `row`: `ceil(ic / 8) * 8` halves, zeros past
/// `ic`. With `SCALED`, the channels times `s`, and `m` returned as it is; else the channels
/// as they are, and `m` (4 lanes) and their magnitudes, lane by lane the largest (`FMAXNM`:
/// NaN ignored, as [`f16::max_abs`] does).
///
/// # Safety
/// `x` valid for `ic` reads, `row` for `ceil(ic / 8) * 8` writes.
#[inline(always)]
unsafe fn round_row<const SCALED: bool>(
    x: *const f32,
    ic: usize,
    row: *mut u16,
    s: f32,
    m: float32x4_t,
) -> float32x4_t {
    let (mut m0, mut m1) = (m, m);
    let mut eight = |lo: float32x4_t, hi: float32x4_t, at: *mut u16| {
        if SCALED {
            vst1q_u16(at, narrow(vmulq_n_f32(lo, s), vmulq_n_f32(hi, s)));
        } else {
            m0 = vmaxnmq_f32(m0, vabsq_f32(lo));
            m1 = vmaxnmq_f32(m1, vabsq_f32(hi));
            vst1q_u16(at, narrow(lo, hi));
        }
    };
    let mut c = 0;
    while c + 8 <= ic {
        eight(vld1q_f32(x.add(c)), vld1q_f32(x.add(c + 4)), row.add(c));
        c += 8;
    }
    if c < ic {
        let mut t = [0f32; 8];
        std::ptr::copy_nonoverlapping(x.add(c), t.as_mut_ptr(), ic - c);
        eight(
            vld1q_f32(t.as_ptr()),
            vld1q_f32(t.as_ptr().add(4)),
            row.add(c),
        );
    }
    vmaxnmq_f32(m0, m1)
}

/// The driver of [`conv1x1`].
///
/// # Safety
/// FEAT_FP16.
#[inline(always)]
unsafe fn run(a: &mut ConvArgs) {
    let c = a.conv;
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let ycs = a.ys.cs;
    let ow = a.ys.shape.w as usize;
    let halves = row_stride(ic);
    let blocks = oc.div_ceil(BLOCK);
    let chunk = chunk_pixels(ic);
    // These bounds make every pointer formed below valid. The inputs are `x`, then the
    // further parts of a concatenation read in place.
    let inputs = Inputs::of(a, 1);
    let weight_words = blocks * ic * BLOCK / 2;
    assert!(a.w.len() >= weight_words + blocks * BLOCK);
    assert!(a.scratch.len() >= rows_floats(ic) + chunk && rows_floats(ic) * 2 >= chunk * halves);
    let pixels = a.rows.start * ow..a.rows.end * ow;
    let w = a.w.as_ptr().cast::<u16>();
    let w_inv = a.w.as_ptr().add(weight_words);
    let (rows, x_inv) = a.scratch.split_at_mut(rows_floats(ic));
    let (rows, x_inv) = (rows.as_mut_ptr().cast::<u16>(), x_inv.as_mut_ptr());
    let store = Store {
        residual: a.residual,
        act: c.act,
        cs: ycs,
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        // Each pixel's channels rounded as they are, and their largest magnitude; rounded
        // again, scaled, where that is out of the range `f16::input_scale` leaves alone.
        // Each part writes whole vectors past its channels (zeros), which the next part
        // overwrites; the last part's stay inside the row's extra vector.
        for p in start..end {
            let row = rows.add((p - start) * halves);
            let mut m = vdupq_n_f32(0.0);
            for (x, k, c0) in inputs.pixel(p) {
                m = round_row::<false>(x, k, row.add(c0), 1.0, m);
            }
            let (s, inv) = f16::input_scale(vmaxnmvq_f32(m));
            *x_inv.add(p - start) = inv;
            if s != 1.0 {
                for (x, k, c0) in inputs.pixel(p) {
                    round_row::<true>(x, k, row.add(c0), s, m);
                }
            }
        }
        for b in 0..blocks {
            let o0 = b * BLOCK;
            let t = F16Tile {
                w: w.add(b * ic * BLOCK),
                ic,
                rows,
                halves,
                x_inv,
                w_inv: [0, 4, 8, 12].map(|j| vld1q_f32(w_inv.add(o0 + j))),
                pix0: start,
                ycs,
                bias: [o0, o0 + LANES].map(|o| match o < oc {
                    true => bias8(a.bias, o, oc),
                    false => V8::zero(),
                }),
                o0,
                store: &store,
            };
            let mut p = start;
            while p + MR <= end {
                t.run::<MR>(a.y, p);
                p += MR;
            }
            match end - p {
                0 => {}
                1 => t.run::<1>(a.y, p),
                2 => t.run::<2>(a.y, p),
                _ => t.run::<3>(a.y, p),
            }
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * ycs, pixels.len(), oc, ycs);
}

/// One block of 16 output channels over a chunk's pixels.
struct F16Tile<'a> {
    /// The block's packed weights, `ic` rows of 16 halves.
    w: *const u16,
    ic: usize,
    /// The chunk's rounded input rows (`halves` apart) from pixel `pix0` on.
    rows: *const u16,
    halves: usize,
    /// The inverse scales of the chunk's pixels, from pixel `pix0` on.
    x_inv: *const f32,
    /// The block's inverse weight scales.
    w_inv: [float32x4_t; 4],
    pix0: usize,
    ycs: usize,
    bias: [V8; 2],
    o0: usize,
    store: &'a Store<'a>,
}

impl F16Tile<'_> {
    /// The `M` pixels from `p`.
    ///
    /// # Safety
    /// As [`run`], whose checks have run; `p .. p + M` inside the chunk; FEAT_FP16.
    #[inline(always)]
    unsafe fn run<const M: usize>(&self, y: &mut [f32], p: usize) {
        let xr: [*const u16; M] =
            std::array::from_fn(|m| self.rows.add((p - self.pix0 + m) * self.halves));
        let bias = [
            self.bias[0].0,
            self.bias[0].1,
            self.bias[1].0,
            self.bias[1].1,
        ];
        let acc = mac::<M>([[vdupq_n_f32(0.0); 4]; M], &xr, self.w, self.ic);
        // The scales back (powers of two: exact), then the bias.
        let out: [[float32x4_t; 4]; M] = std::array::from_fn(|m| {
            let inv = *self.x_inv.add(p - self.pix0 + m);
            std::array::from_fn(|j| vfmaq_f32(bias[j], acc[m][j], vmulq_n_f32(self.w_inv[j], inv)))
        });
        let lo: [V8; M] = std::array::from_fn(|m| V8(out[m][0], out[m][1]));
        let hi: [V8; M] = std::array::from_fn(|m| V8(out[m][2], out[m][3]));
        let yoff: [usize; M] = std::array::from_fn(|m| (p + m) * self.ycs + self.o0);
        self.store.tile(y, lo, yoff, self.o0);
        let yoff: [usize; M] = std::array::from_fn(|m| yoff[m] + LANES);
        self.store.tile(y, hi, yoff, self.o0 + LANES);
    }
}

/// `acc` (f32, 16 channels a pixel) plus the products of the `ic` channels of the rows `xr`
/// and the block's weights `w`, summed in f16 over each run of `RUN` channels and then
/// added in f32; the accumulators are taken and returned by value to stay in registers.
///
/// # Safety
/// Rows valid for `ceil(ic / 8) * 8` halves, `w` for `ic * 16`; FEAT_FP16.
#[inline(always)]
unsafe fn mac<const M: usize>(
    mut acc: [[float32x4_t; 4]; M],
    xr: &[*const u16; M],
    w: *const u16,
    ic: usize,
) -> [[float32x4_t; 4]; M] {
    const { assert!(RUN.is_multiple_of(8)) };
    let mut r0 = 0;
    while r0 < ic {
        let r1 = (r0 + RUN).min(ic);
        let mut h = [[vdupq_n_u16(0); 2]; M];
        let mut k = r0;
        while k < r1 {
            let xv: [uint16x8_t; M] = std::array::from_fn(|m| vld1q_u16(xr[m].add(k)));
            let wk = w.add(k * BLOCK);
            let n = r1 - k;
            step::<M, 0>(&mut h, &xv, wk);
            if n > 1 {
                step::<M, 1>(&mut h, &xv, wk.add(BLOCK));
            }
            if n > 2 {
                step::<M, 2>(&mut h, &xv, wk.add(2 * BLOCK));
            }
            if n > 3 {
                step::<M, 3>(&mut h, &xv, wk.add(3 * BLOCK));
            }
            if n > 4 {
                step::<M, 4>(&mut h, &xv, wk.add(4 * BLOCK));
            }
            if n > 5 {
                step::<M, 5>(&mut h, &xv, wk.add(5 * BLOCK));
            }
            if n > 6 {
                step::<M, 6>(&mut h, &xv, wk.add(6 * BLOCK));
            }
            if n > 7 {
                step::<M, 7>(&mut h, &xv, wk.add(7 * BLOCK));
            }
            k += 8;
        }
        for (a, hm) in acc.iter_mut().zip(&h) {
            for (j, &v) in hm.iter().enumerate() {
                let (lo, hi) = widen(v);
                a[2 * j] = vaddq_f32(a[2 * j], lo);
                a[2 * j + 1] = vaddq_f32(a[2 * j + 1], hi);
            }
        }
        r0 = r1;
    }
    acc
}

/// Channel `L` of the loaded halves `xv` of every pixel times the weight row at `wr` (16
/// halves).
///
/// # Safety
/// `wr` valid for 16 reads; FEAT_FP16.
#[inline(always)]
unsafe fn step<const M: usize, const L: i32>(
    h: &mut [[uint16x8_t; 2]; M],
    xv: &[uint16x8_t; M],
    wr: *const u16,
) {
    let (w0, w1) = (vld1q_u16(wr), vld1q_u16(wr.add(8)));
    for (a, &x) in h.iter_mut().zip(xv) {
        a[0] = fmla::<L>(a[0], w0, x);
        a[1] = fmla::<L>(a[1], w1, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::f16;
    use crate::kernels::testing::{suite, Pointwise};

    #[test]
    fn f16_pointwise_matches_its_definition() {
        if !has_f16() {
            eprintln!("no FEAT_FP16 on this CPU: the f16 kernel is not run");
            return;
        }
        suite(&Pointwise {
            run: conv1x1,
            scratch,
            nb: LANES,
            pack: f16::pack_pointwise,
            dot: f16::dot,
            part_multiple: 1,
        });
        assert!(chunk_pixels(1536) < 99);
    }

    /// `FCVTN` rounds as `half::f16` does (to nearest even, subnormals kept), bit for bit.
    #[test]
    fn neon_rounding_is_the_portable_rounding() {
        let mut xs: Vec<f32> = vec![0.0, -0.0, 1e-40, 6e-8, -3e-6, 65504.0, 65519.0, 65520.0];
        xs.extend([
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ]);
        for i in 0..20_000u32 {
            let b = i.wrapping_mul(2_654_435_761) ^ (i << 3);
            xs.push(f32::from_bits(b & !0x7f80_0000 | 0x3f80_0000));
            xs.push(f32::from_bits(b & !0x4000_0000));
            xs.push(1.0 + (i as f32) * 2f32.powi(-13));
        }
        for chunk in xs.chunks(8) {
            let x: Vec<f32> = chunk
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { *v })
                .collect();
            let mut row = [0u16; 8];
            let (xp, n, at) = (x.as_ptr(), x.len(), row.as_mut_ptr());
            // SAFETY: `x` holds `n` floats, `row` 8 halves.
            let m = unsafe { vmaxnmvq_f32(round_row::<false>(xp, n, at, 1.0, vdupq_n_f32(0.0))) };
            assert_eq!(m.to_bits(), f16::max_abs(&x).to_bits());
            for (i, &v) in x.iter().enumerate() {
                assert_eq!(row[i], f16::round(v).to_bits(), "{v:e}");
            }
            // Scaled, as the kernel scales a pixel out of the unscaled range.
            for s in [f16::input_scale(m).0, 2f32.powi(-7), 32.0] {
                // SAFETY: as above.
                unsafe { round_row::<true>(xp, n, at, s, vdupq_n_f32(0.0)) };
                for (i, &v) in x.iter().enumerate() {
                    assert_eq!(row[i], f16::round(v * s).to_bits(), "{v:e} * {s:e}");
                }
            }
        }
    }
}
