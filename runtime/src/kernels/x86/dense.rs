//! The dense (ungrouped) conv and fully connected drivers, written once over [`Isa`] and a
//! `M x (NV * LANES)` register tile (`M` output pixels by `NV` vectors of output channels).
//!
//! Convs run as an implicit GEMM: the output pixels of `rows` are taken as one flat range and
//! cut into tiles of `MR` consecutive pixels (a tile may span rows). For every tap each pixel
//! of the tile gets a pointer to its input pixel, or to a zeroed scratch run of `IC` floats
//! when the tap falls into padding, so the inner loop ([`mac`]) never branches. Weights are
//! `ConvOcBlock(NV * LANES)`: `[OC/NB][KH][KW][IC][NB]`. Bias is the accumulators' initial
//! value; residual and activation are applied at the store.

use super::geom::{for_each_tile, zero_pad_lanes, Geom, Tile};
use super::isa::Isa;
use crate::graph::{Activation, Conv};
use crate::kernels::{is_last_share, share, Act4, ConvArgs, FcArgs};
use std::marker::PhantomData;

/// `acc[m][j] += sum_i x_m[i] * w[i][j]` for `i < k`: the microkernel of every dense kernel.
///
/// # Safety
/// `xp[m]` valid for `k` reads, `w` for `k * NV * LANES`; the ISA is available.
#[inline(always)]
pub(crate) unsafe fn mac<I: Isa, const M: usize, const NV: usize>(
    acc: &mut [[I::V; NV]; M],
    xp: &[*const f32; M],
    w: *const f32,
    k: usize,
) {
    mac_with::<I, M, NV, false>(acc, xp, w, NV * I::LANES, k, Prefetch::NONE);
}

/// Where a tile prefetches the weights read after it: at step `i` of its multiply-adds,
/// the cache line `(i * rate) >> 16` from `at` (and the line after it when `rate` is above
/// one line per step), into L2. A pointer anywhere: a prefetch never faults, and it is only
/// formed with wrapping arithmetic.
#[derive(Clone, Copy)]
pub(crate) struct Prefetch {
    at: *const f32,
    /// Lines per step, 16.16 fixed point.
    rate: usize,
}

impl Prefetch {
    /// The share of the `len` floats at `next` that the tile over items `from..to` of `of`
    /// prefetches while it runs its `steps` steps: floats `len * from / of` to
    /// `len * to / of`, spread evenly over the steps. The tiles of a block thus fetch the next
    /// block together at one steady rate (tiles that each fetched a fixed line of every step
    /// asked for the lines of a whole block in the first tile's time, faster than memory
    /// delivers them: `docs/decisions.md`, session 29).
    #[inline(always)]
    pub(crate) fn share(
        next: *const f32,
        len: usize,
        steps: usize,
        (from, to, of): (usize, usize, usize),
    ) -> Prefetch {
        let of = of.max(1);
        let start = len * from / of / LINE * LINE;
        let lines = (len * to / of).saturating_sub(start).div_ceil(LINE);
        Prefetch {
            at: next.wrapping_add(start),
            rate: ((lines << 16) / steps.max(1)).min(2 << 16),
        }
    }

    /// No prefetch (for the loops that make none).
    const NONE: Prefetch = Prefetch {
        at: std::ptr::null(),
        rate: 0,
    };

    /// The prefetch of the steps after the first `steps`.
    #[inline(always)]
    pub(crate) fn after(self, steps: usize) -> Prefetch {
        Prefetch {
            at: self.at.wrapping_add(((steps * self.rate) >> 16) * LINE),
            ..self
        }
    }
}

/// Floats per cache line.
const LINE: usize = 16;

/// How far ahead of its reads [`mac_one_row`] prefetches, in floats (4 KiB: 8 KiB gave the
/// same).
const ONE_ROW_AHEAD: usize = 1024;

/// [`mac`] that also prefetches, at each of the `k` steps, as `pf` says: a caller streaming
/// weights from memory points it at the weights it reads next, so that their fetch overlaps
/// this tile's multiply-adds.
///
/// # Safety
/// As [`mac`].
#[inline(always)]
pub(crate) unsafe fn mac_prefetch<I: Isa, const M: usize, const NV: usize>(
    acc: &mut [[I::V; NV]; M],
    xp: &[*const f32; M],
    w: *const f32,
    k: usize,
    pf: Prefetch,
) {
    mac_with::<I, M, NV, true>(acc, xp, w, NV * I::LANES, k, pf);
}

/// The loop of [`mac`] and [`mac_prefetch`]: prefetches only with `PF`. The weights of step
/// `i` are at `w + i * ws` (`ws >= NV * LANES`: a tile may use the first vectors of wider
/// blocks).
///
/// # Safety
/// As [`mac`], `w` valid for `(k - 1) * ws + NV * LANES` reads.
#[inline(always)]
unsafe fn mac_with<I: Isa, const M: usize, const NV: usize, const PF: bool>(
    acc: &mut [[I::V; NV]; M],
    xp: &[*const f32; M],
    w: *const f32,
    ws: usize,
    k: usize,
    pf: Prefetch,
) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    let nb = ws;
    // The accumulators in a local copy: multiply-adds on `acc` itself were compiled with a
    // store of every accumulator to the stack after each step for tiles narrower than `MR`
    // (a 6- or 7-pixel tile ran at a third of the rate of a 12-pixel one).
    let mut a = *acc;
    for i in 0..k {
        let wp = w.add(i * nb);
        if PF {
            let p = pf.at.wrapping_add(((i * pf.rate) >> 16) * LINE);
            _mm_prefetch::<_MM_HINT_T1>(p.cast());
            if pf.rate > 1 << 16 {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(LINE).cast());
            }
        }
        let wv: [I::V; NV] = std::array::from_fn(|j| I::load(wp.add(j * I::LANES)));
        for m in 0..M {
            let xb = I::splat(*xp[m].add(i));
            for j in 0..NV {
                a[m][j] = I::fmadd(xb, wv[j], a[m][j]);
            }
        }
    }
    *acc = a;
}

/// [`mac`] for one row (`M = 1`, a batch of one through a fully connected layer): the `k`
/// products go to `P` accumulators in turn, summed at the end, so that `P` multiply-adds
/// are in flight instead of one chain that waits on each add's latency. Weights `ws` apart
/// as in [`mac_with`], prefetched [`ONE_ROW_AHEAD`] floats ahead.
///
/// # Safety
/// As [`mac_with`].
#[inline(always)]
unsafe fn mac_one_row<I: Isa, const NV: usize, const P: usize>(
    acc: &mut [I::V; NV],
    x: *const f32,
    w: *const f32,
    ws: usize,
    k: usize,
) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let nb = ws;
    let mut part = [[I::zero(); NV]; P];
    let mut i = 0;
    while i + P <= k {
        // The lines `ONE_ROW_AHEAD` floats on: one row streams its weights once, and the
        // hardware's prefetch alone stops at each 4 KiB page (`docs/decisions.md`,
        // session 29).
        let ahead = w.wrapping_add(i * nb + ONE_ROW_AHEAD);
        for l in 0..(P * nb).div_ceil(LINE) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(l * LINE).cast());
        }
        for (p, part) in part.iter_mut().enumerate() {
            let xb = I::splat(*x.add(i + p));
            let wp = w.add((i + p) * nb);
            for (j, a) in part.iter_mut().enumerate() {
                *a = I::fmadd(xb, I::load(wp.add(j * I::LANES)), *a);
            }
        }
        i += P;
    }
    while i < k {
        let xb = I::splat(*x.add(i));
        let wp = w.add(i * nb);
        for (j, a) in part[0].iter_mut().enumerate() {
            *a = I::fmadd(xb, I::load(wp.add(j * I::LANES)), *a);
        }
        i += 1;
    }
    for part in &part {
        for (a, &p) in acc.iter_mut().zip(part) {
            *a = I::add(*a, p);
        }
    }
}

/// The initial accumulators of output channels `o0 .. o0 + NV * LANES`: the bias, zero for
/// channels at or past `oc`.
///
/// # Safety
/// `bias` holds at least `oc` floats; the ISA is available.
#[inline(always)]
pub(crate) unsafe fn bias_init<I: Isa, const NV: usize>(
    bias: Option<&[f32]>,
    o0: usize,
    oc: usize,
) -> [I::V; NV] {
    // A loop, not `std::array::from_fn`: its closure would be a function of its own,
    // compiled without the target features, calling each intrinsic instead of inlining it.
    let mut v = [I::zero(); NV];
    if let Some(b) = bias {
        for (j, v) in v.iter_mut().enumerate() {
            let o = o0 + j * I::LANES;
            if o < oc {
                *v = I::load_upto(b.as_ptr().add(o), oc - o);
            }
        }
    }
    v
}

/// Activations [`store_full`] is compiled for.
const CLAMP: u8 = 0;
const HARD_SWISH: u8 = 1;
const SILU: u8 = 2;
const SIGMOID: u8 = 3;
const GELU: u8 = 4;

/// A whole tile of [`store_tile`] (`(acc, y, residual, yoff, o0)`), every vector a full
/// block of channels, through activation `KIND`: for [`CLAMP`] the `clamp` bounds (none,
/// ReLU, Clip), else the activation named.
///
/// # Safety
/// As [`store_tile`], with `o0 + NV * LANES <= oc`.
#[inline(always)]
#[allow(clippy::type_complexity)]
unsafe fn store_full<I: Isa, const M: usize, const NV: usize, const KIND: u8>(
    (acc, y, residual, yoff, o0): (
        &[[I::V; NV]; M],
        *mut f32,
        Option<*const f32>,
        &[usize; M],
        usize,
    ),
    clamp: (Option<I::V>, Option<I::V>),
) {
    // The common stores without a branch per vector, so that the tile's accumulators stay
    // in registers (a branch in the loop kept them on the stack, and the stores of a 1x1
    // conv with few input channels waited on those reloads).
    macro_rules! each {
        ($v:ident, $at:ident => $out:expr) => {
            for (accm, &ym) in acc.iter().zip(yoff) {
                for (j, &$v) in accm.iter().enumerate() {
                    let $at = ym + o0 + j * I::LANES;
                    I::store(y.add($at), $out);
                }
            }
        };
    }
    if KIND == CLAMP {
        match (residual, clamp) {
            (None, (Some(lo), Some(hi))) => return each!(v, at => I::min(I::max(v, lo), hi)),
            (None, (Some(lo), None)) => return each!(v, at => I::max(v, lo)),
            (None, (None, None)) => return each!(v, at => v),
            (Some(r), (None, None)) => return each!(v, at => I::add(v, I::load(r.add(at)))),
            (Some(r), (Some(lo), None)) => {
                return each!(v, at => I::max(I::add(v, I::load(r.add(at))), lo))
            }
            _ => {}
        }
    }
    for (accm, &ym) in acc.iter().zip(yoff) {
        for (j, &v) in accm.iter().enumerate() {
            let at = ym + o0 + j * I::LANES;
            let mut v = v;
            if let Some(r) = residual {
                v = I::add(v, I::load(r.add(at)));
            }
            v = match KIND {
                HARD_SWISH => I::act(Activation::HardSwish, v),
                SILU => I::act(Activation::Silu, v),
                SIGMOID => I::act(Activation::Sigmoid, v),
                GELU => I::act(Activation::Gelu, v),
                _ => {
                    if let Some(lo) = clamp.0 {
                        v = I::max(v, lo);
                    }
                    if let Some(hi) = clamp.1 {
                        v = I::min(v, hi);
                    }
                    v
                }
            };
            I::store(y.add(at), v);
        }
    }
}

/// Stores one tile: `acc[m]` goes to the output element `yoff[m] + o0` (pixel start plus first
/// channel), plus the residual at the same place, through the activation. Only channels
/// below `oc` are written.
///
/// # Safety
/// `y` (and `residual`) valid at `yoff[m] .. yoff[m] + oc`; the ISA is available.
#[inline(always)]
pub(crate) unsafe fn store_tile<I: Isa, const M: usize, const NV: usize>(
    acc: &[[I::V; NV]; M],
    y: *mut f32,
    residual: Option<*const f32>,
    yoff: &[usize; M],
    o0: usize,
    oc: usize,
    act: Activation,
) {
    // A whole block: unrolled, with the activation chosen once per tile rather than per
    // vector (at IC 16 the generic store below costs as much as the multiply-adds).
    if o0 + NV * I::LANES <= oc {
        let full = (acc, y, residual, yoff, o0);
        match act {
            Activation::HardSwish => return store_full::<I, M, NV, HARD_SWISH>(full, (None, None)),
            Activation::Silu => return store_full::<I, M, NV, SILU>(full, (None, None)),
            Activation::Sigmoid => return store_full::<I, M, NV, SIGMOID>(full, (None, None)),
            Activation::Gelu => return store_full::<I, M, NV, GELU>(full, (None, None)),
            _ => {
                if let Some(bounds) = super::dw::clamp_of::<I>(act) {
                    return store_full::<I, M, NV, CLAMP>(full, bounds);
                }
            }
        }
    }
    for (accm, &ym) in acc.iter().zip(yoff) {
        for (j, &v) in accm.iter().enumerate() {
            let o = o0 + j * I::LANES;
            if o >= oc {
                break;
            }
            let n = oc - o;
            let at = ym + o;
            let mut v = v;
            if let Some(r) = residual {
                v = I::add(v, I::load_upto(r.add(at), n));
            }
            I::store_upto(y.add(at), n, I::act(act, v));
        }
    }
}

/// Pixels per chunk of the im2col path.
const IM2COL_CHUNK: usize = 240;

/// Floats past a chunk's im2col rows that the gathers may write (a vector of the widest ISA).
const IM2COL_SLACK: usize = 16;

/// Whether a conv runs through an explicit im2col of each chunk: few input channels (an RGB
/// stem) make the per-tap runs of the implicit GEMM too short to pay for their pointers, so
/// the `KH * KW * IC` inputs of each pixel are gathered into one contiguous row first.
fn use_im2col(c: &Conv) -> bool {
    c.in_c <= 4 && c.kernel[0] * c.kernel[1] > 1
}

/// Scratch of the dense convs: `IC` zeros for taps in the padding, or the im2col rows of a
/// chunk (plus [`IM2COL_SLACK`] floats for the copies that write whole vectors).
pub(crate) fn conv_scratch(c: &Conv, xs: Act4, _: Act4) -> usize {
    if use_im2col(c) {
        IM2COL_CHUNK * (c.kernel[0] * c.kernel[1] * c.in_c) as usize + IM2COL_SLACK
    } else if c.kernel == [1, 1] && c.pads == [0; 4] {
        0
    } else {
        xs.shape.c as usize
    }
}

/// A dense conv over `ConvOcBlock(NV * LANES)` weights with an `MR x NV` register tile.
/// `KH`/`KW` are the kernel size, or 0 to read it from the conv.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn conv<
    I: Isa,
    const KH: usize,
    const KW: usize,
    const MR: usize,
    const NV: usize,
>(
    a: &mut ConvArgs,
) {
    let mut g = Geom::new(a.conv, a.xs, a.ys);
    assert!((KH == 0 || KH == g.kh) && (KW == 0 || KW == g.kw) && a.conv.groups == 1);
    // The inputs: `x`, then the further parts of a concatenation (1x1 convs only).
    let mut parts = [Part {
        x: a.x.as_ptr(),
        xcs: g.xcs,
        k: g.ic,
    }; MAX_PARTS];
    let nparts = 1 + a.parts.len();
    // Floats a pointwise read of `xs` reaches: the last pixel's channels, not its pad lanes
    // (a part may be a channel range of a wider tensor, ending before its stride does).
    let reach = |xs: Act4| xs.len() - (xs.cs - xs.shape.c as usize).min(xs.len());
    assert!(g.xcs >= g.ic);
    if nparts == 1 {
        assert!(a.x.len() >= a.xs.len());
    } else {
        let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1;
        assert!(pointwise && a.conv.pads == [0; 4] && nparts <= MAX_PARTS);
        assert!(a.x.len() >= reach(a.xs));
        for (slot, (x, xs)) in parts[1..].iter_mut().zip(a.parts) {
            assert!(x.len() >= reach(*xs) && xs.cs >= xs.shape.c as usize);
            assert!(xs.shape.n == a.xs.shape.n && xs.shape.h == g.ih as u32);
            assert!(xs.shape.w == g.iw as u32);
            *slot = Part {
                x: x.as_ptr(),
                xcs: xs.cs,
                k: xs.shape.c as usize,
            };
        }
        g.ic = parts[..nparts].iter().map(|p| p.k).sum();
    }
    assert!(g.ic == a.conv.in_c as usize);
    let nb = NV * I::LANES;
    let taps = g.kh * g.kw;
    let wblock = taps * g.ic * nb;
    let blocks = g.oc.div_ceil(nb);
    // These bounds make every pointer the tile code forms valid.
    assert!(a.w.len() >= blocks * wblock);
    assert!(a.y.len() >= a.ys.len());
    assert!(a.rows.end <= a.ys.rows() && g.ycs >= g.oc);
    assert!(a.bias.is_none_or(|b| b.len() >= g.oc));
    assert!(a.residual.is_none_or(|r| r.len() >= a.ys.len()));
    if use_im2col(a.conv) {
        return conv_im2col::<I, KH, KW, MR, NV>(a, g);
    }
    let zeros = if conv_scratch(a.conv, a.xs, a.ys) > 0 {
        let z = &mut a.scratch[..g.ic];
        z.fill(0.0);
        z.as_ptr()
    } else {
        std::ptr::null()
    };
    let pixels = a.rows.start * g.ow..a.rows.end * g.ow;
    // Pixels per chunk: the chunk's input (about `KH * IC` floats per pixel, `IC` for 1x1)
    // stays in L2 (256 KiB of it) while every block of output channels runs over it. Every
    // chunk streams all the weights once, so chunks must not be small: with 16 KiB chunks
    // the 7x7x512 layers of ResNet-18 re-read their 9.4 MB of weights 9 times. An input of
    // at most 256 KiB is one chunk (the estimate above counts its rows `KH` times).
    // Weights of 1 MiB and more do not stay in L2 from one chunk to the next anyway, and each
    // chunk streams them from L3 or memory again: their layers take inputs of up to 1 MiB as
    // one chunk, and chunks of 1 MiB beyond (ConvNeXt-Tiny's 3072 -> 768 layers, 9.4 MB of
    // weights over a 602 KiB input, read their weights once instead of five times:
    // `docs/decisions.md`, session 28).
    let weight_bytes = blocks * g.kh * g.kw * g.ic * nb * 4;
    let budget = if weight_bytes >= BIG_WEIGHTS {
        1 << 20
    } else {
        256 << 10
    };
    let per_pixel = g.ic * if taps == 1 { 1 } else { g.kh };
    let chunk = if a.xs.len() * 4 <= budget {
        pixels.len().max(1)
    } else {
        ((budget / 4 / per_pixel.max(1)).clamp(MR, 4096) / MR) * MR
    };
    let mut t = ConvTile::<I, KH, KW, NV> {
        g,
        x: a.x.as_ptr(),
        zeros,
        w: a.w.as_ptr(),
        bias: a.bias,
        residual: a.residual.map(|r| r.as_ptr()),
        y: a.y.as_mut_ptr(),
        act: a.conv.act,
        pointwise: g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && a.conv.pads == [0; 4],
        k: parts[0].k,
        xcs: g.xcs,
        more: &parts[1..nparts],
        pix0: 0,
        one_pixel: a.ys.rows() * g.ow == 1,
        b: 0,
        blocks,
        prefetch: weight_bytes >= PREFETCH_MIN_BYTES,
        chunk: (0, 1),
        last_chunk: true,
        ws: nb,
        _isa: PhantomData,
    };
    // The common 1x1 conv (one input, a clamp or none) on a tile of its own: the general
    // tile shares its accumulators with the paths for taps, concatenations and other
    // activations, and LLVM kept them on the stack around every tile's multiply-adds (79
    // against 103 GFLOP/s at 16 input channels; `docs/decisions.md`, session 22).
    let pw = if KH == 1 && KW == 1 && t.pointwise && nparts == 1 && !t.one_pixel {
        t.pw_tile()
    } else {
        None
    };
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        match &pw {
            Some(pw) => pw.run_chunk::<MR, NV>(start, end),
            None => t.run_blocks::<MR, true>(start, end, end == pixels.end),
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * g.ycs, pixels.len(), g.oc, g.ycs);
}

/// How [`PwTile`] runs the last block of output channels when `OC` does not fill it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PwLast {
    /// As a whole block, like the others: `OC` fills it, or the output's pad lanes take the
    /// rest (they hold zeros after the call: the weights and bias of those channels are
    /// zero, and [`zero_pad_lanes`] clears whatever the clamp made of them).
    Whole,
    /// With the one-vector tile: the block's first vector holds its channels (and the output's
    /// pad lanes the rest of that vector).
    Narrow,
}

/// A pointwise conv of one input through a clamp (none, ReLU or Clip) and an optional
/// residual, both fixed for the call, whose tiles ([`PwS`]) store whole vectors.
struct PwTile<'a, I: Isa> {
    /// Input pixels from pixel `pix0` on, `xcs` floats apart, `k` channels each (0 for the
    /// whole input; the im2col path's rows hold one chunk).
    x: *const f32,
    pix0: usize,
    xcs: usize,
    k: usize,
    /// `ConvOcBlock(ws)` weights (`ws >= NV * LANES` of the tile: the one-vector tile of a
    /// last block reads the first vector of each step).
    w: *const f32,
    ws: usize,
    bias: Option<&'a [f32]>,
    /// Output pixels, `ycs` floats apart, `oc` channels each.
    y: *mut f32,
    ycs: usize,
    oc: usize,
    /// Output channel block.
    b: usize,
    /// The residual, same geometry as the output (null where the variant has none).
    r: *const f32,
    /// The clamp's bounds (unused where the variant has none).
    lo: I::V,
    hi: I::V,
    /// The store variant of [`PwS`] for the residual and clamp.
    variant: u8,
    /// How the last block of output channels runs.
    last: PwLast,
    _isa: PhantomData<I>,
}

impl<I: Isa> PwTile<'_, I> {
    /// Runs pixels `start..end` through every block of output channels on the `NV`-vector
    /// tile of this tile's store variant (see [`PwS`]).
    ///
    /// # Safety
    /// As [`conv`], whose checks have run; the tile from [`ConvTile::pw_tile`].
    #[inline(always)]
    unsafe fn run_chunk<const MR: usize, const NV: usize>(&self, start: usize, end: usize) {
        match self.variant {
            0 => self.run_variant::<MR, NV, 0>(start, end),
            1 => self.run_variant::<MR, NV, 1>(start, end),
            2 => self.run_variant::<MR, NV, 2>(start, end),
            3 => self.run_variant::<MR, NV, 3>(start, end),
            4 => self.run_variant::<MR, NV, 4>(start, end),
            _ => self.run_variant::<MR, NV, 5>(start, end),
        }
    }

    /// [`PwTile::run_chunk`] with the store variant `S` fixed.
    ///
    /// # Safety
    /// As [`PwTile::run_chunk`], `S` its variant.
    #[inline(always)]
    unsafe fn run_variant<const MR: usize, const NV: usize, const S: u8>(
        &self,
        start: usize,
        end: usize,
    ) {
        let blocks = self.oc.div_ceil(self.ws);
        let whole = if self.last == PwLast::Whole {
            blocks
        } else {
            blocks - 1
        };
        let mut t = PwS::<I, NV, S>(PwTile { ..*self });
        for b in 0..whole {
            t.0.b = b;
            for_each_tile::<I, MR>(start, end, &mut t);
        }
        if whole < blocks {
            let mut narrow = PwS::<I, 1, S>(PwTile {
                b: blocks - 1,
                ..*self
            });
            for_each_tile::<I, MR>(start, end, &mut narrow);
        }
    }
}

/// [`PwTile`] as an `M x NV`-vector tile with its store variant `S` fixed at compile time, so
/// that each variant's tile is one straight run from the bias to the store: 0 no clamp,
/// 1 ReLU, 2 Clip; 3-5 the same after adding the residual.
struct PwS<'a, I: Isa, const NV: usize, const S: u8>(PwTile<'a, I>);

impl<I: Isa, const NV: usize, const S: u8> Tile for PwS<'_, I, NV, S> {
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, p: usize) {
        let t = &self.0;
        let o0 = t.b * t.ws;
        let mut acc = [bias_init::<I, NV>(t.bias, o0, t.oc); M];
        let xp: [*const f32; M] = std::array::from_fn(|m| t.x.add((p - t.pix0 + m) * t.xcs));
        let w = t.w.add(t.b * t.k * t.ws);
        mac_with::<I, M, NV, false>(&mut acc, &xp, w, t.ws, t.k, Prefetch::NONE);
        for (m, accm) in acc.iter().enumerate() {
            for (j, &v) in accm.iter().enumerate() {
                let at = (p + m) * t.ycs + o0 + j * I::LANES;
                let mut v = v;
                if S >= 3 {
                    v = I::add(v, I::load(t.r.add(at)));
                }
                if S % 3 >= 1 {
                    v = I::max(v, t.lo);
                }
                if S % 3 == 2 {
                    v = I::min(v, t.hi);
                }
                I::store(t.y.add(at), v);
            }
        }
    }
}

/// The im2col path of [`conv`] (see [`use_im2col`]): per chunk of pixels, the inputs of
/// every pixel are gathered into one row of `KH * KW * IC` floats (the order of the
/// `ConvOcBlock` weights), then every output-channel block runs the pointwise tiles over
/// those rows. `KH`/`KW` as in [`conv`]: with them known, the gather of an interior pixel
/// is unrolled.
///
/// # Safety
/// As [`conv`], whose checks have run.
#[inline(always)]
unsafe fn conv_im2col<
    I: Isa,
    const KH: usize,
    const KW: usize,
    const MR: usize,
    const NV: usize,
>(
    a: &mut ConvArgs,
    g: Geom,
) {
    let kh = if KH == 0 { g.kh } else { KH };
    let kw = if KW == 0 { g.kw } else { KW };
    let nb = NV * I::LANES;
    let k = g.kh * g.kw * g.ic;
    let blocks = g.oc.div_ceil(nb);
    assert!(g.ic <= 4 && a.scratch.len() >= IM2COL_CHUNK * k + IM2COL_SLACK);
    let rows = a.scratch.as_mut_ptr();
    let x = a.x.as_ptr();
    let pixels = a.rows.start * g.ow..a.rows.end * g.ow;
    let mut t = ConvTile::<I, 1, 1, NV> {
        g,
        x: rows,
        zeros: std::ptr::null(),
        w: a.w.as_ptr(),
        bias: a.bias,
        residual: a.residual.map(|r| r.as_ptr()),
        y: a.y.as_mut_ptr(),
        act: a.conv.act,
        pointwise: true,
        k,
        xcs: k,
        more: &[],
        pix0: 0,
        one_pixel: false,
        b: 0,
        blocks,
        prefetch: blocks * k * nb * 4 >= PREFETCH_MIN_BYTES,
        chunk: (0, 1),
        last_chunk: true,
        ws: nb,
        _isa: PhantomData,
    };
    // `ConvTile` with KH = KW = 1 reads `g.kh`, `g.kw` only off the pointwise path; its
    // weight offset is `b * kh * kw * IC * nb`, so the geometry handed to it says 1x1 with
    // `k` input channels.
    t.g.kh = 1;
    t.g.kw = 1;
    t.g.ic = k;
    // With a clamp (or none) and weights that stay in the cache, the rows run on the
    // pointwise tile, as a 1x1 conv of `k` channels would (see [`conv`]).
    let mut pw = t.pw_tile();
    let span_y = (g.kh - 1) * g.dh;
    let (row_step, tap_step) = (g.dh * g.iw * g.xcs, g.dw * g.xcs);
    // An RGB image at channel stride 4 (as sessions lay out image inputs) under taps of
    // dilation 1: [`copy_rgb`] gathers each kernel row.
    let rgb = g.ic == 3 && g.xcs == 4 && g.dw == 1;
    // Output columns whose taps are all inside the input along W.
    let std::ops::Range { start: lo, end: hi } = g.interior_x();
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + IM2COL_CHUNK).min(pixels.end);
        // The chunk a run of one output row at a time.
        let mut p = start;
        while p < end {
            let (row, ox0) = (p / g.ow, p % g.ow);
            let ox1 = (ox0 + end - p).min(g.ow);
            let (n, oy) = (row / g.oh, row % g.oh);
            let dst = |ox: usize| rows.add((p - start + ox - ox0) * k);
            // Whether every tap row of this output row is inside the input.
            let inside_y = oy * g.sh >= g.pt && oy * g.sh - g.pt + span_y < g.ih;
            let (a, b) = if inside_y && g.xcs >= 4 {
                (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1))
            } else {
                (ox1, ox1)
            };
            // Left to right: the interior copies write past a pixel's row into the next.
            for ox in ox0..a {
                im2col_pixel(x, dst(ox), &g, n, oy, ox);
            }
            if a < b {
                // Every tap inside: no checks, four floats per tap (see below), one pointer
                // per kernel row stepping by a tap, and by a stride from pixel to pixel.
                let mut s = x.add(((n * g.ih + oy * g.sh - g.pt) * g.iw + a * g.sw - g.pl) * g.xcs);
                let mut d = dst(a);
                let step = g.sw * g.xcs;
                for _ in a..b {
                    if rgb {
                        // A kernel row's taps are consecutive pixels: packed a vector at a
                        // time.
                        for ky in 0..kh {
                            copy_rgb::<I>(s.add(ky * row_step), d.add(ky * kw * 3), kw);
                        }
                    } else {
                        for ky in 0..kh {
                            let from = s.add(ky * row_step);
                            let to = d.add(ky * kw * g.ic);
                            for kx in 0..kw {
                                std::ptr::copy_nonoverlapping(
                                    from.add(kx * tap_step),
                                    to.add(kx * g.ic),
                                    4,
                                );
                            }
                        }
                    }
                    s = s.add(step);
                    d = d.add(k);
                }
            }
            for ox in b..ox1 {
                im2col_pixel(x, dst(ox), &g, n, oy, ox);
            }
            p += ox1 - ox0;
        }
        if let Some(pw) = &mut pw {
            pw.pix0 = start;
            pw.run_chunk::<MR, NV>(start, end);
        } else {
            t.pix0 = start;
            t.run_blocks::<MR, false>(start, end, end == pixels.end);
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * g.ycs, pixels.len(), g.oc, g.ycs);
}

/// Copies the three channels of `n` consecutive pixels at `s` (channel stride 4) to `3 * n`
/// contiguous floats at `d`, `LANES / 4` pixels per vector. The stores are masked to those
/// floats: whole-vector stores overlapping the previous one measured 10% slower on the
/// MobileNetV2 stem (AVX-512).
///
/// # Safety
/// `s` valid for `4 * n - 1` reads, `d` for `3 * n` writes; the ISA is available.
#[inline(always)]
unsafe fn copy_rgb<I: Isa>(s: *const f32, d: *mut f32, n: usize) {
    let per = I::LANES / 4;
    let mut i = 0;
    while i < n {
        let m = (n - i).min(per);
        I::store_n(
            d.add(3 * i),
            3 * m,
            I::pack3(I::load_n(s.add(4 * i), 4 * m - 1)),
        );
        i += per;
    }
}

/// The im2col row of output pixel `(n, oy, ox)` at `dst`, checking every tap.
///
/// # Safety
/// As [`conv_im2col`]; `dst` has room for `KH * KW * IC + 3` floats.
#[inline(always)]
unsafe fn im2col_pixel(x: *const f32, dst: *mut f32, g: &Geom, n: usize, oy: usize, ox: usize) {
    for ky in 0..g.kh {
        let iy = g.in_y(oy, ky);
        for kx in 0..g.kw {
            let d = dst.add((ky * g.kw + kx) * g.ic);
            match (iy, g.in_x(ox, kx)) {
                // Four floats at once when the pixel holds four (`xcs >= 4`): the ones past
                // `ic` land in the next tap's slot, which is written after, or in the slack
                // past the chunk's rows.
                (Some(iy), Some(ix)) => {
                    let s = x.add(((n * g.ih + iy) * g.iw + ix) * g.xcs);
                    if g.xcs >= 4 {
                        std::ptr::copy_nonoverlapping(s, d, 4);
                    } else {
                        std::ptr::copy_nonoverlapping(s, d, g.ic);
                    }
                }
                _ => std::ptr::write_bytes(d, 0, 4),
            }
        }
    }
}

use crate::kernels::MAX_CONV_PARTS as MAX_PARTS;

/// One input of the pointwise path: `k` channels per pixel, pixels `xcs` floats apart.
#[derive(Clone, Copy)]
struct Part {
    x: *const f32,
    xcs: usize,
    k: usize,
}

/// One block of output channels of a dense conv.
struct ConvTile<'a, I: Isa, const KH: usize, const KW: usize, const NV: usize> {
    g: Geom,
    x: *const f32,
    /// `IC` zeros (null when no tap can fall into padding).
    zeros: *const f32,
    w: *const f32,
    bias: Option<&'a [f32]>,
    residual: Option<*const f32>,
    y: *mut f32,
    act: Activation,
    /// 1x1, stride 1, no padding: input pixel = output pixel (or `x` holds im2col rows).
    pointwise: bool,
    /// Inputs per pixel of the pointwise path (`IC`, or `KH * KW * IC` for im2col rows).
    k: usize,
    /// Distance between two pixels' inputs on the pointwise path.
    xcs: usize,
    /// The further inputs of the pointwise path after `x` ([`ConvArgs::parts`]: the conv
    /// reads a concatenation in place), whose weights follow `x`'s.
    more: &'a [Part],
    /// Pixel whose inputs start at `x` (and at each part's) on the pointwise path.
    pix0: usize,
    /// The conv has one output pixel (a squeeze-excite conv on a pooled map): its tile of one
    /// runs [`mac_one_row`], so that the weights stream at the cache's speed instead of one
    /// multiply-add chain waiting on each add.
    one_pixel: bool,
    /// Output channel block.
    b: usize,
    /// Output channel blocks.
    blocks: usize,
    /// Prefetch the next block's weights while running this one's tiles (weights too large
    /// to stay in the cache, see [`PREFETCH_MIN_BYTES`]).
    prefetch: bool,
    /// The pixels of the current chunk: each tile prefetches its share of the next block
    /// (see [`ConvTile::prefetch_at`]).
    chunk: (usize, usize),
    /// The current chunk is the last one (its last block prefetches nothing new).
    last_chunk: bool,
    /// Weight floats per input step: the layout's block of output channels (`NV * LANES`,
    /// or twice `LANES` for the one-vector tile of a last block of at most `LANES` channels,
    /// which reads the first half of each step; see [`ConvTile::narrow`]).
    ws: usize,
    _isa: PhantomData<I>,
}

/// Weights of at least this many bytes take larger chunks of pixels in [`conv`].
const BIG_WEIGHTS: usize = 1 << 20;

/// Weights of at least this many bytes are prefetched block by block by the dense kernels
/// (smaller ones stay in L2 between uses).
const PREFETCH_MIN_BYTES: usize = 256 << 10;

impl<'a, I: Isa, const KH: usize, const KW: usize, const NV: usize> ConvTile<'a, I, KH, KW, NV> {
    /// Where the tile of the `m` pixels from `p` prefetches, given that it reads the block's
    /// weights at `w` (`wlen` floats per block, `steps` steps): its share of the next block
    /// (the block itself after the last block of the last chunk: lines already cached, the
    /// first block after the last block of another chunk), in proportion to its pixels' share
    /// of the chunk, so that the chunk's tiles together fetch the whole next block.
    #[inline(always)]
    fn prefetch_at(
        &self,
        p: usize,
        m: usize,
        w: *const f32,
        wlen: usize,
        steps: usize,
    ) -> Prefetch {
        let (start, end) = self.chunk;
        let next = if self.b + 1 < self.blocks {
            w.wrapping_add(wlen)
        } else if self.last_chunk {
            w
        } else {
            w.wrapping_sub(self.b * wlen)
        };
        let (from, to) = (p - start, (p + m).min(end) - start);
        Prefetch::share(next, wlen, steps, (from, to, end - start))
    }

    /// The one-vector tile for the last block of output channels, when it holds at most
    /// `LANES` channels of a two-vector block (OC 144 in 32-channel blocks: 4 blocks and 16
    /// channels): the block's padding lanes are not computed.
    fn narrow(&self) -> Option<ConvTile<'a, I, KH, KW, 1>> {
        let nb = NV * I::LANES;
        (NV == 2 && self.g.oc + I::LANES <= self.blocks * nb).then(|| ConvTile {
            g: self.g,
            x: self.x,
            zeros: self.zeros,
            w: self.w,
            bias: self.bias,
            residual: self.residual,
            y: self.y,
            act: self.act,
            pointwise: self.pointwise,
            k: self.k,
            xcs: self.xcs,
            more: self.more,
            pix0: self.pix0,
            one_pixel: self.one_pixel,
            b: self.blocks - 1,
            blocks: self.blocks,
            prefetch: self.prefetch,
            chunk: self.chunk,
            last_chunk: self.last_chunk,
            ws: nb,
            _isa: PhantomData,
        })
    }

    /// How the pointwise tile ([`PwTile`]) can run the last block of output channels: as a
    /// whole block when `OC` fills it or the output's pad lanes hold the rest (`ycs` reaches
    /// the block's end), with the one-vector tile when `OC` ends in its first vector and `ycs`
    /// reaches that vector's end; `None` when the stores would reach past the pixel's floats.
    fn pw_last(&self) -> Option<PwLast> {
        let (nb, lanes) = (NV * I::LANES, I::LANES);
        let o0 = (self.blocks - 1) * nb;
        if self.blocks * nb <= self.g.ycs {
            Some(PwLast::Whole)
        } else if NV == 2 && self.g.oc <= o0 + lanes && o0 + lanes <= self.g.ycs {
            Some(PwLast::Narrow)
        } else {
            None
        }
    }

    /// The pointwise tile ([`PwTile`]) for this conv's rows (as a 1x1 conv of `k` channels),
    /// when its activation is a clamp or none, its weights need no prefetch, and the last
    /// block's stores stay in each pixel's floats ([`ConvTile::pw_last`]).
    ///
    /// # Safety
    /// The ISA is available.
    #[inline(always)]
    unsafe fn pw_tile(&self) -> Option<PwTile<'a, I>> {
        let (lo, hi) = super::dw::clamp_of::<I>(self.act)?;
        let last = self.pw_last().filter(|_| !self.prefetch)?;
        let clamp = match (lo.is_some(), hi.is_some()) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        Some(PwTile {
            x: self.x,
            pix0: self.pix0,
            xcs: self.xcs,
            k: self.k,
            w: self.w,
            ws: self.ws,
            bias: self.bias,
            y: self.y,
            ycs: self.g.ycs,
            oc: self.g.oc,
            b: 0,
            r: self.residual.unwrap_or(std::ptr::null()),
            lo: lo.unwrap_or(I::zero()),
            hi: hi.unwrap_or(I::zero()),
            variant: if self.residual.is_some() {
                3 + clamp
            } else {
                clamp
            },
            last,
            _isa: PhantomData,
        })
    }

    /// Runs pixels `start..end` (a chunk; the last one when `last`) through every block of
    /// output channels. With `NARROW`, for 1x1 convs only (the one-vector tiles of every
    /// kernel size would take the build four times as long), a last block of at most `LANES`
    /// channels runs [`ConvTile::narrow`].
    #[inline(always)]
    unsafe fn run_blocks<const MR: usize, const NARROW: bool>(
        &mut self,
        start: usize,
        end: usize,
        last: bool,
    ) {
        self.begin_chunk(start, end, last);
        if NARROW && KH == 1 && KW == 1 && NV == 2 {
            if let Some(mut t) = self.narrow() {
                for b in 0..self.blocks - 1 {
                    self.b = b;
                    for_each_tile::<I, MR>(start, end, self);
                }
                for_each_tile::<I, MR>(start, end, &mut t);
                return;
            }
        }
        for b in 0..self.blocks {
            self.b = b;
            for_each_tile::<I, MR>(start, end, self);
        }
    }

    /// Starts a chunk of pixels `start..end` (the last one when `last`).
    fn begin_chunk(&mut self, start: usize, end: usize, last: bool) {
        self.chunk = (start, end);
        self.last_chunk = last;
    }
    /// The pointwise path's multiply-adds of `part` for the `M` pixels from `p`, weights `w`.
    #[inline(always)]
    unsafe fn mac_part<const M: usize>(
        &self,
        acc: &mut [[I::V; NV]; M],
        part: Part,
        p: usize,
        w: *const f32,
        pf: Prefetch,
    ) {
        let xp: [*const f32; M] =
            std::array::from_fn(|m| part.x.add((p - self.pix0 + m) * part.xcs));
        if M == 1 && self.one_pixel {
            mac_one_row::<I, NV, 4>(&mut acc[0], xp[0], w, self.ws, part.k);
        } else {
            self.mac::<M>(acc, &xp, w, part.k, pf);
        }
    }

    /// [`mac_prefetch`] from `pf` when the layer's weights are prefetched, else [`mac`].
    #[inline(always)]
    unsafe fn mac<const M: usize>(
        &self,
        acc: &mut [[I::V; NV]; M],
        xp: &[*const f32; M],
        w: *const f32,
        k: usize,
        pf: Prefetch,
    ) {
        if self.prefetch {
            mac_with::<I, M, NV, true>(acc, xp, w, self.ws, k, pf);
        } else {
            mac_with::<I, M, NV, false>(acc, xp, w, self.ws, k, Prefetch::NONE);
        }
    }
}

impl<I: Isa, const KH: usize, const KW: usize, const NV: usize> Tile
    for ConvTile<'_, I, KH, KW, NV>
{
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, p: usize) {
        let g = &self.g;
        let kh = if KH == 0 { g.kh } else { KH };
        let kw = if KW == 0 { g.kw } else { KW };
        let nb = self.ws;
        let o0 = self.b * nb;
        let mut acc = [bias_init::<I, NV>(self.bias, o0, g.oc); M];
        let wlen = kh * kw * g.ic * nb;
        let w = self.w.add(self.b * wlen);
        let steps = kh * kw * g.ic;
        let pf = if self.prefetch {
            self.prefetch_at(p, M, w, wlen, steps)
        } else {
            Prefetch::NONE
        };
        if self.pointwise {
            // 1x1, stride 1, no padding: output pixel `q` reads input pixel `q`.
            let first = Part {
                x: self.x,
                xcs: self.xcs,
                k: self.k,
            };
            self.mac_part::<M>(&mut acc, first, p, w, pf);
            if !self.more.is_empty() {
                // The prefetch moves on with the steps run.
                let (mut w, mut done) = (w.add(self.k * nb), self.k);
                for &part in self.more {
                    self.mac_part::<M>(&mut acc, part, p, w, pf.after(done));
                    w = w.add(part.k * nb);
                    done += part.k;
                }
            }
        } else {
            // Per pixel: first input row and column of its window (before subtracting the
            // padding), and the image's first input row. Coordinates advance pixel by pixel
            // from one division.
            let mut iy0 = [0usize; M];
            let mut ix0 = [0usize; M];
            let mut img = [0usize; M];
            let (row, mut ox) = (p / g.ow, p % g.ow);
            let (mut n, mut oy) = (row / g.oh, row % g.oh);
            for m in 0..M {
                img[m] = n * g.ih;
                iy0[m] = oy * g.sh;
                ix0[m] = ox * g.sw;
                ox += 1;
                if ox == g.ow {
                    ox = 0;
                    oy += 1;
                    if oy == g.oh {
                        oy = 0;
                        n += 1;
                    }
                }
            }
            for ky in 0..kh {
                for kx in 0..kw {
                    let xp: [*const f32; M] = std::array::from_fn(|m| {
                        let iy = (iy0[m] + ky * g.dh).wrapping_sub(g.pt);
                        let ix = (ix0[m] + kx * g.dw).wrapping_sub(g.pl);
                        if iy < g.ih && ix < g.iw {
                            self.x.add(((img[m] + iy) * g.iw + ix) * g.xcs)
                        } else {
                            self.zeros
                        }
                    });
                    let done = (ky * kw + kx) * g.ic;
                    let at = pf.after(done);
                    self.mac::<M>(&mut acc, &xp, w.add(done * nb), g.ic, at);
                }
            }
        }
        let yoff: [usize; M] = std::array::from_fn(|m| (p + m) * g.ycs);
        store_tile::<I, M, NV>(&acc, self.y, self.residual, &yoff, o0, g.oc, self.act);
    }
}

/// Fully connected over `FcOcBlock(NV * LANES)` weights (`[OF/NB][IF][NB]`), batch items as
/// the tile's rows. The input is read in NHWC order, skipping pad lanes.
///
/// # Safety
/// The ISA `I` is available on this CPU.
#[inline(always)]
pub(crate) unsafe fn fc<I: Isa, const MR: usize, const NV: usize>(a: &mut FcArgs) {
    let batch = a.xs.shape.n as usize;
    let pixels = a.xs.shape.h as usize * a.xs.shape.w as usize;
    let c = a.xs.shape.c as usize;
    let of = a.ys.shape.c as usize;
    let nb = NV * I::LANES;
    let blocks = of.div_ceil(nb);
    assert!(a.w.len() >= blocks * pixels * c * nb);
    assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len() && a.xs.cs >= c);
    assert!(a.ys.cs >= of && a.ys.shape.n as usize == batch);
    assert!(a.bias.is_none_or(|b| b.len() >= of));
    let mut t = FcTile::<I, NV> {
        x: a.x.as_ptr(),
        xcs: a.xs.cs,
        w: a.w.as_ptr(),
        bias: a.bias,
        y: a.y.as_mut_ptr(),
        ycs: a.ys.cs,
        of,
        pixels,
        c,
        act: a.fc.act,
        one_row: batch == 1,
        b: 0,
        _isa: PhantomData,
    };
    for b in share(blocks, a.share) {
        t.b = b;
        for_each_tile::<I, MR>(0, batch, &mut t);
    }
    if is_last_share(a.share) {
        zero_pad_lanes(a.y, 0, batch, of, a.ys.cs);
    }
}

/// One block of outputs of a fully connected layer.
struct FcTile<'a, I: Isa, const NV: usize> {
    x: *const f32,
    xcs: usize,
    w: *const f32,
    bias: Option<&'a [f32]>,
    y: *mut f32,
    ycs: usize,
    of: usize,
    pixels: usize,
    c: usize,
    act: Activation,
    /// A batch of one: [`mac_one_row`]. Only then, so that an item's sums are formed the
    /// same way whatever tile it falls in.
    one_row: bool,
    b: usize,
    _isa: PhantomData<I>,
}

impl<I: Isa, const NV: usize> Tile for FcTile<'_, I, NV> {
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, n0: usize) {
        let nb = NV * I::LANES;
        let o0 = self.b * nb;
        let mut acc = [bias_init::<I, NV>(self.bias, o0, self.of); M];
        let w = self.w.add(self.b * self.pixels * self.c * nb);
        for px in 0..self.pixels {
            let xp: [*const f32; M] =
                std::array::from_fn(|m| self.x.add(((n0 + m) * self.pixels + px) * self.xcs));
            let wp = w.add(px * self.c * nb);
            if M == 1 && self.one_row {
                mac_one_row::<I, NV, 4>(&mut acc[0], xp[0], wp, nb, self.c);
            } else {
                mac::<I, M, NV>(&mut acc, &xp, wp, self.c);
            }
        }
        let yoff: [usize; M] = std::array::from_fn(|m| (n0 + m) * self.ycs);
        store_tile::<I, M, NV>(&acc, self.y, None, &yoff, o0, self.of, self.act);
    }
}
