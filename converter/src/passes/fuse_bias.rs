//! Folds a per-channel constant Add (a `ChannelAffine` whose scale is all ones, as imported
//! from `Add(x, bias)` after a bias-less MatMul or Conv) into the bias of the Conv or Fc that
//! produces `x`, when `x` has no other reader and is not a model output.

use super::{absorb, sweep};
use crate::ir::{Activation, Graph, Op};

/// Runs the pass; returns the number of Adds folded.
pub fn run(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| {
        let Op::ChannelAffine { scale, shift, act } = &g.nodes[i].op else {
            return false;
        };
        if scale.iter().any(|&s| s != 1.0) {
            return false;
        }
        let x = g.nodes[i].inputs[0];
        let Some(p) = uses.producer[x] else {
            return false;
        };
        if !uses.single(x) {
            return false;
        }
        let (shift, act) = (shift.clone(), *act);
        let bias = match &mut g.nodes[p].op {
            Op::Conv(c) if c.act == Activation::None => &mut c.bias,
            Op::Fc(f) if f.act == Activation::None => &mut f.bias,
            _ => return false,
        };
        let b = bias.get_or_insert_with(|| vec![0.0; shift.len()]);
        for (b, s) in b.iter_mut().zip(&shift) {
            *b += s;
        }
        if let Some(a) = g.nodes[p].op.act_mut() {
            *a = act;
        }
        absorb(g, p, i);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{FcOp, Weight};
    use crate::passes::testing::*;

    #[test]
    fn matmul_plus_add_becomes_fc_with_bias() {
        let (mut b, x) = B::new(&[1, 2]);
        let fc = Op::Fc(FcOp {
            weight: Weight {
                dims: vec![3, 2],
                data: vec![1.0; 6],
            },
            bias: None,
            act: Activation::None,
        });
        let m = b.node(fc, &[x]);
        let add = Op::ChannelAffine {
            scale: vec![1.0; 3],
            shift: vec![0.5, 1.0, 1.5],
            act: Activation::Relu,
        };
        let y = b.node(add, &[m]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Fc"]);
        let Op::Fc(f) = &g.nodes[0].op else { panic!() };
        assert_eq!(f.bias, Some(vec![0.5, 1.0, 1.5]));
        assert_eq!(f.act, Activation::Relu);
        assert_eq!(g.nodes[0].output, y);
    }

    #[test]
    fn conv_bias_accumulates_and_other_readers_block() {
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let mut op = conv(2, 1.0);
        if let Op::Conv(c) = &mut op {
            c.bias = Some(vec![1.0, 2.0]);
        }
        let c = b.node(op, &[x]);
        let add = Op::ChannelAffine {
            scale: vec![1.0; 2],
            shift: vec![10.0, 20.0],
            act: Activation::None,
        };
        let y = b.node(add.clone(), &[c]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        let Op::Conv(cv) = &g.nodes[0].op else {
            panic!()
        };
        assert_eq!(cv.bias, Some(vec![11.0, 22.0]));

        // The conv output is also read by another node: no folding.
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let c = b.node(conv(2, 1.0), &[x]);
        let a = b.node(add, &[c]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[a, c],
        );
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 0);
    }
}
