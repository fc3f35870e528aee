//! The per-table rule that decides how a conv runs and which weight layout it reads.
//!
//! The rule is plain code over the conv's parameters and its input shape, compiled on every
//! architecture: the converter evaluates it for the `--target` table even when the host
//! cannot run that table, and the runtime evaluates it at load to decide whether a weight is
//! used in place or repacked. The chosen layout is stored with the weight, and a session maps
//! the stored layout back to a plan ([`ConvPlan::from_layout`]), so a session planned for
//! another input size runs the kernels the weights were packed for.

use super::{KernelChoice, KernelTable, WeightRole};
use crate::graph::{Conv, Layout, Shape4};

/// How a conv is computed, and so which weight layout it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPlan {
    /// Direct (implicit GEMM) dense conv over `ConvOcBlock(nb)` weights.
    Dense {
        /// Output channels per weight block.
        nb: u16,
    },
    /// Depthwise conv over `DwBlock(b)` weights.
    Depthwise {
        /// Channel block.
        b: u16,
    },
    /// Winograd F(4x4, 3x3) over `WinogradF43(nb)` weights (3x3, stride 1, dilation 1).
    Winograd {
        /// Output channels per weight block.
        nb: u16,
    },
    /// Winograd F(2x2, 3x3) over `WinogradF23(nb)` weights (3x3, stride 1, dilation 1).
    Winograd23 {
        /// Output channels per weight block.
        nb: u16,
    },
    /// Any conv, canonical weights.
    Generic,
}

impl ConvPlan {
    /// The weight layout the plan reads.
    pub fn layout(self) -> Layout {
        match self {
            ConvPlan::Dense { nb } => Layout::ConvOcBlock(nb),
            ConvPlan::Depthwise { b } => Layout::DwBlock(b),
            ConvPlan::Winograd { nb } => Layout::WinogradF43(nb),
            ConvPlan::Winograd23 { nb } => Layout::WinogradF23(nb),
            ConvPlan::Generic => Layout::Canonical,
        }
    }

    /// The plan that reads weights stored in `layout` for `conv`, or `None` when `layout`
    /// cannot hold that conv's weights.
    pub fn from_layout(layout: Layout, conv: &Conv) -> Option<ConvPlan> {
        match layout {
            Layout::Canonical => Some(ConvPlan::Generic),
            Layout::ConvOcBlock(nb) if conv.groups == 1 => Some(ConvPlan::Dense { nb }),
            Layout::DwBlock(b) if conv.is_depthwise() => Some(ConvPlan::Depthwise { b }),
            Layout::WinogradF43(nb) if winograd_applies(conv) => Some(ConvPlan::Winograd { nb }),
            Layout::WinogradF23(nb) if winograd_applies(conv) => Some(ConvPlan::Winograd23 { nb }),
            _ => None,
        }
    }
}

/// Whether Winograd (F(4x4, 3x3) or F(2x2, 3x3)) computes `conv`: ungrouped 3x3, stride 1,
/// dilation 1.
pub fn winograd_applies(conv: &Conv) -> bool {
    conv.groups == 1 && conv.kernel == [3, 3] && conv.stride == [1, 1] && conv.dilation == [1, 1]
}

/// The Winograd rule (see `docs/decisions.md`, "Winograd"), measured on the x86 tables and
/// taken by the aarch64 table as it is. F(4x4, 3x3) is worth it
/// when the 36 small GEMMs it turns the layer into are large enough to run at full speed
/// and its 4x larger weights are reused by enough tiles: at least 16 channels in and out and
/// at least 16 output tiles of 4x4 per image (14x14 and larger outputs). Layers of at least
/// 256 channels in and out on maps from 4x4 up to 16 such tiles (16x16) take F(2x2, 3x3)
/// instead: its 16 GEMMs have 4x as many rows (tiles) as those of F(4x4, 3x3) on the same
/// map, and its weights are 16/9 of the dense ones instead of 4x, which is what such layers
/// wait for (their weights are streamed from memory every inference).
fn winograd_plan(conv: &Conv, input: Shape4, nb: u16) -> ConvPlan {
    let Some((oh, ow)) = conv.output_hw(input.h, input.w) else {
        return ConvPlan::Dense { nb };
    };
    if !winograd_applies(conv) {
        return ConvPlan::Dense { nb };
    }
    let tiles4 = oh.div_ceil(4) as u64 * ow.div_ceil(4) as u64;
    let wide = conv.in_c >= WINOGRAD23_MIN_C && conv.out_c >= WINOGRAD23_MIN_C;
    if wide && oh >= 4 && ow >= 4 && tiles4 <= 16 {
        ConvPlan::Winograd23 { nb }
    } else if conv.in_c >= 16 && conv.out_c >= 16 && tiles4 >= 16 {
        ConvPlan::Winograd { nb }
    } else {
        ConvPlan::Dense { nb }
    }
}

/// Fewest input and output channels for which F(2x2, 3x3) pays (measured on the x86 tables).
const WINOGRAD23_MIN_C: u32 = 256;

impl KernelChoice {
    /// The concrete table `Auto` stands for on this CPU; other choices are returned as they
    /// are.
    pub fn resolve(self) -> KernelChoice {
        match self {
            KernelChoice::Auto => KernelTable::detect().choice,
            c => c,
        }
    }

    /// Channel stride alignment of the table's activations, in floats.
    pub fn channel_align(self) -> usize {
        match self.resolve() {
            KernelChoice::X86Avx512 => 16,
            _ => 8,
        }
    }

    /// How the table of this choice runs `conv` on an input of shape `input` (NHWC).
    pub fn conv_plan(self, conv: &Conv, input: Shape4) -> ConvPlan {
        let choice = self.resolve();
        if conv.is_depthwise() {
            let b = if choice == KernelChoice::X86Avx512 {
                16
            } else {
                8
            };
            return ConvPlan::Depthwise { b };
        }
        if conv.groups != 1 {
            return ConvPlan::Generic;
        }
        match choice {
            KernelChoice::X86Avx2 => {
                let nb = if conv.out_c.is_multiple_of(16) { 16 } else { 8 };
                winograd_plan(conv, input, nb)
            }
            KernelChoice::X86Avx512 => {
                // 32-channel blocks (two vectors per row of the tile: one weight load per
                // 12 multiply-adds instead of per 6, one pass over the input per 32 channels)
                // unless their padding wastes more than a 16th of the output channels:
                // SqueezeNet's 1000-class conv at 13x13 went from 1.46 to 1.20 ms with 1024
                // computed channels. Where 16-channel blocks pad as much (24 channels, 40,
                // 56, ...), 32 always.
                // A 1x1 conv always: its kernel runs a last block of at most 16 channels
                // as a one-vector tile (x86/dense.rs, `ConvTile::narrow`), so 32-channel
                // blocks compute no more channels than 16-channel ones.
                let waste = conv.out_c.next_multiple_of(32) - conv.out_c;
                let same = conv.out_c.next_multiple_of(32) == conv.out_c.next_multiple_of(16);
                let pointwise = conv.kernel == [1, 1] && conv.groups == 1;
                let nb = if pointwise || same || waste <= conv.out_c / 16 {
                    32
                } else {
                    16
                };
                winograd_plan(conv, input, nb)
            }
            KernelChoice::Aarch64Neon => winograd_plan(conv, input, 8),
            _ => ConvPlan::Dense { nb: 8 },
        }
    }

    /// The layout the table of this choice wants for a weight with the given role
    /// (`conv_input`: the input shape of the conv, for conv weights).
    pub fn layout_for(self, role: WeightRole, conv_input: Shape4) -> Layout {
        match role {
            WeightRole::Conv(c) => self.conv_plan(&c, conv_input).layout(),
            WeightRole::Fc => match self.resolve() {
                KernelChoice::X86Avx512 => Layout::FcOcBlock(16),
                _ => Layout::FcOcBlock(8),
            },
            WeightRole::Vector => Layout::Canonical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Conv;

    /// The rule restates two facts each table also holds (its channel alignment and its
    /// fully connected layout); they must agree, or the converter packs for the wrong one.
    #[test]
    fn the_rule_agrees_with_every_table() {
        let conv = Conv {
            in_c: 32,
            out_c: 48,
            groups: 1,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [1; 4],
            weight: 0,
            bias: None,
            act: Default::default(),
        };
        let input = Shape4::new(1, 56, 56, 32);
        for t in KernelTable::all_supported() {
            assert_eq!(t.choice.channel_align(), t.channel_align, "{}", t.name);
            assert_eq!(
                t.choice.layout_for(WeightRole::Fc, input),
                t.fc.layout,
                "{}",
                t.name
            );
            assert_eq!(
                t.conv_kernel(&conv, input).layout,
                t.choice.conv_plan(&conv, input).layout()
            );
        }
    }
}
