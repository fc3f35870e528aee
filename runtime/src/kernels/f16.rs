//! f16 arithmetic for [`Precision::F16`](crate::session::Precision) sessions: the rounding
//! of f32 values to IEEE half precision (11 significant bits), the packing of 1x1 conv
//! weights for the f16 kernels, and the definition of what those kernels compute.
//!
//! The aarch64 kernel (FEAT_FP16) multiplies f16 inputs by f16 weights and adds the products
//! in f16 with `FMLA` on 8 half-precision lanes (twice the lanes of f32), over runs of
//! [`RUN`] input channels; each run's f16 sum is then added to an f32 accumulator. Both the
//! operands' rounding and the f16 partial sums are rounded to nearest, ties to even, with
//! subnormal values kept (the default FPCR), as [`half::f16`] rounds.

use crate::graph::Layout;

/// Input channels whose products are summed in f16 before the sum is added in f32: short
/// enough that the f16 partial sums keep about 3 significant decimal digits more than bf16
/// operands do (a relative error per layer of 7e-4 to 9e-4 against 2.3e-3 for bf16 in a
/// simulation over 32 to 960 channels; `docs/decisions.md`, "f16 on aarch64").
pub const RUN: usize = 32;

/// Output channels per weight block of [`pack_pointwise`] (two 8-lane f16 vectors).
pub const BLOCK: usize = 16;

/// `x` rounded to f16 (to nearest, ties to even; beyond the f16 range, infinity).
pub fn round(x: f32) -> half::f16 {
    half::f16::from_f32(x)
}

/// `v` rounded to f16 once (to nearest, ties to even; beyond the f16 range, infinity).
/// `half::f16::from_f64` goes through f32 and can round twice (1 + 2^-11 + 2^-40 becomes 1
/// instead of 1 + 2^-10), which an f16 multiply-add, rounded once, does not.
pub fn round_f64(v: f64) -> half::f16 {
    if !v.is_finite() || v == 0.0 {
        return half::f16::from_f64(v);
    }
    // The unit in the last place of `v` in f16: 2^(e - 10) for normal values, 2^-24 below.
    let e = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let ulp = 2f64.powi(e.max(-14) - 10);
    let r = (v / ulp).round_ties_even() * ulp;
    // `r` has at most 11 significant bits, exactly an f16 (or beyond its range: infinity).
    half::f16::from_f64(r)
}

/// `x` rounded to f16 and back.
pub fn quantize(x: f32) -> f32 {
    round(x).to_f32()
}

/// The weights of an ungrouped 1x1 conv (`in_c` inputs, `out_c` outputs), stored as
/// `layout` (`ConvOcBlock(nb)`: `[ceil(OC/nb)][IC][nb]`), rounded to f16 and packed for the
/// f16 pointwise kernel: `[ceil(OC/16)][IC][16]` f16 values (zero past `out_c`), two per
/// 32-bit word (the first in the low half). `None` for another layout or a weight tensor of
/// the wrong length.
pub fn pack_pointwise(w: &[f32], layout: Layout, in_c: usize, out_c: usize) -> Option<Vec<u32>> {
    let Layout::ConvOcBlock(nb) = layout else {
        return None;
    };
    let nb = nb as usize;
    if nb == 0 || w.len() != out_c.div_ceil(nb) * in_c * nb {
        return None;
    }
    let blocks = out_c.div_ceil(BLOCK);
    let mut halves = vec![0u16; blocks * in_c * BLOCK];
    for (b, dst) in halves.chunks_exact_mut(in_c * BLOCK).enumerate() {
        for (i, row) in dst.chunks_exact_mut(BLOCK).enumerate() {
            for (j, h) in row.iter_mut().enumerate() {
                let o = b * BLOCK + j;
                if o < out_c {
                    *h = round(w[((o / nb) * in_c + i) * nb + o % nb]).to_bits();
                }
            }
        }
    }
    Some(
        halves
            .chunks_exact(2)
            .map(|p| p[0] as u32 | (p[1] as u32) << 16)
            .collect(),
    )
}

/// What the f16 kernels compute for one output, without bias: the f16-rounded inputs `x`
/// times the f16-rounded weights `w`, summed in f16 over runs of [`RUN`] channels (each
/// multiply-add rounded once, as `FMLA` does), the runs' sums added in f64. Also the sum of
/// the products' magnitudes, and the number of runs (the f32 additions the kernel makes).
pub fn dot(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let (mut sum, mut scale) = (0f64, 0f64);
    let mut runs = 0;
    for (xr, wr) in x.chunks(RUN).zip(w.chunks(RUN)) {
        let mut acc = half::f16::ZERO;
        for (&xi, &wi) in xr.iter().zip(wr) {
            let t = quantize(xi) as f64 * quantize(wi) as f64;
            scale += t.abs();
            // The product of two f16 values and the f16 sum are exact in f64 at the
            // magnitudes of the tests; the f16 result is its one rounding.
            acc = round_f64(acc.to_f64() + t);
        }
        sum += acc.to_f64();
        runs += 1;
    }
    (sum, scale, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_with_subnormals() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to the even mantissa (1).
        assert_eq!(quantize(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(quantize(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
        assert_eq!(quantize(2f32.powi(-20)), 2f32.powi(-20));
        assert_eq!(quantize(70000.0), f32::INFINITY);
        assert_eq!(quantize(-3.5), -3.5);
        // f64 sums round to the nearest f16 once (not through f32).
        let tie = 1.0 + 2f64.powi(-11);
        assert_eq!(round_f64(tie).to_f64(), 1.0);
        assert_eq!(
            round_f64(tie + 2f64.powi(-40)).to_f64(),
            1.0 + 2f64.powi(-10)
        );
        assert_eq!(
            round_f64(-tie - 2f64.powi(-40)).to_f64(),
            -1.0 - 2f64.powi(-10)
        );
        assert_eq!(round_f64(3.0 * 2f64.powi(-26)).to_f64(), 2f64.powi(-24));
        assert_eq!(round_f64(65519.0).to_f64(), 65504.0);
        assert_eq!(round_f64(65520.0).to_f64(), f64::INFINITY);
        // Agrees with the f32 rounding wherever the value is an f32.
        for i in 0..20_000 {
            let x = (i as f32 * 0.7311).sin() * 10f32.powi(i % 13 - 8);
            assert_eq!(round_f64(x as f64), round(x), "{x:e}");
        }
    }

    #[test]
    fn pointwise_weights_pack_in_blocks_of_16() {
        for nb in [8usize, 32] {
            let (ic, oc) = (3usize, 40usize);
            let w: Vec<f32> = (0..oc.div_ceil(nb) * ic * nb)
                .map(|v| v as f32 * 0.25)
                .collect();
            let p = pack_pointwise(&w, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
            let blocks = oc.div_ceil(BLOCK);
            assert_eq!(p.len() * 2, blocks * ic * BLOCK);
            let half_at = |k: usize| half::f16::from_bits((p[k / 2] >> (16 * (k % 2))) as u16);
            for o in 0..blocks * BLOCK {
                for i in 0..ic {
                    let got = half_at(((o / BLOCK) * ic + i) * BLOCK + o % BLOCK).to_f32();
                    let want = if o < oc {
                        quantize(w[((o / nb) * ic + i) * nb + o % nb])
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "nb {nb} output {o} input {i}");
                }
            }
        }
        let w = vec![0f32; 5 * 3 * 8];
        assert!(pack_pointwise(&w[1..], Layout::ConvOcBlock(8), 3, 40).is_none());
        assert!(pack_pointwise(&w, Layout::Canonical, 3, 40).is_none());
    }

    #[test]
    fn dot_sums_runs_in_f16() {
        // 40 products of 1 * 2^-11 in one run of 32 then 8: in f16, 1 + 2^-11 rounds back
        // to 1 at every step of the first run after the first product.
        let mut x = vec![2f32.powi(-11); 41];
        x[0] = 1.0;
        let w = vec![1f32; 41];
        let (sum, _, runs) = dot(&x, &w);
        assert_eq!(runs, 2);
        assert_eq!(sum, 1.0 + 9.0 * 2f64.powi(-11));
    }
}
