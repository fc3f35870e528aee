//! Winograd F(4x4, 3x3) and F(2x2, 3x3) for ungrouped 3x3 stride-1 convs on NEON:
//! `wino43_8x8_neon` over `WinogradF43(8)` weights and `wino23_8x8_neon` over
//! `WinogradF23(8)` weights.
//!
//! The three steps of the x86 kernels (`x86/winograd.rs`), over eight channels at a time
//! ([`V8`]). The output is cut into `M x M` tiles (`M` = 4 or 2, input patches of `A = M + 2`),
//! taken in batches of `T` consecutive tiles in raster order over `rows`:
//!
//! 1. input transform `V = B^T d B` of every tile, into scratch `[A²][T][ICp]`;
//! 2. `A²` GEMMs `M[xi] = V[xi] . U[xi]` on the dense kernels' register tile ([`mac`], 8
//!    tiles x 8 output channels), `U` being the pre-transformed weights
//!    (`[A²][OC/8][IC][8]`, see `kernels::pack`), into `[A²][T][OCp]`;
//! 3. output transform `Y = A^T M A`, plus bias and residual, through the activation, stored
//!    for the pixels of the tile inside the image and inside `rows`.
//!
//! `T` is chosen so that a batch's `V` and `M` take about 512 KiB, the L2 of a big phone
//! core, where the x86 kernels take 2 MiB.

use super::geom::{Geom, TileAt, WinogradTiles};
use super::neon::{act8, load, load_upto, store, store_upto, zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, mac, TileFn};
use crate::graph::Conv;
use crate::kernels::{Act4, ConvArgs};

/// Channels rounded up to the 8 lanes.
fn padded(c: usize) -> usize {
    c.div_ceil(LANES) * LANES
}

/// Tiles per batch with `xi` transformed taps per tile.
fn batch_tiles(xi: usize, ic: usize, oc: usize) -> usize {
    let per_tile = xi * (padded(ic) + padded(oc));
    ((1usize << 17) / per_tile).clamp(8, 1024)
}

/// Scratch floats with `A x A` input patches: `V` and `M` of one batch.
pub(crate) fn scratch<const A: usize>(c: &Conv, _xs: Act4, _ys: Act4) -> usize {
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let t = batch_tiles(A * A, ic, oc);
    A * A * t * (padded(ic) + padded(oc))
}

/// F(4x4, 3x3) over `WinogradF43(8)` weights.
pub(crate) fn wino43(a: &mut ConvArgs) {
    conv::<4, 6>(a)
}

/// F(2x2, 3x3) over `WinogradF23(8)` weights.
pub(crate) fn wino23(a: &mut ConvArgs) {
    conv::<2, 4>(a)
}

/// `B^T d` for one column of `A` input vectors (`A` = 6 or 4).
#[inline(always)]
fn bt<const A: usize>(d: [V8; A]) -> [V8; A] {
    let r: [V8; 6] = if A == 6 {
        bt6(&d)
    } else {
        let r = bt4(&d);
        [r[0], r[1], r[2], r[3], r[3], r[3]]
    };
    std::array::from_fn(|i| r[i])
}

/// `A^T m` for one column of `A` transformed vectors: `M = A - 2` outputs.
#[inline(always)]
fn at<const A: usize, const M: usize>(m: [V8; A]) -> [V8; M] {
    let r: [V8; 4] = if A == 6 {
        at6(&m)
    } else {
        let r = at4(&m);
        [r[0], r[1], r[1], r[1]]
    };
    std::array::from_fn(|i| r[i])
}

/// F(2, 3): `B^T d` for one column of four input vectors.
#[inline(always)]
fn bt4(d: &[V8]) -> [V8; 4] {
    [
        d[0].sub(d[2]),
        d[1].add(d[2]),
        d[2].sub(d[1]),
        d[1].sub(d[3]),
    ]
}

/// F(2, 3): `A^T m` for one column of four transformed vectors.
#[inline(always)]
fn at4(m: &[V8]) -> [V8; 2] {
    [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])]
}

/// F(4, 3): `B^T d` for one column of six input vectors.
#[inline(always)]
fn bt6(d: &[V8]) -> [V8; 6] {
    let (c4, c5, c2) = (V8::splat(4.0), V8::splat(-5.0), V8::splat(2.0));
    // r0 = 4 d0 - 5 d2 + d4
    let r0 = d[4].fma(c5, d[2]).fma(c4, d[0]);
    // r1 = -4 (d1 + d2) + d3 + d4 ; r2 = 4 (d1 - d2) - d3 + d4
    let s12 = d[1].add(d[2]);
    let d12 = d[1].sub(d[2]);
    let s34 = d[3].add(d[4]);
    let d43 = d[4].sub(d[3]);
    let r1 = s34.fma(V8::splat(-4.0), s12);
    let r2 = d43.fma(c4, d12);
    // r3 = 2 (d3 - d1) + d4 - d2 ; r4 = 2 (d1 - d3) + d4 - d2
    let d31 = d[3].sub(d[1]);
    let d42 = d[4].sub(d[2]);
    let r3 = d42.fma(c2, d31);
    let r4 = d42.fma(V8::splat(-2.0), d31);
    // r5 = 4 d1 - 5 d3 + d5
    let r5 = d[5].fma(c5, d[3]).fma(c4, d[1]);
    [r0, r1, r2, r3, r4, r5]
}

/// F(4, 3): `A^T m` for one column of six transformed vectors.
#[inline(always)]
fn at6(m: &[V8]) -> [V8; 4] {
    let s12 = m[1].add(m[2]);
    let d12 = m[1].sub(m[2]);
    let s34 = m[3].add(m[4]);
    let d34 = m[3].sub(m[4]);
    [
        m[0].add(s12).add(s34),
        d12.fma(V8::splat(2.0), d34),
        s12.fma(V8::splat(4.0), s34),
        d12.fma(V8::splat(8.0), d34).add(m[5]),
    ]
}

/// One block of 8 output channels of one transformed-tap GEMM, over tiles `t..t + M` of the
/// batch: `m[tile][o0..o0 + 8] = v[tile][0..ic] . w`.
struct Gemm<'a> {
    v: &'a [f32],
    w: &'a [f32],
    m: &'a mut [f32],
    /// Offset of tile 0 of this tap in `v` (row stride `icp`) and in `m` (row stride `ocp`).
    v0: usize,
    m0: usize,
    icp: usize,
    ocp: usize,
    ic: usize,
}

impl TileFn for Gemm<'_> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, t: usize) {
        let mut acc = [V8::zero(); M];
        let xoff: [usize; M] = std::array::from_fn(|r| self.v0 + (t + r) * self.icp);
        mac(&mut acc, self.v, xoff, self.w, self.ic);
        for (r, &val) in acc.iter().enumerate() {
            store(self.m, self.m0 + (t + r) * self.ocp, val);
        }
    }
}

/// The Winograd F(MxM, 3x3) conv (`A = M + 2`).
#[inline(always)]
fn conv<const M: usize, const A: usize>(a: &mut ConvArgs) {
    const { assert!((M == 4 && A == 6) || (M == 2 && A == 4)) };
    let xi_n = A * A;
    let g = Geom::new(a.conv, a.xs, a.ys);
    assert!(g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1);
    assert!(a.conv.groups == 1);
    let (icp, ocp) = (padded(g.ic), padded(g.oc));
    let blocks = ocp / LANES;
    assert!(g.xcs >= g.ic && g.ycs >= g.oc);
    let tb = batch_tiles(xi_n, g.ic, g.oc);
    if a.rows.is_empty() {
        return;
    }
    let (v, m) = a.scratch.split_at_mut(xi_n * tb * icp);
    let m = &mut m[..xi_n * tb * ocp];
    let tiles = WinogradTiles::new(M, &g);
    let std::ops::Range { start: first, end } = tiles.covering(&a.rows);
    let mut t0 = first;
    while t0 < end {
        let nt = tb.min(end - t0);
        // 1. Input transform.
        for t in 0..nt {
            let TileAt { n, iy0, ix0, .. } = tiles.at(t0 + t);
            for cv in (0..icp).step_by(LANES) {
                let mut d = [[V8::zero(); A]; A];
                for (r, row) in d.iter_mut().enumerate() {
                    let iy = iy0 + r as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        continue;
                    }
                    let base = (n * g.ih + iy as usize) * g.iw;
                    for (c, e) in row.iter_mut().enumerate() {
                        let ix = ix0 + c as isize;
                        if ix >= 0 && ix < g.iw as isize {
                            // Any channel stride: the lanes past `ic` load as zero.
                            let px = (base + ix as usize) * g.xcs;
                            *e = load_upto(a.x, px + cv, px + g.ic);
                        }
                    }
                }
                // Columns, then rows.
                let mut tmp = [[V8::zero(); A]; A];
                for c in 0..A {
                    let col = bt::<A>(std::array::from_fn(|r| d[r][c]));
                    for (trow, val) in tmp.iter_mut().zip(col) {
                        trow[c] = val;
                    }
                }
                for (r, trow) in tmp.iter().enumerate() {
                    for (c, &o) in bt::<A>(*trow).iter().enumerate() {
                        store(v, ((r * A + c) * tb + t) * icp + cv, o);
                    }
                }
            }
        }
        // 2. The A² GEMMs, one 8-channel block of weights (`ic x 8`) at a time.
        for xi in 0..xi_n {
            for b in 0..blocks {
                let w0 = (xi * blocks + b) * g.ic * LANES;
                let mut gemm = Gemm {
                    v: &*v,
                    w: &a.w[w0..w0 + g.ic * LANES],
                    m: &mut *m,
                    v0: xi * tb * icp,
                    m0: xi * tb * ocp + b * LANES,
                    icp,
                    ocp,
                    ic: g.ic,
                };
                for_each_tile(0, nt, &mut gemm);
            }
        }
        // 3. Output transform.
        for t in 0..nt {
            let TileAt { n, ty, tx, .. } = tiles.at(t0 + t);
            for o in (0..g.oc).step_by(LANES) {
                let mut tmp = [[V8::zero(); A]; M];
                for c in 0..A {
                    let col: [V8; A] =
                        std::array::from_fn(|r| load(m, ((r * A + c) * tb + t) * ocp + o));
                    for (trow, val) in tmp.iter_mut().zip(at::<A, M>(col)) {
                        trow[c] = val;
                    }
                }
                let bias = bias8(a.bias, o, g.oc);
                for (i, trow) in tmp.iter().enumerate() {
                    let oy = ty * M + i;
                    let row = n * g.oh + oy;
                    if oy >= g.oh || row < a.rows.start || row >= a.rows.end {
                        continue;
                    }
                    for (j, &val) in at::<A, M>(*trow).iter().enumerate() {
                        let ox = tx * M + j;
                        if ox >= g.ow {
                            break;
                        }
                        let px = (row * g.ow + ox) * g.ycs;
                        let (at_, end_) = (px + o, px + g.oc);
                        let mut val = val.add(bias);
                        if let Some(r) = a.residual {
                            val = val.add(load_upto(r, at_, end_));
                        }
                        store_upto(a.y, at_, end_, act8(a.conv.act, val));
                    }
                }
            }
        }
        t0 += nt;
    }
    let px = a.rows.start * g.ow..a.rows.end * g.ow;
    zero_pad_lanes(a.y, px.start * g.ycs, px.len(), g.oc, g.ycs);
}
