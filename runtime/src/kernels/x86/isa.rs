//! The vector contract the x86 kernels are written over: one implementation per instruction
//! set ([`super::avx2::Avx2`], [`super::avx512::Avx512`]).
//!
//! Every method is `unsafe`: it must only run on a CPU with the implementation's features
//! (the tables are only returned after `is_x86_feature_detected!`), and pointer arguments
//! must be valid for the lanes they name. The methods are `#[inline(always)]` so that they
//! are compiled into the `#[target_feature]` functions of each table: its entry points, and
//! one function per tile size of each kernel ([`Isa::run_tiles`]).

use super::geom::Tile;
use crate::graph::Activation;

/// A register of `LANES` f32 and the operations the kernels need on it.
pub(crate) trait Isa {
    /// One vector register.
    type V: Copy;
    /// Floats per vector.
    const LANES: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// Loads `LANES` floats from `p`.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Loads `n < LANES` floats from `p`, zero in the other lanes; nothing past `p + n` is
    /// read.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    /// Stores `LANES` floats at `p`.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the first `n < LANES` lanes at `p`; nothing past `p + n` is written.
    unsafe fn store_n(p: *mut f32, n: usize, v: Self::V);
    /// `a * b + c`, fused.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise maximum.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise minimum.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`.
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// Each lane rounded to the nearest integer (halves to even).
    unsafe fn round(v: Self::V) -> Self::V;
    /// `2^n` for lanes `n` holding integers in `-126..=127`.
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// The first three lanes of every group of four, packed: lanes `4i .. 4i + 3` move to
    /// `3i .. 3i + 3` (pixels of three channels at a stride of four, made contiguous). The
    /// last `LANES / 4` lanes are unspecified.
    unsafe fn pack3(v: Self::V) -> Self::V;

    /// `t.run::<M>` on the `count` tiles from `p` (`p`, `p + M`, ...), as a function of its
    /// own per tile size, compiled with this ISA's features. Every tile size of a kernel
    /// inlined into the kernel's one entry function made functions of 60,000 instructions,
    /// and LLVM took most of CI's time to build them (`docs/decisions.md`, session 26).
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize);

    /// `p * 2^n` for lanes `n` holding integers in `-126..=127`.
    #[inline(always)]
    unsafe fn scale_pow2(p: Self::V, n: Self::V) -> Self::V {
        Self::mul(p, Self::pow2i(n))
    }

    /// `1 / d` for finite `d >= 1` (the sigmoid family's denominators), within 2 ulp.
    #[inline(always)]
    unsafe fn recip(d: Self::V) -> Self::V {
        Self::div(Self::splat(1.0), d)
    }

    /// The sum of the lanes of `v`.
    #[inline(always)]
    unsafe fn reduce_add(v: Self::V) -> f32 {
        let mut buf = [0f32; 16];
        Self::store(buf.as_mut_ptr(), v);
        buf[..Self::LANES].iter().sum()
    }

    /// `v` clamped to `[-bound, bound]` (`bound >= 0`).
    #[inline(always)]
    unsafe fn clamp_abs(v: Self::V, bound: f32) -> Self::V {
        Self::min(Self::max(v, Self::splat(-bound)), Self::splat(bound))
    }

    /// `2^y` on every lane, within 3e-7 relative of the exact value for `y` in
    /// `[-126, 126]`; the input is clamped to that range (see [`crate::kernels::expf`]).
    #[inline(always)]
    unsafe fn exp2(y: Self::V) -> Self::V {
        use crate::kernels::expf::EXP2_POLY;
        let y = Self::clamp_abs(y, 126.0);
        let n = Self::round(y);
        let f = Self::sub(y, n);
        let mut p = Self::splat(EXP2_POLY[0]);
        for c in &EXP2_POLY[1..] {
            p = Self::fmadd(p, f, Self::splat(*c));
        }
        Self::scale_pow2(p, n)
    }

    /// `a - b` (exact: `b * -1` is exact, so the fused form rounds once).
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        Self::fmadd(b, Self::splat(-1.0), a)
    }

    /// Loads up to `LANES` floats: all of them when `n >= LANES`, else `n` and zeros.
    #[inline(always)]
    unsafe fn load_upto(p: *const f32, n: usize) -> Self::V {
        if n >= Self::LANES {
            Self::load(p)
        } else {
            Self::load_n(p, n)
        }
    }

    /// Stores up to `LANES` floats: all of them when `n >= LANES`, else the first `n`.
    #[inline(always)]
    unsafe fn store_upto(p: *mut f32, n: usize, v: Self::V) {
        if n >= Self::LANES {
            Self::store(p, v)
        } else {
            Self::store_n(p, n, v)
        }
    }

    /// `act` on every lane; matches [`Activation::apply`] to a few ulp (the transcendental
    /// activations use [`Isa::exp2`]).
    #[inline(always)]
    unsafe fn act(act: Activation, v: Self::V) -> Self::V {
        let zero = Self::zero();
        match act {
            Activation::None => v,
            Activation::Relu => Self::max(v, zero),
            Activation::Clip { min, max } => {
                Self::min(Self::max(v, Self::splat(min)), Self::splat(max))
            }
            Activation::LeakyRelu { alpha } => {
                Self::fmadd(Self::min(v, zero), Self::splat(alpha), Self::max(v, zero))
            }
            Activation::HardSigmoid { alpha, beta } => Self::min(
                Self::max(Self::fmadd(v, Self::splat(alpha), Self::splat(beta)), zero),
                Self::splat(1.0),
            ),
            Activation::HardSwish => {
                let g = Self::fmadd(v, Self::splat(1.0 / 6.0), Self::splat(0.5));
                Self::mul(v, Self::min(Self::max(g, zero), Self::splat(1.0)))
            }
            // e^(-x) = 2^(-x log2 e). The denominators `1 + e^(-x)` are finite and at least
            // 1: `exp2` clamps.
            Activation::Sigmoid => Self::recip(Self::add(
                Self::splat(1.0),
                Self::exp2(Self::mul(v, Self::splat(-std::f32::consts::LOG2_E))),
            )),
            Activation::Silu => Self::mul(
                v,
                Self::recip(Self::add(
                    Self::splat(1.0),
                    Self::exp2(Self::mul(v, Self::splat(-std::f32::consts::LOG2_E))),
                )),
            ),
            Activation::Tanh => {
                // tanh(x) = 2 / (1 + e^(-2x)) - 1.
                let one = Self::splat(1.0);
                let s = Self::recip(Self::add(
                    one,
                    Self::exp2(Self::mul(v, Self::splat(-2.0 * std::f32::consts::LOG2_E))),
                ));
                Self::fmadd(s, Self::splat(2.0), Self::splat(-1.0))
            }
            // x/2 · (1 + erf(x/√2)), erf as `crate::graph::erf` computes it.
            Activation::Gelu => {
                use crate::graph::{ERF_P, ERF_Q};
                let u = Self::mul(v, Self::splat(std::f32::consts::FRAC_1_SQRT_2));
                let c = Self::clamp_abs(u, 4.0);
                let x2 = Self::mul(c, c);
                // Loops, not `fold`: its closure would be a function of its own, compiled
                // without the target features, calling each intrinsic instead of inlining it.
                let mut p = Self::splat(ERF_P[0]);
                for &k in &ERF_P[1..] {
                    p = Self::fmadd(p, x2, Self::splat(k));
                }
                let mut q = Self::splat(ERF_Q[0]);
                for &k in &ERF_Q[1..] {
                    q = Self::fmadd(q, x2, Self::splat(k));
                }
                let h = Self::mul(v, Self::splat(0.5));
                Self::fmadd(h, Self::div(Self::mul(c, p), q), h)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Isa;
    use crate::graph::Activation;

    /// `exp2` and the activations built on it against the scalar definitions, lane by lane,
    /// over `[-100, 100]` (beyond the clamp for the activations; `2^y` is checked up to
    /// `|y| = 126` and clamped past it) and the small values where cancellation bites.
    fn check<I: Isa>() {
        let mut xs: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 0.005).collect();
        xs.extend((-300..=300).map(|i| i as f32 * 1e-6));
        xs.extend([-100.0, -90.0, -87.5, 88.5, 90.0, 100.0, 0.0, -0.0]);
        for chunk in xs.chunks(I::LANES) {
            let mut buf = vec![0.0f32; I::LANES];
            buf[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: the caller checked the CPU features; `buf` holds LANES floats.
            let v = unsafe { I::load(buf.as_ptr()) };
            let y = unsafe { I::mul(v, I::splat(1.26)) };
            let e = unsafe { lanes::<I>(I::exp2(y)) };
            let ys = unsafe { lanes::<I>(y) };
            for (&y, &got) in ys.iter().zip(&e) {
                let want = (y as f64).clamp(-126.0, 126.0).exp2();
                assert!(
                    ((got as f64) - want).abs() <= 3e-7 * want,
                    "exp2({y}) = {got}, want {want}"
                );
            }
            for act in [
                Activation::Sigmoid,
                Activation::Silu,
                Activation::Tanh,
                Activation::Gelu,
            ] {
                let y = unsafe { lanes::<I>(I::act(act, v)) };
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

    unsafe fn lanes<I: Isa>(v: I::V) -> Vec<f32> {
        let mut out = vec![0.0f32; I::LANES];
        I::store(out.as_mut_ptr(), v);
        out
    }

    #[test]
    fn exp2_and_transcendental_activations_match_the_scalar_definitions() {
        check::<super::super::emu::Emu16>();
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // The AVX2 methods are inlined into this non-`target_feature` function; they are
            // correct there as long as the CPU has the features, which was just checked.
            check::<super::super::avx2::Avx2>();
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") {
            // As above, for the AVX-512 methods.
            check::<super::super::avx512::Avx512>();
        }
    }
}
