//! Direct convolution for `groups == 1` with `ConvOcBlock(8)` weights.
//!
//! The taps are unrolled at compile time for 3x3, 5x5 and 7x7 kernels and read from the conv
//! for every other size.

use super::geom::Geom;
use super::simd::{zero_pad_lanes, LANES};
use super::tile::{bias8, for_each_tile, mac, Store, TileFn};
use crate::kernels::ConvArgs;
use wide::f32x8;

/// 3x3 conv, any stride, dilation and padding.
pub(crate) fn conv3x3(a: &mut ConvArgs) {
    direct::<3, 3>(a)
}

/// 5x5 conv, any stride, dilation and padding.
pub(crate) fn conv5x5(a: &mut ConvArgs) {
    direct::<5, 5>(a)
}

/// 7x7 conv, any stride, dilation and padding.
pub(crate) fn conv7x7(a: &mut ConvArgs) {
    direct::<7, 7>(a)
}

/// Any kernel size (including non-square and padded 1x1), any stride, dilation and padding.
pub(crate) fn conv_kxk(a: &mut ConvArgs) {
    direct::<0, 0>(a)
}

/// The direct conv. `KH`/`KW` are the kernel size, or 0 to read it from the conv at run time.
///
/// Loop order: output row, block of 8 output channels (its weights, `KH*KW*IC*8` floats, stay
/// in L1), tiles of [`super::tile::MR`] pixels along the row, taps, input channels.
#[inline(always)]
fn direct<const KH: usize, const KW: usize>(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    let wblock = g.kh * g.kw * g.ic * LANES;
    let blocks = g.oc.div_ceil(LANES);
    debug_assert!(a.w.len() >= blocks * wblock);
    debug_assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    debug_assert!(a.rows.end <= a.ys.rows());
    let store = Store {
        residual: a.residual,
        act: a.conv.act,
        cs: g.ycs,
    };
    for row in a.rows.clone() {
        for b in 0..blocks {
            let o0 = b * LANES;
            let mut tile = DirectTile::<KH, KW> {
                g: &g,
                x: a.x,
                w: &a.w[b * wblock..(b + 1) * wblock],
                bias: bias8(a.bias, o0, g.oc),
                o0,
                row,
                y: a.y,
                store: &store,
            };
            for_each_tile(0, g.ow, &mut tile);
        }
        zero_pad_lanes(a.y, row * g.ow * g.ycs, g.ow, g.oc, g.ycs);
    }
}

/// One output row, one block of 8 output channels.
struct DirectTile<'a, const KH: usize, const KW: usize> {
    g: &'a Geom,
    x: &'a [f32],
    /// This block's weights, `[KH][KW][IC][8]`.
    w: &'a [f32],
    bias: f32x8,
    o0: usize,
    row: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl<const KH: usize, const KW: usize> TileFn for DirectTile<'_, KH, KW> {
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
                let wt = &self.w[(ky * kw + kx) * g.ic * LANES..];
                // Input columns grow with m: the tile is inside the image when both ends are.
                match (g.in_x(ox0, kx), g.in_x(ox0 + M - 1, kx)) {
                    (Some(ix0), Some(_)) => {
                        let xoff = std::array::from_fn(|m| (xrow + ix0 + m * g.sw) * g.xcs);
                        mac(&mut acc, self.x, xoff, wt, g.ic);
                    }
                    _ => {
                        for (m, acc) in acc.iter_mut().enumerate() {
                            if let Some(ix) = g.in_x(ox0 + m, kx) {
                                let mut one = [*acc];
                                mac(&mut one, self.x, [(xrow + ix) * g.xcs], wt, g.ic);
                                *acc = one[0];
                            }
                        }
                    }
                }
            }
        }
        let yoff = std::array::from_fn(|m| (self.row * g.ow + ox0 + m) * g.ycs + self.o0);
        self.store.tile(self.y, acc, yoff, self.o0);
    }
}
