//! Max, average and global average pooling over NHWC, channels as the inner loop.

use crate::graph::{Pool, PoolKind};
use crate::kernels::Act4;
use std::ops::Range;

/// The windows of a pool over an input: which taps of an output pixel's window fall inside
/// the input, and what an average divides by. Shared by every table's pool, so that they
/// agree on the padding rules.
pub(crate) struct Window {
    ih: usize,
    iw: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    pb: usize,
    pr: usize,
}

impl Window {
    /// The windows of `p` over an input of geometry `xs`.
    pub(crate) fn new(p: &Pool, xs: Act4) -> Self {
        let u = |v: u32| v as usize;
        let [kh, kw] = p.kernel.map(u);
        let [sh, sw] = p.stride.map(u);
        let [dh, dw] = p.dilation.map(u);
        let [pt, pl, pb, pr] = p.pads.map(u);
        let (ih, iw) = (u(xs.shape.h), u(xs.shape.w));
        Window {
            ih,
            iw,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pt,
            pl,
            pb,
            pr,
        }
    }

    /// The input coordinates of tap `(ky, kx)` of output `(oy, ox)`, a tap inside the input
    /// ([`Window::row_taps`], [`Window::col_taps`]).
    pub(crate) fn input_at(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> (usize, usize) {
        (
            oy * self.sh + ky * self.dh - self.pt,
            ox * self.sw + kx * self.dw - self.pl,
        )
    }

    /// The dilations: input rows and columns from one tap to the next (for the x86 pool,
    /// which steps through a window's taps by pointer).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn dilation(&self) -> (usize, usize) {
        (self.dh, self.dw)
    }

    /// The tap rows `ky` of output row `oy` that fall inside the input (a range: the taps
    /// above the input come first, those below it last).
    pub(crate) fn row_taps(&self, oy: usize) -> Range<usize> {
        inside_taps(oy * self.sh, self.kh, self.dh, self.pt, self.ih)
    }

    /// The tap columns `kx` of output column `ox` that fall inside the input.
    pub(crate) fn col_taps(&self, ox: usize) -> Range<usize> {
        inside_taps(ox * self.sw, self.kw, self.dw, self.pl, self.iw)
    }

    /// What the window of output `(oy, ox)` divides its sum by, `count` of its taps being
    /// inside the input: 1 for a max, `count`, or the taps inside the input plus its
    /// explicit padding with `count_include_pad`.
    pub(crate) fn divisor(&self, kind: PoolKind, count: usize, oy: usize, ox: usize) -> usize {
        match kind {
            PoolKind::Max => 1,
            PoolKind::Avg {
                count_include_pad: false,
            } => count,
            PoolKind::Avg {
                count_include_pad: true,
            } => {
                included_taps(oy, self.kh, self.sh, self.dh, self.pt, self.pb, self.ih)
                    * included_taps(ox, self.kw, self.sw, self.dw, self.pl, self.pr, self.iw)
            }
        }
    }
}

/// The taps `t < k` of one window axis whose coordinate `base + t * d - p` (with `base`
/// the output coordinate times the stride) lies in `0..size`.
fn inside_taps(base: usize, k: usize, d: usize, p: usize, size: usize) -> Range<usize> {
    // Without dilation (the common case) there is nothing to divide: a division per pixel
    // would cost more than a small window's loads.
    let (lo, hi) = if d <= 1 {
        (p.saturating_sub(base), (size + p).saturating_sub(base))
    } else if base >= size + p {
        (0, 0)
    } else {
        (
            p.saturating_sub(base).div_ceil(d),
            (size + p - base - 1) / d + 1,
        )
    };
    let hi = hi.min(k);
    lo.min(hi)..hi
}

/// Taps of one window axis inside `[-p0, size + p1)`: the input plus its explicit padding
/// (not the ceil-mode padding), which is what `count_include_pad` divides by.
fn included_taps(
    o: usize,
    k: usize,
    s: usize,
    d: usize,
    p0: usize,
    p1: usize,
    size: usize,
) -> usize {
    // `o * s + t * d` is the tap's input coordinate plus `p0`, never below `-p0`.
    (0..k).filter(|&t| o * s + t * d < size + p0 + p1).count()
}

/// Max or average pooling of `x` into channels `c0 .. c0 + xs.shape.c` of `y` (see
/// [`crate::kernels::KernelTable::pool`]).
pub(crate) fn pool(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize) {
    let u = |v: u32| v as usize;
    let (ih, iw, c, xcs) = (u(xs.shape.h), u(xs.shape.w), u(xs.shape.c), xs.cs);
    let (oh, ow, ycs) = (u(ys.shape.h), u(ys.shape.w), ys.cs);
    let win = Window::new(p, xs);
    debug_assert!(x.len() >= xs.len() && y.len() >= ys.len());
    debug_assert!(ys.shape.n == xs.shape.n && c0 + c <= u(ys.shape.c));
    // The part ending at the last channel writes the pad lanes.
    let end = if c0 + c == u(ys.shape.c) { ycs } else { c0 + c };
    let max = matches!(p.kind, PoolKind::Max);
    for row in 0..ys.rows() {
        let (n, oy) = (row / oh, row % oh);
        for ox in 0..ow {
            let yp = (row * ow + ox) * ycs;
            let (out, pad) = y[yp + c0..yp + end].split_at_mut(c);
            pad.fill(0.0);
            out.fill(if max { f32::NEG_INFINITY } else { 0.0 });
            let (kys, kxs) = (win.row_taps(oy), win.col_taps(ox));
            let count = kys.len() * kxs.len();
            for ky in kys {
                for kx in kxs.clone() {
                    let (iy, ix) = win.input_at(oy, ox, ky, kx);
                    let xp = ((n * ih + iy) * iw + ix) * xcs;
                    let src = &x[xp..xp + c];
                    if max {
                        out.iter_mut().zip(src).for_each(|(o, &v)| *o = o.max(v));
                    } else {
                        out.iter_mut().zip(src).for_each(|(o, &v)| *o += v);
                    }
                }
            }
            let divisor = win.divisor(p.kind, count, oy, ox);
            // No input tap (a window wholly in padding), or nothing to divide by: 0.
            if count == 0 || divisor == 0 {
                out.fill(0.0);
            } else if !max {
                let d = divisor as f32;
                out.iter_mut().for_each(|o| *o /= d);
            }
        }
    }
}

/// Mean over H and W: `(N, H, W, C)` to `(N, 1, 1, C)`.
pub(crate) fn global_avg_pool(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let (n, c) = (xs.shape.n as usize, xs.shape.c as usize);
    let pixels = xs.shape.h as usize * xs.shape.w as usize;
    debug_assert!(x.len() >= xs.span() && y.len() >= ys.len());
    let scale = 1.0 / pixels.max(1) as f32;
    for b in 0..n {
        let (out, pad) = y[b * ys.cs..(b + 1) * ys.cs].split_at_mut(c);
        out.fill(0.0);
        pad.fill(0.0);
        for p in 0..pixels {
            let xp = (b * pixels + p) * xs.cs;
            out.iter_mut()
                .zip(&x[xp..xp + c])
                .for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o *= scale);
    }
}
