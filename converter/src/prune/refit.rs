//! Sequential refit of a pruned model against the dense one, on calibration inputs.
//!
//! The allocation's Optimal-Brain-Surgeon updates are layer-local: each layer is refit as
//! if its input were the dense model's, so the errors of earlier layers compound. This
//! pass goes through the layers in graph order, running the dense and the pruned model side
//! by side on every calibration sample, and refits each layer of the pruned model on the
//! inputs *the pruned model* computes, towards the output the dense layer computes on its
//! own inputs (its kept channels):
//!
//! `min_W Σ ‖W x_p − W_d x_d‖² + λ ‖W − W_0‖²`, i.e.
//! `W = (W_d Σ x_d x_pᵀ + λ W_0) (Σ x_p x_pᵀ + λ I)⁻¹`,
//!
//! where `W_0` is the allocation's result and `λ` is one of [`RIDGES`] times the mean
//! diagonal of `Σ x_p x_pᵀ`. The ridge keeps a layer near `W_0` where the calibration
//! samples cannot pin it down: a few hundred photos are enough for a least-squares fit to
//! reproduce them almost exactly and still miss new ones. Each layer takes the ridge that
//! predicts its output best on samples it was not fit on ([`FOLDS`]-fold cross-validation
//! over the calibration samples). A layer whose input is still exact keeps its weights.
//! Every prunable layer is refit, pruned or not, since each one can absorb part of the
//! error that reaches it.

use super::calib::{Calibration, FOLDS};
use super::obs::{accumulate, accumulate_cross, damped_llt};
use super::par_map;
use super::stats::{
    batch1, channels, fc_row, layer_kind, patches, rows, sample_pixels, set_rows, LayerKind,
};
use crate::error::{Error, Result};
use crate::ir::eval::eval_node;
use crate::ir::Graph;
use faer::linalg::solvers::Solve;
use faer::Mat;

/// The ridge strengths towards the allocation's weights that cross-validation chooses
/// from, relative to the mean diagonal of `Σ x_p x_pᵀ`.
pub const RIDGES: [f64; 7] = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0];

/// The ridge with fewer than `FOLDS` calibration samples, where nothing can be held out.
pub const RIDGE: f64 = 0.01;

/// Layers whose input rows are longer than this keep the allocation's weights (the normal
/// equations would need more than about 0.5 GB).
pub const MAX_ROW: usize = 8192;

/// Refits every prunable layer of `pruned` in graph order (see the module docs). `dense`
/// is the model before the allocation, with the same nodes and values; `kept[v]` lists,
/// for every value, the dense channel index of each channel the pruned model keeps.
/// Returns, per prunable node, the relative output error on the calibration set after the
/// refit: `Σ (y_p − y_d)² / Σ y_d²` over the kept channels of its output. The work runs on
/// up to `threads` threads; the result does not depend on their number.
pub fn sequential(
    dense: &Graph,
    pruned: &mut Graph,
    kept: &[Vec<usize>],
    calib: &Calibration,
    threads: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<(usize, f64)>> {
    let (errors, p1) = side_by_side(dense, pruned, kept, calib, true, threads, progress)?;
    for &(j, _) in &errors {
        set_rows(pruned, j, &rows(&p1, j));
    }
    Ok(errors)
}

/// Per prunable node of `pruned`, the relative output error [`sequential`] reports, on
/// the inputs `samples` (held-out inputs, for instance), without changing any weight.
pub fn errors(
    dense: &Graph,
    pruned: &Graph,
    kept: &[Vec<usize>],
    samples: &Calibration,
    threads: usize,
) -> Result<Vec<(usize, f64)>> {
    side_by_side(dense, pruned, kept, samples, false, threads, |_, _| {}).map(|(errors, _)| errors)
}

/// Whether `pruned` has the nodes and values of `dense` (the model before the allocation),
/// one input, and a `kept` list per value; `pass` names the caller in the error.
pub(super) fn check_pair(
    dense: &Graph,
    pruned: &Graph,
    kept: &[Vec<usize>],
    pass: &str,
) -> Result<()> {
    if dense.nodes.len() != pruned.nodes.len()
        || dense.values.len() != pruned.values.len()
        || kept.len() != pruned.values.len()
        || pruned.inputs.len() != 1
    {
        return Err(Error::Options(format!(
            "{pass}: the pruned graph does not match the dense one"
        )));
    }
    Ok(())
}

/// Runs `dense` and a batch-1 copy of `pruned` side by side on `calib`, refitting each
/// prunable layer of the copy first if `fit`; returns each one's relative output error,
/// and the copy. The samples (and the refit's folds and channels) are shared among up to
/// `threads` threads.
fn side_by_side(
    dense: &Graph,
    pruned: &Graph,
    kept: &[Vec<usize>],
    calib: &Calibration,
    fit: bool,
    threads: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<(usize, f64)>, Graph)> {
    check_pair(dense, pruned, kept, "refit")?;
    let d1 = batch1(dense);
    let mut p1 = batch1(pruned);
    let mismatch = || Error::Options("refit: the pruned graph does not match the dense one".into());
    let nv = p1.values.len();
    let input = p1.inputs[0].value;
    let per: usize = p1.shape(input).iter().product();
    // The last node that reads each value; graph outputs are kept to the end.
    let mut last = vec![0usize; nv];
    for (j, n) in p1.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last[v] = j;
        }
    }
    for o in &p1.outputs {
        last[o.value] = usize::MAX;
    }
    let ns = calib.samples.len();
    let mut vd: Vec<Vec<Option<Vec<f32>>>> = vec![vec![None; nv]; ns];
    let mut vp: Vec<Vec<Option<Vec<f32>>>> = vec![vec![None; nv]; ns];
    for (s, x) in calib.samples.iter().enumerate() {
        if x.len() != per {
            return Err(Error::Options(format!(
                "an input sample has {} values, the model input {:?} needs {per}",
                x.len(),
                p1.shape(input)
            )));
        }
        vd[s][input] = Some(x.clone());
        vp[s][input] = Some(x.clone());
    }
    let mut errors = Vec::new();
    let total = p1.nodes.len();
    for j in 0..total {
        let kind = layer_kind(&p1, j);
        if kind.is_some() && fit {
            let exact = vd
                .iter()
                .zip(&vp)
                .all(|(d, p)| d[p1.nodes[j].inputs[0]] == p[p1.nodes[j].inputs[0]]);
            if !exact {
                let par = (calib, threads);
                refit_layer(&d1, &mut p1, j, kept, par, &vd, &vp).ok_or_else(mismatch)?;
            }
        }
        let out = p1.nodes[j].output;
        // Each thread runs a contiguous run of samples through node `j` of both models.
        let per = ns.div_ceil(threads.max(1)).max(1);
        let mut parts: Vec<Vec<_>> = (vd.chunks_mut(per).zip(vp.chunks_mut(per)))
            .map(|(d, p)| d.iter_mut().zip(p).collect())
            .collect();
        super::par_each(&mut parts, |(d, p)| {
            let yd = eval_node(&d1, &d1.nodes[j], d);
            let yp = eval_node(&p1, &p1.nodes[j], p);
            d[out] = Some(yd);
            p[out] = Some(yp);
        });
        if kind.is_some() {
            errors.push((j, output_error(&p1, out, &kept[out], &vd, &vp)));
        }
        for &v in &p1.nodes[j].inputs {
            if last[v] == j {
                for s in 0..ns {
                    vd[s][v] = None;
                    vp[s][v] = None;
                }
            }
        }
        progress(j + 1, total);
    }
    Ok((errors, p1))
}

/// `Σ (y_p − y_d)² / Σ y_d²` over the kept channels of value `v` (NCHW, batch 1).
fn output_error(
    p1: &Graph,
    v: usize,
    keep: &[usize],
    vd: &[Vec<Option<Vec<f32>>>],
    vp: &[Vec<Option<Vec<f32>>>],
) -> f64 {
    let s = p1.shape(v);
    let plane: usize = s.iter().skip(2).product::<usize>().max(1);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (d, p) in vd.iter().zip(vp) {
        let (Some(d), Some(p)) = (&d[v], &p[v]) else {
            continue;
        };
        for (c, &kc) in keep.iter().enumerate() {
            for k in 0..plane {
                let (a, b) = (d[kc * plane + k] as f64, p[c * plane + k] as f64);
                num += (a - b) * (a - b);
                den += a * a;
            }
        }
    }
    num / den.max(f64::MIN_POSITIVE)
}

/// Refits layer `j` of `p1` (a prunable layer) on the samples of `calib`, the folds or
/// channels shared among `threads` threads; `None` if its channels do not match `kept`.
fn refit_layer(
    d1: &Graph,
    p1: &mut Graph,
    j: usize,
    kept: &[Vec<usize>],
    (calib, threads): (&Calibration, usize),
    vd: &[Vec<Option<Vec<f32>>>],
    vp: &[Vec<Option<Vec<f32>>>],
) -> Option<()> {
    let kind = layer_kind(p1, j)?;
    let (xin, out) = (p1.nodes[j].inputs[0], p1.nodes[j].output);
    let keep_out = &kept[out];
    let wd = rows(d1, j);
    let mut wp = rows(p1, j);
    let pixels = sample_pixels(p1, j);
    // One fold (no cross-validation) when a fold would be empty.
    let folds = if calib.originals() >= FOLDS { FOLDS } else { 1 };
    let inputs = |s: usize| Some((vp[s][xin].as_deref()?, vd[s][xin].as_deref()?));
    match kind {
        LayerKind::Dense | LayerKind::Fc | LayerKind::Deconv => {
            // The dense row of each pruned row: a transposed conv has one row per output
            // channel and tap (see `LayerKind::Deconv`).
            let taps = wd[0].len() / channels(d1, out).max(1);
            let row_map: Vec<usize> = keep_out
                .iter()
                .flat_map(|&o| o * taps..(o + 1) * taps)
                .collect();
            if wp[0].len() != row_map.len() {
                return None;
            }
            let (dp, dd) = (wp[0].first()?.len(), wd[0].first()?.len());
            if dp > MAX_ROW || dd > MAX_ROW {
                return Some(());
            }
            let (cp, cd) = (kept[xin].len(), channels(d1, xin));
            let (all_p, all_d): (Vec<usize>, Vec<usize>) = ((0..cp).collect(), (0..cd).collect());
            // Each fold's two sums (`h`, then `c`) are a task of their own, over the fold's
            // samples in order, so they do not depend on the thread count. Both tasks build
            // the pruned rows: 2 x folds tasks of similar size keep 2 threads busy, where
            // one task per fold (3) would leave one idle a third of the time.
            let p1r: &Graph = p1;
            // The layer's input rows in graph `g` (`chans` its input channels).
            let in_rows = |g: &Graph, x: &[f32], chans: &[usize]| {
                if kind == LayerKind::Fc {
                    fc_row(x)
                } else {
                    patches(g, j, x, chans, &pixels)
                }
            };
            let sums = par_map(2 * folds, threads, |t| {
                let (k, cross) = (t / 2, t % 2 == 1);
                let mut m = Mat::zeros(dp, if cross { dd } else { dp });
                for s in (0..vp.len()).filter(|&s| calib.fold(s, folds) == k) {
                    let (xp, xd) = inputs(s)?;
                    let (ap, ep) = in_rows(p1r, xp, &all_p);
                    if ep != dp {
                        return None;
                    }
                    if cross {
                        let (bd, ed) = in_rows(d1, xd, &all_d);
                        if ed != dd {
                            return None;
                        }
                        accumulate_cross(&mut m, &ap, dp, &bd, dd);
                    } else {
                        accumulate(&mut m, &ap, dp);
                    }
                }
                Some(m)
            });
            let (mut h, mut c) = (Vec::with_capacity(folds), Vec::with_capacity(folds));
            for (t, m) in sums.into_iter().enumerate() {
                let m = m?;
                if t % 2 == 0 {
                    h.push(m);
                } else {
                    c.push(m);
                }
            }
            let target = Mat::from_fn(dd, row_map.len(), |r, o| wd[0][row_map[o]][r]);
            let w0 = Mat::from_fn(dp, row_map.len(), |r, o| wp[0][o][r]);
            let (w, _) = fit(&h, &c, &target, &w0, threads);
            for (o, row) in wp[0].iter_mut().enumerate() {
                for (r, v) in row.iter_mut().enumerate() {
                    *v = w[(r, o)];
                }
            }
        }
        LayerKind::Depthwise => {
            if wp.len() != keep_out.len() || kept[xin] != *keep_out {
                return None;
            }
            // The channels are independent: shared among the threads.
            let p1r: &Graph = p1;
            let fitted = par_map(keep_out.len(), threads, |ch| {
                let kc = keep_out[ch];
                let (dp, dd) = (wp[ch][0].len(), wd.get(kc)?[0].len());
                let mut h = vec![Mat::zeros(dp, dp); folds];
                let mut c = vec![Mat::zeros(dp, dd); folds];
                for s in 0..vp.len() {
                    let (xp, xd) = inputs(s)?;
                    let (ap, ep) = patches(p1r, j, xp, &[ch], &pixels);
                    let (bd, ed) = patches(d1, j, xd, &[kc], &pixels);
                    if ep != dp || ed != dd {
                        return None;
                    }
                    accumulate(&mut h[calib.fold(s, folds)], &ap, dp);
                    accumulate_cross(&mut c[calib.fold(s, folds)], &ap, dp, &bd, dd);
                }
                let target = Mat::from_fn(dd, 1, |r, _| wd[kc][0][r]);
                let w0 = Mat::from_fn(dp, 1, |r, _| wp[ch][0][r]);
                Some(fit(&h, &c, &target, &w0, 1).0)
            });
            for (ch, w) in fitted.into_iter().enumerate() {
                let w = w?;
                for (r, v) in wp[ch][0].iter_mut().enumerate() {
                    *v = w[(r, 0)];
                }
            }
        }
    }
    set_rows(p1, j, &wp);
    Some(())
}

/// The refit weights (one column per output row) from the per-fold statistics `h`
/// (`Σ x_p x_pᵀ`) and `c` (`Σ x_p x_dᵀ`) of the samples held out in each fold, the dense
/// rows `target` (one per column) and the allocation's `w0`, with the ridge of [`RIDGES`]
/// whose fits on the other folds predict the held-out folds best; and that ridge. The
/// folds' fits run on up to `threads` threads.
fn fit(
    h: &[Mat<f64>],
    c: &[Mat<f64>],
    target: &Mat<f64>,
    w0: &Mat<f64>,
    threads: usize,
) -> (Mat<f64>, f64) {
    let sum = |m: &[Mat<f64>]| {
        let mut t = m[0].clone();
        m[1..].iter().for_each(|x| t += x);
        t
    };
    let (ht, ct) = (sum(h), sum(c));
    let b: Vec<Mat<f64>> = c.iter().map(|c| c * target).collect();
    let bt = &ct * target;
    let ridge = if h.len() < 2 {
        RIDGE
    } else {
        // The held-out error of each fold and ridge, summed over the folds in order.
        let n = RIDGES.len();
        // The statistics of the other folds, once per fold.
        let rest: Vec<_> = (0..h.len()).map(|k| (&ht - &h[k], &bt - &b[k])).collect();
        let fold_errors = par_map(h.len() * n, threads, |i| {
            let (k, r) = (i / n, RIDGES[i % n]);
            let (hk, bk) = &rest[k];
            error(&solve(hk, bk, w0, r), &h[k], &b[k])
        });
        let mut err = [0.0f64; RIDGES.len()];
        for per_fold in fold_errors.chunks(n) {
            err.iter_mut().zip(per_fold).for_each(|(e, x)| *e += x);
        }
        let best = (0..RIDGES.len()).min_by(|&a, &b| err[a].total_cmp(&err[b]));
        best.map_or(RIDGE, |i| RIDGES[i])
    };
    (solve(&ht, &bt, w0, ridge), ridge)
}

/// `Σ ‖W x_p − W_d x_d‖²` over samples with statistics `h` (`Σ x_p x_pᵀ`) and
/// `b = Σ x_p x_dᵀ W_dᵀ`, up to a term that does not depend on `W`:
/// `tr(Wᵀ h W) − 2 tr(Wᵀ b)`.
fn error(w: &Mat<f64>, h: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let hw = h * w;
    (0..w.ncols())
        .map(|o| {
            (0..w.nrows())
                .map(|i| w[(i, o)] * (hw[(i, o)] - 2.0 * b[(i, o)]))
                .sum::<f64>()
        })
        .sum()
}

/// `(H + λI)⁻¹ (B + λ W_0)` with `λ = rel · mean(diag H)`, λ raised tenfold until the
/// Cholesky factorisation succeeds.
fn solve(h: &Mat<f64>, b: &Mat<f64>, w0: &Mat<f64>, rel: f64) -> Mat<f64> {
    let (llt, lambda) = damped_llt(h, rel);
    let rhs = Mat::from_fn(b.nrows(), b.ncols(), |r, c| b[(r, c)] + lambda * w0[(r, c)]);
    llt.solve(&rhs)
}

#[cfg(test)]
mod tests {
    use super::super::obs::tests::uniform;
    use super::*;

    /// Per-fold statistics of `n` samples of `rows` im2col rows each: the pruned input
    /// `x_p` (random, last entry the bias column's 1), the dense input `x_d = x_p + noise`.
    /// Returns them with a fresh set's `Σ x_p x_pᵀ` and `Σ x_p x_dᵀ` for testing.
    fn stats(n: usize, rows: usize, d: usize, noise: f64, seed: u64) -> [Vec<Mat<f64>>; 4] {
        let mut rnd = uniform(seed);
        let mut out = [
            vec![Mat::zeros(d, d); FOLDS],
            vec![Mat::zeros(d, d); FOLDS],
            vec![Mat::zeros(d, d); 1],
            vec![Mat::zeros(d, d); 1],
        ];
        for s in 0..2 * n {
            let (mut xp, mut xd) = (Vec::new(), Vec::new());
            for _ in 0..rows {
                let x: Vec<f64> = (0..d)
                    .map(|i| if i + 1 == d { 1.0 } else { rnd() })
                    .collect();
                xd.extend(x.iter().take(d - 1).map(|&v| v + noise * rnd()));
                xd.push(1.0);
                xp.extend(x);
            }
            let (h, c) = if s < n { (0, 1) } else { (2, 3) };
            let k = if s < n { s % FOLDS } else { 0 };
            accumulate(&mut out[h][k], &xp, d);
            accumulate_cross(&mut out[c][k], &xp, d, &xd, d);
        }
        out
    }

    /// With plenty of exact samples the least-squares fit needs no ridge, and the smallest
    /// is chosen; with few noisy ones (each dense input differs from the pruned one by
    /// noise the fit can only over-fit) a larger ridge is chosen, and it predicts new
    /// samples better than the smallest ridge does.
    #[test]
    fn cross_validation_chooses_the_ridge_that_predicts_new_samples() {
        let d = 24;
        let target = Mat::from_fn(d, 3, |i, o| ((i * 7 + o * 3) % 11) as f64 / 5.0 - 1.0);
        let [h, c, ..] = stats(300, 4, d, 0.0, 1);
        let (w, ridge) = fit(&h, &c, &target, &Mat::zeros(d, 3), 2);
        assert_eq!(ridge, RIDGES[0]);
        let dev = (0..d)
            .flat_map(|i| (0..3).map(move |o| (i, o)))
            .map(|(i, o)| (w[(i, o)] - target[(i, o)]).abs())
            .fold(0.0, f64::max);
        assert!(dev < 0.01, "max deviation {dev}");

        let [h, c, hn, cn] = stats(9, 2, d, 2.0, 2);
        let w0 = Mat::from_fn(d, 3, |i, o| 0.5 * target[(i, o)]);
        let (w, ridge) = fit(&h, &c, &target, &w0, 2);
        assert!(ridge > RIDGES[0], "ridge {ridge}");
        let (ht, ct) = (&(&h[0] + &h[1]) + &h[2], &(&c[0] + &c[1]) + &c[2]);
        let small = solve(&ht, &(&ct * &target), &w0, RIDGES[0]);
        let b = &cn[0] * &target;
        let (e_cv, e_small) = (error(&w, &hn[0], &b), error(&small, &hn[0], &b));
        assert!(
            e_cv < e_small,
            "new samples: {e_cv} with the chosen ridge, {e_small} without"
        );
    }
}
