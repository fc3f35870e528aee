//! Scalar reference implementations: the plain loops every optimised kernel is tested against.
//!
//! Every entry of a [`KernelTable`] has a counterpart here with the same signature, reading
//! canonical weights (`[OC][IC/g][KH][KW]` for convs, `[OF][IF]` for fully connected) and the
//! same NHWC buffers with padded channel stride. Sums are accumulated in `f64` so that the
//! reference is the more accurate side of a comparison. [`TABLE`] gathers them into a (slow)
//! kernel table. Compiled always, used by tests.

use super::{is_last_share, share, Act4, ConvArgs, ConvKernel, FcArgs, FcKernel, KernelTable};
use crate::graph::{Activation, Conv, Layout, Pool, PoolKind};

#[cfg(test)]
#[path = "tests.rs"]
pub mod tests;

/// Input coordinate of output coordinate `o` at tap `k`, or `None` when it falls in padding.
fn tap(o: usize, k: usize, stride: u32, dilation: u32, pad: u32, size: usize) -> Option<usize> {
    (o * stride as usize + k * dilation as usize)
        .checked_sub(pad as usize)
        .filter(|&v| v < size)
}

/// Writes zeros into the pad lanes of every pixel of `ys`.
fn zero_pads(y: &mut [f32], ys: Act4) {
    let c = ys.shape.c as usize;
    for px in y[..ys.len()].chunks_exact_mut(ys.cs) {
        px[c..].fill(0.0);
    }
}

/// Convolution, any groups, canonical weights; computes `a.rows`.
pub fn conv(a: &mut ConvArgs) {
    let c = a.conv;
    let (ih, iw, ic) = (
        a.xs.shape.h as usize,
        a.xs.shape.w as usize,
        a.xs.shape.c as usize,
    );
    let (oh, ow, oc) = (
        a.ys.shape.h as usize,
        a.ys.shape.w as usize,
        a.ys.shape.c as usize,
    );
    let (kh, kw) = (c.kernel[0] as usize, c.kernel[1] as usize);
    let groups = c.groups.max(1) as usize;
    let (icg, ocg) = (ic / groups, (oc / groups).max(1));
    for row in a.rows.clone() {
        let (n, oy) = (row / oh, row % oh);
        for ox in 0..ow {
            let yp = (row * ow + ox) * a.ys.cs;
            for o in 0..oc {
                let g = o / ocg;
                let mut s = a.bias.map_or(0.0, |b| b[o] as f64);
                for i in 0..icg {
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, ky, c.stride[0], c.dilation[0], c.pads[0], ih)
                        else {
                            continue;
                        };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, kx, c.stride[1], c.dilation[1], c.pads[1], iw)
                            else {
                                continue;
                            };
                            let xv = a.x[((n * ih + iy) * iw + ix) * a.xs.cs + g * icg + i];
                            let wv = a.w[((o * icg + i) * kh + ky) * kw + kx];
                            s += xv as f64 * wv as f64;
                        }
                    }
                }
                if let Some(r) = a.residual {
                    s += r[yp + o] as f64;
                }
                a.y[yp + o] = c.act.apply(s as f32);
            }
            a.y[yp + oc..yp + a.ys.cs].fill(0.0);
        }
    }
}

fn no_scratch(_: &Conv, _: Act4, _: Act4) -> usize {
    0
}

/// The reference conv kernel: canonical weights, every conv.
pub const CONV: ConvKernel = ConvKernel {
    name: "conv_reference",
    layout: Layout::Canonical,
    scratch_len: no_scratch,
    run: conv,
    reads_parts: false,
};

/// Fully connected, canonical `[OF][IF]` weights.
pub fn fc(a: &mut FcArgs) {
    let (batch, c) = (a.xs.shape.n as usize, a.xs.shape.c as usize);
    let pixels = a.xs.shape.h as usize * a.xs.shape.w as usize;
    let (inf, of) = (pixels * c, a.ys.shape.c as usize);
    for n in 0..batch {
        for o in share(of, a.share) {
            let mut s = a.bias.map_or(0.0, |b| b[o] as f64);
            for p in 0..pixels {
                for ch in 0..c {
                    let xv = a.x[(n * pixels + p) * a.xs.cs + ch];
                    s += xv as f64 * a.w[o * inf + p * c + ch] as f64;
                }
            }
            a.y[n * a.ys.cs + o] = a.fc.act.apply(s as f32);
        }
    }
    if is_last_share(a.share) {
        zero_pads(a.y, a.ys);
    }
}

/// Max or average pooling of `x` into channels `c0 .. c0 + xs.shape.c` of `y` (the
/// contract of [`KernelTable::pool`]; the pad lanes are written by every part).
pub fn pool(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize) {
    let (ih, iw, c) = (
        xs.shape.h as usize,
        xs.shape.w as usize,
        xs.shape.c as usize,
    );
    let (oh, ow) = (ys.shape.h as usize, ys.shape.w as usize);
    let (kh, kw) = (p.kernel[0] as usize, p.kernel[1] as usize);
    for row in 0..ys.rows() {
        let (n, oy) = (row / oh, row % oh);
        for ox in 0..ow {
            for ch in 0..c {
                let mut max = f32::NEG_INFINITY;
                let (mut sum, mut valid, mut included) = (0.0f64, 0usize, 0usize);
                for ky in 0..kh {
                    // Signed input coordinates, to test against the explicit padding.
                    let sy = (oy * p.stride[0] as usize + ky * p.dilation[0] as usize) as i64
                        - p.pads[0] as i64;
                    for kx in 0..kw {
                        let sx = (ox * p.stride[1] as usize + kx * p.dilation[1] as usize) as i64
                            - p.pads[1] as i64;
                        let in_pads = sy >= -(p.pads[0] as i64)
                            && sy < (ih + p.pads[2] as usize) as i64
                            && sx >= -(p.pads[1] as i64)
                            && sx < (iw + p.pads[3] as usize) as i64;
                        included += usize::from(in_pads);
                        if sy < 0 || sx < 0 || sy as usize >= ih || sx as usize >= iw {
                            continue;
                        }
                        let v = x[((n * ih + sy as usize) * iw + sx as usize) * xs.cs + ch];
                        max = max.max(v);
                        sum += v as f64;
                        valid += 1;
                    }
                }
                let out = match p.kind {
                    _ if valid == 0 => 0.0,
                    PoolKind::Max => max,
                    PoolKind::Avg { count_include_pad } => {
                        let d = if count_include_pad { included } else { valid };
                        (sum / d as f64) as f32
                    }
                };
                y[(row * ow + ox) * ys.cs + c0 + ch] = out;
            }
        }
    }
    zero_pads(y, ys);
}

/// Mean over H and W.
pub fn global_avg_pool(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let pixels = xs.shape.h as usize * xs.shape.w as usize;
    for n in 0..xs.shape.n as usize {
        for ch in 0..xs.shape.c as usize {
            let s: f64 = (0..pixels)
                .map(|p| x[(n * pixels + p) * xs.cs + ch] as f64)
                .sum();
            y[n * ys.cs + ch] = (s / pixels as f64) as f32;
        }
    }
    zero_pads(y, ys);
}

/// Calls `f(element_offset)` for every logical element of `ys`.
fn each(ys: Act4, mut f: impl FnMut(usize)) {
    for p in 0..ys.shape.pixels() as usize {
        for ch in 0..ys.shape.c as usize {
            f(p * ys.cs + ch);
        }
    }
}

/// `y = act(a + b)`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    each(ys, |i| y[i] = act.apply(a[i] + b[i]));
    zero_pads(y, ys);
}

/// `y = a * b`, `b` of `y`'s shape or `(N, 1, 1, C)`.
pub fn mul(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4) {
    let (c, pixels) = (ys.shape.c as usize, (ys.shape.h * ys.shape.w) as usize);
    for p in 0..ys.shape.pixels() as usize {
        for ch in 0..c {
            let bi = if bs.shape.h * bs.shape.w == 1 {
                p / pixels
            } else {
                p
            } * bs.cs
                + ch;
            y[p * ys.cs + ch] = a[p * ys.cs + ch] * b[bi];
        }
    }
    zero_pads(y, ys);
}

/// Copies `x` into channels `c0..` of `y`; zeroes `y`'s pad lanes when it is the last part.
pub fn concat_part(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize) {
    for p in 0..xs.shape.pixels() as usize {
        for ch in 0..xs.shape.c as usize {
            y[p * ys.cs + c0 + ch] = x[p * xs.cs + ch];
        }
    }
    if c0 + xs.shape.c as usize == ys.shape.c as usize {
        zero_pads(y, ys);
    }
}

/// `y = act(x)`.
pub fn act(x: &[f32], y: &mut [f32], ys: Act4, act: Activation) {
    each(ys, |i| y[i] = act.apply(x[i]));
    zero_pads(y, ys);
}

/// Softmax over channels, per pixel.
pub fn softmax(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let c = xs.shape.c as usize;
    for p in 0..xs.shape.pixels() as usize {
        let px = &x[p * xs.cs..p * xs.cs + c];
        let max = px.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = px.iter().map(|&v| ((v - max) as f64).exp()).sum();
        for ch in 0..c {
            y[p * ys.cs + ch] = (((px[ch] - max) as f64).exp() / sum) as f32;
        }
    }
    zero_pads(y, ys);
}

/// NHWC to `(N, 1, 1, C*H*W)` in NCHW order.
pub fn flatten(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4) {
    let (h, w, c) = (
        xs.shape.h as usize,
        xs.shape.w as usize,
        xs.shape.c as usize,
    );
    for n in 0..xs.shape.n as usize {
        for ch in 0..c {
            for iy in 0..h {
                for ix in 0..w {
                    y[n * ys.cs + (ch * h + iy) * w + ix] = x[((n * h + iy) * w + ix) * xs.cs + ch];
                }
            }
        }
    }
    zero_pads(y, ys);
}

/// `y = act(x * scale[c] + shift[c])`.
pub fn channel_affine(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
    ys: Act4,
    act: Activation,
) {
    each(ys, |i| {
        let ch = i % ys.cs;
        y[i] = act.apply(x[i] * scale[ch] + shift[ch]);
    });
    zero_pads(y, ys);
}

/// LayerNorm over each pixel's channels, its sums in f64.
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
    for p in 0..ys.shape.pixels() as usize {
        let v = &x[p * xs.cs..p * xs.cs + c];
        let mean = v.iter().map(|&e| e as f64).sum::<f64>() / c as f64;
        let var = v.iter().map(|&e| (e as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (k, &e) in v.iter().enumerate() {
            y[p * ys.cs + k] = ((e as f64 - mean) * inv * scale[k] as f64 + shift[k] as f64) as f32;
        }
    }
    zero_pads(y, ys);
}

/// The reference table: every entry above, canonical weights everywhere. It is for tests
/// that call kernels directly: its conv entry ignores the plan, and its `choice` is only a
/// stand-in.
pub static TABLE: KernelTable = KernelTable {
    name: "reference",
    choice: crate::kernels::KernelChoice::Portable,
    channel_align: 1,
    chain_min_bytes: 256 << 10,
    conv: |_, _| Some(CONV),
    conv_bf16: crate::kernels::portable::no_bf16,
    conv_f16: crate::kernels::portable::no_f16,
    conv_int8: None,
    fc_bf16: crate::kernels::portable::no_fc_bf16,
    fc_f16: crate::kernels::portable::no_fc_bf16,
    fc: FcKernel {
        name: "fc_reference",
        layout: Layout::Canonical,
        run: fc,
    },
    pool,
    global_avg_pool,
    add,
    mul,
    concat_part,
    act,
    softmax,
    flatten,
    channel_affine,
    layer_norm,
};
