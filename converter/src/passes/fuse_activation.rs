//! Fuses activations into the op that produces their input.
//!
//! First, `Mul(x, Sigmoid(x))` (SiLU / Swish, as exported) becomes one `Act(Silu)` when the
//! sigmoid output has no other reader. Then every `Act` whose input is produced by a Conv,
//! Fc, Add or ChannelAffine without an activation, has no other reader and is not a model
//! output, is moved into that producer. Then two activations written out as several ops
//! become one: Mish, `x * tanh(softplus(x))`, HardSwish, `x * clip(x + 3, 0, 6) / 6`
//! (as older exporters write `x * relu6(x + 3) / 6`), and GELU, `0.5 * (x * (1 + erf(x /
//! √2)))` (as exporters write it before opset 20); the intermediate results must have no
//! other reader. The new activations are fused into their producers like the others.

use super::{absorb, sweep, Uses};
use crate::ir::{Activation, BinaryKind, Graph, Op, UnaryKind, ValueId};

/// Runs the pass; returns the number of rewrites.
pub fn run(g: &mut Graph) -> usize {
    let silu = sweep(g, |g, uses, i| {
        if g.nodes[i].op != Op::Mul {
            return false;
        }
        let ins = g.nodes[i].inputs.clone();
        for k in 0..2 {
            let (x, s) = (ins[k], ins[1 - k]);
            let Some(p) = uses.producer[s] else { continue };
            let sig = &g.nodes[p];
            if sig.op == Op::Act(Activation::Sigmoid) && sig.inputs[0] == x && uses.single(s) {
                g.nodes[i].op = Op::Act(Activation::Silu);
                g.nodes[i].inputs = vec![x];
                g.nodes.remove(p);
                return true;
            }
        }
        false
    });
    let fused = fuse_into_producers(g);
    let mish = sweep(g, |g, uses, i| {
        let ins = g.nodes[i].inputs.clone();
        if !is_mul(&g.nodes[i].op) || ins.len() != 2 {
            return false;
        }
        for k in 0..2 {
            let (x, t) = (ins[k], ins[1 - k]);
            let Some(pt) = uses.producer[t] else { continue };
            if g.nodes[pt].op != Op::Act(Activation::Tanh) || !uses.single(t) {
                continue;
            }
            let s = g.nodes[pt].inputs[0];
            let Some(ps) = uses.producer[s] else { continue };
            let softplus = Op::Unary {
                kind: UnaryKind::Softplus,
            };
            if g.nodes[ps].op != softplus || g.nodes[ps].inputs[0] != x || !uses.single(s) {
                continue;
            }
            g.nodes[i].op = Op::Unary {
                kind: UnaryKind::Mish,
            };
            g.nodes[i].inputs = vec![x];
            g.nodes.remove(pt.max(ps));
            g.nodes.remove(pt.min(ps));
            return true;
        }
        false
    });
    let hard_swish = sweep(g, |g, uses, i| {
        let Op::ChannelAffine {
            scale,
            shift,
            act: Activation::None,
        } = &g.nodes[i].op
        else {
            return false;
        };
        if !scale.iter().all(|&s| (s - 1.0 / 6.0).abs() <= 1e-7) || shift.iter().any(|&t| t != 0.0)
        {
            return false;
        }
        let Some((pm, ins)) = product_read_once(g, uses, g.nodes[i].inputs[0]) else {
            return false;
        };
        for k in 0..2 {
            let (x, c) = (ins[k], ins[1 - k]);
            let Some(pc) = uses.producer[c] else { continue };
            let relu6_of_x_plus_3 = matches!(
                &g.nodes[pc].op,
                Op::ChannelAffine {
                    scale,
                    shift,
                    act: Activation::Clip { min, max },
                } if scale.iter().all(|&s| s == 1.0)
                    && shift.iter().all(|&t| t == 3.0)
                    && *min == 0.0
                    && *max == 6.0
            );
            if !relu6_of_x_plus_3 || g.nodes[pc].inputs[0] != x || !uses.single(c) {
                continue;
            }
            g.nodes[i].op = Op::Act(Activation::HardSwish);
            g.nodes[i].inputs = vec![x];
            g.nodes.remove(pm.max(pc));
            g.nodes.remove(pm.min(pc));
            return true;
        }
        false
    });
    let gelu = sweep(g, |g, uses, i| {
        // `0.5 · (x · (1 + erf(x / √2)))`, as exporters before opset 20 write GELU.
        if !affine(&g.nodes[i].op, 0.5, 0.0) {
            return false;
        }
        let Some((pm, ins)) = product_read_once(g, uses, g.nodes[i].inputs[0]) else {
            return false;
        };
        for k in 0..2 {
            let (x, p) = (ins[k], ins[1 - k]);
            let Some(pp) = uses.producer[p] else { continue };
            if !affine(&g.nodes[pp].op, 1.0, 1.0) || !uses.single(p) {
                continue;
            }
            let e = g.nodes[pp].inputs[0];
            let Some(pe) = uses.producer[e] else { continue };
            let erf = Op::Unary {
                kind: UnaryKind::Erf,
            };
            if g.nodes[pe].op != erf || !uses.single(e) {
                continue;
            }
            let a = g.nodes[pe].inputs[0];
            let Some(pa) = uses.producer[a] else { continue };
            let scaled = affine(&g.nodes[pa].op, std::f32::consts::FRAC_1_SQRT_2, 0.0);
            if !scaled || g.nodes[pa].inputs[0] != x || !uses.single(a) {
                continue;
            }
            g.nodes[i].op = Op::Act(Activation::Gelu);
            g.nodes[i].inputs = vec![x];
            let mut dead = [pm, pp, pe, pa];
            dead.sort_unstable();
            for &d in dead.iter().rev() {
                g.nodes.remove(d);
            }
            return true;
        }
        false
    });
    let refused = if mish + hard_swish + gelu > 0 {
        fuse_into_producers(g)
    } else {
        0
    };
    silu + fused + mish + hard_swish + gelu + refused
}

/// `x · scale + shift` with every scale `s` and every shift `t` (to 1e-6), no activation.
fn affine(op: &Op, s: f32, t: f32) -> bool {
    matches!(op, Op::ChannelAffine { scale, shift, act: Activation::None }
        if scale.iter().all(|&v| (v - s).abs() <= 1e-6 * s.abs().max(1.0))
            && shift.iter().all(|&v| (v - t).abs() <= 1e-6))
}

/// When `m` is an elementwise product of two tensors that only one node reads: the product's
/// node and its two inputs.
fn product_read_once(g: &Graph, uses: &Uses, m: ValueId) -> Option<(usize, [ValueId; 2])> {
    let pm = uses.producer[m]?;
    let n = &g.nodes[pm];
    let ins: [ValueId; 2] = n.inputs.as_slice().try_into().ok()?;
    (is_mul(&n.op) && uses.single(m)).then_some((pm, ins))
}

/// An elementwise product of two tensors of one shape.
fn is_mul(op: &Op) -> bool {
    matches!(
        op,
        Op::Mul
            | Op::Binary {
                kind: BinaryKind::Mul,
                act: Activation::None,
            }
    )
}

/// Moves every standalone activation into the producer of its input, where it can.
fn fuse_into_producers(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| {
        let Op::Act(a) = g.nodes[i].op else {
            return false;
        };
        let x = g.nodes[i].inputs[0];
        let Some(p) = uses.producer[x] else {
            return false;
        };
        if !uses.single(x) {
            return false;
        }
        match g.nodes[p].op.act_mut() {
            Some(slot) if *slot == Activation::None => *slot = a,
            _ => return false,
        }
        absorb(g, p, i);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::*;

    #[test]
    fn relu_into_conv() {
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let c = b.node(conv(2, 1.0), &[x]);
        let y = b.node(Op::Act(Activation::Clip { min: 0.0, max: 6.0 }), &[c]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        let Op::Conv(cv) = &g.nodes[0].op else {
            panic!()
        };
        assert_eq!(cv.act, Activation::Clip { min: 0.0, max: 6.0 });
        assert_eq!(g.nodes[0].output, y);
    }

    #[test]
    fn silu_pattern() {
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let c = b.node(conv(2, 1.0), &[x]);
        let s = b.node(Op::Act(Activation::Sigmoid), &[c]);
        let y = b.node(Op::Mul, &[c, s]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 2);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Conv"]);
        let Op::Conv(cv) = &g.nodes[0].op else {
            panic!()
        };
        assert_eq!(cv.act, Activation::Silu);
    }

    #[test]
    fn no_fusion_into_outputs_shared_values_or_pools() {
        // The conv output is a model output too.
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let c = b.node(conv(2, 1.0), &[x]);
        let y = b.node(Op::Act(Activation::Relu), &[c]);
        let mut g = b.output(y);
        g.outputs.push(crate::ir::GraphIo {
            name: "c".into(),
            value: c,
            dims: vec![1, 2, 3, 3],
        });
        assert_eq!(run(&mut g), 0);

        // Relu after GlobalAvgPool stays standalone; a second activation is not stacked.
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let p = b.node(Op::GlobalAvgPool, &[x]);
        let r = b.node(Op::Act(Activation::Relu), &[p]);
        let c = b.node(conv(2, 1.0), &[r]);
        let t = b.node(Op::Act(Activation::Tanh), &[c]);
        let y = b.node(Op::Act(Activation::Relu), &[t]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        assert_eq!(ops(&g), vec!["GlobalAvgPool", "Act", "Conv", "Act"]);
    }
}
