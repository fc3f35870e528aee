//! The vector contract the x86 kernels are written over: one implementation per instruction
//! set ([`super::avx2::Avx2`], [`super::avx512::Avx512`]).
//!
//! Every method is `unsafe`: it must only run on a CPU with the implementation's features
//! (the tables are only returned after `is_x86_feature_detected!`), and pointer arguments
//! must be valid for the lanes they name. The methods are `#[inline(always)]` so that they
//! are compiled into the `#[target_feature]` entry points of each table.

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

    /// `act` on every lane; matches [`Activation::apply`] (the transcendental activations go
    /// through the scalar definition lane by lane).
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
            Activation::Sigmoid | Activation::Silu | Activation::Tanh => {
                let mut buf = [0.0f32; 16];
                debug_assert!(Self::LANES <= buf.len());
                Self::store(buf.as_mut_ptr(), v);
                for e in &mut buf[..Self::LANES] {
                    *e = act.apply(*e);
                }
                Self::load(buf.as_ptr())
            }
        }
    }
}
