//! Elementwise and per-pixel kernels of the x86 tables, over [`Isa`]: `add`, `mul` (also
//! the squeeze-excite gate, one scale per channel), `act`, `channel_affine`, `pool` (max
//! and average windows) and `global_avg_pool`. They are memory-bound; written once over full vectors, with masked
//! loads and stores only at the channel tail, they run at the ISA's width instead of the
//! portable table's baseline SSE2.
//!
//! Contracts as in [`crate::kernels::KernelTable`]: every lane of every pixel of the output
//! is written, the pad lanes (channels `c..cs`) as zero.

use super::isa::Isa;
use crate::graph::{Activation, Pool, PoolKind};
use crate::kernels::portable::pool::Window;
use crate::kernels::Act4;

/// Writes the `cs` lanes of one output pixel at `y`, a vector at a time: `f(j, n)` computes
/// the vector whose first channel is `j` and whose first `n` lanes hold channels (`LANES`,
/// or fewer at the channel tail, where the kernels' `load_upto` fills the others with
/// zeros). Lanes past the channels are stored as zero, whatever `f` left in them (an
/// activation of 0 need not be 0), and vectors of pad lanes only are zeros.
#[inline(always)]
unsafe fn store_pixel<I: Isa>(
    y: *mut f32,
    c: usize,
    cs: usize,
    mut f: impl FnMut(usize, usize) -> I::V,
) {
    let mut j = 0;
    while j < cs {
        let m = (cs - j).min(I::LANES);
        let n = c.saturating_sub(j).min(I::LANES);
        // `f` is called at one place only, so that it is inlined into the
        // `#[target_feature]` entry (a closure compiled on its own lacks the features).
        let v = if n == 0 { I::zero() } else { f(j, n) };
        let v = if n > 0 && n < I::LANES {
            keep::<I>(v, n)
        } else {
            v
        };
        I::store_upto(y.add(j), m, v);
        j += I::LANES;
    }
}

/// `y = act(a + b)`; all three have geometry `ys`.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn add<I: Isa>(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    let (c, cs, len) = (ys.shape.c as usize, ys.cs, ys.len());
    assert!(a.len() >= len && b.len() >= len && y.len() >= len);
    let (a, b, y) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr());
    for p in (0..len).step_by(cs.max(1)) {
        store_pixel::<I>(y.add(p), c, cs, |j, n| {
            let (a, b) = (I::load_upto(a.add(p + j), n), I::load_upto(b.add(p + j), n));
            I::act(act, I::add(a, b))
        });
    }
}

/// `v` with lanes `n..` set to zero (`0 < n < LANES`).
#[inline(always)]
unsafe fn keep<I: Isa>(v: I::V, n: usize) -> I::V {
    let mut buf = [0f32; 16];
    I::store_n(buf.as_mut_ptr(), n, v);
    I::load_n(buf.as_ptr(), n)
}

/// `y = a * b`, `b` of geometry `bs`: equal to `ys`, or `(N, 1, 1, C)` (one scale per
/// channel of each image).
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn mul<I: Isa>(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4) {
    let (c, cs, len) = (ys.shape.c as usize, ys.cs, ys.len());
    let pixels = ys.shape.h as usize * ys.shape.w as usize;
    let per_channel = bs.shape.h == 1 && bs.shape.w == 1;
    assert!(a.len() >= len && y.len() >= len && b.len() >= bs.len());
    assert!(if per_channel {
        bs.shape.n == ys.shape.n && bs.shape.c == ys.shape.c
    } else {
        bs.shape == ys.shape
    });
    assert!(bs.cs >= c);
    let (a, b, y) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr());
    for (q, p) in (0..len).step_by(cs.max(1)).enumerate() {
        let bp = b.add(if per_channel { q / pixels.max(1) } else { q } * bs.cs);
        store_pixel::<I>(y.add(p), c, cs, |j, n| {
            I::mul(I::load_upto(a.add(p + j), n), I::load_upto(bp.add(j), n))
        });
    }
}

/// `y = act(x)`, both of geometry `ys`.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn act<I: Isa>(x: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    let (c, cs, len) = (ys.shape.c as usize, ys.cs, ys.len());
    assert!(x.len() >= len && y.len() >= len);
    let (x, y) = (x.as_ptr(), y.as_mut_ptr());
    for p in (0..len).step_by(cs.max(1)) {
        store_pixel::<I>(y.add(p), c, cs, |j, n| {
            I::act(act, I::load_upto(x.add(p + j), n))
        });
    }
}

/// `y = act(x * scale[c] + shift[c])`, both of geometry `ys`.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn channel_affine<I: Isa>(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
    ys: Act4,
    act: Activation,
) {
    let (c, cs, len) = (ys.shape.c as usize, ys.cs, ys.len());
    assert!(x.len() >= len && y.len() >= len && scale.len() >= c && shift.len() >= c);
    let (x, y, sc, sh) = (x.as_ptr(), y.as_mut_ptr(), scale.as_ptr(), shift.as_ptr());
    for p in (0..len).step_by(cs.max(1)) {
        store_pixel::<I>(y.add(p), c, cs, |j, n| {
            let v = I::fmadd(
                I::load_upto(x.add(p + j), n),
                I::load_upto(sc.add(j), n),
                I::load_upto(sh.add(j), n),
            );
            I::act(act, v)
        });
    }
}

/// LayerNorm over the channels of each pixel (see [`crate::kernels::KernelTable::layer_norm`]):
/// the mean, the variance as the mean of the squared deviations (a second pass over the
/// pixel's channels, which are in L1 by then), then the channels normalised, scaled and
/// shifted, in the order of [`crate::ops::layer_norm`].
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn layer_norm<I: Isa>(
    x: &[f32],
    xs: Act4,
    scale: &[f32],
    shift: &[f32],
    eps: f32,
    y: &mut [f32],
    ys: Act4,
) {
    let (c, pixels) = (ys.shape.c as usize, ys.shape.pixels() as usize);
    assert!(xs.shape == ys.shape && xs.cs >= c && x.len() >= xs.span());
    assert!(y.len() >= ys.len() && scale.len() >= c && shift.len() >= c);
    if c == 0 {
        return y[..ys.len()].fill(0.0);
    }
    let lanes = I::LANES;
    // Ones in the first `n` lanes (`load_n`), to clear the deviations past the channels.
    let ones = [1.0f32; 16];
    let (x, y, sc, sh) = (x.as_ptr(), y.as_mut_ptr(), scale.as_ptr(), shift.as_ptr());
    let per_c = 1.0 / c as f32;
    for p in 0..pixels {
        let (xp, yp) = (x.add(p * xs.cs), y.add(p * ys.cs));
        // Two accumulators each, so that the adds of consecutive vectors do not wait on each
        // other; the tail vector's lanes past the channels are loaded as zeros, and its
        // deviations there are cleared.
        let (mut a, mut b) = (I::zero(), I::zero());
        let mut j = 0;
        while j + 2 * lanes <= c {
            a = I::add(a, I::load(xp.add(j)));
            b = I::add(b, I::load(xp.add(j + lanes)));
            j += 2 * lanes;
        }
        if j + lanes <= c {
            a = I::add(a, I::load(xp.add(j)));
            j += lanes;
        }
        if j < c {
            b = I::add(b, I::load_n(xp.add(j), c - j));
        }
        let m = I::splat(I::reduce_add(I::add(a, b)) * per_c);
        let (mut a, mut b) = (I::zero(), I::zero());
        let mut j = 0;
        while j + 2 * lanes <= c {
            let (d, e) = (
                I::sub(I::load(xp.add(j)), m),
                I::sub(I::load(xp.add(j + lanes)), m),
            );
            a = I::fmadd(d, d, a);
            b = I::fmadd(e, e, b);
            j += 2 * lanes;
        }
        if j + lanes <= c {
            let d = I::sub(I::load(xp.add(j)), m);
            a = I::fmadd(d, d, a);
            j += lanes;
        }
        if j < c {
            let d = I::sub(I::load_n(xp.add(j), c - j), m);
            let d = I::mul(d, I::load_n(ones.as_ptr(), c - j));
            b = I::fmadd(d, d, b);
        }
        let var = I::reduce_add(I::add(a, b)) * per_c;
        let inv = I::splat(1.0 / (var + eps).sqrt());
        store_pixel::<I>(yp, c, ys.cs, |j, n| {
            let d = I::mul(I::sub(I::load_upto(xp.add(j), n), m), inv);
            I::fmadd(d, I::load_upto(sc.add(j), n), I::load_upto(sh.add(j), n))
        });
    }
}

/// Mean over H and W: `(N, H, W, C)` to `(N, 1, 1, C)`.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn global_avg_pool<I: Isa>(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let (n, c) = (xs.shape.n as usize, xs.shape.c as usize);
    let pixels = xs.shape.h as usize * xs.shape.w as usize;
    assert!(x.len() >= xs.span() && y.len() >= ys.len() && ys.shape.n as usize == n);
    assert!(ys.shape.c as usize == c && xs.cs >= c && ys.cs >= c);
    let scale = I::splat(1.0 / pixels.max(1) as f32);
    let (x, y) = (x.as_ptr(), y.as_mut_ptr());
    for b in 0..n {
        let xb = x.add(b * pixels * xs.cs);
        let yb = y.add(b * ys.cs);
        // Four vectors of channels at a time, with two accumulators each (even and odd
        // pixels) so that the adds do not wait on one another.
        let mut j = 0;
        while j < c {
            let mut acc = [[I::zero(); 4]; 2];
            let w = c - j;
            for p in 0..pixels {
                let s = &mut acc[p & 1];
                let px = xb.add(p * xs.cs + j);
                for (k, a) in s.iter_mut().enumerate() {
                    let at = k * I::LANES;
                    if at < w {
                        *a = I::add(*a, I::load_upto(px.add(at), w - at));
                    }
                }
            }
            for (k, (&a0, &a1)) in acc[0].iter().zip(&acc[1]).enumerate() {
                let at = k * I::LANES;
                if at < w {
                    let v = I::mul(I::add(a0, a1), scale);
                    I::store_upto(yb.add(j + at), w - at, v);
                }
            }
            j += 4 * I::LANES;
        }
        std::ptr::write_bytes(yb.add(c), 0, ys.cs - c);
    }
}

/// Max or average pooling of `x` (geometry `xs`) into channels `c0 ..` of `y` (geometry
/// `ys`; see [`crate::kernels::KernelTable::pool`]), with the semantics of the portable
/// `pool`: taps in the explicit or ceil-mode padding are skipped,
/// a window with no input tap gives 0, and an average divides by the taps inside the input
/// (or inside input plus explicit padding, with `count_include_pad`).
///
/// Each output pixel keeps four channel vectors in registers across its window, whose taps
/// inside the input are two ranges computed once (no test per tap); only the channel tail
/// uses masked loads and stores.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn pool<I: Isa>(
    p: &Pool,
    x: &[f32],
    xs: Act4,
    y: &mut [f32],
    ys: Act4,
    c0: usize,
) {
    let u = |v: u32| v as usize;
    let (ih, iw, c, xcs) = (u(xs.shape.h), u(xs.shape.w), u(xs.shape.c), xs.cs);
    let (oh, ow, ycs) = (u(ys.shape.h), u(ys.shape.w), ys.cs);
    let win = Window::new(p, xs);
    assert!(x.len() >= xs.len() && y.len() >= ys.len());
    assert!(ys.shape.n == xs.shape.n && c0 + c <= u(ys.shape.c) && xcs >= c && ycs >= c0 + c);
    // The part ending at the last channel writes the pad lanes.
    let pad = if c0 + c == u(ys.shape.c) {
        ycs - c0 - c
    } else {
        0
    };
    let x = x.as_ptr();
    // Floats from one tap to the next, down and across.
    let (dh, dw) = win.dilation();
    let (step_y, step_x) = (dh * iw * xcs, dw * xcs);
    for row in 0..ys.rows() {
        let (n, oy) = (row / oh, row % oh);
        let kys = win.row_taps(oy);
        for ox in 0..ow {
            let yp = y.as_mut_ptr().add((row * ow + ox) * ycs + c0);
            let kxs = win.col_taps(ox);
            let (rows, cols) = (kys.len(), kxs.len());
            let count = rows * cols;
            let divisor = win.divisor(p.kind, count, oy, ox);
            // No input tap (a window wholly in padding): 0. (A window with taps has a divisor:
            // 1 for max, at least `count` for average.)
            let empty = count == 0;
            let first = if empty {
                x
            } else {
                let (iy, ix) = win.input_at(oy, ox, kys.start, kxs.start);
                x.add(((n * ih + iy) * iw + ix) * xcs)
            };
            let taps = Taps {
                first,
                rows,
                cols,
                step_y,
                step_x,
            };
            let scale = I::splat(1.0 / divisor.max(1) as f32);
            let out = |v: I::V| {
                if empty {
                    I::zero()
                } else if matches!(p.kind, PoolKind::Max) {
                    v
                } else {
                    I::mul(v, scale)
                }
            };
            let mut j = 0;
            while j + 4 * I::LANES <= c {
                let acc = match p.kind {
                    PoolKind::Max => taps.reduce::<I, 4, true>(j, [I::LANES; 4]),
                    PoolKind::Avg { .. } => taps.reduce::<I, 4, false>(j, [I::LANES; 4]),
                };
                for (k, &a) in acc.iter().enumerate() {
                    I::store(yp.add(j + k * I::LANES), out(a));
                }
                j += 4 * I::LANES;
            }
            while j < c {
                let n = (c - j).min(I::LANES);
                let [a] = match p.kind {
                    PoolKind::Max => taps.reduce::<I, 1, true>(j, [n]),
                    PoolKind::Avg { .. } => taps.reduce::<I, 1, false>(j, [n]),
                };
                I::store_upto(yp.add(j), n, out(a));
                j += I::LANES;
            }
            std::ptr::write_bytes(yp.add(c), 0, pad);
        }
    }
}

/// The taps of one pool window that lie inside the input: `rows x cols` pixels from `first`,
/// `step_y` and `step_x` floats apart.
struct Taps {
    first: *const f32,
    rows: usize,
    cols: usize,
    step_y: usize,
    step_x: usize,
}

impl Taps {
    /// The maximum (`MAX`) or sum of `V` vectors of channels from `j` over the taps, vector
    /// `k` reading `n[k]` lanes (masked below `LANES`).
    ///
    /// # Safety
    /// Every tap holds channels `j ..` up to each vector's lanes; the ISA is available.
    #[inline(always)]
    unsafe fn reduce<I: Isa, const V: usize, const MAX: bool>(
        &self,
        j: usize,
        n: [usize; V],
    ) -> [I::V; V] {
        let mut acc = [I::splat(if MAX { f32::NEG_INFINITY } else { 0.0 }); V];
        let mut rp = self.first.add(j);
        for _ in 0..self.rows {
            let mut px = rp;
            for _ in 0..self.cols {
                for k in 0..V {
                    let v = if n[k] >= I::LANES {
                        I::load(px.add(k * I::LANES))
                    } else {
                        I::load_n(px.add(k * I::LANES), n[k])
                    };
                    acc[k] = if MAX {
                        I::max(acc[k], v)
                    } else {
                        I::add(acc[k], v)
                    };
                }
                px = px.wrapping_add(self.step_x);
            }
            rp = rp.wrapping_add(self.step_y);
        }
        acc
    }
}
