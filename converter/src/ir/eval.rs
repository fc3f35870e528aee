//! A reference evaluator of the IR in NCHW: it defines what each op computes, independently
//! of the runtime's layouts and kernels, for the tests and for the pruning passes (which run
//! whole models through it on every calibration sample). Plain loops, except that convs
//! with more than one channel per group are one faer GEMM per image and group.

use super::{ConvOp, Graph, Node, Op, PoolKind};

use super::shape::dims4;
use super::{CoordMode, NearestRound, PadMode, ReduceKind, ResizeMode};
use std::array::from_fn;

/// Runs `g` on `inputs` (NCHW, one slice per graph input) and returns every graph output.
///
/// # Panics
/// On an input of the wrong length or a graph that does not pass [`Graph::check`].
pub fn eval(g: &Graph, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let mut vals: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
    for (io, x) in g.inputs.iter().zip(inputs) {
        assert_eq!(x.len(), g.shape(io.value).iter().product::<usize>());
        vals[io.value] = Some(x.to_vec());
    }
    for node in &g.nodes {
        let out = eval_node(g, node, &vals);
        vals[node.output] = Some(out);
    }
    g.outputs
        .iter()
        .map(|o| vals[o.value].clone().expect("computed"))
        .collect()
}

/// Computes one node's output from the values computed so far (indexed by value id; the
/// node's inputs must be `Some`).
///
/// # Panics
/// If an input of the node has not been computed.
pub fn eval_node(g: &Graph, node: &Node, vals: &[Option<Vec<f32>>]) -> Vec<f32> {
    let ins: Vec<&[f32]> = node
        .inputs
        .iter()
        .map(|&i| vals[i].as_deref().expect("computed"))
        .collect();
    let xs = node.inputs.first().map_or([0; 4], |&i| dims4(g.shape(i)));
    let [n, c, h, w] = xs;
    let ys = dims4(g.shape(node.output));
    let [_, oc, oh, ow] = ys;
    let x = ins.first().copied().unwrap_or(&[]);
    let out: Vec<f32> = match &node.op {
        Op::Conv(cv) => {
            let mut y = conv_pre(cv, x, ins.get(1).copied(), xs, ys);
            for v in &mut y {
                *v = cv.act.apply(*v);
            }
            y
        }
        Op::Fc(f) => {
            let (of, inf) = (f.weight.dims[0], f.weight.dims[1]);
            let mut y = vec![0.0; n * of];
            for b in 0..n {
                for o in 0..of {
                    let mut acc = f.bias.as_ref().map_or(0.0, |bb| bb[o]);
                    for i in 0..inf {
                        acc += f.weight.data[o * inf + i] * x[b * inf + i];
                    }
                    y[b * of + o] = f.act.apply(acc);
                }
            }
            y
        }
        Op::Pool(p) => {
            let mut y = vec![0.0; n * c * oh * ow];
            for b in 0..n {
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (mut mx, mut sum, mut cnt, mut cnt_pad) =
                                (f32::NEG_INFINITY, 0.0, 0usize, 0usize);
                            for ky in 0..p.kernel[0] {
                                let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize
                                    - p.pads[0] as isize;
                                for kx in 0..p.kernel[1] {
                                    let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                        - p.pads[1] as isize;
                                    let in_pad = iy < (h + p.pads[2]) as isize
                                        && ix < (w + p.pads[3]) as isize;
                                    if in_pad {
                                        cnt_pad += 1;
                                    }
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let v = x[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                    mx = mx.max(v);
                                    sum += v;
                                    cnt += 1;
                                }
                            }
                            y[((b * c + ch) * oh + oy) * ow + ox] = match p.kind {
                                PoolKind::Max => mx,
                                PoolKind::Avg {
                                    count_include_pad: true,
                                } => sum / cnt_pad as f32,
                                PoolKind::Avg { .. } => sum / cnt as f32,
                            };
                        }
                    }
                }
            }
            y
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => x
            .chunks(h * w)
            .map(|pl| {
                if node.op == Op::GlobalAvgPool {
                    pl.iter().sum::<f32>() / (h * w) as f32
                } else {
                    pl.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                }
            })
            .collect(),
        Op::Add { act } => x
            .iter()
            .zip(ins[1])
            .map(|(a, b)| act.apply(a + b))
            .collect(),
        Op::Mul => {
            let per_ch = ins[1].len() != x.len();
            (0..x.len())
                .map(|i| {
                    x[i] * if per_ch {
                        ins[1][i / (h * w)]
                    } else {
                        ins[1][i]
                    }
                })
                .collect()
        }
        Op::Concat => {
            let mut y = Vec::with_capacity(ys.iter().product());
            for b in 0..n {
                for (k, t) in ins.iter().enumerate() {
                    let per = dims4(g.shape(node.inputs[k]))[1..]
                        .iter()
                        .product::<usize>();
                    y.extend_from_slice(&t[b * per..(b + 1) * per]);
                }
            }
            y
        }
        Op::Act(a) => x.iter().map(|&v| a.apply(v)).collect(),
        Op::Softmax => {
            let mut y = x.to_vec();
            let hw = h * w;
            for b in 0..n {
                for p in 0..hw {
                    let at = |ch: usize| (b * c + ch) * hw + p;
                    let m = (0..c).map(|ch| x[at(ch)]).fold(f32::NEG_INFINITY, f32::max);
                    let s: f32 = (0..c).map(|ch| (x[at(ch)] - m).exp()).sum();
                    for ch in 0..c {
                        y[at(ch)] = (x[at(ch)] - m).exp() / s;
                    }
                }
            }
            y
        }
        Op::Flatten | Op::Identity => x.to_vec(),
        Op::ChannelAffine { scale, shift, act } => (0..x.len())
            .map(|i| {
                let ch = (i / (h * w)) % c;
                act.apply(x[i] * scale[ch] + shift[ch])
            })
            .collect(),
        Op::LayerNorm { scale, shift, eps } => {
            // In f64, as the reference of the runtime's f32 kernel.
            let mut y = vec![0.0; x.len()];
            for b in 0..x.len() / (c * h * w).max(1) {
                for p in 0..h * w {
                    let at = |ch: usize| (b * c + ch) * h * w + p;
                    let mean = (0..c).map(|ch| x[at(ch)] as f64).sum::<f64>() / c as f64;
                    let var = (0..c)
                        .map(|ch| (x[at(ch)] as f64 - mean).powi(2))
                        .sum::<f64>()
                        / c as f64;
                    let inv = 1.0 / (var + *eps as f64).sqrt();
                    for ch in 0..c {
                        y[at(ch)] = ((x[at(ch)] as f64 - mean) * inv * scale[ch] as f64
                            + shift[ch] as f64) as f32;
                    }
                }
            }
            y
        }
        Op::Slice { starts, steps, .. } => {
            let mut y = Vec::with_capacity(ys.iter().product());
            for b in 0..ys[0] {
                for ch in 0..oc {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let i = [b, ch, oy, ox];
                            let s: [usize; 4] =
                                std::array::from_fn(|a| starts[a] + i[a] * steps[a]);
                            y.push(x[((s[0] * c + s[1]) * h + s[2]) * w + s[3]]);
                        }
                    }
                }
            }
            y
        }
        Op::Resize(r) => {
            // ONNX's definitions, written out per output element in f64.
            let coord = |o: usize, scale: f32, len_in: usize, len_out: usize| -> f64 {
                let (o, s) = (o as f64, scale as f64);
                match r.coord {
                    CoordMode::HalfPixel => (o + 0.5) / s - 0.5,
                    CoordMode::PytorchHalfPixel if len_out > 1 => (o + 0.5) / s - 0.5,
                    CoordMode::PytorchHalfPixel => 0.0,
                    CoordMode::AlignCorners if len_out > 1 => {
                        o * (len_in as f64 - 1.0) / (len_out as f64 - 1.0)
                    }
                    CoordMode::AlignCorners => 0.0,
                    CoordMode::Asymmetric => o / s,
                    CoordMode::TfHalfPixelForNn => (o + 0.5) / s,
                    CoordMode::HalfPixelSymmetric => {
                        let adj = len_out as f64 / (s * len_in as f64);
                        len_in as f64 / 2.0 * (1.0 - adj) + (o + 0.5) / s - 0.5
                    }
                }
            };
            let pick = |v: f64, len: usize, round: NearestRound| -> usize {
                let r = match round {
                    NearestRound::RoundPreferFloor => {
                        if v - v.floor() == 0.5 {
                            v.floor()
                        } else {
                            v.round()
                        }
                    }
                    NearestRound::RoundPreferCeil => {
                        if v - v.floor() == 0.5 {
                            v.ceil()
                        } else {
                            v.round()
                        }
                    }
                    NearestRound::Floor => v.floor(),
                    NearestRound::Ceil => v.ceil(),
                };
                r.clamp(0.0, (len - 1) as f64) as usize
            };
            let mut y = Vec::with_capacity(ys.iter().product());
            for b in 0..n {
                for ch in 0..c {
                    let at = |iy: usize, ix: usize| x[((b * c + ch) * h + iy) * w + ix] as f64;
                    for oy in 0..oh {
                        let vy = coord(oy, r.scale[0], h, oh);
                        for ox in 0..ow {
                            let vx = coord(ox, r.scale[1], w, ow);
                            let v = match r.mode {
                                ResizeMode::Nearest(round) => {
                                    at(pick(vy, h, round), pick(vx, w, round))
                                }
                                ResizeMode::Linear => {
                                    let vy = vy.clamp(0.0, (h - 1) as f64);
                                    let vx = vx.clamp(0.0, (w - 1) as f64);
                                    let (y0, x0) = (vy.floor() as usize, vx.floor() as usize);
                                    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                                    let (ly, lx) = (vy - y0 as f64, vx - x0 as f64);
                                    (at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx) * (1.0 - ly)
                                        + (at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx) * ly
                                }
                            };
                            y.push(v as f32);
                        }
                    }
                }
            }
            y
        }
        Op::Deconv(d) => {
            let [kh, kw] = d.kernel();
            let icg = c / d.group;
            let ocg = oc / d.group;
            let mut y = vec![0.0f32; n * oc * oh * ow];
            for b in 0..n {
                for o in 0..oc {
                    let bias = d.bias.as_ref().map_or(0.0, |bb| bb[o]);
                    y[(b * oc + o) * oh * ow..(b * oc + o + 1) * oh * ow].fill(bias);
                }
                for ci in 0..c {
                    let gi = ci / icg;
                    for iy in 0..h {
                        for ix in 0..w {
                            let xv = x[((b * c + ci) * h + iy) * w + ix];
                            for o in 0..ocg {
                                for ky in 0..kh {
                                    let oy = (iy * d.stride[0] + ky * d.dilation[0]) as isize
                                        - d.pads[0] as isize;
                                    if oy < 0 || oy >= oh as isize {
                                        continue;
                                    }
                                    for kx in 0..kw {
                                        let ox = (ix * d.stride[1] + kx * d.dilation[1]) as isize
                                            - d.pads[1] as isize;
                                        if ox < 0 || ox >= ow as isize {
                                            continue;
                                        }
                                        let wv =
                                            d.weight.data[((ci * ocg + o) * kh + ky) * kw + kx];
                                        let oc_i = gi * ocg + o;
                                        y[((b * oc + oc_i) * oh + oy as usize) * ow
                                            + ox as usize] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            y.iter().map(|&v| d.act.apply(v)).collect()
        }
        Op::ChannelShuffle { groups } => {
            let per = c / groups;
            let hw = h * w;
            let mut y = vec![0.0f32; x.len()];
            for b in 0..n {
                for i in 0..per {
                    for j in 0..*groups {
                        let (dst, src) = (i * groups + j, j * per + i);
                        y[(b * c + dst) * hw..(b * c + dst + 1) * hw]
                            .copy_from_slice(&x[(b * c + src) * hw..(b * c + src + 1) * hw]);
                    }
                }
            }
            y
        }
        Op::Transpose { perm } => {
            let strides = [c * h * w, h * w, w, 1];
            let mut y = Vec::with_capacity(x.len());
            for i0 in 0..ys[0] {
                for i1 in 0..ys[1] {
                    for i2 in 0..ys[2] {
                        for i3 in 0..ys[3] {
                            let i = [i0, i1, i2, i3];
                            let at: usize = (0..4).map(|k| i[k] * strides[perm[k]]).sum();
                            y.push(x[at]);
                        }
                    }
                }
            }
            y
        }
        Op::Reduce {
            kind: ReduceKind::ArgMax,
            axes,
        } => {
            let a = axes.iter().position(|&r| r).unwrap_or(1);
            let strides = [c * h * w, h * w, w, 1];
            let mut y = vec![0.0f32; ys.iter().product()];
            for (k, v) in y.iter_mut().enumerate() {
                // Output coordinates, then the input line along axis `a`.
                let o = [k / (oc * oh * ow), k / (oh * ow) % oc, k / ow % oh, k % ow];
                let base: usize = (0..4).map(|i| o[i] * strides[i]).sum();
                let line: Vec<f32> = (0..xs[a]).map(|i| x[base + i * strides[a]]).collect();
                let mut best = 0;
                for (i, &t) in line.iter().enumerate() {
                    let b = line[best];
                    if t > b || (t.is_nan() && !b.is_nan()) {
                        best = i;
                    }
                }
                *v = best as f32;
            }
            y
        }
        Op::Reduce { kind, axes } => {
            let mut y = vec![
                match kind {
                    ReduceKind::Max => f32::NEG_INFINITY,
                    _ => 0.0,
                };
                ys.iter().product()
            ];
            for b in 0..n {
                for ch in 0..c {
                    for iy in 0..h {
                        for ix in 0..w {
                            let o = [b, ch, iy, ix];
                            let o: [usize; 4] =
                                std::array::from_fn(|a| if axes[a] { 0 } else { o[a] });
                            let k = ((o[0] * oc + o[1]) * oh + o[2]) * ow + o[3];
                            let v = x[((b * c + ch) * h + iy) * w + ix];
                            y[k] = match kind {
                                ReduceKind::Max => y[k].max(v),
                                _ => y[k] + v,
                            };
                        }
                    }
                }
            }
            if *kind == ReduceKind::Mean {
                let count = (x.len() / y.len()) as f32;
                y.iter_mut().for_each(|v| *v /= count);
            }
            y
        }
        Op::Binary { kind, act } => {
            let (a4, b4) = (xs, dims4(g.shape(node.inputs[1])));
            let mut y = Vec::with_capacity(ys.iter().product());
            for i0 in 0..ys[0] {
                for i1 in 0..ys[1] {
                    for i2 in 0..ys[2] {
                        for i3 in 0..ys[3] {
                            let i = [i0, i1, i2, i3];
                            let at = |d: [usize; 4]| -> usize {
                                let j: [usize; 4] = from_fn(|k| i[k].min(d[k] - 1));
                                ((j[0] * d[1] + j[1]) * d[2] + j[2]) * d[3] + j[3]
                            };
                            let v = kind.apply(ins[0][at(a4)], ins[1][at(b4)]);
                            y.push(act.apply(v));
                        }
                    }
                }
            }
            y
        }
        Op::Unary { kind } => x.iter().map(|&v| kind.apply(v)).collect(),
        Op::Constant(w) => w.data.clone(),
        Op::Pad { begin, mode, .. } => {
            let mut y = Vec::with_capacity(ys.iter().product());
            let src = |o: usize, a: usize| -> Option<usize> {
                let i = o as isize - begin[a] as isize;
                let d = xs[a] as isize;
                match mode {
                    _ if (0..d).contains(&i) => Some(i as usize),
                    PadMode::Constant(_) => None,
                    PadMode::Edge => Some(i.clamp(0, d - 1) as usize),
                    PadMode::Reflect if i < 0 => Some((-i) as usize),
                    PadMode::Reflect => Some((2 * (d - 1) - i) as usize),
                }
            };
            let fill = match mode {
                PadMode::Constant(v) => *v,
                _ => 0.0,
            };
            for i0 in 0..ys[0] {
                for i1 in 0..ys[1] {
                    for i2 in 0..ys[2] {
                        for i3 in 0..ys[3] {
                            let s = [src(i0, 0), src(i1, 1), src(i2, 2), src(i3, 3)];
                            y.push(match s {
                                [Some(a), Some(b), Some(cc), Some(d)] => {
                                    x[((a * c + b) * h + cc) * w + d]
                                }
                                _ => fill,
                            });
                        }
                    }
                }
            }
            y
        }
        Op::DepthToSpace { block: b, crd } => {
            let mut y = Vec::with_capacity(ys.iter().product());
            for i0 in 0..n {
                for k in 0..oc {
                    for r in 0..oh {
                        for q in 0..ow {
                            let (i, j) = (r % b, q % b);
                            let ch = if *crd {
                                k * b * b + i * b + j
                            } else {
                                (i * b + j) * oc + k
                            };
                            y.push(x[((i0 * c + ch) * h + r / b) * w + q / b]);
                        }
                    }
                }
            }
            y
        }
        Op::SpaceToDepth { block: b } => {
            let mut y = Vec::with_capacity(ys.iter().product());
            for i0 in 0..n {
                for k in 0..oc {
                    let (blk, ch) = (k / c, k % c);
                    let (i, j) = (blk / b, blk % b);
                    for r in 0..oh {
                        for q in 0..ow {
                            y.push(x[((i0 * c + ch) * h + r * b + i) * w + q * b + j]);
                        }
                    }
                }
            }
            y
        }
        Op::SoftmaxAxis { axis, log } => {
            let strides = [c * h * w, h * w, w, 1];
            let mut y = x.to_vec();
            let len = xs[*axis];
            for i in 0..x.len() {
                if (i / strides[*axis]) % len != 0 {
                    continue;
                }
                let at = |k: usize| i + k * strides[*axis];
                let m = (0..len).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
                let s: f64 = (0..len).map(|k| ((x[at(k)] - m) as f64).exp()).sum();
                for k in 0..len {
                    let d = (x[at(k)] - m) as f64;
                    y[at(k)] = if *log { d - s.ln() } else { d.exp() / s } as f32;
                }
            }
            y
        }
        // The NCHW order of the elements is the order of `x`.
        Op::Reshape { .. } => x.to_vec(),
        Op::ConcatAxis { axis } => {
            // Blocks of `inner` elements, `outer` times, from each input in turn.
            let outer: usize = ys[..*axis].iter().product();
            let mut y = Vec::with_capacity(ys.iter().product());
            for o in 0..outer {
                for &i in &node.inputs {
                    let v = vals[i].as_deref().expect("computed");
                    let inner: usize = g.shape(i)[*axis..].iter().product();
                    y.extend_from_slice(&v[o * inner..(o + 1) * inner]);
                }
            }
            y
        }
        Op::Tile { .. } => {
            let mut y = Vec::with_capacity(ys.iter().product());
            for i0 in 0..ys[0] {
                for i1 in 0..oc {
                    for i2 in 0..oh {
                        for i3 in 0..ow {
                            y.push(x[(((i0 % n) * c + i1 % c) * h + i2 % h) * w + i3 % w]);
                        }
                    }
                }
            }
            y
        }
    };
    out
}

/// A conv's output before its activation: the convolution of `x` (shape `xs`) to shape
/// `ys`, plus the bias, plus the residual input `res` if any.
pub(crate) fn conv_pre(
    cv: &ConvOp,
    x: &[f32],
    res: Option<&[f32]>,
    xs: [usize; 4],
    ys: [usize; 4],
) -> Vec<f32> {
    let [n, c, h, w] = xs;
    let [_, oc, oh, ow] = ys;
    let [kh, kw] = cv.kernel();
    let icg = c / cv.group;
    let ocg = oc / cv.group;
    let mut y = vec![0.0f32; n * oc * oh * ow];
    if icg * ocg > 1 {
        conv_gemm(cv, x, xs, ys, &mut y);
        let plane = oh * ow;
        for (pi, ys) in y.chunks_mut(plane.max(1)).enumerate() {
            let bias = cv.bias.as_ref().map_or(0.0, |bb| bb[pi % oc]);
            match res {
                Some(r) => {
                    let r = &r[pi * plane..(pi + 1) * plane];
                    ys.iter_mut().zip(r).for_each(|(v, r)| *v = *v + bias + r);
                }
                None => ys.iter_mut().for_each(|v| *v += bias),
            }
        }
        return y;
    }
    // One channel per group (depthwise): each output plane accumulates tap by tap
    // (ky, then kx), the order of a per-element sum.
    for b in 0..n {
        for o in 0..oc {
            let gi = o / ocg;
            let base = (b * oc + o) * oh * ow;
            let plane = &mut y[base..base + oh * ow];
            plane.fill(cv.bias.as_ref().map_or(0.0, |bb| bb[o]));
            for i in 0..icg {
                let ci = gi * icg + i;
                let xc = &x[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wv = cv.weight.data[((o * icg + i) * kh + ky) * kw + kx];
                        tap_rows(cv, [h, w], [oh, ow], [ky, kx], |at, i, n, step| {
                            let out = &mut plane[at..at + n];
                            if step == 1 {
                                // Contiguous: the loop vectorises.
                                let xs = &xc[i..i + n];
                                out.iter_mut().zip(xs).for_each(|(o, v)| *o += wv * v);
                            } else {
                                let xs = xc[i..].iter().step_by(step);
                                out.iter_mut().zip(xs).for_each(|(o, v)| *o += wv * v);
                            }
                        });
                    }
                }
            }
            if let Some(r) = res {
                for (v, r) in plane.iter_mut().zip(&r[base..base + oh * ow]) {
                    *v += r;
                }
            }
        }
    }
    y
}

/// The matrices of a conv run as one GEMM per image and group (see [`conv_gemm`]).
#[derive(Clone, Copy)]
pub(crate) struct GemmShape {
    /// Input channels per group.
    pub icg: usize,
    /// Output channels per group.
    pub ocg: usize,
    /// Output pixels per image (`oh x ow`), the GEMM's columns.
    pub taps: usize,
    /// `icg x kh x kw`, the GEMM's depth.
    pub k: usize,
    /// A 1x1 conv with stride 1 and no padding: the input is its own im2col.
    pub direct: bool,
}

impl GemmShape {
    /// The shape for input dims `xs` and output dims `ys` (NCHW).
    pub(crate) fn new(cv: &ConvOp, [_, c, h, w]: [usize; 4], [_, oc, oh, ow]: [usize; 4]) -> Self {
        let [kh, kw] = cv.kernel();
        let icg = c / cv.group;
        GemmShape {
            icg,
            ocg: oc / cv.group,
            taps: oh * ow,
            k: icg * kh * kw,
            direct: [kh, kw] == [1, 1]
                && cv.stride == [1, 1]
                && cv.pads == [0; 4]
                && (oh, ow) == (h, w),
        }
    }

    /// The im2col buffer of one image and group (`k x taps`), empty when the conv reads its
    /// input in place.
    pub(crate) fn cols(&self) -> Vec<f32> {
        if self.direct {
            Vec::new()
        } else {
            vec![0.0f32; self.k * self.taps]
        }
    }
}

/// The sums of a conv with more than one input or output channel per group (no bias,
/// residual or activation), as one matrix product per image and group (faer's f32 GEMM):
/// the input unfolded to `icg x kh x kw` rows of `oh x ow` taps, zero where a tap falls in
/// the padding. A 1x1 conv with stride 1 and no padding reads its input in place. The
/// pruning passes run whole models through this evaluator on every calibration sample, so
/// it must not be the per-element loop of the depthwise case.
fn conv_gemm(cv: &ConvOp, x: &[f32], xs: [usize; 4], ys: [usize; 4], y: &mut [f32]) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let [n, c, h, w] = xs;
    let [_, oc, oh, ow] = ys;
    let shape = GemmShape::new(cv, xs, ys);
    let mut cols = shape.cols();
    let GemmShape {
        icg,
        ocg,
        taps,
        k,
        direct,
    } = shape;
    for b in 0..n {
        for gi in 0..cv.group {
            let xg = &x[(b * c + gi * icg) * h * w..(b * c + (gi + 1) * icg) * h * w];
            let a: &[f32] = if direct {
                xg
            } else {
                im2col(cv, xg, [h, w], [oh, ow], &mut cols);
                &cols
            };
            let wg = &cv.weight.data[gi * ocg * k..(gi + 1) * ocg * k];
            let yo = (b * oc + gi * ocg) * taps;
            matmul(
                MatMut::from_row_major_slice_mut(&mut y[yo..yo + ocg * taps], ocg, taps),
                Accum::Replace,
                MatRef::from_row_major_slice(wg, ocg, k),
                MatRef::from_row_major_slice(a, k, taps),
                1.0f32,
                Par::Seq,
            );
        }
    }
}

/// Unfolds the `icg` input planes `xg` (each `h x w`) of one group into `icg x kh x kw`
/// rows of `oh x ow` taps in `cols`, zero where a tap falls in the padding.
pub(crate) fn im2col(
    cv: &ConvOp,
    xg: &[f32],
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    cols: &mut [f32],
) {
    let [kh, kw] = cv.kernel();
    let taps = oh * ow;
    cols.fill(0.0);
    for (i, xc) in xg.chunks_exact(h * w).enumerate() {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((i * kh + ky) * kw + kx) * taps;
                let dst = &mut cols[row..row + taps];
                tap_rows(cv, [h, w], [oh, ow], [ky, kx], |at, i, n, step| {
                    let xs = xc[i..].iter().step_by(step);
                    dst[at..at + n]
                        .iter_mut()
                        .zip(xs)
                        .for_each(|(d, v)| *d = *v);
                });
            }
        }
    }
}

/// Tap `[ky, kx]` of a conv from an `h x w` input plane to an `oh x ow` output plane: calls
/// `f(oy * ow + ox, iy * w + ix)` for every output pixel whose tap lies inside the image, row
/// by row (taps in the padding are skipped).
pub(crate) fn tap_pairs(
    cv: &ConvOp,
    hw: [usize; 2],
    ohw: [usize; 2],
    k: [usize; 2],
    mut f: impl FnMut(usize, usize),
) {
    tap_rows(cv, hw, ohw, k, |at, i, n, step| {
        (0..n).for_each(|j| f(at + j, i + j * step));
    });
}

/// [`tap_pairs`] a row at a time: `f(at, i, n, step)` for every output row with taps inside
/// the image, whose output pixels `at .. at + n` read the input at `i, i + step, …`.
pub(crate) fn tap_rows(
    cv: &ConvOp,
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    [ky, kx]: [usize; 2],
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let (s, d, p) = (cv.stride, cv.dilation, cv.pads);
    // ox with 0 <= ox*s + kx*d - p < w.
    let off = kx * d[1];
    let ox0 = p[1].saturating_sub(off).div_ceil(s[1]);
    let ox1 = (w + p[1]).saturating_sub(off).div_ceil(s[1]).min(ow);
    if ox1 <= ox0 {
        return;
    }
    for oy in 0..oh {
        let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
        if iy < 0 || iy >= h as isize {
            continue;
        }
        f(
            oy * ow + ox0,
            iy as usize * w + ox0 * s[1] + off - p[1],
            ox1 - ox0,
            s[1],
        );
    }
}
