//! Data-movement and resampling ops that every kernel table shares: slicing, resizing,
//! transposed convolution, channel shuffle, axis permutation, reductions, broadcasting
//! elementwise functions, constants, padding, depth/space rearrangement and tiling.
//!
//! They are memory-bound or rare, so one portable implementation serves every instruction
//! set: the loops run over the contiguous channel axis of the NHWC buffers, which the
//! compiler vectorises. Every function writes every element of its output, pad lanes
//! (channels `c..cs`) included, as zero.

use crate::graph::{
    Activation, BinaryKind, CoordMode, Deconv, NearestRound, PadMode, ReduceKind, Resize,
    ResizeMode, UnaryKind, REDUCE_C, REDUCE_H, REDUCE_W,
};
use crate::kernels::Act4;

/// Dims `[n, h, w, c]` of a geometry, as `usize`.
fn dims(g: Act4) -> [usize; 4] {
    let s = g.shape;
    [s.n as usize, s.h as usize, s.w as usize, s.c as usize]
}

/// [`crate::graph::Op::Slice`]: `y` is the window `start + o * step` of `x` on every axis.
pub fn slice(start: &[u32; 4], step: &[u32; 4], x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [_, xh, xw, _] = dims(xs);
    let [n, h, w, c] = dims(ys);
    let [s0, s1, s2, s3] = start.map(|v| v as usize);
    let [t0, t1, t2, t3] = step.map(|v| v as usize);
    let mut p = 0;
    for b in 0..n {
        for r in 0..h {
            for q in 0..w {
                let src = (((s0 + b * t0) * xh + s1 + r * t1) * xw + s2 + q * t2) * xs.cs + s3;
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                if t3 == 1 {
                    dst[..c].copy_from_slice(&x[src..src + c]);
                } else {
                    for (k, v) in dst[..c].iter_mut().enumerate() {
                        *v = x[src + k * t3];
                    }
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`ReduceKind::ArgMax`] along the one axis in `axes`: the index of the first maximum, a NaN
/// being the maximum (as NumPy's `argmax`).
fn arg_max(axes: u32, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [_, _, w, c] = dims(xs);
    let [n, oh, ow, oc] = dims(ys);
    // Extent and distance in `x` of the reduced axis.
    let (len, step) = match axes {
        REDUCE_H => (xs.shape.h as usize, w * xs.cs),
        REDUCE_W => (w, xs.cs),
        _ => (c, 1),
    };
    let xh = xs.shape.h as usize;
    let mut p = 0;
    for b in 0..n {
        for r in 0..oh {
            for q in 0..ow {
                let base = ((b * xh + r) * w + q) * xs.cs;
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                for (ch, d) in dst[..oc].iter_mut().enumerate() {
                    let line = x[base + ch..].iter().step_by(step).take(len);
                    let mut best = (0usize, f32::NEG_INFINITY);
                    for (i, &v) in line.enumerate() {
                        if (v > best.1 || (v.is_nan() && !best.1.is_nan())) || i == 0 {
                            best = (i, v);
                        }
                    }
                    *d = best.0 as f32;
                }
                dst[oc..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// Input coordinate of output coordinate `o` on one axis of a resize.
fn source_coord(mode: CoordMode, o: usize, scale: f32, len_in: usize, len_out: usize) -> f32 {
    let o = o as f32;
    match mode {
        CoordMode::HalfPixel => (o + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if len_out > 1 {
                (o + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if len_out > 1 {
                o * (len_in as f32 - 1.0) / (len_out as f32 - 1.0)
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => o / scale,
        CoordMode::TfHalfPixelForNn => (o + 0.5) / scale,
        CoordMode::HalfPixelSymmetric => {
            let adjustment = len_out as f32 / (scale * len_in as f32);
            let center = len_in as f32 / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (o + 0.5) / scale - 0.5
        }
    }
}

/// Nearest input index of coordinate `v` on an axis of `len` elements.
fn nearest(v: f32, round: NearestRound, len: usize) -> usize {
    let r = match round {
        NearestRound::RoundPreferFloor => (v - 0.5).ceil(),
        NearestRound::RoundPreferCeil => (v + 0.5).floor(),
        NearestRound::Floor => v.floor(),
        NearestRound::Ceil => v.ceil(),
    };
    // `as` saturates (NaN gives 0), so the clamp keeps every index in range.
    (r.max(0.0) as usize).min(len - 1)
}

/// The two input indices and the weight of the second for linear interpolation at `v`.
fn linear(v: f32, len: usize) -> (usize, usize, f32) {
    let v = v.clamp(0.0, (len - 1) as f32);
    let i0 = (v.floor() as usize).min(len - 1);
    let i1 = (i0 + 1).min(len - 1);
    let l = if v.is_finite() { v - i0 as f32 } else { 0.0 };
    (i0, i1, l)
}

/// [`crate::graph::Op::Resize`] over H and W.
pub fn resize(r: &Resize, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [_, xh, xw, _] = dims(xs);
    let [n, h, w, c] = dims(ys);
    let row = |b: usize, i: usize, j: usize| ((b * xh + i) * xw + j) * xs.cs;
    let mut p = 0;
    for b in 0..n {
        for oy in 0..h {
            let vy = source_coord(r.coord, oy, r.scale[0], xh, h);
            for ox in 0..w {
                let vx = source_coord(r.coord, ox, r.scale[1], xw, w);
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                match r.mode {
                    ResizeMode::Nearest(round) => {
                        let s = row(b, nearest(vy, round, xh), nearest(vx, round, xw));
                        dst[..c].copy_from_slice(&x[s..s + c]);
                    }
                    ResizeMode::Linear => {
                        let (y0, y1, ly) = linear(vy, xh);
                        let (x0, x1, lx) = linear(vx, xw);
                        let (a, bb) = (&x[row(b, y0, x0)..], &x[row(b, y0, x1)..]);
                        let (cc, d) = (&x[row(b, y1, x0)..], &x[row(b, y1, x1)..]);
                        for k in 0..c {
                            let top = a[k] + (bb[k] - a[k]) * lx;
                            let bot = cc[k] + (d[k] - cc[k]) * lx;
                            dst[k] = top + (bot - top) * ly;
                        }
                    }
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::Deconv`]: every input pixel adds its `kh x kw` patch of
/// `x[ic] * w[kh][kw][ic][..]` into the output, then the activation is applied.
pub fn deconv(
    d: &Deconv,
    x: &[f32],
    xs: Act4,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ys: Act4,
) {
    let [n, ih, iw, ic] = dims(xs);
    let [_, oh, ow, oc] = dims(ys);
    let icg = ic / d.groups as usize;
    let ocg = oc / d.groups as usize;
    let (kh, kw) = (d.kernel[0] as usize, d.kernel[1] as usize);
    for px in y.chunks_exact_mut(ys.cs) {
        match bias {
            Some(b) => px[..oc].copy_from_slice(&b[..oc]),
            None => px[..oc].fill(0.0),
        }
        px[oc..].fill(0.0);
    }
    for b in 0..n {
        for iy in 0..ih {
            for ix in 0..iw {
                let xrow = &x[((b * ih + iy) * iw + ix) * xs.cs..][..ic];
                for ky in 0..kh {
                    let oy = (iy * d.stride[0] as usize + ky * d.dilation[0] as usize) as isize
                        - d.pads[0] as isize;
                    if oy < 0 || oy >= oh as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ox = (ix * d.stride[1] as usize + kx * d.dilation[1] as usize) as isize
                            - d.pads[1] as isize;
                        if ox < 0 || ox >= ow as isize {
                            continue;
                        }
                        let yrow =
                            &mut y[((b * oh + oy as usize) * ow + ox as usize) * ys.cs..][..oc];
                        let taps = &w[(ky * kw + kx) * ic * ocg..][..ic * ocg];
                        for (i, &xv) in xrow.iter().enumerate() {
                            let g = i / icg;
                            let wrow = &taps[i * ocg..(i + 1) * ocg];
                            for (yv, &wv) in yrow[g * ocg..(g + 1) * ocg].iter_mut().zip(wrow) {
                                *yv += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    if d.act != Activation::None {
        for px in y.chunks_exact_mut(ys.cs) {
            for v in &mut px[..oc] {
                *v = d.act.apply(*v);
            }
        }
    }
}

/// [`crate::graph::Op::ChannelShuffle`].
pub fn channel_shuffle(groups: usize, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let c = ys.shape.c as usize;
    let per = c / groups;
    for (src, dst) in x.chunks_exact(xs.cs).zip(y.chunks_exact_mut(ys.cs)) {
        for j in 0..groups {
            for i in 0..per {
                dst[i * groups + j] = src[j * per + i];
            }
        }
        dst[c..].fill(0.0);
    }
}

/// [`crate::graph::Op::Transpose`] of the ONNX (NCHW) axes.
pub fn transpose(perm: &[u32; 4], x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [_, xh, xw, _] = dims(xs);
    // Distance in `x` between neighbours along each ONNX axis [n, c, h, w].
    let stride = [xh * xw * xs.cs, 1, xw * xs.cs, xs.cs];
    let st = perm.map(|p| stride[p as usize]);
    let [n, h, w, c] = dims(ys);
    let mut p = 0;
    for a in 0..n {
        for r in 0..h {
            for q in 0..w {
                let base = a * st[0] + r * st[2] + q * st[3];
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                for (k, v) in dst[..c].iter_mut().enumerate() {
                    *v = x[base + k * st[1]];
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::Reduce`] over the axes in `axes` (reduced axes keep extent 1).
pub fn reduce(kind: ReduceKind, axes: u32, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    if kind == ReduceKind::ArgMax {
        return arg_max(axes, x, xs, y, ys);
    }
    let [n, h, w, c] = dims(xs);
    let [_, oh, ow, oc] = dims(ys);
    let init = match kind {
        ReduceKind::Max => f32::NEG_INFINITY,
        _ => 0.0,
    };
    for px in y.chunks_exact_mut(ys.cs) {
        px[..oc].fill(init);
        px[oc..].fill(0.0);
    }
    let fold = |acc: f32, v: f32| match kind {
        ReduceKind::Max => acc.max(v),
        _ => acc + v,
    };
    for b in 0..n {
        for r in 0..h {
            let orow = if axes & REDUCE_H != 0 { 0 } else { r };
            for q in 0..w {
                let ocol = if axes & REDUCE_W != 0 { 0 } else { q };
                let src = &x[((b * h + r) * w + q) * xs.cs..][..c];
                let dst = &mut y[((b * oh + orow) * ow + ocol) * ys.cs..][..oc];
                if axes & REDUCE_C != 0 {
                    dst[0] = src.iter().fold(dst[0], |a, &v| fold(a, v));
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = fold(*d, v);
                    }
                }
            }
        }
    }
    if kind == ReduceKind::Mean {
        let count = (h * w * c) / (oh * ow * oc);
        let inv = 1.0 / count as f32;
        for px in y.chunks_exact_mut(ys.cs) {
            for v in &mut px[..oc] {
                *v *= inv;
            }
        }
    }
}

/// `y = act(f(a, b))` over the channels of one pixel; `a` or `b` of one element broadcasts.
#[inline(always)]
fn binary_row(f: impl Fn(f32, f32) -> f32, act: Activation, a: &[f32], b: &[f32], y: &mut [f32]) {
    match (a.len(), b.len()) {
        (1, _) if y.len() > 1 => {
            let a = a[0];
            for (o, &b) in y.iter_mut().zip(b) {
                *o = act.apply(f(a, b));
            }
        }
        (_, 1) if y.len() > 1 => {
            let b = b[0];
            for (o, &a) in y.iter_mut().zip(a) {
                *o = act.apply(f(a, b));
            }
        }
        _ => {
            for ((o, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *o = act.apply(f(a, b));
            }
        }
    }
}

/// [`crate::graph::Op::Binary`]: `y = act(kind(a, b))` with NumPy broadcasting (an axis of
/// extent 1 in `a` or `b` repeats).
#[allow(clippy::too_many_arguments)]
pub fn binary(
    kind: BinaryKind,
    act: Activation,
    a: &[f32],
    a_s: Act4,
    b: &[f32],
    bs: Act4,
    y: &mut [f32],
    ys: Act4,
) {
    let [n, h, w, c] = dims(ys);
    let at = |g: Act4, b: usize, r: usize, q: usize| {
        let [gn, gh, gw, _] = dims(g);
        ((b.min(gn - 1) * gh + r.min(gh - 1)) * gw + q.min(gw - 1)) * g.cs
    };
    let (ac, bc) = (a_s.shape.c as usize, bs.shape.c as usize);
    let mut p = 0;
    for i in 0..n {
        for r in 0..h {
            for q in 0..w {
                let pa = &a[at(a_s, i, r, q)..][..ac];
                let pb = &b[at(bs, i, r, q)..][..bc];
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                let out = &mut dst[..c];
                // One instantiation per kind, so that the inner loop vectorises.
                match kind {
                    BinaryKind::Add => binary_row(|a, b| a + b, act, pa, pb, out),
                    BinaryKind::Sub => binary_row(|a, b| a - b, act, pa, pb, out),
                    BinaryKind::Mul => binary_row(|a, b| a * b, act, pa, pb, out),
                    BinaryKind::Div => binary_row(|a, b| a / b, act, pa, pb, out),
                    k => binary_row(|a, b| k.apply(a, b), act, pa, pb, out),
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::Unary`]: `y = kind(x)`.
pub fn unary(kind: UnaryKind, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    // One loop per kind whose function is branch-free, so that the compiler vectorises it
    // (GELU's erf is a rational function: ConvNeXt runs one on every block's widest tensor).
    match kind {
        UnaryKind::Gelu => unary_rows(|v| UnaryKind::Gelu.apply(v), x, xs, y, ys),
        UnaryKind::Erf => unary_rows(|v| UnaryKind::Erf.apply(v), x, xs, y, ys),
        UnaryKind::Neg => unary_rows(|v| -v, x, xs, y, ys),
        UnaryKind::Abs => unary_rows(f32::abs, x, xs, y, ys),
        UnaryKind::Sqrt => unary_rows(f32::sqrt, x, xs, y, ys),
        UnaryKind::Reciprocal => unary_rows(|v| 1.0 / v, x, xs, y, ys),
        k => unary_rows(|v| k.apply(v), x, xs, y, ys),
    }
}

/// `y = f(x)` over the real channels of every pixel, zeroing the pad lanes.
#[inline(always)]
fn unary_rows(f: impl Fn(f32) -> f32, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let c = ys.shape.c as usize;
    for (src, dst) in x.chunks_exact(xs.cs).zip(y.chunks_exact_mut(ys.cs)) {
        for (o, &v) in dst[..c].iter_mut().zip(&src[..c]) {
            *o = f(v);
        }
        dst[c..].fill(0.0);
    }
}

/// [`crate::graph::Op::Constant`]: `y` holds `w` (dims `[n, h, w, c]`, canonical).
pub fn constant(w: &[f32], y: &mut [f32], ys: Act4) {
    let c = ys.shape.c as usize;
    for (src, dst) in w.chunks_exact(c).zip(y.chunks_exact_mut(ys.cs)) {
        dst[..c].copy_from_slice(src);
        dst[c..].fill(0.0);
    }
}

/// The input index that padded index `o` of an axis of `len` elements reads, with `begin`
/// elements of padding before; `None` for a constant pad element.
#[inline(always)]
fn pad_source(o: usize, begin: usize, len: usize, mode: PadMode) -> Option<usize> {
    let i = o as isize - begin as isize;
    let n = len as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant(_) => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        // Validation keeps the padding below the extent, so one reflection lands inside.
        PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (n - 1) - i } as usize),
    }
}

/// [`crate::graph::Op::Pad`].
pub fn pad(begin: &[u32; 4], mode: PadMode, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [xn, xh, xw, xc] = dims(xs);
    let [n, h, w, c] = dims(ys);
    let [b0, b1, b2, b3] = begin.map(|v| v as usize);
    let fill = match mode {
        PadMode::Constant(v) => v,
        _ => 0.0,
    };
    let mut p = 0;
    for i in 0..n {
        let si = pad_source(i, b0, xn, mode);
        for r in 0..h {
            let sr = pad_source(r, b1, xh, mode);
            for q in 0..w {
                let sq = pad_source(q, b2, xw, mode);
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                match (si, sr, sq) {
                    (Some(si), Some(sr), Some(sq)) => {
                        let src = &x[((si * xh + sr) * xw + sq) * xs.cs..][..xc];
                        for (k, v) in dst[..c].iter_mut().enumerate() {
                            *v = match pad_source(k, b3, xc, mode) {
                                Some(sk) => src[sk],
                                None => fill,
                            };
                        }
                    }
                    _ => dst[..c].fill(fill),
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::DepthToSpace`]: output `(h·b + i, w·b + j, c)` is input channel
/// `(i·b + j)·C' + c` (DCR) or `c·b² + i·b + j` (CRD) of pixel `(h, w)`.
pub fn depth_to_space(b: usize, crd: bool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [n, h, w, c] = dims(ys);
    let (xh, xw) = (h / b, w / b);
    let mut p = 0;
    for i0 in 0..n {
        for r in 0..h {
            for q in 0..w {
                let src = &x[((i0 * xh + r / b) * xw + q / b) * xs.cs..];
                let (i, j) = (r % b, q % b);
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                for (k, v) in dst[..c].iter_mut().enumerate() {
                    *v = if crd {
                        src[k * b * b + i * b + j]
                    } else {
                        src[(i * b + j) * c + k]
                    };
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::SpaceToDepth`]: output channel `(i·b + j)·C + c` of pixel `(h, w)` is
/// input `(h·b + i, w·b + j, c)`.
pub fn space_to_depth(b: usize, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [_, xh, xw, xc] = dims(xs);
    let [n, h, w, c] = dims(ys);
    let mut p = 0;
    for i0 in 0..n {
        for r in 0..h {
            for q in 0..w {
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                for i in 0..b {
                    for j in 0..b {
                        let src = &x[((i0 * xh + r * b + i) * xw + q * b + j) * xs.cs..][..xc];
                        dst[(i * b + j) * xc..][..xc].copy_from_slice(src);
                    }
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::Tile`]: output element `o` of each axis is input element
/// `o mod extent`.
pub fn tile(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [xn, xh, xw, xc] = dims(xs);
    let [n, h, w, c] = dims(ys);
    let mut p = 0;
    for i in 0..n {
        for r in 0..h {
            for q in 0..w {
                let src = &x[(((i % xn) * xh + r % xh) * xw + q % xw) * xs.cs..][..xc];
                let dst = &mut y[p * ys.cs..(p + 1) * ys.cs];
                for (k, v) in dst[..c].iter_mut().enumerate() {
                    *v = src[k % xc];
                }
                dst[c..].fill(0.0);
                p += 1;
            }
        }
    }
}

/// [`crate::graph::Op::SoftmaxAxis`]: softmax (or log-softmax) of every line of `x` along
/// `axis` (1 H, 2 W, 3 C), the maximum subtracted first.
pub fn softmax_axis(axis: usize, log: bool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [n, h, w, c] = dims(ys);
    // Distance between neighbours along the axis, the axis' extent, and the lines.
    let (step, len) = match axis {
        1 => (w * ys.cs, h),
        2 => (ys.cs, w),
        _ => (1, c),
    };
    debug_assert_eq!(xs.cs, ys.cs);
    for px in y.chunks_exact_mut(ys.cs) {
        px[c..].fill(0.0);
    }
    for b in 0..n {
        for r in 0..if axis == 1 { 1 } else { h } {
            for q in 0..if axis == 2 { 1 } else { w } {
                for k in 0..if axis == 3 { 1 } else { c } {
                    let base = ((b * h + r) * w + q) * ys.cs + k;
                    let at = |i: usize| base + i * step;
                    let max = (0..len).fold(f32::NEG_INFINITY, |m, i| m.max(x[at(i)]));
                    let sum: f32 = (0..len).map(|i| (x[at(i)] - max).exp()).sum();
                    for i in 0..len {
                        y[at(i)] = if log {
                            x[at(i)] - max - sum.ln()
                        } else {
                            (x[at(i)] - max).exp() / sum
                        };
                    }
                }
            }
        }
    }
}

/// [`crate::graph::Op::Reshape`]: the elements of `x` in NCHW order, laid out in the shape of
/// `y`.
pub fn reshape(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [xn, xh, xw, xc] = dims(xs);
    let [yn, yh, yw, yc] = dims(ys);
    let (xp, yp) = (xh * xw, yh * yw);
    if (xn, xc) == (yn, yc) {
        // The same pixels in the same order: only the spatial dims change.
        for (d, s) in y.chunks_exact_mut(ys.cs).zip(x.chunks_exact(xs.cs)) {
            d[..yc].copy_from_slice(&s[..yc]);
            d[yc..].fill(0.0);
        }
        return;
    }
    for px in y.chunks_exact_mut(ys.cs) {
        px[yc..].fill(0.0);
    }
    // Walk the output in NCHW order, keeping the input's NCHW coordinates (b, c, p) in step:
    // runs of pixels along which both sides move by one pixel.
    let (mut b, mut c, mut p) = (0usize, 0usize, 0usize);
    for ob in 0..yn {
        for oc in 0..yc {
            let mut op = 0;
            while op < yp {
                let run = (yp - op).min(xp - p);
                let dst = y[(ob * yp + op) * ys.cs + oc..].iter_mut().step_by(ys.cs);
                let src = x[(b * xp + p) * xs.cs + c..].iter().step_by(xs.cs);
                for (d, s) in dst.zip(src).take(run) {
                    *d = *s;
                }
                op += run;
                p += run;
                if p == xp {
                    p = 0;
                    c += 1;
                    if c == xc {
                        c = 0;
                        b += 1;
                    }
                }
            }
        }
    }
}

/// One input of [`crate::graph::Op::ConcatAxis`]: copies `x` into `y` at offset `off` along
/// H (`axis` 1) or W (`axis` 2).
pub fn concat_axis_part(axis: usize, off: usize, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let [n, h, w, c] = dims(xs);
    let [_, yh, yw, _] = dims(ys);
    for b in 0..n {
        for r in 0..h {
            for q in 0..w {
                let (or, oq) = if axis == 1 {
                    (off + r, q)
                } else {
                    (r, off + q)
                };
                let src = &x[((b * h + r) * w + q) * xs.cs..][..c];
                let dst = &mut y[((b * yh + or) * yw + oq) * ys.cs..][..ys.cs];
                dst[..c].copy_from_slice(src);
                dst[c..].fill(0.0);
            }
        }
    }
}

/// [`crate::graph::Op::LayerNorm`]: each pixel's channels normalised to mean 0 and variance
/// 1 (`eps` added to the variance), then scaled and shifted per channel. Two passes over the
/// pixel's channels (the mean, then the squared deviations), each in eight partial sums that
/// the compiler keeps in vector registers, then the scaled store.
pub fn layer_norm(
    x: &[f32],
    xs: Act4,
    scale: &[f32],
    shift: &[f32],
    eps: f32,
    y: &mut [f32],
    ys: Act4,
) {
    let c = ys.shape.c as usize;
    if c == 0 {
        return y.fill(0.0);
    }
    let (scale, shift) = (&scale[..c], &shift[..c]);
    /// The sum of `f` over `v`, in eight partial sums.
    #[inline(always)]
    fn sum8(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut acc = [0.0f32; 8];
        let mut chunks = v.chunks_exact(8);
        for ch in &mut chunks {
            for (a, &e) in acc.iter_mut().zip(ch) {
                *a += f(e);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&e| f(e)).sum();
        acc.iter().sum::<f32>() + tail
    }
    for (src, dst) in x.chunks_exact(xs.cs).zip(y.chunks_exact_mut(ys.cs)) {
        let v = &src[..c];
        let mean = sum8(v, |e| e) / c as f32;
        let var = sum8(v, |e| (e - mean) * (e - mean)) / c as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &e), &s), &t) in dst[..c].iter_mut().zip(v).zip(scale).zip(shift) {
            *o = (e - mean) * inv * s + t;
        }
        dst[c..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Shape4;

    /// `layer_norm` against the definition in f64, on channel counts around the eight
    /// partial sums (and a padded channel stride, whose pad lanes must come out zero).
    #[test]
    fn layer_norm_matches_the_definition() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 1.5
        };
        for c in [1usize, 3, 8, 13, 96] {
            let cs = c.next_multiple_of(8);
            let xs = Act4 {
                shape: Shape4::new(2, 3, 2, c as u32),
                cs,
            };
            let x: Vec<f32> = (0..xs.len()).map(|_| next()).collect();
            let scale: Vec<f32> = (0..c).map(|_| next()).collect();
            let shift: Vec<f32> = (0..c).map(|_| next()).collect();
            let mut y = vec![f32::NAN; xs.len()];
            layer_norm(&x, xs, &scale, &shift, 1e-5, &mut y, xs);
            for (src, dst) in x.chunks_exact(cs).zip(y.chunks_exact(cs)) {
                let v: Vec<f64> = src[..c].iter().map(|&e| e as f64).collect();
                let mean = v.iter().sum::<f64>() / c as f64;
                let var = v.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / c as f64;
                for ch in 0..c {
                    let want =
                        (v[ch] - mean) / (var + 1e-5).sqrt() * scale[ch] as f64 + shift[ch] as f64;
                    let got = dst[ch] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "c {c}: {got} vs {want}"
                    );
                }
                assert!(dst[c..].iter().all(|&e| e == 0.0), "pad lanes of c {c}");
            }
        }
    }
}
