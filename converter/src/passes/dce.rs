//! Dead code elimination: removes nodes whose output is read by nobody and is not a model
//! output (e.g. a Flatten bypassed by `flatten_fc`).

use crate::ir::Graph;

/// Runs the pass; returns the number of nodes removed.
pub fn run(g: &mut Graph) -> usize {
    let mut removed = 0;
    loop {
        let uses = super::Uses::of(g);
        let before = g.nodes.len();
        g.nodes
            .retain(|n| uses.count[n.output] > 0 || uses.is_output[n.output]);
        if g.nodes.len() == before {
            return removed;
        }
        removed += before - g.nodes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Op};
    use crate::passes::testing::*;

    #[test]
    fn removes_dead_chains() {
        let (mut b, x) = B::new(&[1, 2, 3, 3]);
        let dead = b.node(Op::Act(Activation::Relu), &[x]);
        b.node(Op::Act(Activation::Tanh), &[dead]);
        let y = b.node(Op::GlobalAvgPool, &[x]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 2);
        assert_eq!(ops(&g), vec!["GlobalAvgPool"]);
    }
}
