//! Removes `Identity` nodes (ONNX Identity, Dropout and no-op Reshapes) whose output has the
//! input's shape: their readers read the input directly. Identities that change the rank
//! (`[N, F]` and `[N, F, 1, 1]`) stay; the lowering maps them to the same runtime tensor.

use crate::ir::{Graph, Op};

/// Runs the pass; returns the number of nodes removed.
pub fn run(g: &mut Graph) -> usize {
    super::sweep(g, |g, _, i| {
        let n = &g.nodes[i];
        if n.op != Op::Identity || g.shape(n.inputs[0]) != g.shape(n.output) {
            return false;
        }
        let (from, to) = (n.output, n.inputs[0]);
        g.nodes.remove(i);
        g.replace_uses(from, to);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Activation;
    use crate::passes::testing::*;

    #[test]
    fn removes_identities_keeps_rank_changes() {
        let (mut b, x) = B::new(&[1, 4, 1, 1]);
        let a = b.node(Op::Identity, &[x]);
        let r = b.node(Op::Act(Activation::Relu), &[a]);
        let f = b.node_shaped(Op::Identity, &[r], vec![1, 4]);
        let y = b.node(Op::Identity, &[f]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 2);
        g.check().unwrap();
        assert_eq!(ops(&g), vec!["Act", "Identity"]);
        assert_eq!(g.nodes[0].inputs, vec![x]);
        // The model output keeps its name and dims while pointing at the surviving value.
        assert_eq!(g.outputs[0].value, g.nodes[1].output);
        assert_eq!(g.outputs[0].dims, vec![1, 4]);
    }

    #[test]
    fn identity_from_input_to_output() {
        let (mut b, x) = B::new(&[2, 3]);
        let y = b.node(Op::Identity, &[x]);
        let mut g = b.output(y);
        assert_eq!(run(&mut g), 1);
        assert!(g.nodes.is_empty());
        assert_eq!(g.outputs[0].value, x);
        g.check().unwrap();
    }
}
