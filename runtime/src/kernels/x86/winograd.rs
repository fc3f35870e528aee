//! Winograd F(4x4, 3x3) and F(2x2, 3x3) for ungrouped 3x3 stride-1 convs, written once over
//! [`Isa`] and over the tile size.
//!
//! The output is cut into `M x M` tiles (`M` = 4 or 2); each needs an `A x A` input patch
//! (`A = M + 2`). Tiles are taken in
//! batches of `T` (consecutive in raster order over `rows`, possibly spanning tile rows and
//! images), and each batch goes through three steps, all vectorised across channels (the
//! activations are NHWC, so a channel vector is one load):
//!
//! 1. input transform `V = B^T d B` of every tile, into scratch `[A²][T][ICp]`;
//! 2. `A²` independent GEMMs `M[xi] = V[xi] . U[xi]` with the dense microkernel
//!    ([`dense::mac`](super::dense::mac), `MR` tiles by `NV` vectors), `U` being the
//!    pre-transformed weights (`WinogradF43(nb)` / `WinogradF23(nb)`:
//!    `[A²][OC/nb][IC][nb]`, see `kernels::pack`), into `[A²][T][OCp]`;
//! 3. output transform `Y = A^T M A`, plus bias and residual, through the activation, stored
//!    for the pixels of the tile that lie inside the image and inside `rows`.
//!
//! A 4x4 output tile costs 36 multiply-adds per (input, output) channel pair instead of 144;
//! a 2x2 tile 16 instead of 36, with weights 16/9 the dense size instead of 4x, which is what
//! small maps need (see `docs/decisions.md`, "Winograd"). `T` is chosen so that a batch's `V`
//! and `M` take about 2 MiB.

use super::dense::{mac_prefetch, Prefetch};
use super::geom::{for_each_tile, zero_pad_lanes, Geom, Tile};
use super::isa::Isa;
use crate::graph::Conv;
use crate::kernels::geom::{TileAt, WinogradTiles};
use crate::kernels::{Act4, ConvArgs};

/// Channels rounded up to the vector lanes `lanes`.
fn padded(c: usize, lanes: usize) -> usize {
    c.div_ceil(lanes) * lanes
}

/// Tiles per batch for a layer of this geometry, with `xi` transformed taps per tile,
/// `lanes`-wide vectors and `nb`-wide weight blocks.
fn batch_tiles(xi: usize, ic: usize, oc: usize, lanes: usize, nb: usize) -> usize {
    let per_tile = xi * (padded(ic, lanes) + padded(oc, nb));
    ((1usize << 19) / per_tile).clamp(6, 1024)
}

/// Scratch floats of the Winograd kernels with `A x A` input patches: `V` and `M` of one
/// batch.
pub(crate) fn scratch<const A: usize, const LANES: usize, const NB: usize>(
    c: &Conv,
    _xs: Act4,
    _ys: Act4,
) -> usize {
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let t = batch_tiles(A * A, ic, oc, LANES, NB);
    A * A * t * (padded(ic, LANES) + padded(oc, NB))
}

/// `B^T d` for one column of `A` input vectors (`A` = 6 or 4).
#[inline(always)]
unsafe fn bt<I: Isa, const A: usize>(d: [I::V; A]) -> [I::V; A] {
    if A == 6 {
        let r = bt6::<I>(&d);
        std::array::from_fn(|i| r[i])
    } else {
        let r = bt4::<I>(&d);
        std::array::from_fn(|i| r[i])
    }
}

/// `A^T m` for one column of `A` transformed vectors: `M = A - 2` outputs.
#[inline(always)]
unsafe fn at<I: Isa, const A: usize, const M: usize>(m: [I::V; A]) -> [I::V; M] {
    if A == 6 {
        let r = at6::<I>(&m);
        std::array::from_fn(|i| r[i])
    } else {
        let r = at4::<I>(&m);
        std::array::from_fn(|i| r[i])
    }
}

/// F(2, 3): `B^T d` for one column of four input vectors.
#[inline(always)]
unsafe fn bt4<I: Isa>(d: &[I::V]) -> [I::V; 4] {
    [
        I::sub(d[0], d[2]),
        I::add(d[1], d[2]),
        I::sub(d[2], d[1]),
        I::sub(d[1], d[3]),
    ]
}

/// F(2, 3): `A^T m` for one column of four transformed vectors.
#[inline(always)]
unsafe fn at4<I: Isa>(m: &[I::V]) -> [I::V; 2] {
    [
        I::add(I::add(m[0], m[1]), m[2]),
        I::sub(I::sub(m[1], m[2]), m[3]),
    ]
}

/// F(4, 3): `B^T d` for one column of six input vectors.
#[inline(always)]
unsafe fn bt6<I: Isa>(d: &[I::V]) -> [I::V; 6] {
    let c4 = I::splat(4.0);
    let c5 = I::splat(-5.0);
    let c2 = I::splat(2.0);
    // r0 = 4 d0 - 5 d2 + d4
    let r0 = I::fmadd(c4, d[0], I::fmadd(c5, d[2], d[4]));
    // r1 = -4 (d1 + d2) + d3 + d4 ; r2 = 4 (d1 - d2) - d3 + d4
    let s12 = I::add(d[1], d[2]);
    let d12 = I::sub(d[1], d[2]);
    let s34 = I::add(d[3], d[4]);
    let d43 = I::sub(d[4], d[3]);
    let r1 = I::fmadd(I::splat(-4.0), s12, s34);
    let r2 = I::fmadd(c4, d12, d43);
    // r3 = 2 (d3 - d1) + d4 - d2 ; r4 = 2 (d1 - d3) + d4 - d2
    let d31 = I::sub(d[3], d[1]);
    let d42 = I::sub(d[4], d[2]);
    let r3 = I::fmadd(c2, d31, d42);
    let r4 = I::fmadd(I::splat(-2.0), d31, d42);
    // r5 = 4 d1 - 5 d3 + d5
    let r5 = I::fmadd(c4, d[1], I::fmadd(c5, d[3], d[5]));
    [r0, r1, r2, r3, r4, r5]
}

/// F(4, 3): `A^T m` for one column of six transformed vectors.
#[inline(always)]
unsafe fn at6<I: Isa>(m: &[I::V]) -> [I::V; 4] {
    let s12 = I::add(m[1], m[2]);
    let d12 = I::sub(m[1], m[2]);
    let s34 = I::add(m[3], m[4]);
    let d34 = I::sub(m[3], m[4]);
    [
        I::add(I::add(m[0], s12), s34),
        I::fmadd(I::splat(2.0), d34, d12),
        I::fmadd(I::splat(4.0), s34, s12),
        I::add(I::fmadd(I::splat(8.0), d34, d12), m[5]),
    ]
}

/// The Winograd F(MxM, 3x3) conv (`M` = 4 over `WinogradF43(NV * LANES)` weights, `M` = 2
/// over `WinogradF23(NV * LANES)`; `A = M + 2`), with an `MR x NV` GEMM tile.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn conv<
    I: Isa,
    const M: usize,
    const A: usize,
    const MR: usize,
    const NV: usize,
>(
    a: &mut ConvArgs,
) {
    const { assert!((M == 4 && A == 6) || (M == 2 && A == 4)) };
    let xi_n = A * A;
    let g = Geom::new(a.conv, a.xs, a.ys);
    let lanes = I::LANES;
    let nb = NV * lanes;
    assert!(g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1);
    assert!(a.conv.groups == 1);
    let (icp, ocp) = (padded(g.ic, lanes), padded(g.oc, nb));
    let blocks = ocp / nb;
    // These bounds make every pointer formed below valid: input vectors are read up to
    // `icp <= xcs` (the channel stride is padded to at least the vector width), outputs are
    // written up to `oc`.
    assert!(g.xcs >= icp && g.ycs >= g.oc);
    assert!(a.w.len() >= xi_n * blocks * g.ic * nb);
    assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    assert!(a.rows.end <= a.ys.rows());
    assert!(a.bias.is_none_or(|b| b.len() >= g.oc));
    assert!(a.residual.is_none_or(|r| r.len() >= a.ys.len()));
    let tb = batch_tiles(xi_n, g.ic, g.oc, lanes, nb);
    assert!(a.scratch.len() >= xi_n * tb * (icp + ocp));
    if a.rows.is_empty() {
        return;
    }
    let (v, m) = a.scratch.split_at_mut(xi_n * tb * icp);
    let (v, m) = (v.as_mut_ptr(), m.as_mut_ptr());
    let tiles = WinogradTiles::new(M, &g);
    let std::ops::Range { start: first, end } = tiles.covering(&a.rows);
    let x = a.x.as_ptr();
    let y = a.y.as_mut_ptr();
    let res = a.residual.map(|r| r.as_ptr());
    let mut t0 = first;
    while t0 < end {
        let nt = tb.min(end - t0);
        // 1. Input transform.
        for t in 0..nt {
            let TileAt { n, iy0, ix0, .. } = tiles.at(t0 + t);
            for cv in (0..icp).step_by(lanes) {
                let mut d = [[I::zero(); A]; A];
                for (r, row) in d.iter_mut().enumerate() {
                    let iy = iy0 + r as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        continue;
                    }
                    let base = (n * g.ih + iy as usize) * g.iw;
                    for (c, e) in row.iter_mut().enumerate() {
                        let ix = ix0 + c as isize;
                        if ix >= 0 && ix < g.iw as isize {
                            *e = I::load(x.add((base + ix as usize) * g.xcs + cv));
                        }
                    }
                }
                // Columns, then rows.
                let mut tmp = [[I::zero(); A]; A];
                for c in 0..A {
                    let col = bt::<I, A>(std::array::from_fn(|r| d[r][c]));
                    for (trow, v) in tmp.iter_mut().zip(col) {
                        trow[c] = v;
                    }
                }
                for (r, trow) in tmp.iter().enumerate() {
                    let out = bt::<I, A>(*trow);
                    for (c, &o) in out.iter().enumerate() {
                        I::store(v.add(((r * A + c) * tb + t) * icp + cv), o);
                    }
                }
            }
        }
        // 2. The A² GEMMs. The weights are read in order, one `ic x nb` block per
        // (xi, b), by every row tile of the batch; each row tile prefetches its share of the
        // next block (the tile from row `p` the lines at offset `p * nb / nt` of each step),
        // so that the next block's fetch from memory overlaps this block's multiply-adds.
        // The row tiles are those of `for_each_tile`: a short tail is evened out with the
        // last full tile (49 tiles: 12, 12, 12, 7, 6), because a tile of one row waits on the
        // multiply-add latency.
        for xi in 0..xi_n {
            for b in 0..blocks {
                let w = a.w.as_ptr().add((xi * blocks + b) * g.ic * nb);
                let mut rows = GemmRows::<I, NV> {
                    v: v.add(xi * tb * icp),
                    icp,
                    w,
                    k: g.ic,
                    m: m.add(xi * tb * ocp + b * nb),
                    ocp,
                    next: w.wrapping_add(g.ic * nb),
                    nt,
                    isa: std::marker::PhantomData,
                };
                for_each_tile::<I, MR>(0, nt, &mut rows);
            }
        }
        // 3. Output transform.
        for t in 0..nt {
            let TileAt { n, ty, tx, .. } = tiles.at(t0 + t);
            for o in (0..g.oc).step_by(lanes) {
                let mut tmp = [[I::zero(); A]; M];
                for c in 0..A {
                    let col: [I::V; A] =
                        std::array::from_fn(|r| I::load(m.add(((r * A + c) * tb + t) * ocp + o)));
                    for (trow, o) in tmp.iter_mut().zip(at::<I, A, M>(col)) {
                        trow[c] = o;
                    }
                }
                let count = g.oc - o;
                let bias = match a.bias {
                    Some(b) => I::load_upto(b.as_ptr().add(o), count),
                    None => I::zero(),
                };
                for (i, trow) in tmp.iter().enumerate() {
                    let oy = ty * M + i;
                    let row = n * g.oh + oy;
                    if oy >= g.oh || row < a.rows.start || row >= a.rows.end {
                        continue;
                    }
                    let out = at::<I, A, M>(*trow);
                    for (j, &val) in out.iter().enumerate() {
                        let ox = tx * M + j;
                        if ox >= g.ow {
                            break;
                        }
                        let at_ = (row * g.ow + ox) * g.ycs + o;
                        let mut val = I::add(val, bias);
                        if let Some(r) = res {
                            val = I::add(val, I::load_upto(r.add(at_), count));
                        }
                        I::store_upto(y.add(at_), count, I::act(a.conv.act, val));
                    }
                }
            }
        }
        t0 += nt;
    }
    let px = a.rows.start * g.ow..a.rows.end * g.ow;
    zero_pad_lanes(a.y, px.start * g.ycs, px.len(), g.oc, g.ycs);
}

/// `MR` rows of one GEMM: `out[m][0..nb] = sum_i vrow[m][i] * w[i][0..nb]` (`vrow` rows
/// `vstride` apart, `out` rows `ostride` apart), prefetching from `pf` as [`mac_prefetch`]
/// does.
///
/// # Safety
/// Pointers valid for the rows and strides given; the ISA is available.
#[inline(always)]
unsafe fn gemm_tile<I: Isa, const MR: usize, const NV: usize>(
    (vrow, vstride): (*const f32, usize),
    w: *const f32,
    k: usize,
    (out, ostride): (*mut f32, usize),
    pf: Prefetch,
) {
    let mut acc = [[I::zero(); NV]; MR];
    let xp: [*const f32; MR] = std::array::from_fn(|r| vrow.add(r * vstride));
    mac_prefetch::<I, MR, NV>(&mut acc, &xp, w, k, pf);
    for (r, accr) in acc.iter().enumerate() {
        for (j, &val) in accr.iter().enumerate() {
            I::store(out.add(r * ostride + j * I::LANES), val);
        }
    }
}

/// The row tiles of one of [`conv`]'s GEMMs over a batch of `nt` tiles: rows of `V` from
/// `v` (`icp` apart), weights `w` (`k` steps of `NV` vectors), rows of `M` from `m` (`ocp`
/// apart), prefetching the next block at `next`.
struct GemmRows<I, const NV: usize> {
    v: *const f32,
    icp: usize,
    w: *const f32,
    k: usize,
    m: *mut f32,
    ocp: usize,
    next: *const f32,
    nt: usize,
    isa: std::marker::PhantomData<I>,
}

impl<I: Isa, const NV: usize> Tile for GemmRows<I, NV> {
    #[inline(always)]
    unsafe fn run<const R: usize>(&mut self, p: usize) {
        let pf = Prefetch::share(
            self.next,
            self.k * NV * I::LANES,
            self.k,
            (p, (p + R).min(self.nt), self.nt),
        );
        let (v, m) = (
            (self.v.add(p * self.icp), self.icp),
            (self.m.add(p * self.ocp), self.ocp),
        );
        gemm_tile::<I, R, NV>(v, self.w, self.k, m, pf);
    }
}
