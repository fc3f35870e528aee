//! Folds a depthwise 1x1 conv, a per-channel scale `a` and shift `c` (what a depthwise 3x3
//! becomes when pruning takes its ring), into a neighbour, so that it costs nothing at run
//! time. Only exact rewrites:
//!
//! - **Into its producer**, a conv with no activation and no fused residual whose output
//!   the depthwise conv alone reads: `W'[o] = a[o] W[o]`, `b'[o] = a[o] b[o] + c[o]`, and
//!   the producer takes the depthwise conv's activation. A stride `t` of the depthwise
//!   conv multiplies the producer's stride (its output pixels `0, t, 2t, ...` are the ones
//!   kept; the padding stays).
//! - **Into its consumers**, when the depthwise conv has no activation and every reader of
//!   its output is a conv reading it as its data input: `W'[o][i] = a[i] W[o][i]` and
//!   `b'[o] = b[o] + Σ W[o][i] c[i]` over the taps. The shift reaches every tap only without
//!   padding, so a consumer with padding takes the fold only when `c` is zero. A stride
//!   `t` of the depthwise conv multiplies the consumer's stride, and then every consumer
//!   must be a 1x1 conv without padding (input pixel `j` of the consumer is pixel `t j` of
//!   the depthwise conv's input; a KxK consumer would also need its dilation and padding
//!   multiplied, and a dilated layer runs on slower kernels).
//!
//! Anything else (MobileNetV2's depthwise convs sit between two ReLU6s) stays a depthwise
//! 1x1 conv, which the kernel tables run as a per-channel affine.

use super::{scale_output_rows, sweep};
use crate::ir::{Activation, ConvOp, Graph, Op};

/// Runs the pass; returns the number of depthwise 1x1 convs folded away.
pub fn run(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| {
        let Op::Conv(d) = &g.nodes[i].op else {
            return false;
        };
        if !is_depthwise_1x1(d) || g.nodes[i].inputs.len() != 1 {
            return false;
        }
        let d = d.clone();
        let (x, y) = (g.nodes[i].inputs[0], g.nodes[i].output);
        let shift = d.bias.clone().unwrap_or_else(|| vec![0.0; d.out_c()]);
        if let Some(p) = uses.producer[x].filter(|_| uses.single(x)) {
            if into_producer(g, p, &d, &shift) {
                g.nodes[p].output = y;
                g.nodes.remove(i);
                return true;
            }
        }
        if d.act != Activation::None || uses.is_output[y] {
            return false;
        }
        let readers: Vec<usize> = (0..g.nodes.len())
            .filter(|&n| g.nodes[n].inputs.contains(&y))
            .collect();
        if readers.is_empty() || !readers.iter().all(|&n| consumer_takes(g, n, y, &d, &shift)) {
            return false;
        }
        for n in readers {
            into_consumer(g, n, &d, &shift);
            g.nodes[n].inputs[0] = x;
        }
        g.nodes.remove(i);
        true
    })
}

/// A depthwise conv (one channel per group) with a 1x1 kernel and no padding.
fn is_depthwise_1x1(c: &ConvOp) -> bool {
    let ic = c.group * c.weight.dims.get(1).copied().unwrap_or(0);
    c.group == c.out_c() && ic == c.group && c.kernel() == [1, 1] && c.pads == [0; 4]
}

/// Folds `d` into the conv node `p` that produces its input, if `p` can take it.
fn into_producer(g: &mut Graph, p: usize, d: &ConvOp, shift: &[f32]) -> bool {
    if g.nodes[p].inputs.len() != 1 {
        return false;
    }
    let Op::Conv(c) = &mut g.nodes[p].op else {
        return false;
    };
    if c.act != Activation::None || c.out_c() != shift.len() {
        return false;
    }
    scale_output_rows(&mut c.weight, &mut c.bias, &d.weight.data, shift);
    c.stride = [c.stride[0] * d.stride[0], c.stride[1] * d.stride[1]];
    c.act = d.act;
    true
}

/// Whether conv node `n`, a reader of `y` (the output of `d`), can take `d`.
fn consumer_takes(g: &Graph, n: usize, y: usize, d: &ConvOp, shift: &[f32]) -> bool {
    let node = &g.nodes[n];
    let Op::Conv(c) = &node.op else {
        return false;
    };
    let strided = d.stride != [1, 1];
    node.inputs[0] == y
        && !node.inputs[1..].contains(&y)
        && (c.pads == [0; 4] || (!strided && shift.iter().all(|&s| s == 0.0)))
        && (!strided || c.kernel() == [1, 1])
}

/// Folds `d` into conv node `n`, which reads `d`'s output as its data input.
fn into_consumer(g: &mut Graph, n: usize, d: &ConvOp, shift: &[f32]) {
    let Op::Conv(c) = &mut g.nodes[n].op else {
        return;
    };
    let (oc, icg) = (c.out_c(), c.weight.dims[1]);
    let taps = c.weight.dims[2] * c.weight.dims[3];
    let groups_out = oc / c.group;
    let scale = &d.weight.data;
    let mut add = vec![0.0f32; oc];
    for (o, add) in add.iter_mut().enumerate() {
        let g0 = (o / groups_out) * icg;
        for j in 0..icg {
            let ch = g0 + j;
            let row = &mut c.weight.data[(o * icg + j) * taps..][..taps];
            *add += row.iter().sum::<f32>() * shift[ch];
            row.iter_mut().for_each(|w| *w *= scale[ch]);
        }
    }
    if add.iter().any(|&v| v != 0.0) {
        let b = c.bias.get_or_insert_with(|| vec![0.0; oc]);
        b.iter_mut().zip(&add).for_each(|(b, a)| *b += a);
    }
    let [th, tw] = d.stride;
    c.stride = [c.stride[0] * th, c.stride[1] * tw];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::eval::eval;
    use crate::ir::Weight;
    use crate::passes::testing::*;

    /// A depthwise 1x1 conv over `c` channels: scale `a`, shift `s`.
    fn dw1x1(a: &[f32], s: &[f32], stride: usize, act: Activation) -> Op {
        let c = a.len();
        Op::Conv(ConvOp {
            weight: Weight {
                dims: vec![c, 1, 1, 1],
                data: a.to_vec(),
            },
            bias: Some(s.to_vec()),
            group: c,
            stride: [stride; 2],
            dilation: [1, 1],
            pads: [0; 4],
            act,
        })
    }

    /// A dense conv `ic -> oc`, kernel `k`, padding `p`, with varied weights and bias.
    fn dense(ic: usize, oc: usize, k: usize, p: usize, act: Activation) -> Op {
        let n = oc * ic * k * k;
        Op::Conv(ConvOp {
            weight: Weight {
                dims: vec![oc, ic, k, k],
                data: (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect(),
            },
            bias: Some((0..oc).map(|o| o as f32 * 0.3 - 0.4).collect()),
            group: 1,
            stride: [1, 1],
            dilation: [1, 1],
            pads: [p; 4],
            act,
        })
    }

    fn input(shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0).collect()
    }

    /// Runs the pass on `g`; checks the outputs are unchanged and returns the op names.
    fn folded(mut g: Graph, expect: usize) -> Vec<&'static str> {
        let x = input(&g.values[g.inputs[0].value].shape.clone());
        let before = eval(&g, &[&x]);
        assert_eq!(run(&mut g), expect);
        g.check().unwrap();
        let after = eval(&g, &[&x]);
        let (a, b) = (&before[0], &after[0]);
        assert_eq!(a.len(), b.len());
        for (u, v) in a.iter().zip(b) {
            assert!((u - v).abs() <= 1e-4 * (1.0 + u.abs()), "{u} vs {v}");
        }
        ops(&g)
    }

    const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };
    const A: [f32; 3] = [1.5, -0.5, 2.0];
    const S: [f32; 3] = [0.25, 1.0, -0.75];

    #[test]
    fn folds_into_the_producer_with_its_activation_and_stride() {
        for stride in [1, 2] {
            let (mut b, x) = B::new(&[1, 2, 7, 7]);
            let c = b.node(dense(2, 3, 3, 1, Activation::None), &[x]);
            let y = b.node(dw1x1(&A, &S, stride, RELU6), &[c]);
            let g = b.output(y);
            assert_eq!(folded(g, 1), vec!["Conv"], "stride {stride}");
        }
    }

    #[test]
    fn folds_into_every_consumer() {
        // Stride 1: two 3x3 consumers without padding.
        let (mut b, x) = B::new(&[1, 3, 6, 6]);
        let d = b.node(dw1x1(&A, &S, 1, Activation::None), &[x]);
        let u = b.node(dense(3, 2, 3, 0, Activation::Relu), &[d]);
        let v = b.node(dense(3, 2, 3, 0, Activation::None), &[d]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[u, v],
        );
        let g = b.output(y);
        assert_eq!(folded(g, 1), vec!["Conv", "Conv", "Add"]);
        // Stride 2 into a 1x1 consumer: its stride doubles.
        let (mut b, x) = B::new(&[1, 3, 7, 7]);
        let d = b.node(dw1x1(&A, &S, 2, Activation::None), &[x]);
        let y = b.node(dense(3, 4, 1, 0, Activation::None), &[d]);
        let g = b.output(y);
        assert_eq!(folded(g, 1), vec!["Conv"]);
        // A padded consumer takes a pure scale (zero shift).
        let (mut b, x) = B::new(&[1, 3, 5, 5]);
        let d = b.node(dw1x1(&A, &[0.0; 3], 1, Activation::None), &[x]);
        let y = b.node(dense(3, 2, 3, 1, Activation::None), &[d]);
        let g = b.output(y);
        assert_eq!(folded(g, 1), vec!["Conv"]);
    }

    #[test]
    fn stays_where_no_fold_is_exact() {
        // Between two activations (MobileNetV2): neither neighbour can take it.
        let (mut b, x) = B::new(&[1, 2, 6, 6]);
        let c = b.node(dense(2, 3, 1, 0, RELU6), &[x]);
        let d = b.node(dw1x1(&A, &S, 1, RELU6), &[c]);
        let y = b.node(dense(3, 2, 1, 0, Activation::None), &[d]);
        assert_eq!(folded(b.output(y), 0), vec!["Conv", "Conv", "Conv"]);
        // A shift would meet a consumer's zero padding; a stride, its 3x3 kernel.
        for (shift, stride, pad) in [(S, 1, 1), ([0.0; 3], 2, 0)] {
            let (mut b, x) = B::new(&[1, 3, 7, 7]);
            let d = b.node(dw1x1(&A, &shift, stride, Activation::None), &[x]);
            let y = b.node(dense(3, 2, 3, pad, Activation::None), &[d]);
            assert_eq!(folded(b.output(y), 0), vec!["Conv", "Conv"]);
        }
        // A model output, or a value another op also reads, stays.
        let (mut b, x) = B::new(&[1, 3, 4, 4]);
        let d = b.node(dw1x1(&A, &S, 1, Activation::None), &[x]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[d, d],
        );
        assert_eq!(folded(b.output(y), 0), vec!["Conv", "Add"]);
        let (mut b, x) = B::new(&[1, 3, 4, 4]);
        let d = b.node(dw1x1(&A, &S, 1, Activation::None), &[x]);
        assert_eq!(folded(b.output(d), 0), vec!["Conv"]);
    }
}
