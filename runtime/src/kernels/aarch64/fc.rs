//! Fully connected layer with `FcOcBlock(8)` weights (`[ceil(OF/8)][IF][8]`): `fc_8x8_neon`.
//!
//! The dense register tile over up to 8 batch items x 8 outputs; the input is read in NHWC
//! order, skipping pad lanes (one [`mac`] run per input pixel).

use super::neon::{zero_pad_lanes, LANES};
use super::tile::{bias8, for_each_tile, mac, Store, TileFn};
use crate::kernels::{is_last_share, share, FcArgs};

/// `y(n, o) = act(bias[o] + sum_i x_flat(n, i) * W[o][i])`.
pub(crate) fn fc_8x8(a: &mut FcArgs) {
    let batch = a.xs.shape.n as usize;
    let pixels = a.xs.shape.h as usize * a.xs.shape.w as usize;
    let c = a.xs.shape.c as usize;
    let inf = pixels * c;
    let of = a.ys.shape.c as usize;
    let blocks = of.div_ceil(LANES);
    debug_assert!(a.w.len() >= blocks * inf * LANES);
    let store = Store {
        residual: None,
        act: a.fc.act,
        cs: a.ys.cs,
    };
    for b in share(blocks, a.share) {
        let mut tile = FcTile {
            a: &mut *a,
            store: &store,
            b,
            pixels,
            c,
        };
        for_each_tile(0, batch, &mut tile);
    }
    if is_last_share(a.share) {
        zero_pad_lanes(a.y, 0, batch, of, a.ys.cs);
    }
}

/// One block of 8 outputs over a range of batch items.
struct FcTile<'a, 'b> {
    a: &'a mut FcArgs<'b>,
    store: &'a Store<'a>,
    b: usize,
    pixels: usize,
    c: usize,
}

impl TileFn for FcTile<'_, '_> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, n0: usize) {
        let a = &mut *self.a;
        let (xcs, c) = (a.xs.cs, self.c);
        let o0 = self.b * LANES;
        let of = a.ys.shape.c as usize;
        let w = &a.w[self.b * self.pixels * c * LANES..];
        let mut acc = [bias8(a.bias, o0, of); M];
        for p in 0..self.pixels {
            let xoff = std::array::from_fn(|m| ((n0 + m) * self.pixels + p) * xcs);
            mac(&mut acc, a.x, xoff, &w[p * c * LANES..], c);
        }
        let yoff = std::array::from_fn(|m| (n0 + m) * a.ys.cs + o0);
        self.store.tile(a.y, acc, yoff, o0);
    }
}
