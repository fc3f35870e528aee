//! 1x1 convolution without padding as a GEMM over pixels: `gemm_8x8_neon` (stride 1; it also
//! reads a concatenation in place, [`ConvArgs::parts`]) and `conv1x1s_8x8_neon` (other
//! strides), `ConvOcBlock(8)` weights (`[ceil(OC/8)][IC][8]`).

use super::geom::Geom;
use super::neon::{zero_pad_lanes, LANES, V8};
use super::tile::{bias8, for_each_tile, mac, Store, TileFn, MR};
use crate::kernels::{ConvArgs, MAX_CONV_PARTS};
use std::ops::Range;

/// Stride 1, no padding: output pixel `p` reads input pixel `p` (of `x`, then of each part).
pub(crate) fn gemm_8x8(a: &mut ConvArgs) {
    let mut g = Geom::new(a.conv, a.xs, a.ys);
    debug_assert!(g.ih == g.oh && g.iw == g.ow);
    assert!(a.parts.len() < MAX_CONV_PARTS);
    let mut more = [Part::default(); MAX_CONV_PARTS - 1];
    for (slot, &(x, xs)) in more.iter_mut().zip(a.parts) {
        assert!(xs.shape.n == a.xs.shape.n && xs.shape.h == a.xs.shape.h);
        assert!(xs.shape.w == a.xs.shape.w && xs.cs >= xs.shape.c as usize);
        *slot = Part {
            x,
            xcs: xs.cs,
            k: xs.shape.c as usize,
        };
    }
    let more = &more[..a.parts.len()];
    // The weights hold the channels of every part.
    g.ic += more.iter().map(|p| p.k).sum::<usize>();
    assert!(g.ic == a.conv.in_c as usize);
    let pixels = a.rows.start * g.ow..a.rows.end * g.ow;
    gemm(a, &g, pixels, |p| p * g.xcs, more);
}

/// A further input of [`gemm_8x8`]: `k` channels a pixel, pixels `xcs` floats apart.
#[derive(Clone, Copy, Default)]
struct Part<'a> {
    x: &'a [f32],
    xcs: usize,
    k: usize,
}

/// Any stride, no padding: output `(n, oy, ox)` reads input `(n, oy*sh, ox*sw)`.
pub(crate) fn conv1x1s_8x8(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    for row in a.rows.clone() {
        let (n, oy) = g.row(row);
        let first = row * g.ow;
        let base = (n * g.ih + oy * g.sh) * g.iw;
        gemm(
            a,
            &g,
            first..first + g.ow,
            move |p| (base + (p - first) * g.sw) * g.xcs,
            &[],
        );
    }
}

/// Output pixels `pixels` of a 1x1 conv; `in_at(p)` is the element offset of the input pixel
/// output pixel `p` reads in `x`; `more` are further parts (stride 1), read after `x`.
///
/// Pixels go in blocks of about 16 KiB of input, so that a block stays in L1 while every
/// block of 8 output channels (`IC*8` weights) runs over it.
#[inline(always)]
fn gemm(
    a: &mut ConvArgs,
    g: &Geom,
    pixels: Range<usize>,
    in_at: impl Fn(usize) -> usize + Copy,
    more: &[Part],
) {
    let blocks = g.oc.div_ceil(LANES);
    let wblock = g.ic * LANES;
    debug_assert!(a.w.len() >= blocks * wblock);
    let chunk = (4096 / g.ic.max(1)).clamp(MR, 256) / MR * MR;
    let store = Store {
        residual: a.residual,
        act: a.conv.act,
        cs: g.ycs,
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        for b in 0..blocks {
            let o0 = b * LANES;
            let mut tile = GemmTile {
                in_at,
                k: a.xs.shape.c as usize,
                ycs: g.ycs,
                x: a.x,
                more,
                w: &a.w[b * wblock..(b + 1) * wblock],
                bias: bias8(a.bias, o0, g.oc),
                o0,
                y: a.y,
                store: &store,
            };
            for_each_tile(start, end, &mut tile);
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * g.ycs, pixels.len(), g.oc, g.ycs);
}

/// One block of 8 output channels over a range of pixels.
struct GemmTile<'a, F> {
    in_at: F,
    /// Channels of `x`.
    k: usize,
    ycs: usize,
    x: &'a [f32],
    /// Further inputs, whose weights follow `x`'s.
    more: &'a [Part<'a>],
    /// This block's weights, `[IC][8]`.
    w: &'a [f32],
    bias: V8,
    o0: usize,
    y: &'a mut [f32],
    store: &'a Store<'a>,
}

impl<F: Fn(usize) -> usize> TileFn for GemmTile<'_, F> {
    #[inline(always)]
    fn run<const M: usize>(&mut self, p: usize) {
        let mut acc = [self.bias; M];
        let xoff = std::array::from_fn(|m| (self.in_at)(p + m));
        mac(&mut acc, self.x, xoff, self.w, self.k);
        let mut from = self.k;
        for part in self.more {
            let xoff = std::array::from_fn(|m| (p + m) * part.xcs);
            mac(&mut acc, part.x, xoff, &self.w[from * LANES..], part.k);
            from += part.k;
        }
        let yoff = std::array::from_fn(|m| (p + m) * self.ycs + self.o0);
        self.store.tile(self.y, acc, yoff, self.o0);
    }
}
