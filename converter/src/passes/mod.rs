//! Graph rewrites on the IR, one file per pass, each with its own tests.
//!
//! [`run_all`] runs them in an order where each one sees the previous one's result:
//! identities go first (they hide producer/consumer pairs), bias and BatchNormalization
//! folding before activation fusion (an affine cannot be folded through an activation),
//! residual fusion before activation fusion (so `Relu(Add(conv, x))` becomes one conv with
//! a residual input and a Relu), and dead code elimination last. [`run_after_prune`] runs
//! on what pruning leaves.

pub mod dce;
pub mod flatten_fc;
pub mod fold_batchnorm;
pub mod fold_depthwise_1x1;
pub mod fuse_activation;
pub mod fuse_bias;
pub mod fuse_residual;
pub mod remove_identity;

use crate::error::Result;
use crate::ir::{Graph, ValueId, Weight};

/// How many rewrites one pass made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassReport {
    /// Pass name.
    pub name: &'static str,
    /// Number of rewrites.
    pub changes: usize,
}

/// A pass: rewrites the graph, returns its number of rewrites.
pub type Pass = fn(&mut Graph) -> usize;

/// Runs every pass in order, checking the graph after each one.
pub fn run_all(g: &mut Graph) -> Result<Vec<PassReport>> {
    let passes: [(&'static str, Pass); 7] = [
        ("remove_identity", remove_identity::run),
        ("fuse_bias", fuse_bias::run),
        ("fold_batchnorm", fold_batchnorm::run),
        ("flatten_fc", flatten_fc::run),
        ("fuse_residual", fuse_residual::run),
        ("fuse_activation", fuse_activation::run),
        ("dce", dce::run),
    ];
    run(g, &passes)
}

/// Runs `passes` in order, checking the graph after each one.
fn run(g: &mut Graph, passes: &[(&'static str, Pass)]) -> Result<Vec<PassReport>> {
    let mut reports = Vec::new();
    for &(name, pass) in passes {
        let changes = pass(g);
        g.check()?;
        reports.push(PassReport { name, changes });
    }
    Ok(reports)
}

/// The passes for what pruning leaves: depthwise 1x1 convs (a depthwise 3x3 without its
/// ring) folded into a neighbour where that is exact, then dead code elimination.
pub fn run_after_prune(g: &mut Graph) -> Result<Vec<PassReport>> {
    let passes: [(&'static str, Pass); 2] = [
        ("fold_depthwise_1x1", fold_depthwise_1x1::run),
        ("dce", dce::run),
    ];
    run(g, &passes)
}

/// Folds a per-output-channel affine into the layer that produces it: row `o` of `weight`
/// times `scale[o]`, bias `b[o] * scale[o] + shift[o]` (a missing bias is zero).
pub(crate) fn scale_output_rows(
    weight: &mut Weight,
    bias: &mut Option<Vec<f32>>,
    scale: &[f32],
    shift: &[f32],
) {
    let oc = weight.dims[0];
    let per = weight.data.len() / oc;
    for (o, row) in weight.data.chunks_mut(per).enumerate() {
        row.iter_mut().for_each(|w| *w *= scale[o]);
    }
    let b = bias.get_or_insert_with(|| vec![0.0; oc]);
    for (o, b) in b.iter_mut().enumerate() {
        *b = *b * scale[o] + shift[o];
    }
}

/// Who reads and writes each value, computed from the current graph.
pub(crate) struct Uses {
    /// Number of node inputs reading each value.
    pub count: Vec<usize>,
    /// Node index writing each value.
    pub producer: Vec<Option<usize>>,
    /// Whether each value is a model output.
    pub is_output: Vec<bool>,
}

impl Uses {
    pub fn of(g: &Graph) -> Self {
        let mut is_output = vec![false; g.values.len()];
        for o in &g.outputs {
            is_output[o.value] = true;
        }
        Uses {
            count: g.use_counts(),
            producer: g.producers(),
            is_output,
        }
    }
    /// `v` has exactly one reader and is not a model output: it may be fused away.
    pub fn single(&self, v: ValueId) -> bool {
        self.count[v] == 1 && !self.is_output[v]
    }
}

/// Visits node indices, calling `f(g, uses, i)`; when `f` rewrites the graph (returns true)
/// the uses are recomputed and the same index is visited again. Returns the rewrite count.
pub(crate) fn sweep(g: &mut Graph, mut f: impl FnMut(&mut Graph, &Uses, usize) -> bool) -> usize {
    let mut changes = 0;
    let mut i = 0;
    let mut uses = Uses::of(g);
    while i < g.nodes.len() {
        if f(g, &uses, i) {
            changes += 1;
            uses = Uses::of(g);
        } else {
            i += 1;
        }
    }
    changes
}

/// Makes node `p` (the producer of a fused-away value) write `node`'s output instead, and
/// removes `node` (which must come after `p`).
pub(crate) fn absorb(g: &mut Graph, p: usize, node: usize) {
    g.nodes[p].output = g.nodes[node].output;
    g.nodes.remove(node);
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small IR graphs for the pass tests.
    use crate::ir::*;

    /// A conv with `c` in and out channels, 1x1, weights all `w`.
    pub fn conv(c: usize, w: f32) -> Op {
        Op::Conv(ConvOp {
            weight: Weight {
                dims: vec![c, c, 1, 1],
                data: vec![w; c * c],
            },
            bias: None,
            group: 1,
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            act: Activation::None,
        })
    }

    /// Builder: `g.node(op, inputs)` appends a node and returns its output value.
    pub struct B {
        pub g: Graph,
    }

    impl B {
        pub fn new(shape: &[usize]) -> (Self, ValueId) {
            let mut g = Graph::default();
            let x = g.add_value("x", shape.to_vec());
            g.inputs.push(GraphIo {
                name: "x".into(),
                value: x,
                dims: shape.to_vec(),
            });
            (B { g }, x)
        }
        pub fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
            let ins: Vec<&[usize]> = inputs.iter().map(|&i| self.g.shape(i)).collect();
            let shape = shape::infer(&op, &ins).unwrap();
            self.node_shaped(op, inputs, shape)
        }
        pub fn node_shaped(&mut self, op: Op, inputs: &[ValueId], shape: Vec<usize>) -> ValueId {
            let n = self.g.nodes.len();
            let v = self.g.add_value(format!("t{n}"), shape);
            self.g.nodes.push(Node {
                name: format!("n{n}"),
                op,
                inputs: inputs.to_vec(),
                output: v,
            });
            v
        }
        pub fn output(mut self, v: ValueId) -> Graph {
            let dims = self.g.shape(v).to_vec();
            self.g.outputs.push(GraphIo {
                name: "y".into(),
                value: v,
                dims,
            });
            self.g.check().unwrap();
            self.g
        }
    }

    pub fn ops(g: &Graph) -> Vec<&'static str> {
        g.nodes.iter().map(|n| n.op.name()).collect()
    }
}
