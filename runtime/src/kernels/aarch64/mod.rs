//! aarch64 kernel table: NEON (mandatory on aarch64, so the table is always available there).
//!
//! Conv kernels, picked by [`TABLE`]'s `conv` entry (see [`select_conv`]):
//!
//! | name                     | layout           | selected for                                |
//! |--------------------------|------------------|---------------------------------------------|
//! | `dw1x1_neon`             | `DwBlock(8)`     | depthwise 1x1 (a per-channel affine)        |
//! | `dw3x3s1_neon`           | `DwBlock(8)`     | depthwise 3x3, stride 1                     |
//! | `dw3x3s2_neon`           | `DwBlock(8)`     | depthwise 3x3, stride 2                     |
//! | `dw3x3_neon`             | `DwBlock(8)`     | depthwise 3x3, other strides                |
//! | `dw5x5s1_neon`           | `DwBlock(8)`     | depthwise 5x5, stride 1                     |
//! | `dw5x5s2_neon`           | `DwBlock(8)`     | depthwise 5x5, stride 2                     |
//! | `dw5x5_neon`             | `DwBlock(8)`     | depthwise 5x5, other strides                |
//! | `dw7x7s1_neon`           | `DwBlock(8)`     | depthwise 7x7, stride 1                     |
//! | `dw7x7_neon`             | `DwBlock(8)`     | depthwise 7x7, other strides                |
//! | `gemm_8x8_neon`          | `ConvOcBlock(8)` | 1x1, stride 1, no padding                   |
//! | `conv1x1s_8x8_neon`      | `ConvOcBlock(8)` | 1x1, other strides, no padding              |
//! | `wino43_8x8_neon`        | `WinogradF43(8)` | 3x3 stride 1 where the Winograd rule says F(4x4, 3x3) |
//! | `wino23_8x8_neon`        | `WinogradF23(8)` | 3x3 stride 1 where it says F(2x2, 3x3)      |
//! | `conv3x3_neon`           | `ConvOcBlock(8)` | other 3x3 (any stride, dilation, padding)   |
//! | `conv5x5_neon`           | `ConvOcBlock(8)` | 5x5                                         |
//! | `conv7x7_neon`           | `ConvOcBlock(8)` | 7x7                                         |
//! | `conv_kxk_neon`          | `ConvOcBlock(8)` | any other kernel (non-square, padded 1x1)   |
//! | `dw_generic_portable`    | `DwBlock(8)`     | depthwise, any other kernel (portable)      |
//! | `conv_generic_portable`  | `Canonical`      | grouped, depthwise with multiplier (portable) |
//!
//! With [`Precision::Bf16`](crate::session::Precision), on CPUs with FEAT_BF16 (Armv8.6),
//! `conv1x1_bf16_8x8_neon` (`bf16.rs`) takes the 1x1 convs `gemm_8x8_neon` would run; with
//! [`Precision::F16`](crate::session::Precision), on CPUs with FEAT_FP16 (Armv8.2),
//! `conv1x1_f16_4x16_neon` (`f16.rs`).
//!
//! The dense kernels (and `fc_8x8_neon`) share one register tile (`tile.rs`): 8 output pixels
//! x 8 output channels in 16 `float32x4_t` accumulators, bias in the initial value, residual
//! and activation at the store. Pooling and the elementwise ops are the portable table's.
//!
//! The layouts are the portable table's, except the Winograd ones: a model packed for the
//! portable table loads here without repacking, and the Winograd weights of an aarch64 file
//! are repacked once at load on a table without those kernels. The Winograd rule is the
//! x86 tables' (`plan.rs`), not yet measured on a device (see `docs/decisions.md`).

mod bf16;
mod conv;
mod dw;
mod f16;
mod fc;
mod gemm;
mod int8;
use super::geom;
mod neon;
mod tile;
mod winograd;

#[cfg(test)]
mod tests;

use super::{matching, portable, Act4, ConvKernel, ConvPlan, FcKernel, KernelChoice, KernelTable};
use crate::graph::{Conv, Layout};

/// Weight layout of the ungrouped conv kernels.
const OC_BLOCK: Layout = Layout::ConvOcBlock(8);
/// Weight layout of the depthwise kernels.
const DW_BLOCK: Layout = Layout::DwBlock(8);

fn no_scratch(_: &Conv, _: Act4, _: Act4) -> usize {
    0
}

const fn kernel(name: &'static str, layout: Layout, run: fn(&mut super::ConvArgs)) -> ConvKernel {
    ConvKernel {
        name,
        layout,
        scratch_len: no_scratch,
        run,
        reads_parts: false,
    }
}

const DW1X1: ConvKernel = kernel("dw1x1_neon", DW_BLOCK, dw::dw1x1);
const DW3X3S1: ConvKernel = kernel("dw3x3s1_neon", DW_BLOCK, dw::dw3x3s1);
const DW3X3S2: ConvKernel = kernel("dw3x3s2_neon", DW_BLOCK, dw::dw3x3s2);
const DW3X3: ConvKernel = kernel("dw3x3_neon", DW_BLOCK, dw::dw3x3);
const DW5X5S1: ConvKernel = kernel("dw5x5s1_neon", DW_BLOCK, dw::dw5x5s1);
const DW5X5S2: ConvKernel = kernel("dw5x5s2_neon", DW_BLOCK, dw::dw5x5s2);
const DW5X5: ConvKernel = kernel("dw5x5_neon", DW_BLOCK, dw::dw5x5);
const DW7X7S1: ConvKernel = kernel("dw7x7s1_neon", DW_BLOCK, dw::dw7x7s1);
const DW7X7: ConvKernel = kernel("dw7x7_neon", DW_BLOCK, dw::dw7x7);
const GEMM: ConvKernel = ConvKernel {
    reads_parts: true,
    ..kernel("gemm_8x8_neon", OC_BLOCK, gemm::gemm_8x8)
};
const CONV1X1S: ConvKernel = kernel("conv1x1s_8x8_neon", OC_BLOCK, gemm::conv1x1s_8x8);
const CONV3X3: ConvKernel = kernel("conv3x3_neon", OC_BLOCK, conv::conv3x3);
const CONV5X5: ConvKernel = kernel("conv5x5_neon", OC_BLOCK, conv::conv5x5);
const CONV7X7: ConvKernel = kernel("conv7x7_neon", OC_BLOCK, conv::conv7x7);
const CONV_KXK: ConvKernel = kernel("conv_kxk_neon", OC_BLOCK, conv::conv_kxk);
const WINO43: ConvKernel = ConvKernel {
    scratch_len: winograd::scratch::<6>,
    ..kernel("wino43_8x8_neon", Layout::WinogradF43(8), winograd::wino43)
};
const WINO23: ConvKernel = ConvKernel {
    scratch_len: winograd::scratch::<4>,
    ..kernel("wino23_8x8_neon", Layout::WinogradF23(8), winograd::wino23)
};

/// Picks the NEON conv kernel for `c` (see the module table); the portable one where this
/// table has none.
pub fn select_conv(c: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    let k = match plan {
        ConvPlan::Depthwise { .. } => match (c.kernel, c.stride) {
            ([1, 1], _) => DW1X1,
            ([3, 3], [1, 1]) => DW3X3S1,
            ([3, 3], [2, 2]) => DW3X3S2,
            ([3, 3], _) => DW3X3,
            ([5, 5], [1, 1]) => DW5X5S1,
            ([5, 5], [2, 2]) => DW5X5S2,
            ([5, 5], _) => DW5X5,
            ([7, 7], [1, 1]) => DW7X7S1,
            ([7, 7], _) => DW7X7,
            _ => return portable::select_conv(c, plan),
        },
        ConvPlan::Dense { .. } => match c.kernel {
            [1, 1] if c.pads == [0; 4] && c.stride == [1, 1] => GEMM,
            [1, 1] if c.pads == [0; 4] => CONV1X1S,
            [3, 3] => CONV3X3,
            [5, 5] => CONV5X5,
            [7, 7] => CONV7X7,
            _ => CONV_KXK,
        },
        ConvPlan::Winograd { nb: 8 } => WINO43,
        ConvPlan::Winograd23 { nb: 8 } => WINO23,
        ConvPlan::Generic | ConvPlan::Winograd { .. } | ConvPlan::Winograd23 { .. } => {
            return portable::select_conv(c, plan)
        }
    };
    matching(k, plan)
}

/// The NEON table.
pub static TABLE: KernelTable = KernelTable {
    name: "aarch64",
    choice: KernelChoice::Aarch64Neon,
    channel_align: 8,
    chain_min_bytes: 256 << 10,
    conv: select_conv,
    conv_bf16: bf16::select,
    conv_f16: f16::select,
    conv_int8: Some((int8::select, int8::pack)),
    fc_bf16: portable::no_fc_bf16,
    fc_f16: fc::select_f16,
    fc: FcKernel {
        name: "fc_8x8_neon",
        layout: Layout::FcOcBlock(8),
        run: fc::fc_8x8,
    },
    pool: portable::TABLE.pool,
    global_avg_pool: portable::TABLE.global_avg_pool,
    add: portable::TABLE.add,
    mul: portable::TABLE.mul,
    concat_part: portable::TABLE.concat_part,
    act: portable::TABLE.act,
    softmax: portable::TABLE.softmax,
    flatten: portable::TABLE.flatten,
    channel_affine: portable::TABLE.channel_affine,
    layer_norm: portable::TABLE.layer_norm,
};

/// The NEON table (NEON is part of the aarch64 baseline, so it is always available).
pub fn neon_table() -> Option<&'static KernelTable> {
    Some(&TABLE)
}
