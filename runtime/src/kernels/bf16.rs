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

/// The kernel tests' harness, shared by the bf16 kernels of every architecture: a kernel's
/// output against the f64 sum of the bf16-rounded operands.
#[cfg(test)]
pub(crate) mod testing {
    use super::{pack_pointwise, quantize};
    use crate::graph::{Activation, Conv, Layout, Shape4};
    use crate::kernels::{Act4, ConvArgs};

    /// A bf16 pointwise kernel: its entry point, its weight block (output channels) and its
    /// scratch length.
    type Kernel = (fn(&mut ConvArgs), usize, fn(&Conv, Act4, Act4) -> usize);

    /// A small deterministic generator of values in [-1, 1).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// One conv of `ic -> oc` channels over `n x h x w` pixels (channel strides `xcs`, `ycs`),
    /// rows `rows` of it, through `run`, against the f64 sum of the bf16-rounded operands.
    #[allow(clippy::type_complexity)]
    fn check(
        (run, nb, scratch): Kernel,
        ((ic, oc), (n, h, w), (xcs, ycs)): ((usize, usize), (u32, u32, u32), (usize, usize)),
        (bias, residual, act): (bool, bool, Activation),
        rows: std::ops::Range<usize>,
        (split, seed): (Option<usize>, u64),
    ) {
        let mut rng = Rng(seed | 1);
        let conv = Conv {
            in_c: ic as u32,
            out_c: oc as u32,
            groups: 1,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            weight: 0,
            bias: bias.then_some(1),
            act,
        };
        let xs = Act4 {
            shape: Shape4::new(n, h, w, ic as u32),
            cs: xcs,
        };
        let ys = Act4 {
            shape: Shape4::new(n, h, w, oc as u32),
            cs: ycs,
        };
        let pixels = xs.len() / xcs;
        // Inputs with their pad lanes zero, as sessions keep them; values of mixed scale.
        let mut x = vec![0f32; xs.len()];
        for px in x.chunks_exact_mut(xcs) {
            for v in &mut px[..ic] {
                *v = rng.next() * 4.0;
            }
        }
        let wc: Vec<f32> = (0..oc * ic).map(|_| rng.next()).collect();
        let b: Vec<f32> = (0..oc).map(|_| rng.next()).collect();
        let r: Vec<f32> = (0..ys.len()).map(|_| rng.next()).collect();
        let blocks = oc.div_ceil(nb);
        let mut blocked = vec![0f32; blocks * ic * nb];
        for o in 0..oc {
            for i in 0..ic {
                blocked[((o / nb) * ic + i) * nb + o % nb] = wc[o * ic + i];
            }
        }
        let packed = pack_pointwise(&blocked, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
        let packed: Vec<f32> = packed.iter().map(|&v| f32::from_bits(v)).collect();
        let mut y = vec![f32::NAN; ys.len()];
        let mut scratch = vec![f32::NAN; scratch(&conv, xs, ys)];
        // With `split`, the input is read as two parts of a concatenation: channels
        // `..split` and `split..`, each in a buffer of its own channel stride.
        let part = |c: std::ops::Range<usize>| {
            let cs = c.len().next_multiple_of(16);
            let mut v = vec![0f32; pixels * cs];
            for (dst, src) in v.chunks_exact_mut(cs).zip(x.chunks_exact(xcs)) {
                dst[..c.len()].copy_from_slice(&src[c.clone()]);
            }
            let shape = Shape4::new(n, h, w, c.len() as u32);
            (v, Act4 { shape, cs })
        };
        let (a, b2) = match split {
            Some(k) => (part(0..k), Some(part(k..ic))),
            None => ((x.clone(), xs), None),
        };
        let more: Vec<(&[f32], Act4)> = b2.iter().map(|(v, g)| (&v[..], *g)).collect();
        run(&mut ConvArgs {
            conv: &conv,
            x: &a.0,
            xs: a.1,
            w: &packed,
            bias: bias.then_some(&b[..]),
            residual: residual.then_some(&r[..]),
            y: &mut y,
            ys,
            scratch: &mut scratch,
            rows: rows.clone(),
            parts: &more,
        });
        let ow = w as usize;
        let q = |v: f32| quantize(v) as f64;
        for p in 0..pixels {
            let inside = (rows.start * ow..rows.end * ow).contains(&p);
            for o in 0..ycs {
                let got = y[p * ycs + o];
                if !inside {
                    assert!(got.is_nan(), "wrote outside its rows");
                    continue;
                }
                if o >= oc {
                    assert_eq!(got, 0.0, "pad lane {o} of pixel {p}");
                    continue;
                }
                let mut sum = if bias { b[o] as f64 } else { 0.0 };
                let mut scale = sum.abs();
                for i in 0..ic {
                    let t = q(x[p * xcs + i]) * q(wc[o * ic + i]);
                    sum += t;
                    scale += t.abs();
                }
                if residual {
                    sum += r[p * ycs + o] as f64;
                    scale += (r[p * ycs + o] as f64).abs();
                }
                let want = act.apply(sum as f32);
                // f32 accumulation of `ic` terms, and the activation's few ulp.
                let tol = 4e-7 * (ic as f64 + 2.0) * scale + 1e-5 * (want as f64).abs() + 1e-30;
                assert!(
                    ((got - want) as f64).abs() <= tol,
                    "ic {ic} oc {oc} pixel {p} channel {o}: {got} vs {want} (tol {tol})"
                );
            }
        }
    }

    /// Shapes around the vector and block edges, with channel strides past the counts, row
    /// ranges, bias, residual and the activations the store applies.
    pub(crate) fn suite(
        run: fn(&mut ConvArgs),
        nb: usize,
        scratch: fn(&Conv, Act4, Act4) -> usize,
    ) {
        let kernel = (run, nb, scratch);
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Silu,
            Activation::HardSwish,
        ];
        let mut seed = 7u64;
        for &ic in &[1usize, 2, 3, 16, 17, 31, 32, 33, 64, 100, 384] {
            for &oc in &[1usize, 5, 16, 32, 40, 64, 96] {
                seed += 1;
                let s = seed as usize;
                let act = acts[s % acts.len()];
                let (n, h, w) = (1 + (s % 2) as u32, 1 + (s % 5) as u32, 1 + (s % 13) as u32);
                let xcs = ic.next_multiple_of(16) + 16 * (s % 2);
                let ycs = oc.next_multiple_of(16) + 16 * (s / 2 % 2);
                let rows = (n * h) as usize;
                let cut = if s.is_multiple_of(3) {
                    (rows / 2)..rows
                } else {
                    0..rows
                };
                let opts = (s.is_multiple_of(2), s % 4 < 2, act);
                // Also the same input read as two parts, the first of an even channel count,
                // over all the rows.
                let parts = (ic >= 3).then(|| ((ic / 3) & !1).max(2));
                let whole = parts.map(|k| (Some(k), 0..rows));
                for (split, cut) in std::iter::once((None, cut)).chain(whole) {
                    let shape = ((ic, oc), (n, h, w), (xcs, ycs));
                    check(kernel, shape, opts, cut, (split, seed));
                }
            }
        }
        // A map larger than one chunk, at many input channels, whole and in two parts.
        let big = ((1536, 64), (1, 9, 11), (1536, 64));
        let opts = (true, true, Activation::Relu);
        check(kernel, big, opts, 0..9, (None, 99));
        check(kernel, big, opts, 0..9, (Some(512), 98));
    }
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
