//! Fuses an `Add` of two same-shape tensors into the Conv that produces one of them: the
//! conv gets the other Add input as its residual (`inputs[1]`), takes over the Add's
//! activation and output, and moves to the Add's place in the order (where the residual is
//! sure to be computed). The conv output must have no other reader and the conv no
//! activation or residual yet. When both inputs qualify, the later conv is chosen.

use super::sweep;
use crate::ir::{Activation, Graph, Op};

/// Runs the pass; returns the number of Adds fused.
pub fn run(g: &mut Graph) -> usize {
    sweep(g, |g, uses, i| {
        let Op::Add { act } = g.nodes[i].op else {
            return false;
        };
        let ins = g.nodes[i].inputs.clone();
        let candidate = |k: usize| -> Option<usize> {
            let v = ins[k];
            let p = uses.producer[v]?;
            let ok = matches!(&g.nodes[p].op, Op::Conv(c) if c.act == Activation::None)
                && g.nodes[p].inputs.len() == 1
                && uses.single(v)
                && ins[0] != ins[1];
            ok.then_some(p)
        };
        let best = match (candidate(0), candidate(1)) {
            (Some(a), Some(b)) => Some(if a > b { (a, 1) } else { (b, 0) }),
            (Some(a), None) => Some((a, 1)),
            (None, Some(b)) => Some((b, 0)),
            (None, None) => None,
        };
        let Some((p, other)) = best else { return false };
        let mut conv = g.nodes.remove(p);
        // `i` shifted down by one: the conv replaces the Add in place.
        let add = &mut g.nodes[i - 1];
        conv.inputs.push(ins[other]);
        conv.output = add.output;
        if let Op::Conv(c) = &mut conv.op {
            c.act = act;
        }
        *add = conv;
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::*;

    #[test]
    fn resnet_block() {
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let c1 = b.node(conv(2, 1.0), &[x]);
        let c2 = b.node(conv(2, 2.0), &[c1]);
        let y = b.node(
            Op::Add {
                act: Activation::Relu,
            },
            &[c2, x],
        );
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Conv", "Conv"]);
        let n = &g.nodes[1];
        assert_eq!(n.inputs, vec![c1, x]);
        assert_eq!(n.output, y);
        let Op::Conv(c) = &n.op else { panic!() };
        assert_eq!(c.act, Activation::Relu);
        assert_eq!(c.weight.data[0], 2.0);
    }

    #[test]
    fn picks_later_conv_and_moves_it() {
        // downsample conv computed after the main branch's conv: the later one gets fused.
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let main = b.node(conv(2, 1.0), &[x]);
        let down = b.node(conv(2, 3.0), &[x]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[main, down],
        );
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(g.nodes[1].inputs, vec![x, main]);

        // The only candidate comes first, the other input later: the conv moves down.
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let c = b.node(conv(2, 1.0), &[x]);
        let r = b.node(Op::Act(Activation::Relu), &[x]);
        let y = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[c, r],
        );
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Act", "Conv"]);
        assert_eq!(g.nodes[1].inputs, vec![x, r]);
    }

    #[test]
    fn shared_conv_output_is_not_fused() {
        let (mut b, x) = B::new(&[1, 2, 4, 4]);
        let c = b.node(conv(2, 1.0), &[x]);
        let a = b.node(
            Op::Add {
                act: Activation::None,
            },
            &[c, x],
        );
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
