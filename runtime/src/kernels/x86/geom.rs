//! The x86 drivers' tiling helpers; the conv geometry is [`crate::kernels::geom::Geom`].

pub(crate) use crate::kernels::geom::Geom;

pub(crate) use crate::kernels::geom::zero_pad_lanes;

use super::isa::Isa;

/// A computation over a tile of `M` consecutive pixels (or batch items) starting at `p`.
pub(crate) trait Tile {
    /// Computes the `M` items starting at `p`.
    ///
    /// # Safety
    /// The implementation's instruction set must be available.
    unsafe fn run<const M: usize>(&mut self, p: usize);
}

/// `t.run::<M>` on the `count` tiles from `p`: the body of every ISA's [`Isa::run_tiles`],
/// inlined into each one's out-of-line `#[target_feature]` function.
///
/// # Safety
/// As [`Tile::run`].
#[inline(always)]
pub(crate) unsafe fn run_tiles_inline<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
    for i in 0..count {
        t.run::<M>(p + i * M);
    }
}

/// How [`for_each_tile`] runs a number of tiles of one size: every [`Isa`] through its
/// out-of-line [`Isa::run_tiles`], or [`Inline`].
pub(crate) trait TileRunner {
    /// `t.run::<M>` on the `count` tiles from `p`.
    ///
    /// # Safety
    /// As [`Tile::run`].
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize);
}

impl<I: Isa> TileRunner for I {
    #[inline(always)]
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
        I::run_tiles::<T, M>(t, p, count)
    }
}

/// Tiles run inline, in the caller's function: for kernels whose instructions the ISA's
/// out-of-line tile functions do not enable (the bf16 and int8 pointwise kernels), which
/// would otherwise call each such intrinsic instead of inlining it.
pub(crate) struct Inline;

impl TileRunner for Inline {
    #[inline(always)]
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
        run_tiles_inline::<T, M>(t, p, count)
    }
}

/// Calls `t` over `start..end` in tiles of `MR` (at most 16) items, then one narrower tile,
/// through `R` ([`Isa::run_tiles`], a function of its own per tile size, or [`Inline`]).
/// A tail of fewer than `MR / 2` items is evened out with the last full tile instead (49
/// pixels in tiles of 12: 12, 12, 12, 7, 6), because a tile of a few rows has too few
/// accumulators to hide the multiply-add latency: a 1-pixel tile runs at a quarter of the
/// FMA rate, and at 7x7 it is a tenth of the layer's multiply-adds.
///
/// # Safety
/// As [`Tile::run`].
#[inline(always)]
pub(crate) unsafe fn for_each_tile<R: TileRunner, const MR: usize>(
    start: usize,
    end: usize,
    t: &mut impl Tile,
) {
    let items = end.saturating_sub(start);
    let (full, tail) = (items / MR, items % MR);
    let (full, halves) = if full > 0 && tail > 0 && tail < MR / 2 {
        let both = MR + tail;
        (full - 1, [both.div_ceil(2), both / 2])
    } else {
        (full, [tail, 0])
    };
    R::run_tiles::<_, MR>(t, start, full);
    let mut p = start + full * MR;
    for n in halves {
        run_narrow::<R, MR>(t, p, n);
        p += n;
    }
}

/// One tile of `n < MR` items (none for 0), or of `MR` items for `n == MR`.
///
/// # Safety
/// As [`Tile::run`].
#[inline(always)]
unsafe fn run_narrow<R: TileRunner, const MR: usize>(t: &mut impl Tile, p: usize, n: usize) {
    match n {
        1 => R::run_tiles::<_, 1>(t, p, 1),
        2 if MR > 2 => R::run_tiles::<_, 2>(t, p, 1),
        3 if MR > 3 => R::run_tiles::<_, 3>(t, p, 1),
        4 if MR > 4 => R::run_tiles::<_, 4>(t, p, 1),
        5 if MR > 5 => R::run_tiles::<_, 5>(t, p, 1),
        6 if MR > 6 => R::run_tiles::<_, 6>(t, p, 1),
        7 if MR > 7 => R::run_tiles::<_, 7>(t, p, 1),
        8 if MR > 8 => R::run_tiles::<_, 8>(t, p, 1),
        9 if MR > 9 => R::run_tiles::<_, 9>(t, p, 1),
        10 if MR > 10 => R::run_tiles::<_, 10>(t, p, 1),
        11 if MR > 11 => R::run_tiles::<_, 11>(t, p, 1),
        12 if MR > 12 => R::run_tiles::<_, 12>(t, p, 1),
        13 if MR > 13 => R::run_tiles::<_, 13>(t, p, 1),
        14 if MR > 14 => R::run_tiles::<_, 14>(t, p, 1),
        15 if MR > 15 => R::run_tiles::<_, 15>(t, p, 1),
        n if n == MR => R::run_tiles::<_, MR>(t, p, 1),
        _ => {}
    }
}
