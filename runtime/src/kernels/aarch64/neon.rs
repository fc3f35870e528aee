//! NEON helpers shared by the aarch64 kernels: an 8-lane vector as two `float32x4_t`, its
//! loads and stores (bounds-checked on the slice, then one unchecked pointer access), and the
//! activations.

use crate::graph::Activation;
use std::arch::aarch64::*;

/// Lanes per block: the packed layouts block output channels by 8 (two q-registers).
pub(crate) const LANES: usize = 8;

/// Eight lanes: channels `0..4` in `.0`, `4..8` in `.1`.
#[derive(Clone, Copy)]
pub(crate) struct V8(pub float32x4_t, pub float32x4_t);

impl V8 {
    /// All lanes zero.
    #[inline(always)]
    pub fn zero() -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vdupq_n_f32(0.0), vdupq_n_f32(0.0)) }
    }
    /// All lanes `v`.
    #[inline(always)]
    pub fn splat(v: f32) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vdupq_n_f32(v), vdupq_n_f32(v)) }
    }
    /// `self + a * b`, fused.
    #[inline(always)]
    pub fn fma(self, a: V8, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vfmaq_f32(self.0, a.0, b.0), vfmaq_f32(self.1, a.1, b.1)) }
    }
    /// `self + b`.
    #[inline(always)]
    pub fn add(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vaddq_f32(self.0, b.0), vaddq_f32(self.1, b.1)) }
    }
    /// `self - b`.
    #[inline(always)]
    pub fn sub(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vsubq_f32(self.0, b.0), vsubq_f32(self.1, b.1)) }
    }
    /// `self * b`.
    #[inline(always)]
    pub fn mul(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vmulq_f32(self.0, b.0), vmulq_f32(self.1, b.1)) }
    }
    /// Lane-wise maximum.
    #[inline(always)]
    pub fn max(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vmaxq_f32(self.0, b.0), vmaxq_f32(self.1, b.1)) }
    }
    /// Lane-wise minimum.
    #[inline(always)]
    pub fn min(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vminq_f32(self.0, b.0), vminq_f32(self.1, b.1)) }
    }
    /// `self / b`.
    #[inline(always)]
    pub fn div(self, b: V8) -> V8 {
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        unsafe { V8(vdivq_f32(self.0, b.0), vdivq_f32(self.1, b.1)) }
    }
    /// `e^x` on every lane, within 2 ulp of `f32::exp` for `x` in `[-87, 88]`; the input is
    /// clamped to that range (Cephes' `expf`, as the x86 kernels' `Isa::exp`).
    #[inline(always)]
    pub fn exp(self) -> V8 {
        use crate::kernels::expf::{LN2_HI, LN2_LO, MAX, MIN, POLY};
        let x = self.max(V8::splat(MIN)).min(V8::splat(MAX));
        // SAFETY: register-only NEON arithmetic; NEON is part of the aarch64 baseline.
        let n = unsafe {
            let t = x.mul(V8::splat(std::f32::consts::LOG2_E));
            V8(vrndnq_f32(t.0), vrndnq_f32(t.1))
        };
        let r = x.fma(n, V8::splat(-LN2_HI));
        let r = r.fma(n, V8::splat(-LN2_LO));
        let mut p = V8::splat(POLY[0]);
        for c in &POLY[1..] {
            p = V8::splat(*c).fma(p, r);
        }
        let p = r.add(V8::splat(1.0)).fma(p, r.mul(r));
        // SAFETY: as above; `n` holds integers in -126..=127, so `n + 127` is a valid
        // exponent field.
        let pow2 = unsafe {
            let e = |v: float32x4_t| {
                vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
                    vcvtq_s32_f32(v),
                    vdupq_n_s32(127),
                )))
            };
            V8(e(n.0), e(n.1))
        };
        p.mul(pow2)
    }
    /// The lanes as an array.
    #[inline(always)]
    pub fn to_array(self) -> [f32; LANES] {
        let mut a = [0.0; LANES];
        store(&mut a, 0, self);
        a
    }
    /// A vector from an array.
    #[inline(always)]
    pub fn from_array(a: [f32; LANES]) -> V8 {
        load(&a, 0)
    }
}

/// Loads `s[at..at + 8]`.
#[inline(always)]
pub(crate) fn load(s: &[f32], at: usize) -> V8 {
    let s = &s[at..at + LANES];
    // SAFETY: `s` holds exactly 8 floats; the two loads read `s[0..4]` and `s[4..8]`.
    unsafe { V8(vld1q_f32(s.as_ptr()), vld1q_f32(s.as_ptr().add(4))) }
}

/// Stores `v` into `s[at..at + 8]`.
#[inline(always)]
pub(crate) fn store(s: &mut [f32], at: usize, v: V8) {
    let s = &mut s[at..at + LANES];
    // SAFETY: `s` holds exactly 8 floats; the two stores write `s[0..4]` and `s[4..8]`.
    unsafe {
        vst1q_f32(s.as_mut_ptr(), v.0);
        vst1q_f32(s.as_mut_ptr().add(4), v.1);
    }
}

/// Loads the lanes of `s[at..end]` (at most 8), zero-filling the rest of the vector.
#[inline(always)]
pub(crate) fn load_upto(s: &[f32], at: usize, end: usize) -> V8 {
    if at + LANES <= end {
        load(s, at)
    } else {
        let n = end.saturating_sub(at).min(LANES);
        let mut a = [0.0; LANES];
        a[..n].copy_from_slice(&s[at..at + n]);
        V8::from_array(a)
    }
}

/// Stores `v` into `s[at..end]`, at most 8 lanes (all 8 when `at + 8 <= end`).
#[inline(always)]
pub(crate) fn store_upto(s: &mut [f32], at: usize, end: usize, v: V8) {
    if at + LANES <= end {
        store(s, at, v)
    } else {
        let n = end.saturating_sub(at).min(LANES);
        s[at..at + n].copy_from_slice(&v.to_array()[..n]);
    }
}

/// `act` applied to every lane; matches [`Activation::apply`] to a few ulp (the
/// transcendental activations use [`V8::exp`]).
#[inline(always)]
pub(crate) fn act8(act: Activation, v: V8) -> V8 {
    let zero = V8::zero();
    let one = V8::splat(1.0);
    match act {
        Activation::None => v,
        Activation::Relu => v.max(zero),
        Activation::Clip { min, max } => v.max(V8::splat(min)).min(V8::splat(max)),
        // max(v, 0) + alpha * min(v, 0): exactly `v` or `alpha * v`.
        Activation::LeakyRelu { alpha } => v.max(zero).add(v.min(zero).mul(V8::splat(alpha))),
        Activation::HardSigmoid { alpha, beta } => {
            V8::splat(beta).fma(v, V8::splat(alpha)).max(zero).min(one)
        }
        Activation::HardSwish => v.mul(
            V8::splat(0.5)
                .fma(v, V8::splat(1.0 / 6.0))
                .max(zero)
                .min(one),
        ),
        Activation::Sigmoid => one.div(one.add(v.mul(V8::splat(-1.0)).exp())),
        Activation::Silu => v.div(one.add(v.mul(V8::splat(-1.0)).exp())),
        // tanh(x) = 2 / (1 + e^(-2x)) - 1.
        Activation::Tanh => V8::splat(2.0)
            .div(one.add(v.mul(V8::splat(-2.0)).exp()))
            .add(V8::splat(-1.0)),
        // x/2 · (1 + erf(x/√2)), erf as `crate::graph::erf` computes it.
        Activation::Gelu => {
            use crate::graph::{ERF_P, ERF_Q};
            let c = v
                .mul(V8::splat(std::f32::consts::FRAC_1_SQRT_2))
                .max(V8::splat(-4.0))
                .min(V8::splat(4.0));
            let x2 = c.mul(c);
            let p = (ERF_P[1..].iter()).fold(V8::splat(ERF_P[0]), |a, &k| V8::splat(k).fma(a, x2));
            let q = (ERF_Q[1..].iter()).fold(V8::splat(ERF_Q[0]), |a, &k| V8::splat(k).fma(a, x2));
            let h = v.mul(V8::splat(0.5));
            h.fma(h, c.mul(p).div(q))
        }
    }
}

pub(crate) use crate::kernels::geom::zero_pad_lanes;

#[cfg(test)]
mod tests {
    use super::{act8, V8};
    use crate::graph::Activation;

    /// `exp` and the activations built on it against the scalar definitions, lane by lane.
    #[test]
    fn exp_and_transcendental_activations_match_the_scalar_definitions() {
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 0.005).collect();
        xs.extend((-300..=300).map(|i| i as f32 * 1e-6));
        xs.extend([-100.0, -90.0, -87.5, 88.5, 90.0, 100.0, 0.0, -0.0]);
        for chunk in xs.chunks(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let v = V8::from_array(lanes);
            let e = v.exp().to_array();
            for (&x, &got) in chunk.iter().zip(&e) {
                if (-87.0..=88.0).contains(&x) {
                    let want = x.exp();
                    assert!(
                        (got - want).abs() <= want.abs() * 2.5e-7,
                        "exp({x}) = {got}, want {want}"
                    );
                } else {
                    assert!(got.is_finite() && got >= 0.0, "exp({x}) = {got}");
                }
            }
            for act in [
                Activation::Sigmoid,
                Activation::Silu,
                Activation::Tanh,
                Activation::Gelu,
            ] {
                let y = act8(act, v).to_array();
                for (&x, &got) in chunk.iter().zip(&y) {
                    let want = act.apply(x);
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{act:?}({x}) = {got}, want {want}"
                    );
                }
            }
        }
    }
}
