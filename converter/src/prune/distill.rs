//! End-to-end distillation of a pruned model towards the dense one, on calibration inputs.
//!
//! The allocation's updates and the sequential refit ([`super::refit`]) fit each layer by
//! least squares to the dense layer's output, one layer at a time. An error that a layer
//! cannot undo alone (a removed channel whose contribution only later layers could
//! replace, or the clipping of the activations in between) stays. This pass trains every
//! conv and fully connected layer of the pruned model, weights and biases together, by
//! Adam on the relative squared error of the model's outputs against the dense model's on
//! the same input, `Σ_o ‖y_p − y_d‖² / ‖y_d‖²` (backpropagation through the graph). Each
//! epoch visits every calibration sample once in a shuffled order; an image input is
//! mirrored left to right with probability ½ (the dense model's output on the mirrored
//! image is the target, so the mirror needs no label and doubles the distinct inputs).
//! The learning rate falls from [`DistillOptions::lr`] to 0 along a half cosine.
//!
//! With [`DistillOptions::features`] `= α > 0`, the student also matches the dense model's
//! block outputs ([`features`]: what residual Adds write and what linear convs write,
//! such as MobileNetV2's projections), each on the channels it keeps: the loss gains
//! `α / F · Σ_f ‖x_f − x_f,d‖² / ‖x_f,d‖²` over the F block outputs. A photo's output is a
//! few numbers; its block outputs are maps of thousands, so the same photos pin the
//! training down better.
//!
//! The ops that gradients pass through are those of CNNs: convs (any group, stride,
//! dilation, padding, fused residual and activation), fully connected layers, pooling,
//! global pooling, Add, Mul (squeeze-excite), Concat, activations and the reshaping ops.
//! A graph with another op is an error, found before any work.
//!
//! The same backward pass measures [`output_weights`]: how an error in each channel of each
//! layer shows at the model outputs, by which the allocation ranks removals.

use super::calib::{mirrored, Calibration};
use super::stats::{batch1, channels, layer_kind, sample_pixels, LayerKind};
use crate::error::{Error, Result};
use crate::ir::eval::{conv_pre, eval, eval_node, im2col, tap_pairs, GemmShape};
use crate::ir::shape::dims4;
use crate::ir::{Activation, ConvOp, Graph, Op, PoolKind, PoolOp};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// Distillation settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillOptions {
    /// Passes over the calibration samples; 0 turns distillation off.
    pub epochs: usize,
    /// Adam's initial step size.
    pub lr: f32,
    /// Samples per step (their gradients are averaged).
    pub batch: usize,
    /// Worker threads (each runs whole samples).
    pub threads: usize,
    /// Mirror image inputs left to right at random (for photos; not for digits or text).
    pub mirror: bool,
    /// Weight of the block outputs' relative error against the outputs' (0: outputs only;
    /// see the module docs).
    pub features: f64,
}

impl Default for DistillOptions {
    fn default() -> Self {
        DistillOptions {
            epochs: 0,
            lr: 1e-3,
            batch: 8,
            threads: 2,
            mirror: true,
            features: 10.0,
        }
    }
}

/// Adam's moment decay rates and its denominator's guard.
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// Whether the gradients can pass through every node of `g` (see the module docs).
pub fn check(g: &Graph) -> Result<()> {
    if g.inputs.len() != 1 {
        return Err(Error::Options(
            "distillation needs a model with one input".into(),
        ));
    }
    for n in &g.nodes {
        let ok = matches!(
            &n.op,
            Op::Conv(_)
                | Op::Fc(_)
                | Op::Pool(_)
                | Op::GlobalAvgPool
                | Op::GlobalMaxPool
                | Op::Add { .. }
                | Op::Concat
                | Op::Act(_)
                | Op::Flatten
                | Op::Identity
                | Op::Reshape { .. }
                | Op::Mul
        );
        if !ok {
            return Err(Error::Options(format!(
                "distillation does not pass gradients through {} ({}); convert without --distill",
                n.name,
                n.op.name()
            )));
        }
    }
    Ok(())
}

/// The trainable tensors of one layer: its weights and its bias (empty without one).
#[derive(Clone, Debug, Default)]
struct LayerGrad {
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Gradients of every trainable node (conv or fully connected), indexed by node (`None`
/// for other nodes).
type Grads = Vec<Option<LayerGrad>>;

fn zero_grads(g: &Graph) -> Grads {
    g.nodes
        .iter()
        .map(|n| {
            let (w, b) = match &n.op {
                Op::Conv(c) => (&c.weight.data, &c.bias),
                Op::Fc(f) => (&f.weight.data, &f.bias),
                _ => return None,
            };
            Some(LayerGrad {
                w: vec![0.0; w.len()],
                b: vec![0.0; b.as_ref().map_or(0, Vec::len)],
            })
        })
        .collect()
}

/// Values computed by a forward pass, and each node's output before its activation where
/// the activation is not the identity (its derivative needs it).
struct Tape {
    vals: Vec<Option<Vec<f32>>>,
    pre: Vec<Option<Vec<f32>>>,
}

fn forward(g: &Graph, x: &[f32]) -> Tape {
    let mut vals: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
    let mut pre: Vec<Option<Vec<f32>>> = vec![None; g.nodes.len()];
    vals[g.inputs[0].value] = Some(x.to_vec());
    for (j, node) in g.nodes.iter().enumerate() {
        let input = |k: usize| vals[node.inputs[k]].as_deref().expect("computed");
        let (p, act) = match &node.op {
            Op::Conv(cv) => {
                let xs = dims4(g.shape(node.inputs[0]));
                let ys = dims4(g.shape(node.output));
                let res = (node.inputs.len() > 1).then(|| input(1));
                (conv_pre(cv, input(0), res, xs, ys), cv.act)
            }
            Op::Fc(f) => (fc_pre(f, input(0)), f.act),
            Op::Add { act } => (
                input(0).iter().zip(input(1)).map(|(a, b)| a + b).collect(),
                *act,
            ),
            _ => {
                let y = eval_node(g, node, &vals);
                vals[node.output] = Some(y);
                continue;
            }
        };
        if act == Activation::None {
            vals[node.output] = Some(p);
        } else {
            vals[node.output] = Some(p.iter().map(|&v| act.apply(v)).collect());
            pre[j] = Some(p);
        }
    }
    Tape { vals, pre }
}

fn fc_pre(f: &crate::ir::FcOp, x: &[f32]) -> Vec<f32> {
    let (of, inf) = (f.weight.dims[0], f.weight.dims[1]);
    (0..of)
        .map(|o| {
            let row = &f.weight.data[o * inf..(o + 1) * inf];
            // The reference evaluator's order: the bias, then each product.
            row.iter()
                .zip(x)
                .fold(f.bias.as_ref().map_or(0.0, |b| b[o]), |acc, (w, v)| {
                    acc + w * v
                })
        })
        .collect()
}

/// The derivative of `act` at `x` (the value before the activation).
fn act_grad(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => 1.0,
        Activation::Relu => f32::from(x > 0.0),
        Activation::Clip { min, max } => f32::from(x > min && x < max),
        Activation::LeakyRelu { alpha } => {
            if x >= 0.0 {
                1.0
            } else {
                alpha
            }
        }
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 - s)
        }
        Activation::HardSigmoid { alpha, beta } => {
            let t = alpha * x + beta;
            if t > 0.0 && t < 1.0 {
                alpha
            } else {
                0.0
            }
        }
        Activation::HardSwish => {
            if x <= -3.0 {
                0.0
            } else if x >= 3.0 {
                1.0
            } else {
                x / 3.0 + 0.5
            }
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
        Activation::Tanh => {
            let t = x.tanh();
            1.0 - t * t
        }
        // d/dx x·Φ(x) = Φ(x) + x·φ(x).
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + smof::graph::erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
            cdf + x * pdf
        }
    }
}

/// `dv[v] += d`.
fn add_grad(dv: &mut [Option<Vec<f32>>], v: usize, d: Vec<f32>) {
    match &mut dv[v] {
        Some(acc) => acc.iter_mut().zip(&d).for_each(|(a, b)| *a += b),
        slot => *slot = Some(d),
    }
}

/// Per node (`None` for nodes that are not measured), per output channel, summed over
/// samples: the squared deviations of the gradient at the node's output (before its
/// activation) from its mean over the channel's positions, and the squared mean (see
/// [`output_weights`]).
type SquaredGrads = Vec<Option<Vec<[f64; 2]>>>;

/// Adds one sample's `[Σ (d - mean)², mean²]` over each of `gp`'s equal channel planes
/// to `acc`.
fn add_squares(acc: &mut [[f64; 2]], gp: &[f32]) {
    let plane = (gp.len() / acc.len().max(1)).max(1);
    for (a, p) in acc.iter_mut().zip(gp.chunks_exact(plane)) {
        let mean = p.iter().map(|&d| f64::from(d)).sum::<f64>() / plane as f64;
        a[0] += p
            .iter()
            .map(|&d| (f64::from(d) - mean).powi(2))
            .sum::<f64>();
        a[1] += mean * mean;
    }
}

/// Backpropagates the output gradients `dv` (indexed by value) through `g`, adding, with
/// `grads`, the gradients of the trainable tensors into `grads`, and, with `sq`, the
/// squared gradients at the measured layers' outputs into `sq`. The model input gets none.
fn backward(
    g: &Graph,
    tape: &Tape,
    mut dv: Vec<Option<Vec<f32>>>,
    mut grads: Option<&mut Grads>,
    mut sq: Option<&mut SquaredGrads>,
) {
    let input = g.inputs[0].value;
    for (j, node) in g.nodes.iter().enumerate().rev() {
        let Some(gy) = dv[node.output].take() else {
            continue;
        };
        let val = |v: usize| tape.vals[v].as_deref().expect("computed");
        // The gradient before the node's activation.
        let through = |act: Activation| -> Vec<f32> {
            match &tape.pre[j] {
                Some(p) if act != Activation::None => gy
                    .iter()
                    .zip(p)
                    .map(|(d, &x)| d * act_grad(act, x))
                    .collect(),
                _ => gy.clone(),
            }
        };
        let want = |v: usize| v != input;
        match &node.op {
            Op::Conv(cv) => {
                let gp = through(cv.act);
                if let Some(Some(acc)) = sq.as_deref_mut().map(|s| &mut s[j]) {
                    add_squares(acc, &gp);
                }
                let xs = dims4(g.shape(node.inputs[0]));
                let ys = dims4(g.shape(node.output));
                let mut lg = grads
                    .as_deref_mut()
                    .map(|gr| gr[j].as_mut().expect("trainable"));
                let plane = ys[2] * ys[3];
                for (o, b) in lg.iter_mut().flat_map(|lg| lg.b.iter_mut()).enumerate() {
                    *b += gp[o * plane..(o + 1) * plane].iter().sum::<f32>();
                }
                if let Some(&r) = node.inputs.get(1) {
                    if want(r) {
                        add_grad(&mut dv, r, gp.clone());
                    }
                }
                let x = val(node.inputs[0]);
                let mut dx = want(node.inputs[0]).then(|| vec![0.0f32; x.len()]);
                let dw = lg.map(|lg| &mut lg.w[..]);
                conv_back(cv, x, &gp, xs, ys, dw, dx.as_deref_mut());
                if let Some(dx) = dx {
                    add_grad(&mut dv, node.inputs[0], dx);
                }
            }
            Op::Fc(f) => {
                let gp = through(f.act);
                if let Some(Some(acc)) = sq.as_deref_mut().map(|s| &mut s[j]) {
                    add_squares(acc, &gp);
                }
                let x = val(node.inputs[0]);
                let inf = f.weight.dims[1];
                let mut lg = grads
                    .as_deref_mut()
                    .map(|gr| gr[j].as_mut().expect("trainable"));
                let mut dx = vec![0.0f32; x.len()];
                for (o, &d) in gp.iter().enumerate() {
                    let row = &f.weight.data[o * inf..(o + 1) * inf];
                    for i in 0..inf {
                        dx[i] += d * row[i];
                    }
                    if let Some(lg) = lg.as_deref_mut() {
                        if let Some(b) = lg.b.get_mut(o) {
                            *b += d;
                        }
                        let gw = &mut lg.w[o * inf..(o + 1) * inf];
                        for i in 0..inf {
                            gw[i] += d * x[i];
                        }
                    }
                }
                if want(node.inputs[0]) {
                    add_grad(&mut dv, node.inputs[0], dx);
                }
            }
            Op::Add { act } => {
                let gp = through(*act);
                for &v in &node.inputs {
                    if want(v) {
                        add_grad(&mut dv, v, gp.clone());
                    }
                }
            }
            Op::Act(a) => {
                let x = val(node.inputs[0]);
                let d = gy
                    .iter()
                    .zip(x)
                    .map(|(d, &v)| d * act_grad(*a, v))
                    .collect();
                if want(node.inputs[0]) {
                    add_grad(&mut dv, node.inputs[0], d);
                }
            }
            Op::Flatten | Op::Identity | Op::Reshape { .. } if want(node.inputs[0]) => {
                add_grad(&mut dv, node.inputs[0], gy);
            }
            Op::Concat => {
                let mut at = 0;
                for &v in &node.inputs {
                    let len = tape.vals[v].as_ref().map_or(0, Vec::len);
                    if want(v) {
                        add_grad(&mut dv, v, gy[at..at + len].to_vec());
                    }
                    at += len;
                }
            }
            Op::Mul => {
                let (a, s) = (val(node.inputs[0]), val(node.inputs[1]));
                let per = a.len() / s.len();
                let da = (0..a.len()).map(|i| gy[i] * s[i / per]).collect();
                let mut ds = vec![0.0f32; s.len()];
                for i in 0..a.len() {
                    ds[i / per] += gy[i] * a[i];
                }
                if want(node.inputs[0]) {
                    add_grad(&mut dv, node.inputs[0], da);
                }
                if want(node.inputs[1]) {
                    add_grad(&mut dv, node.inputs[1], ds);
                }
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                let x = val(node.inputs[0]);
                let plane = x.len() / gy.len();
                let mut dx = vec![0.0f32; x.len()];
                for (c, &d) in gy.iter().enumerate() {
                    let src = &x[c * plane..(c + 1) * plane];
                    let dst = &mut dx[c * plane..(c + 1) * plane];
                    if node.op == Op::GlobalAvgPool {
                        dst.fill(d / plane as f32);
                    } else if let Some(k) = argmax(src) {
                        dst[k] = d;
                    }
                }
                if want(node.inputs[0]) {
                    add_grad(&mut dv, node.inputs[0], dx);
                }
            }
            Op::Pool(p) => {
                let x = val(node.inputs[0]);
                let xs = dims4(g.shape(node.inputs[0]));
                let ys = dims4(g.shape(node.output));
                let dx = pool_back(p, x, &gy, xs, ys);
                if want(node.inputs[0]) {
                    add_grad(&mut dv, node.inputs[0], dx);
                }
            }
            // `check` admits no other op.
            _ => {}
        }
    }
}

/// Index of the first maximum.
fn argmax(v: &[f32]) -> Option<usize> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    v.iter().position(|&x| x == m)
}

/// The gradient of a pooling's input, as the reference evaluator pools: a max window passes
/// its gradient to its first maximum; an average window shares it among the inputs it
/// counts.
fn pool_back(p: &PoolOp, x: &[f32], gy: &[f32], xs: [usize; 4], ys: [usize; 4]) -> Vec<f32> {
    let [n, c, h, w] = xs;
    let [_, _, oh, ow] = ys;
    let mut dx = vec![0.0f32; x.len()];
    let mut taps: Vec<usize> = Vec::with_capacity(p.kernel[0] * p.kernel[1]);
    for b in 0..n {
        for ch in 0..c {
            let base = (b * c + ch) * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    taps.clear();
                    let mut cnt_pad = 0usize;
                    for ky in 0..p.kernel[0] {
                        let iy =
                            (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pads[0] as isize;
                        for kx in 0..p.kernel[1] {
                            let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                - p.pads[1] as isize;
                            if iy < (h + p.pads[2]) as isize && ix < (w + p.pads[3]) as isize {
                                cnt_pad += 1;
                            }
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            taps.push(base + iy as usize * w + ix as usize);
                        }
                    }
                    let d = gy[((b * c + ch) * oh + oy) * ow + ox];
                    match p.kind {
                        PoolKind::Max => {
                            let vals: Vec<f32> = taps.iter().map(|&t| x[t]).collect();
                            if let Some(k) = argmax(&vals) {
                                dx[taps[k]] += d;
                            }
                        }
                        PoolKind::Avg { count_include_pad } => {
                            let cnt = if count_include_pad {
                                cnt_pad
                            } else {
                                taps.len()
                            };
                            for &t in &taps {
                                dx[t] += d / cnt as f32;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// A conv's weight gradient (added to `dw`) and its input gradient (added to `dx`), each if
/// asked, from the gradient `gp` of its output before the activation. Batch 1.
fn conv_back(
    cv: &ConvOp,
    x: &[f32],
    gp: &[f32],
    xs: [usize; 4],
    ys: [usize; 4],
    mut dw: Option<&mut [f32]>,
    mut dx: Option<&mut [f32]>,
) {
    let [_, _, h, w] = xs;
    let [_, oc, oh, ow] = ys;
    let [kh, kw] = cv.kernel();
    let shape = GemmShape::new(cv, xs, ys);
    let GemmShape {
        icg,
        ocg,
        taps,
        k,
        direct,
    } = shape;
    if icg * ocg > 1 {
        let mut cols = shape.cols();
        let mut dcols = vec![0.0f32; k * taps];
        for gi in 0..cv.group {
            let gg = MatRef::from_row_major_slice(
                &gp[gi * ocg * taps..(gi + 1) * ocg * taps],
                ocg,
                taps,
            );
            if let Some(dw) = dw.as_deref_mut() {
                let xg = &x[gi * icg * h * w..(gi + 1) * icg * h * w];
                let a: &[f32] = if direct {
                    xg
                } else {
                    im2col(cv, xg, [h, w], [oh, ow], &mut cols);
                    &cols
                };
                matmul(
                    MatMut::from_row_major_slice_mut(
                        &mut dw[gi * ocg * k..(gi + 1) * ocg * k],
                        ocg,
                        k,
                    ),
                    Accum::Add,
                    gg,
                    MatRef::from_row_major_slice(a, k, taps).transpose(),
                    1.0f32,
                    Par::Seq,
                );
            }
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            let wg = MatRef::from_row_major_slice(
                &cv.weight.data[gi * ocg * k..(gi + 1) * ocg * k],
                ocg,
                k,
            );
            let dxg = &mut dx[gi * icg * h * w..(gi + 1) * icg * h * w];
            if direct {
                matmul(
                    MatMut::from_row_major_slice_mut(dxg, k, taps),
                    Accum::Add,
                    wg.transpose(),
                    gg,
                    1.0f32,
                    Par::Seq,
                );
                continue;
            }
            matmul(
                MatMut::from_row_major_slice_mut(&mut dcols, k, taps),
                Accum::Replace,
                wg.transpose(),
                gg,
                1.0f32,
                Par::Seq,
            );
            for (i, dxc) in dxg.chunks_exact_mut(h * w).enumerate() {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = &dcols[((i * kh + ky) * kw + kx) * taps..][..taps];
                        tap_pairs(cv, [h, w], [oh, ow], [ky, kx], |at, xi| dxc[xi] += row[at]);
                    }
                }
            }
        }
        return;
    }
    // One channel per group.
    for o in 0..oc {
        let ci = o / ocg * icg;
        let go = &gp[o * taps..(o + 1) * taps];
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let wi = (o * kh + ky) * kw + kx;
                let wv = cv.weight.data[wi];
                let mut acc = 0.0f32;
                match dx.as_deref_mut() {
                    Some(dx) => {
                        let dxc = &mut dx[ci * h * w..(ci + 1) * h * w];
                        tap_pairs(cv, [h, w], [oh, ow], [ky, kx], |at, xi| {
                            acc += go[at] * xc[xi];
                            dxc[xi] += wv * go[at];
                        });
                    }
                    None => tap_pairs(cv, [h, w], [oh, ow], [ky, kx], |at, xi| {
                        acc += go[at] * xc[xi];
                    }),
                }
                if let Some(dw) = dw.as_deref_mut() {
                    dw[wi] += acc;
                }
            }
        }
    }
}

/// `w · ‖y − t‖² / ‖t‖²`, with its gradient added to `dv[v]`.
fn relative_error(dv: &mut [Option<Vec<f32>>], v: usize, y: &[f32], t: &[f32], w: f64) -> f64 {
    let norm = t
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .max(1e-30);
    let e: f64 = y
        .iter()
        .zip(t)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    let d = y
        .iter()
        .zip(t)
        .map(|(&a, &b)| (w * 2.0 * (f64::from(a) - f64::from(b)) / norm) as f32)
        .collect();
    add_grad(dv, v, d);
    w * e / norm
}

/// The output part of one sample's loss (see the module docs), and its gradient at the
/// model outputs.
fn loss_grads(g: &Graph, tape: &Tape, targets: &[Vec<f32>]) -> (f64, Vec<Option<Vec<f32>>>) {
    let mut dv: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
    let mut loss = 0.0f64;
    for (o, t) in g.outputs.iter().zip(targets) {
        let y = tape.vals[o.value].as_deref().expect("computed");
        loss += relative_error(&mut dv, o.value, y, t, 1.0);
    }
    (loss, dv)
}

/// A block output the student matches: its value and, per channel the student keeps, the
/// dense model's channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    /// The value (the same in the dense and the pruned graph).
    pub value: usize,
    /// The dense channel of each kept channel.
    pub kept: Vec<usize>,
}

/// The block outputs of `g` that [`DistillOptions::features`] matches: the outputs of
/// residual Adds, of convs with a fused residual and of convs without an activation (linear
/// bottlenecks), other than the model outputs. `kept[v]` lists the dense channel of each
/// channel of value `v`.
pub fn features(g: &Graph, kept: &[Vec<usize>]) -> Vec<Feature> {
    g.nodes
        .iter()
        .filter(|n| match &n.op {
            Op::Conv(c) => c.act == Activation::None || n.inputs.len() > 1,
            Op::Add { .. } => true,
            _ => false,
        })
        .filter(|n| g.outputs.iter().all(|o| o.value != n.output))
        .filter_map(|n| {
            let k = kept.get(n.output)?;
            (k.len() == channels(g, n.output)).then(|| Feature {
                value: n.output,
                kept: k.clone(),
            })
        })
        .collect()
}

/// The block-output part of one sample's loss, `weight / F · Σ_f` of each feature's
/// relative error against the teacher's values `teacher` (dense channel layout), with its
/// gradients added to `dv`.
fn feature_loss(
    tape: &Tape,
    teacher: &Tape,
    feats: &[Feature],
    weight: f64,
    dv: &mut [Option<Vec<f32>>],
) -> f64 {
    let w = weight / feats.len().max(1) as f64;
    let mut loss = 0.0;
    for f in feats {
        let y = tape.vals[f.value].as_deref().expect("computed");
        let t = teacher.vals[f.value].as_deref().expect("computed");
        let plane = y.len() / f.kept.len().max(1);
        let tk: Vec<f32> = f
            .kept
            .iter()
            .flat_map(|&c| t.get(c * plane..(c + 1) * plane).unwrap_or(&[]))
            .copied()
            .collect();
        if tk.len() == y.len() {
            loss += relative_error(dv, f.value, y, &tk, w);
        }
    }
    loss
}

/// What one sample's step needs from the teacher: its outputs, and, with block outputs to
/// match, its forward pass on the same input.
struct Teacher<'a> {
    targets: &'a [Vec<f32>],
    tape: Option<&'a Tape>,
}

/// One sample's loss against the teacher, with its gradients added into `grads`. Returns the
/// output part and the block-output part.
fn sample_grads(
    student: &Graph,
    teacher: &Teacher,
    feats: &[Feature],
    weight: f64,
    x: &[f32],
    grads: &mut Grads,
) -> (f64, f64) {
    let tape = forward(student, x);
    let (loss, mut dv) = loss_grads(student, &tape, teacher.targets);
    let fl = match teacher.tape {
        Some(tt) => feature_loss(&tape, tt, feats, weight, &mut dv),
        None => 0.0,
    };
    backward(student, &tape, dv, Some(grads), None);
    (loss, fl)
}

/// The teacher's outputs for each calibration sample, plain (`[0]`) and mirrored (`[1]`),
/// computed the first time a view is drawn: the teacher never changes, and each sample has
/// only these two views.
type Targets = Vec<[Option<Vec<Vec<f32>>>; 2]>;

/// A small deterministic generator (SplitMix64) for the sample order and the mirroring.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What distillation did: the mean training loss of each epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DistillReport {
    /// Mean per-sample output loss over each epoch, measured before that sample's step.
    pub epoch_loss: Vec<f64>,
    /// The same for the block outputs' term (empty without [`DistillOptions::features`]).
    pub feature_loss: Vec<f64>,
}

/// Trains `pruned` towards `dense` on `calib` (see the module docs). The two graphs have the
/// same nodes and values; `kept[v]` lists the dense channel of each channel of value `v` in
/// `pruned`. `progress(step, steps)` is called after every step.
pub fn distill(
    dense: &Graph,
    pruned: &mut Graph,
    calib: &Calibration,
    opts: &DistillOptions,
    kept: &[Vec<usize>],
    mut progress: impl FnMut(usize, usize),
) -> Result<DistillReport> {
    check(pruned)?;
    check(dense)?;
    let teacher = batch1(dense);
    let mut student = batch1(pruned);
    let per: usize = student.shape(student.inputs[0].value).iter().product();
    if calib.samples.iter().any(|s| s.len() != per) || calib.samples.is_empty() {
        return Err(Error::Options(format!(
            "distillation needs calibration samples of {per} values"
        )));
    }
    let shape = student.shape(student.inputs[0].value)[1..].to_vec();
    let ns = calib.samples.len();
    let batch = opts.batch.clamp(1, ns);
    let steps_per_epoch = ns.div_ceil(batch);
    let steps = opts.epochs * steps_per_epoch;
    let sc = scales(&student);
    let mut m = zero_grads(&student);
    let mut v = zero_grads(&student);
    let mut rng = Rng(0x5EED);
    let mut report = DistillReport::default();
    let mut step = 0usize;
    let threads = opts.threads.max(1);
    let mut targets: Targets = vec![[None, None]; ns];
    let feats = if opts.features > 0.0 {
        super::refit::check_pair(dense, pruned, kept, "distillation")?;
        features(&student, kept)
    } else {
        Vec::new()
    };
    for _ in 0..opts.epochs {
        let mut order: Vec<usize> = (0..ns).collect();
        for i in (1..ns).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let (mut epoch_loss, mut epoch_features) = (0.0, 0.0);
        for chunk in order.chunks(batch) {
            // (sample, view, input) of each item of the batch.
            let inputs: Vec<(usize, usize, Vec<f32>)> = chunk
                .iter()
                .map(|&s| {
                    let x = &calib.samples[s];
                    if opts.mirror && rng.next() & 1 == 1 {
                        (s, 1, mirrored(x, &shape))
                    } else {
                        (s, 0, x.clone())
                    }
                })
                .collect();
            type Part = (Grads, [f64; 2], Vec<(usize, usize, Vec<Vec<f32>>)>);
            let (st, te, cache, fe) = (&student, &teacher, &targets, &feats);
            let parts: Vec<Part> = super::par_ranges(inputs.len(), threads, |r| {
                let mut gr = zero_grads(st);
                let mut new = Vec::new();
                let mut loss = [0.0; 2];
                for (s, view, x) in &inputs[r] {
                    let tape = (!fe.is_empty()).then(|| forward(te, x));
                    let t = match &cache[*s][*view] {
                        Some(t) => t,
                        None => {
                            // The teacher's outputs: from its forward pass if it ran, else
                            // evaluated.
                            let outs = match &tape {
                                Some(tt) => te
                                    .outputs
                                    .iter()
                                    .map(|o| tt.vals[o.value].clone().expect("computed"))
                                    .collect(),
                                None => eval(te, &[x]),
                            };
                            new.push((*s, *view, outs));
                            &new.last().expect("just pushed").2
                        }
                    };
                    let teacher = Teacher {
                        targets: t,
                        tape: tape.as_ref(),
                    };
                    let (o, f) = sample_grads(st, &teacher, fe, opts.features, x, &mut gr);
                    loss[0] += o;
                    loss[1] += f;
                }
                (gr, loss, new)
            });
            let mut total = zero_grads(&student);
            for (gr, loss, new) in parts {
                for (s, view, t) in new {
                    targets[s][view] = Some(t);
                }
                epoch_loss += loss[0];
                epoch_features += loss[1];
                for (t, p) in total.iter_mut().zip(gr) {
                    if let (Some(t), Some(p)) = (t, p) {
                        t.w.iter_mut().zip(&p.w).for_each(|(a, b)| *a += b);
                        t.b.iter_mut().zip(&p.b).for_each(|(a, b)| *a += b);
                    }
                }
            }
            step += 1;
            let lr = opts.lr
                * 0.5
                * (1.0 + (std::f32::consts::PI * (step - 1) as f32 / steps as f32).cos());
            adam(
                &mut student,
                &total,
                &sc,
                &mut m,
                &mut v,
                lr,
                step,
                1.0 / chunk.len() as f32,
            );
            progress(step, steps);
        }
        report.epoch_loss.push(epoch_loss / ns as f64);
        if !feats.is_empty() {
            report.feature_loss.push(epoch_features / ns as f64);
        }
    }
    for (j, node) in student.nodes.iter().enumerate() {
        match (&node.op, &mut pruned.nodes[j].op) {
            (Op::Conv(a), Op::Conv(b)) => {
                b.weight.data.clone_from(&a.weight.data);
                b.bias.clone_from(&a.bias);
            }
            (Op::Fc(a), Op::Fc(b)) => {
                b.weight.data.clone_from(&a.weight.data);
                b.bias.clone_from(&a.bias);
            }
            _ => {}
        }
    }
    Ok(report)
}

/// How an output channel's error shows at the model outputs (see [`output_weights`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputWeights {
    /// Per output channel: the mean relative output error per unit of `Δw H Δwᵀ`, the
    /// channel's error energy over the calibration statistics `H` of its layer.
    pub incoherent: Vec<f64>,
    /// Per output channel: the mean relative output error per unit of `Δw S Δwᵀ`, where `S`
    /// sums the outer products of each sample's im2col rows summed over all positions.
    pub coherent: Vec<f64>,
}

/// For each dense conv, depthwise conv and fully connected node of `g` (`None` for other
/// nodes), how an error in each output channel shows at the model outputs, to first order,
/// on average over the calibration samples.
///
/// A change `δ` of the layer's output (before the activation) moves each output `y` by
/// `J δ`. For a random sign vector `r` scaled by `1 / ‖y‖`, the gradient `g = Jᵀ r` at the
/// layer gives `E[(g · δ)²] = ‖J δ‖² / ‖y‖²`, the relative output error. Within one channel
/// of one sample, `g · δ = ḡ Σ_p δ_p + Σ_p (g_p − ḡ) δ_p` (`ḡ` the mean over the positions
/// `p`). The first, coherent part is what a global pooling passes on: it needs the error
/// summed over positions, `Δw s` with `s = Σ_p x_p` the summed im2col rows. The second part
/// is taken as uncorrelated across positions: `Σ_p (g_p − ḡ)² δ_p²`, with the squared
/// deviations averaged. So a weight change `Δw` of channel `o` costs, averaged over the
/// `N` samples, `incoherent_o · Δw H Δwᵀ + coherent_o · Δw S Δwᵀ`, with
/// `incoherent_o = Σ (g − ḡ)² / (N² n)` (`H` holds `n` sampled positions per sample,
/// [`super::stats::sample_pixels`]) and `coherent_o = Σ ḡ² / N²`. One probe per sample;
/// `progress(k)` after `k` samples.
pub fn output_weights(
    g: &Graph,
    calib: &Calibration,
    threads: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Option<OutputWeights>>> {
    check(g)?;
    let g1 = batch1(g);
    let per: usize = g1.shape(g1.inputs[0].value).iter().product();
    if calib.samples.is_empty() || calib.samples.iter().any(|s| s.len() != per) {
        return Err(Error::Options(format!(
            "output weights need calibration samples of {per} values"
        )));
    }
    let empty = || -> SquaredGrads {
        (0..g1.nodes.len())
            .map(|j| {
                layer_kind(&g1, j)
                    .filter(|k| *k != LayerKind::Deconv)
                    .map(|_| vec![[0.0; 2]; channels(&g1, g1.nodes[j].output)])
            })
            .collect()
    };
    let mut sq = empty();
    let threads = threads.max(1);
    let ns = calib.samples.len();
    let mut done = 0;
    for chunk in calib.samples.chunks(4 * threads) {
        let parts: Vec<SquaredGrads> = super::par_ranges(chunk.len(), threads, |r| {
            let mut sq = empty();
            for k in r {
                probe(&g1, &chunk[k], (done + k) as u64, &mut sq);
            }
            sq
        });
        for part in parts {
            for (a, b) in sq.iter_mut().zip(part) {
                if let (Some(a), Some(b)) = (a, b) {
                    for (x, y) in a.iter_mut().zip(b) {
                        x[0] += y[0];
                        x[1] += y[1];
                    }
                }
            }
        }
        done += chunk.len();
        progress(done);
    }
    let nn = (ns * ns) as f64;
    Ok(sq
        .into_iter()
        .enumerate()
        .map(|(j, s)| {
            let s = s?;
            let pixels = match g1.nodes[j].op {
                Op::Conv(_) => sample_pixels(&g1, j).len().max(1),
                _ => 1,
            } as f64;
            Some(OutputWeights {
                incoherent: s.iter().map(|v| v[0] / (nn * pixels)).collect(),
                coherent: s.iter().map(|v| v[1] / nn).collect(),
            })
        })
        .collect())
}

/// One sample's squared probe gradients (see [`output_weights`]), added into `sq`. `seed`
/// draws the probe.
fn probe(g: &Graph, x: &[f32], seed: u64, sq: &mut SquaredGrads) {
    let tape = forward(g, x);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0BE5);
    let mut dv: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
    for o in &g.outputs {
        let y = tape.vals[o.value].as_deref().expect("computed");
        let norm = y
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
            .max(1e-30) as f32;
        let r = y
            .iter()
            .map(|_| if rng.next() & 1 == 1 { 1.0 } else { -1.0 } / norm)
            .collect();
        add_grad(&mut dv, o.value, r);
    }
    backward(g, &tape, dv, None, Some(sq));
}

/// Each trainable tensor's step scale: the root mean square of every output row of its
/// weights (one per output channel), and of its bias. Adam moves every parameter by about
/// the step size whatever its gradient's scale, and the weights of one model differ in
/// scale by orders of magnitude (BatchNorm folding scales each output channel), so the
/// step is relative: [`DistillOptions::lr`] times the scale of the parameter's row.
type Scales = Vec<Option<(Vec<f32>, f32)>>;

fn scales(g: &Graph) -> Scales {
    let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt();
    g.nodes
        .iter()
        .map(|n| {
            let (w, b) = match &n.op {
                Op::Conv(c) => (&c.weight, &c.bias),
                Op::Fc(f) => (&f.weight, &f.bias),
                _ => return None,
            };
            let all = rms(&w.data);
            let floor = (1e-3 * all).max(f32::MIN_POSITIVE);
            let rows = w.data.len() / w.dims[0].max(1);
            let per_row = w
                .data
                .chunks(rows.max(1))
                .map(|r| rms(r).max(floor))
                .collect();
            let bias = b.as_deref().map_or(0.0, rms).max(floor);
            Some((per_row, bias))
        })
        .collect()
}

/// One Adam step on every trainable tensor of `g` with the summed gradients `grads`
/// (times `scale`), each parameter's step relative to its row's scale (`sc`).
#[allow(clippy::too_many_arguments)]
fn adam(
    g: &mut Graph,
    grads: &Grads,
    sc: &Scales,
    m: &mut Grads,
    v: &mut Grads,
    lr: f32,
    t: usize,
    scale: f32,
) {
    let c1 = 1.0 - BETA1.powi(t as i32);
    let c2 = 1.0 - BETA2.powi(t as i32);
    for (j, node) in g.nodes.iter_mut().enumerate() {
        let (Some(gr), Some((rows, bs)), Some(mj), Some(vj)) =
            (&grads[j], &sc[j], &mut m[j], &mut v[j])
        else {
            continue;
        };
        let (w, b) = match &mut node.op {
            Op::Conv(c) => (&mut c.weight.data, c.bias.as_mut()),
            Op::Fc(f) => (&mut f.weight.data, f.bias.as_mut()),
            _ => continue,
        };
        let step =
            |p: &mut [f32], d: &[f32], mm: &mut [f32], vv: &mut [f32], s: &dyn Fn(usize) -> f32| {
                for k in 0..p.len() {
                    let gk = d[k] * scale;
                    mm[k] = BETA1 * mm[k] + (1.0 - BETA1) * gk;
                    vv[k] = BETA2 * vv[k] + (1.0 - BETA2) * gk * gk;
                    p[k] -= lr * s(k) * (mm[k] / c1) / ((vv[k] / c2).sqrt() + EPS);
                }
            };
        let per = w.len() / rows.len().max(1);
        step(w, &gr.w, &mut mj.w, &mut vj.w, &|k| rows[k / per]);
        if let Some(b) = b {
            step(b, &gr.b, &mut mj.b, &mut vj.b, &|_| *bs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{FcOp, Weight};
    use crate::passes::testing::B;

    /// Every activation's derivative against a central difference of its function, away
    /// from the kinks of the piecewise ones.
    #[test]
    fn activation_derivatives_match_finite_differences() {
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Clip {
                min: -1.0,
                max: 2.0,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::Sigmoid,
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Silu,
            Activation::Tanh,
            Activation::Gelu,
        ];
        for act in acts {
            for i in -40..=40 {
                let x = i as f64 * 0.1 + 0.013;
                let h = 1e-3;
                let f = |v: f64| act.apply(v as f32) as f64;
                let numeric = (f(x + h) - f(x - h)) / (2.0 * h);
                let got = act_grad(act, x as f32) as f64;
                assert!(
                    (got - numeric).abs() <= 2e-3,
                    "{act:?}'({x}) = {got}, finite difference {numeric}"
                );
            }
        }
    }

    fn values(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
        let mut r = Rng(*seed);
        *seed += 1;
        (0..n)
            .map(|_| ((r.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale)
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(seed: &mut u64, [ic, oc, k, group, stride, pad]: [usize; 6], act: Activation) -> Op {
        let n = oc * ic / group * k * k;
        Op::Conv(ConvOp {
            weight: Weight {
                dims: vec![oc, ic / group, k, k],
                data: values(seed, n, 1.0 / ((ic / group * k * k) as f32).sqrt()),
            },
            bias: Some(values(seed, oc, 0.3)),
            group,
            stride: [stride; 2],
            dilation: [1, 1],
            pads: [pad; 4],
            act,
        })
    }

    /// Conv stride 2 with padding and Relu6, depthwise with leaky Relu, 1x1 with a fused
    /// residual, grouped 3x3, Concat, squeeze-excite (global average, sigmoid, Mul), max
    /// pooling, Flatten and a fully connected layer.
    fn net(seed: &mut u64) -> Graph {
        let (mut b, x) = B::new(&[1, 3, 9, 9]);
        let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
        let c1 = b.node(conv(seed, [3, 8, 3, 1, 2, 1], relu6), &[x]);
        let dw = b.node(
            conv(
                seed,
                [8, 8, 3, 8, 1, 1],
                Activation::LeakyRelu { alpha: 0.1 },
            ),
            &[c1],
        );
        let pw = b.node(conv(seed, [8, 8, 1, 1, 1, 0], Activation::None), &[dw, c1]);
        let gc = b.node(conv(seed, [8, 8, 3, 2, 1, 1], Activation::Tanh), &[pw]);
        let cat = b.node(Op::Concat, &[gc, pw]);
        let sq = b.node(Op::GlobalAvgPool, &[cat]);
        let sg = b.node(Op::Act(Activation::Sigmoid), &[sq]);
        let se = b.node(Op::Mul, &[cat, sg]);
        let mp = b.node(
            Op::Pool(PoolOp {
                kind: PoolKind::Max,
                kernel: [2, 2],
                stride: [2, 2],
                dilation: [1, 1],
                pads: [0; 4],
                ceil_pads: [0; 2],
            }),
            &[se],
        );
        let fl = b.node(Op::Flatten, &[mp]);
        let fc = b.node(
            Op::Fc(FcOp {
                weight: Weight {
                    dims: vec![5, 64],
                    data: values(seed, 5 * 64, 0.125),
                },
                bias: Some(values(seed, 5, 0.3)),
                act: Activation::None,
            }),
            &[fl],
        );
        b.output(fc)
    }

    fn loss(g: &Graph, x: &[f32], t: &[Vec<f32>]) -> f64 {
        loss_grads(g, &forward(g, x), t).0
    }

    /// The test net, and a copy with noise added to every conv's weights.
    fn perturbed(seed: &mut u64) -> (Graph, Graph) {
        let dense = net(seed);
        let mut student = dense.clone();
        for n in &mut student.nodes {
            if let Op::Conv(c) = &mut n.op {
                let noise = values(seed, c.weight.data.len(), 0.1);
                c.weight
                    .data
                    .iter_mut()
                    .zip(noise)
                    .for_each(|(w, e)| *w += e);
            }
        }
        (dense, student)
    }

    /// The tests' distillation: 30 epochs of batches of 4, no mirroring, with block outputs
    /// at weight `features`.
    fn opts30(features: f64) -> DistillOptions {
        DistillOptions {
            epochs: 30,
            lr: 1e-2,
            batch: 4,
            threads: 2,
            mirror: false,
            features,
        }
    }

    /// Every channel of every value of `g` kept.
    fn all_kept(g: &Graph) -> Vec<Vec<usize>> {
        (0..g.values.len())
            .map(|v| (0..channels(g, v)).collect())
            .collect()
    }

    /// The output and block-output loss of `g` on `x` against the teacher's forward pass.
    fn full_loss(g: &Graph, x: &[f32], teacher: &Tape, feats: &[Feature], w: f64) -> f64 {
        let tape = forward(g, x);
        let t: Vec<Vec<f32>> = g
            .outputs
            .iter()
            .map(|o| teacher.vals[o.value].clone().unwrap())
            .collect();
        let (l, mut dv) = loss_grads(g, &tape, &t);
        l + feature_loss(&tape, teacher, feats, w, &mut dv)
    }

    /// Every weight and bias gradient of backpropagation matches central differences of
    /// the loss, through each op the module admits.
    #[test]
    fn gradients_match_finite_differences() {
        let mut seed = 11;
        let g = net(&mut seed);
        check(&g).unwrap();
        let x = values(&mut seed, 3 * 81, 1.5);
        let tape = forward(&g, &x);
        // The forward pass is the reference evaluator's.
        assert_eq!(
            tape.vals[g.outputs[0].value].as_ref().unwrap(),
            &eval(&g, &[&x])[0]
        );
        // The teacher: another model of the same shape; its block outputs count twice.
        let teacher = forward(&net(&mut seed), &x);
        let feats = features(&g, &all_kept(&g));
        assert_eq!(feats.len(), 1, "the 1x1 conv with the fused residual");
        let t = vec![teacher.vals[g.outputs[0].value].clone().unwrap()];
        let tt = Teacher {
            targets: &t,
            tape: Some(&teacher),
        };
        let mut grads = zero_grads(&g);
        sample_grads(&g, &tt, &feats, 2.0, &x, &mut grads);
        let mut checked = 0;
        for (j, lg) in grads.iter().enumerate() {
            let Some(lg) = lg else { continue };
            for (bias, len) in [(false, lg.w.len()), (true, lg.b.len())] {
                for k in (0..len).step_by(len / 5 + 1) {
                    let at = |g: &mut Graph, d: f32| {
                        let (w, b) = match &mut g.nodes[j].op {
                            Op::Conv(c) => (&mut c.weight.data, c.bias.as_mut().unwrap()),
                            Op::Fc(f) => (&mut f.weight.data, f.bias.as_mut().unwrap()),
                            _ => unreachable!(),
                        };
                        if bias {
                            b[k] += d
                        } else {
                            w[k] += d
                        }
                    };
                    let eps = 1e-3;
                    let mut gp = g.clone();
                    at(&mut gp, eps);
                    let mut gm = g.clone();
                    at(&mut gm, -eps);
                    let l = |g: &Graph| full_loss(g, &x, &teacher, &feats, 2.0);
                    let num = (l(&gp) - l(&gm)) / (2.0 * f64::from(eps));
                    let ana = f64::from(if bias { lg.b[k] } else { lg.w[k] });
                    assert!(
                        (num - ana).abs() <= 2e-3 + 2e-2 * num.abs(),
                        "node {j} ({}) {} {k}: backprop {ana}, differences {num}",
                        g.nodes[j].name,
                        if bias { "bias" } else { "weight" },
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "{checked}");
    }

    /// Distillation brings a perturbed copy of a model back towards it, on inputs it did
    /// not train on as well as on its own.
    #[test]
    fn distillation_reduces_the_error_to_the_dense_model() {
        let mut seed = 3;
        let (dense, mut student) = perturbed(&mut seed);
        let train = Calibration::new(
            vec![3, 9, 9],
            (0..64).map(|_| values(&mut seed, 243, 1.5)).collect(),
        );
        let held: Vec<Vec<f32>> = (0..16).map(|_| values(&mut seed, 243, 1.5)).collect();
        let err = |g: &Graph, xs: &[Vec<f32>]| -> f64 {
            xs.iter()
                .map(|x| loss(g, x, &eval(&dense, &[x])))
                .sum::<f64>()
                / xs.len() as f64
        };
        let (before, before_held) = (err(&student, &train.samples), err(&student, &held));
        let kept = all_kept(&dense);
        let rep = distill(&dense, &mut student, &train, &opts30(0.0), &kept, |_, _| {}).unwrap();
        assert_eq!(rep.epoch_loss.len(), 30);
        let (after, after_held) = (err(&student, &train.samples), err(&student, &held));
        println!("train {before} -> {after}, held-out {before_held} -> {after_held}");
        assert!(after < 0.3 * before, "train {before} -> {after}");
        assert!(
            after_held < 0.5 * before_held,
            "held-out {before_held} -> {after_held}"
        );
    }

    /// A block output is compared on the dense channels the student keeps: a student value
    /// equal to the teacher's channels 1 and 3 costs nothing, and any other costs its
    /// relative error, weighted.
    #[test]
    fn block_outputs_are_matched_on_the_kept_channels() {
        let teacher = Tape {
            vals: vec![Some(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])],
            pre: Vec::new(),
        };
        let feats = [Feature {
            value: 0,
            kept: vec![1, 3],
        }];
        // The weighted loss of a student value `y`, and its gradient.
        let loss_of = |y: Vec<f32>| {
            let student = Tape {
                vals: vec![Some(y)],
                pre: Vec::new(),
            };
            let mut dv = vec![None];
            let l = feature_loss(&student, &teacher, &feats, 3.0, &mut dv);
            (l, dv.pop().flatten().unwrap())
        };
        let (exact, d) = loss_of(vec![3.0, 4.0, 7.0, 8.0]);
        assert_eq!(exact, 0.0);
        assert_eq!(d, vec![0.0; 4]);
        let (off, d) = loss_of(vec![3.0, 5.0, 7.0, 6.0]);
        let norm = 9.0 + 16.0 + 49.0 + 64.0;
        assert!((off - 3.0 * 5.0 / norm).abs() < 1e-12, "{off}");
        assert!(
            (f64::from(d[1]) - 6.0 / norm).abs() < 1e-6
                && (f64::from(d[3]) + 12.0 / norm).abs() < 1e-6
        );
    }

    /// Matching the block outputs as well brings a perturbed copy's block output closer to
    /// the dense model's on inputs it did not train on than the outputs alone do.
    #[test]
    fn block_outputs_pin_the_student_down() {
        let mut seed = 3;
        let (dense, student) = perturbed(&mut seed);
        let train = Calibration::new(
            vec![3, 9, 9],
            (0..16).map(|_| values(&mut seed, 243, 1.5)).collect(),
        );
        let held: Vec<Vec<f32>> = (0..16).map(|_| values(&mut seed, 243, 1.5)).collect();
        let kept = all_kept(&dense);
        let feats = features(&dense, &kept);
        let block_err = |g: &Graph| -> f64 {
            held.iter()
                .map(|x| {
                    let t = forward(&dense, x);
                    feature_loss(
                        &forward(g, x),
                        &t,
                        &feats,
                        1.0,
                        &mut vec![None; g.values.len()],
                    )
                })
                .sum::<f64>()
                / held.len() as f64
        };
        let trained = |features: f64| {
            let mut s = student.clone();
            let rep = distill(&dense, &mut s, &train, &opts30(features), &kept, |_, _| {}).unwrap();
            assert_eq!(rep.feature_loss.len(), if features > 0.0 { 30 } else { 0 });
            s
        };
        let (before, outputs, blocks) = (
            block_err(&student),
            block_err(&trained(0.0)),
            block_err(&trained(1.0)),
        );
        println!("held-out block error {before}: outputs only {outputs}, with blocks {blocks}");
        assert!(blocks < 0.5 * outputs, "{blocks} vs {outputs}");
    }

    /// The output weights against their closed forms. For `x -> fc1 -> fc2` (no
    /// activations, fc2's output is the model's), fc2's are exactly (to f32 rounding)
    /// `coherent = Σ_n ‖y_n‖⁻² / N²` (its probe gradients are `±1 / ‖y‖`), and fc1's converge
    /// to `Σ_k W2[k, o]² Σ_n ‖y_n‖⁻² / N²` over the random probes; a fully connected layer
    /// has no positions, so no incoherent part. A conv followed by a global average pool has
    /// the same gradient at every position: all of it is coherent, `Σ_n P⁻² ‖y_n‖⁻² / N²`.
    #[test]
    fn output_weights_match_their_closed_forms() {
        let mut seed = 5;
        let (mut b, x) = B::new(&[1, 8]);
        let fc = |seed: &mut u64, i: usize, o: usize| {
            Op::Fc(FcOp {
                weight: Weight {
                    dims: vec![o, i],
                    data: values(seed, o * i, 0.5),
                },
                bias: Some(values(seed, o, 0.3)),
                act: Activation::None,
            })
        };
        let h = b.node(fc(&mut seed, 8, 6), &[x]);
        let y = b.node(fc(&mut seed, 6, 3), &[h]);
        let g = b.output(y);
        let n = 3000;
        let calib = Calibration::new(vec![8], (0..n).map(|_| values(&mut seed, 8, 1.5)).collect());
        let w = output_weights(&g, &calib, 2, |_| {}).unwrap();
        assert!(w.len() == g.nodes.len() && w.iter().all(Option::is_some));
        let Op::Fc(f2) = &g.nodes[1].op else {
            unreachable!("built above")
        };
        let e = |v: &[f32]| v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>();
        let nn = (n * n) as f64;
        let inv: f64 = calib
            .samples
            .iter()
            .map(|s| 1.0 / e(&eval(&g, &[s])[0]))
            .sum();
        let w2 = w[1].as_ref().unwrap();
        for (&c, &i) in w2.coherent.iter().zip(&w2.incoherent) {
            let want = inv / nn;
            assert!((c - want).abs() <= 1e-6 * want, "fc2: {c} vs {want}");
            assert_eq!(i, 0.0);
        }
        let w1 = w[0].as_ref().unwrap();
        for (o, &c) in w1.coherent.iter().enumerate() {
            let col: f64 = (0..3)
                .map(|k| f64::from(f2.weight.data[k * 6 + o]).powi(2))
                .sum();
            let want = col * inv / nn;
            assert!(
                (c - want).abs() <= 0.1 * want,
                "fc1 channel {o}: {c} vs {want}"
            );
        }

        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let c = b.node(conv(&mut seed, [2, 4, 1, 1, 1, 0], Activation::None), &[x]);
        let p = b.node(Op::GlobalAvgPool, &[c]);
        let g = b.output(p);
        let n = 50;
        let calib = Calibration::new(
            vec![2, 3, 3],
            (0..n).map(|_| values(&mut seed, 18, 1.5)).collect(),
        );
        let w = output_weights(&g, &calib, 2, |_| {}).unwrap();
        let wc = w[0].as_ref().unwrap();
        let want = calib
            .samples
            .iter()
            .map(|s| 1.0 / (81.0 * e(&eval(&g, &[s])[0])))
            .sum::<f64>()
            / (n * n) as f64;
        for (&c, &i) in wc.coherent.iter().zip(&wc.incoherent) {
            assert!((c - want).abs() <= 1e-5 * want, "conv: {c} vs {want}");
            assert!(i <= 1e-9 * want, "conv incoherent {i}");
        }
    }

    /// An op that gradients do not pass through is reported before any work.
    #[test]
    fn unsupported_ops_are_clear_errors() {
        let (mut b, x) = B::new(&[1, 4, 3, 3]);
        let s = b.node(Op::Softmax, &[x]);
        let g = b.output(s);
        let e = check(&g).unwrap_err().to_string();
        assert!(e.contains("Softmax"), "{e}");
    }
}
