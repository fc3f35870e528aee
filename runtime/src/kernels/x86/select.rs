//! Conv kernel selection shared by the x86 tables: each table lists its kernels in a
//! [`ConvSet`], and [`select`] maps a [`ConvPlan`] to the one that reads the plan's layout.

use crate::graph::Conv;
use crate::kernels::{matching, portable, ConvKernel, ConvPlan};

/// The conv kernels of one x86 table. Each pair holds the kernels for the wide and the
/// narrow output-channel block, in either order; the plan's layout picks one.
pub(crate) struct ConvSet {
    /// Dense kernels for 1x1, 3x3, 5x5, 7x7 and any other kernel size.
    pub dense: [[ConvKernel; 2]; 5],
    /// Depthwise kernels for 3x3, 5x5, 7x7 and any other kernel size.
    pub dw: [ConvKernel; 4],
    /// Winograd F(4x4, 3x3).
    pub winograd: [ConvKernel; 2],
    /// Winograd F(2x2, 3x3).
    pub winograd23: [ConvKernel; 2],
}

/// The kernel of `set` for `conv` run by `plan`.
pub(crate) fn select(set: &ConvSet, conv: &Conv, plan: ConvPlan) -> Option<ConvKernel> {
    let pick = |pair: &[ConvKernel; 2]| pair.iter().copied().find_map(|k| matching(k, plan));
    match plan {
        ConvPlan::Depthwise { .. } => {
            let i = match conv.kernel {
                [3, 3] => 0,
                [5, 5] => 1,
                [7, 7] => 2,
                _ => 3,
            };
            matching(set.dw[i], plan)
        }
        ConvPlan::Generic => portable::select_conv(conv, plan),
        ConvPlan::Dense { .. } => pick(
            &set.dense[match conv.kernel {
                [1, 1] => 0,
                [3, 3] => 1,
                [5, 5] => 2,
                [7, 7] => 3,
                _ => 4,
            }],
        ),
        ConvPlan::Winograd { .. } => pick(&set.winograd),
        ConvPlan::Winograd23 { .. } => pick(&set.winograd23),
    }
}
