//! Max, average and global average pooling over NHWC, channels as the inner loop.

use crate::graph::{Pool, PoolKind};
use crate::kernels::Act4;

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

    /// Window rows and columns.
    pub(crate) fn kernel(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// Input row of tap row `ky` of output row `oy`, or `None` in the padding.
    pub(crate) fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&v| v < self.ih)
    }

    /// Input column of tap column `kx` of output column `ox`, or `None` in the padding.
    pub(crate) fn col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx * self.dw)
            .checked_sub(self.pl)
            .filter(|&v| v < self.iw)
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
    let (kh, kw) = win.kernel();
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
            let mut count = 0usize;
            for ky in 0..kh {
                let Some(iy) = win.row(oy, ky) else {
                    continue;
                };
                for kx in 0..kw {
                    let Some(ix) = win.col(ox, kx) else {
                        continue;
                    };
                    count += 1;
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
    debug_assert!(x.len() >= xs.len() && y.len() >= ys.len());
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
