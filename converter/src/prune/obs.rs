//! Layer input statistics and Optimal-Brain-Surgeon removal of weight columns.
//!
//! Each prunable layer (dense conv, depthwise conv, fully connected) sees its input as
//! im2col rows `x` with a trailing constant 1 (the bias column). `H = Σ x xᵀ` over the
//! calibration set; without data `H` is diagonal, holding an estimate of each input
//! channel's mean square. Removing a set `G` of columns from a weight row `w` costs
//! `w_G (H⁻¹_GG)⁻¹ w_Gᵀ` of output error energy, and the remaining columns (the bias
//! among them) absorb `-w_G (H⁻¹_GG)⁻¹ H⁻¹_G,:`, which is the least-squares refit.
//! With a diagonal `H` the cost is `Σ w² h` and the refit is zero, i.e. plain removal.

use faer::linalg::solvers::{DenseSolveCore, Llt};
use faer::{Mat, Side};

/// Relative damping added to the diagonal of `H` before inverting (as in GPTQ).
pub const DAMPING: f64 = 0.01;

/// Second moments of one input row space.
#[derive(Clone, Debug)]
pub enum Hessian {
    /// Diagonal estimate (data-free).
    Diag(Vec<f64>),
    /// Full `H = Σ x xᵀ` (calibrated).
    Full(Mat<f64>),
}

impl Hessian {
    /// Number of columns.
    pub fn dim(&self) -> usize {
        match self {
            Hessian::Diag(d) => d.len(),
            Hessian::Full(m) => m.nrows(),
        }
    }

    /// Output energy `w H wᵀ` of one weight row.
    pub fn energy(&self, w: &[f64]) -> f64 {
        match self {
            Hessian::Diag(d) => w.iter().zip(d).map(|(w, h)| w * w * h).sum(),
            Hessian::Full(m) => {
                let n = m.nrows();
                let mut e = 0.0;
                for j in 0..n {
                    if w[j] == 0.0 {
                        continue;
                    }
                    let mut s = 0.0;
                    for i in 0..n {
                        s += m[(i, j)] * w[i];
                    }
                    e += s * w[j];
                }
                e
            }
        }
    }

    /// Keeps only the columns `keep` (ascending).
    pub fn retain(&mut self, keep: &[usize]) {
        match self {
            Hessian::Diag(d) => *d = keep.iter().map(|&i| d[i]).collect(),
            Hessian::Full(m) => {
                *m = principal(m, keep);
            }
        }
    }

    /// The damped inverse, for the full case.
    pub fn inverse(&self) -> Option<Mat<f64>> {
        let Hessian::Full(m) = self else {
            return None;
        };
        Some(damped_inverse(m))
    }
}

/// `(M + λI)⁻¹` with `λ = DAMPING · mean(diag M)`, increasing λ until the Cholesky
/// factorisation succeeds.
pub fn damped_inverse(m: &Mat<f64>) -> Mat<f64> {
    if m.nrows() == 0 {
        return Mat::zeros(0, 0);
    }
    damped_llt(m, DAMPING).0.inverse()
}

/// The Cholesky factorisation of `M + λI` with `λ = rel · mean(diag M)`, λ raised tenfold
/// until it succeeds; and the λ used.
pub fn damped_llt(m: &Mat<f64>, rel: f64) -> (Llt<f64>, f64) {
    let n = m.nrows();
    let mean = (0..n).map(|i| m[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let mut lambda = rel * if mean > 0.0 { mean } else { 1.0 };
    loop {
        let a = Mat::from_fn(n, n, |i, j| m[(i, j)] + if i == j { lambda } else { 0.0 });
        if let Ok(llt) = a.llt(Side::Lower) {
            return (llt, lambda);
        }
        lambda *= 10.0;
    }
}

/// The cost of removing the columns `g` from the rows `rows` (each `H.dim()` long), given
/// `hinv` (the damped inverse of a full `H`, `None` for a diagonal one). With `update`, the
/// rows get the OBS refit and the columns `g` end at zero.
pub fn remove_columns(
    h: &Hessian,
    hinv: Option<&Mat<f64>>,
    rows: &mut [Vec<f64>],
    g: &[usize],
    update: bool,
) -> f64 {
    if g.is_empty() {
        return 0.0;
    }
    let hi_owned;
    let (hi, d) = match h {
        Hessian::Diag(d) => {
            let mut cost = 0.0;
            for w in rows.iter_mut() {
                for &i in g {
                    cost += w[i] * w[i] * d[i];
                    if update {
                        w[i] = 0.0;
                    }
                }
            }
            return cost;
        }
        Hessian::Full(m) => match hinv {
            Some(hi) => (hi, m.nrows()),
            None => {
                hi_owned = damped_inverse(m);
                (&hi_owned, m.nrows())
            }
        },
    };
    let k = g.len();
    // C = W_G (H⁻¹_GG)⁻¹, cost = Σ C ∘ W_G.
    let (wg, c) = obs_gain(hi, rows, g);
    let mut cost = 0.0;
    for r in 0..rows.len() {
        for j in 0..k {
            cost += c[(r, j)] * wg[(r, j)];
        }
    }
    if update {
        let hg = Mat::from_fn(k, d, |j, col| hi[(g[j], col)]);
        let delta = &c * &hg;
        for (r, w) in rows.iter_mut().enumerate() {
            for (col, wv) in w.iter_mut().enumerate().take(d) {
                *wv -= delta[(r, col)];
            }
            for &i in g {
                w[i] = 0.0;
            }
        }
    }
    cost.max(0.0)
}

/// The columns `g` of `rows` as a matrix `W_G`, and `W_G (H⁻¹_GG)⁻¹`, the coefficients of
/// the OBS update along the rows `H⁻¹_G,:` (`hinv` = `H⁻¹`).
fn obs_gain(hinv: &Mat<f64>, rows: &[Vec<f64>], g: &[usize]) -> (Mat<f64>, Mat<f64>) {
    let k = g.len();
    let sub = principal(hinv, g);
    // (H⁻¹_GG)⁻¹; H⁻¹_GG is positive definite as a principal block of one.
    let s = match sub.llt(Side::Lower) {
        Ok(l) => l.inverse(),
        Err(_) => damped_inverse(&sub),
    };
    let wg = Mat::from_fn(rows.len(), k, |r, j| rows[r][g[j]]);
    let c = &wg * &s;
    (wg, c)
}

/// For each row of `rows`, the OBS removal of the columns `g` as [`remove_columns`] does it
/// (`Δw = −w_G (H⁻¹_GG)⁻¹ H⁻¹_G,:`), without applying it: its cost `Δw H Δwᵀ` and, given
/// `m = H⁻¹ S H⁻¹` for another statistic `S`, `Δw S Δwᵀ = u m_GG uᵀ` with
/// `u = w_G (H⁻¹_GG)⁻¹` (0 without `m`). A diagonal `H` has no update: `Δw = −w_G`.
pub fn removal_row_costs(
    h: &Hessian,
    hinv: Option<&Mat<f64>>,
    rows: &[Vec<f64>],
    g: &[usize],
    m: Option<&Mat<f64>>,
) -> Vec<(f64, f64)> {
    if g.is_empty() {
        return vec![(0.0, 0.0); rows.len()];
    }
    let hi_owned;
    let hinv = match (h, hinv) {
        (Hessian::Diag(d), _) => {
            return rows
                .iter()
                .map(|w| (g.iter().map(|&i| w[i] * w[i] * d[i]).sum(), 0.0))
                .collect();
        }
        (Hessian::Full(_), Some(hi)) => hi,
        (Hessian::Full(mat), None) => {
            hi_owned = damped_inverse(mat);
            &hi_owned
        }
    };
    let (wg, u) = obs_gain(hinv, rows, g);
    let b = m.map(|m| quadratic_rows(&u, m, g));
    (0..rows.len())
        .map(|r| {
            let a: f64 = (0..g.len()).map(|j| u[(r, j)] * wg[(r, j)]).sum();
            (a.max(0.0), b.as_ref().map_or(0.0, |b| b[r]))
        })
        .collect()
}

/// The OBS removal of the columns `g` from each row of `rows` as [`remove_columns`] would
/// make it with `hinv` (`Δw = −u H⁻¹_G,:`, `u = w_G (H⁻¹_GG)⁻¹`), measured under other
/// statistics: given `m = H⁻¹ X H⁻¹` for each `X` of `ms`, `Δw X Δwᵀ = u m_GG uᵀ` per
/// row and `X`. With `X` the `H` of samples the update was not fit on, this is the
/// removal's held-out error.
pub fn removal_row_forms<const N: usize>(
    hinv: &Mat<f64>,
    rows: &[Vec<f64>],
    g: &[usize],
    ms: [&Mat<f64>; N],
) -> Vec<[f64; N]> {
    let mut out = vec![[0.0; N]; rows.len()];
    if g.is_empty() {
        return out;
    }
    let (_, u) = obs_gain(hinv, rows, g);
    for (x, m) in ms.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(quadratic_rows(&u, m, g)) {
            o[x] = v;
        }
    }
    out
}

/// `u_r m_GG u_rᵀ` for each row `u_r` of `u` (clamped at 0).
fn quadratic_rows(u: &Mat<f64>, m: &Mat<f64>, g: &[usize]) -> Vec<f64> {
    let um = u * principal(m, g);
    (0..u.nrows())
        .map(|r| {
            (0..g.len())
                .map(|j| um[(r, j)] * u[(r, j)])
                .sum::<f64>()
                .max(0.0)
        })
        .collect()
}

/// The principal submatrix of `m` on the rows and columns `idx`, in that order.
pub fn principal(m: &Mat<f64>, idx: &[usize]) -> Mat<f64> {
    Mat::from_fn(idx.len(), idx.len(), |i, j| m[(idx[i], idx[j])])
}

/// Accumulates `H += Xᵀ X` for rows of `X` given as a flat row-major `p x d` matrix.
pub fn accumulate(h: &mut Mat<f64>, x: &[f64], d: usize) {
    let p = x.len() / d.max(1);
    if p == 0 {
        return;
    }
    let xm = Mat::from_fn(p, d, |i, j| x[i * d + j]);
    let xt = xm.transpose();
    *h += xt * &xm;
}

/// Shrinks `H`, accumulated over `n` rows, towards its diagonal: the off-diagonal entries
/// are scaled by `1 − α` with `α = d / (d + n)` (`d` the dimension), a simple form of
/// covariance shrinkage that leaves a well-sampled `H` almost as it is.
pub fn shrink(h: &mut Mat<f64>, n: usize) {
    let d = h.nrows();
    if d == 0 {
        return;
    }
    let keep = n as f64 / (d + n) as f64;
    for j in 0..d {
        for i in 0..d {
            if i != j {
                h[(i, j)] *= keep;
            }
        }
    }
}

/// Accumulates `C += Aᵀ B` for rows of `A` (`p x da`) and `B` (`p x db`), both flat
/// row-major with the same number of rows.
pub fn accumulate_cross(c: &mut Mat<f64>, a: &[f64], da: usize, b: &[f64], db: usize) {
    let p = a.len() / da.max(1);
    if p == 0 || b.len() != p * db {
        return;
    }
    let am = Mat::from_fn(p, da, |i, j| a[i * da + j]);
    let bm = Mat::from_fn(p, db, |i, j| b[i * db + j]);
    *c += am.transpose() * &bm;
}

#[cfg(test)]
pub(in crate::prune) mod tests {
    use super::*;

    /// A deterministic stream of values in [-0.5, 0.5) (a linear congruential generator).
    pub(in crate::prune) fn uniform(mut seed: u64) -> impl FnMut() -> f64 {
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        }
    }

    /// Least-squares refit by OBS equals the normal-equation solution on the kept columns,
    /// and beats plain removal.
    #[test]
    fn obs_refit_is_the_least_squares_solution() {
        let (p, d) = (200, 6);
        let mut rnd = uniform(7);
        // Correlated columns: x3 ≈ x0 + x1.
        let mut x = vec![0.0; p * d];
        for r in 0..p {
            for c in 0..d {
                x[r * d + c] = rnd();
            }
            x[r * d + 3] = x[r * d] + x[r * d + 1] + 0.05 * rnd();
            x[r * d + d - 1] = 1.0;
        }
        let mut hm = Mat::zeros(d, d);
        accumulate(&mut hm, &x, d);
        let w0: Vec<f64> = (0..d).map(|_| rnd()).collect();
        let h = Hessian::Full(hm.clone());
        let err = |w: &[f64]| -> f64 {
            (0..p)
                .map(|r| {
                    let y: f64 = (0..d).map(|c| w0[c] * x[r * d + c]).sum();
                    let z: f64 = (0..d).map(|c| w[c] * x[r * d + c]).sum();
                    (y - z) * (y - z)
                })
                .sum()
        };
        let mut plain = w0.clone();
        plain[3] = 0.0;
        // Without damping the refit is exact least squares; compare with the small damping.
        let hi = damped_inverse(&hm);
        let mut rows = vec![w0.clone()];
        let cost = remove_columns(&h, Some(&hi), &mut rows, &[3], true);
        assert_eq!(rows[0][3], 0.0);
        let (e_obs, e_plain) = (err(&rows[0]), err(&plain));
        assert!(e_obs < 0.1 * e_plain, "obs {e_obs} plain {e_plain}");
        // The predicted cost is the error of the refit, up to the damping.
        assert!((cost - e_obs).abs() <= 0.05 * e_plain, "{cost} vs {e_obs}");
    }

    /// The per-row costs of a removal are those of the update `remove_columns` applies:
    /// `Δw H Δwᵀ` equals `remove_columns`'s cost, and `Δw S Δwᵀ` for another statistic `S`
    /// is what `u m_GG uᵀ` with `m = H⁻¹ S H⁻¹` predicts.
    #[test]
    fn removal_row_costs_match_the_applied_update() {
        let d = 7;
        let mut rnd = uniform(9);
        let x: Vec<f64> = (0..60 * d).map(|_| rnd()).collect();
        let sx: Vec<f64> = (0..10 * d).map(|_| rnd()).collect();
        let (mut hm, mut sm) = (Mat::zeros(d, d), Mat::zeros(d, d));
        accumulate(&mut hm, &x, d);
        accumulate(&mut sm, &sx, d);
        let h = Hessian::Full(hm);
        let hi = h.inverse().unwrap();
        let m = &hi * &sm * &hi;
        let rows: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| rnd()).collect()).collect();
        let g = [1, 4];
        let costs = removal_row_costs(&h, Some(&hi), &rows, &g, Some(&m));
        let quad = |m: &Mat<f64>, v: &[f64]| -> f64 {
            (0..d)
                .map(|i| (0..d).map(|j| v[i] * m[(i, j)] * v[j]).sum::<f64>())
                .sum()
        };
        let Hessian::Full(hm) = &h else {
            unreachable!("built full")
        };
        for (r, row) in rows.iter().enumerate() {
            let mut upd = vec![row.clone()];
            let cost = remove_columns(&h, Some(&hi), &mut upd, &g, true);
            let dw: Vec<f64> = upd[0].iter().zip(row).map(|(a, b)| a - b).collect();
            let (a, b) = costs[r];
            assert!((a - cost).abs() <= 1e-9 * cost.max(1.0), "{a} vs {cost}");
            // The update is computed from the damped inverse, so `Δw H Δwᵀ` of the
            // undamped H is close to, not equal to, the cost.
            assert!(
                (a - quad(hm, &dw)).abs() <= 0.05 * a,
                "{a} vs {}",
                quad(hm, &dw)
            );
            let want = quad(&sm, &dw);
            assert!((b - want).abs() <= 1e-9 * want.max(1.0), "{b} vs {want}");
        }
    }

    /// `removal_row_forms` measures the update fit on some samples on others: it equals
    /// `Δw H_new Δwᵀ` of the applied update. With barely more rows than columns, the fit
    /// samples can rebuild an independent column from the others, so the in-sample cost
    /// is far below the error on new samples; a truly redundant column costs little on
    /// both.
    #[test]
    fn held_out_forms_measure_the_update_on_new_samples() {
        let d = 12;
        let mut rnd = uniform(11);
        let mut draw = |n: usize| {
            let mut x: Vec<f64> = (0..n * d).map(|_| rnd()).collect();
            for r in x.chunks_exact_mut(d) {
                r[5] = r[0] - r[1] + 0.01 * r[5];
                r[d - 1] = 1.0;
            }
            let mut h = Mat::zeros(d, d);
            accumulate(&mut h, &x, d);
            (h, n as f64)
        };
        let ((hfit, nfit), (hnew, nnew)) = (draw(d + 3), draw(2000));
        let fit = Hessian::Full(hfit);
        let hi = fit.inverse().unwrap();
        let m = &hi * &hnew * &hi;
        let rows = vec![vec![1.0; d]];
        let quad = |m: &Mat<f64>, v: &[f64]| -> f64 {
            (0..d)
                .map(|i| (0..d).map(|j| v[i] * m[(i, j)] * v[j]).sum::<f64>())
                .sum()
        };
        let per_row = |g: &[usize]| {
            let [held_out] = removal_row_forms(&hi, &rows, g, [&m])[0];
            let mut upd = rows.clone();
            let in_sample = remove_columns(&fit, Some(&hi), &mut upd, g, true);
            let dw: Vec<f64> = upd[0].iter().zip(&rows[0]).map(|(a, b)| a - b).collect();
            let want = quad(&hnew, &dw);
            assert!(
                (held_out - want).abs() <= 1e-9 * want.max(1.0),
                "{held_out} vs {want}"
            );
            (in_sample / nfit, held_out / nnew)
        };
        // Column 3 is independent of the others: its removal costs about its mean square
        // (1/12) on new samples.
        let (in_sample, held_out) = per_row(&[3]);
        assert!(held_out > 0.05, "held-out {held_out}");
        assert!(
            in_sample < 0.3 * held_out,
            "in-sample {in_sample}, held-out {held_out}"
        );
        // Column 5 is columns 0 - 1 up to a little noise: cheap either way.
        let (_, redundant) = per_row(&[5]);
        assert!(
            redundant < 0.1 * held_out,
            "redundant {redundant}, independent {held_out}"
        );
    }
}
