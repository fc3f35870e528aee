//! Direct convolution for `groups == 1` with `ConvOcBlock(8)` weights
//! (`[ceil(OC/8)][KH][KW][IC][8]`): `conv3x3_neon`, `conv5x5_neon`, `conv7x7_neon` with the
//! taps unrolled at compile time, `conv_kxk_neon` for every other size.
//!
//! Each tap is the GEMM inner loop ([`mac`]) over the tile's input pixels. Columns whose taps
//! all fall inside the input go in tiles of up to 8 pixels; the few columns at the left and
//! right padding go one by one, checking each tap.

use super::geom::Geom;
use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, mac, Store, TileFn};
use crate::kernels::ConvArgs;

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
/// in L1), tiles of pixels along the row, taps, input channels.
#[inline(always)]
fn direct<const KH: usize, const KW: usize>(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    let wblock = g.kh * g.kw * g.ic * LANES;
    let blocks = g.oc.div_ceil(LANES);
    debug_assert!(a.w.len() >= blocks * wblock);
    debug_assert!(a.rows.end <= a.ys.rows());
    let store = Store {
        residual: a.residual,
        act: a.conv.act,
        cs: g.ycs,
    };
    let inner = g.interior_x();
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
            for ox in (0..inner.start).chain(inner.end..g.ow) {
                tile.pixels::<1>(ox);
            }
            for_each_tile(inner.start, inner.end, &mut tile);
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
    bias: V8,
    o0: usize,
    row: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl<const KH: usize, const KW: usize> DirectTile<'_, KH, KW> {
    /// The `M` pixels starting at column `ox0`. For `M > 1` every tap column of every pixel is
    /// inside the input; a single pixel checks each tap.
    #[inline(always)]
    fn pixels<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        let (n, oy) = g.row(self.row);
        let mut acc = [self.bias; M];
        for ky in 0..kh {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..kw {
                let Some(ix0) = g.in_x(ox0, kx) else { continue };
                let wt = &self.w[(ky * kw + kx) * g.ic * LANES..];
                let xoff = std::array::from_fn(|m| (xrow + ix0 + m * g.sw) * g.xcs);
                mac(&mut acc, self.x, xoff, wt, g.ic);
            }
        }
        let yoff = std::array::from_fn(|m| (self.row * g.ow + ox0 + m) * g.ycs + self.o0);
        self.store.tile(self.y, acc, yoff, self.o0);
    }
}

impl<const KH: usize, const KW: usize> TileFn for DirectTile<'_, KH, KW> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, ox0: usize) {
        self.pixels::<M>(ox0);
    }
}
