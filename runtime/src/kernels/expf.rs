//! The constants of the vector exponentials.
//!
//! NEON's `exp` (Cephes' `expf`): `x = n·ln 2 + r` with `n` an integer and `|r| ≤ ln 2 / 2`,
//! then `e^x = 2^n · (1 + r + r²·P(r))` with a degree-5 polynomial `P`.
//!
//! The x86 tables' `exp2`, for the sigmoid family (`e^x = 2^(x·log2 e)`): `y = n + f` with
//! `n` an integer and `|f| ≤ 1/2`, then `2^y = 2^n · Q(f)` with a degree-5 polynomial `Q`
//! (fit to the relative error on `[-1/2, 1/2]`: 2.3e-7 in f32). Five fused multiply-adds
//! instead of Cephes' eight operations, and no second range-reduction step: the rounding
//! of `x·log2 e` costs up to 5e-6 relative for `|x|` near 88, where `1 / (1 + e^x)` no
//! longer depends on it; below `|x| = 10` the sigmoid stays within 1e-7.

/// Inputs are clamped to `[MIN, MAX]`, where `2^n` stays a normal f32.
#[cfg(target_arch = "aarch64")]
pub const MIN: f32 = -87.0;
/// See [`MIN`].
#[cfg(target_arch = "aarch64")]
pub const MAX: f32 = 88.0;
/// `ln 2` rounded so that `n · LN2_HI` is exact for the `n` that occur.
#[cfg(target_arch = "aarch64")]
pub const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`.
#[cfg(target_arch = "aarch64")]
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// `P`, highest degree first (Horner order).
#[cfg(target_arch = "aarch64")]
pub const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `Q`, highest degree first (Horner order): `2^f ≈ Q(f)` for `|f| ≤ 1/2`.
#[cfg(target_arch = "x86_64")]
pub const EXP2_POLY: [f32; 6] = [
    1.327_65e-3,
    9.675_54e-3,
    5.550_713e-2,
    2.402_212e-1,
    6.931_469_4e-1,
    1.000_000_1,
];

/// `R`, highest degree first (Horner order): `2^f ≈ R(f)` for `0 <= f < 1`, the AVX-512
/// `exp2`'s form (`y = floor(y) + f`, where `vreduceps` gives `f` and `vscalefps` applies
/// `2^floor(y)` from `y` itself). Fit to the relative error on `[0, 1)` by iteratively
/// reweighted least squares: 7.5e-8 with these coefficients in f64, 1.5e-7 evaluated in f32
/// with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
pub const EXP2_FLOOR_POLY: [f32; 6] = [
    1.877_574_3e-3,
    8.989_345e-3,
    5.582_631_4e-2,
    2.401_536_1e-1,
    6.931_531e-1,
    9.999_999_4e-1,
];
