//! Depthwise convolution (`groups == C`, multiplier 1) with `DwBlock(8)` weights
//! (`[KH][KW][round_up(C, 8)]`): 3x3 and 5x5 taps unrolled at compile time, any size otherwise.

use super::geom::Geom;
use super::simd::{load, load_upto, zero_pad_lanes, LANES};
use super::tile::{bias8, for_each_tile, Store, TileFn};
use crate::kernels::ConvArgs;
use wide::f32x8;

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
/// Loop order: output row, block of 8 channels, tiles of pixels along the row, taps. Each tap
/// is one vector multiply-add per pixel: channels are the vector lanes.
#[inline(always)]
fn depthwise<const KH: usize, const KW: usize>(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    let cp = g.oc.div_ceil(LANES) * LANES;
    debug_assert!(a.w.len() >= g.kh * g.kw * cp);
    debug_assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    debug_assert!(a.rows.end <= a.ys.rows());
    let store = Store { residual: a.residual, act: a.conv.act, cs: g.ycs };
    for row in a.rows.clone() {
        for c0 in (0..cp).step_by(LANES) {
            let mut tile = DwTile::<KH, KW> {
                g: &g,
                x: a.x,
                w: a.w,
                cp,
                bias: bias8(a.bias, c0, g.oc),
                c0,
                row,
                y: a.y,
                store: &store,
            };
            for_each_tile(0, g.ow, &mut tile);
        }
        zero_pad_lanes(a.y, row * g.ow * g.ycs, g.ow, g.oc, g.ycs);
    }
}

/// One output row, one block of 8 channels.
struct DwTile<'a, const KH: usize, const KW: usize> {
    g: &'a Geom,
    x: &'a [f32],
    /// All weights, `[KH][KW][cp]`.
    w: &'a [f32],
    cp: usize,
    bias: f32x8,
    c0: usize,
    row: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl<const KH: usize, const KW: usize> DwTile<'_, KH, KW> {
    /// Channels `c0..c0 + 8` of input pixel `px` (lanes past the pixel's stride read as 0).
    #[inline(always)]
    fn input(&self, px: usize) -> f32x8 {
        let at = px * self.g.xcs;
        load_upto(self.x, at + self.c0, at + self.g.xcs)
    }
}

impl<const KH: usize, const KW: usize> TileFn for DwTile<'_, KH, KW> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        let (n, oy) = g.row(self.row);
        let mut acc = [self.bias; M];
        for ky in 0..kh {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..kw {
                let wv = load(self.w, (ky * kw + kx) * self.cp + self.c0);
                match (g.in_x(ox0, kx), g.in_x(ox0 + M - 1, kx)) {
                    (Some(ix0), Some(_)) => {
                        for (m, acc) in acc.iter_mut().enumerate() {
                            *acc += self.input(xrow + ix0 + m * g.sw) * wv;
                        }
                    }
                    _ => {
                        for (m, acc) in acc.iter_mut().enumerate() {
                            if let Some(ix) = g.in_x(ox0 + m, kx) {
                                *acc += self.input(xrow + ix) * wv;
                            }
                        }
                    }
                }
            }
        }
        let yoff = std::array::from_fn(|m| (self.row * g.ow + ox0 + m) * g.ycs + self.c0);
        self.store.tile(self.y, acc, yoff, self.c0);
    }
}
