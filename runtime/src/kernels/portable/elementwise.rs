//! Elementwise and per-pixel kernels: add, mul, act, affine, concat, softmax, flatten.

use super::simd::{act8, load_upto, store_upto, LANES};
use crate::graph::Activation;
use crate::kernels::Act4;
use wide::f32x8;

/// `y[i] = f(ins[0][i], .., ins[K-1][i])` for `i < y.len()`, eight lanes at a time.
#[inline(always)]
fn map8<const K: usize>(y: &mut [f32], ins: [&[f32]; K], f: impl Fn([f32x8; K]) -> f32x8) {
    let n = y.len();
    for i in (0..n).step_by(LANES) {
        let v = f(std::array::from_fn(|k| load_upto(ins[k], i, n)));
        store_upto(y, i, n, v);
    }
}

/// Calls `f(pixel, y_lanes)` with the `c` logical lanes of every pixel of `ys` and zeroes the
/// pad lanes. Without pad lanes the whole buffer is one "pixel" (`f` gets pixel 0).
#[inline(always)]
fn per_pixel(y: &mut [f32], ys: Act4, mut f: impl FnMut(usize, &mut [f32])) {
    let (c, cs, len) = (ys.shape.c as usize, ys.cs, ys.len());
    debug_assert!(y.len() >= len);
    if c == cs {
        f(0, &mut y[..len]);
        return;
    }
    for (p, px) in y[..len].chunks_exact_mut(cs).enumerate() {
        let (out, pad) = px.split_at_mut(c);
        f(p, out);
        pad.fill(0.0);
    }
}

/// `y = act(a + b)`; all three share geometry `ys`.
pub(crate) fn add(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    let cs = ys.cs;
    per_pixel(y, ys, |p, out| {
        let at = p * cs;
        map8(out, [&a[at..], &b[at..]], |[a, b]| act8(act, a + b));
    });
}

/// `y = a * b`, `b` either of `y`'s shape or `(N, 1, 1, C)` (one scale per channel).
pub(crate) fn mul(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4) {
    let (c, cs) = (ys.shape.c as usize, ys.cs);
    let pixels = ys.shape.h as usize * ys.shape.w as usize;
    let per_channel = bs.shape.h == 1 && bs.shape.w == 1;
    debug_assert!(b.len() >= bs.len() && a.len() >= ys.len());
    for (p, px) in y[..ys.len()].chunks_exact_mut(cs).enumerate() {
        let (out, pad) = px.split_at_mut(c);
        let bp = if per_channel { p / pixels.max(1) } else { p } * bs.cs;
        map8(out, [&a[p * cs..], &b[bp..]], |[a, b]| a * b);
        pad.fill(0.0);
    }
}

/// Copies `x` into channels `c0 .. c0 + xs.shape.c` of `y`; the last part zeroes `y`'s pad
/// lanes.
pub(crate) fn concat_part(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize) {
    let (xc, yc) = (xs.shape.c as usize, ys.shape.c as usize);
    let last = c0 + xc >= yc;
    debug_assert!(c0 + xc <= yc && x.len() >= xs.len() && y.len() >= ys.len());
    for (px, src) in y[..ys.len()]
        .chunks_exact_mut(ys.cs)
        .zip(x.chunks_exact(xs.cs))
    {
        px[c0..c0 + xc].copy_from_slice(&src[..xc]);
        if last {
            px[yc..].fill(0.0);
        }
    }
}

/// `y = act(x)`, both of geometry `ys`.
pub(crate) fn act(x: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    let cs = ys.cs;
    per_pixel(y, ys, |p, out| {
        map8(out, [&x[p * cs..]], |[v]| act8(act, v))
    });
}

/// `y = act(x * scale[c] + shift[c])`, both of geometry `ys`.
pub(crate) fn channel_affine(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
    ys: Act4,
    act: Activation,
) {
    let (c, cs) = (ys.shape.c as usize, ys.cs);
    let (scale, shift) = (&scale[..c], &shift[..c]);
    debug_assert!(x.len() >= ys.len() && y.len() >= ys.len());
    for (px, src) in y[..ys.len()].chunks_exact_mut(cs).zip(x.chunks_exact(cs)) {
        let (out, pad) = px.split_at_mut(c);
        map8(out, [src, scale, shift], |[v, s, t]| act8(act, v * s + t));
        pad.fill(0.0);
    }
}

/// Softmax over the channels of every pixel (max subtracted first).
pub(crate) fn softmax(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let c = ys.shape.c as usize;
    debug_assert!(x.len() >= xs.len() && y.len() >= ys.len());
    for (px, src) in y[..ys.len()]
        .chunks_exact_mut(ys.cs)
        .zip(x.chunks_exact(xs.cs))
    {
        let (out, pad) = px.split_at_mut(c);
        let src = &src[..c];
        let max = src.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for (o, &v) in out.iter_mut().zip(src) {
            *o = (v - max).exp();
            sum += *o;
        }
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
        pad.fill(0.0);
    }
}

/// NHWC `(N, H, W, C)` to `(N, 1, 1, C*H*W)` in NCHW order: `y(n, (c*H + h)*W + w) = x(n, h, w, c)`.
pub(crate) fn flatten(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let (c, pixels) = (
        xs.shape.c as usize,
        xs.shape.h as usize * xs.shape.w as usize,
    );
    let features = c * pixels;
    debug_assert!(x.len() >= xs.len() && y.len() >= ys.len() && ys.cs >= features);
    for (out, src) in y[..ys.len()]
        .chunks_exact_mut(ys.cs)
        .zip(x.chunks_exact(pixels * xs.cs))
    {
        for (p, px) in src.chunks_exact(xs.cs).enumerate() {
            for (ch, &v) in px[..c].iter().enumerate() {
                out[ch * pixels + p] = v;
            }
        }
        out[features..].fill(0.0);
    }
}
