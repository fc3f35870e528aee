//! Depthwise convolution (`groups == C`, multiplier 1) with `DwBlock(8)` weights
//! (`[KH][KW][round_up(C, 8)]`): `dw3x3s1_neon`, `dw3x3s2_neon`, `dw3x3_neon`, the same
//! for 5x5, and `dw1x1_neon` (a per-channel affine at any stride: what a pruned 3x3
//! becomes). Taps and (for `s1`/`s2`) the horizontal stride are compile-time constants.
//!
//! Channels are the vector lanes: a tile is up to 8 pixels x 8 channels (16 accumulators),
//! and each tap is one fused multiply-add per pixel and half-block. Columns whose taps all
//! fall inside the input go in tiles; the columns at the left and right padding go one by
//! one, checking each tap.

use super::geom::Geom;
use super::neon::{load, zero_pad_lanes, LANES};
use super::tile::{bias8, for_each_tile, load_lanes, Store, TileFn};
use crate::kernels::ConvArgs;

/// Depthwise 1x1, any stride and padding.
pub(crate) fn dw1x1(a: &mut ConvArgs) {
    depthwise::<1, 1, 0>(a)
}

/// Depthwise 3x3, stride 1, any dilation and padding.
pub(crate) fn dw3x3s1(a: &mut ConvArgs) {
    depthwise::<3, 3, 1>(a)
}

/// Depthwise 3x3, stride 2, any dilation and padding.
pub(crate) fn dw3x3s2(a: &mut ConvArgs) {
    depthwise::<3, 3, 2>(a)
}

/// Depthwise 3x3, any stride, dilation and padding.
pub(crate) fn dw3x3(a: &mut ConvArgs) {
    depthwise::<3, 3, 0>(a)
}

/// Depthwise 5x5, stride 1, any dilation and padding.
pub(crate) fn dw5x5s1(a: &mut ConvArgs) {
    depthwise::<5, 5, 1>(a)
}

/// Depthwise 5x5, stride 2, any dilation and padding.
pub(crate) fn dw5x5s2(a: &mut ConvArgs) {
    depthwise::<5, 5, 2>(a)
}

/// Depthwise 5x5, any stride, dilation and padding.
pub(crate) fn dw5x5(a: &mut ConvArgs) {
    depthwise::<5, 5, 0>(a)
}

/// Depthwise 7x7, stride 1, any dilation and padding (ConvNeXt's).
pub(crate) fn dw7x7s1(a: &mut ConvArgs) {
    depthwise::<7, 7, 1>(a)
}

/// Depthwise 7x7, any other stride, dilation and padding.
pub(crate) fn dw7x7(a: &mut ConvArgs) {
    depthwise::<7, 7, 0>(a)
}

/// The depthwise conv. `KH`/`KW` are the kernel size; `SW` the horizontal stride, or 0 to
/// read it from the conv.
///
/// Loop order: output row, tiles of pixels along the row, blocks of 8 channels, taps.
#[inline(always)]
fn depthwise<const KH: usize, const KW: usize, const SW: usize>(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!(KH == g.kh && KW == g.kw && (SW == 0 || SW == g.sw));
    let cp = g.oc.div_ceil(LANES) * LANES;
    debug_assert!(a.w.len() >= g.kh * g.kw * cp);
    debug_assert!(a.rows.end <= a.ys.rows());
    let store = Store {
        residual: a.residual,
        act: a.conv.act,
        cs: g.ycs,
    };
    let inner = g.interior_x();
    for row in a.rows.clone() {
        let mut tile = DwTile::<KH, KW, SW> {
            g: &g,
            x: a.x,
            w: a.w,
            bias: a.bias,
            cp,
            row,
            y: a.y,
            store: &store,
        };
        for ox in (0..inner.start).chain(inner.end..g.ow) {
            tile.run::<1>(ox);
        }
        for_each_tile(inner.start, inner.end, &mut tile);
        zero_pad_lanes(a.y, row * g.ow * g.ycs, g.ow, g.oc, g.ycs);
    }
}

/// One output row.
struct DwTile<'a, const KH: usize, const KW: usize, const SW: usize> {
    g: &'a Geom,
    x: &'a [f32],
    /// All weights, `[KH][KW][cp]`.
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    /// Channels rounded up to 8.
    cp: usize,
    row: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl<const KH: usize, const KW: usize, const SW: usize> DwTile<'_, KH, KW, SW> {
    /// Channels `c0 .. c0 + 8` of the `M` pixels starting at `ox0`. For `M > 1` every tap of
    /// every pixel is inside the input horizontally. `FULL`: the 8 lanes fit in the channel
    /// stride of both input and output (always the case with strides aligned to 8).
    #[inline(always)]
    fn block<const M: usize, const FULL: bool>(&mut self, ox0: usize, c0: usize) {
        let g = self.g;
        let sw = if SW == 0 { g.sw } else { SW };
        let (n, oy) = g.row(self.row);
        let mut acc = [bias8(self.bias, c0, g.oc); M];
        let step = sw * g.xcs;
        for ky in 0..KH {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..KW {
                let Some(ix0) = g.in_x(ox0, kx) else { continue };
                let wv = load(self.w, (ky * KW + kx) * self.cp + c0);
                let at = (xrow + ix0) * g.xcs;
                for (m, acc) in acc.iter_mut().enumerate() {
                    let px = at + m * step;
                    let xv = load_lanes::<FULL>(self.x, px + c0, px + g.xcs);
                    *acc = acc.fma(xv, wv);
                }
            }
        }
        let yoff = std::array::from_fn(|m| (self.row * g.ow + ox0 + m) * g.ycs + c0);
        self.store.tile(self.y, acc, yoff, c0);
    }
}

impl<const KH: usize, const KW: usize, const SW: usize> TileFn for DwTile<'_, KH, KW, SW> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, ox0: usize) {
        let full = self.g.xcs.min(self.g.ycs);
        for c0 in (0..self.cp).step_by(LANES) {
            if c0 + LANES <= full {
                self.block::<M, true>(ox0, c0);
            } else {
                self.block::<M, false>(ox0, c0);
            }
        }
    }
}
