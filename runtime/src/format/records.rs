//! The fixed-size little-endian records of a `.smof` v1 file and the numeric codes of every
//! enum they hold. Byte offsets and meanings are specified in `docs/format.md`.
//!
//! Every record is `#[repr(C)]`, has no padding and is [`bytemuck::Pod`], so it can be read
//! from any byte position with [`bytemuck::pod_read_unaligned`] or cast in place when aligned.

use bytemuck::{Pod, Zeroable};

/// The file header, at byte 0. 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FileHeader {
    /// [`super::MAGIC`].
    pub magic: [u8; 8],
    /// Format major version; this reader accepts [`super::VERSION_MAJOR`] only.
    pub version_major: u16,
    /// Format minor version; any value is accepted.
    pub version_minor: u16,
    /// Size of the header in bytes, at least [`HEADER_SIZE`], a multiple of 8.
    pub header_size: u32,
    /// Total length of the file in bytes.
    pub file_len: u64,
    /// Absolute offset of the section table, a multiple of 8.
    pub section_table_offset: u64,
    /// Number of entries in the section table.
    pub section_count: u32,
    /// Flags; none is defined in v1, must be 0.
    pub flags: u32,
    /// CRC-32 of the header (this field zeroed) followed by the section table.
    pub header_crc: u32,
    /// Must be zero.
    pub reserved: [u32; 5],
}

/// Size of [`FileHeader`] in bytes.
pub const HEADER_SIZE: usize = 64;
/// Byte offset of [`FileHeader::header_crc`] inside the header.
pub const HEADER_CRC_OFFSET: usize = 40;

/// One entry of the section table. 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct SectionEntry {
    /// Section kind ([`super::SectionKind`]); unknown kinds are skipped.
    pub kind: u32,
    /// Must be zero.
    pub flags: u32,
    /// Absolute offset of the section's first byte.
    pub offset: u64,
    /// Length of the section in bytes.
    pub length: u64,
    /// CRC-32 of the section's bytes.
    pub crc32: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Size of [`SectionEntry`] in bytes.
pub const SECTION_ENTRY_SIZE: usize = 32;

/// A reference to a UTF-8 string inside the strings section. 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
#[repr(C)]
pub struct StrRef {
    /// Offset from the start of the strings section.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// The header of every table section (tensors, weights, nodes, node-io). 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct TableHeader {
    /// Number of records that follow.
    pub count: u64,
    /// Size of one record in bytes; must be the v1 size of the table's record.
    pub record_size: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Size of [`TableHeader`] in bytes.
pub const TABLE_HEADER_SIZE: usize = 16;

/// The start of the metadata section; `input_count` then `output_count` [`IoRecord`]s follow.
/// 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MetaRecord {
    /// Tool that wrote the file.
    pub producer: StrRef,
    /// Version of that tool.
    pub producer_version: StrRef,
    /// Model name.
    pub model_name: StrRef,
    /// Free-form description.
    pub description: StrRef,
    /// Number of model inputs.
    pub input_count: u32,
    /// Number of model outputs.
    pub output_count: u32,
}

/// A model input or output. 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct IoRecord {
    /// Name.
    pub name: StrRef,
    /// Tensor id.
    pub tensor: u32,
    /// Number of used entries of `dims`, 1 to 4.
    pub rank: u32,
    /// User-facing (ONNX) dims; entries past `rank` are zero.
    pub dims: [u32; 4],
}

/// An activation tensor. 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct TensorRecord {
    /// Name.
    pub name: StrRef,
    /// Shape `[n, h, w, c]`.
    pub shape: [u32; 4],
}

/// A weight tensor. 56 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct WeightRecord {
    /// Name.
    pub name: StrRef,
    /// Element type, a [`dtype`] code.
    pub dtype: u32,
    /// Element order, a [`layout`] code.
    pub layout: u32,
    /// Block size of a blocked layout (1 to 65535); 0 for [`layout::CANONICAL`].
    pub block: u32,
    /// Number of used entries of `dims`, 1 to 4.
    pub rank: u32,
    /// Logical dims; entries past `rank` are zero.
    pub dims: [u32; 4],
    /// Offset of the data from the start of the weight data section, a multiple of 64.
    pub offset: u64,
    /// Length of the data in bytes.
    pub byte_len: u64,
}

/// Number of 32-bit words in a node's parameter area.
pub const NODE_PARAM_WORDS: usize = 24;

/// A node. 128 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct NodeRecord {
    /// Name.
    pub name: StrRef,
    /// Operation, an [`op`] code.
    pub op: u32,
    /// Index of the first input in the node-io array.
    pub input_first: u32,
    /// Number of inputs.
    pub input_count: u32,
    /// Index of the first output in the node-io array.
    pub output_first: u32,
    /// Number of outputs.
    pub output_count: u32,
    /// Must be zero.
    pub reserved: u32,
    /// Operation parameters, laid out per op (see `docs/format.md`); unused words are zero.
    pub params: [u32; NODE_PARAM_WORDS],
}

/// Codes of [`crate::graph::DType`].
pub mod dtype {
    /// IEEE f32, little-endian.
    pub const F32: u32 = 0;
    /// IEEE f16 (binary16), little-endian.
    pub const F16: u32 = 1;
}

/// Codes of [`crate::graph::Layout`].
pub mod layout {
    /// [`crate::graph::Layout::Canonical`].
    pub const CANONICAL: u32 = 0;
    /// [`crate::graph::Layout::ConvOcBlock`].
    pub const CONV_OC_BLOCK: u32 = 1;
    /// [`crate::graph::Layout::DwBlock`].
    pub const DW_BLOCK: u32 = 2;
    /// [`crate::graph::Layout::FcOcBlock`].
    pub const FC_OC_BLOCK: u32 = 3;
    /// [`crate::graph::Layout::WinogradF43`].
    pub const WINOGRAD_F43: u32 = 4;
    /// [`crate::graph::Layout::WinogradF23`].
    pub const WINOGRAD_F23: u32 = 5;
}

/// Codes of [`crate::graph::Op`].
pub mod op {
    /// [`crate::graph::Op::Conv`].
    pub const CONV: u32 = 0;
    /// [`crate::graph::Op::Fc`].
    pub const FC: u32 = 1;
    /// [`crate::graph::Op::Pool`].
    pub const POOL: u32 = 2;
    /// [`crate::graph::Op::GlobalAvgPool`].
    pub const GLOBAL_AVG_POOL: u32 = 3;
    /// [`crate::graph::Op::Add`].
    pub const ADD: u32 = 4;
    /// [`crate::graph::Op::Mul`].
    pub const MUL: u32 = 5;
    /// [`crate::graph::Op::Concat`].
    pub const CONCAT: u32 = 6;
    /// [`crate::graph::Op::Act`].
    pub const ACT: u32 = 7;
    /// [`crate::graph::Op::Softmax`].
    pub const SOFTMAX: u32 = 8;
    /// [`crate::graph::Op::Flatten`].
    pub const FLATTEN: u32 = 9;
    /// [`crate::graph::Op::ChannelAffine`].
    pub const CHANNEL_AFFINE: u32 = 10;
    /// [`crate::graph::Op::Slice`] (format 1.1).
    pub const SLICE: u32 = 11;
    /// [`crate::graph::Op::Resize`] (format 1.1).
    pub const RESIZE: u32 = 12;
    /// [`crate::graph::Op::Deconv`] (format 1.1).
    pub const DECONV: u32 = 13;
    /// [`crate::graph::Op::ChannelShuffle`] (format 1.1).
    pub const CHANNEL_SHUFFLE: u32 = 14;
    /// [`crate::graph::Op::Transpose`] (format 1.1).
    pub const TRANSPOSE: u32 = 15;
    /// [`crate::graph::Op::Reduce`] (format 1.1).
    pub const REDUCE: u32 = 16;
    /// [`crate::graph::Op::Binary`] (format 1.1).
    pub const BINARY: u32 = 17;
    /// [`crate::graph::Op::Unary`] (format 1.1).
    pub const UNARY: u32 = 18;
    /// [`crate::graph::Op::Constant`] (format 1.1).
    pub const CONSTANT: u32 = 19;
    /// [`crate::graph::Op::Pad`] (format 1.1).
    pub const PAD: u32 = 20;
    /// [`crate::graph::Op::DepthToSpace`] (format 1.1).
    pub const DEPTH_TO_SPACE: u32 = 21;
    /// [`crate::graph::Op::SpaceToDepth`] (format 1.1).
    pub const SPACE_TO_DEPTH: u32 = 22;
    /// [`crate::graph::Op::Tile`] (format 1.1).
    pub const TILE: u32 = 23;
    /// [`crate::graph::Op::SoftmaxAxis`] (format 1.1).
    pub const SOFTMAX_AXIS: u32 = 24;
    /// [`crate::graph::Op::Reshape`] (format 1.2).
    pub const RESHAPE: u32 = 25;
    /// [`crate::graph::Op::ConcatAxis`] (format 1.2).
    pub const CONCAT_AXIS: u32 = 26;
    /// [`crate::graph::Op::LayerNorm`] (format 1.4).
    pub const LAYER_NORM: u32 = 27;
    /// The first code of format 1.1; a file using a code from here on is written as 1.1.
    pub const FIRST_OF_1_1: u32 = SLICE;
    /// The first code of format 1.2; a file using a code from here on is written as 1.2.
    pub const FIRST_OF_1_2: u32 = RESHAPE;
    /// The first code of format 1.4 (1.3 added no op).
    pub const FIRST_OF_1_4: u32 = LAYER_NORM;

    /// The lowest minor version of format 1 that defines op code `code`.
    pub fn minor_version_of(code: u32) -> u16 {
        if code >= FIRST_OF_1_4 {
            4
        } else if code >= FIRST_OF_1_2 {
            2
        } else if code >= FIRST_OF_1_1 {
            1
        } else {
            0
        }
    }
}

/// Codes of [`crate::graph::ResizeMode`] and [`crate::graph::NearestRound`].
pub mod resize {
    /// Nearest neighbour.
    pub const NEAREST: u32 = 0;
    /// Bilinear.
    pub const LINEAR: u32 = 1;
    /// Nearest rounding: halves down.
    pub const ROUND_PREFER_FLOOR: u32 = 0;
    /// Nearest rounding: halves up.
    pub const ROUND_PREFER_CEIL: u32 = 1;
    /// Nearest rounding: down.
    pub const FLOOR: u32 = 2;
    /// Nearest rounding: up.
    pub const CEIL: u32 = 3;
}

/// Codes of [`crate::graph::CoordMode`].
pub mod coord {
    /// [`crate::graph::CoordMode::HalfPixel`].
    pub const HALF_PIXEL: u32 = 0;
    /// [`crate::graph::CoordMode::PytorchHalfPixel`].
    pub const PYTORCH_HALF_PIXEL: u32 = 1;
    /// [`crate::graph::CoordMode::AlignCorners`].
    pub const ALIGN_CORNERS: u32 = 2;
    /// [`crate::graph::CoordMode::Asymmetric`].
    pub const ASYMMETRIC: u32 = 3;
    /// [`crate::graph::CoordMode::TfHalfPixelForNn`].
    pub const TF_HALF_PIXEL_FOR_NN: u32 = 4;
    /// [`crate::graph::CoordMode::HalfPixelSymmetric`].
    pub const HALF_PIXEL_SYMMETRIC: u32 = 5;
}

/// Codes of [`crate::graph::ReduceKind`].
pub mod reduce {
    /// Mean.
    pub const MEAN: u32 = 0;
    /// Maximum.
    pub const MAX: u32 = 1;
    /// Sum.
    pub const SUM: u32 = 2;
    /// Index of the maximum (format 1.2).
    pub const ARGMAX: u32 = 3;
}

/// Codes of [`crate::graph::Activation`]; the two parameter words follow the code.
pub mod act {
    /// Identity; no parameter.
    pub const NONE: u32 = 0;
    /// `max(x, 0)`; no parameter.
    pub const RELU: u32 = 1;
    /// Parameters `min`, `max`.
    pub const CLIP: u32 = 2;
    /// Parameter `alpha`.
    pub const LEAKY_RELU: u32 = 3;
    /// No parameter.
    pub const SIGMOID: u32 = 4;
    /// Parameters `alpha`, `beta`.
    pub const HARD_SIGMOID: u32 = 5;
    /// No parameter.
    pub const HARD_SWISH: u32 = 6;
    /// No parameter.
    pub const SILU: u32 = 7;
    /// No parameter.
    pub const TANH: u32 = 8;
    /// No parameter (format 1.4).
    pub const GELU: u32 = 9;
}

/// Codes of [`crate::graph::PoolKind`].
pub mod pool {
    /// Max pooling.
    pub const MAX: u32 = 0;
    /// Average pooling.
    pub const AVG: u32 = 1;
}

/// The weight id word meaning "no weight" (an absent bias).
pub const NO_WEIGHT: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn record_sizes_match_the_spec() {
        assert_eq!(size_of::<FileHeader>(), HEADER_SIZE);
        assert_eq!(offset_of!(FileHeader, header_crc), HEADER_CRC_OFFSET);
        assert_eq!(size_of::<SectionEntry>(), SECTION_ENTRY_SIZE);
        assert_eq!(size_of::<TableHeader>(), TABLE_HEADER_SIZE);
        assert_eq!(size_of::<StrRef>(), 8);
        assert_eq!(size_of::<MetaRecord>(), 40);
        assert_eq!(size_of::<IoRecord>(), 32);
        assert_eq!(size_of::<TensorRecord>(), 24);
        assert_eq!(size_of::<WeightRecord>(), 56);
        assert_eq!(offset_of!(WeightRecord, offset), 40);
        assert_eq!(size_of::<NodeRecord>(), 128);
        assert_eq!(offset_of!(NodeRecord, params), 32);
    }
}
