//! The test harness of the reduced-precision pointwise kernels (bf16, f16) of every
//! architecture: a kernel's output against the f64 definition of its arithmetic
//! ([`bf16::dot`](super::bf16::dot), [`f16::dot`](super::f16::dot)), over shapes around the
//! vector and block edges, channel strides, row ranges, bias, residual, the activations the
//! store applies, and concatenations read in place; and of the reduced-precision fully
//! connected kernels ([`fc_suite`]).

use crate::graph::{Activation, Conv, Fc, Layout, Shape4};
use crate::kernels::{Act4, ConvArgs, DotFn, FcArgs, PackFn};

/// A reduced-precision pointwise kernel and its arithmetic.
pub(crate) struct Pointwise {
    /// The kernel's entry point.
    pub run: fn(&mut ConvArgs),
    /// Its scratch length.
    pub scratch: fn(&Conv, Act4, Act4) -> usize,
    /// The block (output channels) of the f32 weights it packs from (`ConvOcBlock(nb)`).
    pub nb: usize,
    /// Its weight packing, as the session calls it.
    pub pack: PackFn,
    /// What it computes for one output, without bias: (sum, sum of the products'
    /// magnitudes, f32 additions made).
    pub dot: DotFn,
    /// The multiple of which every concatenation part but the last must have its channel
    /// count (1: any).
    pub part_multiple: usize,
}

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
/// rows `rows` of it, through the kernel, against its arithmetic's definition. The inputs
/// are of magnitude `mag.0` (up to 8 times more or less from pixel to pixel), the weights
/// of `mag.1` (so from output channel to output channel), bias and residual of their
/// product.
#[allow(clippy::type_complexity)]
fn check(
    k: &Pointwise,
    ((ic, oc), (n, h, w), (xcs, ycs)): ((usize, usize), (u32, u32, u32), (usize, usize)),
    (bias, residual, act): (bool, bool, Activation),
    rows: std::ops::Range<usize>,
    (split, seed, mag): (Option<usize>, u64, (f32, f32)),
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
    let spread = |i: usize| 8f32.powi(i as i32 % 3 - 1);
    let mut x = vec![0f32; xs.len()];
    for (p, px) in x.chunks_exact_mut(xcs).enumerate() {
        for v in &mut px[..ic] {
            *v = rng.next() * 4.0 * mag.0 * spread(p);
        }
    }
    let wc: Vec<f32> = (0..oc * ic)
        .map(|i| rng.next() * mag.1 * spread(i / ic))
        .collect();
    let b: Vec<f32> = (0..oc).map(|_| rng.next() * mag.0 * mag.1).collect();
    let r: Vec<f32> = (0..ys.len()).map(|_| rng.next() * mag.0 * mag.1).collect();
    let nb = k.nb;
    let blocks = oc.div_ceil(nb);
    let mut blocked = vec![0f32; blocks * ic * nb];
    for o in 0..oc {
        for i in 0..ic {
            blocked[((o / nb) * ic + i) * nb + o % nb] = wc[o * ic + i];
        }
    }
    let packed = (k.pack)(&blocked, Layout::ConvOcBlock(nb as u16), ic, oc).unwrap();
    let packed: Vec<f32> = packed.iter().map(|&v| f32::from_bits(v)).collect();
    let mut y = vec![f32::NAN; ys.len()];
    let mut scratch = vec![f32::NAN; (k.scratch)(&conv, xs, ys)];
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
    (k.run)(&mut ConvArgs {
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
            let (dot, mags, adds) = (k.dot)(&x[p * xcs..][..ic], &wc[o * ic..][..ic]);
            let bias = if bias { b[o] as f64 } else { 0.0 };
            let (mut sum, mut scale) = (dot + bias, mags + bias.abs());
            if residual {
                sum += r[p * ycs + o] as f64;
                scale += (r[p * ycs + o] as f64).abs();
            }
            let want = act.apply(sum as f32);
            // f32 accumulation of `adds` terms, and the activation's few ulp.
            let tol = 4e-7 * (adds as f64 + 2.0) * scale + 1e-5 * (want as f64).abs() + 1e-30;
            assert!(
                ((got - want) as f64).abs() <= tol,
                "ic {ic} oc {oc} pixel {p} channel {o}: {got} vs {want} (tol {tol})"
            );
        }
    }
}

/// Shapes around the vector and block edges, with channel strides past the counts, row
/// ranges, bias, residual and the activations the store applies.
pub(crate) fn suite(kernel: &Pointwise) {
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
            // Also the same input read as two parts over all the rows, the first of a
            // channel count of the multiple the kernel needs, else an odd one.
            let m = kernel.part_multiple;
            let parts = (ic >= 3 && ic > m).then(|| match m {
                1 => (ic / 3) | 1,
                _ => (ic / 3 / m * m).max(m),
            });
            let whole = parts.map(|k| (Some(k), 0..rows));
            for (split, cut) in std::iter::once((None, cut)).chain(whole) {
                let shape = ((ic, oc), (n, h, w), (xcs, ycs));
                check(kernel, shape, opts, cut, (split, seed, (1.0, 1.0)));
            }
        }
    }
    // A map larger than one chunk, at many input channels, whole and in two parts.
    let big = ((1536, 64), (1, 9, 11), (1536, 64));
    let opts = (true, true, Activation::Relu);
    check(kernel, big, opts, 0..9, (None, 99, (1.0, 1.0)));
    check(kernel, big, opts, 0..9, (Some(512), 98, (1.0, 1.0)));
    // Magnitudes far from 1 (beyond the f16 range either way: an untrained network's
    // activations of 1e-9, a detector's of 1e4), whole and in two parts.
    let mags = [(1e-9, 1e-3), (3e3, 40.0), (1e-6, 1e5), (2e4, 1e-7)];
    for (i, &mag) in mags.iter().enumerate() {
        for (j, &(ic, oc)) in [(17usize, 40usize), (100, 16), (384, 96)]
            .iter()
            .enumerate()
        {
            let seed = 200 + (3 * i + j) as u64;
            let shape = (
                (ic, oc),
                (1, 3, 5),
                (ic.next_multiple_of(16), oc.next_multiple_of(16)),
            );
            let opts = (true, j != 1, Activation::None);
            let split = match kernel.part_multiple {
                1 => 11,
                2 => 10,
                m => 12 / m * m,
            };
            check(kernel, shape, opts, 0..3, (None, seed, mag));
            check(kernel, shape, opts, 0..3, (Some(split), seed, mag));
        }
    }
}

/// A reduced-precision fully connected kernel and its arithmetic.
pub(crate) struct FullyConnected {
    /// The kernel's entry point.
    pub run: fn(&mut FcArgs),
    /// The block (outputs) of its `FcOcBlock(nb)` weights.
    pub nb: usize,
    /// Its weight packing, as the session calls it (from `FcOcBlock(nb)`).
    pub pack: PackFn,
    /// What it computes for one output, without bias.
    pub dot: DotFn,
    /// The input pixels per item it takes.
    pub pixels: &'static [usize],
}

/// One layer of `pixels x c` inputs and `of` outputs over `n` items (channel strides `xcs`,
/// `ycs`), in `shares` thread shares, against the kernel's definition. Weights of very
/// different magnitudes from output to output.
#[allow(clippy::type_complexity)]
fn check_fc(
    k: &FullyConnected,
    (n, pixels, c, of): (usize, usize, usize, usize),
    (xcs, ycs): (usize, usize),
    (bias, act, shares): (bool, Activation, usize),
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let inf = pixels * c;
    let fc = Fc {
        in_features: inf as u32,
        out_features: of as u32,
        weight: 0,
        bias: bias.then_some(1),
        act,
    };
    let side = if pixels.is_multiple_of(2) { 2 } else { 1 };
    let xs = Act4 {
        shape: Shape4::new(n as u32, side, (pixels / side as usize) as u32, c as u32),
        cs: xcs,
    };
    let ys = Act4 {
        shape: Shape4::new(n as u32, 1, 1, of as u32),
        cs: ycs,
    };
    let mut x = vec![0f32; xs.len()];
    for px in x.chunks_exact_mut(xcs) {
        for v in &mut px[..c] {
            *v = rng.next() * 3.0;
        }
    }
    // Canonical `[of][inf]`, in NHWC input order.
    let wc: Vec<f32> = (0..of * inf)
        .map(|i| rng.next() * 10f32.powi((i / inf) as i32 % 7 * 2 - 6))
        .collect();
    let b: Vec<f32> = (0..of).map(|_| rng.next()).collect();
    let nb = k.nb;
    let mut blocked = vec![0f32; of.div_ceil(nb) * inf * nb];
    for o in 0..of {
        for i in 0..inf {
            blocked[((o / nb) * inf + i) * nb + o % nb] = wc[o * inf + i];
        }
    }
    let packed = (k.pack)(&blocked, Layout::FcOcBlock(nb as u16), inf, of).unwrap();
    let packed: Vec<f32> = packed.iter().map(|&v| f32::from_bits(v)).collect();
    let mut y = vec![f32::NAN; ys.len()];
    for t in 0..shares {
        (k.run)(&mut FcArgs {
            fc: &fc,
            x: &x,
            xs,
            w: &packed,
            bias: bias.then_some(&b[..]),
            y: &mut y,
            ys,
            share: (t, shares),
        });
    }
    for item in 0..n {
        // The item's inputs in NHWC order, without pad lanes.
        let xi: Vec<f32> = (0..pixels)
            .flat_map(|p| x[(item * pixels + p) * xcs..][..c].to_vec())
            .collect();
        for o in 0..ycs {
            let got = y[item * ycs + o];
            if o >= of {
                assert_eq!(got, 0.0, "pad lane {o} of item {item}");
                continue;
            }
            let (dot, mags, adds) = (k.dot)(&xi, &wc[o * inf..][..inf]);
            let bias = if bias { b[o] as f64 } else { 0.0 };
            let want = act.apply((dot + bias) as f32);
            let tol = 4e-7 * (adds as f64 + 2.0) * (mags + bias.abs())
                + 1e-5 * (want as f64).abs()
                + 1e-30;
            assert!(
                ((got - want) as f64).abs() <= tol,
                "inputs {inf} outputs {of} item {item} output {o}: {got} vs {want} (tol {tol})"
            );
        }
    }
}

/// Input and output counts around the vector, pair and block edges, the kernel's pixel
/// counts, batches of 1-10, padded strides, bias, activations, 1-4 thread shares, and
/// classifier sizes in 2 and 3 shares.
pub(crate) fn fc_suite(k: &FullyConnected) {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::HardSwish,
    ];
    let nb = k.nb;
    let mut seed = 11u64;
    for &pixels in k.pixels {
        for &c in &[1usize, 2, 3, 4, 7, 8, 17, 32, 33, 100, 577] {
            for &of in &[1usize, 5, 8, 9, 16, 17, 48, 65, 130] {
                seed += 1;
                let s = seed as usize;
                let n = 1 + s % 10;
                let strides = (
                    c.next_multiple_of(nb) + nb * (s % 2),
                    of.next_multiple_of(nb),
                );
                let opts = (!s.is_multiple_of(3), acts[s % acts.len()], 1 + s % 4);
                check_fc(k, (n, pixels, c, of), strides, opts, seed);
            }
        }
    }
    let none = Activation::None;
    check_fc(k, (1, 1, 1280, 1000), (1280, 1008), (true, none, 2), 5);
    check_fc(k, (2, 1, 576, 1000), (576, 1008), (true, none, 3), 6);
}
