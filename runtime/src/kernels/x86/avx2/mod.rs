//! The AVX2+FMA table: `channel_align` 8, 256-bit vectors.
//!
//! | name                     | layout            | selected for                            |
//! |--------------------------|-------------------|-----------------------------------------|
//! | `dw3x3_avx2`           | `DwBlock(8)`     | depthwise 3x3                           |
//! | `dw5x5_avx2`           | `DwBlock(8)`     | depthwise 5x5                           |
//! | `dw7x7_avx2`           | `DwBlock(8)`     | depthwise 7x7                           |
//! | `dw_kxk_avx2`          | `DwBlock(8)`     | depthwise, any other kernel             |
//! | `conv1x1_6x16_avx2`   | `ConvOcBlock(16)` | 1x1 (any stride/padding), OC % 16 == 0  |
//! | `conv1x1_12x8_avx2`   | `ConvOcBlock(8)`  | 1x1, other OC                           |
//! | `conv3x3_6x16_avx2`   | `ConvOcBlock(16)` | 3x3 (any stride/dilation/padding)       |
//! | `conv3x3_12x8_avx2`   | `ConvOcBlock(8)`  | 3x3, other OC                           |
//! | `conv5x5_*`, `conv7x7_*`, `conv_kxk_*` | as above | 5x5, 7x7, any other kernel        |
//! | `wino43_6x16_avx2`     | `WinogradF43(16)` | 3x3 stride 1 where Winograd pays, OC % 16 == 0 |
//! | `wino43_12x8_avx2`     | `WinogradF43(8)`  | the same, other OC                      |
//! | `wino23_6x16_avx2`     | `WinogradF23(16)` | 3x3 stride 1 on small maps where F(2,3) pays, OC % 16 == 0 |
//! | `wino23_12x8_avx2`     | `WinogradF23(8)`  | the same, other OC                      |
//! | `conv_generic_portable`  | `Canonical`       | grouped, depthwise with multiplier      |
//! | `fc_4x8_avx2`         | `FcOcBlock(8)`   | fully connected                         |
//!
//! Dense tiles are 6 pixels x 16 channels (12 ymm accumulators) or 12 x 8; see
//! `docs/decisions.md`, "x86 kernels".

use super::dense;
use super::dw;
use super::eltwise;
use super::geom::{run_tiles_inline, Tile};
use super::isa::Isa;
use super::select::{select, ConvSet};
use super::winograd;
use crate::graph::{Activation, Conv, Layout, Pool};
use crate::kernels::{
    portable, Act4, ConvArgs, ConvKernel, ConvPlan, FcArgs, FcKernel, KernelChoice, KernelTable,
};
use std::arch::x86_64::*;

/// AVX2+FMA vectors.
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

impl Isa for Avx2 {
    type V = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
        run_tiles::<T, M>(t, p, count)
    }

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, mask(n))
    }
    #[inline(always)]
    unsafe fn pack3(v: __m256) -> __m256 {
        _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, n: usize, v: __m256) {
        _mm256_maskstore_ps(p, mask(n), v)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn round(v: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m256) -> __m256 {
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
    #[inline(always)]
    unsafe fn recip(d: __m256) -> __m256 {
        // 12-bit estimate and two Newton steps: r (2 - d r) (one leaves 4 ulp).
        let one = _mm256_set1_ps(1.0);
        let r = _mm256_rcp_ps(d);
        let r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, one), r);
        _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, one), r)
    }
}

/// [`Isa::run_tiles`] for Avx2.
///
/// # Safety
/// As [`Tile::run`]; the CPU has avx2, fma.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
    run_tiles_inline::<T, M>(t, p, count)
}

/// Lanes `0..n` all ones, the others zero: the mask of `vmaskmovps`.
#[inline(always)]
unsafe fn mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Pixels per dense register tile.
const MR: usize = 6;
/// Pixels per depthwise tile.
const DW_MR: usize = 8;

/// Defines a safe kernel entry `$name` that runs `$body` compiled for AVX2+FMA: a conv or FC entry
/// taking its argument struct, or one with the argument list given as `fn(..)`.
macro_rules! entry {
    ($name:ident, fn($($arg:ident: $ty:ty),*), $body:path) => {
        fn $name($($arg: $ty),*) {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn inner($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: this function is only reachable through `TABLE`, which `table()` returns
            // only when is_x86_feature_detected!("avx2") and ("fma") hold.
            unsafe { inner($($arg),*) }
        }
    };
    ($name:ident, $args:ty, $body:path) => {
        fn $name(a: &mut $args) {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn inner(a: &mut $args) {
                $body(a)
            }
            // SAFETY: this function is only reachable through `TABLE`, which `table()` returns
            // only when is_x86_feature_detected!("avx2") and ("fma") hold.
            unsafe { inner(a) }
        }
    };
}

entry!(conv1x1_6x16, ConvArgs, dense::conv::<Avx2, 1, 1, MR, 2>);
entry!(conv1x1_12x8, ConvArgs, dense::conv::<Avx2, 1, 1, 12, 1>);
entry!(conv3x3_6x16, ConvArgs, dense::conv::<Avx2, 3, 3, MR, 2>);
entry!(conv3x3_12x8, ConvArgs, dense::conv::<Avx2, 3, 3, 12, 1>);
entry!(conv5x5_6x16, ConvArgs, dense::conv::<Avx2, 5, 5, MR, 2>);
entry!(conv5x5_12x8, ConvArgs, dense::conv::<Avx2, 5, 5, 12, 1>);
entry!(conv7x7_6x16, ConvArgs, dense::conv::<Avx2, 7, 7, MR, 2>);
entry!(conv7x7_12x8, ConvArgs, dense::conv::<Avx2, 7, 7, 12, 1>);
entry!(conv_kxk_6x16, ConvArgs, dense::conv::<Avx2, 0, 0, MR, 2>);
entry!(conv_kxk_12x8, ConvArgs, dense::conv::<Avx2, 0, 0, 12, 1>);
entry!(dw3x3, ConvArgs, dw::dw::<Avx2, 3, 3, DW_MR>);
entry!(dw5x5, ConvArgs, dw::dw::<Avx2, 5, 5, DW_MR>);
entry!(dw7x7, ConvArgs, dw::dw::<Avx2, 7, 7, DW_MR>);
entry!(dw_kxk, ConvArgs, dw::dw::<Avx2, 0, 0, DW_MR>);
entry!(fc_4x8, FcArgs, dense::fc::<Avx2, 4, 1>);
entry!(wino_6x16, ConvArgs, winograd::conv::<Avx2, 4, 6, MR, 2>);
entry!(wino_12x8, ConvArgs, winograd::conv::<Avx2, 4, 6, 12, 1>);
entry!(wino23_6x16, ConvArgs, winograd::conv::<Avx2, 2, 4, MR, 2>);
entry!(wino23_12x8, ConvArgs, winograd::conv::<Avx2, 2, 4, 12, 1>);
entry!(
    add,
    fn(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::add::<Avx2>
);
entry!(
    mul,
    fn(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4),
    eltwise::mul::<Avx2>
);
entry!(
    act,
    fn(x: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::act::<Avx2>
);
entry!(
    channel_affine,
    fn(x: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::channel_affine::<Avx2>
);
entry!(
    layer_norm,
    fn(x: &[f32], xs: Act4, scale: &[f32], shift: &[f32], eps: f32, y: &mut [f32], ys: Act4),
    eltwise::layer_norm::<Avx2>
);
entry!(
    pool,
    fn(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize),
    eltwise::pool::<Avx2>
);
entry!(
    global_avg_pool,
    fn(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4),
    eltwise::global_avg_pool::<Avx2>
);

const fn dense_kernel(name: &'static str, nb: u16, run: fn(&mut ConvArgs)) -> ConvKernel {
    ConvKernel {
        name,
        layout: Layout::ConvOcBlock(nb),
        scratch_len: dense::conv_scratch,
        run,
        reads_parts: true,
    }
}

const fn dw_kernel(name: &'static str, run: fn(&mut ConvArgs)) -> ConvKernel {
    ConvKernel {
        name,
        layout: Layout::DwBlock(8),
        scratch_len: dw::scratch::<8>,
        run,
        reads_parts: false,
    }
}

const fn winograd_kernel(
    name: &'static str,
    layout: Layout,
    scratch_len: fn(&Conv, crate::kernels::Act4, crate::kernels::Act4) -> usize,
    run: fn(&mut ConvArgs),
) -> ConvKernel {
    ConvKernel {
        name,
        layout,
        scratch_len,
        run,
        reads_parts: false,
    }
}

/// Dense kernels by kernel size; `[0]` has 16-channel blocks, `[1]` 8-channel blocks.
const CONV1X1: [ConvKernel; 2] = [
    dense_kernel("conv1x1_6x16_avx2", 16, conv1x1_6x16),
    dense_kernel("conv1x1_12x8_avx2", 8, conv1x1_12x8),
];
const CONV3X3: [ConvKernel; 2] = [
    dense_kernel("conv3x3_6x16_avx2", 16, conv3x3_6x16),
    dense_kernel("conv3x3_12x8_avx2", 8, conv3x3_12x8),
];
const CONV5X5: [ConvKernel; 2] = [
    dense_kernel("conv5x5_6x16_avx2", 16, conv5x5_6x16),
    dense_kernel("conv5x5_12x8_avx2", 8, conv5x5_12x8),
];
const CONV7X7: [ConvKernel; 2] = [
    dense_kernel("conv7x7_6x16_avx2", 16, conv7x7_6x16),
    dense_kernel("conv7x7_12x8_avx2", 8, conv7x7_12x8),
];
const CONV_KXK: [ConvKernel; 2] = [
    dense_kernel("conv_kxk_6x16_avx2", 16, conv_kxk_6x16),
    dense_kernel("conv_kxk_12x8_avx2", 8, conv_kxk_12x8),
];

/// Every AVX2 conv kernel.
static SET: ConvSet = ConvSet {
    dense: [CONV1X1, CONV3X3, CONV5X5, CONV7X7, CONV_KXK],
    dw: [
        dw_kernel("dw3x3_avx2", dw3x3),
        dw_kernel("dw5x5_avx2", dw5x5),
        dw_kernel("dw7x7_avx2", dw7x7),
        dw_kernel("dw_kxk_avx2", dw_kxk),
    ],
    winograd: [
        winograd_kernel(
            "wino43_6x16_avx2",
            Layout::WinogradF43(16),
            winograd::scratch::<6, 8, 16>,
            wino_6x16,
        ),
        winograd_kernel(
            "wino43_12x8_avx2",
            Layout::WinogradF43(8),
            winograd::scratch::<6, 8, 8>,
            wino_12x8,
        ),
    ],
    winograd23: [
        winograd_kernel(
            "wino23_6x16_avx2",
            Layout::WinogradF23(16),
            winograd::scratch::<4, 8, 16>,
            wino23_6x16,
        ),
        winograd_kernel(
            "wino23_12x8_avx2",
            Layout::WinogradF23(8),
            winograd::scratch::<4, 8, 8>,
            wino23_12x8,
        ),
    ],
};

/// The AVX2 conv kernel for `c` run by `plan` (see the module table).
pub fn select_conv(c: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    select(&SET, c, plan)
}

/// The AVX2+FMA table.
static TABLE: KernelTable = KernelTable {
    name: "x86_64-avx2",
    choice: KernelChoice::X86Avx2,
    channel_align: 8,
    // 1 MiB: on a 2 MiB-L2 Xeon, chaining MobileNetV2's 1.2-1.8 MB tensors as well was
    // 2.6% (AVX-512) and 4.8% (AVX2) faster; on Zen 4 (1 MiB L2) 2 MiB had measured best
    // (docs/decisions.md, "Chain threshold 1 MiB").
    chain_min_bytes: 1 << 20,
    conv: select_conv,
    fc: FcKernel {
        name: "fc_4x8_avx2",
        layout: Layout::FcOcBlock(8),
        run: fc_4x8,
    },
    pool,
    global_avg_pool,
    add,
    mul,
    act,
    channel_affine,
    layer_norm,
    ..portable::TABLE
};

/// The table, when this CPU has AVX2 and FMA.
pub fn table() -> Option<&'static KernelTable> {
    let ok = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    ok.then_some(&TABLE)
}
