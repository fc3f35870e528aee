//! SMOF pruning on the converter's IR (after BatchNorm folding, before lowering).
//!
//! - [`ring`]: taking the outer ring off a KxK kernel; [`channels`]: the channel
//!   dependency groups and channel removal; [`constant`]: constant channels.
//! - Every conversion does the exact shrink: rings that are all zero, and channel groups
//!   whose removal changes no output (zero channels, and constant channels once their
//!   constant is folded into the consumers' biases).
//! - With a budget, [`budget`] removes rings and channel groups greedily by error per saved
//!   FLOP (or predicted time, [`lut`]); the errors come from [`obs`] over the statistics of
//!   [`stats`]: a data-free estimate, or `H = Σ x xᵀ` on calibration inputs, in which case
//!   each removal also refits the remaining weights (Optimal Brain Surgeon).

pub mod budget;
pub mod calib;
pub mod channels;
pub mod constant;
pub mod distill;
pub mod lut;
pub mod obs;
pub mod refit;
pub mod ring;
pub mod stats;

use crate::error::{Error, Result};
use crate::ir::{Graph, Op};
use ring::{remove_ring, ring_is_zero, ring_removable};
use std::sync::Arc;

/// What budget to prune to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Keep at most this fraction of the conv and fully connected FLOPs, in (0, 1].
    Flops(f64),
    /// Keep at most this fraction of the latency predicted by a table
    /// ([`PruneOptions::lut`]), in (0, 1].
    Latency(f64),
}

/// Pruning options.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneOptions {
    /// The budget; `None` does only the lossless exact shrink.
    pub budget: Option<Budget>,
    /// Prune kernel rings.
    pub kernels: bool,
    /// Prune channels.
    pub channels: bool,
    /// Kept channel counts are multiples of this (a count that is not pruned stays as it
    /// is); 1 turns SIMD rounding off.
    pub channel_multiple: usize,
    /// Calibration inputs; `None` prunes data-free.
    pub calib: Option<Arc<calib::Calibration>>,
    /// Inputs kept apart from the calibration set: with a budget, each layer's output error
    /// is also measured on them after pruning ([`LayerReport::holdout_error`]).
    pub holdout: Option<Arc<calib::Calibration>>,
    /// With calibration: refit every layer in graph order on the pruned model's own
    /// activations after the allocation ([`refit::sequential`]).
    pub refit: bool,
    /// With calibration: rank removals by the error they cause at the model outputs (each
    /// layer's output error weighted per channel by [`distill::output_weights`]) rather
    /// than by the layer's own relative error. Models with an op that gradients do not pass
    /// through fall back to the layer's own error.
    pub output_weighted: bool,
    /// With calibration: train the pruned model towards the dense one end to end after
    /// the refit ([`distill::distill`]); 0 epochs turns it off.
    pub distill: distill::DistillOptions,
    /// Latency table for [`Budget::Latency`].
    pub lut: Option<Arc<lut::Lut>>,
    /// Show a progress bar during calibration.
    pub progress: bool,
    /// Worker threads for the calibration statistics and the refit (default: the
    /// machine's). Their results do not depend on it: each sum runs over the samples in the
    /// same order whatever the count. (Distillation has its own,
    /// [`distill::DistillOptions::threads`].)
    pub threads: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            budget: None,
            kernels: true,
            channels: true,
            channel_multiple: 1,
            calib: None,
            holdout: None,
            refit: true,
            output_weighted: true,
            distill: distill::DistillOptions::default(),
            lut: None,
            progress: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `f(0)`, …, `f(n − 1)` in that order, computed on up to `threads` scoped threads, each
/// taking a contiguous run of indices.
pub(crate) fn par_map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    par_ranges(n, threads, |r| r.map(&f).collect::<Vec<T>>())
        .into_iter()
        .flatten()
        .collect()
}

/// `f` on each of up to `threads` contiguous runs that together cover `0..n` in order (runs
/// of `n.div_ceil(threads)` indices, the last one shorter), one scoped thread per run (on the
/// calling thread when there is one run), the results in the runs' order. Work that folds a
/// run's items into one value per run keeps its sums in this fixed grouping.
pub(crate) fn par_ranges<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    let per = n.div_ceil(threads).max(1);
    if threads == 1 {
        return vec![f(0..n)];
    }
    let f = &f;
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|a| sc.spawn(move || f(a..(a + per).min(n))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// `f` on every item of every part, one scoped thread per non-empty part (the items of a
/// part in order on its thread): how mutable work is shared out when each item is
/// independent of the others.
pub(crate) fn par_each<T: Send>(parts: &mut [Vec<T>], f: impl Fn(&mut T) + Sync) {
    let f = &f;
    std::thread::scope(|sc| {
        for part in parts.iter_mut().filter(|p| !p.is_empty()) {
            sc.spawn(move || part.iter_mut().for_each(f));
        }
    });
}

/// One layer in the report.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// Node name.
    pub name: String,
    /// Kernel size before.
    pub k_before: usize,
    /// Kernel size after.
    pub k_after: usize,
    /// Output channels before.
    pub channels_before: usize,
    /// Output channels after.
    pub channels_after: usize,
    /// FLOPs before.
    pub flops_before: u64,
    /// FLOPs after.
    pub flops_after: u64,
    /// Predicted time before and after in ms, with a latency table.
    pub time_ms: Option<(f64, f64)>,
    /// Output error energy relative to the layer's output energy: with calibration and
    /// refit, measured at the layer's output on the calibration set (the error of every
    /// layer before it included); with calibration alone, what pruning added to this layer
    /// on the dense model's inputs; data-free, the estimate of that; 0 for an exact shrink.
    pub rel_error: f64,
    /// With [`PruneOptions::holdout`]: the error of the final pruned model at this layer's
    /// output on those inputs, measured as the calibrated `rel_error` is.
    pub holdout_error: Option<f64>,
    /// Why the kernel was not prunable, if it was not.
    pub blocked: Option<&'static str>,
}

/// What pruning did.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PruneReport {
    /// Conv and fully connected FLOPs before.
    pub flops_before: u64,
    /// Conv and fully connected FLOPs after.
    pub flops_after: u64,
    /// Predicted total time before and after in ms, with a latency table.
    pub time_ms: Option<(f64, f64)>,
    /// Number of channel groups removed exactly (zero or constant).
    pub exact_channels: usize,
    /// Whether the errors were measured on calibration data.
    pub calibrated: bool,
    /// Every conv layer.
    pub layers: Vec<LayerReport>,
    /// Nodes whose channel mapping the analysis does not follow (`name (op)`); the channels
    /// on both of their sides were kept.
    pub unanalysed: Vec<String>,
    /// With distillation, its mean training loss per epoch (the outputs' part).
    pub distill_loss: Vec<f64>,
    /// With distillation and `features`, the block outputs' part of the loss per epoch.
    pub distill_feature_loss: Vec<f64>,
    /// Whether the allocation ranked removals by their error at the model outputs
    /// ([`PruneOptions::output_weighted`]).
    pub output_weighted: bool,
}

/// FLOPs (2 x multiply-adds) of a conv or fully connected node; 0 for other ops.
pub fn node_flops(g: &Graph, node: usize) -> u64 {
    let n = &g.nodes[node];
    let out = g.shape(n.output);
    match &n.op {
        Op::Conv(c) => {
            let w = &c.weight.dims;
            2 * out.iter().map(|&d| d as u64).product::<u64>() * (w[1] * w[2] * w[3]) as u64
        }
        Op::Fc(f) => 2 * out[0] as u64 * f.weight.data.len() as u64,
        // Every input value meets OC/group x KH x KW weights.
        Op::Deconv(d) => {
            let x: u64 = g.shape(n.inputs[0]).iter().map(|&v| v as u64).product();
            2 * x * d.per_input() as u64
        }
        _ => 0,
    }
}

/// With calibration and refit, the budget is reached in this many stages (each prunes to
/// `ratio^(k/STAGES)` of the dense cost, then refits on the calibration set, and the next
/// stage measures its statistics on the refit model).
pub const STAGES: usize = 3;

/// A progress bar of `len` steps with the template `style`, hidden unless `show`.
fn progress_bar(show: bool, len: usize, style: &str) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(style)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Total conv and fully connected FLOPs.
pub fn graph_flops(g: &Graph) -> u64 {
    (0..g.nodes.len()).map(|i| node_flops(g, i)).sum()
}

/// Prunes `g` in place as `opts` asks and reports every conv layer.
pub fn prune(g: &mut Graph, opts: &PruneOptions) -> Result<PruneReport> {
    if let Some(Budget::Flops(r) | Budget::Latency(r)) = opts.budget {
        let name = match opts.budget {
            Some(Budget::Latency(_)) => "latency",
            _ => "flops",
        };
        if !(r > 0.0 && r <= 1.0) {
            return Err(Error::Options(format!(
                "--prune {name}={r}: the ratio must be in (0, 1]"
            )));
        }
        if !opts.kernels && !opts.channels {
            return Err(Error::Options(
                "--prune-kernels off and --prune-channels off leave nothing to prune".into(),
            ));
        }
        if matches!(opts.budget, Some(Budget::Latency(_))) && opts.lut.is_none() {
            return Err(Error::Options(
                "--prune latency=R needs a latency table (--lut device.lut)".into(),
            ));
        }
    }
    if let Some(h) = &opts.holdout {
        if opts.budget.is_none() {
            return Err(Error::Options("--holdout needs --prune".into()));
        }
        h.check_input(g, "--holdout")?;
    }
    let convs: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, Op::Conv(_) | Op::Deconv(_)))
        .collect();
    let mut layers: Vec<LayerReport> = convs
        .iter()
        .map(|&i| {
            let grouped = stats::layer_kind(g, i).is_none();
            let (k, oc, blocked) = match &g.nodes[i].op {
                Op::Conv(c) => (
                    c.kernel()[0],
                    c.out_c(),
                    ring_removable(c)
                        .err()
                        .map(|b| b.reason())
                        .or(grouped.then_some("grouped conv")),
                ),
                Op::Deconv(d) => (
                    d.kernel()[0],
                    d.out_c(),
                    Some(if grouped {
                        "grouped transposed conv"
                    } else {
                        "transposed conv: channels only"
                    }),
                ),
                _ => unreachable!("filtered to convs"),
            };
            let f = node_flops(g, i);
            LayerReport {
                name: g.nodes[i].name.clone(),
                k_before: k,
                k_after: k,
                channels_before: oc,
                channels_after: oc,
                flops_before: f,
                flops_after: f,
                time_ms: None,
                rel_error: 0.0,
                holdout_error: None,
                blocked,
            }
        })
        .collect();
    let flops_before = graph_flops(g);
    let lut_time = |g: &Graph| -> Option<Vec<f64>> {
        let t = opts.lut.as_ref()?;
        Some(
            convs
                .iter()
                .map(|&i| t.predict(g, i, budget::geometry(g, i)))
                .collect(),
        )
    };
    let time_before = lut_time(g);
    if let Some(t) = &opts.lut {
        t.check(g)?;
    }

    if opts.kernels {
        // Exact shrink: rings that are all zero go, with no change to the outputs.
        for (li, &i) in convs.iter().enumerate() {
            while let Op::Conv(c) = &mut g.nodes[i].op {
                if ring_removable(c).is_err() || !ring_is_zero(c) {
                    break;
                }
                remove_ring(c);
                layers[li].k_after = c.kernel()[0];
            }
        }
    }
    let exact_channels = exact_channel_shrink(g)?;

    let calibrated = opts.budget.is_some() && opts.calib.is_some();
    let mut distill_loss = Vec::new();
    let mut distill_feature_loss = Vec::new();
    let mut output_weighted = false;
    if let Some(b) = opts.budget {
        let nodes: Vec<usize> = (0..g.nodes.len())
            .filter(|&i| stats::layer_kind(g, i).is_some())
            .collect();
        let refit = calibrated && opts.refit;
        let distilling = calibrated && opts.distill.epochs > 0;
        if distilling {
            distill::check(g)?;
        }
        // The model before the allocation (the refit's and the distillation's target) and
        // its channel counts (the allocation keeps a share of them).
        let dense = (refit || distilling || opts.holdout.is_some()).then(|| g.clone());
        let dense_channels: Vec<usize> =
            (0..g.values.len()).map(|v| stats::channels(g, v)).collect();
        let mut kept: Vec<Vec<usize>> = dense_channels.iter().map(|&c| (0..c).collect()).collect();
        let stages = if refit { STAGES } else { 1 };
        let ratio = match b {
            Budget::Flops(r) | Budget::Latency(r) => r,
        };
        let mut base = None;
        for stage in 1..=stages {
            let (hs, mut sums, mut folds) = match &opts.calib {
                Some(samples) => {
                    let bar = progress_bar(
                        opts.progress,
                        samples.samples.len(),
                        &format!(
                            "calibrating {{bar:30}} {{pos}}/{{len}} samples, stage {stage}/{stages}, {{elapsed}} ({{eta}} left)"
                        ),
                    );
                    let hs = stats::calibrated(g, samples, opts.threads, |k| {
                        bar.set_position(k as u64)
                    })?;
                    bar.finish_and_clear();
                    hs
                }
                None => {
                    let e = stats::estimate_energy(g);
                    (
                        (0..g.nodes.len())
                            .map(|i| stats::data_free(g, i, &e))
                            .collect(),
                        vec![Vec::new(); g.nodes.len()],
                        vec![None; g.nodes.len()],
                    )
                }
            };
            let mut state: Vec<budget::Layer> = Vec::new();
            for (i, h) in hs.into_iter().enumerate() {
                if nodes.contains(&i) {
                    state.extend(budget::Layer::new(g, i, h).map(|mut l| {
                        l.sums = std::mem::take(&mut sums[i]);
                        l.folds = folds[i].take();
                        l
                    }));
                }
            }
            if let (true, true, Some(samples)) = (
                calibrated && opts.output_weighted,
                distill::check(g).is_ok(),
                &opts.calib,
            ) {
                let bar = progress_bar(
                    opts.progress,
                    samples.samples.len(),
                    &format!(
                        "output weights {{bar:30}} {{pos}}/{{len}} samples, stage {stage}/{stages}, {{elapsed}} ({{eta}} left)"
                    ),
                );
                let mut w = distill::output_weights(g, samples, opts.distill.threads, |k| {
                    bar.set_position(k as u64)
                })?;
                bar.finish_and_clear();
                for l in &mut state {
                    l.out_weights = w[l.node].take();
                }
                output_weighted = true;
            }
            let lut_cost;
            let cost: budget::CostFn = match (&b, &opts.lut) {
                (Budget::Latency(_), Some(t)) => {
                    lut_cost = move |g: &Graph, i: usize, s: budget::Geometry| t.predict(g, i, s);
                    &lut_cost
                }
                _ => &budget::flops_at,
            };
            // Stage k of S prunes to ratio^(k/S) of the dense cost.
            let r = ratio.powf(stage as f64 / stages as f64);
            let mut alloc = budget::Allocation {
                budget: match b {
                    Budget::Flops(_) => Budget::Flops(r),
                    Budget::Latency(_) => Budget::Latency(r),
                },
                kernels: opts.kernels,
                channels: opts.channels,
                multiple: opts.channel_multiple,
                update: calibrated,
                cost,
                base: None,
                dense_channels: &dense_channels,
                threads: opts.threads,
            };
            alloc.base = Some(*base.get_or_insert_with(|| budget::base_cost(g, &state, &alloc)));
            let step = budget::allocate(g, &mut state, &alloc)?;
            for (k, s) in kept.iter_mut().zip(&step) {
                *k = s.iter().filter_map(|&i| k.get(i).copied()).collect();
            }
            for l in &state {
                if let Some(li) = convs.iter().position(|&i| i == l.node) {
                    layers[li].rel_error = l.err / l.norm.max(f64::MIN_POSITIVE);
                }
            }
            if let (true, Some(dense), Some(samples)) = (refit, &dense, &opts.calib) {
                let bar = progress_bar(
                    opts.progress,
                    g.nodes.len(),
                    &format!(
                        "refitting {{bar:30}} {{pos}}/{{len}} nodes, stage {stage}/{stages}, {{elapsed}} ({{eta}} left)"
                    ),
                );
                let errors = refit::sequential(dense, g, &kept, samples, opts.threads, |k, _| {
                    bar.set_position(k as u64)
                })?;
                bar.finish_and_clear();
                for (j, e) in errors {
                    if let Some(li) = convs.iter().position(|&i| i == j) {
                        layers[li].rel_error = e;
                    }
                }
            }
        }
        if let (true, Some(dense), Some(samples)) = (distilling, &dense, &opts.calib) {
            let steps =
                opts.distill.epochs * samples.samples.len().div_ceil(opts.distill.batch.max(1));
            let bar = progress_bar(
                opts.progress,
                steps,
                "distilling {bar:30} {pos}/{len} steps, {elapsed} ({eta} left)",
            );
            let rep = distill::distill(dense, g, samples, &opts.distill, &kept, |k, _| {
                bar.set_position(k as u64)
            })?;
            bar.finish_and_clear();
            distill_loss = rep.epoch_loss;
            distill_feature_loss = rep.feature_loss;
        }
        if let (Some(dense), Some(samples)) = (&dense, &opts.holdout) {
            for (j, e) in refit::errors(dense, g, &kept, samples, opts.threads)? {
                if let Some(li) = convs.iter().position(|&i| i == j) {
                    layers[li].holdout_error = Some(e);
                }
            }
        }
    }
    for (li, &i) in convs.iter().enumerate() {
        match &g.nodes[i].op {
            Op::Conv(c) => {
                layers[li].k_after = c.kernel()[0];
                layers[li].channels_after = c.out_c();
            }
            Op::Deconv(d) => layers[li].channels_after = d.out_c(),
            _ => {}
        }
        layers[li].flops_after = node_flops(g, i);
    }
    let time_after = lut_time(g);
    if let (Some(b), Some(a)) = (&time_before, &time_after) {
        for (li, l) in layers.iter_mut().enumerate() {
            l.time_ms = Some((b[li], a[li]));
        }
    }
    Ok(PruneReport {
        flops_before,
        flops_after: graph_flops(g),
        time_ms: time_before
            .zip(time_after)
            .map(|(b, a)| (b.iter().sum(), a.iter().sum())),
        exact_channels,
        calibrated,
        layers,
        unanalysed: channels::ChannelGroups::analyse(g).unanalysed,
        distill_loss,
        distill_feature_loss,
        output_weighted,
    })
}

/// Removes every channel group whose removal provably changes no output: channels that
/// are zero, and constant channels once their constant is folded into the biases of the
/// layers that read them. Returns the number of groups removed.
pub fn exact_channel_shrink(g: &mut Graph) -> Result<usize> {
    let producers = g.producers();
    let mut memo = std::collections::HashMap::new();
    let groups = channels::ChannelGroups::analyse(g).free_groups(g);
    let mut drop = vec![std::collections::BTreeSet::new(); g.values.len()];
    let mut folds = Vec::new();
    let mut removed = 0;
    for grp in &groups {
        if let Some(f) = constant::foldable(g, &producers, grp, &mut memo) {
            // A value keeps at least one channel.
            let fits = grp.iter().all(|&(v, _)| {
                let n = g.shape(v).get(1).copied().unwrap_or(0);
                drop[v].len() + grp.iter().filter(|m| m.0 == v).count() < n
            });
            if fits {
                for &(v, c) in grp {
                    drop[v].insert(c);
                }
                folds.extend(f);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        constant::fold(g, &folds);
        channels::remove_channels(g, &drop)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::{par_map, par_ranges};

    #[test]
    fn par_map_keeps_the_order_for_any_thread_count() {
        let want: Vec<usize> = (0..23).map(|i| i * i).collect();
        for threads in [0, 1, 2, 3, 7, 23, 40] {
            assert_eq!(par_map(23, threads, |i| i * i), want, "{threads} threads");
        }
        assert!(par_map(0, 4, |i| i).is_empty());
    }

    #[test]
    fn par_ranges_cover_the_indices_in_order_in_even_runs() {
        for (n, threads, want) in [
            (10, 1, vec![(0, 10)]),
            (10, 3, vec![(0, 4), (4, 8), (8, 10)]),
            (10, 4, vec![(0, 3), (3, 6), (6, 9), (9, 10)]),
            (3, 8, vec![(0, 1), (1, 2), (2, 3)]),
            (0, 2, vec![(0, 0)]),
        ] {
            assert_eq!(
                par_ranges(n, threads, |r| (r.start, r.end)),
                want,
                "{n} items, {threads} threads"
            );
        }
    }
}
