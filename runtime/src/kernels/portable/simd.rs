//! `f32x8` helpers shared by the portable kernels: loads, stores and activations on vectors.

use crate::graph::Activation;
use wide::f32x8;

/// Lanes per vector; the portable kernels block output channels by this.
pub(crate) const LANES: usize = 8;

/// Loads `s[at..at + 8]`.
#[inline(always)]
pub(crate) fn load(s: &[f32], at: usize) -> f32x8 {
    let a: [f32; LANES] = s[at..at + LANES].try_into().unwrap_or([0.0; LANES]);
    f32x8::new(a)
}

/// Loads the lanes of `s[at..end]` (at most 8), zero-filling the rest of the vector.
///
/// Used where a vector would run past a pixel's channel stride.
#[inline(always)]
pub(crate) fn load_upto(s: &[f32], at: usize, end: usize) -> f32x8 {
    if at + LANES <= end {
        load(s, at)
    } else {
        let n = end.saturating_sub(at).min(LANES);
        let mut a = [0.0; LANES];
        a[..n].copy_from_slice(&s[at..at + n]);
        f32x8::new(a)
    }
}

/// Stores `v` into `s[at..end]`, at most 8 lanes (all 8 when `at + 8 <= end`).
#[inline(always)]
pub(crate) fn store_upto(s: &mut [f32], at: usize, end: usize, v: f32x8) {
    if at + LANES <= end {
        s[at..at + LANES].copy_from_slice(v.as_array());
    } else {
        let n = end.saturating_sub(at).min(LANES);
        s[at..at + n].copy_from_slice(&v.as_array()[..n]);
    }
}

/// `act` applied to every lane; matches [`Activation::apply`] (the transcendental activations
/// go through the scalar definition lane by lane).
#[inline(always)]
pub(crate) fn act8(act: Activation, v: f32x8) -> f32x8 {
    let zero = f32x8::ZERO;
    let one = f32x8::ONE;
    match act {
        Activation::None => v,
        Activation::Relu => v.max(zero),
        Activation::Clip { min, max } => v.max(f32x8::splat(min)).min(f32x8::splat(max)),
        // max(v, 0) + alpha * min(v, 0): exactly `v` or `alpha * v`.
        Activation::LeakyRelu { alpha } => v.max(zero) + v.min(zero) * f32x8::splat(alpha),
        Activation::HardSigmoid { alpha, beta } => (v * f32x8::splat(alpha) + f32x8::splat(beta))
            .max(zero)
            .min(one),
        Activation::HardSwish => {
            v * (v / f32x8::splat(6.0) + f32x8::splat(0.5))
                .max(zero)
                .min(one)
        }
        Activation::Sigmoid | Activation::Silu | Activation::Tanh | Activation::Gelu => {
            f32x8::new(v.to_array().map(|e| act.apply(e)))
        }
    }
}

pub(crate) use crate::kernels::geom::zero_pad_lanes;
