//! The prunable layers of a graph and their input statistics: a data-free estimate of each
//! channel's mean square, or `H = Σ x xᵀ` measured on calibration inputs.

use super::calib::FOLDS;
use super::obs::{accumulate, Hessian};
use crate::error::{Error, Result};
use crate::ir::{Activation, Graph, GraphIo, Op, ValueId};
use faer::Mat;

/// Pixels per image and layer that enter `H` (evenly spaced), which bounds the cost of
/// calibration on large feature maps.
pub const MAX_PIXELS: usize = 1024;

/// What kind of prunable layer a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Conv with one group.
    Dense,
    /// Depthwise conv (group = input channels = output channels).
    Depthwise,
    /// Fully connected.
    Fc,
    /// Transposed conv with one group. Each input pixel is a 1x1 conv to `OC x KH x KW`
    /// outputs that are then scattered: its rows are the `(output channel, tap)` pairs over
    /// the input channels, and its statistics are those of the input pixels. The bias is
    /// outside the rows (a refit leaves it as it is).
    Deconv,
}

/// The kind of node `i`, if it is a prunable layer.
pub fn layer_kind(g: &Graph, i: usize) -> Option<LayerKind> {
    let n = &g.nodes[i];
    match &n.op {
        Op::Conv(c) if c.group == 1 => Some(LayerKind::Dense),
        Op::Conv(c)
            if c.weight.dims[1] == 1
                && c.group == c.out_c()
                && g.shape(n.inputs[0]).get(1) == Some(&c.group) =>
        {
            Some(LayerKind::Depthwise)
        }
        Op::Fc(_) => Some(LayerKind::Fc),
        Op::Deconv(d) if d.group == 1 => Some(LayerKind::Deconv),
        _ => None,
    }
}

/// Channels of a value (axis 1).
pub fn channels(g: &Graph, v: ValueId) -> usize {
    g.shape(v).get(1).copied().unwrap_or(0)
}

/// Columns of the input row that belong to each input channel of a dense conv or FC.
pub fn block(g: &Graph, i: usize) -> usize {
    let n = &g.nodes[i];
    match &n.op {
        Op::Conv(c) => c.kernel()[0] * c.kernel()[1],
        Op::Deconv(_) => 1,
        _ => g
            .shape(n.inputs[0])
            .iter()
            .skip(2)
            .product::<usize>()
            .max(1),
    }
}

/// The weight rows of layer `i` with the bias appended, grouped as its Hessians are: one
/// group of all rows for a dense conv or FC, one single-row group per channel for a
/// depthwise conv.
pub fn rows(g: &Graph, i: usize) -> Vec<Vec<Vec<f64>>> {
    let (w, bias, oc, dw) = match &g.nodes[i].op {
        Op::Conv(c) => (
            &c.weight.data,
            &c.bias,
            c.out_c(),
            layer_kind(g, i) == Some(LayerKind::Depthwise),
        ),
        Op::Fc(f) => (&f.weight.data, &f.bias, f.weight.dims[0], false),
        Op::Deconv(d) => {
            // Weights [IC, OC, KH, KW]: row (o, t) holds W[i, o, t] over i, then 0 for the
            // bias column.
            let (ic, per) = (d.weight.dims[0], d.per_input());
            let rows = (0..per)
                .map(|r| {
                    let mut row: Vec<f64> =
                        (0..ic).map(|i| d.weight.data[i * per + r] as f64).collect();
                    row.push(0.0);
                    row
                })
                .collect();
            return vec![rows];
        }
        _ => return Vec::new(),
    };
    let row = w.len() / oc.max(1);
    let all: Vec<Vec<f64>> = (0..oc)
        .map(|o| {
            let mut r: Vec<f64> = w[o * row..(o + 1) * row]
                .iter()
                .map(|&v| v as f64)
                .collect();
            r.push(bias.as_ref().map_or(0.0, |b| b[o] as f64));
            r
        })
        .collect();
    if dw {
        all.into_iter().map(|r| vec![r]).collect()
    } else {
        vec![all]
    }
}

/// Writes rows back (the inverse of [`rows`]).
pub fn set_rows(g: &mut Graph, i: usize, groups: &[Vec<Vec<f64>>]) {
    let flat: Vec<&Vec<f64>> = groups.iter().flatten().collect();
    if let Op::Deconv(d) = &mut g.nodes[i].op {
        let per = flat.len();
        for (r, row) in flat.iter().enumerate() {
            for (k, &v) in row[..row.len() - 1].iter().enumerate() {
                d.weight.data[k * per + r] = v as f32;
            }
        }
        return;
    }
    let (w, bias) = match &mut g.nodes[i].op {
        Op::Conv(c) => (&mut c.weight.data, &mut c.bias),
        Op::Fc(f) => (&mut f.weight.data, &mut f.bias),
        _ => return,
    };
    let row = w.len() / flat.len().max(1);
    for (o, r) in flat.iter().enumerate() {
        for (k, &v) in r[..row].iter().enumerate() {
            w[o * row + k] = v as f32;
        }
    }
    let b: Vec<f32> = flat.iter().map(|r| r[row] as f32).collect();
    if bias.is_some() || b.iter().any(|&v| v != 0.0) {
        *bias = Some(b);
    }
}

fn act_gain(a: Activation) -> f64 {
    match a {
        Activation::None => 1.0,
        _ => 0.5,
    }
}

/// A data-free estimate of every channel's mean square, propagated from unit-variance
/// inputs through the weights (`E_out = Σ w² E_in + b²`, halved by a rectifier).
pub fn estimate_energy(g: &Graph) -> Vec<Vec<f64>> {
    let mut e: Vec<Vec<f64>> = g.values.iter().map(|_| Vec::new()).collect();
    for io in &g.inputs {
        e[io.value] = vec![1.0; channels(g, io.value)];
    }
    for (ni, n) in g.nodes.iter().enumerate() {
        let oc = channels(g, n.output);
        let get = |v: ValueId, c: usize| e[v].get(c).copied().unwrap_or(1.0);
        let x = n.inputs.first().copied().unwrap_or(n.output);
        let out: Vec<f64> = match &n.op {
            Op::Conv(c) => {
                let row = c.weight.data.len() / c.out_c().max(1);
                let kk = c.kernel()[0] * c.kernel()[1];
                let icg = c.weight.dims[1];
                let ocg = c.out_c() / c.group.max(1);
                (0..oc)
                    .map(|o| {
                        let gi = o / ocg.max(1);
                        let mut s: f64 = (0..row)
                            .map(|k| {
                                let w = c.weight.data[o * row + k] as f64;
                                w * w * get(x, gi * icg + k / kk)
                            })
                            .sum();
                        s += c.bias.as_ref().map_or(0.0, |b| (b[o] as f64).powi(2));
                        if let Some(&r) = n.inputs.get(1) {
                            s += get(r, o);
                        }
                        s * act_gain(c.act)
                    })
                    .collect()
            }
            Op::Fc(f) => {
                let inf = f.weight.dims[1];
                let blk = block(g, ni);
                (0..oc)
                    .map(|o| {
                        let s: f64 = (0..inf)
                            .map(|k| (f.weight.data[o * inf + k] as f64).powi(2) * get(x, k / blk))
                            .sum::<f64>()
                            + f.bias.as_ref().map_or(0.0, |b| (b[o] as f64).powi(2));
                        s * act_gain(f.act)
                    })
                    .collect()
            }
            Op::Add { act } => (0..oc)
                .map(|c| (get(x, c) + get(n.inputs[1], c)) * act_gain(*act))
                .collect(),
            Op::Mul => (0..oc)
                .map(|c| get(x, c) * get(n.inputs[1], c).min(1.0))
                .collect(),
            Op::Act(a) => (0..oc).map(|c| get(x, c) * act_gain(*a)).collect(),
            Op::ChannelAffine { scale, shift, act } => (0..oc)
                .map(|c| {
                    (get(x, c) * (scale[c] as f64).powi(2) + (shift[c] as f64).powi(2))
                        * act_gain(*act)
                })
                .collect(),
            // Unit variance per channel before the scale and shift.
            Op::LayerNorm { scale, shift, .. } => (0..oc)
                .map(|c| (scale[c] as f64).powi(2) + (shift[c] as f64).powi(2))
                .collect(),
            Op::Concat => n.inputs.iter().flat_map(|&i| e[i].clone()).collect(),
            Op::ConcatAxis { .. } => (0..oc)
                .map(|c| n.inputs.iter().map(|&i| get(i, c)).sum::<f64>() / n.inputs.len() as f64)
                .collect(),
            Op::Flatten => {
                let blk = g.shape(x).iter().skip(2).product::<usize>().max(1);
                (0..oc).map(|f| get(x, f / blk)).collect()
            }
            Op::Softmax => vec![1.0 / oc.max(1) as f64; oc],
            Op::Pool(_)
            | Op::GlobalAvgPool
            | Op::GlobalMaxPool
            | Op::Identity
            | Op::Resize(_)
            | Op::Reduce {
                axes: [_, false, _, _],
                ..
            } => (0..oc).map(|c| get(x, c)).collect(),
            Op::Slice { starts, steps, .. } if g.shape(x).len() == 4 || oc == channels(g, x) => {
                (0..oc).map(|c| get(x, starts[1] + c * steps[1])).collect()
            }
            Op::ChannelShuffle { groups } => {
                let per = oc / groups;
                (0..oc)
                    .map(|c| get(x, (c % groups) * per + c / groups))
                    .collect()
            }
            Op::Deconv(d) => {
                let ic = channels(g, x);
                let icg = ic / d.group.max(1);
                let ocg = d.out_c() / d.group.max(1);
                let kk = d.kernel()[0] * d.kernel()[1];
                (0..oc)
                    .map(|o| {
                        let gi = o / ocg.max(1);
                        let s: f64 = (gi * icg..(gi + 1) * icg)
                            .map(|i| {
                                let w = &d.weight.data[(i * ocg + o % ocg) * kk..][..kk];
                                w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() * get(x, i)
                            })
                            .sum();
                        (s + d.bias.as_ref().map_or(0.0, |b| (b[o] as f64).powi(2)))
                            * act_gain(d.act)
                    })
                    .collect()
            }
            Op::Unary { .. } => (0..oc).map(|c| get(x, c)).collect(),
            Op::Binary { .. } => (0..oc)
                .map(|c| get(x, c.min(channels(g, x) - 1)) + get(n.inputs[1], c))
                .collect(),
            Op::Constant(_) => vec![1.0; oc],
            Op::Slice { .. }
            | Op::Transpose { .. }
            | Op::Reduce { .. }
            | Op::Pad { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. }
            | Op::Tile { .. }
            | Op::Reshape { .. }
            | Op::SoftmaxAxis { .. } => {
                let mean = e[x].iter().sum::<f64>() / e[x].len().max(1) as f64;
                vec![mean; oc]
            }
        };
        e[n.output] = out;
    }
    e
}

/// Data-free diagonal Hessians of layer `i`.
pub fn data_free(g: &Graph, i: usize, energy: &[Vec<f64>]) -> Vec<Hessian> {
    let n = &g.nodes[i];
    // Only layers have Hessians; other nodes (a Constant has no input at all) have none.
    let (Some(&x), Some(_)) = (n.inputs.first(), layer_kind(g, i)) else {
        return Vec::new();
    };
    let get = |c: usize| energy[x].get(c).copied().unwrap_or(1.0);
    let blk = block(g, i);
    match layer_kind(g, i) {
        Some(LayerKind::Dense) | Some(LayerKind::Fc) | Some(LayerKind::Deconv) => {
            let ic = match &n.op {
                Op::Conv(c) => c.weight.dims[1],
                Op::Fc(f) => f.weight.dims[1] / blk,
                Op::Deconv(d) => d.weight.dims[0],
                _ => 0,
            };
            let mut d: Vec<f64> = (0..ic * blk).map(|k| get(k / blk)).collect();
            d.push(1.0);
            vec![Hessian::Diag(d)]
        }
        Some(LayerKind::Depthwise) => (0..channels(g, n.output))
            .map(|c| {
                let mut d = vec![get(c); blk];
                d.push(1.0);
                Hessian::Diag(d)
            })
            .collect(),
        None => Vec::new(),
    }
}

/// Per node, the statistics of each of its Hessian groups (empty for other nodes).
pub type Statistics = Vec<Vec<Hessian>>;

/// Dense conv and fully connected layers whose rows are longer than this get no
/// [`Folds`] (they would hold `6 d²` more values, and the allocation `9 d²` more while it
/// ranks removals); their removal costs stay in-sample.
pub const MAX_FOLD_DIM: usize = 2048;

/// The statistics of a dense conv or fully connected layer split by calibration fold
/// (sample `s` in fold [`Calibration::fold`](super::calib::Calibration::fold)), unshrunk:
/// the allocation measures each removal's cost on the fold its Optimal-Brain-Surgeon update
/// was not fit on ([`super::budget::Layer::folds`]).
#[derive(Clone, Debug)]
pub struct Folds {
    /// `H_k = Σ x xᵀ` over the samples of fold `k`.
    pub h: Vec<Mat<f64>>,
    /// `S_k` over the same samples (see [`calibrated`]).
    pub s: Vec<Mat<f64>>,
    /// The rows summed into all folds together (the shrinkage's `n`).
    pub rows: usize,
}

/// One layer's `H` and `S` being summed in [`calibrated`], per fold (one fold for layers
/// without [`Folds`]), each a group per depthwise channel.
type Accumulators = Vec<(Vec<Hessian>, Vec<Hessian>)>;

/// What [`calibrated`] measures: per node, `H` (shrunk), `S`, and the per-fold split.
pub type Calibrated = (Statistics, Statistics, Vec<Option<Folds>>);

/// Measures `H` of every prunable layer (index = node) on calibration samples, each one
/// NCHW input of batch 1, and beside it `S = Σ s sᵀ` over the samples, where `s` is the
/// sum of a sample's im2col rows over all output positions (estimated from the sampled
/// ones; for a fully connected layer `S` is its unshrunk `H`). `S` is empty for a
/// transposed conv. Dense convs and fully connected layers up to [`MAX_FOLD_DIM`] also get
/// their [`Folds`] when the samples come from at least `FOLDS` distinct inputs. `progress`
/// is called after each sample.
pub fn calibrated(
    g: &Graph,
    calib: &super::calib::Calibration,
    threads: usize,
    mut progress: impl FnMut(usize),
) -> Result<Calibrated> {
    calib.check_input(g, "calibration")?;
    // A batch-1 copy whose outputs are every layer input.
    let mut g1 = batch1(g);
    let layers: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| layer_kind(g, i).is_some())
        .collect();
    g1.outputs = layers
        .iter()
        .map(|&i| {
            let v = g.nodes[i].inputs[0];
            GraphIo {
                name: g.values[v].name.clone(),
                value: v,
                dims: g1.values[v].shape.clone(),
            }
        })
        .collect();
    let want = &g1.values[g1.inputs[0].value].shape;
    let samples = &calib.samples;
    let per: usize = want.iter().product();
    // Per node and fold (one fold for layers without `Folds`): H and S of each group.
    let mut acc: Vec<Accumulators> = vec![Vec::new(); g.nodes.len()];
    for &i in &layers {
        let d = rows(g, i)[0][0].len();
        let kind = layer_kind(g, i);
        let groups = match kind {
            Some(LayerKind::Depthwise) => channels(g, g.nodes[i].output),
            _ => 1,
        };
        let h: Vec<Hessian> = (0..groups)
            .map(|_| Hessian::Full(Mat::zeros(d, d)))
            .collect();
        let s = if kind == Some(LayerKind::Deconv) {
            Vec::new()
        } else {
            h.clone()
        };
        let split = matches!(kind, Some(LayerKind::Dense | LayerKind::Fc))
            && d <= MAX_FOLD_DIM
            && calib.originals() >= FOLDS;
        acc[i] = vec![(h, s); if split { FOLDS } else { 1 }];
    }
    if let Some(s) = samples.iter().find(|s| s.len() != per) {
        return Err(Error::Options(format!(
            "a calibration sample has {} values, the model input {:?} needs {per}",
            s.len(),
            g1.values[g1.inputs[0].value].shape
        )));
    }
    // The layers dealt to the threads, each to the least loaded so far, the costliest
    // (im2col rows x dimension², per group) first. Each accumulator is owned by one thread
    // and takes the samples in order, so the sums do not depend on the thread count.
    let threads = threads.clamp(1, layers.len().max(1));
    let costs: Vec<f64> = layers
        .iter()
        .map(|&i| {
            let rows = match g.nodes[i].op {
                Op::Conv(_) | Op::Deconv(_) => sample_pixels(g, i).len(),
                _ => 1,
            };
            let dims: f64 = (acc[i].iter().flat_map(|(h, _)| h))
                .map(|h| (h.dim() * h.dim()) as f64)
                .sum();
            dims * rows as f64
        })
        .collect();
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    let mut load = vec![0.0f64; threads];
    let mut owned: Vec<Vec<(usize, Accumulators)>> = (0..threads).map(|_| Vec::new()).collect();
    for k in order {
        let t = (0..threads)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .unwrap_or(0);
        load[t] += costs[k];
        owned[t].push((k, std::mem::take(&mut acc[layers[k]])));
    }
    for (b, batch) in samples.chunks(threads).enumerate() {
        let outs = super::par_map(batch.len(), threads, |j| {
            crate::ir::eval::eval(&g1, &[&batch[j]])
        });
        super::par_each(&mut owned, |(k, a)| {
            for (j, o) in outs.iter().enumerate() {
                let folds = a.len();
                let (h, s) = &mut a[calib.fold(b * threads + j, folds)];
                add_sample(g, layers[*k], &o[*k], h, s);
            }
        });
        progress(b * threads + batch.len());
    }
    for (k, a) in owned.into_iter().flatten() {
        acc[layers[k]] = a;
    }
    let mut hs: Statistics = vec![Vec::new(); g.nodes.len()];
    let mut sums: Statistics = vec![Vec::new(); g.nodes.len()];
    let mut folds: Vec<Option<Folds>> = vec![None; g.nodes.len()];
    for &i in &layers {
        let (hp, sp): (Vec<Vec<Hessian>>, Vec<Vec<Hessian>>) =
            std::mem::take(&mut acc[i]).into_iter().unzip();
        hs[i] = sum_groups(&hp);
        sums[i] = sum_groups(&sp);
        if hp.len() > 1 {
            let full = |v: &[Hessian]| match v.first() {
                Some(Hessian::Full(m)) => m.clone(),
                _ => Mat::zeros(0, 0),
            };
            folds[i] = Some(Folds {
                h: hp.iter().map(|p| full(p)).collect(),
                s: sp.iter().map(|p| full(p)).collect(),
                rows: 0,
            });
        }
    }
    // Shrink each H towards its diagonal by the share d / (d + n) (n rows of dimension d):
    // a layer on a small map (7x7 at the end of an ImageNet model) sees few rows per image,
    // and its raw H would let any column be rebuilt from the others on the calibration set
    // alone, so removals would look free.
    for &i in &layers {
        let n = match &g.nodes[i].op {
            Op::Conv(_) | Op::Deconv(_) => sample_pixels(g, i).len() * samples.len(),
            _ => samples.len(),
        };
        for h in &mut hs[i] {
            if let Hessian::Full(m) = h {
                super::obs::shrink(m, n);
            }
        }
        if let Some(f) = &mut folds[i] {
            f.rows = n;
        }
    }
    Ok((hs, sums, folds))
}

/// The group-wise sum of several folds' statistics.
fn sum_groups(parts: &[Vec<Hessian>]) -> Vec<Hessian> {
    let mut t = parts.first().cloned().unwrap_or_default();
    for p in parts.iter().skip(1) {
        for (a, b) in t.iter_mut().zip(p) {
            if let (Hessian::Full(a), Hessian::Full(b)) = (a, b) {
                *a += b;
            }
        }
    }
    t
}

/// Adds one batch-1 input `x` of layer `i` to its Hessians `hs` and to the outer products
/// of its summed rows `sums` (see [`calibrated`]).
fn add_sample(g: &Graph, i: usize, x: &[f32], hs: &mut [Hessian], sums: &mut [Hessian]) {
    let n = &g.nodes[i];
    match &n.op {
        Op::Fc(_) => {
            let (row, d) = fc_row(x);
            for h in hs.iter_mut().chain(sums.iter_mut()) {
                if let Hessian::Full(m) = h {
                    accumulate(m, &row, d);
                }
            }
        }
        Op::Deconv(_) => {
            let c = channels(g, n.inputs[0]);
            let all: Vec<usize> = (0..c).collect();
            let (xs, d) = patches(g, i, x, &all, &sample_pixels(g, i));
            if let Hessian::Full(m) = &mut hs[0] {
                accumulate(m, &xs, d);
            }
        }
        Op::Conv(_) => {
            let pixels = sample_pixels(g, i);
            let c = channels(g, n.inputs[0]);
            let dense = layer_kind(g, i) == Some(LayerKind::Dense);
            let chans: Vec<Vec<usize>> = if dense {
                vec![(0..c).collect()]
            } else {
                (0..c).map(|ch| vec![ch]).collect()
            };
            let positions = {
                let o = g.shape(n.output);
                o.get(2).copied().unwrap_or(1) * o.get(3).copied().unwrap_or(1)
            };
            let scale = positions as f64 / pixels.len().max(1) as f64;
            for (hk, ch_set) in chans.iter().enumerate() {
                let (xs, d) = patches(g, i, x, ch_set, &pixels);
                if let Hessian::Full(m) = &mut hs[hk] {
                    accumulate(m, &xs, d);
                }
                if let Some(Hessian::Full(m)) = sums.get_mut(hk) {
                    let mut s = vec![0.0; d];
                    for row in xs.chunks_exact(d.max(1)) {
                        s.iter_mut().zip(row).for_each(|(a, b)| *a += b * scale);
                    }
                    accumulate(m, &s, d);
                }
            }
        }
        _ => {}
    }
}

/// The output pixels of conv `i` (input pixels of a transposed conv) that enter its
/// statistics: all of them, or at most [`MAX_PIXELS`] evenly spaced.
pub fn sample_pixels(g: &Graph, i: usize) -> Vec<usize> {
    let n = &g.nodes[i];
    let o = g.shape(match n.op {
        Op::Deconv(_) => n.inputs[0],
        _ => n.output,
    });
    let (oh, ow) = (
        o.get(2).copied().unwrap_or(1),
        o.get(3).copied().unwrap_or(1),
    );
    let step = (oh * ow).div_ceil(MAX_PIXELS).max(1);
    (0..oh * ow).step_by(step).collect()
}

/// The im2col rows of conv `i` on its batch-1 NCHW input `x` at the output `pixels`, over
/// the input channels `chans`, each row ending in the bias column's 1: a flat row-major
/// matrix and its row length. For a transposed conv the rows are the input pixels'
/// channels (see [`LayerKind::Deconv`]).
pub fn patches(
    g: &Graph,
    i: usize,
    x: &[f32],
    chans: &[usize],
    pixels: &[usize],
) -> (Vec<f64>, usize) {
    let n = &g.nodes[i];
    let s = g.shape(n.inputs[0]);
    let (h, w) = (
        s.get(2).copied().unwrap_or(1),
        s.get(3).copied().unwrap_or(1),
    );
    let cv = match &n.op {
        Op::Conv(cv) => cv,
        Op::Deconv(_) => {
            let d = chans.len() + 1;
            let mut xs = Vec::with_capacity(pixels.len() * d);
            for &p in pixels {
                xs.extend(chans.iter().map(|&ch| x[ch * h * w + p] as f64));
                xs.push(1.0);
            }
            return (xs, d);
        }
        _ => return (Vec::new(), 1),
    };
    let ow = g.shape(n.output).get(3).copied().unwrap_or(1);
    let [kh, kw] = cv.kernel();
    let d = chans.len() * kh * kw + 1;
    // Blocks of 64 rows, filled channel by channel: each channel's plane is read over a
    // block's pixels together instead of once per pixel (a row of a 960-channel layer
    // would otherwise touch 960 planes).
    const BLOCK: usize = 64;
    let mut xs = vec![0.0f64; pixels.len() * d];
    for (blk, rows) in pixels.chunks(BLOCK).zip(xs.chunks_mut(BLOCK * d)) {
        let at: Vec<(usize, usize)> = blk.iter().map(|&p| (p / ow, p % ow)).collect();
        for (ci, &ch) in chans.iter().enumerate() {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let col = (ci * kh + ky) * kw + kx;
                    for (r, &(oy, ox)) in at.iter().enumerate() {
                        let iy = (oy * cv.stride[0] + ky * cv.dilation[0]) as isize
                            - cv.pads[0] as isize;
                        let ix = (ox * cv.stride[1] + kx * cv.dilation[1]) as isize
                            - cv.pads[1] as isize;
                        if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                            rows[r * d + col] = plane[iy as usize * w + ix as usize] as f64;
                        }
                    }
                }
            }
        }
        for r in 0..blk.len() {
            rows[r * d + d - 1] = 1.0;
        }
    }
    (xs, d)
}

/// A copy of `g` at batch 1 (calibration runs one sample at a time).
pub fn batch1(g: &Graph) -> Graph {
    let mut g1 = g.clone();
    for v in &mut g1.values {
        if !v.shape.is_empty() {
            v.shape[0] = 1;
        }
    }
    for io in &mut g1.inputs {
        io.dims = g1.values[io.value].shape.clone();
    }
    for io in &mut g1.outputs {
        io.dims = g1.values[io.value].shape.clone();
    }
    g1
}

/// A fully connected layer's input `x` as one row with the bias column's 1, and its length.
pub fn fc_row(x: &[f32]) -> (Vec<f64>, usize) {
    let mut r: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    r.push(1.0);
    let d = r.len();
    (r, d)
}
