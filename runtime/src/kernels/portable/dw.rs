//! Depthwise convolution (`groups == C`, multiplier 1) with `DwBlock(8)` weights.
//!
//! Weights are `[KH][KW][round_up(C, 8)]`; 3x3 and 5x5 taps are unrolled at compile time, other
//! sizes read from the conv.

use super::geom::Geom;
use super::simd::{load, load_upto, zero_pad_lanes, LANES};
use super::tile::{bias8, for_each_tile, Store, TileFn};
use crate::kernels::ConvArgs;

/// Depthwise 3x3, any stride, dilation and padding.
pub(crate) fn dw3x3(a: &mut ConvArgs) {
    depthwise::<3, 3>(a)
}

/// Depthwise 5x5, any stride, dilation and padding.
pub(crate) fn dw5x5(a: &mut ConvArgs) {
    depthwise::<5, 5>(a)
}

/// Depthwise with any kernel size, stride, dilation and padding.
pub(crate) fn dw_generic(a: &mut ConvArgs) {
    depthwise::<0, 0>(a)
}

/// The depthwise conv. `KH`/`KW` are the kernel size, or 0 to read it from the conv.
///
/// Loop order: output row, tiles of pixels along the row, blocks of 8 channels, taps. Each
/// tap is one vector multiply-add per pixel: channels are the vector lanes.
#[inline(always)]
fn depthwise<const KH: usize, const KW: usize>(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    let cp = g.oc.div_ceil(LANES) * LANES;
    debug_assert!(a.w.len() >= g.kh * g.kw * cp);
    debug_assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    debug_assert!(a.bias.iter().all(|b| b.len() >= g.oc));
    debug_assert!(a.rows.end <= a.ys.rows());
    let store = Store {
        residual: a.residual,
        act: a.conv.act,
        cs: g.ycs,
    };
    for row in a.rows.clone() {
        let mut tile = DwTile::<KH, KW> {
            g: &g,
            x: a.x,
            w: a.w,
            bias: a.bias,
            cp,
            row,
            y: a.y,
            store: &store,
        };
        for_each_tile(0, g.ow, &mut tile);
        zero_pad_lanes(a.y, row * g.ow * g.ycs, g.ow, g.oc, g.ycs);
    }
}

/// One output row.
struct DwTile<'a, const KH: usize, const KW: usize> {
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

impl<const KH: usize, const KW: usize> DwTile<'_, KH, KW> {
    /// Channels `c0 .. c0 + 8` of the `M` pixels starting at `ox0`. For `M > 1` every tap of
    /// every pixel is inside the input horizontally. `FULL`: the 8 lanes fit in the channel
    /// stride of both input and output (always the case with strides aligned to 8).
    #[inline(always)]
    fn block<const M: usize, const FULL: bool>(&mut self, ox0: usize, c0: usize) {
        let g = self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        let (n, oy) = g.row(self.row);
        let mut acc = [bias8(self.bias, c0, g.oc); M];
        let step = g.sw * g.xcs;
        for ky in 0..kh {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..kw {
                let Some(ix0) = g.in_x(ox0, kx) else { continue };
                let wv = load(self.w, (ky * kw + kx) * self.cp + c0);
                let at = (xrow + ix0) * g.xcs;
                for (m, acc) in acc.iter_mut().enumerate() {
                    let px = at + m * step;
                    let xv = if FULL {
                        load(self.x, px + c0)
                    } else {
                        load_upto(self.x, px + c0, px + g.xcs)
                    };
                    *acc += xv * wv;
                }
            }
        }
        let yoff = std::array::from_fn(|m| (self.row * g.ow + ox0 + m) * g.ycs + c0);
        self.store.tile(self.y, acc, yoff, c0);
    }
}

impl<const KH: usize, const KW: usize> TileFn for DwTile<'_, KH, KW> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        let kw = if KW == 0 { g.kw } else { KW };
        // Tiles that touch the left or right padding go pixel by pixel (checked per tap).
        if M > 1 && (g.in_x(ox0, 0).is_none() || g.in_x(ox0 + M - 1, kw - 1).is_none()) {
            for m in 0..M {
                self.run::<1>(ox0 + m);
            }
            return;
        }
        let full = g.xcs.min(g.ycs);
        for c0 in (0..self.cp).step_by(LANES) {
            if c0 + LANES <= full {
                self.block::<M, true>(ox0, c0);
            } else {
                self.block::<M, false>(ox0, c0);
            }
        }
    }
}
