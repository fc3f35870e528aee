//! Latency tables: the measured time of each prunable layer of one model on one device, at
//! each candidate kernel size and a grid of input and output channel counts
//! (`smof-bench --lut-for M.smof -o device.lut` writes them). Predictions interpolate
//! linearly between grid points in each channel count.

use super::budget::Geometry;
use super::stats::layer_kind;
use crate::error::{Error, Result};
use crate::ir::{Graph, Op};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format tag of a table.
pub const FORMAT: &str = "smof-lut-1";

/// Timings of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerTimes {
    /// Kernel size, input and output channels of the dense layer.
    pub dense: [usize; 3],
    /// Candidate kernel sizes, largest first.
    pub k: Vec<usize>,
    /// Input channel counts of the grid, ascending (the last is the dense count).
    pub ic: Vec<usize>,
    /// Output channel counts of the grid, ascending.
    pub oc: Vec<usize>,
    /// `ms[k][ic][oc]`: median single-thread time in milliseconds.
    pub ms: Vec<Vec<Vec<f64>>>,
}

/// A latency table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lut {
    /// [`FORMAT`].
    pub format: String,
    /// Kernel table the times were measured with (e.g. `x86_64-avx2`).
    pub kernels: String,
    /// The device (CPU model) they were measured on.
    pub device: String,
    /// Model name from the measured file's metadata.
    pub model: String,
    /// Per layer, by node name.
    pub layers: BTreeMap<String, LayerTimes>,
    /// Accept a table from another model or kernel table (with a warning by the caller).
    #[serde(skip)]
    pub allow_mismatch: bool,
}

/// Index of the grid interval holding `x` and the weight of its upper end.
fn bracket(grid: &[usize], x: usize) -> (usize, f64) {
    if grid.len() < 2 || x <= grid[0] {
        // Below the grid: scale the first point down linearly in the count.
        return (0, f64::NAN);
    }
    for i in 0..grid.len() - 1 {
        if x <= grid[i + 1] {
            let t = (x - grid[i]) as f64 / (grid[i + 1] - grid[i]) as f64;
            return (i, t);
        }
    }
    (grid.len() - 2, 1.0)
}

impl Lut {
    /// Parses a table.
    pub fn parse(text: &str) -> Result<Lut> {
        let lut: Lut = serde_json::from_str(text)
            .map_err(|e| Error::Options(format!("the latency table is not valid: {e}")))?;
        if lut.format != FORMAT {
            return Err(Error::Options(format!(
                "the latency table has format '{}', this converter reads '{FORMAT}'",
                lut.format
            )));
        }
        for (name, t) in &lut.layers {
            let ok = !t.k.is_empty()
                && !t.ic.is_empty()
                && !t.oc.is_empty()
                && t.ms.len() == t.k.len()
                && t.ms.iter().all(|a| {
                    a.len() == t.ic.len()
                        && a.iter()
                            .all(|b| b.len() == t.oc.len() && b.iter().all(|v| v.is_finite()))
                });
            if !ok {
                return Err(Error::Options(format!(
                    "the latency table's entry for layer '{name}' is malformed"
                )));
            }
        }
        Ok(lut)
    }

    /// Checks that the table was measured on this model (every prunable conv has an entry
    /// with its dense geometry) for the kernel table `kernels`; an error says what differs
    /// unless [`Lut::allow_mismatch`] is set.
    pub fn check_for(&self, g: &Graph, kernels: &str) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        if self.kernels != kernels {
            problems.push(format!(
                "it was measured with the {} kernels, the model is packed for {kernels}",
                self.kernels
            ));
        }
        for i in 0..g.nodes.len() {
            if !matches!(g.nodes[i].op, Op::Conv(_)) || layer_kind(g, i).is_none() {
                continue;
            }
            let s = super::budget::geometry(g, i);
            let name = &g.nodes[i].name;
            match self.layers.get(name) {
                None => problems.push(format!("it has no entry for layer '{name}'")),
                Some(t) if t.dense != [s.k, s.ic, s.oc] => problems.push(format!(
                    "layer '{name}' is {}x{} {}->{} in the table but {}x{} {}->{} in the model",
                    t.dense[0], t.dense[0], t.dense[1], t.dense[2], s.k, s.k, s.ic, s.oc
                )),
                _ => {}
            }
        }
        if problems.is_empty() || self.allow_mismatch {
            Ok(problems)
        } else {
            Err(Error::Options(format!(
                "the latency table does not fit this model/device ({}); measure one with \
                 smof-bench --lut-for, or pass --lut-allow-mismatch to use it anyway",
                problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )))
        }
    }

    /// Checks the table against the graph for the kernel table it names (see
    /// [`Lut::check_for`]); used by pruning, which does not know the target.
    pub fn check(&self, g: &Graph) -> Result<()> {
        self.check_for(g, &self.kernels.clone()).map(|_| ())
    }

    /// Predicted time of layer `i` at geometry `s`, in ms. Layers without an entry (fully
    /// connected ones, or when mismatches were allowed) fall back to FLOPs at the table's
    /// mean speed.
    pub fn predict(&self, g: &Graph, i: usize, s: Geometry) -> f64 {
        let Some(t) = self.layers.get(&g.nodes[i].name) else {
            return super::budget::flops_at(g, i, s) / self.flops_per_ms(g);
        };
        let Some(ki) = t.k.iter().position(|&k| k == s.k) else {
            return super::budget::flops_at(g, i, s) / self.flops_per_ms(g);
        };
        let at = |a: usize, b: usize| t.ms[ki][a][b];
        let (ia, ta) = bracket(&t.ic, s.ic);
        let (ob, tb) = bracket(&t.oc, s.oc);
        let lerp = |lo: f64, hi: f64, w: f64| lo + (hi - lo) * w;
        let row = |a: usize| -> f64 {
            if tb.is_nan() {
                at(a, 0) * s.oc as f64 / t.oc[0].max(1) as f64
            } else if t.oc.len() == 1 {
                at(a, 0)
            } else {
                lerp(at(a, ob), at(a, ob + 1), tb)
            }
        };
        if ta.is_nan() {
            row(0) * s.ic as f64 / t.ic[0].max(1) as f64
        } else if t.ic.len() == 1 {
            row(0)
        } else {
            lerp(row(ia), row(ia + 1), ta)
        }
    }

    /// FLOPs per ms of the measured dense layers, for layers the table does not cover.
    fn flops_per_ms(&self, g: &Graph) -> f64 {
        let (mut f, mut ms) = (0.0, 0.0);
        for i in 0..g.nodes.len() {
            if let Some(t) = self.layers.get(&g.nodes[i].name) {
                let d = Geometry {
                    k: t.dense[0],
                    ic: t.dense[1],
                    oc: t.dense[2],
                };
                f += super::budget::flops_at(g, i, d);
                ms += t.ms[0][t.ic.len() - 1][t.oc.len() - 1];
            }
        }
        if ms > 0.0 && f > 0.0 {
            f / ms
        } else {
            1e9
        }
    }
}
