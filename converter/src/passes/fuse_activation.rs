//! Fuses activations into the op that produces their input.
//!
//! First, `Mul(x, Sigmoid(x))` (SiLU / Swish, as exported) becomes one `Act(Silu)` when the
//! sigmoid output has no other reader. Then every `Act` whose input is produced by a Conv,
//! Fc, Add or ChannelAffine without an activation, has no other reader and is not a model
//! output, is moved into that producer.

use super::{absorb, sweep};
use crate::ir::{Activation, Graph, Op};

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
    let fused = sweep(g, |g, uses, i| {
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
    });
    silu + fused
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
