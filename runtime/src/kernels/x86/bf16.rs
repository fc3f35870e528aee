//! bf16 pointwise convs on AVX-512 ([`Precision::Bf16`](crate::session::Precision)): an
//! ungrouped 1x1 conv (stride 1, no padding) whose inputs and weights are rounded to bf16 and
//! multiplied by `vdpbf16ps` (AVX512-BF16: Zen 4, Cooper Lake, Sapphire Rapids and later),
//! two products per f32 lane and instruction, accumulated in f32: twice the multiply-adds of
//! `vfmadd231ps` per instruction.
//!
//! Per chunk of output pixels, the chunk's input pixels are rounded to bf16 into scratch,
//! in pairs of channels (one 32-bit word per pair, [`bf16::row_words`] words per pixel);
//! then every block of 32 output channels runs a 12-pixel x 32-channel register tile over
//! them: per pair of input channels, two weight vectors and one broadcast word per pixel
//! feed 24 `vdpbf16ps`. Weights are [`bf16::pack_pointwise`]'s, bias, residual and
//! activation are applied at the store in f32, as in the f32 kernels.
//!
//! The driver's `NATIVE = false` instance computes the same with AVX-512F alone (two FMAs
//! per pair, the integer rounding of [`bf16::round`]): it exists so that the driver is
//! tested on AVX-512 CPUs without BF16; sessions never use it.

use super::avx512::Avx512;
use super::dense::{bias_init, store_tile};
use super::geom::{for_each_tile, zero_pad_lanes, Inline, Tile};
use crate::graph::{Conv, Fc, Layout};
use crate::kernels::bf16::{self, BLOCK};
use crate::kernels::rows::Inputs;
use crate::kernels::{is_last_share, share, Act4, ConvArgs, ConvKernel, FcArgs, FcKernel};
use std::arch::x86_64::*;

/// Pixels per register tile.
const MR: usize = 12;

/// Bytes of rounded input per chunk: the chunk stays in L2 while every block of output
/// channels runs over it (each block's weights, at most 48 KiB at 1536 input channels, stay
/// in L1 across the chunk's tiles).
const CHUNK_BYTES: usize = 128 << 10;

/// Words per rounded input pixel in scratch: [`bf16::row_words`] and one vector more, into
/// which the last part of a concatenation may write its zeros.
fn row_stride(ic: usize) -> usize {
    bf16::row_words(ic) + 16
}

/// Pixels per chunk for `ic` input channels: a multiple of the tile.
fn chunk_pixels(ic: usize) -> usize {
    (CHUNK_BYTES / 4 / row_stride(ic)).clamp(MR, 2048) / MR * MR
}

/// Scratch floats of [`conv1x1`]: one chunk of rounded input.
pub(crate) fn scratch(c: &Conv, _: Act4, _: Act4) -> usize {
    let ic = c.in_c as usize;
    chunk_pixels(ic) * row_stride(ic)
}

/// The bf16 kernel for `c`, whose weights are stored as `layout`, when this CPU has
/// AVX512-BF16 and the conv is one the kernel runs: ungrouped 1x1, stride 1, no padding,
/// weights `ConvOcBlock(32)` (what the AVX-512 table packs for 1x1 convs of 32k outputs). It
/// reads a concatenation in place when every part but the last has an even channel count.
pub(crate) fn select(c: &Conv, layout: Layout) -> Option<ConvKernel> {
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let ok =
        pointwise && c.groups == 1 && layout == Layout::ConvOcBlock(BLOCK as u16) && has_bf16();
    ok.then_some(ConvKernel {
        name: "conv1x1_bf16_12x32_avx512",
        layout,
        scratch_len: scratch,
        run: conv1x1,
        reads_parts: true,
    })
}

/// Whether this CPU runs the bf16 kernels (AVX512-BF16 besides the AVX-512 table's features).
pub(crate) fn has_bf16() -> bool {
    std::is_x86_feature_detected!("avx512bf16")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// The bf16 pointwise conv: `args.w` holds [`bf16::pack_pointwise`]'s words (each f32 slot
/// one word, as bits).
fn conv1x1(a: &mut ConvArgs) {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512bf16,avx2,fma")]
    unsafe fn inner(a: &mut ConvArgs) {
        run::<true>(a)
    }
    // SAFETY: this function is only reachable through `select`, which returns it only when
    // `has_bf16()` holds.
    unsafe { inner(a) }
}

/// [`conv1x1`] on AVX-512F alone (see the module doc), for tests.
#[cfg(test)]
fn conv1x1_emulated(a: &mut ConvArgs) {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx2,fma")]
    unsafe fn inner(a: &mut ConvArgs) {
        run::<false>(a)
    }
    assert!(super::avx512_table().is_some());
    // SAFETY: the AVX-512 table exists only when these features are present.
    unsafe { inner(a) }
}

/// `acc + hi(w) * hi(x) + lo(w) * lo(x)` per lane, the words' halves taken as bf16.
///
/// # Safety
/// AVX-512F, and AVX512-BF16 when `NATIVE`.
#[inline(always)]
unsafe fn dot<const NATIVE: bool>(acc: __m512, w: __m512i, x: __m512i) -> __m512 {
    if NATIVE {
        // SAFETY (of the transmutes): both are 512 bits of plain data.
        let bh = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
        _mm512_dpbf16_ps(acc, bh(w), bh(x))
    } else {
        let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let hi = |v: __m512i| _mm512_castsi512_ps(_mm512_and_si512(v, high));
        let lo = |v: __m512i| _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
        let acc = _mm512_fmadd_ps(hi(w), hi(x), acc);
        _mm512_fmadd_ps(lo(w), lo(x), acc)
    }
}

/// Rounds the `ic` channels at `x` to bf16 into `row` ([`bf16::row_words`]`(ic)` words,
/// zeros past `ic`).
///
/// # Safety
/// `x` valid for `ic` reads, `row` for `row_words(ic)` writes; the features of `dot`.
#[inline(always)]
unsafe fn round_row<const NATIVE: bool>(x: *const f32, ic: usize, row: *mut u32) {
    let load = |c: usize| {
        let n = ic.saturating_sub(c).min(16);
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, x.add(c.min(ic)))
    };
    let mut c = 0;
    while c < ic {
        let (lo, hi) = (load(c), load(c + 16));
        let out = row.add(c / 2);
        if NATIVE {
            let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.cast(), v);
        } else {
            _mm256_storeu_si256(out.cast(), round_emulated(lo));
            _mm256_storeu_si256(out.add(8).cast(), round_emulated(hi));
        }
        c += 32;
    }
}

/// [`bf16::round`] of 16 lanes, as 16 bf16 values (NaN aside).
///
/// # Safety
/// AVX-512F.
#[inline(always)]
unsafe fn round_emulated(v: __m512) -> __m256i {
    let b = _mm512_castps_si512(v);
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let r = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), odd);
    let r = _mm512_srli_epi32::<16>(r);
    // Subnormal inputs (and zeros) keep their sign only.
    let tiny =
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(v), _mm512_set1_ps(f32::MIN_POSITIVE));
    let sign = _mm512_srli_epi32::<16>(_mm512_and_si512(b, _mm512_set1_epi32(i32::MIN)));
    _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, tiny, sign))
}

/// The driver of [`conv1x1`].
///
/// # Safety
/// The features of [`dot`] for `NATIVE`.
#[inline(always)]
unsafe fn run<const NATIVE: bool>(a: &mut ConvArgs) {
    let c = a.conv;
    let (ic, oc) = (c.in_c as usize, c.out_c as usize);
    let ycs = a.ys.cs;
    let ow = a.ys.shape.w as usize;
    let words = row_stride(ic);
    let pairs = ic.div_ceil(2);
    let blocks = oc.div_ceil(BLOCK);
    let chunk = chunk_pixels(ic);
    // These bounds make every pointer formed below valid. The inputs are `x`, then the
    // further parts of a concatenation read in place, each at an even channel offset (every
    // part but the last has an even channel count), so that its pairs of channels are pairs
    // of the row.
    let inputs = Inputs::of(a, 2);
    assert!(a.w.len() >= blocks * pairs * BLOCK);
    assert!(a.scratch.len() >= chunk * words);
    let pixels = a.rows.start * ow..a.rows.end * ow;
    let w = a.w.as_ptr().cast::<u32>();
    let y = a.y.as_mut_ptr();
    let residual = a.residual.map(|r| r.as_ptr());
    let rows = a.scratch.as_mut_ptr().cast::<u32>();
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        // Each part writes whole vectors past its channels (zeros), which the next part
        // overwrites; the last part's stay inside the row's 16 extra words.
        inputs.convert(start..end, (rows, words, 2), |x, k, at| {
            round_row::<NATIVE>(x, k, at)
        });
        for b in 0..blocks {
            let t = TileArgs {
                w: w.add(b * pairs * BLOCK),
                pairs,
                rows,
                words,
                pix0: start,
                y,
                ycs,
                residual,
                bias: a.bias,
                o0: b * BLOCK,
                oc,
                act: c.act,
            };
            for_each_tile::<Inline, MR>(start, end, &mut Block::<NATIVE>(t));
        }
        start = end;
    }
    zero_pad_lanes(a.y, pixels.start * ycs, pixels.len(), oc, ycs);
}

/// What a tile of one block of output channels reads and writes.
struct TileArgs<'a> {
    /// The block's packed weights, `pairs` steps of 32 words.
    w: *const u32,
    pairs: usize,
    /// The chunk's rounded input rows (`words` apart) from pixel `pix0` on.
    rows: *const u32,
    words: usize,
    pix0: usize,
    y: *mut f32,
    ycs: usize,
    residual: Option<*const f32>,
    bias: Option<&'a [f32]>,
    /// The block's first output channel, and the channel count.
    o0: usize,
    oc: usize,
    act: crate::graph::Activation,
}

/// The tiles of one block of output channels.
struct Block<'a, const NATIVE: bool>(TileArgs<'a>);

impl<const NATIVE: bool> Tile for Block<'_, NATIVE> {
    #[inline(always)]
    unsafe fn run<const M: usize>(&mut self, p: usize) {
        tile::<NATIVE, M>(&self.0, p)
    }
}

/// `M` output pixels from `p` of one block of 32 output channels.
///
/// # Safety
/// As [`run`], whose checks have run; `p .. p + M` inside the chunk.
#[inline(always)]
unsafe fn tile<const NATIVE: bool, const M: usize>(t: &TileArgs, p: usize) {
    let init = [bias_init::<Avx512, 2>(t.bias, t.o0, t.oc); M];
    let xr: [*const u32; M] = std::array::from_fn(|m| t.rows.add((p - t.pix0 + m) * t.words));
    let acc = mac::<NATIVE, M>(init, &xr, t.w, t.pairs);
    let yoff: [usize; M] = std::array::from_fn(|m| (p + m) * t.ycs);
    store_tile::<Avx512, M, 2>(&acc, t.y, t.residual, &yoff, t.o0, t.oc, t.act);
}

/// `acc` plus the products of `pairs` steps of the rows `xr` and the block's weights `w`;
/// the accumulators are taken and returned by value, so that they stay in registers (with
/// the store's reference to them in the same function, LLVM kept them on the stack and
/// stored every one after each multiply-add).
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn mac<const NATIVE: bool, const M: usize>(
    mut acc: [[__m512; 2]; M],
    xr: &[*const u32; M],
    w: *const u32,
    pairs: usize,
) -> [[__m512; 2]; M] {
    for k in 0..pairs {
        let wk = w.add(k * BLOCK);
        let w0 = _mm512_loadu_si512(wk.cast());
        let w1 = _mm512_loadu_si512(wk.add(16).cast());
        for (accm, xm) in acc.iter_mut().zip(xr) {
            let xb = _mm512_set1_epi32(*xm.add(k) as i32);
            accm[0] = dot::<NATIVE>(accm[0], w0, xb);
            accm[1] = dot::<NATIVE>(accm[1], w1, xb);
        }
    }
    acc
}

/// Output features per weight block of the bf16 fully connected kernel: the AVX-512 table's
/// `FcOcBlock(16)`.
const FC_BLOCK: usize = 16;

/// Weight blocks per register group of the fully connected kernel: 4 independent
/// accumulators, each broadcast input pair used 4 times.
const FC_GROUP: usize = 4;

/// The bf16 fully connected kernel, when this CPU has AVX512-BF16, the layer reads one pixel
/// per batch item (`xs`: a classifier after global pooling or on a 1x1 map) and its weights
/// are `FcOcBlock(16)`: the f32 `fc_4x16_avx512` streams 4 bytes per multiply-add, so a
/// large classifier is bound by memory bandwidth, and bf16 weights halve the bytes. Its
/// weights are [`bf16::pack_pointwise`]'s for `ConvOcBlock(16)` (the same order: one pixel).
pub(crate) fn select_fc(fc: &Fc, layout: Layout, xs: Act4) -> Option<FcKernel> {
    let one_pixel = xs.shape.h == 1 && xs.shape.w == 1 && xs.shape.c == fc.in_features;
    let ok = one_pixel && layout == Layout::FcOcBlock(FC_BLOCK as u16) && has_bf16();
    ok.then_some(FcKernel {
        name: "fc_bf16_1x64_avx512",
        layout,
        run: fc_bf16,
    })
}

/// The bf16 fully connected layer: `args.w` holds [`bf16::pack_pointwise`]'s words.
fn fc_bf16(a: &mut FcArgs) {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512bf16,avx2,fma")]
    unsafe fn inner(a: &mut FcArgs) {
        run_fc::<true>(a)
    }
    // SAFETY: this function is only reachable through `select_fc`, which returns it only
    // when `has_bf16()` holds.
    unsafe { inner(a) }
}

/// [`fc_bf16`] on AVX-512F alone, for tests.
#[cfg(test)]
fn fc_emulated(a: &mut FcArgs) {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx2,fma")]
    unsafe fn inner(a: &mut FcArgs) {
        run_fc::<false>(a)
    }
    assert!(super::avx512_table().is_some());
    // SAFETY: the AVX-512 table exists only when these features are present.
    unsafe { inner(a) }
}

/// The driver of [`fc_bf16`]: per batch item, the share's weight blocks in groups of
/// [`FC_GROUP`].
///
/// # Safety
/// The features of [`dot`] for `NATIVE`.
#[inline(always)]
unsafe fn run_fc<const NATIVE: bool>(a: &mut FcArgs) {
    let batch = a.xs.shape.n as usize;
    let c = a.xs.shape.c as usize;
    let of = a.ys.shape.c as usize;
    let blocks = of.div_ceil(FC_BLOCK);
    let pairs = c.div_ceil(2);
    // These bounds make every pointer formed below valid.
    assert!(a.xs.shape.h == 1 && a.xs.shape.w == 1 && a.xs.cs >= c);
    assert!(a.fc.in_features as usize == c && a.fc.out_features as usize == of);
    assert!(a.w.len() >= blocks * pairs * FC_BLOCK);
    assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    assert!(a.ys.cs >= of && a.ys.shape.n as usize == batch);
    assert!(a.bias.is_none_or(|b| b.len() >= of));
    let g = FcGroup {
        w: a.w.as_ptr().cast::<u32>(),
        pairs,
        c,
        of,
        bias: a.bias,
        act: a.fc.act,
    };
    let range = share(blocks, a.share);
    for n in 0..batch {
        let x = a.x.as_ptr().add(n * a.xs.cs);
        let y = a.y.as_mut_ptr().add(n * a.ys.cs);
        let mut b = range.start;
        while b + FC_GROUP <= range.end {
            g.run::<NATIVE, FC_GROUP>(x, y, b);
            b += FC_GROUP;
        }
        match range.end - b {
            0 => {}
            1 => g.run::<NATIVE, 1>(x, y, b),
            2 => g.run::<NATIVE, 2>(x, y, b),
            _ => g.run::<NATIVE, 3>(x, y, b),
        }
    }
    if is_last_share(a.share) {
        zero_pad_lanes(a.y, 0, batch, of, a.ys.cs);
    }
}

/// What every group of weight blocks of one fully connected layer shares.
struct FcGroup<'a> {
    /// Packed words, `[blocks][pairs][16]`.
    w: *const u32,
    pairs: usize,
    c: usize,
    of: usize,
    bias: Option<&'a [f32]>,
    act: crate::graph::Activation,
}

impl FcGroup<'_> {
    /// Blocks `b .. b + G` of one batch item's outputs at `y`, from its input at `x`: per
    /// 32 input channels, rounded to 16 bf16 pairs in one register, each pair broadcast
    /// (`vpermd`) into `vdpbf16ps` with each block's weights.
    ///
    /// # Safety
    /// As [`run_fc`], whose checks have run; blocks inside the layer.
    #[inline(always)]
    unsafe fn run<const NATIVE: bool, const G: usize>(&self, x: *const f32, y: *mut f32, b: usize) {
        let c = self.c;
        let load = |at: usize| {
            let n = c.saturating_sub(at).min(16);
            _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, x.add(at.min(c)))
        };
        let mut acc = [_mm512_setzero_ps(); G];
        let w: [*const u32; G] = std::array::from_fn(|j| self.w.add((b + j) * self.pairs * 16));
        let mut p = 0;
        while p < self.pairs {
            let (lo, hi) = (load(2 * p), load(2 * p + 16));
            let xw = if NATIVE {
                std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
            } else {
                let l = _mm512_castsi256_si512(round_emulated(lo));
                _mm512_inserti64x4::<1>(l, round_emulated(hi))
            };
            let n = (self.pairs - p).min(16);
            for k in 0..n {
                let xb = _mm512_permutexvar_epi32(_mm512_set1_epi32(k as i32), xw);
                for (j, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_si512(w[j].add((p + k) * 16).cast());
                    *a = dot::<NATIVE>(*a, wv, xb);
                }
            }
            p += n;
        }
        for (j, a) in acc.iter().enumerate() {
            let o0 = (b + j) * FC_BLOCK;
            let [bias] = bias_init::<Avx512, 1>(self.bias, o0, self.of);
            let v = [[_mm512_add_ps(*a, bias)]];
            store_tile::<Avx512, 1, 1>(&v, y, None, &[0], o0, self.of, self.act);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{suite, Pointwise};

    #[test]
    fn emulated_bf16_pointwise_matches_the_rounded_reference() {
        if crate::kernels::x86::avx512_table().is_none() {
            eprintln!("no AVX-512 on this CPU: the emulated bf16 driver is not run");
            return;
        }
        suite(&Pointwise {
            run: conv1x1_emulated,
            scratch,
            nb: BLOCK,
            pack: crate::kernels::bf16::pack_pointwise,
            dot: crate::kernels::bf16::dot,
            part_multiple: 2,
        });
        assert!(chunk_pixels(1536) < 99);
    }

    #[test]
    fn native_bf16_pointwise_matches_the_rounded_reference() {
        if !has_bf16() {
            eprintln!("no AVX512-BF16 on this CPU: the native bf16 kernel is not run");
            return;
        }
        suite(&Pointwise {
            run: conv1x1,
            scratch,
            nb: BLOCK,
            pack: crate::kernels::bf16::pack_pointwise,
            dot: crate::kernels::bf16::dot,
            part_multiple: 2,
        });
    }

    /// Both fully connected drivers (see `kernels::testing::fc_suite`).
    #[test]
    fn bf16_fully_connected_matches_the_rounded_reference() {
        use crate::kernels::testing::{fc_suite, FullyConnected};
        if crate::kernels::x86::avx512_table().is_none() {
            eprintln!("no AVX-512 on this CPU: the bf16 fully connected drivers are not run");
            return;
        }
        let mut runs: Vec<fn(&mut FcArgs)> = vec![fc_emulated];
        if has_bf16() {
            runs.push(fc_bf16);
            let (fc, layout) = (
                Fc {
                    in_features: 9,
                    out_features: 3,
                    weight: 0,
                    bias: None,
                    act: crate::graph::Activation::None,
                },
                Layout::FcOcBlock(16),
            );
            let xs = Act4 {
                shape: crate::graph::Shape4::new(1, 1, 1, 9),
                cs: 16,
            };
            assert_eq!(select_fc(&fc, layout, xs).map(|k| k.layout), Some(layout));
            let map = Act4 {
                shape: crate::graph::Shape4::new(1, 3, 1, 3),
                cs: 16,
            };
            assert!(
                select_fc(&fc, layout, map).is_none(),
                "one pixel per item only"
            );
        } else {
            eprintln!("no AVX512-BF16 on this CPU: only the emulated driver is run");
        }
        for run in runs {
            fc_suite(&FullyConnected {
                run,
                nb: FC_BLOCK,
                pack: bf16::pack_fc,
                dot: bf16::dot,
                pixels: &[1],
            });
        }
    }
}
