//! Joint greedy allocation of kernel rings and channel groups to a cost budget.
//!
//! Each step removes the unit with the least error per saved cost: one kernel ring of one
//! layer, or the next channels of one channel cluster (groups that span the same values,
//! e.g. the output channels of one conv with everything tied to them), as many as keep
//! the cluster's count a multiple of the SIMD multiple. Errors are relative output errors
//! of the layers that lose weights, from [`obs`](super::obs), or, with output weights
//! ([`Layer::out_weights`]), the mean relative error the removal causes at the model
//! outputs; with calibration statistics each removal also refits the remaining weights.

use super::channels::ChannelGroups;
use super::distill::OutputWeights;
use super::obs::{
    damped_inverse, principal, removal_row_costs, removal_row_forms, remove_columns, shrink,
    Hessian,
};
use super::ring::{remove_ring, ring_removable};
use super::stats::{block, channels, layer_kind, rows, set_rows, Folds, LayerKind};
use super::Budget;
use crate::error::{Error, Result};
use crate::ir::{Graph, Op, ValueId};
use faer::Mat;
use std::collections::{BTreeMap, BTreeSet};

/// A prunable layer's state during allocation.
pub struct Layer {
    /// Node index.
    pub node: usize,
    /// Its kind.
    pub kind: LayerKind,
    /// Hessians: one for dense and FC, one per channel for depthwise.
    pub h: Vec<Hessian>,
    /// Output energy of the dense layer, the error normaliser.
    pub norm: f64,
    /// Output error energy added by pruning so far.
    pub err: f64,
    /// With calibration, the sums statistic `S` of each Hessian group
    /// ([`super::stats::calibrated`]); empty otherwise.
    pub sums: Vec<Hessian>,
    /// With calibration, how each output channel's error shows at the model outputs
    /// ([`super::distill::output_weights`]): the allocation then ranks removals by the
    /// mean relative error they cause there. `None`: by the layer's own relative error.
    pub out_weights: Option<OutputWeights>,
    /// With calibration, a dense conv's or fully connected layer's statistics per fold:
    /// its removal costs are then held-out errors (see `Layer::removal_cost`).
    pub folds: Option<Folds>,
    /// Per fold `k`, computed when needed: `H⁻¹` of the other folds (shrunk as the whole
    /// set's `H` is, and damped), and `H⁻¹ H_k H⁻¹` and `H⁻¹ S_k H⁻¹`.
    held_out: Option<Vec<[Mat<f64>; 3]>>,
    /// `H⁻¹ S H⁻¹` of each group, computed when needed.
    coh: Vec<Option<Mat<f64>>>,
    hinv: Vec<Option<Mat<f64>>>,
    chan_cost: Option<Vec<f64>>,
    ring_cost: Option<Option<f64>>,
}

impl Layer {
    /// A layer with its statistics.
    pub fn new(g: &Graph, node: usize, h: Vec<Hessian>) -> Option<Layer> {
        let kind = layer_kind(g, node)?;
        let norm: f64 = rows(g, node)
            .iter()
            .zip(&h)
            .map(|(rs, h)| rs.iter().map(|r| h.energy(r)).sum::<f64>())
            .sum();
        Some(Layer {
            node,
            kind,
            hinv: vec![None; h.len()],
            coh: vec![None; h.len()],
            h,
            norm,
            err: 0.0,
            sums: Vec::new(),
            out_weights: None,
            folds: None,
            held_out: None,
            chan_cost: None,
            ring_cost: None,
        })
    }

    /// Forgets the output weights of the output channels `drop`.
    fn drop_outputs(&mut self, drop: &BTreeSet<usize>) {
        if let Some(w) = &mut self.out_weights {
            for v in [&mut w.incoherent, &mut w.coherent] {
                *v = (0..v.len())
                    .filter(|c| !drop.contains(c))
                    .map(|c| v[c])
                    .collect();
            }
        }
    }

    /// Keeps the columns `keep` of every Hessian group and sums statistic.
    fn retain_columns(&mut self, keep: &[usize]) {
        self.h.iter_mut().for_each(|h| h.retain(keep));
        self.sums.iter_mut().for_each(|h| h.retain(keep));
        if let Some(f) = &mut self.folds {
            for m in f.h.iter_mut().chain(&mut f.s) {
                *m = principal(m, keep);
            }
        }
        self.held_out = None;
    }

    fn dirty(&mut self) {
        self.hinv.iter_mut().for_each(|h| *h = None);
        self.coh.iter_mut().for_each(|h| *h = None);
        self.chan_cost = None;
        self.ring_cost = None;
    }

    fn hinv(&mut self, k: usize) -> Option<&Mat<f64>> {
        if self.hinv[k].is_none() {
            self.hinv[k] = self.h[k].inverse();
        }
        self.hinv[k].as_ref()
    }

    /// The cost of removing the columns `cols` from the rows `rs` of Hessian group `hk`:
    /// with output weights, the mean relative error it causes at the model outputs;
    /// without, the relative error of the layer's output. With [`Layer::folds`] the error
    /// is held out: for each fold, the OBS update is fit on the other folds and its error
    /// measured on this one, summed over the folds. An in-sample cost would favour the
    /// removals that the calibration samples alone can compensate: on MobileNetV2's 7x7
    /// maps, 222 photos give 49 rows each for up to 961 columns.
    fn removal_cost(&mut self, hk: usize, rs: &mut [Vec<f64>], cols: &[usize]) -> f64 {
        if hk == 0 && self.folds.is_some() {
            return self.held_out_cost(rs, cols);
        }
        self.hinv(hk);
        let Some(w) = &self.out_weights else {
            return remove_columns(&self.h[hk], self.hinv[hk].as_ref(), rs, cols, false)
                / self.norm.max(f64::MIN_POSITIVE);
        };
        if self.coh[hk].is_none() {
            if let (Some(hi), Some(Hessian::Full(sm))) = (&self.hinv[hk], self.sums.get(hk)) {
                self.coh[hk] = Some(hi * sm * hi);
            }
        }
        let costs = removal_row_costs(
            &self.h[hk],
            self.hinv[hk].as_ref(),
            rs,
            cols,
            self.coh[hk].as_ref(),
        );
        let depthwise = self.kind == LayerKind::Depthwise;
        costs
            .iter()
            .enumerate()
            .map(|(r, &(a, b))| {
                let o = if depthwise { hk } else { r };
                w.incoherent.get(o).copied().unwrap_or(0.0) * a
                    + w.coherent.get(o).copied().unwrap_or(0.0) * b
            })
            .sum()
    }

    /// [`Layer::removal_cost`] with [`Layer::folds`].
    fn held_out_cost(&mut self, rs: &[Vec<f64>], cols: &[usize]) -> f64 {
        let Some(f) = &self.folds else {
            return 0.0;
        };
        let held_out = self.held_out.get_or_insert_with(|| {
            let n = f.h.len();
            let mut all = f.h[0].clone();
            f.h[1..].iter().for_each(|h| all += h);
            f.h.iter()
                .zip(&f.s)
                .map(|(hk, sk)| {
                    let mut fit = &all - hk;
                    shrink(&mut fit, f.rows * (n - 1) / n);
                    let hi = damped_inverse(&fit);
                    let (m, s) = (&hi * hk * &hi, &hi * sk * &hi);
                    [hi, m, s]
                })
                .collect()
        });
        let mut total = 0.0;
        for [hi, m, s] in held_out.iter() {
            let forms = removal_row_forms(hi, rs, cols, [m, s]);
            total += match &self.out_weights {
                Some(w) => forms
                    .iter()
                    .enumerate()
                    .map(|(r, [a, b])| {
                        w.incoherent.get(r).copied().unwrap_or(0.0) * a
                            + w.coherent.get(r).copied().unwrap_or(0.0) * b
                    })
                    .sum::<f64>(),
                None => {
                    forms.iter().map(|[a, _]| a).sum::<f64>() / self.norm.max(f64::MIN_POSITIVE)
                }
            };
        }
        total
    }

    /// The cost of removing each input channel (dense conv and FC), as
    /// [`Layer::removal_cost`] measures it.
    fn chan_costs(&mut self, g: &Graph) -> &[f64] {
        if self.chan_cost.is_none() {
            let mut costs = Vec::new();
            if self.kind != LayerKind::Depthwise {
                let mut rs = rows(g, self.node).remove(0);
                let blk = block(g, self.node);
                let ic = (self.h[0].dim() - 1) / blk;
                for c in 0..ic {
                    let cols: Vec<usize> = (c * blk..(c + 1) * blk).collect();
                    costs.push(self.removal_cost(0, &mut rs, &cols));
                }
            }
            self.chan_cost = Some(costs);
        }
        self.chan_cost.as_deref().unwrap_or(&[])
    }

    /// The cost of removing the outer kernel ring, if it can be removed.
    fn ring(&mut self, g: &Graph) -> Option<f64> {
        if self.ring_cost.is_none() {
            let c = match &g.nodes[self.node].op {
                Op::Conv(c) if ring_removable(c).is_ok() => Some(c.kernel()[0]),
                _ => None,
            };
            let cost = c.map(|k| {
                let mut groups = rows(g, self.node);
                let cols = ring_columns(k, (self.h[0].dim() - 1) / (k * k));
                let mut total = 0.0;
                for (hk, rs) in groups.iter_mut().enumerate() {
                    total += self.removal_cost(hk, rs, &cols);
                }
                total
            });
            self.ring_cost = Some(cost);
        }
        self.ring_cost.flatten()
    }
}

/// Measures, on up to `a.threads` threads, the removal costs that no cache holds: every
/// layer's before the first step, then those of the layers the last step changed. (The
/// step would measure them one by one as it reads them; each layer's costs depend on that
/// layer alone.)
fn measure_costs(g: &Graph, layers: &mut [Layer], a: &Allocation) {
    let (rings, chans) = (a.kernels, a.channels);
    let todo: Vec<&mut Layer> = (layers.iter_mut())
        .filter(|l| (rings && l.ring_cost.is_none()) || (chans && l.chan_cost.is_none()))
        .collect();
    let threads = a.threads.min(todo.len());
    if threads < 2 {
        return;
    }
    let mut parts: Vec<Vec<&mut Layer>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, l) in todo.into_iter().enumerate() {
        parts[i % threads].push(l);
    }
    super::par_each(&mut parts, |l| {
        if rings {
            l.ring(g);
        }
        if chans {
            l.chan_costs(g);
        }
    });
}

/// The im2col columns on the outer ring of a `k x k` kernel, over `ic` input channels.
fn ring_columns(k: usize, ic: usize) -> Vec<usize> {
    (0..ic * k * k)
        .filter(|&i| {
            let (y, x) = ((i / k) % k, i % k);
            y == 0 || x == 0 || y == k - 1 || x == k - 1
        })
        .collect()
}

/// The columns other than `drop` among `0..n`.
fn complement(n: usize, drop: &[usize]) -> Vec<usize> {
    let d: BTreeSet<usize> = drop.iter().copied().collect();
    (0..n).filter(|i| !d.contains(i)).collect()
}

/// Removes the outer ring of layer `l`, refitting the weights if `update`.
fn apply_ring(g: &mut Graph, l: &mut Layer, update: bool) {
    let Op::Conv(c) = &g.nodes[l.node].op else {
        return;
    };
    let k = c.kernel()[0];
    let dim = l.h[0].dim();
    let cols = ring_columns(k, (dim - 1) / (k * k));
    let mut groups = rows(g, l.node);
    for (hk, rs) in groups.iter_mut().enumerate() {
        l.hinv(hk);
        l.err += remove_columns(&l.h[hk], l.hinv[hk].as_ref(), rs, &cols, update);
    }
    set_rows(g, l.node, &groups);
    if let Op::Conv(c) = &mut g.nodes[l.node].op {
        remove_ring(c);
    }
    let keep = complement(dim, &cols);
    l.retain_columns(&keep);
    l.dirty();
}

/// The size of a layer for the cost model: kernel size, input and output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Kernel size (1 for fully connected).
    pub k: usize,
    /// Input channels.
    pub ic: usize,
    /// Output channels.
    pub oc: usize,
}

/// The geometry of layer `i` as it is now.
pub fn geometry(g: &Graph, i: usize) -> Geometry {
    let n = &g.nodes[i];
    Geometry {
        k: match &n.op {
            Op::Conv(c) => c.kernel()[0],
            Op::Deconv(d) => d.kernel()[0],
            _ => 1,
        },
        ic: channels(g, n.inputs[0]),
        oc: channels(g, n.output),
    }
}

/// The cost of layer `i` at a geometry: FLOPs, or a predicted time.
pub type CostFn<'a> = &'a dyn Fn(&Graph, usize, Geometry) -> f64;

/// FLOPs of layer `i` at geometry `s` (2 x multiply-adds; the other dims as they are now).
pub fn flops_at(g: &Graph, i: usize, s: Geometry) -> f64 {
    let n = &g.nodes[i];
    // A transposed conv does its multiply-adds per input pixel.
    let o = g.shape(match n.op {
        Op::Deconv(_) => n.inputs[0],
        _ => n.output,
    });
    let pixels = (o[0] * o.iter().skip(2).product::<usize>()) as f64;
    // Non-square kernels are never ring-pruned: at their own size they keep their area.
    let area = match &n.op {
        Op::Conv(c) if s.k == c.kernel()[0] => (c.kernel()[0] * c.kernel()[1]) as f64,
        Op::Deconv(d) => (d.kernel()[0] * d.kernel()[1]) as f64,
        _ => (s.k * s.k) as f64,
    };
    match layer_kind(g, i) {
        Some(LayerKind::Dense) | Some(LayerKind::Deconv) => {
            2.0 * pixels * (s.oc * s.ic) as f64 * area
        }
        Some(LayerKind::Depthwise) => 2.0 * pixels * s.oc as f64 * area,
        Some(LayerKind::Fc) => 2.0 * pixels * (s.oc * s.ic * block(g, i)) as f64,
        None => 0.0,
    }
}

/// The smallest fraction of a channel cluster's dense count that pruning keeps.
pub const MIN_KEEP: f64 = 0.5;

/// Allocation settings.
pub struct Allocation<'a> {
    /// The budget.
    pub budget: Budget,
    /// Remove kernel rings.
    pub kernels: bool,
    /// Remove channels.
    pub channels: bool,
    /// Kept channel counts are multiples of this (or unchanged).
    pub multiple: usize,
    /// Refit remaining weights (calibrated statistics).
    pub update: bool,
    /// The cost model the budget is in.
    pub cost: CostFn<'a>,
    /// The cost the budget's ratio applies to; `None`: the graph's cost now.
    pub base: Option<f64>,
    /// Channel count of every value in the dense model (indexed by value): a cluster keeps
    /// at least [`MIN_KEEP`] of it.
    pub dense_channels: &'a [usize],
    /// Threads that measure the layers' removal costs (the result does not depend on it).
    pub threads: usize,
}

/// The cost of the graph in `a`'s cost model, the budget's base when `a.base` is `None`.
pub fn base_cost(g: &Graph, layers: &[Layer], a: &Allocation) -> f64 {
    graph_cost(g, layers, a) + fixed_cost(g, layers, a)
}

/// The cost of what the allocation does not prune: layers outside it (grouped convs) still
/// count in a FLOP budget.
fn fixed_cost(g: &Graph, layers: &[Layer], a: &Allocation) -> f64 {
    match a.budget {
        Budget::Flops(_) => (super::graph_flops(g) as f64 - graph_cost(g, layers, a)).max(0.0),
        Budget::Latency(_) => 0.0,
    }
}

fn graph_cost(g: &Graph, layers: &[Layer], a: &Allocation) -> f64 {
    layers
        .iter()
        .map(|l| (a.cost)(g, l.node, geometry(g, l.node)))
        .sum()
}

/// Prunes `g` until the cost of its layers is at most the budget's fraction of what it was.
/// Returns, for every value, the index in `g` before the allocation of each channel kept.
pub fn allocate(g: &mut Graph, layers: &mut [Layer], a: &Allocation) -> Result<Vec<Vec<usize>>> {
    let fixed = fixed_cost(g, layers, a);
    let before = a.base.unwrap_or(graph_cost(g, layers, a) + fixed);
    let ratio = match a.budget {
        Budget::Flops(r) | Budget::Latency(r) => r,
    };
    let target = ratio * before;
    let mult = a.multiple.max(1);
    let mut kept: Vec<Vec<usize>> = (0..g.values.len())
        .map(|v| (0..channels(g, v)).collect())
        .collect();
    let dense_channels = a.dense_channels;
    let by_node: BTreeMap<usize, usize> = layers
        .iter()
        .enumerate()
        .map(|(k, l)| (l.node, k))
        .collect();
    loop {
        let total = graph_cost(g, layers, a) + fixed;
        if total <= target * (1.0 + 1e-12) {
            return Ok(kept);
        }
        measure_costs(g, layers, a);
        // Layers that read (mixing channels) and write each value.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.values.len()];
        let mut writer: Vec<Option<usize>> = vec![None; g.values.len()];
        for (k, l) in layers.iter().enumerate() {
            let n = &g.nodes[l.node];
            if l.kind != LayerKind::Depthwise {
                readers[n.inputs[0]].push(k);
            }
            writer[n.output] = Some(k);
        }
        let mut best: Option<(f64, Step)> = None;
        let mut consider = |score: f64, s: Step| {
            if best.as_ref().is_none_or(|b| score < b.0) {
                best = Some((score, s));
            }
        };
        if a.kernels {
            for (k, l) in layers.iter_mut().enumerate() {
                let Some(cost) = l.ring(g) else { continue };
                let s = geometry(g, l.node);
                let saved =
                    (a.cost)(g, l.node, s) - (a.cost)(g, l.node, Geometry { k: s.k - 2, ..s });
                if saved > 0.0 {
                    consider(cost / saved, Step::Ring(k));
                }
            }
        }
        let groups = if a.channels {
            ChannelGroups::analyse(g).free_groups(g)
        } else {
            Vec::new()
        };
        let mut clusters: BTreeMap<Vec<ValueId>, Vec<(f64, usize)>> = BTreeMap::new();
        for (gi, grp) in groups.iter().enumerate() {
            let mut key: Vec<ValueId> = grp.iter().map(|m| m.0).collect();
            key.sort_unstable();
            key.dedup();
            let mut cost = 0.0;
            for &(v, c) in grp {
                for &k in &readers[v] {
                    cost += layers[k].chan_costs(g).get(c).copied().unwrap_or(0.0);
                }
            }
            clusters.entry(key).or_default().push((cost, gi));
        }
        for (key, mut members) in clusters {
            let count = members.len();
            let m = if count % mult != 0 {
                count % mult
            } else {
                mult
            };
            // Keep at least MIN_KEEP of the dense count: post-training pruning cannot recover
            // a layer that lost most of its channels.
            let dense = key
                .iter()
                .map(|&v| dense_channels.get(v).copied().unwrap_or(count))
                .min()
                .unwrap_or(count);
            if count < m + mult || ((count - m) as f64) < MIN_KEEP * dense as f64 {
                continue;
            }
            members.sort_by(|x, y| x.0.total_cmp(&y.0));
            let take = &members[..m];
            let cost: f64 = take.iter().map(|t| t.0).sum();
            // Every member value loses m channels: the layers that read or write them
            // shrink.
            let mut drop: BTreeMap<ValueId, usize> = BTreeMap::new();
            for &(_, gi) in take {
                for &(v, _) in &groups[gi] {
                    *drop.entry(v).or_insert(0) += 1;
                }
            }
            let mut affected: BTreeSet<usize> = BTreeSet::new();
            for &v in &key {
                affected.extend(readers[v].iter().copied());
                affected.extend(writer[v]);
            }
            let saved: f64 = affected
                .iter()
                .map(|&k| {
                    let i = layers[k].node;
                    let n = &g.nodes[i];
                    let s = geometry(g, i);
                    let dout = drop.get(&n.output).copied().unwrap_or(0);
                    let din = if layers[k].kind == LayerKind::Depthwise {
                        dout
                    } else {
                        drop.get(&n.inputs[0]).copied().unwrap_or(0)
                    };
                    let after = Geometry {
                        ic: s.ic - din,
                        oc: s.oc - dout,
                        ..s
                    };
                    (a.cost)(g, i, s) - (a.cost)(g, i, after)
                })
                .sum();
            if saved > 0.0 {
                consider(
                    cost / saved,
                    Step::Channels(take.iter().map(|t| t.1).collect()),
                );
            }
        }
        let Some((_, step)) = best else {
            return Err(Error::Options(format!(
                "{}: pruning reaches only {:.3} of the {}",
                match a.budget {
                    Budget::Flops(r) => format!("--prune flops={r}"),
                    Budget::Latency(r) => format!("--prune latency={r}"),
                },
                total / before,
                match a.budget {
                    Budget::Flops(_) => "FLOPs",
                    Budget::Latency(_) => "predicted latency",
                }
            )));
        };
        match step {
            Step::Ring(k) => apply_ring(g, &mut layers[k], a.update),
            Step::Channels(idx) => {
                let mut drop = vec![BTreeSet::new(); g.values.len()];
                for &gi in &idx {
                    for &(v, c) in &groups[gi] {
                        drop[v].insert(c);
                    }
                }
                apply_channels(g, layers, &by_node, &drop, a.update)?;
                for (k, d) in kept.iter_mut().zip(&drop) {
                    for &c in d.iter().rev() {
                        if c < k.len() {
                            k.remove(c);
                        }
                    }
                }
            }
        }
    }
}

enum Step {
    Ring(usize),
    Channels(Vec<usize>),
}

/// Removes the channels `drop` (whole groups), compensating in the layers that read them.
pub fn apply_channels(
    g: &mut Graph,
    layers: &mut [Layer],
    by_node: &BTreeMap<usize, usize>,
    drop: &[BTreeSet<usize>],
    update: bool,
) -> Result<()> {
    let nodes: Vec<usize> = by_node.keys().copied().collect();
    for i in nodes {
        let l = &mut layers[by_node[&i]];
        let (x, out) = (g.nodes[i].inputs[0], g.nodes[i].output);
        match l.kind {
            LayerKind::Dense | LayerKind::Fc | LayerKind::Deconv => {
                if !drop[x].is_empty() {
                    let blk = block(g, i);
                    let cols: Vec<usize> = drop[x]
                        .iter()
                        .flat_map(|&c| c * blk..(c + 1) * blk)
                        .collect();
                    let mut groups = rows(g, i);
                    l.hinv(0);
                    l.err +=
                        remove_columns(&l.h[0], l.hinv[0].as_ref(), &mut groups[0], &cols, update);
                    set_rows(g, i, &groups);
                    let keep = complement(l.h[0].dim(), &cols);
                    l.retain_columns(&keep);
                    l.dirty();
                }
                if !drop[out].is_empty() {
                    l.drop_outputs(&drop[out]);
                    l.dirty();
                }
            }
            LayerKind::Depthwise => {
                if !drop[out].is_empty() {
                    let keep =
                        complement(l.h.len(), &drop[out].iter().copied().collect::<Vec<_>>());
                    l.h = keep.iter().map(|&c| l.h[c].clone()).collect();
                    if !l.sums.is_empty() {
                        l.sums = keep.iter().map(|&c| l.sums[c].clone()).collect();
                    }
                    l.hinv = vec![None; l.h.len()];
                    l.coh = vec![None; l.h.len()];
                    l.drop_outputs(&drop[out]);
                    l.dirty();
                }
            }
        }
    }
    super::channels::remove_channels(g, drop)
}
