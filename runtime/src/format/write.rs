//! The `.smof` v1 writer: checks a [`Graph`] and its weight bytes, then lays out the header,
//! the section table and every section with their checksums.

use super::records::{
    act, coord, dtype, layout, op, pool, reduce, resize, FileHeader, IoRecord, MetaRecord,
    NodeRecord, SectionEntry, StrRef, TableHeader, TensorRecord, WeightRecord, HEADER_SIZE,
    NODE_PARAM_WORDS, NO_WEIGHT, SECTION_ENTRY_SIZE,
};
use super::{
    SectionKind, MAGIC, MAX_MODEL_IOS, MAX_NODES, MAX_NODE_INPUTS, MAX_NODE_IO, MAX_NODE_OUTPUTS,
    MAX_RANK, MAX_STRING_BYTES, MAX_STRING_LEN, MAX_TENSORS, MAX_WEIGHTS, SECTION_ALIGN,
    VERSION_MAJOR, WEIGHT_ALIGN,
};
use crate::error::{Error, Result};
use crate::graph::{
    Activation, BinaryKind, CoordMode, DType, Graph, IoDesc, Layout, NearestRound, Op, PadMode,
    PoolKind, ReduceKind, ResizeMode, UnaryKind, WeightId,
};
use crate::kernels::pack;
use bytemuck::{bytes_of, Pod};

/// An error about the graph as a whole, in the style of [`Graph::validate`].
fn invalid(what: String) -> Error {
    Error::InvalidGraph {
        node: "graph".into(),
        op: "-",
        what,
    }
}

/// Checks that a count fits the format's limit.
fn check_count(what: &str, n: usize, limit: u64) -> Result<()> {
    if n as u64 > limit {
        Err(invalid(format!(
            "{n} {what}, more than the .smof limit of {limit}"
        )))
    } else {
        Ok(())
    }
}

/// Serialises `graph` with the data of each weight (`weight_data[i]` for `graph.weights[i]`,
/// already in that weight's dtype and layout). Weight offsets and lengths are assigned here;
/// the `offset` and `byte_len` fields of `graph.weights` are ignored.
///
/// Fails, without writing anything, when `graph` does not pass [`Graph::validate`], when a
/// data buffer's length is not [`pack::stored_bytes`] of its weight, when a weight's layout
/// does not fit a role it is used in, or when the graph exceeds one of the format's limits.
/// Every file this returns is accepted by [`super::read()`].
pub fn write(graph: &Graph, weight_data: &[&[u8]]) -> Result<Vec<u8>> {
    graph.validate()?;
    check(graph, weight_data)?;

    let mut strings = Strings::default();

    // Metadata.
    let meta = &graph.meta;
    let mut metadata = Vec::new();
    push(
        &mut metadata,
        &MetaRecord {
            producer: strings.add(&meta.producer)?,
            producer_version: strings.add(&meta.producer_version)?,
            model_name: strings.add(&meta.model_name)?,
            description: strings.add(&meta.description)?,
            input_count: graph.inputs.len() as u32,
            output_count: graph.outputs.len() as u32,
        },
    );
    for io in graph.inputs.iter().chain(&graph.outputs) {
        push(&mut metadata, &io_record(io, &mut strings)?);
    }

    // Tensors.
    let mut tensors = table_header::<TensorRecord>(graph.tensors.len());
    for t in &graph.tensors {
        let s = t.shape;
        push(
            &mut tensors,
            &TensorRecord {
                name: strings.add(&t.name)?,
                shape: [s.n, s.h, s.w, s.c],
            },
        );
    }

    // Weights, each placed at the next 64-byte boundary of the weight data section.
    let mut weights = table_header::<WeightRecord>(graph.weights.len());
    let mut data_len = 0u64;
    let mut data_offsets = Vec::with_capacity(graph.weights.len());
    for (w, data) in graph.weights.iter().zip(weight_data) {
        let offset = data_len.next_multiple_of(WEIGHT_ALIGN);
        data_len = offset + data.len() as u64;
        data_offsets.push(offset);
        let (layout, block) = match w.layout {
            Layout::Canonical => (layout::CANONICAL, 0),
            Layout::ConvOcBlock(b) => (layout::CONV_OC_BLOCK, b),
            Layout::DwBlock(b) => (layout::DW_BLOCK, b),
            Layout::FcOcBlock(b) => (layout::FC_OC_BLOCK, b),
            Layout::WinogradF43(b) => (layout::WINOGRAD_F43, b),
            Layout::WinogradF23(b) => (layout::WINOGRAD_F23, b),
        };
        let mut dims = [0u32; 4];
        dims[..w.dims.len()].copy_from_slice(&w.dims);
        push(
            &mut weights,
            &WeightRecord {
                name: strings.add(&w.name)?,
                dtype: match w.dtype {
                    DType::F32 => dtype::F32,
                    DType::F16 => dtype::F16,
                },
                layout,
                block: block as u32,
                rank: w.dims.len() as u32,
                dims,
                offset,
                byte_len: data.len() as u64,
            },
        );
    }

    // Nodes and the node-io array.
    let io_total: usize = graph
        .nodes
        .iter()
        .map(|n| n.inputs.len() + n.outputs.len())
        .sum();
    check_count("node inputs and outputs", io_total, MAX_NODE_IO)?;
    let mut nodes = table_header::<NodeRecord>(graph.nodes.len());
    let mut node_io = table_header::<u32>(io_total);
    let mut io_next = 0u32;
    for node in &graph.nodes {
        let (op, params) = encode_op(&node.op);
        let input_first = io_next;
        let output_first = input_first + node.inputs.len() as u32;
        io_next = output_first + node.outputs.len() as u32;
        for &t in node.inputs.iter().chain(&node.outputs) {
            push(&mut node_io, &t);
        }
        push(
            &mut nodes,
            &NodeRecord {
                name: strings.add(&node.name)?,
                op,
                input_first,
                input_count: node.inputs.len() as u32,
                output_first,
                output_count: node.outputs.len() as u32,
                reserved: 0,
                params,
            },
        );
    }

    if strings.bytes.len() as u64 > MAX_STRING_BYTES {
        return Err(Error::TooLarge {
            what: "the strings section".into(),
            bytes: strings.bytes.len() as u64,
            limit: MAX_STRING_BYTES,
        });
    }

    // Layout: header, section table, then the sections in `SectionKind::ALL` order.
    let bodies: [&[u8]; 6] = [
        &strings.bytes,
        &metadata,
        &tensors,
        &weights,
        &nodes,
        &node_io,
    ];
    let count = SectionKind::ALL.len();
    let table_offset = HEADER_SIZE as u64;
    let mut pos = table_offset + (count * SECTION_ENTRY_SIZE) as u64;
    let mut entries = Vec::with_capacity(count);
    for (kind, body) in SectionKind::ALL.iter().zip(bodies) {
        pos = pos.next_multiple_of(SECTION_ALIGN);
        entries.push(entry(*kind, pos, body.len() as u64));
        pos += body.len() as u64;
    }
    let data_offset = pos.next_multiple_of(WEIGHT_ALIGN);
    entries.push(entry(SectionKind::WeightData, data_offset, data_len));
    let file_len = data_offset + data_len;
    let file_len_usize = usize::try_from(file_len).map_err(|_| Error::TooLarge {
        what: "the .smof file".into(),
        bytes: file_len,
        limit: usize::MAX as u64,
    })?;

    let mut out = vec![0u8; file_len_usize];
    for (e, body) in entries.iter().zip(bodies) {
        out[e.offset as usize..][..body.len()].copy_from_slice(body);
    }
    for (offset, data) in data_offsets.iter().zip(weight_data) {
        out[(data_offset + offset) as usize..][..data.len()].copy_from_slice(data);
    }
    for e in &mut entries {
        e.crc32 = super::crc32(&out[e.offset as usize..(e.offset + e.length) as usize]);
    }
    let table_bytes: Vec<u8> = entries.iter().flat_map(|e| bytes_of(e).to_vec()).collect();
    let mut header = FileHeader {
        magic: MAGIC,
        version_major: VERSION_MAJOR,
        // Rank-3 model inputs and outputs came with format 1.2.
        version_minor: graph
            .nodes
            .iter()
            .map(|n| match n.op {
                Op::Reduce {
                    kind: ReduceKind::ArgMax,
                    ..
                } => 2,
                _ => op::minor_version_of(encode_op(&n.op).0),
            })
            .chain(
                graph
                    .inputs
                    .iter()
                    .chain(&graph.outputs)
                    .filter(|io| io.dims.len() == 3)
                    .map(|_| 2),
            )
            // The WinogradF23 layout came with format 1.3.
            .chain(
                graph
                    .weights
                    .iter()
                    .filter(|w| matches!(w.layout, Layout::WinogradF23(_)))
                    .map(|_| 3),
            )
            // The GELU activation came with format 1.4.
            .chain(
                graph
                    .nodes
                    .iter()
                    .filter(|n| n.op.activation() == Some(Activation::Gelu))
                    .map(|_| 4),
            )
            .max()
            .unwrap_or(0),
        header_size: HEADER_SIZE as u32,
        file_len,
        section_table_offset: table_offset,
        section_count: count as u32,
        flags: 0,
        header_crc: 0,
        reserved: [0; 5],
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(bytes_of(&header));
    crc.update(&table_bytes);
    header.header_crc = crc.finalize();
    out[..HEADER_SIZE].copy_from_slice(bytes_of(&header));
    out[HEADER_SIZE..][..table_bytes.len()].copy_from_slice(&table_bytes);
    Ok(out)
}

/// The checks [`Graph::validate`] does not do: weight data lengths, layouts against roles,
/// and the format's limits.
fn check(graph: &Graph, weight_data: &[&[u8]]) -> Result<()> {
    if weight_data.len() != graph.weights.len() {
        return Err(invalid(format!(
            "{} weights but {} weight data buffers",
            graph.weights.len(),
            weight_data.len()
        )));
    }
    for (i, (w, data)) in graph.weights.iter().zip(weight_data).enumerate() {
        let want = pack::stored_bytes(w).ok_or_else(|| {
            invalid(format!(
                "weight {i} ({}): layout {:?} does not apply to dims {:?}",
                w.name, w.layout, w.dims
            ))
        })?;
        if data.len() as u64 != want {
            return Err(invalid(format!(
                "weight {i} ({}): {} bytes of data given, but {:?} {:?} with dims {:?} \
                 needs {want}",
                w.name,
                data.len(),
                w.dtype,
                w.layout,
                w.dims
            )));
        }
    }
    if let Some(c) = super::layout_conflict(graph) {
        let w = &graph.weights[c.weight];
        let node = &graph.nodes[c.node];
        return Err(Error::InvalidGraph {
            node: if node.name.is_empty() {
                format!("#{}", c.node)
            } else {
                node.name.clone()
            },
            op: node.op.name(),
            what: format!(
                "uses weight {} ({}) as {}, which layout {:?} does not fit",
                c.weight, w.name, c.role, w.layout
            ),
        });
    }
    check_count("tensors", graph.tensors.len(), MAX_TENSORS)?;
    check_count("weights", graph.weights.len(), MAX_WEIGHTS)?;
    check_count("nodes", graph.nodes.len(), MAX_NODES)?;
    check_count("model inputs", graph.inputs.len(), MAX_MODEL_IOS as u64)?;
    check_count("model outputs", graph.outputs.len(), MAX_MODEL_IOS as u64)?;
    for (i, node) in graph.nodes.iter().enumerate() {
        let ctx = |what: &str| format!("node {i} ({}) {what}", node.name);
        check_count(&ctx("inputs"), node.inputs.len(), MAX_NODE_INPUTS as u64)?;
        check_count(&ctx("outputs"), node.outputs.len(), MAX_NODE_OUTPUTS as u64)?;
    }
    for io in graph.inputs.iter().chain(&graph.outputs) {
        if io.dims.is_empty() || io.dims.len() > MAX_RANK as usize {
            return Err(invalid(format!(
                "model input/output {} has {} dims",
                io.name,
                io.dims.len()
            )));
        }
    }
    Ok(())
}

/// Appends a record's bytes.
fn push<T: Pod>(out: &mut Vec<u8>, record: &T) {
    out.extend_from_slice(bytes_of(record));
}

/// A table section's buffer, holding its [`TableHeader`] for `count` records of `T`.
fn table_header<T: Pod>(count: usize) -> Vec<u8> {
    let size = std::mem::size_of::<T>();
    let mut out = Vec::with_capacity(16 + count * size);
    push(
        &mut out,
        &TableHeader {
            count: count as u64,
            record_size: size as u32,
            reserved: 0,
        },
    );
    out
}

/// A section table entry without its checksum.
fn entry(kind: SectionKind, offset: u64, length: u64) -> SectionEntry {
    SectionEntry {
        kind: kind.code(),
        flags: 0,
        offset,
        length,
        crc32: 0,
        reserved: 0,
    }
}

/// Encodes a model input or output.
fn io_record(io: &IoDesc, strings: &mut Strings) -> Result<IoRecord> {
    let mut dims = [0u32; 4];
    dims[..io.dims.len()].copy_from_slice(&io.dims);
    Ok(IoRecord {
        name: strings.add(&io.name)?,
        tensor: io.tensor,
        rank: io.dims.len() as u32,
        dims,
    })
}

/// The strings section being built.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
}

impl Strings {
    /// Appends `s` and returns its reference.
    fn add(&mut self, s: &str) -> Result<StrRef> {
        if s.len() > MAX_STRING_LEN as usize {
            let head: String = s.chars().take(40).collect();
            return Err(Error::TooLarge {
                what: format!("string {head:?}..."),
                bytes: s.len() as u64,
                limit: MAX_STRING_LEN as u64,
            });
        }
        let offset = u32::try_from(self.bytes.len())
            .ok()
            .filter(|&o| o as u64 + s.len() as u64 <= MAX_STRING_BYTES)
            .ok_or_else(|| Error::TooLarge {
                what: "the strings section".into(),
                bytes: self.bytes.len() as u64 + s.len() as u64,
                limit: MAX_STRING_BYTES,
            })?;
        self.bytes.extend_from_slice(s.as_bytes());
        Ok(StrRef {
            offset,
            len: s.len() as u32,
        })
    }
}

/// The three words of an activation: code, then two f32 parameters (zero when unused).
pub(super) fn act_words(a: Activation) -> [u32; 3] {
    let (code, p0, p1) = match a {
        Activation::None => (act::NONE, 0, 0),
        Activation::Relu => (act::RELU, 0, 0),
        Activation::Clip { min, max } => (act::CLIP, min.to_bits(), max.to_bits()),
        Activation::LeakyRelu { alpha } => (act::LEAKY_RELU, alpha.to_bits(), 0),
        Activation::Sigmoid => (act::SIGMOID, 0, 0),
        Activation::HardSigmoid { alpha, beta } => {
            (act::HARD_SIGMOID, alpha.to_bits(), beta.to_bits())
        }
        Activation::HardSwish => (act::HARD_SWISH, 0, 0),
        Activation::Silu => (act::SILU, 0, 0),
        Activation::Tanh => (act::TANH, 0, 0),
        Activation::Gelu => (act::GELU, 0, 0),
    };
    [code, p0, p1]
}

/// Encodes an optional weight id.
fn opt_weight(w: Option<WeightId>) -> u32 {
    w.unwrap_or(NO_WEIGHT)
}

/// The code of `v`: its index in `all`.
fn code_of<T: PartialEq>(all: &[T], v: &T) -> u32 {
    all.iter().position(|k| k == v).unwrap_or(0) as u32
}

/// An op's code and parameter area.
fn encode_op(o: &Op) -> (u32, [u32; NODE_PARAM_WORDS]) {
    let mut p = [0u32; NODE_PARAM_WORDS];
    let mut put = |at: usize, words: &[u32]| p[at..at + words.len()].copy_from_slice(words);
    let code = match o {
        Op::Conv(c) => {
            put(0, &[c.in_c, c.out_c, c.groups]);
            put(3, &c.kernel);
            put(5, &c.stride);
            put(7, &c.dilation);
            put(9, &c.pads);
            put(13, &[c.weight, opt_weight(c.bias)]);
            put(15, &act_words(c.act));
            op::CONV
        }
        Op::Fc(f) => {
            put(
                0,
                &[f.in_features, f.out_features, f.weight, opt_weight(f.bias)],
            );
            put(4, &act_words(f.act));
            op::FC
        }
        Op::Pool(pl) => {
            let (kind, include_pad) = match pl.kind {
                PoolKind::Max => (pool::MAX, 0),
                PoolKind::Avg { count_include_pad } => (pool::AVG, count_include_pad as u32),
            };
            put(0, &[kind, include_pad]);
            put(2, &pl.kernel);
            put(4, &pl.stride);
            put(6, &pl.dilation);
            put(8, &pl.pads);
            put(12, &pl.ceil_pads);
            op::POOL
        }
        Op::GlobalAvgPool => op::GLOBAL_AVG_POOL,
        Op::Add { act } => {
            put(0, &act_words(*act));
            op::ADD
        }
        Op::Mul => op::MUL,
        Op::Concat => op::CONCAT,
        Op::Act(a) => {
            put(0, &act_words(*a));
            op::ACT
        }
        Op::Softmax => op::SOFTMAX,
        Op::Flatten => op::FLATTEN,
        Op::ChannelAffine { scale, shift, act } => {
            put(0, &[*scale, *shift]);
            put(2, &act_words(*act));
            op::CHANNEL_AFFINE
        }
        Op::Slice { start, end, step } => {
            put(0, start);
            put(4, end);
            put(8, step);
            op::SLICE
        }
        Op::Resize(r) => {
            let (mode, round) = match r.mode {
                ResizeMode::Nearest(n) => (
                    resize::NEAREST,
                    match n {
                        NearestRound::RoundPreferFloor => resize::ROUND_PREFER_FLOOR,
                        NearestRound::RoundPreferCeil => resize::ROUND_PREFER_CEIL,
                        NearestRound::Floor => resize::FLOOR,
                        NearestRound::Ceil => resize::CEIL,
                    },
                ),
                ResizeMode::Linear => (resize::LINEAR, 0),
            };
            let coord = match r.coord {
                CoordMode::HalfPixel => coord::HALF_PIXEL,
                CoordMode::PytorchHalfPixel => coord::PYTORCH_HALF_PIXEL,
                CoordMode::AlignCorners => coord::ALIGN_CORNERS,
                CoordMode::Asymmetric => coord::ASYMMETRIC,
                CoordMode::TfHalfPixelForNn => coord::TF_HALF_PIXEL_FOR_NN,
                CoordMode::HalfPixelSymmetric => coord::HALF_PIXEL_SYMMETRIC,
            };
            put(0, &[mode, round, coord]);
            put(3, &r.scale.map(f32::to_bits));
            put(5, &r.size);
            op::RESIZE
        }
        Op::Deconv(d) => {
            put(0, &[d.in_c, d.out_c, d.groups]);
            put(3, &d.kernel);
            put(5, &d.stride);
            put(7, &d.dilation);
            put(9, &d.pads);
            put(13, &d.out_pad);
            put(15, &[d.weight, opt_weight(d.bias)]);
            put(17, &act_words(d.act));
            op::DECONV
        }
        Op::ChannelShuffle { groups } => {
            put(0, &[*groups]);
            op::CHANNEL_SHUFFLE
        }
        Op::Transpose { perm } => {
            put(0, perm);
            op::TRANSPOSE
        }
        Op::Reduce { kind, axes } => {
            let k = match kind {
                ReduceKind::Mean => reduce::MEAN,
                ReduceKind::Max => reduce::MAX,
                ReduceKind::Sum => reduce::SUM,
                ReduceKind::ArgMax => reduce::ARGMAX,
            };
            put(0, &[k, *axes]);
            op::REDUCE
        }
        Op::Binary { kind, act } => {
            put(0, &[code_of(&BinaryKind::ALL, kind)]);
            put(1, &act_words(*act));
            op::BINARY
        }
        Op::Unary { kind } => {
            put(0, &[code_of(&UnaryKind::ALL, kind)]);
            op::UNARY
        }
        Op::Constant { weight } => {
            put(0, &[*weight]);
            op::CONSTANT
        }
        Op::Pad { begin, end, mode } => {
            put(0, begin);
            put(4, end);
            let (m, v) = match mode {
                PadMode::Constant(v) => (0, v.to_bits()),
                PadMode::Reflect => (1, 0),
                PadMode::Edge => (2, 0),
            };
            put(8, &[m, v]);
            op::PAD
        }
        Op::DepthToSpace { block, crd } => {
            put(0, &[*block, *crd as u32]);
            op::DEPTH_TO_SPACE
        }
        Op::SpaceToDepth { block } => {
            put(0, &[*block]);
            op::SPACE_TO_DEPTH
        }
        Op::Tile { reps } => {
            put(0, reps);
            op::TILE
        }
        Op::SoftmaxAxis { axis, log } => {
            put(0, &[*axis, *log as u32]);
            op::SOFTMAX_AXIS
        }
        Op::Reshape { shape } => {
            put(0, shape);
            op::RESHAPE
        }
        Op::ConcatAxis { axis } => {
            put(0, &[*axis]);
            op::CONCAT_AXIS
        }
        Op::LayerNorm { scale, shift, eps } => {
            put(0, &[*scale, *shift, eps.to_bits()]);
            op::LAYER_NORM
        }
    };
    (code, p)
}
