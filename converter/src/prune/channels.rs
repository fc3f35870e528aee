//! Channel dependency analysis and channel removal.
//!
//! Every channel of every activation is a slot; ops that tie channels together (residual
//! Add, depthwise convs and transposed convs, elementwise ops, Concat ranges, Split/Slice
//! ranges, channel shuffles, squeeze-excite Mul, Resize) join their slots into one group,
//! which can only be removed as a whole; a conv or transposed conv with one group leaves
//! its two sides free. Slots that cannot be analysed (model inputs and outputs, Softmax,
//! grouped convs, a Flatten that stays a real op, fully connected outputs) mark their
//! group as fixed: it is never pruned.

use crate::error::{Error, Result};
use crate::ir::{Graph, Op, ValueId};
use std::collections::BTreeSet;

/// Channel groups of a graph.
#[derive(Clone, Debug)]
pub struct ChannelGroups {
    /// First slot of each value.
    base: Vec<usize>,
    /// Union-find parent of each slot.
    parent: Vec<usize>,
    /// Whether the group rooted at a slot is fixed (only meaningful at roots).
    fixed: Vec<bool>,
    /// Nodes whose channel mapping is not analysed (`name (op)`): the channels on both of
    /// their sides are fixed.
    pub unanalysed: Vec<String>,
}

fn channels(g: &Graph, v: ValueId) -> usize {
    g.shape(v).get(1).copied().unwrap_or(0)
}

impl ChannelGroups {
    fn find(&mut self, mut s: usize) -> usize {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
            self.fixed[ra] |= self.fixed[rb];
        }
    }
    fn slot(&self, v: ValueId, c: usize) -> usize {
        self.base[v] + c
    }
    fn tie(&mut self, g: &Graph, a: ValueId, a0: usize, b: ValueId) {
        self.tie_range(a, a0, b, 0, channels(g, b));
    }
    /// Ties channels `a0..a0 + n` of `a` to channels `b0..b0 + n` of `b`.
    fn tie_range(&mut self, a: ValueId, a0: usize, b: ValueId, b0: usize, n: usize) {
        for c in 0..n {
            let (sa, sb) = (self.slot(a, a0 + c), self.slot(b, b0 + c));
            self.union(sa, sb);
        }
    }
    fn fix(&mut self, g: &Graph, v: ValueId) {
        for c in 0..channels(g, v) {
            let s = self.slot(v, c);
            let r = self.find(s);
            self.fixed[r] = true;
        }
    }

    /// Builds the groups of `g`.
    pub fn analyse(g: &Graph) -> ChannelGroups {
        let mut base = Vec::with_capacity(g.values.len());
        let mut total = 0;
        for v in 0..g.values.len() {
            base.push(total);
            total += channels(g, v);
        }
        let mut cg = ChannelGroups {
            base,
            parent: (0..total).collect(),
            fixed: vec![false; total],
            unanalysed: Vec::new(),
        };
        for io in g.inputs.iter().chain(&g.outputs) {
            cg.fix(g, io.value);
        }
        for n in &g.nodes {
            let out = n.output;
            let x = n.inputs.first().copied();
            match &n.op {
                Op::Conv(c) => {
                    let ic = x.map_or(0, |x| channels(g, x));
                    let depthwise = c.group > 1 && c.group == ic && c.group == c.out_c();
                    if let Some(r) = n.inputs.get(1) {
                        cg.tie(g, out, 0, *r);
                    }
                    if depthwise {
                        if let Some(x) = x {
                            cg.tie(g, out, 0, x);
                        }
                    } else if c.group != 1 {
                        cg.fix(g, out);
                        if let Some(x) = x {
                            cg.fix(g, x);
                        }
                    }
                }
                // One group: input and output channels are free on their own (weight rows
                // and columns); depthwise: tied; other groups: fixed.
                Op::Deconv(d) if d.group != 1 => {
                    let ic = x.map_or(0, |x| channels(g, x));
                    if d.group == ic && d.group == d.out_c() {
                        if let Some(x) = x {
                            cg.tie(g, out, 0, x);
                        }
                    } else {
                        cg.fix(g, out);
                        if let Some(x) = x {
                            cg.fix(g, x);
                        }
                    }
                }
                Op::Deconv(_) => {}
                Op::Fc(_) => cg.fix(g, out),
                Op::Pool(_)
                | Op::GlobalAvgPool
                | Op::GlobalMaxPool
                | Op::Act(_)
                | Op::ChannelAffine { .. }
                | Op::Add { .. }
                | Op::ConcatAxis { .. }
                | Op::Binary { .. }
                | Op::Unary { .. }
                | Op::Mul => {
                    for &i in &n.inputs {
                        if channels(g, i) == channels(g, out) {
                            cg.tie(g, out, 0, i);
                        } else {
                            cg.fix(g, i);
                            cg.fix(g, out);
                        }
                    }
                }
                Op::Identity => match x {
                    Some(x)
                        if channels(g, x) == channels(g, out)
                            && g.shape(x).iter().product::<usize>()
                                == g.shape(out).iter().product::<usize>()
                            && g.shape(x).iter().skip(2).all(|&d| d == 1)
                            && g.shape(out).iter().skip(2).all(|&d| d == 1) =>
                    {
                        cg.tie(g, out, 0, x)
                    }
                    _ => {
                        cg.fix(g, out);
                        if let Some(x) = x {
                            cg.fix(g, x);
                        }
                    }
                },
                Op::Concat => {
                    let mut off = 0;
                    for &i in &n.inputs {
                        cg.tie(g, out, off, i);
                        off += channels(g, i);
                    }
                }
                Op::Resize(_)
                | Op::Reduce {
                    axes: [_, false, _, _],
                    ..
                } => {
                    if let Some(x) = x {
                        cg.tie(g, out, 0, x);
                    }
                }
                // A channel range (Split, Slice, Gather of channels): output channel `c` is
                // input channel `starts[1] + c`; the input's other channels are free, and
                // the removal shifts the range.
                Op::Slice { starts, steps, .. } if steps[1] == 1 => {
                    if let Some(x) = x {
                        cg.tie_range(out, 0, x, starts[1], channels(g, out));
                    }
                }
                // Output channel `i·g + j` is input channel `j·C/g + i`. Removing channels
                // keeps the shuffle only if every group loses the same `i`s: the `i`-th
                // channels of all groups are tied.
                Op::ChannelShuffle { groups } => {
                    if let Some(x) = x {
                        let per = channels(g, x) / groups;
                        for i in 0..per {
                            for j in 0..*groups {
                                cg.tie_range(x, i, x, j * per + i, 1);
                                cg.tie_range(out, i * groups + j, x, j * per + i, 1);
                            }
                        }
                    }
                }
                // Not analysed yet: the channels on both sides stay as they are.
                Op::Constant(_) => cg.fix(g, out),
                Op::Pad { begin, end, .. } if begin[1] == 0 && end[1] == 0 => {
                    if let Some(x) = x {
                        cg.tie(g, out, 0, x);
                    }
                }
                Op::Softmax
                | Op::Flatten
                | Op::Slice { .. }
                | Op::Transpose { .. }
                | Op::Pad { .. }
                | Op::DepthToSpace { .. }
                | Op::SpaceToDepth { .. }
                | Op::Tile { .. }
                | Op::SoftmaxAxis { .. }
                | Op::Reshape { .. }
                | Op::LayerNorm { .. }
                | Op::Reduce { .. } => {
                    if !matches!(n.op, Op::Softmax | Op::Flatten) {
                        cg.unanalysed.push(format!("{} ({})", n.name, n.op.name()));
                    }
                    cg.fix(g, out);
                    for &i in &n.inputs {
                        cg.fix(g, i);
                    }
                }
            }
        }
        cg.unanalysed.dedup();
        cg
    }

    /// The groups that may be pruned, each as its `(value, channel)` members.
    pub fn free_groups(&mut self, g: &Graph) -> Vec<Vec<(ValueId, usize)>> {
        let mut by_root: std::collections::BTreeMap<usize, Vec<(ValueId, usize)>> =
            Default::default();
        // Values that no node writes any more (fused away) are not part of the graph.
        let producers = g.producers();
        for v in (0..g.values.len()).filter(|&v| producers[v].is_some()) {
            for c in 0..channels(g, v) {
                let r = self.find(self.slot(v, c));
                if !self.fixed[r] {
                    by_root.entry(r).or_default().push((v, c));
                }
            }
        }
        by_root.into_values().collect()
    }
}

fn keep<T: Copy>(data: &[T], block: usize, drop: &BTreeSet<usize>) -> Vec<T> {
    data.chunks(block)
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .flat_map(|(_, c)| c.iter().copied())
        .collect()
}

/// Weights of rows of `row` floats, each a run of blocks of `block` floats, without the
/// rows in `rows` and, in every row kept, the blocks in `blocks`: a conv's `[OC, IC, KH,
/// KW]` losing output rows and input blocks, a transposed conv's `[IC, OC, KH, KW]` the
/// other way round.
fn keep_rows_blocks(
    data: &[f32],
    row: usize,
    block: usize,
    rows: &BTreeSet<usize>,
    blocks: &BTreeSet<usize>,
) -> Vec<f32> {
    let kept = keep(data, row, rows);
    if blocks.is_empty() {
        return kept;
    }
    kept.chunks(row)
        .flat_map(|r| keep(r, block, blocks))
        .collect()
}

/// Removes the channels `drop[v]` of every value `v`, updating every op that holds
/// per-channel parameters. Whole groups must be removed together (the caller's duty; this
/// checks the shapes that result).
pub fn remove_channels(g: &mut Graph, drop: &[BTreeSet<usize>]) -> Result<()> {
    let none = BTreeSet::new();
    let of = |v: ValueId| drop.get(v).unwrap_or(&none);
    let shapes: Vec<Vec<usize>> = g.values.iter().map(|v| v.shape.clone()).collect();
    for n in &mut g.nodes {
        let out_drop = of(n.output);
        let in_drop = n.inputs.first().map_or(&none, |&x| of(x));
        match &mut n.op {
            Op::Conv(c) => {
                let oc = c.out_c();
                let row = c.weight.data.len() / oc;
                if c.group == 1 {
                    let [kh, kw] = c.kernel();
                    let icg = c.weight.dims[1];
                    c.weight.data =
                        keep_rows_blocks(&c.weight.data, row, kh * kw, out_drop, in_drop);
                    c.weight.dims = vec![oc - out_drop.len(), icg - in_drop.len(), kh, kw];
                } else {
                    if out_drop != in_drop {
                        return Err(Error::Model(format!(
                            "channel pruning would untie the depthwise conv {}",
                            n.name
                        )));
                    }
                    c.weight.data = keep(&c.weight.data, row, out_drop);
                    c.weight.dims[0] = oc - out_drop.len();
                    c.group -= out_drop.len();
                }
                if let Some(b) = &mut c.bias {
                    *b = keep(b, 1, out_drop);
                }
            }
            Op::Deconv(d) => {
                // Weights [IC, OC/group, KH, KW]: an input channel is a block of
                // OC/group x KH x KW, an output channel a block of KH x KW in each.
                let [kh, kw] = d.kernel();
                let per = d.per_input();
                if d.group == 1 {
                    d.weight.data =
                        keep_rows_blocks(&d.weight.data, per, kh * kw, in_drop, out_drop);
                    d.weight.dims[0] -= in_drop.len();
                    d.weight.dims[1] -= out_drop.len();
                } else {
                    if out_drop != in_drop {
                        return Err(Error::Model(format!(
                            "channel pruning would untie the depthwise transposed conv {}",
                            n.name
                        )));
                    }
                    d.weight.data = keep(&d.weight.data, per, in_drop);
                    d.weight.dims[0] -= in_drop.len();
                    d.group -= in_drop.len();
                }
                if let Some(b) = &mut d.bias {
                    *b = keep(b, 1, out_drop);
                }
            }
            Op::Fc(f) if !in_drop.is_empty() => {
                // Each input channel is a block of H*W columns (NCHW flatten order).
                let s = &shapes[n.inputs[0]];
                let block = s.iter().skip(2).product::<usize>().max(1);
                let cols = f.weight.dims[1];
                f.weight.data = f
                    .weight
                    .data
                    .chunks(cols)
                    .flat_map(|r| keep(r, block, in_drop))
                    .collect();
                f.weight.dims[1] = cols - block * in_drop.len();
            }
            Op::ChannelAffine { scale, shift, .. } => {
                *scale = keep(scale, 1, out_drop);
                *shift = keep(shift, 1, out_drop);
            }
            Op::Slice { starts, ends, .. } => {
                let before = |p: usize| in_drop.range(..p).count();
                starts[1] -= before(starts[1]);
                ends[1] -= before(ends[1]);
            }
            _ => {}
        }
    }
    for (v, d) in drop.iter().enumerate() {
        if !d.is_empty() {
            g.values[v].shape[1] -= d.len();
        }
    }
    g.check()
        .map_err(|e| Error::Model(format!("channel pruning broke shapes: {e}")))
}
