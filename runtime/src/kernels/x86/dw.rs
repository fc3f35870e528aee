//! Depthwise conv (`groups == C`, multiplier 1) over `DwBlock(LANES)` weights
//! (`[KH][KW][round_up(C, LANES)]`), written once over [`Isa`].
//!
//! Loop order: output row, tiles of `MR` pixels along the row, vectors of channels, taps.
//! Each tap is one multiply-add per pixel with channels as the lanes. For 3x3 and 5x5 each
//! tile first builds a table of input addresses per tap and pixel, pointing taps in the
//! padding at zeros in scratch, so that edge tiles (every tile of a 7x7 or 14x14 map) run
//! at full width too; other kernel sizes check each tap, pixel by pixel at the edges.

/// Scratch of the depthwise kernels: one vector-padded run of zero channels.
pub(crate) fn scratch<const LANES: usize>(
    c: &crate::graph::Conv,
    _: crate::kernels::Act4,
    _: crate::kernels::Act4,
) -> usize {
    (c.out_c as usize).div_ceil(LANES) * LANES
}

use super::geom::{for_each_tile, zero_pad_lanes, Geom, Tile};
use super::isa::Isa;
use crate::graph::Activation;
use crate::kernels::ConvArgs;
use std::marker::PhantomData;

/// The depthwise conv. `KH`/`KW` are the kernel size, or 0 to read it from the conv.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn dw<I: Isa, const KH: usize, const KW: usize, const MR: usize>(
    a: &mut ConvArgs,
) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    assert!(g.ic == g.oc && a.conv.groups as usize == g.oc);
    let cp = g.oc.div_ceil(I::LANES) * I::LANES;
    // These bounds make every pointer the tile code forms valid.
    assert!(a.w.len() >= g.kh * g.kw * cp);
    assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    assert!(a.rows.end <= a.ys.rows() && g.xcs >= g.ic && g.ycs >= g.oc);
    assert!(a.bias.is_none_or(|b| b.len() >= g.oc));
    assert!(a.residual.is_none_or(|r| r.len() >= a.ys.len()));
    assert!(a.scratch.len() >= cp);
    let zeros = &mut a.scratch[..cp];
    zeros.fill(0.0);
    let mut t = DwTile::<I, KH, KW> {
        zeros: zeros.as_ptr(),
        g,
        x: a.x.as_ptr(),
        w: a.w.as_ptr(),
        cp,
        bias: a.bias,
        residual: a.residual.map(|r| r.as_ptr()),
        y: a.y.as_mut_ptr(),
        act: a.conv.act,
        row: 0,
        _isa: PhantomData,
    };
    for row in a.rows.clone() {
        t.row = row;
        for_each_tile::<MR>(0, g.ow, &mut t);
    }
    let pixels = a.rows.len() * g.ow;
    zero_pad_lanes(a.y, a.rows.start * g.ow * g.ycs, pixels, g.oc, g.ycs);
}

/// One output row of a depthwise conv.
struct DwTile<'a, I: Isa, const KH: usize, const KW: usize> {
    g: Geom,
    x: *const f32,
    w: *const f32,
    /// Channels rounded up to `LANES`: the weights' tap stride.
    cp: usize,
    bias: Option<&'a [f32]>,
    residual: Option<*const f32>,
    y: *mut f32,
    act: Activation,
    row: usize,
    /// `cp` zeros, read for taps in the padding.
    zeros: *const f32,
    _isa: PhantomData<I>,
}

impl<I: Isa, const KH: usize, const KW: usize> Tile for DwTile<'_, I, KH, KW> {
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        if KH == 0 || KW == 0 || KH * KW > MAX_TAPS {
            return self.run_checked::<M>(ox0);
        }
        // Per tap and pixel, the input pixel's address, or `cp` zeros in scratch when the
        // tap falls into the padding: the channel loop below never branches.
        let (n, oy) = (self.row / g.oh, self.row % g.oh);
        let mut xp = [[self.zeros; M]; MAX_TAPS];
        for ky in 0..KH {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..KW {
                for (m, p) in xp[ky * KW + kx].iter_mut().enumerate() {
                    if let Some(ix) = g.in_x(ox0 + m, kx) {
                        *p = self.x.add((xrow + ix) * g.xcs);
                    }
                }
            }
        }
        let ybase = (self.row * g.ow + ox0) * g.ycs;
        let mut c0 = 0;
        while c0 + I::LANES <= g.oc {
            self.channels::<M, true>(&xp, ybase, c0);
            c0 += I::LANES;
        }
        if c0 < g.oc {
            self.channels::<M, false>(&xp, ybase, c0);
        }
    }
}

/// Taps of the largest kernel the pointer-table path handles (5x5).
const MAX_TAPS: usize = 25;

impl<I: Isa, const KH: usize, const KW: usize> DwTile<'_, I, KH, KW> {
    /// One vector of channels `c0..` of `M` pixels; `FULL`: all `LANES` channels are real
    /// (else the vector is the channel tail, loaded and stored masked).
    #[inline(always)]
    unsafe fn channels<const M: usize, const FULL: bool>(
        &self,
        xp: &[[*const f32; M]; MAX_TAPS],
        ybase: usize,
        c0: usize,
    ) {
        let g = &self.g;
        let nl = g.oc - c0;
        let load = |p: *const f32| {
            if FULL {
                I::load(p)
            } else {
                I::load_n(p, nl)
            }
        };
        let b = match self.bias {
            Some(b) => load(b.as_ptr().add(c0)),
            None => I::zero(),
        };
        let mut acc = [b; M];
        for (t, xt) in xp.iter().enumerate().take(KH * KW) {
            let wv = I::load(self.w.add(t * self.cp + c0));
            for (acc, &p) in acc.iter_mut().zip(xt) {
                *acc = I::fmadd(load(p.add(c0)), wv, *acc);
            }
        }
        for (m, acc) in acc.iter().enumerate() {
            let at = ybase + m * g.ycs + c0;
            let mut v = *acc;
            if let Some(r) = self.residual {
                v = I::add(v, load(r.add(at)));
            }
            let v = I::act(self.act, v);
            if FULL {
                I::store(self.y.add(at), v)
            } else {
                I::store_n(self.y.add(at), nl, v)
            }
        }
    }

    /// Any kernel size: taps checked one by one; tiles whose windows touch the left or right
    /// padding go pixel by pixel.
    #[inline(always)]
    unsafe fn run_checked<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        if M > 1 && (g.in_x(ox0, 0).is_none() || g.in_x(ox0 + M - 1, kw - 1).is_none()) {
            for m in 0..M {
                self.run_checked::<1>(ox0 + m);
            }
            return;
        }
        let (n, oy) = (self.row / g.oh, self.row % g.oh);
        let step = g.sw * g.xcs;
        let ybase = (self.row * g.ow + ox0) * g.ycs;
        for c0 in (0..g.oc).step_by(I::LANES) {
            let nl = g.oc - c0;
            let b = match self.bias {
                Some(b) => I::load_upto(b.as_ptr().add(c0), nl),
                None => I::zero(),
            };
            let mut acc = [b; M];
            for ky in 0..kh {
                let Some(iy) = g.in_y(oy, ky) else { continue };
                let xrow = (n * g.ih + iy) * g.iw;
                for kx in 0..kw {
                    // For M > 1 every tap is inside (checked above).
                    let Some(ix0) = g.in_x(ox0, kx) else { continue };
                    let wv = I::load(self.w.add((ky * kw + kx) * self.cp + c0));
                    let xp = self.x.add((xrow + ix0) * g.xcs + c0);
                    for (m, acc) in acc.iter_mut().enumerate() {
                        let xv = I::load_upto(xp.add(m * step), nl);
                        *acc = I::fmadd(xv, wv, *acc);
                    }
                }
            }
            for (m, acc) in acc.iter().enumerate() {
                let at = ybase + m * g.ycs + c0;
                let mut v = *acc;
                if let Some(r) = self.residual {
                    v = I::add(v, I::load_upto(r.add(at), nl));
                }
                I::store_upto(self.y.add(at), nl, I::act(self.act, v));
            }
        }
    }
}
