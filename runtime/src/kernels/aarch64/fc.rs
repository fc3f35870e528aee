//! Fully connected layer with `FcOcBlock(8)` weights (`[ceil(OF/8)][IF][8]`): `fc_8x8_neon`,
//! and `fc_f16w_8x8_neon` with those weights scaled and rounded to f16 (f32 arithmetic).
//!
//! The dense register tile over up to 8 batch items x 8 outputs; the input is read in NHWC
//! order, skipping pad lanes (one [`mac`] run per input pixel).

use super::f16::widen;
use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, mac, Store, TileFn};
use crate::graph::{Fc, Layout};
use crate::kernels::{is_last_share, share, Act4, FcArgs, FcKernel};
use std::arch::aarch64::*;

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

/// The f16-weight fully connected kernel for [`Precision::F16`](crate::session::Precision)
/// sessions, for a layer whose weights are stored as `FcOcBlock(8)`: every aarch64 CPU
/// (`FCVTL` widens f16 to f32 in the Armv8.0 baseline). A classifier at batch 1 reads each
/// weight once per inference, from memory: f16 weights halve the bytes; the arithmetic stays
/// f32.
pub(crate) fn select_f16(_: &Fc, layout: Layout, _: Act4) -> Option<FcKernel> {
    (layout == Layout::FcOcBlock(LANES as u16)).then_some(FcKernel {
        name: "fc_f16w_8x8_neon",
        layout,
        run: fc_f16w,
    })
}

/// `y(n, o) = act(bias[o] + inv[o] * sum_i x_flat(n, i) * h[o][i])`, with `args.w` holding
/// [`f16::pack_fc`](crate::kernels::f16::pack_fc)'s halves `h` (scaled f16 weights) and
/// inverse scales `inv`.
pub(crate) fn fc_f16w(a: &mut FcArgs) {
    let batch = a.xs.shape.n as usize;
    let pixels = a.xs.shape.h as usize * a.xs.shape.w as usize;
    let c = a.xs.shape.c as usize;
    let inf = pixels * c;
    let of = a.ys.shape.c as usize;
    let blocks = of.div_ceil(LANES);
    // These bounds make every pointer formed below valid.
    let words = blocks * inf * LANES / 2;
    assert!(a.w.len() >= words + blocks * LANES);
    assert!(a.fc.in_features as usize == inf && a.fc.out_features as usize == of);
    assert!(a.x.len() >= a.xs.len() && a.xs.cs >= c);
    assert!(a.y.len() >= a.ys.len() && a.ys.cs >= of && a.ys.shape.n as usize == batch);
    assert!(a.bias.is_none_or(|b| b.len() >= of));
    let store = Store {
        residual: None,
        act: a.fc.act,
        cs: a.ys.cs,
    };
    let h = a.w.as_ptr().cast::<u16>();
    for b in share(blocks, a.share) {
        // SAFETY: inside the packed weights (checked above).
        let inv = unsafe { a.w.as_ptr().add(words + b * LANES) };
        let mut tile = F16wTile {
            x: a.x.as_ptr(),
            xcs: a.xs.cs,
            y: &mut *a.y,
            // SAFETY: block `b`'s halves, inside the packed weights.
            h: unsafe { h.add(b * inf * LANES) },
            inv: unsafe { V8(vld1q_f32(inv), vld1q_f32(inv.add(4))) },
            bias: bias8(a.bias, b * LANES, of),
            store: &store,
            o0: b * LANES,
            pixels,
            c,
        };
        for_each_tile(0, batch, &mut tile);
    }
    if is_last_share(a.share) {
        zero_pad_lanes(a.y, 0, batch, of, a.ys.cs);
    }
}

/// One block of 8 outputs of [`fc_f16w`] over a range of batch items.
struct F16wTile<'a> {
    x: *const f32,
    xcs: usize,
    y: &'a mut [f32],
    /// The block's halves, `[pixels * c][8]`.
    h: *const u16,
    inv: V8,
    bias: V8,
    store: &'a Store<'a>,
    o0: usize,
    pixels: usize,
    c: usize,
}

impl TileFn for F16wTile<'_> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, n0: usize) {
        let zero = V8::zero();
        let mut acc = [(zero.0, zero.1); M];
        for p in 0..self.pixels {
            // SAFETY: item `n0 + m`'s pixel `p` holds `c` floats (the checks of `fc_f16w`),
            // and the block's halves `[pixels * c][8]` are inside the packed weights.
            unsafe {
                let x: [*const f32; M] =
                    std::array::from_fn(|m| self.x.add(((n0 + m) * self.pixels + p) * self.xcs));
                mac_f16w(&mut acc, &x, self.h.add(p * self.c * LANES), self.c);
            }
        }
        // SAFETY: register-only NEON arithmetic.
        let out: [V8; M] = std::array::from_fn(|m| unsafe {
            V8(
                vfmaq_f32(self.bias.0, acc[m].0, self.inv.0),
                vfmaq_f32(self.bias.1, acc[m].1, self.inv.1),
            )
        });
        let yoff = std::array::from_fn(|m| (n0 + m) * self.store.cs + self.o0);
        self.store.tile(self.y, out, yoff, self.o0);
    }
}

/// `acc[m] += sum_i x[m][i] * widen(h[i])` over `c` inputs, 8 outputs per `h` row.
///
/// # Safety
/// `x[m]` valid for `c` reads, `h` for `c * 8`.
#[inline(always)]
unsafe fn mac_f16w<const M: usize>(
    acc: &mut [(float32x4_t, float32x4_t); M],
    x: &[*const f32; M],
    h: *const u16,
    c: usize,
) {
    #[inline(always)]
    unsafe fn lane<const M: usize, const L: i32>(
        acc: &mut [(float32x4_t, float32x4_t); M],
        xv: &[float32x4_t; M],
        h: *const u16,
    ) {
        let (lo, hi) = widen(vld1q_u16(h));
        for (a, &x) in acc.iter_mut().zip(xv) {
            a.0 = vfmaq_laneq_f32::<L>(a.0, lo, x);
            a.1 = vfmaq_laneq_f32::<L>(a.1, hi, x);
        }
    }
    let mut i = 0;
    while i + 4 <= c {
        let xv: [float32x4_t; M] = std::array::from_fn(|m| vld1q_f32(x[m].add(i)));
        let hi = h.add(i * LANES);
        lane::<M, 0>(acc, &xv, hi);
        lane::<M, 1>(acc, &xv, hi.add(LANES));
        lane::<M, 2>(acc, &xv, hi.add(2 * LANES));
        lane::<M, 3>(acc, &xv, hi.add(3 * LANES));
        i += 4;
    }
    while i < c {
        let xv: [float32x4_t; M] = std::array::from_fn(|m| vdupq_n_f32(*x[m].add(i)));
        lane::<M, 0>(acc, &xv, h.add(i * LANES));
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::f16;
    use crate::kernels::testing::{fc_suite, FullyConnected};

    /// See `kernels::testing::fc_suite`; one pixel per item and four.
    #[test]
    fn f16_weight_fully_connected_matches_its_definition() {
        fc_suite(&FullyConnected {
            run: fc_f16w,
            nb: LANES,
            pack: f16::pack_fc,
            dot: f16::fc_dot,
            pixels: &[1, 4],
        });
    }
}
