//! bf16 arithmetic for [`Precision::Bf16`](crate::session::Precision) sessions: the rounding
//! of f32 values to bfloat16 (the upper 16 bits of an f32: 8 exponent bits, 7 mantissa bits)
//! that the kernels use, and the packing of conv weights into pairs of bf16 values.
//!
//! The kernels multiply bf16 inputs by bf16 weights with `vdpbf16ps` (x86, AVX512-BF16) or
//! `BFDOT` (aarch64, FEAT_BF16), which add two products into each f32 lane; the products of two bf16 values are exact in f32, so only
//! the rounding of the operands to bf16 (a relative error of at most 2^-8 each) and the f32
//! accumulation separate the result from the f32 conv.

use crate::graph::Layout;

/// `x` rounded to bf16 as the hardware conversion (`vcvtne2ps2bf16`) does it: to nearest,
/// ties to even, subnormal values to zero of the same sign; returned as the bf16's bits.
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        // A quiet NaN of the same sign.
        return ((b >> 16) | 0x40) as u16;
    }
    if x.abs() < f32::MIN_POSITIVE {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of the bf16 bits `h`, subnormal values taken as zero (as `vdpbf16ps` reads
/// its operands).
pub fn widen(h: u16) -> f32 {
    let x = f32::from_bits((h as u32) << 16);
    if x.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// `x` rounded to bf16 and back (see [`round`], [`widen`]).
pub fn quantize(x: f32) -> f32 {
    widen(round(x))
}

/// 32-bit words per input pixel of a bf16 pointwise conv: `ic` channels in pairs, rounded up
/// to whole 512-bit vectors (32 channels).
pub fn row_words(ic: usize) -> usize {
    ic.div_ceil(32) * 16
}

/// Output channels per weight block of the x86 kernel (`ConvOcBlock(32)`).
pub const BLOCK: usize = 32;

/// The weights of an ungrouped 1x1 conv (`in_c` inputs, `out_c` outputs), stored as
/// `layout` (`ConvOcBlock(nb)`: `[ceil(OC/nb)][IC][nb]`), packed for the bf16 pointwise
/// kernels: `[ceil(OC/nb)][ceil(IC/2)][nb]` words, each holding the bf16 weights of input
/// channels `2k` (low half) and `2k + 1` (high half, zero past `in_c`) for one output
/// channel. `None` for another layout or a weight tensor of the wrong length.
pub fn pack_pointwise(w: &[f32], layout: Layout, in_c: usize, out_c: usize) -> Option<Vec<u32>> {
    let Layout::ConvOcBlock(nb) = layout else {
        return None;
    };
    let nb = nb as usize;
    let blocks = out_c.div_ceil(nb.max(1));
    if nb == 0 || w.len() != blocks * in_c * nb {
        return None;
    }
    let pairs = in_c.div_ceil(2);
    let mut out = vec![0u32; blocks * pairs * nb];
    for (dst, src) in out
        .chunks_exact_mut(pairs * nb)
        .zip(w.chunks_exact(in_c * nb))
    {
        for (k, words) in dst.chunks_exact_mut(nb).enumerate() {
            let lo = &src[2 * k * nb..][..nb];
            let hi = src.get((2 * k + 1) * nb..(2 * k + 2) * nb);
            for (j, word) in words.iter_mut().enumerate() {
                let h = hi.map_or(0, |h| round(h[j]));
                *word = round(lo[j]) as u32 | (h as u32) << 16;
            }
        }
    }
    Some(out)
}

/// The weights of a fully connected layer (`in_f` inputs, `out_f` outputs) stored as
/// `layout` (`FcOcBlock(nb)`), packed for the bf16 fully connected kernels, which read one
/// input pixel per item: [`pack_pointwise`] of `ConvOcBlock(nb)`, the same order for one
/// pixel. `None` for another layout or a weight tensor of the wrong length.
pub fn pack_fc(w: &[f32], layout: Layout, in_f: usize, out_f: usize) -> Option<Vec<u32>> {
    match layout {
        Layout::FcOcBlock(nb) => pack_pointwise(w, Layout::ConvOcBlock(nb), in_f, out_f),
        _ => None,
    }
}

/// What the bf16 kernels compute for one output, without bias: the bf16-rounded inputs `x`
/// times the bf16-rounded weights `w`, summed in f64 (the kernels sum in f32). Also the sum
/// of the products' magnitudes, and the number of f32 additions the kernels make.
pub fn dot(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let (mut sum, mut scale) = (0f64, 0f64);
    for (&xi, &wi) in x.iter().zip(w) {
        let t = quantize(xi) as f64 * quantize(wi) as f64;
        sum += t;
        scale += t.abs();
    }
    (sum, scale, x.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_flushes_subnormals() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(quantize(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6 (even).
        assert_eq!(quantize(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        // Just above the halfway point rounds up.
        assert_eq!(
            quantize(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(quantize(-3.0), -3.0);
        assert_eq!(quantize(1e-40), 0.0);
        assert!(quantize(-1e-40).is_sign_negative());
        assert!(quantize(f32::NAN).is_nan());
        assert_eq!(quantize(f32::INFINITY), f32::INFINITY);
        assert_eq!(quantize(f32::MAX), f32::INFINITY);
        // Every bf16 value is its own rounding, and the relative error is at most 2^-8 (half a unit in the 8th bit).
        for i in 0..4000 {
            let x = (i as f32 * 0.7311).sin() * 10f32.powi(i % 9 - 4);
            let q = quantize(x);
            assert_eq!(quantize(q), q);
            assert!((q - x).abs() <= x.abs() * 2f32.powi(-8), "{x} {q}");
        }
    }

    #[test]
    fn pointwise_weights_pack_in_pairs_of_input_channels() {
        for nb in [8usize, 32] {
            pack_blocks_of(nb);
        }
        let w = vec![0f32; 2 * 3 * BLOCK];
        assert!(pack_pointwise(&w, Layout::ConvOcBlock(16), 3, 40).is_none());
        assert!(pack_pointwise(&w[1..], Layout::ConvOcBlock(32), 3, 40).is_none());
        assert!(pack_pointwise(&w, Layout::ConvOcBlock(0), 3, 40).is_none());
        assert!(pack_pointwise(&w, Layout::Canonical, 3, 40).is_none());
    }

    /// Packing of 3 -> 40 channels in blocks of `nb` output channels.
    fn pack_blocks_of(nb: usize) {
        let (ic, oc) = (3usize, 40usize);
        let blocks = oc.div_ceil(nb);
        // w[b][i][j] = weight of output channel b*nb + j, input i.
        let w: Vec<f32> = (0..blocks * ic * nb).map(|v| v as f32).collect();
        let p = pack_pointwise(&w, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
        assert_eq!(p.len(), blocks * 2 * nb);
        for b in 0..blocks {
            for k in 0..2 {
                for j in 0..nb {
                    let word = p[(b * 2 + k) * nb + j];
                    let at = |i: usize| w[(b * ic + i) * nb + j];
                    assert_eq!(widen(word as u16), quantize(at(2 * k)));
                    let hi = if 2 * k + 1 < ic {
                        quantize(at(2 * k + 1))
                    } else {
                        0.0
                    };
                    assert_eq!(widen((word >> 16) as u16), hi);
                }
            }
        }
    }
}
