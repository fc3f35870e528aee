//! Depthwise conv (`groups == C`, multiplier 1) over `DwBlock(LANES)` weights
//! (`[KH][KW][round_up(C, LANES)]`), written once over [`Isa`].
//!
//! 3x3, 5x5 and 7x7 ([`DwTile::row_sliding`]): per output row and vector of channels, the window
//! slides along the row with the taps' weights held in registers; each of the `K` input
//! rows is a pointer and a step, and a row in the padding is a run of zeros with step 0,
//! so the loop never branches. Four pixels are computed together (independent
//! accumulators), in two output rows at once where the registers allow (3x3: the rows
//! share their input rows). When the input rows of the output rows to compute fit in
//! scratch as a zero-padded plane of one channel vector ([`DwTile::plane_rows`], maps up to
//! about 28x28), they are copied there first and every pixel slides; otherwise the pixels
//! whose window crosses the left or right padding go through the table path below, one at
//! a time.
//!
//! Other sizes, and those edge pixels: tiles of `MR` pixels along the row, vectors of
//! channels, taps. For 3x3 and 5x5 each tile first builds a table of input addresses per tap
//! and pixel, pointing taps in the padding at zeros in scratch; other kernel sizes check
//! each tap, pixel by pixel at the edges.

/// Scratch of the depthwise kernels: one vector-padded run of zero channels, then room for
/// the padded input plane of [`DwTile::plane_rows`] over one image, when the conv takes
/// that path ([`plane_len`]).
pub(crate) fn scratch<const LANES: usize>(
    c: &crate::graph::Conv,
    xs: crate::kernels::Act4,
    ys: crate::kernels::Act4,
) -> usize {
    let g = Geom::new(c, xs, ys);
    (c.out_c as usize).div_ceil(LANES) * LANES + plane_len(&g, g.oh, LANES).unwrap_or(0)
}

/// Largest padded input plane (floats) of one channel vector that [`DwTile::plane_rows`]
/// builds: 64 KiB, about one image of 28x28 at 5x5 stride 1 with 16 lanes.
const PLANE_MAX: usize = 16384;

/// Floats of the padded plane of `rows` output rows (one vector of `lanes` channels) when
/// the conv takes the plane path: 5x5 and 7x7 at stride 1 along W, dilation 1 (4 and 6 edge
/// pixels a row; 3x3, and 5x5 at stride 2 with a plane 4 times the output, measured slower
/// this way on 7x7 and 14x14 maps), within [`PLANE_MAX`].
fn plane_len(g: &Geom, rows: usize, lanes: usize) -> Option<usize> {
    let k = [g.kh, g.kw, g.sw, g.dh, g.dw];
    let path = k == [5, 5, 1, 1, 1] || k == [7, 7, 1, 1, 1];
    let len = ((rows.max(1) - 1) * g.sh + g.kh) * ((g.ow.max(1) - 1) * g.sw + g.kw) * lanes;
    (path && len <= PLANE_MAX).then_some(len)
}

use super::geom::{for_each_tile, zero_pad_lanes, Geom, Tile};
use super::isa::Isa;
use crate::graph::Activation;
use crate::kernels::ConvArgs;
use std::marker::PhantomData;

/// The depthwise conv. `KH`/`KW` are the kernel size, or 0 to read it from the conv.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn dw<I: Isa, const KH: usize, const KW: usize, const MR: usize>(
    a: &mut ConvArgs,
) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw));
    assert!(g.ic == g.oc && a.conv.groups as usize == g.oc);
    let cp = g.oc.div_ceil(I::LANES) * I::LANES;
    // These bounds make every pointer the tile code forms valid.
    assert!(a.w.len() >= g.kh * g.kw * cp);
    assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    assert!(a.rows.end <= a.ys.rows() && g.xcs >= g.ic && g.ycs >= g.oc);
    assert!(a.bias.is_none_or(|b| b.len() >= g.oc));
    assert!(a.residual.is_none_or(|r| r.len() >= a.ys.len()));
    assert!(a.scratch.len() >= cp);
    let (zeros, plane) = a.scratch.split_at_mut(cp);
    zeros.fill(0.0);
    let mut t = DwTile::<I, KH, KW> {
        zeros: zeros.as_ptr(),
        g,
        x: a.x.as_ptr(),
        w: a.w.as_ptr(),
        cp,
        bias: a.bias,
        residual: a.residual.map(|r| r.as_ptr()),
        y: a.y.as_mut_ptr(),
        act: a.conv.act,
        row: 0,
        _isa: PhantomData,
    };
    let sliding =
        KH == KW && (KH == 3 || KH == 5 || KH == 7) && g.dh == 1 && g.dw == 1 && g.sw <= 2;
    if !(sliding && t.plane_rows(a.rows.clone(), plane)) {
        // 3x3 runs output rows in pairs ([`DwTile::row_sliding`]); 5x5 does not, since its
        // 25 weights and two rows' 8 accumulators would not fit 32 vector registers.
        let pairs = sliding && KH == 3 && g.sh == g.sw;
        let mut row = a.rows.start;
        while row < a.rows.end {
            t.row = row;
            if pairs && row + 1 < a.rows.end && row % g.oh + 1 < g.oh {
                t.row_sliding::<2>();
                row += 2;
                continue;
            }
            if sliding {
                t.row_sliding::<1>();
            } else {
                for_each_tile::<I, MR>(0, g.ow, &mut t);
            }
            row += 1;
        }
    }
    let pixels = a.rows.len() * g.ow;
    zero_pad_lanes(a.y, a.rows.start * g.ow * g.ycs, pixels, g.oc, g.ycs);
}

/// One output row of a depthwise conv.
struct DwTile<'a, I: Isa, const KH: usize, const KW: usize> {
    g: Geom,
    x: *const f32,
    w: *const f32,
    /// Channels rounded up to `LANES`: the weights' tap stride.
    cp: usize,
    bias: Option<&'a [f32]>,
    residual: Option<*const f32>,
    y: *mut f32,
    act: Activation,
    row: usize,
    /// `cp` zeros, read for taps in the padding.
    zeros: *const f32,
    _isa: PhantomData<I>,
}

impl<I: Isa, const KH: usize, const KW: usize> Tile for DwTile<'_, I, KH, KW> {
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        if KH == 0 || KW == 0 || KH * KW > MAX_TAPS {
            return self.run_checked::<M>(ox0);
        }
        // Per tap and pixel, the input pixel's address, or `cp` zeros in scratch when the
        // tap falls into the padding: the channel loop below never branches.
        let (n, oy) = (self.row / g.oh, self.row % g.oh);
        let mut xp = [[self.zeros; M]; MAX_TAPS];
        for ky in 0..KH {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            let xrow = (n * g.ih + iy) * g.iw;
            for kx in 0..KW {
                for (m, p) in xp[ky * KW + kx].iter_mut().enumerate() {
                    if let Some(ix) = g.in_x(ox0 + m, kx) {
                        *p = self.x.add((xrow + ix) * g.xcs);
                    }
                }
            }
        }
        let ybase = (self.row * g.ow + ox0) * g.ycs;
        let mut c0 = 0;
        while c0 + I::LANES <= g.oc {
            self.channels::<M, true>(&xp, ybase, c0);
            c0 += I::LANES;
        }
        if c0 < g.oc {
            self.channels::<M, false>(&xp, ybase, c0);
        }
    }
}

/// An activation that is a clamp (none, ReLU, Clip) as its bounds, applied without the
/// per-store dispatch of [`Isa::act`]; `None` for the others.
type Clamp<I> = Option<(Option<<I as Isa>::V>, Option<<I as Isa>::V>)>;

/// The [`Clamp`] of `act`.
///
/// # Safety
/// The ISA is available.
#[inline(always)]
pub(crate) unsafe fn clamp_of<I: Isa>(act: Activation) -> Clamp<I> {
    match act {
        Activation::None => Some((None, None)),
        Activation::Relu => Some((Some(I::zero()), None)),
        Activation::Clip { min, max } => Some((Some(I::splat(min)), Some(I::splat(max)))),
        _ => None,
    }
}

/// Taps of the largest kernel the pointer-table path handles (5x5).
const MAX_TAPS: usize = 25;

/// Input rows of [`DwTile::slide`]: two output rows of the largest sliding kernel (5x5) at
/// stride 2.
const MAX_ROWS: usize = 7;

impl<I: Isa, const KH: usize, const KW: usize> DwTile<'_, I, KH, KW> {
    /// Output rows `rows` of a depthwise conv that takes the plane path ([`plane_len`]), one
    /// vector of channels at a time: the input rows they read are first copied into `buf` as a plane of
    /// `LANES`-wide pixels with zeros for the padding all around, so that every output pixel
    /// is interior and runs [`DwTile::slide`] (on small maps, 7x7 or 14x14, most pixels
    /// would otherwise be at an edge), and the pixels of the plane are adjacent in memory.
    /// Returns false, doing nothing, when the conv does not take this path, the rows are a
    /// short band of a wide map, or `buf` is too small for the plane.
    #[inline(always)]
    unsafe fn plane_rows(&mut self, rows: std::ops::Range<usize>, buf: &mut [f32]) -> bool {
        let g = self.g;
        let l = I::LANES;
        let pw = (g.ow - 1) * g.sw + KW;
        let most = rows.len().min(g.oh);
        // Worth it where edge pixels are a large share (narrow maps), or when whole images
        // run (no band of a few rows re-copying 4 rows).
        let Some(need) = plane_len(&g, most, l) else {
            return false;
        };
        if rows.is_empty() || need > buf.len() || (g.ow > 32 && most < g.oh) {
            return false;
        }
        let buf = buf.as_mut_ptr();
        let mut r = rows.start;
        while r < rows.end {
            let (n, oy0) = (r / g.oh, r % g.oh);
            let oy1 = (oy0 + rows.end - r).min(g.oh);
            let ph = (oy1 - oy0 - 1) * g.sh + KH;
            let mut c0 = 0;
            while c0 < g.oc {
                let nl = (g.oc - c0).min(l);
                for py in 0..ph {
                    let dst = buf.add(py * pw * l);
                    let iy = (oy0 * g.sh + py).checked_sub(g.pt).filter(|&iy| iy < g.ih);
                    let Some(iy) = iy else {
                        for px in 0..pw {
                            I::store(dst.add(px * l), I::zero());
                        }
                        continue;
                    };
                    let src = self.x.add((n * g.ih + iy) * g.iw * g.xcs + c0);
                    for px in 0..pw {
                        let v = match px.checked_sub(g.pl).filter(|&ix| ix < g.iw) {
                            Some(ix) => I::load_upto(src.add(ix * g.xcs), nl),
                            None => I::zero(),
                        };
                        I::store(dst.add(px * l), v);
                    }
                }
                for oy in oy0..oy1 {
                    let mut taps = [(buf as *const f32, l); MAX_ROWS];
                    for (ky, t) in taps.iter_mut().enumerate().take(KH) {
                        t.0 = buf.add(((oy - oy0) * g.sh + ky) * pw * l);
                    }
                    let ybase = (n * g.oh + oy) * g.ow * g.ycs;
                    match (nl == l, g.sw) {
                        (true, 1) => self.slide::<true, 1, 1>(&taps, ybase, g.ow, c0, 0),
                        (true, _) => self.slide::<true, 2, 1>(&taps, ybase, g.ow, c0, 0),
                        (false, 1) => self.slide::<false, 1, 1>(&taps, ybase, g.ow, c0, 0),
                        (false, _) => self.slide::<false, 2, 1>(&taps, ybase, g.ow, c0, 0),
                    }
                }
                c0 += l;
            }
            r += oy1 - oy0;
        }
        true
    }

    /// `R` output rows (1, or 2 of one image at the same stride along H and W) from
    /// `self.row` of a `KH x KW` (3x3 or 5x5) depthwise conv: see the module docs. The
    /// interior pixels of the rows run together in [`DwTile::slide`].
    #[inline(always)]
    unsafe fn row_sliding<const R: usize>(&mut self) {
        let g = self.g;
        let row = self.row;
        let (n, oy) = (row / g.oh, row % g.oh);
        // Pixels whose taps all fall inside the row: `lo..hi`.
        let std::ops::Range { start: lo, end: hi } = g.interior_x();
        for r in row..row + R {
            self.row = r;
            for ox in (0..lo).chain(hi..g.ow) {
                self.run::<1>(ox);
            }
        }
        self.row = row;
        if lo == hi {
            return;
        }
        // Per input row `oy * sh - pt + i`: the input of pixel `lo` at tap column 0, and the
        // step from one input column to the next (zeros and 0 for a row in the padding).
        let mut rows = [(self.zeros, 0usize); MAX_ROWS];
        for (i, r) in rows.iter_mut().enumerate().take(KH + (R - 1) * g.sh) {
            if let Some(iy) = (oy * g.sh + i).checked_sub(g.pt).filter(|&iy| iy < g.ih) {
                let col = lo * g.sw - g.pl;
                *r = (self.x.add(((n * g.ih + iy) * g.iw + col) * g.xcs), g.xcs);
            }
        }
        let ybase = (row * g.ow + lo) * g.ycs;
        let count = hi - lo;
        let mut c0 = 0;
        while c0 + I::LANES <= g.oc {
            match g.sw {
                1 => self.slide::<true, 1, R>(&rows, ybase, count, c0, c0),
                _ => self.slide::<true, 2, R>(&rows, ybase, count, c0, c0),
            }
            c0 += I::LANES;
        }
        if c0 < g.oc {
            match g.sw {
                1 => self.slide::<false, 1, R>(&rows, ybase, count, c0, c0),
                _ => self.slide::<false, 2, R>(&rows, ybase, count, c0, c0),
            }
        }
    }

    /// `LANES` floats at `p`, or the first `nl` of them (the rest zero) when not `FULL`.
    #[inline(always)]
    unsafe fn load_c<const FULL: bool>(p: *const f32, nl: usize) -> I::V {
        if FULL {
            I::load(p)
        } else {
            I::load_n(p, nl)
        }
    }

    /// Stores `v` (plus the residual, through the activation) at output element `at`: all
    /// `LANES` channels, or the first `nl` when not `FULL`. `clamp` is [`clamp_of`] the
    /// activation, worked out once per row.
    #[inline(always)]
    unsafe fn store_c<const FULL: bool>(&self, at: usize, nl: usize, v: I::V, clamp: Clamp<I>) {
        let mut v = v;
        if let Some(r) = self.residual {
            v = I::add(v, Self::load_c::<FULL>(r.add(at), nl));
        }
        let v = match clamp {
            Some((lo, hi)) => {
                if let Some(lo) = lo {
                    v = I::max(v, lo);
                }
                if let Some(hi) = hi {
                    v = I::min(v, hi);
                }
                v
            }
            None => I::act(self.act, v),
        };
        if FULL {
            I::store(self.y.add(at), v)
        } else {
            I::store_n(self.y.add(at), nl, v)
        }
    }

    /// Channels `c0..` of `count` consecutive interior pixels of `R` output rows at stride
    /// `S` (see [`DwTile::row_sliding`]; two rows need the same stride along H); `FULL` as
    /// in [`DwTile::channels`]. Each group of `PX` pixels loads each input column of the
    /// `KH + (R - 1) * S` input rows once and uses it for every pixel and output row whose
    /// window covers it: input row `i` is tap row `i - r * S` of output row `r`. With two
    /// rows each input column serves both (4 input rows instead of 6 at stride 1), and
    /// eight chains of multiply-adds instead of four hide their latency. Every output sums
    /// its taps in the same order whatever `R`, so the results are the same bit for bit.
    /// The inputs of the channels are at `xc0` from the row pointers; output row `r` starts
    /// at `ybase + r * ow * ycs`.
    #[inline(always)]
    unsafe fn slide<const FULL: bool, const S: usize, const R: usize>(
        &self,
        rows: &[(*const f32, usize); MAX_ROWS],
        ybase: usize,
        count: usize,
        c0: usize,
        xc0: usize,
    ) {
        // No closures here: they would not inherit the caller's target features, and the
        // intrinsics in them would become calls.
        const PX: usize = 4;
        let g = &self.g;
        let nl = g.oc - c0;
        let below = g.ow * g.ycs;
        let mut wv = [[I::zero(); KW]; KH];
        for (ky, row) in wv.iter_mut().enumerate() {
            for (kx, w) in row.iter_mut().enumerate() {
                *w = I::load(self.w.add((ky * KW + kx) * self.cp + c0));
            }
        }
        let b = match self.bias {
            Some(b) => Self::load_c::<FULL>(b.as_ptr().add(c0), nl),
            None => I::zero(),
        };
        let clamp = clamp_of::<I>(self.act);
        let in_rows = KH + (R - 1) * S;
        let mut m = 0;
        while m + PX <= count {
            let mut acc = [[b; PX]; R];
            for (i, &(p, xs)) in rows.iter().enumerate().take(in_rows) {
                let p = p.add(m * S * xs + xc0);
                // Input column `c` feeds pixel `j` at tap `c - j * S`.
                for c in 0..(PX - 1) * S + KW {
                    let x = Self::load_c::<FULL>(p.add(c * xs), nl);
                    for j in 0..PX {
                        if c >= j * S && c - j * S < KW {
                            for (r, acc) in acc.iter_mut().enumerate() {
                                if i >= r * S && i - r * S < KH {
                                    let w = wv[i - r * S][c - j * S];
                                    acc[j] = I::fmadd(x, w, acc[j]);
                                }
                            }
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (j, &v) in acc.iter().enumerate() {
                    let at = ybase + r * below + (m + j) * g.ycs + c0;
                    self.store_c::<FULL>(at, nl, v, clamp);
                }
            }
            m += PX;
        }
        while m < count {
            let mut acc = [b; R];
            for (i, &(p, xs)) in rows.iter().enumerate().take(in_rows) {
                let p = p.add(m * S * xs + xc0);
                // `kx` picks the tap in a different weight row for each output row.
                #[allow(clippy::needless_range_loop)]
                for kx in 0..KW {
                    let x = Self::load_c::<FULL>(p.add(kx * xs), nl);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        if i >= r * S && i - r * S < KH {
                            *acc = I::fmadd(x, wv[i - r * S][kx], *acc);
                        }
                    }
                }
            }
            for (r, &v) in acc.iter().enumerate() {
                self.store_c::<FULL>(ybase + r * below + m * g.ycs + c0, nl, v, clamp);
            }
            m += 1;
        }
    }

    /// One vector of channels `c0..` of `M` pixels; `FULL`: all `LANES` channels are real
    /// (else the vector is the channel tail, loaded and stored masked).
    #[inline(always)]
    unsafe fn channels<const M: usize, const FULL: bool>(
        &self,
        xp: &[[*const f32; M]; MAX_TAPS],
        ybase: usize,
        c0: usize,
    ) {
        let g = &self.g;
        let nl = g.oc - c0;
        let load = |p: *const f32| {
            if FULL {
                I::load(p)
            } else {
                I::load_n(p, nl)
            }
        };
        let b = match self.bias {
            Some(b) => load(b.as_ptr().add(c0)),
            None => I::zero(),
        };
        let mut acc = [b; M];
        for (t, xt) in xp.iter().enumerate().take(KH * KW) {
            let wv = I::load(self.w.add(t * self.cp + c0));
            for (acc, &p) in acc.iter_mut().zip(xt) {
                *acc = I::fmadd(load(p.add(c0)), wv, *acc);
            }
        }
        for (m, acc) in acc.iter().enumerate() {
            let at = ybase + m * g.ycs + c0;
            let mut v = *acc;
            if let Some(r) = self.residual {
                v = I::add(v, load(r.add(at)));
            }
            let v = I::act(self.act, v);
            if FULL {
                I::store(self.y.add(at), v)
            } else {
                I::store_n(self.y.add(at), nl, v)
            }
        }
    }

    /// Any kernel size: taps checked one by one; tiles whose windows touch the left or right
    /// padding go pixel by pixel.
    #[inline(always)]
    unsafe fn run_checked<const M: usize>(&mut self, ox0: usize) {
        let g = self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        if M > 1 && (g.in_x(ox0, 0).is_none() || g.in_x(ox0 + M - 1, kw - 1).is_none()) {
            for m in 0..M {
                self.run_checked::<1>(ox0 + m);
            }
            return;
        }
        let (n, oy) = (self.row / g.oh, self.row % g.oh);
        let step = g.sw * g.xcs;
        let ybase = (self.row * g.ow + ox0) * g.ycs;
        for c0 in (0..g.oc).step_by(I::LANES) {
            let nl = g.oc - c0;
            let b = match self.bias {
                Some(b) => I::load_upto(b.as_ptr().add(c0), nl),
                None => I::zero(),
            };
            let mut acc = [b; M];
            for ky in 0..kh {
                let Some(iy) = g.in_y(oy, ky) else { continue };
                let xrow = (n * g.ih + iy) * g.iw;
                for kx in 0..kw {
                    // For M > 1 every tap is inside (checked above).
                    let Some(ix0) = g.in_x(ox0, kx) else { continue };
                    let wv = I::load(self.w.add((ky * kw + kx) * self.cp + c0));
                    let xp = self.x.add((xrow + ix0) * g.xcs + c0);
                    for (m, acc) in acc.iter_mut().enumerate() {
                        let xv = I::load_upto(xp.add(m * step), nl);
                        *acc = I::fmadd(xv, wv, *acc);
                    }
                }
            }
            for (m, acc) in acc.iter().enumerate() {
                let at = ybase + m * g.ycs + c0;
                let mut v = *acc;
                if let Some(r) = self.residual {
                    v = I::add(v, I::load_upto(r.add(at), nl));
                }
                I::store_upto(self.y.add(at), nl, I::act(self.act, v));
            }
        }
    }
}
