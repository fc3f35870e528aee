//! Flatten (or Reshape to `(N, -1)`) feeding a fully connected layer.
//!
//! An IR `Fc` reads a 4-D input in NCHW flatten order by definition, so an Fc whose input
//! comes from a `Flatten` (or from a rank-changing alias of a `[N, C, 1, 1]` tensor) can
//! read the 4-D tensor directly; the lowering then permutes the weight columns from ONNX's
//! `(c, h, w)` order to the runtime's `(h, w, c)` order when `H*W > 1`. The Flatten is left
//! without readers and removed by dead code elimination.
//!
//! A Flatten of a tensor with `H*W == 1` is a no-op in every layout: it becomes an alias
//! (an `Identity` that changes the rank), which costs nothing at run time. Any other Flatten
//! stays a real `Flatten` op.

use super::sweep;
use crate::ir::{Graph, Op};

/// Runs the pass; returns the number of rewrites.
pub fn run(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| match &g.nodes[i].op {
        Op::Fc(_) => {
            let x = g.nodes[i].inputs[0];
            let Some(p) = uses.producer[x] else {
                return false;
            };
            let src = g.nodes[p].inputs.first().copied();
            let looks_through = match &g.nodes[p].op {
                Op::Flatten => true,
                Op::Identity => src.is_some_and(|s| g.shape(s).len() == 4),
                _ => false,
            };
            match src {
                Some(s) if looks_through => {
                    g.nodes[i].inputs[0] = s;
                    true
                }
                _ => false,
            }
        }
        Op::Flatten => {
            let s = g.shape(g.nodes[i].inputs[0]);
            if s.len() == 4 && s[2] * s[3] == 1 {
                g.nodes[i].op = Op::Identity;
                true
            } else {
                false
            }
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, FcOp, Weight};
    use crate::passes::{dce, testing::*};

    fn fc(inf: usize, outf: usize) -> Op {
        Op::Fc(FcOp {
            weight: Weight {
                dims: vec![outf, inf],
                data: (0..inf * outf).map(|v| v as f32).collect(),
            },
            bias: None,
            act: Activation::None,
        })
    }

    #[test]
    fn fc_reads_through_flatten() {
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let f = b.node(Op::Flatten, &[x]);
        let y = b.node(fc(18, 4), &[f]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        dce::run(&mut g);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Fc"]);
        assert_eq!(g.nodes[0].inputs, vec![x]);
        // Weights stay in ONNX order in the IR; the lowering permutes them.
        let Op::Fc(f) = &g.nodes[0].op else { panic!() };
        assert_eq!(f.weight.data[1], 1.0);
    }

    #[test]
    fn spatially_trivial_flatten_is_an_alias() {
        let (mut b, x) = B::new(&[1, 8, 1, 1]);
        let y = b.node(Op::Flatten, &[x]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Identity"]);
    }

    #[test]
    fn flatten_feeding_other_ops_stays() {
        let (mut b, x) = B::new(&[1, 2, 2, 2]);
        let f = b.node(Op::Flatten, &[x]);
        let y = b.node(Op::Softmax, &[f]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 0);
        assert_eq!(ops(&g), vec!["Flatten", "Softmax"]);
    }
}
