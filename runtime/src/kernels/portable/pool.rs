//! Max, average and global average pooling over NHWC, channels as the inner loop.

use crate::graph::{Pool, PoolKind};
use crate::kernels::Act4;

/// Taps of one window axis inside `[-p0, size + p1)`: the input plus its explicit padding
/// (not the ceil-mode padding), which is what `count_include_pad` divides by.
pub(crate) fn included_taps(
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

/// Max or average pooling of `x` into `y`.
pub(crate) fn pool(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let u = |v: u32| v as usize;
    let (ih, iw, c, xcs) = (u(xs.shape.h), u(xs.shape.w), u(xs.shape.c), xs.cs);
    let (oh, ow, ycs) = (u(ys.shape.h), u(ys.shape.w), ys.cs);
    let [kh, kw] = p.kernel.map(u);
    let [sh, sw] = p.stride.map(u);
    let [dh, dw] = p.dilation.map(u);
    let [pt, pl, pb, pr] = p.pads.map(u);
    debug_assert!(x.len() >= xs.len() && y.len() >= ys.len());
    debug_assert!(ys.shape.n == xs.shape.n && ys.shape.c == xs.shape.c);
    let in_range = |o: usize, k: usize, s: usize, d: usize, p0: usize, size: usize| {
        (o * s + k * d).checked_sub(p0).filter(|&v| v < size)
    };
    for row in 0..ys.rows() {
        let (n, oy) = (row / oh, row % oh);
        for ox in 0..ow {
            let yp = (row * ow + ox) * ycs;
            let (out, pad) = y[yp..yp + ycs].split_at_mut(c);
            pad.fill(0.0);
            let init = match p.kind {
                PoolKind::Max => f32::NEG_INFINITY,
                PoolKind::Avg { .. } => 0.0,
            };
            out.fill(init);
            let mut count = 0usize;
            for ky in 0..kh {
                let Some(iy) = in_range(oy, ky, sh, dh, pt, ih) else {
                    continue;
                };
                for kx in 0..kw {
                    let Some(ix) = in_range(ox, kx, sw, dw, pl, iw) else {
                        continue;
                    };
                    count += 1;
                    let xp = ((n * ih + iy) * iw + ix) * xcs;
                    let src = &x[xp..xp + c];
                    match p.kind {
                        PoolKind::Max => out.iter_mut().zip(src).for_each(|(o, &v)| *o = o.max(v)),
                        PoolKind::Avg { .. } => out.iter_mut().zip(src).for_each(|(o, &v)| *o += v),
                    }
                }
            }
            let divisor = match p.kind {
                PoolKind::Max => {
                    if count == 0 {
                        out.fill(0.0);
                    }
                    continue;
                }
                PoolKind::Avg {
                    count_include_pad: false,
                } => count,
                PoolKind::Avg {
                    count_include_pad: true,
                } => {
                    included_taps(oy, kh, sh, dh, pt, pb, ih)
                        * included_taps(ox, kw, sw, dw, pl, pr, iw)
                }
            };
            if divisor == 0 {
                out.fill(0.0);
            } else {
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
