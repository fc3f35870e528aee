//! The portable kernel table: scalar code plus `wide::f32x8` vectors, runs on every CPU.
//!
//! Conv kernels, picked by [`TABLE`]'s `conv` entry (see [`select_conv`]):
//!
//! | name                       | layout            | selected for                               |
//! |----------------------------|-------------------|--------------------------------------------|
//! | `dw3x3_portable`           | `DwBlock(8)`      | depthwise 3x3                              |
//! | `dw5x5_portable`           | `DwBlock(8)`      | depthwise 5x5                              |
//! | `dw_generic_portable`      | `DwBlock(8)`      | depthwise, any other kernel                |
//! | `conv1x1_portable`         | `ConvOcBlock(8)`  | 1x1, stride 1, no padding                  |
//! | `conv1x1_strided_portable` | `ConvOcBlock(8)`  | 1x1, other strides, no padding             |
//! | `conv3x3_portable`         | `ConvOcBlock(8)`  | 3x3 (any stride, dilation, padding)        |
//! | `conv5x5_portable`         | `ConvOcBlock(8)`  | 5x5                                        |
//! | `conv7x7_portable`         | `ConvOcBlock(8)`  | 7x7                                        |
//! | `conv_kxk_portable`        | `ConvOcBlock(8)`  | any other kernel (non-square, padded 1x1)  |
//! | `conv_generic_portable`    | `Canonical`       | grouped, depthwise with multiplier         |
//!
//! The dense kernels share one register tile (`tile`): 4 output pixels x 8 output channels
//! in `f32x8` accumulators, bias in the initial value, residual and activation at the store.

mod conv1x1;
mod conv_direct;
mod conv_generic;
mod dw;
mod elementwise;
mod fc;
use super::geom;
pub(crate) mod pool;
mod simd;
mod tile;

use super::{matching, Act4, ConvKernel, ConvPlan, FcKernel, KernelChoice, KernelTable};
use crate::graph::{Conv, Fc, Layout};

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

/// Depthwise 3x3.
const DW3X3: ConvKernel = kernel("dw3x3_portable", DW_BLOCK, dw::dw3x3);
/// Depthwise 5x5.
const DW5X5: ConvKernel = kernel("dw5x5_portable", DW_BLOCK, dw::dw5x5);
/// Depthwise, any kernel.
const DW_GENERIC: ConvKernel = kernel("dw_generic_portable", DW_BLOCK, dw::dw_generic);
/// 1x1, stride 1, no padding.
const CONV1X1: ConvKernel = kernel("conv1x1_portable", OC_BLOCK, conv1x1::conv1x1);
/// 1x1, any stride, no padding.
const CONV1X1_STRIDED: ConvKernel = kernel(
    "conv1x1_strided_portable",
    OC_BLOCK,
    conv1x1::conv1x1_strided,
);
/// 3x3 direct.
const CONV3X3: ConvKernel = kernel("conv3x3_portable", OC_BLOCK, conv_direct::conv3x3);
/// 5x5 direct.
const CONV5X5: ConvKernel = kernel("conv5x5_portable", OC_BLOCK, conv_direct::conv5x5);
/// 7x7 direct.
const CONV7X7: ConvKernel = kernel("conv7x7_portable", OC_BLOCK, conv_direct::conv7x7);
/// Any kernel, direct.
const CONV_KXK: ConvKernel = kernel("conv_kxk_portable", OC_BLOCK, conv_direct::conv_kxk);
/// Grouped convs, canonical weights.
const CONV_GENERIC: ConvKernel = kernel(
    "conv_generic_portable",
    Layout::Canonical,
    conv_generic::conv_generic,
);

/// Picks the portable conv kernel for `c` (see the module table).
pub fn select_conv(c: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    let k = match plan {
        ConvPlan::Depthwise { .. } => match c.kernel {
            [3, 3] => DW3X3,
            [5, 5] => DW5X5,
            _ => DW_GENERIC,
        },
        ConvPlan::Generic => CONV_GENERIC,
        ConvPlan::Dense { .. } => match c.kernel {
            [1, 1] if c.pads == [0; 4] && c.stride == [1, 1] => CONV1X1,
            [1, 1] if c.pads == [0; 4] => CONV1X1_STRIDED,
            [3, 3] => CONV3X3,
            [5, 5] => CONV5X5,
            [7, 7] => CONV7X7,
            _ => CONV_KXK,
        },
        ConvPlan::Winograd { .. } | ConvPlan::Winograd23 { .. } => return None,
    };
    matching(k, plan)
}

/// [`KernelTable::conv_bf16`] of the tables without bf16 kernels: every conv runs in f32.
pub fn no_bf16(_: &Conv, _: Layout) -> Option<ConvKernel> {
    None
}

/// [`KernelTable::conv_f16`] of the tables without f16 kernels: every conv runs in f32.
pub fn no_f16(_: &Conv, _: Layout) -> Option<ConvKernel> {
    None
}

/// [`KernelTable::fc_bf16`] and [`KernelTable::fc_f16`] of the tables without a fully
/// connected kernel of that precision.
pub fn no_fc_bf16(_: &Fc, _: Layout, _: Act4) -> Option<FcKernel> {
    None
}

/// The portable table.
pub static TABLE: KernelTable = KernelTable {
    name: "portable",
    choice: KernelChoice::Portable,
    channel_align: 8,
    chain_min_bytes: 256 << 10,
    conv: select_conv,
    conv_bf16: no_bf16,
    conv_f16: no_f16,
    conv_int8: None,
    fc_bf16: no_fc_bf16,
    fc_f16: no_fc_bf16,
    fc: FcKernel {
        name: "fc_portable",
        layout: Layout::FcOcBlock(8),
        run: fc::fc,
    },
    pool: pool::pool,
    global_avg_pool: pool::global_avg_pool,
    add: elementwise::add,
    mul: elementwise::mul,
    concat_part: elementwise::concat_part,
    act: elementwise::act,
    softmax: elementwise::softmax,
    flatten: elementwise::flatten,
    channel_affine: elementwise::channel_affine,
    layer_norm: crate::ops::layer_norm,
};
