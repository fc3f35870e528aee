//! Folds a `ChannelAffine` (an imported BatchNormalization, or a constant per-channel Mul)
//! into the Conv or Fc that produces its input, when that input has no other reader and is
//! not a model output: `W'[o] = W[o] * scale[o]`, `b'[o] = b[o] * scale[o] + shift[o]`.
//! A conv with a fused residual or activation is left alone. Affines that cannot be folded
//! stay as `ChannelAffine` nodes.

use super::{absorb, scale_output_rows, sweep};
use crate::ir::{Activation, Graph, Op};

/// Runs the pass; returns the number of affines folded.
pub fn run(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| {
        let Op::ChannelAffine { scale, shift, act } = &g.nodes[i].op else {
            return false;
        };
        let x = g.nodes[i].inputs[0];
        let Some(p) = uses.producer[x] else {
            return false;
        };
        if !uses.single(x) {
            return false;
        }
        let (scale, shift, act) = (scale.clone(), shift.clone(), *act);
        let residual = g.nodes[p].inputs.len() > 1;
        let (weight, bias) = match &mut g.nodes[p].op {
            Op::Conv(c) if c.act == Activation::None && !residual => (&mut c.weight, &mut c.bias),
            Op::Fc(f) if f.act == Activation::None => (&mut f.weight, &mut f.bias),
            _ => return false,
        };
        if scale.len() != weight.dims[0] {
            return false;
        }
        scale_output_rows(weight, bias, &scale, &shift);
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
    use crate::passes::testing::*;

    fn bn(scale: Vec<f32>, shift: Vec<f32>) -> Op {
        Op::ChannelAffine {
            scale,
            shift,
            act: Activation::None,
        }
    }

    #[test]
    fn folds_into_conv_weights_and_bias() {
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let mut op = conv(2, 1.0);
        if let Op::Conv(c) = &mut op {
            c.bias = Some(vec![1.0, -1.0]);
        }
        let c = b.node(op, &[x]);
        let y = b.node(bn(vec![2.0, 0.5], vec![3.0, 4.0]), &[c]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Conv"]);
        let Op::Conv(cv) = &g.nodes[0].op else {
            panic!()
        };
        assert_eq!(cv.weight.data, vec![2.0, 2.0, 0.5, 0.5]);
        assert_eq!(cv.bias, Some(vec![5.0, 3.5]));
    }

    #[test]
    fn keeps_affine_when_conv_output_is_shared_or_activated() {
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let c = b.node(conv(2, 1.0), &[x]);
        let n = b.node(bn(vec![2.0; 2], vec![0.0; 2]), &[c]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[n, c],
        );
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 0);

        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let mut op = conv(2, 1.0);
        if let Op::Conv(cv) = &mut op {
            cv.act = Activation::Relu;
        }
        let c = b.node(op, &[x]);
        let y = b.node(bn(vec![2.0; 2], vec![0.0; 2]), &[c]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 0);
        assert_eq!(ops(&g), vec!["Conv", "ChannelAffine"]);
    }

    #[test]
    fn graph_input_affine_stays() {
        let (mut b, x) = B::new(&[1, 3, 2, 2]);
        let y = b.node(bn(vec![1.0; 3], vec![0.0; 3]), &[x]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 0);
    }
}
