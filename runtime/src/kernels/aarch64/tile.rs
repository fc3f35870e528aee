//! The register tile shared by the dense NEON kernels: up to [`MR`] output pixels x 8 output
//! channels, two `float32x4_t` accumulators per pixel.
//!
//! With `MR = 8` the full tile is 16 accumulators; the inner loop ([`mac`]) adds 8 registers
//! of input (4 input channels of each pixel) and 2 of weights: 26 of the 32 q-registers.
//! Bias is the accumulators' initial value; residual and activation are applied at the store.

use super::neon::{act8, load, load_upto, store_upto, LANES, V8};
use crate::graph::Activation;
use std::arch::aarch64::*;

/// Output pixels per full register tile.
pub(crate) const MR: usize = 8;

/// A computation over a tile of `M` consecutive pixels starting at a given index.
pub(crate) trait TileFn {
    /// Computes the `M` pixels starting at `p`.
    fn run<const M: usize>(&mut self, p: usize);
}

/// Calls `f` over `start..end` in tiles of [`MR`] pixels, then tiles of 4, 2 and 1 for the rest.
#[inline(always)]
pub(crate) fn for_each_tile(start: usize, end: usize, f: &mut impl TileFn) {
    let mut p = start;
    while p + MR <= end {
        f.run::<MR>(p);
        p += MR;
    }
    if p + 4 <= end {
        f.run::<4>(p);
        p += 4;
    }
    if p + 2 <= end {
        f.run::<2>(p);
        p += 2;
    }
    if p < end {
        f.run::<1>(p);
    }
}

/// One step of [`mac`]: input channel `i + L` of every pixel (lane `L` of `xv`) times the
/// weight row `(w0, w1)`.
#[inline(always)]
fn mac_lane<const M: usize, const L: i32>(
    acc: &mut [V8; M],
    xv: &[float32x4_t; M],
    w0: float32x4_t,
    w1: float32x4_t,
) {
    for m in 0..M {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe {
            acc[m].0 = vfmaq_laneq_f32::<L>(acc[m].0, w0, xv[m]);
            acc[m].1 = vfmaq_laneq_f32::<L>(acc[m].1, w1, xv[m]);
        }
    }
}

/// `acc[m] += sum_i x[xoff[m] + i] * w[i*8 .. i*8 + 8]` for `i < k`: the inner loop of every
/// dense kernel (one run of `k` input channels times one block of 8 output channels).
///
/// Input channels go four at a time: one 4-lane load per pixel, then `vfmaq_laneq_f32` by
/// lane; the last `k % 4` channels are broadcast one by one.
#[inline(always)]
pub(crate) fn mac<const M: usize>(
    acc: &mut [V8; M],
    x: &[f32],
    xoff: [usize; M],
    w: &[f32],
    k: usize,
) {
    let w = &w[..k * LANES];
    let xr: [&[f32]; M] = std::array::from_fn(|m| &x[xoff[m]..xoff[m] + k]);
    let wp = w.as_ptr();
    let xp: [*const f32; M] = std::array::from_fn(|m| xr[m].as_ptr());
    let mut i = 0;
    while i + 4 <= k {
        // SAFETY: `i + 4 <= k`: each `xp[m]` points at `k` floats (`xr[m]`), and `wp` at
        // `k * 8` floats, of which rows `i .. i + 4` (32 floats from `i * 8`) are read.
        unsafe {
            let xv: [float32x4_t; M] = std::array::from_fn(|m| vld1q_f32(xp[m].add(i)));
            let wr = wp.add(i * LANES);
            mac_lane::<M, 0>(acc, &xv, vld1q_f32(wr), vld1q_f32(wr.add(4)));
            mac_lane::<M, 1>(acc, &xv, vld1q_f32(wr.add(8)), vld1q_f32(wr.add(12)));
            mac_lane::<M, 2>(acc, &xv, vld1q_f32(wr.add(16)), vld1q_f32(wr.add(20)));
            mac_lane::<M, 3>(acc, &xv, vld1q_f32(wr.add(24)), vld1q_f32(wr.add(28)));
        }
        i += 4;
    }
    while i < k {
        // SAFETY: `i < k`: `xp[m].add(i)` is inside `xr[m]` and row `i` of the weights
        // (8 floats from `i * 8`) inside `w`.
        unsafe {
            let wr = wp.add(i * LANES);
            let (w0, w1) = (vld1q_f32(wr), vld1q_f32(wr.add(4)));
            for m in 0..M {
                let xs = vld1q_dup_f32(xp[m].add(i));
                acc[m].0 = vfmaq_f32(acc[m].0, w0, xs);
                acc[m].1 = vfmaq_f32(acc[m].1, w1, xs);
            }
        }
        i += 1;
    }
}

/// The bias of output channels `o0 .. o0 + 8` (zero for channels at or past `oc`).
#[inline(always)]
pub(crate) fn bias8(bias: Option<&[f32]>, o0: usize, oc: usize) -> V8 {
    match bias {
        Some(b) => load_upto(b, o0, oc.min(b.len())),
        None => V8::zero(),
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
    pub fn tile<const M: usize>(&self, y: &mut [f32], acc: [V8; M], yoff: [usize; M], o0: usize) {
        for m in 0..M {
            let at = yoff[m];
            let end = at - o0 + self.cs;
            let mut v = acc[m];
            if let Some(r) = self.residual {
                v = v.add(load_upto(r, at, end));
            }
            store_upto(y, at, end, act8(self.act, v));
        }
    }
}

/// Loads the 8 lanes at `s[at..]` when they fit before `end`, else the lanes up to `end`.
#[inline(always)]
pub(crate) fn load_lanes<const FULL: bool>(s: &[f32], at: usize, end: usize) -> V8 {
    if FULL {
        load(s, at)
    } else {
        load_upto(s, at, end)
    }
}
