//! The `.smof` file format, version 1: writer and validating reader. Specified byte by byte in
//! `docs/format.md`; this module holds the public API, the constants and the limits.
//!
//! A file is a 64-byte header, a section table, and sections (strings, metadata, tensors,
//! weights, nodes, node-io, weight data), each with its own CRC-32. [`read()`] checks every
//! byte it uses before trusting it and returns a [`Graph`](crate::graph::Graph) that passed
//! [`Graph::validate`](crate::graph::Graph::validate).

mod read;
pub mod records;
mod write;

#[cfg(test)]
mod tests;

#[cfg(target_endian = "big")]
compile_error!("the .smof format and the runtime's in-place weights assume a little-endian target");

use crate::error::Result;

pub use read::{read, sections, verify};
pub use write::write;

/// The 8 bytes every `.smof` file starts with.
pub const MAGIC: [u8; 8] = *b"\x89SMOF\r\n\x1a";
/// Major format version written and accepted. A file with another major version is refused
/// with [`crate::Error::UnsupportedVersion`].
pub const VERSION_MAJOR: u16 = 1;
/// Newest minor format version written: 1.1 adds the op codes from
/// [`records::op::FIRST_OF_1_1`] on, 1.2 those from [`records::op::FIRST_OF_1_2`] on, 1.3 the
/// `WinogradF23` weight layout, 1.4 the GELU activation and the op codes from
/// [`records::op::FIRST_OF_1_4`] on. A writer writes the lowest minor version whose features
/// the file uses. Files with any minor version of major 1 are read; sections of kinds this
/// reader does not know are skipped.
pub const VERSION_MINOR: u16 = 4;

/// Alignment of every section's offset.
pub const SECTION_ALIGN: u64 = 8;
/// Alignment of the weight data section and of every weight in it (absolute file offsets).
pub const WEIGHT_ALIGN: u64 = 64;

/// Largest header size accepted ([`records::FileHeader::header_size`]).
pub const MAX_HEADER_SIZE: u32 = 4096;
/// Largest number of section table entries.
pub const MAX_SECTIONS: u32 = 64;
/// Longest single string, in bytes.
pub const MAX_STRING_LEN: u32 = 1 << 16;
/// Largest strings section, and largest sum of the lengths of all string references.
pub const MAX_STRING_BYTES: u64 = 1 << 26;
/// Largest number of activation tensors.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Largest number of weights.
pub const MAX_WEIGHTS: u64 = 1 << 20;
/// Largest number of nodes.
pub const MAX_NODES: u64 = 1 << 20;
/// Largest number of node-io entries, and largest sum of all nodes' input and output counts.
pub const MAX_NODE_IO: u64 = 1 << 24;
/// Most inputs of one node.
pub const MAX_NODE_INPUTS: u32 = 4096;
/// Most outputs of one node (format v1 graphs use exactly one).
pub const MAX_NODE_OUTPUTS: u32 = 16;
/// Most model inputs, and most model outputs.
pub const MAX_MODEL_IOS: u32 = 1024;
/// Most dims of a weight or a model input/output.
pub const MAX_RANK: u32 = 4;

/// The kinds of section defined by format v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// UTF-8 string bytes, referenced by (offset, length) pairs.
    Strings = 1,
    /// Producer, model name, description, model inputs and outputs.
    Metadata = 2,
    /// Activation tensor table.
    Tensors = 3,
    /// Weight table (descriptors; the data is in [`SectionKind::WeightData`]).
    Weights = 4,
    /// Node table.
    Nodes = 5,
    /// Tensor ids referenced by the nodes' input and output ranges.
    NodeIo = 6,
    /// The weights' bytes, each 64-byte aligned.
    WeightData = 7,
}

impl SectionKind {
    /// Every kind of v1, in the order the writer lays them out.
    pub const ALL: [SectionKind; 7] = [
        SectionKind::Strings,
        SectionKind::Metadata,
        SectionKind::Tensors,
        SectionKind::Weights,
        SectionKind::Nodes,
        SectionKind::NodeIo,
        SectionKind::WeightData,
    ];

    /// The kind with code `code`, or `None` for a kind this reader does not know.
    pub fn from_code(code: u32) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| *k as u32 == code)
    }

    /// The kind's code in the section table.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Short name, for reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Strings => "strings",
            SectionKind::Metadata => "metadata",
            SectionKind::Tensors => "tensors",
            SectionKind::Weights => "weights",
            SectionKind::Nodes => "nodes",
            SectionKind::NodeIo => "node-io",
            SectionKind::WeightData => "weight data",
        }
    }
}

/// One entry of a file's section table, as listed by [`sections`] (for `smof inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// Position in the section table.
    pub index: usize,
    /// Kind code as stored.
    pub kind_code: u32,
    /// The kind, or `None` when this reader does not know it (the section is skipped).
    pub kind: Option<SectionKind>,
    /// Absolute offset of the section.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// CRC-32 stored in the section table.
    pub crc32: u32,
    /// Whether the section's bytes match `crc32`.
    pub crc_ok: bool,
}

impl SectionInfo {
    /// The kind's name, or `unknown`.
    pub fn name(&self) -> &'static str {
        self.kind.map_or("unknown", SectionKind::name)
    }
}

/// Options for [`read()`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Verify the checksum of the weight data section too (the other sections always are).
    pub verify_weights: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            verify_weights: true,
        }
    }
}

/// The CRC-32 the format uses (CRC-32/ISO-HDLC, as in zlib and PNG).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Reads only the version of a `.smof` file: `(major, minor)`. Checks the magic, nothing else.
pub fn version(bytes: &[u8]) -> Result<(u16, u16)> {
    read::version(bytes)
}

/// One weight reference of an op with the role it is used in.
type Use = (crate::graph::WeightId, crate::kernels::WeightRole);

/// The weights `op` reads, each with its role (at most two per op).
fn weight_uses(op: &crate::graph::Op) -> [Option<Use>; 2] {
    use crate::graph::Op;
    use crate::kernels::WeightRole;
    match op {
        Op::Conv(c) => [
            Some((c.weight, WeightRole::Conv(*c))),
            c.bias.map(|b| (b, WeightRole::Vector)),
        ],
        Op::Fc(f) => [
            Some((f.weight, WeightRole::Fc)),
            f.bias.map(|b| (b, WeightRole::Vector)),
        ],
        Op::ChannelAffine { scale, shift, .. } | Op::LayerNorm { scale, shift, .. } => [
            Some((*scale, WeightRole::Vector)),
            Some((*shift, WeightRole::Vector)),
        ],
        Op::Deconv(d) => [
            Some((d.weight, WeightRole::Vector)),
            d.bias.map(|b| (b, WeightRole::Vector)),
        ],
        Op::Constant { weight } => [Some((*weight, WeightRole::Vector)), None],
        _ => [None, None],
    }
}

/// Describes a weight role for error messages.
fn role_name(role: &crate::kernels::WeightRole) -> String {
    use crate::kernels::WeightRole;
    match role {
        WeightRole::Conv(c) if c.is_depthwise() => "the weights of a depthwise conv".into(),
        WeightRole::Conv(c) if c.groups == 1 => "the weights of an ungrouped conv".into(),
        WeightRole::Conv(c) => format!("the weights of a grouped conv ({} groups)", c.groups),
        WeightRole::Fc => "fully connected weights".into(),
        WeightRole::Vector => "a per-channel vector or transposed-conv weights".into(),
    }
}

/// A weight whose layout does not fit one of the roles it is used in.
struct LayoutConflict {
    /// The weight.
    weight: usize,
    /// The node that uses it.
    node: usize,
    /// How that node uses it.
    role: String,
}

/// Finds the first use of a weight, over all nodes, in a role its layout does not fit
/// ([`crate::kernels::pack::layout_fits`]). Weight ids out of range are skipped.
fn layout_conflict(graph: &crate::graph::Graph) -> Option<LayoutConflict> {
    for (n, node) in graph.nodes.iter().enumerate() {
        for (id, role) in weight_uses(&node.op).into_iter().flatten() {
            let Some(w) = graph.weights.get(id as usize) else {
                continue;
            };
            if !crate::kernels::pack::layout_fits(w.layout, &role) {
                return Some(LayoutConflict {
                    weight: id as usize,
                    node: n,
                    role: role_name(&role),
                });
            }
        }
    }
    None
}
