//! The x86 drivers' tiling helpers; the conv geometry is [`crate::kernels::geom::Geom`].

pub(crate) use crate::kernels::geom::Geom;

pub(crate) use crate::kernels::geom::zero_pad_lanes;

/// A computation over a tile of `M` consecutive pixels (or batch items) starting at `p`.
pub(crate) trait Tile {
    /// Computes the `M` items starting at `p`.
    ///
    /// # Safety
    /// The implementation's instruction set must be available.
    unsafe fn run<const M: usize>(&mut self, p: usize);
}

/// Calls `t` over `start..end` in tiles of `MR` (at most 16) items, then one narrower tile.
/// A tail of fewer than `MR / 2` items is evened out with the last full tile instead (49
/// pixels in tiles of 12: 12, 12, 12, 7, 6), because a tile of a few rows has too few
/// accumulators to hide the multiply-add latency: a 1-pixel tile runs at a quarter of the
/// FMA rate, and at 7x7 it is a tenth of the layer's multiply-adds.
///
/// # Safety
/// As [`Tile::run`].
#[inline(always)]
pub(crate) unsafe fn for_each_tile<const MR: usize>(start: usize, end: usize, t: &mut impl Tile) {
    let items = end.saturating_sub(start);
    let (full, tail) = (items / MR, items % MR);
    let (full, halves) = if full > 0 && tail > 0 && tail < MR / 2 {
        let both = MR + tail;
        (full - 1, [both.div_ceil(2), both / 2])
    } else {
        (full, [tail, 0])
    };
    let mut p = start;
    for _ in 0..full {
        t.run::<MR>(p);
        p += MR;
    }
    for n in halves {
        run_narrow::<MR>(t, p, n);
        p += n;
    }
}

/// One tile of `n < MR` items (none for 0), or of `MR` items for `n == MR`.
///
/// # Safety
/// As [`Tile::run`].
#[inline(always)]
unsafe fn run_narrow<const MR: usize>(t: &mut impl Tile, p: usize, n: usize) {
    match n {
        1 => t.run::<1>(p),
        2 if MR > 2 => t.run::<2>(p),
        3 if MR > 3 => t.run::<3>(p),
        4 if MR > 4 => t.run::<4>(p),
        5 if MR > 5 => t.run::<5>(p),
        6 if MR > 6 => t.run::<6>(p),
        7 if MR > 7 => t.run::<7>(p),
        8 if MR > 8 => t.run::<8>(p),
        9 if MR > 9 => t.run::<9>(p),
        10 if MR > 10 => t.run::<10>(p),
        11 if MR > 11 => t.run::<11>(p),
        12 if MR > 12 => t.run::<12>(p),
        13 if MR > 13 => t.run::<13>(p),
        14 if MR > 14 => t.run::<14>(p),
        15 if MR > 15 => t.run::<15>(p),
        n if n == MR => t.run::<MR>(p),
        _ => {}
    }
}
