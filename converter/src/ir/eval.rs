//! A naive reference evaluator of the IR in NCHW, for tests: it defines what each op
//! computes, independently of the runtime's layouts and kernels.

use super::{Graph, Op, PoolKind};

fn dims4(s: &[usize]) -> [usize; 4] {
    match s {
        [n, c, h, w] => [*n, *c, *h, *w],
        [n, f] => [*n, *f, 1, 1],
        _ => [0; 4],
    }
}

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
        let ins: Vec<&[f32]> = node
            .inputs
            .iter()
            .map(|&i| vals[i].as_deref().expect("computed"))
            .collect();
        let xs = dims4(g.shape(node.inputs[0]));
        let [n, c, h, w] = xs;
        let ys = dims4(g.shape(node.output));
        let [_, oc, oh, ow] = ys;
        let x = ins[0];
        let out: Vec<f32> = match &node.op {
            Op::Conv(cv) => {
                let [kh, kw] = cv.kernel();
                let icg = c / cv.group;
                let ocg = oc / cv.group;
                let mut y = vec![0.0f32; n * oc * oh * ow];
                for b in 0..n {
                    for o in 0..oc {
                        let gi = o / ocg;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut acc = cv.bias.as_ref().map_or(0.0, |bb| bb[o]);
                                for i in 0..icg {
                                    let ci = gi * icg + i;
                                    for ky in 0..kh {
                                        let iy = (oy * cv.stride[0] + ky * cv.dilation[0]) as isize
                                            - cv.pads[0] as isize;
                                        if iy < 0 || iy >= h as isize {
                                            continue;
                                        }
                                        for kx in 0..kw {
                                            let ix = (ox * cv.stride[1] + kx * cv.dilation[1])
                                                as isize
                                                - cv.pads[1] as isize;
                                            if ix < 0 || ix >= w as isize {
                                                continue;
                                            }
                                            let wv =
                                                cv.weight.data[((o * icg + i) * kh + ky) * kw + kx];
                                            acc += wv
                                                * x[((b * c + ci) * h + iy as usize) * w
                                                    + ix as usize];
                                        }
                                    }
                                }
                                let k = ((b * oc + o) * oh + oy) * ow + ox;
                                if let Some(r) = ins.get(1) {
                                    acc += r[k];
                                }
                                y[k] = cv.act.apply(acc);
                            }
                        }
                    }
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
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let v =
                                            x[((b * c + ch) * h + iy as usize) * w + ix as usize];
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
        };
        vals[node.output] = Some(out);
    }
    g.outputs
        .iter()
        .map(|o| vals[o.value].clone().expect("computed"))
        .collect()
}
