//! The register tile shared by the dense kernels: `M` output pixels x 8 output channels.
//!
//! Accumulators live in `f32x8` registers; bias, residual and activation are applied at the
//! store.

use super::simd::{act8, load, load_upto, store_upto, LANES};
use crate::graph::Activation;
use wide::f32x8;

/// Output pixels per register tile. Four pixels x 8 channels are eight `f32x4` accumulators
/// on SSE2 (16 registers), leaving room for the weights and the broadcast input.
pub(crate) const MR: usize = 4;

/// A computation over a tile of `M` consecutive pixels starting at a given index.
///
/// Implemented by each kernel's tile struct so that [`for_each_tile`] can call it with a
/// compile-time width.
pub(crate) trait TileFn {
    /// Computes the `M` pixels starting at `p`.
    fn run<const M: usize>(&mut self, p: usize);
}

/// Calls `f` over `start..end` in tiles of [`MR`] pixels, then one narrower tile for the rest.
#[inline(always)]
pub(crate) fn for_each_tile(start: usize, end: usize, f: &mut impl TileFn) {
    let mut p = start;
    while p + MR <= end {
        f.run::<MR>(p);
        p += MR;
    }
    match end.saturating_sub(p) {
        3 => f.run::<3>(p),
        2 => f.run::<2>(p),
        1 => f.run::<1>(p),
        _ => {}
    }
}

/// `acc[m] += sum_i x[xoff[m] + i] * w[i*8 .. i*8 + 8]` for `i < k`: the inner loop of every
/// dense kernel (one input channel run times one block of 8 output channels).
#[inline(always)]
pub(crate) fn mac<const M: usize>(
    acc: &mut [f32x8; M],
    x: &[f32],
    xoff: [usize; M],
    w: &[f32],
    k: usize,
) {
    let w = &w[..k * LANES];
    let xr: [&[f32]; M] = std::array::from_fn(|m| &x[xoff[m]..xoff[m] + k]);
    for (i, wv) in w.chunks_exact(LANES).enumerate() {
        let wv = load(wv, 0);
        for m in 0..M {
            acc[m] += f32x8::splat(xr[m][i]) * wv;
        }
    }
}

/// The bias of output channels `o0 .. o0 + 8` (zero for channels at or past `oc`).
#[inline(always)]
pub(crate) fn bias8(bias: Option<&[f32]>, o0: usize, oc: usize) -> f32x8 {
    match bias {
        Some(b) => load_upto(b, o0, oc.min(b.len())),
        None => f32x8::ZERO,
    }
}

/// Where a tile's results go.
pub(crate) struct Store<'a> {
    /// Optional residual with the output's geometry.
    pub residual: Option<&'a [f32]>,
    /// Fused activation.
    pub act: Activation,
    /// Output channel stride.
    pub cs: usize,
}

impl Store<'_> {
    /// Stores `acc[m]` at output element `yoff[m]` (pixel start plus first channel `o0`),
    /// adding the residual and applying the activation. Lanes past the pixel's channel stride
    /// are dropped; lanes in `oc..cs` receive junk the caller later zeroes.
    #[inline(always)]
    pub fn tile<const M: usize>(
        &self,
        y: &mut [f32],
        acc: [f32x8; M],
        yoff: [usize; M],
        o0: usize,
    ) {
        for m in 0..M {
            let at = yoff[m];
            let end = at - o0 + self.cs;
            let mut v = acc[m];
            if let Some(r) = self.residual {
                v += load_upto(r, at, end);
            }
            store_upto(y, at, end, act8(self.act, v));
        }
    }
}
