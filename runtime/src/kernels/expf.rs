//! The constants of the vector `exp` that every SIMD table computes the same way (Cephes'
//! `expf`): `x = n·ln 2 + r` with `n` an integer and `|r| ≤ ln 2 / 2`, then
//! `e^x = 2^n · (1 + r + r²·P(r))` with a degree-5 polynomial `P`.

/// Inputs are clamped to `[MIN, MAX]`, where `2^n` stays a normal f32.
pub const MIN: f32 = -87.0;
/// See [`MIN`].
pub const MAX: f32 = 88.0;
/// `ln 2` rounded so that `n · LN2_HI` is exact for the `n` that occur.
pub const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`.
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// `P`, highest degree first (Horner order).
pub const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
