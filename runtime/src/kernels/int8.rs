//! int8 arithmetic for [`Precision::Int8`](crate::session::Precision) sessions: the
//! quantization of 1x1 conv weights and inputs to 8-bit integers, the packing of the
//! weights for the int8 kernels, and the definition of what those kernels compute.
//!
//! Weights are quantized once, at session creation, symmetrically per output channel:
//! `w ≈ s_w · q` with `q` in [-127, 127] and `s_w` = the channel's largest magnitude / 127.
//! Inputs are quantized as the kernel runs, per pixel (dynamically: no calibration), over
//! the range of that pixel's channels widened to include zero: `x ≈ s_x · (q - z)` with `q`
//! in [0, 255], `s_x` = (max - min) / 255 and the zero point `z` = round(-min / s_x), so zero
//! is exact and a ReLU's outputs keep all 8 bits. The kernels multiply the 8-bit integers
//! exactly and sum them in 32 bits (`vpdpbusd` on AVX512-VNNI, `SDOT` on aarch64's
//! FEAT_DotProd: four products per 32-bit lane, twice the multiply-adds of bf16's
//! `vdpbf16ps` or `BFDOT`, four times those of an f32 FMA), take
//! off `z · Σq_w` (exact, in 32 bits), and scale the integer by `s_w · s_x` into f32, where
//! bias, residual and activation are applied as in the f32 kernels. The error is thus the
//! quantization's alone: at most half a step of each operand.

use crate::graph::Layout;

/// Output channels per weight block of the x86 kernel (`ConvOcBlock(32)`).
pub const BLOCK: usize = 32;

/// Channels per 32-bit word of the packed weights and of an input row: the four bytes one
/// `vpdpbusd` lane multiplies.
pub const QUAD: usize = 4;

/// Pixels whose channels span less than this are taken as zero (their scale would not be a
/// normal f32): outputs of bias alone.
pub const TINY_RANGE: f32 = 1e-30;

/// How an input pixel whose channels lie in [`min`, `max`] is quantized: the factor by which
/// a value is multiplied before rounding (`255 / range`), the step (`range / 255`) and the
/// zero point, where `range = max(max, 0) - min(min, 0)`, computed in f32 as the kernels do;
/// (0, 0, 0) for a range below [`TINY_RANGE`] or not a number.
pub fn input_quant(min: f32, max: f32) -> (f32, f32, i32) {
    let range = max.max(0.0) - min.min(0.0);
    if range.is_nan() || range < TINY_RANGE || range.is_infinite() {
        return (0.0, 0.0, 0);
    }
    let inv = 255.0 / range;
    let zero = (-min.min(0.0) * inv).round_ties_even() as i32;
    (inv, range / 255.0, zero.clamp(0, 255))
}

/// `x` quantized with [`input_quant`]'s factor `inv` and zero point `zero`: `x · inv` (in
/// f32) rounded to nearest, ties to even, plus `zero`, clamped to [0, 255]. For `x` within
/// the range the factor was made for (the kernels quantize a pixel over its own range;
/// `x · inv` beyond the 32-bit integers is not defined).
pub fn quantize_input(x: f32, inv: f32, zero: i32) -> u8 {
    ((x * inv).round_ties_even() as i32)
        .saturating_add(zero)
        .clamp(0, 255) as u8
}

/// The smallest and largest of `v` (NaN ignored; (0, 0) for none), as the kernels find them.
pub fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((0f32, 0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// How an output channel whose weights' largest magnitude is `max` is quantized: the factor
/// `127 / max` and the step `max / 127`; (0, 0) for a `max` below [`TINY_RANGE`], infinite
/// or not a number.
pub fn weight_quant(max: f32) -> (f32, f32) {
    if max.is_nan() || max < TINY_RANGE || max.is_infinite() {
        return (0.0, 0.0);
    }
    (127.0 / max, max / 127.0)
}

/// `w` quantized with [`weight_quant`]'s factor `inv`: rounded to nearest, ties to even,
/// clamped to [-127, 127].
pub fn quantize_weight(w: f32, inv: f32) -> i8 {
    (w * inv).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// The weights of an ungrouped 1x1 conv (`in_c` inputs, `out_c` outputs), stored as
/// `layout` (`ConvOcBlock(nb)`: `[ceil(OC/nb)][IC][nb]`), quantized per output channel and
/// packed for the x86 int8 kernel ([`pack_blocked`] with blocks of [`BLOCK`]). `None` for
/// another layout or a weight tensor of the wrong length.
pub fn pack_pointwise(w: &[f32], layout: Layout, in_c: usize, out_c: usize) -> Option<Vec<u32>> {
    pack_blocked(w, layout, in_c, out_c, BLOCK)
}

/// The weights of an ungrouped 1x1 conv stored as `layout` (`ConvOcBlock(nb)`), quantized
/// with [`weight_quant`] per output channel, in blocks of `block` output channels:
/// `[ceil(OC/block)][ceil(IC/4)][block]` words, each the four int8 weights of input channels
/// `4k .. 4k + 4` (the first in the low byte; zero past `in_c` and past `out_c`); then
/// `[ceil(OC/block) · block]` f32 words, the channels' steps (0 past `out_c`); then as many
/// i32 words, the sums of the channels' int8 weights. `None` for another layout or a weight
/// tensor of the wrong length.
pub fn pack_blocked(
    w: &[f32],
    layout: Layout,
    in_c: usize,
    out_c: usize,
    block: usize,
) -> Option<Vec<u32>> {
    let Layout::ConvOcBlock(nb) = layout else {
        return None;
    };
    let nb = nb as usize;
    if nb == 0 || block == 0 || w.len() != out_c.div_ceil(nb) * in_c * nb {
        return None;
    }
    let at = |o: usize, i: usize| w[((o / nb) * in_c + i) * nb + o % nb];
    let blocks = out_c.div_ceil(block);
    let quads = in_c.div_ceil(QUAD);
    let quant: Vec<(f32, f32)> = (0..blocks * block)
        .map(|o| match o < out_c {
            true => weight_quant((0..in_c).fold(0f32, |m, i| m.max(at(o, i).abs()))),
            false => (0.0, 0.0),
        })
        .collect();
    let q = |o: usize, i: usize| match o < out_c && i < in_c {
        true => quantize_weight(at(o, i), quant[o].0),
        false => 0,
    };
    let mut out = Vec::with_capacity(blocks * block * (quads + 2));
    let mut sums = vec![0i32; blocks * block];
    for b in 0..blocks {
        for k in 0..quads {
            for j in 0..block {
                let o = b * block + j;
                let bytes: [i8; QUAD] = std::array::from_fn(|t| q(o, k * QUAD + t));
                sums[o] += bytes.iter().map(|&v| v as i32).sum::<i32>();
                out.push(u32::from_le_bytes(bytes.map(|v| v as u8)));
            }
        }
    }
    out.extend(quant.iter().map(|s| s.1.to_bits()));
    out.extend(sums.iter().map(|&s| s as u32));
    Some(out)
}

/// What the int8 kernels compute for one output, without bias: the inputs `x` quantized with
/// the [`input_quant`] of their range, the weights `w` with the [`weight_quant`] of their
/// largest magnitude, the products of the integers summed exactly, less the zero point times
/// the weights' sum, times the two steps. Also the sum of the dequantized products'
/// magnitudes (what the kernels' f32 roundings are relative to), and 1 (the one f32
/// multiply-add of the result).
pub fn dot(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let (lo, hi) = min_max(x);
    let (ix, sx, zero) = input_quant(lo, hi);
    let (iw, sw) = weight_quant(w.iter().fold(0f32, |m, v| m.max(v.abs())));
    let (mut sum, mut mags) = (0i64, 0f64);
    for (&xi, &wi) in x.iter().zip(w) {
        let t =
            (quantize_input(xi, ix, zero) as i64 - zero as i64) * quantize_weight(wi, iw) as i64;
        sum += t;
        mags += t.unsigned_abs() as f64;
    }
    let step = sw as f64 * sx as f64;
    (sum as f64 * step, mags * step, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_quantize_over_their_range_with_zero_exact() {
        // [0, 6] (a ReLU6's outputs): zero point 0, 255 steps of 6/255.
        let (inv, step, zero) = input_quant(0.0, 6.0);
        assert_eq!((zero, step), (0, 6.0 / 255.0));
        assert_eq!(quantize_input(0.0, inv, zero), 0);
        assert_eq!(quantize_input(6.0, inv, zero), 255);
        assert_eq!(quantize_input(3.0, inv, zero), 128); // 127.5: ties to even
                                                         // [-1, 3]: zero at 63.75 -> 64; the ends clamp.
        let (inv, step, zero) = input_quant(-1.0, 3.0);
        assert_eq!(zero, 64);
        assert_eq!(quantize_input(0.0, inv, zero), 64);
        assert_eq!(quantize_input(-1.0, inv, zero), 0);
        assert_eq!(quantize_input(3.0, inv, zero), 255);
        assert_eq!(quantize_input(4.0, inv, zero), 255);
        assert!((step - 4.0 / 255.0).abs() < 1e-9);
        // Only positive values: the range still starts at zero.
        assert_eq!(input_quant(2.0, 4.0).2, 0);
        assert_eq!(input_quant(-4.0, -2.0).2, 255);
        // Nothing to quantize: zeros, tiny, NaN and infinite ranges.
        for (lo, hi) in [
            (0.0, 0.0),
            (-1e-31, 1e-31),
            (f32::NAN, f32::NAN),
            (0.0, f32::INFINITY),
        ] {
            assert_eq!(input_quant(lo, hi), (0.0, 0.0, 0), "{lo} {hi}");
        }
        assert_eq!(min_max(&[3.0, -2.0, f32::NAN, 1.0]), (-2.0, 3.0));
        assert_eq!(min_max(&[3.0, 1.0]), (0.0, 3.0));
    }

    #[test]
    fn weights_quantize_symmetrically() {
        let (inv, step) = weight_quant(2.0);
        assert_eq!(step, 2.0 / 127.0);
        assert_eq!(quantize_weight(2.0, inv), 127);
        assert_eq!(quantize_weight(-2.0, inv), -127);
        assert_eq!(quantize_weight(-2.5, inv), -127);
        assert_eq!(quantize_weight(1.0, inv), 64); // 63.5: ties to even
        assert_eq!(weight_quant(0.0), (0.0, 0.0));
        assert_eq!(weight_quant(f32::NAN), (0.0, 0.0));
    }

    #[test]
    fn pointwise_weights_pack_in_quads_with_steps_and_sums() {
        // 6 inputs, 35 outputs, stored ConvOcBlock(16); packed in blocks of 32: 2 blocks.
        let (ic, oc, nb) = (6usize, 35usize, 16usize);
        let wc = |o: usize, i: usize| {
            (o as f32 + 1.0) * if i.is_multiple_of(2) { 1.0 } else { -0.5 } * (i + 1) as f32
        };
        let mut w = vec![0f32; oc.div_ceil(nb) * ic * nb];
        for o in 0..oc {
            for i in 0..ic {
                w[((o / nb) * ic + i) * nb + o % nb] = wc(o, i);
            }
        }
        let p = pack_pointwise(&w, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
        let (blocks, quads) = (2, 2);
        assert_eq!(p.len(), blocks * BLOCK * (quads + 2));
        for o in 0..blocks * BLOCK {
            let max = (0..ic).fold(0f32, |m, i| if o < oc { m.max(wc(o, i).abs()) } else { m });
            let (inv, step) = weight_quant(max);
            let (mut sum, mut largest) = (0, 0);
            for i in 0..quads * QUAD {
                let word = p[((o / BLOCK) * quads + i / QUAD) * BLOCK + o % BLOCK];
                let got = word.to_le_bytes()[i % QUAD] as i8;
                let want = if o < oc && i < ic {
                    quantize_weight(wc(o, i), inv)
                } else {
                    0
                };
                assert_eq!(got, want, "output {o} input {i}");
                sum += want as i32;
                largest = largest.max(want.unsigned_abs());
            }
            // Each channel's largest weight is +-127.
            assert_eq!(largest, if o < oc { 127 } else { 0 });
            let tail = blocks * BLOCK * quads;
            assert_eq!(f32::from_bits(p[tail + o]), step, "step of {o}");
            assert_eq!(p[tail + blocks * BLOCK + o] as i32, sum, "sum of {o}");
        }
        assert!(pack_pointwise(&w, Layout::ConvOcBlock(8), ic, oc).is_none());
        assert!(pack_pointwise(&w[1..], Layout::ConvOcBlock(16), ic, oc).is_none());
        assert!(pack_pointwise(&w, Layout::Canonical, ic, oc).is_none());
    }

    #[test]
    fn dot_is_the_quantized_sum() {
        // Inputs [0, 2.55] (step 0.01), weights up to 1.27 (step 0.01): exact integers.
        let x = [2.55f32, 1.0, 0.0, 0.5];
        let w = [1.27f32, -1.0, 0.3, 0.0];
        let (sum, mags, adds) = dot(&x, &w);
        // q_x = 255, 100, 0, 50; q_w = 127, -100, 30, 0.
        let want =
            (255.0 * 127.0 - 100.0 * 100.0) * (2.55f32 / 255.0) as f64 * (1.27f32 / 127.0) as f64;
        assert!((sum - want).abs() < 1e-12, "{sum} vs {want}");
        assert!(mags >= sum.abs() && adds == 1);
        // Zero inputs or weights: zero.
        assert_eq!(dot(&[0.0; 3], &[1.0; 3]).0, 0.0);
        assert_eq!(dot(&[1.0; 3], &[0.0; 3]).0, 0.0);
    }
}
