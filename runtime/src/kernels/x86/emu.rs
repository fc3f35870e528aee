//! Tests of the AVX-512 table's driver configuration on any x86-64 CPU.
//!
//! The AVX-512 table only runs where `avx512f` is detected. To test its tiles (16 lanes,
//! 12 x 32 and 12 x 16 dense tiles, 8-pixel depthwise tiles, 16-lane blocks) everywhere, this
//! module instantiates the same drivers with the same parameters over [`Emu16`], a scalar
//! 16-lane implementation of [`Isa`], and runs the shared property suite on that table.
//! Only the one-line intrinsic wrappers of [`super::avx512::Avx512`] are not covered.

use super::avx512::{DW_MR, MR};
use super::geom::{run_tiles_inline, Tile};
use super::isa::Isa;
use super::select::{select, ConvSet};
use super::{dense, dw, winograd};
use crate::graph::{Conv, Layout};
use crate::kernels::reference::tests::{
    check_conv, check_fc, check_winograd, conv_case, depthwise_row_pair_cases, fc_case,
    pointwise_block_cases, rgb_stem_cases, winograd_case, ConvCase,
};
use crate::kernels::{
    portable, ConvArgs, ConvKernel, ConvPlan, FcArgs, FcKernel, KernelChoice, KernelTable,
};
use proptest::prelude::*;

/// 16 lanes in plain arrays.
pub(crate) struct Emu16;

impl Isa for Emu16 {
    type V = [f32; 16];
    const LANES: usize = 16;

    #[inline(never)]
    unsafe fn run_tiles<T: Tile, const M: usize>(t: &mut T, p: usize, count: usize) {
        run_tiles_inline::<T, M>(t, p, count)
    }

    unsafe fn zero() -> Self::V {
        [0.0; 16]
    }
    unsafe fn splat(x: f32) -> Self::V {
        [x; 16]
    }
    unsafe fn load(p: *const f32) -> Self::V {
        std::array::from_fn(|i| *p.add(i))
    }
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V {
        assert!(n < 16);
        std::array::from_fn(|i| if i < n { *p.add(i) } else { 0.0 })
    }
    unsafe fn store(p: *mut f32, v: Self::V) {
        for (i, e) in v.iter().enumerate() {
            *p.add(i) = *e;
        }
    }
    unsafe fn store_n(p: *mut f32, n: usize, v: Self::V) {
        assert!(n < 16);
        for (i, e) in v.iter().take(n).enumerate() {
            *p.add(i) = *e;
        }
    }
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i])
    }
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].max(b[i]))
    }
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].min(b[i]))
    }
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] / b[i])
    }
    unsafe fn round(v: Self::V) -> Self::V {
        v.map(f32::round_ties_even)
    }
    unsafe fn pow2i(n: Self::V) -> Self::V {
        n.map(|e| f32::from_bits(((e as i32 + 127) as u32) << 23))
    }
    unsafe fn pack3(v: Self::V) -> Self::V {
        std::array::from_fn(|i| {
            if i < 12 {
                v[i / 3 * 4 + i % 3]
            } else {
                f32::NAN
            }
        })
    }
}

macro_rules! entry {
    ($name:ident, $args:ty, $body:path) => {
        fn $name(a: &mut $args) {
            // SAFETY: `Emu16` is plain Rust and needs no CPU feature.
            unsafe { $body(a) }
        }
    };
}

entry!(c1_32, ConvArgs, dense::conv::<Emu16, 1, 1, MR, 2>);
entry!(c1_16, ConvArgs, dense::conv::<Emu16, 1, 1, MR, 1>);
entry!(c3_32, ConvArgs, dense::conv::<Emu16, 3, 3, MR, 2>);
entry!(c3_16, ConvArgs, dense::conv::<Emu16, 3, 3, MR, 1>);
entry!(c5_32, ConvArgs, dense::conv::<Emu16, 5, 5, MR, 2>);
entry!(c5_16, ConvArgs, dense::conv::<Emu16, 5, 5, MR, 1>);
entry!(c7_32, ConvArgs, dense::conv::<Emu16, 7, 7, MR, 2>);
entry!(c7_16, ConvArgs, dense::conv::<Emu16, 7, 7, MR, 1>);
entry!(ck_32, ConvArgs, dense::conv::<Emu16, 0, 0, MR, 2>);
entry!(ck_16, ConvArgs, dense::conv::<Emu16, 0, 0, MR, 1>);
entry!(dw3, ConvArgs, dw::dw::<Emu16, 3, 3, DW_MR>);
entry!(dw5, ConvArgs, dw::dw::<Emu16, 5, 5, DW_MR>);
entry!(dw7, ConvArgs, dw::dw::<Emu16, 7, 7, DW_MR>);
entry!(dwk, ConvArgs, dw::dw::<Emu16, 0, 0, DW_MR>);
entry!(fc16, FcArgs, dense::fc::<Emu16, 4, 1>);
entry!(wino_32, ConvArgs, winograd::conv::<Emu16, 4, 6, MR, 2>);
entry!(wino_16, ConvArgs, winograd::conv::<Emu16, 4, 6, MR, 1>);
entry!(wino23_32, ConvArgs, winograd::conv::<Emu16, 2, 4, MR, 2>);
entry!(wino23_16, ConvArgs, winograd::conv::<Emu16, 2, 4, MR, 1>);

const fn kernel(
    layout: Layout,
    scratch_len: fn(&Conv, crate::kernels::Act4, crate::kernels::Act4) -> usize,
    run: fn(&mut ConvArgs),
) -> ConvKernel {
    ConvKernel {
        name: "emu16",
        layout,
        scratch_len,
        run,
        reads_parts: false,
    }
}

const fn dense_pair(wide: fn(&mut ConvArgs), narrow: fn(&mut ConvArgs)) -> [ConvKernel; 2] {
    [
        kernel(Layout::ConvOcBlock(32), dense::conv_scratch, wide),
        kernel(Layout::ConvOcBlock(16), dense::conv_scratch, narrow),
    ]
}

/// The AVX-512 table's kernels with the emulated entries.
static SET: ConvSet = ConvSet {
    dense: [
        dense_pair(c1_32, c1_16),
        dense_pair(c3_32, c3_16),
        dense_pair(c5_32, c5_16),
        dense_pair(c7_32, c7_16),
        dense_pair(ck_32, ck_16),
    ],
    dw: [
        kernel(Layout::DwBlock(16), dw::scratch::<16>, dw3),
        kernel(Layout::DwBlock(16), dw::scratch::<16>, dw5),
        kernel(Layout::DwBlock(16), dw::scratch::<16>, dw7),
        kernel(Layout::DwBlock(16), dw::scratch::<16>, dwk),
    ],
    winograd: [
        kernel(
            Layout::WinogradF43(32),
            winograd::scratch::<6, 16, 32>,
            wino_32,
        ),
        kernel(
            Layout::WinogradF43(16),
            winograd::scratch::<6, 16, 16>,
            wino_16,
        ),
    ],
    winograd23: [
        kernel(
            Layout::WinogradF23(32),
            winograd::scratch::<4, 16, 32>,
            wino23_32,
        ),
        kernel(
            Layout::WinogradF23(16),
            winograd::scratch::<4, 16, 16>,
            wino23_16,
        ),
    ],
};

/// Mirrors [`super::avx512::select_conv`] with the emulated entries.
fn select_emu(c: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    let k = select(&SET, c, plan);
    let real = super::avx512::select_conv(c, plan);
    assert_eq!(
        k.map(|k| k.layout),
        real.map(|k| k.layout),
        "emulation mirrors the AVX-512 selection"
    );
    k
}

static TABLE: KernelTable = KernelTable {
    name: "x86_64-avx512-emulated",
    choice: KernelChoice::X86Avx512,
    conv: select_emu,
    fc: FcKernel {
        name: "fc_4x16_emu16",
        layout: Layout::FcOcBlock(16),
        run: fc16,
    },
    channel_align: 16,
    ..portable::TABLE
};

/// A conv case with `OC` widened to a multiple of 32 half the time, so that the 32-channel
/// kernels (and more than one channel block) are exercised.
fn wide_case() -> impl Strategy<Value = ConvCase> {
    (conv_case(), any::<bool>(), 1u32..=3).prop_map(|(mut case, widen, k)| {
        if widen && case.conv.groups == 1 {
            let oc = 32 * k;
            case.conv.out_c = oc;
            case.ys.shape.c = oc;
            case.ys.cs = oc as usize + case.ys.cs % 5;
        }
        case
    })
}

#[test]
fn avx512_configuration_depthwise_row_pairs_match_reference() {
    for c in &depthwise_row_pair_cases() {
        check_conv(&TABLE, c).unwrap();
    }
}

#[test]
fn avx512_configuration_pointwise_blocks_match_reference() {
    for c in &pointwise_block_cases() {
        check_conv(&TABLE, c).unwrap();
    }
}

#[test]
fn avx512_configuration_rgb_stems_match_reference() {
    for c in &rgb_stem_cases() {
        check_conv(&TABLE, c).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn avx512_configuration_conv_matches_reference(case in wide_case()) {
        check_conv(&TABLE, &case)?;
    }

    #[test]
    fn avx512_configuration_winograd_matches_reference(case in winograd_case()) {
        // F(4,3) and F(2,3), each with 16- and 32-channel blocks.
        prop_assert_eq!(check_winograd(&TABLE, &case)?, 4);
    }

    #[test]
    fn avx512_configuration_fc_matches_reference(case in fc_case()) {
        check_fc(&TABLE, &case)?;
    }
}
