//! The AVX-512 table (F and DQ): `channel_align` 16, 512-bit vectors.
//!
//! | name                     | layout            | selected for                            |
//! |--------------------------|-------------------|-----------------------------------------|
//! | `dw3x3_avx512`           | `DwBlock(16)`     | depthwise 3x3                           |
//! | `dw5x5_avx512`           | `DwBlock(16)`     | depthwise 5x5                           |
//! | `dw7x7_avx512`           | `DwBlock(16)`     | depthwise 7x7                           |
//! | `dw_kxk_avx512`          | `DwBlock(16)`     | depthwise, any other kernel             |
//! | `conv1x1_12x32_avx512`   | `ConvOcBlock(32)` | 1x1 (any stride/padding), OC % 32 == 0  |
//! | `conv1x1_12x16_avx512`   | `ConvOcBlock(16)` | 1x1, other OC                           |
//! | `conv3x3_12x32_avx512`   | `ConvOcBlock(32)` | 3x3 (any stride/dilation/padding)       |
//! | `conv3x3_12x16_avx512`   | `ConvOcBlock(16)` | 3x3, other OC                           |
//! | `conv5x5_*`, `conv7x7_*`, `conv_kxk_*` | as above | 5x5, 7x7, any other kernel        |
//! | `wino43_12x32_avx512`    | `WinogradF43(32)` | 3x3 stride 1 where Winograd pays, OC % 32 == 0 |
//! | `wino43_12x16_avx512`    | `WinogradF43(16)` | the same, other OC                      |
//! | `wino23_12x32_avx512`    | `WinogradF23(32)` | 3x3 stride 1 on small maps where F(2,3) pays, OC % 32 == 0 |
//! | `wino23_12x16_avx512`    | `WinogradF23(16)` | the same, other OC                      |
//! | `conv_generic_portable`  | `Canonical`       | grouped, depthwise with multiplier      |
//! | `fc_4x16_avx512`         | `FcOcBlock(16)`   | fully connected                         |
//!
//! Dense tiles are 12 pixels x 32 channels (24 zmm accumulators) or 12 x 16; see
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

/// AVX-512F vectors.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

impl Isa for Avx512 {
    type V = __m512;
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
        run_tiles::<T, M>(t, p, count)
    }

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p)
    }
    #[inline(always)]
    unsafe fn pack3(v: __m512) -> __m512 {
        let idx = _mm512_setr_epi32(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 15, 15, 15);
        _mm512_permutexvar_ps(idx, v)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, n: usize, v: __m512) {
        _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        _mm512_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        _mm512_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn round(v: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m512) -> __m512 {
        let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
    }
    #[inline(always)]
    unsafe fn scale_pow2(p: __m512, n: __m512) -> __m512 {
        _mm512_scalef_ps(p, n)
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline(always)]
    unsafe fn clamp_abs(v: __m512, bound: f32) -> __m512 {
        // `vrangeps`: the smaller magnitude of `v` and `bound`, with the sign of `v`.
        _mm512_range_ps::<0b0010>(v, _mm512_set1_ps(bound))
    }
    #[inline(always)]
    unsafe fn exp2(y: __m512) -> __m512 {
        // `y = n + f` with `n = floor(y)` and `f` in [0, 1) (`vreduceps`, exact), then
        // `2^f` by its polynomial and `2^n` applied by `vscalefps`, which takes the floor of
        // `y` itself: 9 instructions against the generic form's 11.
        use crate::kernels::expf::EXP2_FLOOR_POLY;
        let y = Self::clamp_abs(y, 126.0);
        let f = _mm512_reduce_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(y);
        let mut p = _mm512_set1_ps(EXP2_FLOOR_POLY[0]);
        for c in &EXP2_FLOOR_POLY[1..] {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(*c));
        }
        _mm512_scalef_ps(p, y)
    }
    #[inline(always)]
    unsafe fn recip(d: __m512) -> __m512 {
        // 14-bit estimate and one Newton step: r (2 - d r).
        let r = _mm512_rcp14_ps(d);
        _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0)), r)
    }
}

/// [`Isa::run_tiles`] for Avx512.
///
/// # Safety
/// As [`Tile::run`]; the CPU has avx512f, avx512dq, avx2, fma.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
#[inline(never)]
unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
    run_tiles_inline::<T, M>(t, p, count)
}

/// Pixels per dense register tile.
pub(crate) const MR: usize = 12;
/// Pixels per depthwise tile.
pub(crate) const DW_MR: usize = 8;

/// Defines a safe kernel entry `$name` that runs `$body` compiled for AVX-512F: a conv or FC entry
/// taking its argument struct, or one with the argument list given as `fn(..)`.
macro_rules! entry {
    ($name:ident, fn($($arg:ident: $ty:ty),*), $body:path) => {
        fn $name($($arg: $ty),*) {
            #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
            unsafe fn inner($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: this function is only reachable through `TABLE`, which `table()` returns
            // only when is_x86_feature_detected!("avx512f") (and "avx512dq", "avx2", "fma")
            // hold.
            unsafe { inner($($arg),*) }
        }
    };
    ($name:ident, $args:ty, $body:path) => {
        fn $name(a: &mut $args) {
            #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
            unsafe fn inner(a: &mut $args) {
                $body(a)
            }
            // SAFETY: this function is only reachable through `TABLE`, which `table()` returns
            // only when is_x86_feature_detected!("avx512f") (and "avx512dq", "avx2", "fma")
            // hold.
            unsafe { inner(a) }
        }
    };
}

entry!(conv1x1_12x32, ConvArgs, dense::conv::<Avx512, 1, 1, MR, 2>);
entry!(conv1x1_12x16, ConvArgs, dense::conv::<Avx512, 1, 1, MR, 1>);
entry!(conv3x3_12x32, ConvArgs, dense::conv::<Avx512, 3, 3, MR, 2>);
entry!(conv3x3_12x16, ConvArgs, dense::conv::<Avx512, 3, 3, MR, 1>);
entry!(conv5x5_12x32, ConvArgs, dense::conv::<Avx512, 5, 5, MR, 2>);
entry!(conv5x5_12x16, ConvArgs, dense::conv::<Avx512, 5, 5, MR, 1>);
entry!(conv7x7_12x32, ConvArgs, dense::conv::<Avx512, 7, 7, MR, 2>);
entry!(conv7x7_12x16, ConvArgs, dense::conv::<Avx512, 7, 7, MR, 1>);
entry!(conv_kxk_12x32, ConvArgs, dense::conv::<Avx512, 0, 0, MR, 2>);
entry!(conv_kxk_12x16, ConvArgs, dense::conv::<Avx512, 0, 0, MR, 1>);
entry!(dw3x3, ConvArgs, dw::dw::<Avx512, 3, 3, DW_MR>);
entry!(dw5x5, ConvArgs, dw::dw::<Avx512, 5, 5, DW_MR>);
entry!(dw7x7, ConvArgs, dw::dw::<Avx512, 7, 7, DW_MR>);
entry!(dw_kxk, ConvArgs, dw::dw::<Avx512, 0, 0, DW_MR>);
entry!(fc_4x16, FcArgs, dense::fc::<Avx512, 4, 1>);
entry!(wino_12x32, ConvArgs, winograd::conv::<Avx512, 4, 6, MR, 2>);
entry!(wino_12x16, ConvArgs, winograd::conv::<Avx512, 4, 6, MR, 1>);
entry!(
    wino23_12x32,
    ConvArgs,
    winograd::conv::<Avx512, 2, 4, MR, 2>
);
entry!(
    wino23_12x16,
    ConvArgs,
    winograd::conv::<Avx512, 2, 4, MR, 1>
);
entry!(
    add,
    fn(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::add::<Avx512>
);
entry!(
    mul,
    fn(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4),
    eltwise::mul::<Avx512>
);
entry!(
    act,
    fn(x: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::act::<Avx512>
);
entry!(
    channel_affine,
    fn(x: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    eltwise::channel_affine::<Avx512>
);
entry!(
    layer_norm,
    fn(x: &[f32], xs: Act4, scale: &[f32], shift: &[f32], eps: f32, y: &mut [f32], ys: Act4),
    eltwise::layer_norm::<Avx512>
);
entry!(
    pool,
    fn(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize),
    eltwise::pool::<Avx512>
);
entry!(
    global_avg_pool,
    fn(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4),
    eltwise::global_avg_pool::<Avx512>
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
        layout: Layout::DwBlock(16),
        scratch_len: dw::scratch::<16>,
        run,
        reads_parts: false,
    }
}

/// Dense kernels by kernel size; `[0]` has 32-channel blocks, `[1]` 16-channel blocks.
const CONV1X1: [ConvKernel; 2] = [
    dense_kernel("conv1x1_12x32_avx512", 32, conv1x1_12x32),
    dense_kernel("conv1x1_12x16_avx512", 16, conv1x1_12x16),
];
const CONV3X3: [ConvKernel; 2] = [
    dense_kernel("conv3x3_12x32_avx512", 32, conv3x3_12x32),
    dense_kernel("conv3x3_12x16_avx512", 16, conv3x3_12x16),
];
const CONV5X5: [ConvKernel; 2] = [
    dense_kernel("conv5x5_12x32_avx512", 32, conv5x5_12x32),
    dense_kernel("conv5x5_12x16_avx512", 16, conv5x5_12x16),
];
const CONV7X7: [ConvKernel; 2] = [
    dense_kernel("conv7x7_12x32_avx512", 32, conv7x7_12x32),
    dense_kernel("conv7x7_12x16_avx512", 16, conv7x7_12x16),
];
const CONV_KXK: [ConvKernel; 2] = [
    dense_kernel("conv_kxk_12x32_avx512", 32, conv_kxk_12x32),
    dense_kernel("conv_kxk_12x16_avx512", 16, conv_kxk_12x16),
];

/// Every AVX-512 conv kernel.
static SET: ConvSet = ConvSet {
    dense: [CONV1X1, CONV3X3, CONV5X5, CONV7X7, CONV_KXK],
    dw: [
        dw_kernel("dw3x3_avx512", dw3x3),
        dw_kernel("dw5x5_avx512", dw5x5),
        dw_kernel("dw7x7_avx512", dw7x7),
        dw_kernel("dw_kxk_avx512", dw_kxk),
    ],
    winograd: [
        ConvKernel {
            name: "wino43_12x32_avx512",
            layout: Layout::WinogradF43(32),
            scratch_len: winograd::scratch::<6, 16, 32>,
            run: wino_12x32,
            reads_parts: false,
        },
        ConvKernel {
            name: "wino43_12x16_avx512",
            layout: Layout::WinogradF43(16),
            scratch_len: winograd::scratch::<6, 16, 16>,
            run: wino_12x16,
            reads_parts: false,
        },
    ],
    winograd23: [
        ConvKernel {
            name: "wino23_12x32_avx512",
            layout: Layout::WinogradF23(32),
            scratch_len: winograd::scratch::<4, 16, 32>,
            run: wino23_12x32,
            reads_parts: false,
        },
        ConvKernel {
            name: "wino23_12x16_avx512",
            layout: Layout::WinogradF23(16),
            scratch_len: winograd::scratch::<4, 16, 16>,
            run: wino23_12x16,
            reads_parts: false,
        },
    ],
};

/// The AVX-512 conv kernel for `c` run by `plan` (see the module table).
pub fn select_conv(c: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    select(&SET, c, plan)
}

/// The AVX-512F table.
static TABLE: KernelTable = KernelTable {
    name: "x86_64-avx512",
    choice: KernelChoice::X86Avx512,
    channel_align: 16,
    // 1 MiB: on a 2 MiB-L2 Xeon, chaining MobileNetV2's 1.2-1.8 MB tensors as well was
    // 2.6% (AVX-512) and 4.8% (AVX2) faster; on Zen 4 (1 MiB L2) 2 MiB had measured best
    // (docs/decisions.md, "Chain threshold 1 MiB").
    chain_min_bytes: 1 << 20,
    conv: select_conv,
    conv_bf16: super::bf16::select,
    conv_f16: portable::no_f16,
    conv_int8: Some((super::int8::select, crate::kernels::int8::pack_pointwise)),
    fc_bf16: super::bf16::select_fc,
    fc_f16: portable::no_fc_bf16,
    fc: FcKernel {
        name: "fc_4x16_avx512",
        layout: Layout::FcOcBlock(16),
        run: fc_4x16,
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

/// The table, when this CPU has AVX-512F and DQ (plus AVX2 and FMA): every AVX-512 CPU since
/// Skylake-SP and Zen 4 has them all; only the Xeon Phi lacks DQ.
pub fn table() -> Option<&'static KernelTable> {
    let ok = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma");
    ok.then_some(&TABLE)
}
