//! int8 pointwise convs on AVX512-VNNI ([`Precision::Int8`](crate::session::Precision)): an
//! ungrouped 1x1 conv (stride 1, no padding) whose weights are quantized per output channel
//! and whose inputs are quantized per pixel ([`int8`] defines both), multiplied by
//! `vpdpbusd` (unsigned input bytes times signed weight bytes, four products per 32-bit lane,
//! summed exactly: Zen 4, Ice Lake, Sapphire Rapids and later).
//!
//! Per chunk of output pixels, the chunk's input pixels are quantized into scratch: per
//! pixel, the smallest and largest of its channels (over every part of a concatenation),
//! then its bytes, four channels per word ([`int8::QUAD`]), and its step and zero point
//! beside the rows. Then every block of 32 output channels runs a 12-pixel x 32-channel
//! register tile over them: per quad of input channels, two weight vectors and one broadcast
//! word per pixel feed 24 `vpdpbusd`. At the store, each accumulator less the pixel's zero
//! point times the channels' weight sums (exact, in 32 bits) is converted to f32 and scaled
//! by the two steps; bias, residual and activation follow as in the f32 kernels.
//!
//! The driver's `NATIVE = false` instance computes the same with AVX-512BW alone (two
//! `vpmaddwd` per quad): it exists so that the driver is tested on AVX-512 CPUs without
//! VNNI; sessions never use it.

use super::avx512::Avx512;
use super::dense::{bias_init, store_tile};
use super::geom::{for_each_tile, zero_pad_lanes, Inline, Tile};
use crate::graph::{Conv, Layout};
use crate::kernels::int8::{self, BLOCK, QUAD};
use crate::kernels::rows::Inputs;
use crate::kernels::{Act4, ConvArgs, ConvKernel};
use std::arch::x86_64::*;

/// Pixels per register tile.
const MR: usize = 12;

/// Bytes of quantized input per chunk: the chunk stays in L2 while every block of output
/// channels runs over it.
const CHUNK_BYTES: usize = 128 << 10;

/// Words per quantized input pixel in scratch.
fn row_words(ic: usize) -> usize {
    ic.div_ceil(QUAD)
}

/// Words per pixel in scratch besides its row: its smallest channel (then its factor), its
/// largest (then its step), and its zero point.
const PIXEL_WORDS: usize = 3;

/// Pixels per chunk for `ic` input channels: a multiple of the tile.
fn chunk_pixels(ic: usize) -> usize {
    (CHUNK_BYTES / 4 / (row_words(ic) + PIXEL_WORDS)).clamp(MR, 2048) / MR * MR
}

/// Scratch floats of [`conv1x1`]: one chunk of quantized rows, then each pixel's smallest
/// and largest channel (overwritten by its factor and step) and its zero point.
pub(crate) fn scratch(c: &Conv, _: Act4, _: Act4) -> usize {
    let ic = c.in_c as usize;
    chunk_pixels(ic) * (row_words(ic) + PIXEL_WORDS)
}

/// The int8 kernel for `c`, whose weights are stored as `layout`, when this CPU has
/// AVX512-VNNI and the conv is one the kernel runs: ungrouped 1x1, stride 1, no padding,
/// weights `ConvOcBlock(32)`. It reads a concatenation in place when every part but the last
/// has a channel count that is a multiple of 4.
pub(crate) fn select(c: &Conv, layout: Layout) -> Option<ConvKernel> {
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let ok =
        pointwise && c.groups == 1 && layout == Layout::ConvOcBlock(BLOCK as u16) && has_vnni();
    ok.then_some(ConvKernel {
        name: "conv1x1_int8_12x32_avx512vnni",
        layout,
        scratch_len: scratch,
        run: conv1x1,
        reads_parts: true,
    })
}

/// Whether this CPU runs the int8 kernel (AVX512-VNNI besides the AVX-512 table's features).
pub(crate) fn has_vnni() -> bool {
    std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// The int8 pointwise conv: `args.w` holds [`int8::pack_pointwise`]'s words (each f32 slot
/// one word, as bits).
fn conv1x1(a: &mut ConvArgs) {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma")]
    unsafe fn inner(a: &mut ConvArgs) {
        run::<true>(a)
    }
    // SAFETY: this function is only reachable through `select`, which returns it only when
    // `has_vnni()` holds.
    unsafe { inner(a) }
}

/// [`conv1x1`] on AVX-512F and BW alone (see the module doc), for tests.
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

/// `acc` plus, per 32-bit lane, the four products of `x`'s unsigned bytes and `w`'s signed
/// bytes.
///
/// # Safety
/// AVX-512BW, and AVX512-VNNI when `NATIVE`.
#[inline(always)]
unsafe fn dot<const NATIVE: bool>(acc: __m512i, x: __m512i, w: __m512i) -> __m512i {
    if NATIVE {
        _mm512_dpbusd_epi32(acc, x, w)
    } else {
        // Bytes 0 and 2, and 1 and 3, of each lane as 16-bit values: two exact pairs.
        let x_even = _mm512_and_si512(x, _mm512_set1_epi16(0xff));
        let x_odd = _mm512_srli_epi16::<8>(x);
        let w_even = _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(w));
        let w_odd = _mm512_srai_epi16::<8>(w);
        let even = _mm512_madd_epi16(x_even, w_even);
        let odd = _mm512_madd_epi16(x_odd, w_odd);
        _mm512_add_epi32(acc, _mm512_add_epi32(even, odd))
    }
}

/// The smallest and largest of the `k` channels at `x`, each with zero (NaN ignored, as
/// `int8::min_max`), as 16 lanes each, folded into `lo` and `hi`.
///
/// # Safety
/// `x` valid for `k` reads; AVX-512F.
#[inline(always)]
unsafe fn fold_range(x: *const f32, k: usize, (lo, hi): &mut (__m512, __m512)) {
    let mut c = 0;
    while c + 16 <= k {
        let v = _mm512_loadu_ps(x.add(c));
        // The new values first: a NaN among them yields the running bound.
        *lo = _mm512_min_ps(v, *lo);
        *hi = _mm512_max_ps(v, *hi);
        c += 16;
    }
    if c < k {
        let v = _mm512_maskz_loadu_ps(((1u32 << (k - c)) - 1) as u16, x.add(c));
        *lo = _mm512_min_ps(v, *lo);
        *hi = _mm512_max_ps(v, *hi);
    }
}

/// The `k` channels at `x` quantized with the factor `inv` and zero point `zero` (broadcast)
/// into the bytes at `row` (`int8::quantize_input`; the bytes past `k` are not written).
///
/// # Safety
/// `x` valid for `k` reads, `row` for `k` writes; AVX-512F.
#[inline(always)]
unsafe fn quantize_channels(x: *const f32, k: usize, row: *mut u8, inv: __m512, zero: __m512i) {
    let mut c = 0;
    while c < k {
        let m = ((1u32 << (k - c).min(16)) - 1) as u16;
        let v = _mm512_maskz_loadu_ps(m, x.add(c));
        // Rounded to nearest even (the default MXCSR), as `int8::quantize_input`.
        let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), zero);
        let q = _mm512_max_epi32(q, _mm512_setzero_si512());
        // Saturated to 255 as it is narrowed to bytes.
        _mm512_mask_cvtusepi32_storeu_epi8(row.add(c).cast(), m, q);
        c += 16;
    }
}

/// Quantizes pixels `pixels` of `inputs` into the rows at `rows` (`words` apart), in three
/// passes: each pixel's range (into `lo`, `hi`), then 16 pixels at a time their factors
/// (into `lo`), steps (into `hi`) and zero points (into `zeros`; `int8::input_quant`), then
/// each pixel's bytes. With one input (no concatenation), its pixels are read straight
/// ([`Inputs::for_each_part`]).
///
/// # Safety
/// Every pixel of `pixels` is a pixel of the inputs; `rows` valid for `pixels.len() * words`
/// words, `lo`, `hi` and `zeros` for `pixels.len()` values; AVX-512F.
#[inline(always)]
unsafe fn quantize(
    inputs: &Inputs,
    pixels: std::ops::Range<usize>,
    (rows, words): (*mut u32, usize),
    (lo, hi, zeros): (*mut f32, *mut f32, *mut i32),
) {
    let n = pixels.len();
    for (i, p) in pixels.clone().enumerate() {
        let mut range = (_mm512_setzero_ps(), _mm512_setzero_ps());
        inputs.for_each_part(p, |x, k, _| fold_range(x, k, &mut range));
        *lo.add(i) = _mm512_reduce_min_ps(range.0);
        *hi.add(i) = _mm512_reduce_max_ps(range.1);
    }
    let mut i = 0;
    while i < n {
        let m = ((1u32 << (n - i).min(16)) - 1) as u16;
        let (l, h) = (
            _mm512_maskz_loadu_ps(m, lo.add(i)),
            _mm512_maskz_loadu_ps(m, hi.add(i)),
        );
        // `int8::input_quant`, 16 pixels at a time: the range includes zero already (the
        // folds start from it); a range below TINY_RANGE, infinite or NaN quantizes to zero.
        let range = _mm512_sub_ps(h, l);
        let tiny = _mm512_set1_ps(int8::TINY_RANGE);
        let ok = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(range, tiny)
            & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(range, _mm512_set1_ps(f32::INFINITY))
            & m;
        let inv = _mm512_maskz_div_ps(ok, _mm512_set1_ps(255.0), range);
        let step = _mm512_maskz_div_ps(ok, range, _mm512_set1_ps(255.0));
        let zero = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), l), inv));
        let zero = _mm512_min_epi32(
            _mm512_max_epi32(zero, _mm512_setzero_si512()),
            _mm512_set1_epi32(255),
        );
        let zero = _mm512_maskz_mov_epi32(ok, zero);
        _mm512_mask_storeu_ps(lo.add(i), m, inv);
        _mm512_mask_storeu_ps(hi.add(i), m, step);
        _mm512_mask_storeu_epi32(zeros.add(i).cast(), m, zero);
        i += 16;
    }
    for (i, p) in pixels.enumerate() {
        let inv = _mm512_set1_ps(*lo.add(i));
        let zero = _mm512_set1_epi32(*zeros.add(i));
        let row = rows.add(i * words).cast::<u8>();
        inputs.for_each_part(p, |x, k, c0| {
            quantize_channels(x, k, row.add(c0), inv, zero)
        });
    }
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
    let words = row_words(ic);
    let blocks = oc.div_ceil(BLOCK);
    let chunk = chunk_pixels(ic);
    // These bounds make every pointer formed below valid. The inputs are `x`, then the
    // further parts of a concatenation read in place, each at a channel offset that is a
    // multiple of 4, so that its quads of channels are words of the row.
    let inputs = Inputs::of(a, QUAD);
    let weights = blocks * words * BLOCK;
    assert!(a.w.len() >= weights + 2 * blocks * BLOCK);
    assert!(a.scratch.len() >= chunk * (words + PIXEL_WORDS));
    let pixels = a.rows.start * ow..a.rows.end * ow;
    let w = a.w.as_ptr().cast::<u32>();
    let y = a.y.as_mut_ptr();
    let residual = a.residual.map(|r| r.as_ptr());
    let rows = a.scratch.as_mut_ptr().cast::<u32>();
    // Per pixel: its range, then its factor and step; its zero point.
    let lo = rows.add(chunk * words).cast::<f32>();
    let hi = lo.add(chunk);
    let zeros = hi.add(chunk).cast::<i32>();
    let mut start = pixels.start;
    while start < pixels.end {
        let end = (start + chunk).min(pixels.end);
        quantize(&inputs, start..end, (rows, words), (lo, hi, zeros));
        for b in 0..blocks {
            let o0 = b * BLOCK;
            let t = TileArgs {
                w: w.add(b * words * BLOCK),
                steps: w.add(weights + o0).cast(),
                sums: w.add(weights + blocks * BLOCK + o0).cast(),
                words,
                rows,
                steps_x: hi,
                zeros,
                pix0: start,
                y,
                ycs,
                residual,
                bias: a.bias,
                o0,
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
    /// The block's packed weights, `words` steps of 32 words; its channels' steps and weight
    /// sums.
    w: *const u32,
    steps: *const f32,
    sums: *const i32,
    words: usize,
    /// The chunk's quantized rows (`words` apart) from pixel `pix0` on, and their steps and
    /// zero points.
    rows: *const u32,
    steps_x: *const f32,
    zeros: *const i32,
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
    let init = [[_mm512_setzero_si512(); 2]; M];
    let at = |m: usize| p - t.pix0 + m;
    let xr: [*const u32; M] = std::array::from_fn(|m| t.rows.add(at(m) * t.words));
    let acc = mac::<NATIVE, M>(init, &xr, t.w, t.words);
    let bias = bias_init::<Avx512, 2>(t.bias, t.o0, t.oc);
    // Loops, not closures: a closure is a function of its own, compiled without the
    // caller's target features, and would call each intrinsic instead of inlining it.
    let mut steps = [_mm512_setzero_ps(); 2];
    let mut sums = [_mm512_setzero_si512(); 2];
    for j in 0..2 {
        steps[j] = _mm512_loadu_ps(t.steps.add(16 * j));
        sums[j] = _mm512_loadu_si512(t.sums.add(16 * j).cast());
    }
    let mut out = [[_mm512_setzero_ps(); 2]; M];
    for m in 0..M {
        let step = _mm512_set1_ps(*t.steps_x.add(at(m)));
        let zero = _mm512_set1_epi32(*t.zeros.add(at(m)));
        for j in 0..2 {
            let exact = _mm512_sub_epi32(acc[m][j], _mm512_mullo_epi32(zero, sums[j]));
            let scale = _mm512_mul_ps(steps[j], step);
            out[m][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, bias[j]);
        }
    }
    let yoff: [usize; M] = std::array::from_fn(|m| (p + m) * t.ycs);
    store_tile::<Avx512, M, 2>(&out, t.y, t.residual, &yoff, t.o0, t.oc, t.act);
}

/// `acc` plus the products of `words` quads of the rows `xr` and the block's weights `w`,
/// the accumulators taken and returned by value (see the bf16 kernel's `mac`).
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn mac<const NATIVE: bool, const M: usize>(
    mut acc: [[__m512i; 2]; M],
    xr: &[*const u32; M],
    w: *const u32,
    words: usize,
) -> [[__m512i; 2]; M] {
    for k in 0..words {
        let wk = w.add(k * BLOCK);
        let w0 = _mm512_loadu_si512(wk.cast());
        let w1 = _mm512_loadu_si512(wk.add(16).cast());
        for (accm, xm) in acc.iter_mut().zip(xr) {
            let xb = _mm512_set1_epi32(*xm.add(k) as i32);
            accm[0] = dot::<NATIVE>(accm[0], xb, w0);
            accm[1] = dot::<NATIVE>(accm[1], xb, w1);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{suite, Pointwise};

    fn kernel(run: fn(&mut ConvArgs)) -> Pointwise {
        Pointwise {
            run,
            scratch,
            nb: BLOCK,
            pack: int8::pack_pointwise,
            dot: int8::dot,
            part_multiple: QUAD,
        }
    }

    #[test]
    fn emulated_int8_pointwise_matches_the_quantized_reference() {
        if crate::kernels::x86::avx512_table().is_none() {
            eprintln!("no AVX-512 on this CPU: the emulated int8 driver is not run");
            return;
        }
        suite(&kernel(conv1x1_emulated));
        assert!(chunk_pixels(1536) < 99);
    }

    #[test]
    fn native_int8_pointwise_matches_the_quantized_reference() {
        if !has_vnni() {
            eprintln!("no AVX512-VNNI on this CPU: the native int8 kernel is not run");
            return;
        }
        suite(&kernel(conv1x1));
    }
}
