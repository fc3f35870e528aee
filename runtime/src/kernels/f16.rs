//! f16 arithmetic for [`Precision::F16`](crate::session::Precision) sessions: the rounding
//! of f32 values to IEEE half precision (11 significant bits), the power-of-two scaling that
//! keeps the f16 operands and sums inside the f16 range, the packing of 1x1 conv weights for
//! the f16 kernels, and the definition of what those kernels compute.
//!
//! The aarch64 kernel (FEAT_FP16) multiplies f16 inputs by f16 weights and adds the products
//! in f16 with `FMLA` on 8 half-precision lanes (twice the lanes of f32), over runs of
//! [`RUN`] input channels; each run's f16 sum is then added to an f32 accumulator. Both the
//! operands' rounding and the f16 partial sums are rounded to nearest, ties to even, with
//! subnormal values kept (the default FPCR), as [`half::f16`] rounds.
//!
//! The f16 range (6e-8 to 65504) is narrower than the range of activations and folded
//! weights (an untrained network's activations shrink to 1e-9, a detector's reach 1e3 and
//! more, and ConvNeXt's layer scale folds factors of 1e-6 into weights), so before rounding,
//! each output channel's weights are multiplied by the power of two [`weight_scale`] gives
//! for their largest magnitude (into [1, 2)), and each input pixel's channels by the one
//! [`input_scale`] gives for theirs (1 where the largest is in [2^-4, 2^9), as trained
//! networks' activations mostly are, which spares the kernel a second pass; else into
//! [16, 32)). So every product is at most 2^10 and every run's sum at most 2^15, and a value
//! rounded to a subnormal is at least 2^-10 below its pixel's largest (its error at most 2^-25
//! of it). The f32 result is multiplied back by the two inverses, exactly (powers of two).

use crate::graph::Layout;

/// Input channels whose products are summed in f16 before the sum is added in f32: short
/// enough that the f16 partial sums keep about 3 significant decimal digits more than bf16
/// operands do (a relative error per layer of 7e-4 to 9e-4 against 2.3e-3 for bf16 in a
/// simulation over 32 to 960 channels; `docs/decisions.md`, "f16 on aarch64").
pub const RUN: usize = 32;

/// Output channels per weight block of [`pack_pointwise`] (two 8-lane f16 vectors).
pub const BLOCK: usize = 16;

/// The power of two `s` that puts `max` in [2^`into`, 2^(`into` + 1)), and its inverse
/// (for a `max` so far out of the f32 range that one of them would not be a normal f32
/// value, the nearest power that keeps both normal). For zero, a subnormal, infinity or NaN,
/// (1, 1).
fn power_of_two(max: f32, into: i32) -> (f32, f32) {
    let e = ((max.to_bits() >> 23) & 0xff) as i32;
    if e == 0 || e == 0xff {
        return (1.0, 1.0);
    }
    // max = 2^(e - 127) * m with m in [1, 2): s = 2^(into + 127 - e), whose biased exponent
    // is 254 + into - e, and 1 / s, whose biased exponent is e - into; both within 1..=254.
    let e = e.clamp((into + 1).max(1), (253 + into).min(254));
    let bits = |b: i32| f32::from_bits((b as u32) << 23);
    (bits(254 + into - e), bits(e - into))
}

/// The scale by which the f16 kernels multiply an input pixel's channels, whose largest
/// magnitude is `max`, before rounding them to f16, and its inverse: (1, 1) for a `max` in
/// [2^-4, 2^9) (and for zero, a subnormal, infinity or NaN); else the power of two that puts
/// `max` in [16, 32).
pub fn input_scale(max: f32) -> (f32, f32) {
    let e = ((max.to_bits() >> 23) & 0xff) as i32 - 127;
    match (-4..9).contains(&e) {
        true => (1.0, 1.0),
        false => power_of_two(max, 4),
    }
}

/// The scale by which [`pack_pointwise`] multiplies an output channel's weights, whose
/// largest magnitude is `max`, before rounding them to f16, and its inverse: the power of two
/// that puts `max` in [1, 2) ((1, 1) for zero, a subnormal, infinity or NaN).
pub fn weight_scale(max: f32) -> (f32, f32) {
    power_of_two(max, 0)
}

/// The largest magnitude in `v` (NaN ignored), as the kernels find it.
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

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
/// `layout` (`ConvOcBlock(nb)`: `[ceil(OC/nb)][IC][nb]`), scaled and rounded to f16 and packed
/// for the f16 pointwise kernel: `[ceil(OC/16)][IC][16]` f16 values (zero past `out_c`), two
/// per 32-bit word (the first in the low half), each output channel's multiplied by the
/// [`weight_scale`] of its largest magnitude; then `[ceil(OC/16)][16]` f32 words, the inverses of
/// those scales (1 past `out_c`). `None` for another layout or a weight tensor of the wrong
/// length.
pub fn pack_pointwise(w: &[f32], layout: Layout, in_c: usize, out_c: usize) -> Option<Vec<u32>> {
    let Layout::ConvOcBlock(nb) = layout else {
        return None;
    };
    let nb = nb as usize;
    if nb == 0 || w.len() != out_c.div_ceil(nb) * in_c * nb {
        return None;
    }
    Some(pack_scaled(w, nb, in_c, out_c, BLOCK))
}

/// What the f16 kernels compute for one output, without bias: the inputs `x` times the
/// [`input_scale`] of their largest magnitude and the weights `w` times their
/// [`weight_scale`], each
/// rounded to f16, multiplied and summed in f16 over runs of [`RUN`] channels (each
/// multiply-add rounded once, as `FMLA` does), the runs' sums added in f64 and multiplied by
/// the two scales' inverses. Also the sum of the products' magnitudes (of the values before
/// rounding), and the number of runs (the f32 additions the kernel makes).
pub fn dot(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let (sx, ix) = input_scale(max_abs(x));
    let (sw, iw) = weight_scale(max_abs(w));
    let (mut sum, mut mags) = (0f64, 0f64);
    let mut runs = 0;
    for (xr, wr) in x.chunks(RUN).zip(w.chunks(RUN)) {
        let mut acc = half::f16::ZERO;
        for (&xi, &wi) in xr.iter().zip(wr) {
            mags += (xi as f64 * wi as f64).abs();
            let t = quantize(xi * sx) as f64 * quantize(wi * sw) as f64;
            // The product of two f16 values is exact in f64, and so is the sum wherever
            // its f64 rounding could change the f16 one: the f16 result is its one rounding.
            acc = round_f64(acc.to_f64() + t);
        }
        sum += acc.to_f64();
        runs += 1;
    }
    (sum * ix as f64 * iw as f64, mags, runs)
}

/// The weights of a fully connected layer (`in_f` inputs, `out_f` outputs) stored as
/// `layout` (`FcOcBlock(nb)`: `[ceil(OF/nb)][IF][nb]`), each output's multiplied by its
/// [`weight_scale`] and rounded to f16, for the f16-weight fully connected kernels:
/// `[ceil(OF/nb)][IF][nb]` halves (zero past `out_f`), two per 32-bit word (the first in
/// the low half; `IF * nb` even), then `[ceil(OF/nb)][nb]` f32 words, the scales' inverses
/// (1 past `out_f`). `None` for another layout, an odd `IF * nb` or a weight tensor of the
/// wrong length.
pub fn pack_fc(w: &[f32], layout: Layout, in_f: usize, out_f: usize) -> Option<Vec<u32>> {
    let Layout::FcOcBlock(nb) = layout else {
        return None;
    };
    let nb = nb as usize;
    if nb == 0 || w.len() != out_f.div_ceil(nb) * in_f * nb || (in_f * nb) % 2 == 1 {
        return None;
    }
    Some(pack_scaled(w, nb, in_f, out_f, nb))
}

/// The packing of [`pack_pointwise`] and [`pack_fc`]: `w` in blocks of `nb` outputs
/// (`[ceil(out/nb)][in][nb]`, checked by the callers), each output's weights times its
/// [`weight_scale`] rounded to f16 in blocks of `block` outputs (zero past `out_c`), two
/// per word, then the scales' inverses (1 past `out_c`). `in_c * block` is even.
fn pack_scaled(w: &[f32], nb: usize, in_c: usize, out_c: usize, block: usize) -> Vec<u32> {
    let at = |o: usize, i: usize| w[((o / nb) * in_c + i) * nb + o % nb];
    let blocks = out_c.div_ceil(block);
    let scales: Vec<(f32, f32)> = (0..blocks * block)
        .map(|o| match o < out_c {
            true => weight_scale((0..in_c).fold(0f32, |m, i| m.max(at(o, i).abs()))),
            false => (1.0, 1.0),
        })
        .collect();
    let halves: Vec<u16> = (0..blocks * in_c * block)
        .map(|k| {
            let (o, i) = ((k / (in_c * block)) * block + k % block, k / block % in_c);
            match o < out_c {
                true => round(at(o, i) * scales[o].0).to_bits(),
                false => 0,
            }
        })
        .collect();
    let words = halves
        .chunks_exact(2)
        .map(|p| p[0] as u32 | (p[1] as u32) << 16);
    words.chain(scales.iter().map(|s| s.1.to_bits())).collect()
}

/// What the f16-weight fully connected kernels compute for one output, without bias: the
/// inputs `x` as they are (f32) times the weights `w` multiplied by their [`weight_scale`]
/// and rounded to f16, summed in f64 (the kernels sum in f32) and multiplied by the scale's
/// inverse. Also the sum of the products' magnitudes, and the number of f32 additions.
pub fn fc_dot(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let (sw, iw) = weight_scale(max_abs(w));
    let (mut sum, mut mags) = (0f64, 0f64);
    for (&xi, &wi) in x.iter().zip(w) {
        sum += xi as f64 * quantize(wi * sw) as f64;
        mags += (xi as f64 * wi as f64).abs();
    }
    (sum * iw as f64, mags, x.len())
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
    fn scales_are_powers_of_two_into_their_ranges() {
        let pow2 = |s: f32| s.to_bits() & 0x7f_ffff == 0;
        for i in 0..4000 {
            let max = ((i as f32 * 0.377).sin().abs() * 10f32.powi(i % 70 - 35)).max(1e-36);
            let (s, inv) = weight_scale(max);
            assert!((1.0..2.0).contains(&(max * s)), "{max:e}");
            assert!(s * inv == 1.0 && pow2(s), "{max:e}: {s:e}");
            let (s, inv) = input_scale(max);
            assert!(s * inv == 1.0 && pow2(s), "{max:e}: {s:e}");
            if (0.0625..512.0).contains(&max) {
                assert_eq!(s, 1.0, "{max:e}");
            } else {
                assert!((16.0..32.0).contains(&(max * s)), "{max:e}");
            }
        }
        assert_eq!(input_scale(0.0625), (1.0, 1.0));
        assert_eq!(input_scale(511.9), (1.0, 1.0));
        assert_eq!(input_scale(512.0), (1.0 / 32.0, 32.0));
        assert_eq!(input_scale(0.06), (512.0, 1.0 / 512.0));
        assert_eq!(input_scale(1e-9).0, 2f32.powi(34));
        assert_eq!(weight_scale(1.0), (1.0, 1.0));
        assert_eq!(weight_scale(3e-8).0, 2f32.powi(25));
        for v in [0.0, 1e-40, f32::INFINITY, f32::NAN] {
            assert_eq!(input_scale(v), (1.0, 1.0));
            assert_eq!(weight_scale(v), (1.0, 1.0));
        }
        // At the ends of the f32 range: normal powers, the product as near the range as
        // they allow.
        assert_eq!(input_scale(f32::MAX), (2f32.powi(-123), 2f32.powi(123)));
        assert_eq!(weight_scale(f32::MAX), (2f32.powi(-126), 2f32.powi(126)));
        assert_eq!(
            input_scale(f32::MIN_POSITIVE),
            (2f32.powi(126), f32::MIN_POSITIVE)
        );
        assert_eq!(
            weight_scale(f32::MIN_POSITIVE),
            (2f32.powi(126), f32::MIN_POSITIVE)
        );
        assert_eq!(max_abs(&[1.0, -3.0, f32::NAN, 2.0]), 3.0);
    }

    #[test]
    fn pointwise_weights_pack_in_blocks_of_16() {
        for nb in [8usize, 32] {
            let (ic, oc) = (3usize, 40usize);
            // Output channels of very different magnitudes, each scaled on its own.
            let w: Vec<f32> = (0..oc.div_ceil(nb) * ic * nb)
                .map(|v| (v as f32 * 0.25 - 7.0) * 10f32.powi((v % nb) as i32 % 9 - 5))
                .collect();
            let at = |o: usize, i: usize| w[((o / nb) * ic + i) * nb + o % nb];
            let p = pack_pointwise(&w, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
            let blocks = oc.div_ceil(BLOCK);
            assert_eq!(p.len() * 2, blocks * ic * BLOCK + blocks * BLOCK * 2);
            let half_at = |k: usize| half::f16::from_bits((p[k / 2] >> (16 * (k % 2))) as u16);
            let inverses = &p[blocks * ic * BLOCK / 2..];
            assert_eq!(inverses.len(), blocks * BLOCK);
            for (o, &stored) in inverses.iter().enumerate() {
                let (s, inv) = match o < oc {
                    true => weight_scale(max_abs(&(0..ic).map(|i| at(o, i)).collect::<Vec<_>>())),
                    false => (1.0, 1.0),
                };
                assert_eq!(f32::from_bits(stored), inv, "output {o}");
                let mut largest = 0f32;
                for i in 0..ic {
                    let got = half_at(((o / BLOCK) * ic + i) * BLOCK + o % BLOCK).to_f32();
                    let want = if o < oc { quantize(at(o, i) * s) } else { 0.0 };
                    assert_eq!(got, want, "nb {nb} output {o} input {i}");
                    largest = largest.max(got.abs());
                }
                assert!(o >= oc || (1.0..=2.0).contains(&largest), "output {o}");
            }
        }
        let w = vec![0f32; 5 * 3 * 8];
        assert!(pack_pointwise(&w[1..], Layout::ConvOcBlock(8), 3, 40).is_none());
        assert!(pack_pointwise(&w, Layout::Canonical, 3, 40).is_none());
    }

    #[test]
    fn dot_sums_runs_in_f16() {
        // 40 products of 1 * 2^-11 in one run of 32 then 8: in f16, 1 + 2^-11 rounds back
        // to 1 at every step of the first run after the first product. Scaled by any power
        // of two, the same sum.
        for k in [-40, -12, 0, 9, 30] {
            let mut x = vec![2f32.powi(-11 + k); 41];
            x[0] = 2f32.powi(k);
            let w = vec![2f32.powi(-k / 2); 41];
            let (sum, _, runs) = dot(&x, &w);
            assert_eq!(runs, 2);
            assert_eq!(
                sum,
                (1.0 + 9.0 * 2f64.powi(-11)) * 2f64.powi(k - k / 2),
                "{k}"
            );
        }
        // Beyond the unscaled f16 range either way: the f32 products' sum to f16 precision.
        for m in [1e-12f32, 1e-6, 1e6, 1e12] {
            let x: Vec<f32> = (0..100).map(|i| (i as f32 * 0.61).sin() * m).collect();
            let w: Vec<f32> = (0..100)
                .map(|i| (i as f32 * 0.23).cos() / m.sqrt())
                .collect();
            let exact: f64 = x.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum();
            let (sum, mags, _) = dot(&x, &w);
            assert!(
                (sum - exact).abs() <= 4e-3 * mags,
                "{m:e}: {sum} vs {exact}"
            );
        }
    }

    #[test]
    fn fully_connected_weights_pack_scaled_per_output() {
        let (inf, of, nb) = (5usize, 11usize, 8usize);
        let w: Vec<f32> = (0..of.div_ceil(nb) * inf * nb)
            .map(|v| (v as f32 * 0.37).sin() * 10f32.powi((v % nb) as i32 - 6))
            .collect();
        let at = |o: usize, i: usize| w[((o / nb) * inf + i) * nb + o % nb];
        let p = pack_fc(&w, Layout::FcOcBlock(nb as u16), inf, of).unwrap();
        let blocks = of.div_ceil(nb);
        assert_eq!(p.len(), blocks * inf * nb / 2 + blocks * nb);
        let half_at = |k: usize| half::f16::from_bits((p[k / 2] >> (16 * (k % 2))) as u16);
        let inverses = &p[blocks * inf * nb / 2..];
        for (o, &stored) in inverses.iter().enumerate() {
            let col: Vec<f32> = (0..inf)
                .map(|i| if o < of { at(o, i) } else { 0.0 })
                .collect();
            let (s, inv) = weight_scale(max_abs(&col));
            assert_eq!(f32::from_bits(stored), inv, "output {o}");
            for (i, &v) in col.iter().enumerate() {
                let got = half_at(((o / nb) * inf + i) * nb + o % nb).to_f32();
                assert_eq!(got, quantize(v * s), "output {o} input {i}");
            }
            // The definition: f32 inputs, the scaled f16 weights, scaled back.
            if o < of {
                let x: Vec<f32> = (0..inf).map(|i| i as f32 - 1.5).collect();
                let want: f64 = x
                    .iter()
                    .zip(&col)
                    .map(|(&a, &b)| a as f64 * quantize(b * s) as f64 * inv as f64)
                    .sum();
                let exact: f64 = x.iter().zip(&col).map(|(&a, &b)| a as f64 * b as f64).sum();
                let (sum, mags, adds) = fc_dot(&x, &col);
                assert_eq!((sum, adds), (want, inf));
                assert!((sum - exact).abs() <= 2f64.powi(-11) * mags, "output {o}");
            }
        }
        assert!(pack_fc(&w[1..], Layout::FcOcBlock(8), inf, of).is_none());
        assert!(pack_fc(&w, Layout::ConvOcBlock(8), inf, of).is_none());
        assert!(pack_fc(&w[..2 * 5], Layout::FcOcBlock(1), 5, 2).is_none());
    }
}
