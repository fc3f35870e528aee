//! Tests of the AVX-512 table's driver configuration on any x86-64 CPU.
//!
//! The AVX-512 table only runs where `avx512f` is detected. To test its tiles (16 lanes,
//! 12 x 32 and 12 x 16 dense tiles, 8-pixel depthwise tiles, 16-lane blocks) everywhere, this
//! module instantiates the same drivers with the same parameters over [`Emu16`], a scalar
//! 16-lane implementation of [`Isa`], and runs the shared property suite on that table.
//! Only the one-line intrinsic wrappers of [`super::avx512::Avx512`] are not covered.

use super::avx512::{DW_MR, MR};
use super::isa::Isa;
use super::{dense, dw};
use crate::graph::{Conv, Layout};
use crate::kernels::reference::tests::{check_conv, check_fc, conv_case, fc_case, ConvCase};
use crate::kernels::{portable, ConvArgs, ConvKernel, FcArgs, FcKernel, KernelTable};
use proptest::prelude::*;

/// 16 lanes in plain arrays.
struct Emu16;

impl Isa for Emu16 {
    type V = [f32; 16];
    const LANES: usize = 16;

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
entry!(dwk, ConvArgs, dw::dw::<Emu16, 0, 0, DW_MR>);
entry!(fc16, FcArgs, dense::fc::<Emu16, 4, 1>);

fn dense_kernel(nb: u16, run: fn(&mut ConvArgs)) -> ConvKernel {
    ConvKernel {
        name: "dense_emu16",
        layout: Layout::ConvOcBlock(nb),
        scratch_len: dense::conv_scratch,
        run,
    }
}

/// Mirrors [`super::avx512::select_conv`] with the emulated entries.
fn select(c: &Conv) -> ConvKernel {
    let real = super::avx512::select_conv(c);
    if c.is_depthwise() {
        let run = match c.kernel {
            [3, 3] => dw3,
            [5, 5] => dw5,
            _ => dwk,
        };
        return ConvKernel { run, ..real };
    }
    if c.groups != 1 {
        return real;
    }
    let wide = c.out_c.is_multiple_of(32);
    let run = match (c.kernel, wide) {
        ([1, 1], true) => c1_32,
        ([1, 1], false) => c1_16,
        ([3, 3], true) => c3_32,
        ([3, 3], false) => c3_16,
        ([5, 5], true) => c5_32,
        ([5, 5], false) => c5_16,
        ([7, 7], true) => c7_32,
        ([7, 7], false) => c7_16,
        (_, true) => ck_32,
        (_, false) => ck_16,
    };
    let k = dense_kernel(if wide { 32 } else { 16 }, run);
    assert_eq!(
        k.layout, real.layout,
        "emulation mirrors the AVX-512 selection"
    );
    k
}

static TABLE: KernelTable = KernelTable {
    name: "x86_64-avx512-emulated",
    conv: select,
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
    fn avx512_configuration_fc_matches_reference(case in fc_case()) {
        check_fc(&TABLE, &case)?;
    }
}
