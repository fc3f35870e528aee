//! SMOF pruning on the converter's IR (after BatchNorm folding, before lowering).
//!
//! What is here: kernel-ring pruning per layer, the exact shrink of rings that are already
//! all zero and of channel groups whose removal provably changes no output (the channel
//! dependency analysis is in [`channels`]), the data-free ring criterion (share of a layer's
//! weight energy in its ring), and a greedy allocation of rings to a FLOP budget. Channel
//! pruning to a budget, calibration-based compensation and latency budgets are not built
//! yet; asking for them is a clear error.

pub mod channels;
pub mod ring;

use crate::error::{Error, Result};
use crate::ir::{Graph, Op};
use ring::{remove_ring, ring_energy, ring_is_zero, ring_removable};

/// What budget to prune to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Keep at most this fraction of the conv and fully connected FLOPs, in (0, 1].
    Flops(f64),
}

/// Pruning options.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneOptions {
    /// The budget; `None` does only the lossless exact shrink.
    pub budget: Option<Budget>,
    /// Prune kernel rings.
    pub kernels: bool,
    /// Prune channels (not built yet: with a budget, this is an error).
    pub channels: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            budget: None,
            kernels: true,
            channels: false,
        }
    }
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
    /// Share of the layer's weight energy removed (0 for an exact shrink).
    pub energy_removed: f64,
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
    /// Every conv layer.
    pub layers: Vec<LayerReport>,
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
        _ => 0,
    }
}

/// Total conv and fully connected FLOPs.
pub fn graph_flops(g: &Graph) -> u64 {
    (0..g.nodes.len()).map(|i| node_flops(g, i)).sum()
}

/// Prunes `g` in place as `opts` asks and reports every conv layer.
pub fn prune(g: &mut Graph, opts: &PruneOptions) -> Result<PruneReport> {
    if let Some(Budget::Flops(r)) = opts.budget {
        if !(r > 0.0 && r <= 1.0) {
            return Err(Error::Options(format!(
                "--prune flops={r}: the ratio must be in (0, 1]"
            )));
        }
        if opts.channels {
            return Err(Error::Options(
                "channel pruning is not built yet; use --prune-channels off (kernel rings only)"
                    .into(),
            ));
        }
        if !opts.kernels {
            return Err(Error::Options(
                "--prune-kernels off and --prune-channels off leave nothing to prune".into(),
            ));
        }
    }
    let convs: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, Op::Conv(_)))
        .collect();
    let mut layers: Vec<LayerReport> = convs
        .iter()
        .map(|&i| {
            let Op::Conv(c) = &g.nodes[i].op else {
                unreachable!("filtered to convs")
            };
            let f = node_flops(g, i);
            LayerReport {
                name: g.nodes[i].name.clone(),
                k_before: c.kernel()[0],
                k_after: c.kernel()[0],
                channels_before: c.out_c(),
                channels_after: c.out_c(),
                flops_before: f,
                flops_after: f,
                energy_removed: 0.0,
                blocked: ring_removable(c).err().map(|b| b.reason()),
            }
        })
        .collect();
    let flops_before = graph_flops(g);
    let energy_total: Vec<f64> = convs
        .iter()
        .map(|&i| match &g.nodes[i].op {
            Op::Conv(c) => ring_energy(c).1,
            _ => 0.0,
        })
        .collect();

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

    // Exact shrink of channels: groups whose removal provably changes no output go.
    let mut groups = channels::ChannelGroups::analyse(g);
    let zero: Vec<Vec<(usize, usize)>> = groups
        .free_groups(g)
        .into_iter()
        .filter(|grp| channels::group_is_zero(g, grp))
        .collect();
    if !zero.is_empty() {
        let mut drop = vec![std::collections::BTreeSet::new(); g.values.len()];
        for &(v, c) in zero.iter().flatten() {
            drop[v].insert(c);
        }
        // A value keeps at least one channel.
        let keeps_one = drop
            .iter()
            .enumerate()
            .all(|(v, d)| d.len() < g.shape(v).get(1).copied().unwrap_or(0) || d.is_empty());
        if keeps_one {
            channels::remove_channels(g, &drop)?;
            for (li, &i) in convs.iter().enumerate() {
                if let Op::Conv(c) = &g.nodes[i].op {
                    layers[li].channels_after = c.out_c();
                    layers[li].flops_after = node_flops(g, i);
                }
            }
        }
    }

    if let Some(Budget::Flops(r)) = opts.budget {
        let target = (r * flops_before as f64).floor() as u64;
        let mut total = graph_flops(g);
        while total > target {
            // The ring whose removal loses the least weight energy (as a share of its
            // layer's) per FLOP saved.
            let best = convs
                .iter()
                .enumerate()
                .filter_map(|(li, &i)| {
                    let Op::Conv(c) = &g.nodes[i].op else {
                        return None;
                    };
                    ring_removable(c).ok()?;
                    let (ring, _) = ring_energy(c);
                    let k = c.kernel()[0] as u64;
                    let f = node_flops(g, i);
                    let saved = f - f / (k * k) * ((k - 2) * (k - 2));
                    let share = if energy_total[li] > 0.0 {
                        ring / energy_total[li]
                    } else {
                        0.0
                    };
                    Some((share / saved.max(1) as f64, li, i, share))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, li, i, share)) = best else {
                return Err(Error::Options(format!(
                    "--prune flops={r}: kernel-ring pruning alone reaches only {:.3} of the FLOPs",
                    total as f64 / flops_before as f64
                )));
            };
            if let Op::Conv(c) = &mut g.nodes[i].op {
                remove_ring(c);
                layers[li].k_after = c.kernel()[0];
                layers[li].energy_removed += share;
            }
            total = graph_flops(g);
        }
    }
    for (li, &i) in convs.iter().enumerate() {
        layers[li].flops_after = node_flops(g, i);
    }
    Ok(PruneReport {
        flops_before,
        flops_after: graph_flops(g),
        layers,
    })
}
