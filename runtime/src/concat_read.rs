//! Concatenations a session reads in place instead of running them.
//!
//! A Concat whose only reader is a 1x1 conv (stride 1, no padding, one group) taking it as
//! its input, where the table's kernel for that conv takes parts, or a pool (which pools
//! each part into its channels of the output): the reader reads the Concat's inputs; the
//! Concat never runs and its output gets no memory. A part that is a channel Slice of
//! another tensor, read by this Concat only, is read in place too (by a conv): from the
//! sliced tensor, at its channel offset; the Slice never runs.

use crate::graph::{Conv, Graph, Op};
use crate::kernels::{Act4, MAX_CONV_PARTS};

/// A part of a concatenation read through a channel Slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    /// The Concat node.
    pub concat: usize,
    /// The part's index among the Concat's inputs.
    pub part: usize,
    /// The sliced tensor.
    pub src: usize,
    /// The part's first channel in `src`.
    pub c0: usize,
}

/// What [`find`] found.
pub(crate) struct ConcatReads {
    /// Per node: for a Concat read in place, the node that reads it.
    pub reader: Vec<Option<usize>>,
    /// Parts read through channel Slices.
    pub views: Vec<View>,
    /// Per node: a Slice that never runs (its only reader is read through a [`View`]).
    pub sliced_away: Vec<bool>,
}

impl ConcatReads {
    /// No concatenation read in place, for a graph of `nodes` nodes.
    pub fn none(nodes: usize) -> ConcatReads {
        ConcatReads {
            reader: vec![None; nodes],
            views: Vec::new(),
            sliced_away: vec![false; nodes],
        }
    }
}

/// The Concats of `graph` that can be read in place. `readers[t]` counts the readers of
/// tensor `t` (graph outputs included), nodes with `in_pattern` set belong to fused
/// patterns and are left alone, `geoms` are the tensors' shapes, and `conv_takes_parts`
/// says whether the kernel table runs a pointwise conv from parts.
pub(crate) fn find(
    graph: &Graph,
    readers: &[usize],
    in_pattern: &[bool],
    geoms: &[Act4],
    conv_takes_parts: impl Fn(&Conv) -> bool,
) -> ConcatReads {
    let mut found = ConcatReads::none(graph.nodes.len());
    let mut producer = vec![usize::MAX; geoms.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        producer[node.outputs[0] as usize] = i;
    }
    for (j, node) in graph.nodes.iter().enumerate() {
        if in_pattern[j]
            || !matches!(node.op, Op::Concat)
            || !(2..=MAX_CONV_PARTS).contains(&node.inputs.len())
        {
            continue;
        }
        let out = node.outputs[0];
        if readers[out as usize] != 1 {
            continue;
        }
        let Some(r) = (j + 1..graph.nodes.len()).find(|&r| graph.nodes[r].inputs.contains(&out))
        else {
            continue;
        };
        let takes_parts = match graph.nodes[r].op {
            Op::Conv(c) => {
                let pointwise =
                    c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] && c.groups == 1;
                pointwise && conv_takes_parts(&c)
            }
            Op::Pool(_) => true,
            _ => false,
        };
        if !takes_parts || in_pattern[r] || graph.nodes[r].inputs[0] != out {
            continue;
        }
        let by_conv = matches!(graph.nodes[r].op, Op::Conv(_));
        found.reader[j] = Some(r);
        for (k, &t) in node.inputs.iter().enumerate() {
            let t = t as usize;
            let slice = graph
                .nodes
                .get(producer[t])
                .filter(|_| readers[t] == 1 && by_conv);
            let view = slice.and_then(|n| match n.op {
                Op::Slice { start, step, .. }
                    if start[..3] == [0; 3] && step == [1; 4] && !in_pattern[producer[t]] =>
                {
                    let src = n.inputs[0] as usize;
                    let (a, b) = (geoms[src].shape, geoms[t].shape);
                    ((a.n, a.h, a.w) == (b.n, b.h, b.w)).then_some((src, start[3] as usize))
                }
                _ => None,
            });
            if let Some((src, c0)) = view {
                found.views.push(View {
                    concat: j,
                    part: k,
                    src,
                    c0,
                });
                found.sliced_away[producer[t]] = true;
            }
        }
    }
    found
}
