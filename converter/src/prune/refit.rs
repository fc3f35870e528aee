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
//! where `W_0` is the allocation's result and `λ` is [`RIDGE`] times the mean diagonal of
//! `Σ x_p x_pᵀ`, which keeps a layer with few calibration positions (the 7x7 maps) near
//! `W_0` instead of over-fitting them. A layer whose input is still exact keeps its
//! weights. Every prunable layer is refit, pruned or not, since each one can absorb part of
//! the error that reaches it.

use super::calib::Calibration;
use super::obs::{accumulate, accumulate_cross, damped_inverse_by};
use super::stats::{
    batch1, channels, fc_row, layer_kind, patches, rows, sample_pixels, set_rows, LayerKind,
};
use crate::error::{Error, Result};
use crate::ir::eval::eval_node;
use crate::ir::Graph;
use faer::Mat;

/// Ridge strength towards the allocation's weights, relative to the mean diagonal of
/// `Σ x_p x_pᵀ`.
pub const RIDGE: f64 = 0.01;

/// Layers whose input rows are longer than this keep the allocation's weights (the normal
/// equations would need more than about 0.5 GB).
pub const MAX_ROW: usize = 8192;

/// Refits every prunable layer of `pruned` in graph order (see the module docs). `dense`
/// is the model before the allocation, with the same nodes and values; `kept[v]` lists,
/// for every value, the dense channel index of each channel the pruned model keeps.
/// Returns, per prunable node, the relative output error on the calibration set after the
/// refit: `Σ (y_p − y_d)² / Σ y_d²` over the kept channels of its output.
pub fn sequential(
    dense: &Graph,
    pruned: &mut Graph,
    kept: &[Vec<usize>],
    calib: &Calibration,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(usize, f64)>> {
    let d1 = batch1(dense);
    let mut p1 = batch1(pruned);
    let mismatch = || Error::Options("refit: the pruned graph does not match the dense one".into());
    if d1.nodes.len() != p1.nodes.len()
        || d1.values.len() != p1.values.len()
        || kept.len() != p1.values.len()
        || p1.inputs.len() != 1
    {
        return Err(mismatch());
    }
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
                "a calibration sample has {} values, the model input {:?} needs {per}",
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
        if let Some(kind) = kind {
            let exact = vd
                .iter()
                .zip(&vp)
                .all(|(d, p)| d[p1.nodes[j].inputs[0]] == p[p1.nodes[j].inputs[0]]);
            if !exact {
                refit_layer(&d1, &mut p1, j, kind, kept, &vd, &vp).ok_or_else(mismatch)?;
            }
        }
        let out = p1.nodes[j].output;
        for s in 0..ns {
            let yd = eval_node(&d1, &d1.nodes[j], &vd[s]);
            let yp = eval_node(&p1, &p1.nodes[j], &vp[s]);
            vd[s][out] = Some(yd);
            vp[s][out] = Some(yp);
        }
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
    for &(j, _) in &errors {
        set_rows(pruned, j, &rows(&p1, j));
    }
    Ok(errors)
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

/// Refits layer `j` of `p1`; `None` if its channels do not match `kept`.
fn refit_layer(
    d1: &Graph,
    p1: &mut Graph,
    j: usize,
    kind: LayerKind,
    kept: &[Vec<usize>],
    vd: &[Vec<Option<Vec<f32>>>],
    vp: &[Vec<Option<Vec<f32>>>],
) -> Option<()> {
    let (xin, out) = (p1.nodes[j].inputs[0], p1.nodes[j].output);
    let keep_out = &kept[out];
    let wd = rows(d1, j);
    let mut wp = rows(p1, j);
    let pixels = sample_pixels(p1, j);
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
            let mut h = Mat::zeros(dp, dp);
            let mut c = Mat::zeros(dp, dd);
            for s in 0..vp.len() {
                let (xp, xd) = inputs(s)?;
                let ((ap, ep), (bd, ed)) = if kind == LayerKind::Fc {
                    (fc_row(xp), fc_row(xd))
                } else {
                    (
                        patches(p1, j, xp, &all_p, &pixels),
                        patches(d1, j, xd, &all_d, &pixels),
                    )
                };
                if ep != dp || ed != dd {
                    return None;
                }
                accumulate(&mut h, &ap, dp);
                accumulate_cross(&mut c, &ap, dp, &bd, dd);
            }
            let target = Mat::from_fn(dd, row_map.len(), |r, o| wd[0][row_map[o]][r]);
            let w0 = Mat::from_fn(dp, row_map.len(), |r, o| wp[0][o][r]);
            let w = solve(&h, &(&c * &target), &w0);
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
            for (ch, &kc) in keep_out.iter().enumerate() {
                let (dp, dd) = (wp[ch][0].len(), wd.get(kc)?[0].len());
                let mut h = Mat::zeros(dp, dp);
                let mut c = Mat::zeros(dp, dd);
                for s in 0..vp.len() {
                    let (xp, xd) = inputs(s)?;
                    let (ap, ep) = patches(p1, j, xp, &[ch], &pixels);
                    let (bd, ed) = patches(d1, j, xd, &[kc], &pixels);
                    if ep != dp || ed != dd {
                        return None;
                    }
                    accumulate(&mut h, &ap, dp);
                    accumulate_cross(&mut c, &ap, dp, &bd, dd);
                }
                let target = Mat::from_fn(dd, 1, |r, _| wd[kc][0][r]);
                let w0 = Mat::from_fn(dp, 1, |r, _| wp[ch][0][r]);
                let w = solve(&h, &(&c * &target), &w0);
                for (r, v) in wp[ch][0].iter_mut().enumerate() {
                    *v = w[(r, 0)];
                }
            }
        }
    }
    set_rows(p1, j, &wp);
    Some(())
}

/// `(H + λI)⁻¹ (B + λ W_0)` with `λ = RIDGE · mean(diag H)`.
fn solve(h: &Mat<f64>, b: &Mat<f64>, w0: &Mat<f64>) -> Mat<f64> {
    let (inv, lambda) = damped_inverse_by(h, RIDGE);
    let rhs = Mat::from_fn(b.nrows(), b.ncols(), |r, c| b[(r, c)] + lambda * w0[(r, c)]);
    &inv * &rhs
}
