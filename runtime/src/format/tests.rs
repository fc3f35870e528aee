//! Unit tests of the format: round trips over every op, activation, layout and dtype, and the
//! writer's and reader's checks.

use super::records::{
    FileHeader, SectionEntry, HEADER_CRC_OFFSET, HEADER_SIZE, SECTION_ENTRY_SIZE,
};
use super::*;
use crate::error::Error;
use crate::graph::*;
use crate::kernels::pack;

/// Builds a graph node by node, declaring each output with the shape the graph computes.
struct Builder {
    g: Graph,
    data: Vec<Vec<u8>>,
}

impl Builder {
    fn new(input: Shape4) -> Self {
        let mut g = Graph {
            meta: Metadata {
                producer: "smof-test".into(),
                producer_version: "0.1.0".into(),
                model_name: "every-op".into(),
                description: "round trip of every op — ünïcode too".into(),
            },
            ..Graph::default()
        };
        g.tensors.push(TensorDesc {
            name: "input".into(),
            shape: input,
        });
        g.inputs.push(IoDesc {
            name: "input".into(),
            tensor: 0,
            dims: vec![input.n, input.c, input.h, input.w],
        });
        Builder {
            g,
            data: Vec::new(),
        }
    }

    fn weight(&mut self, name: &str, dtype: DType, layout: Layout, dims: &[u32]) -> WeightId {
        let mut desc = WeightDesc {
            name: name.into(),
            dtype,
            layout,
            dims: dims.to_vec(),
            offset: 0,
            byte_len: 0,
        };
        desc.byte_len = pack::stored_bytes(&desc).unwrap();
        let seed = self.data.len();
        self.data.push(
            (0..desc.byte_len as usize)
                .map(|i| (i * 31 + seed * 7 + 1) as u8)
                .collect(),
        );
        self.g.weights.push(desc);
        (self.g.weights.len() - 1) as WeightId
    }

    fn node(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> TensorId {
        let out = self.g.tensors.len() as TensorId;
        let node = Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
            outputs: vec![out],
        };
        let shape = self.g.infer_output(self.g.nodes.len(), &node).unwrap();
        self.g.tensors.push(TensorDesc {
            name: format!("{name}:out"),
            shape,
        });
        self.g.nodes.push(node);
        out
    }

    fn finish(mut self, out: TensorId) -> (Graph, Vec<Vec<u8>>) {
        let s = self.g.tensors[out as usize].shape;
        let dims = if (s.h, s.w) == (1, 1) {
            vec![s.n, s.c]
        } else {
            vec![s.n, s.c, s.h, s.w]
        };
        self.g.outputs.push(IoDesc {
            name: "output".into(),
            tensor: out,
            dims,
        });
        self.g.validate().unwrap();
        (self.g, self.data)
    }
}

fn conv(
    in_c: u32,
    out_c: u32,
    groups: u32,
    k: u32,
    weight: WeightId,
    bias: Option<WeightId>,
    act: Activation,
) -> Conv {
    Conv {
        in_c,
        out_c,
        groups,
        kernel: [k, k],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [k / 2; 4],
        weight,
        bias,
        act,
    }
}

/// A graph using every op, every activation, every layout and both dtypes.
fn every_op() -> (Graph, Vec<Vec<u8>>) {
    use Activation::*;
    let mut b = Builder::new(Shape4::new(1, 8, 8, 4));
    let w0 = b.weight("c0.w", DType::F32, Layout::ConvOcBlock(8), &[8, 4, 3, 3]);
    let b0 = b.weight("c0.b", DType::F16, Layout::Canonical, &[8]);
    let t1 = b.node("c0", Op::Conv(conv(4, 8, 1, 3, w0, Some(b0), Relu)), &[0]);
    let w1 = b.weight("dw.w", DType::F16, Layout::DwBlock(4), &[8, 1, 3, 3]);
    let mut dw = conv(8, 8, 8, 3, w1, Option::None, Clip { min: 0.0, max: 6.0 });
    dw.dilation = [2, 1];
    dw.pads = [2, 1, 2, 1];
    let t2 = b.node("dw", Op::Conv(dw), &[t1, t1]);
    let w2 = b.weight("g.w", DType::F32, Layout::Canonical, &[8, 4, 1, 1]);
    let mut grouped = conv(8, 8, 2, 1, w2, Option::None, LeakyRelu { alpha: 0.125 });
    grouped.stride = [2, 1];
    let t3 = b.node("grouped", Op::Conv(grouped), &[t2]);
    let pool = |kind, k: u32, s: u32, p: u32, ceil: u32| Pool {
        kind,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        pads: [p; 4],
        ceil_pads: [ceil, 0],
    };
    let t4 = b.node("max", Op::Pool(pool(PoolKind::Max, 2, 2, 0, 1)), &[t3]);
    let t5 = b.node(
        "avg",
        Op::Pool(pool(
            PoolKind::Avg {
                count_include_pad: true,
            },
            3,
            1,
            1,
            0,
        )),
        &[t4],
    );
    let t5b = b.node(
        "avg2",
        Op::Pool(pool(
            PoolKind::Avg {
                count_include_pad: false,
            },
            1,
            1,
            0,
            0,
        )),
        &[t5],
    );
    let t6 = b.node("add", Op::Add { act: Sigmoid }, &[t4, t5b]);
    let gap = b.node("gap", Op::GlobalAvgPool, &[t6]);
    let t7 = b.node("mul", Op::Mul, &[t6, gap]);
    let t8 = b.node("cat", Op::Concat, &[t7, t6, t7]);
    let t9 = b.node(
        "hsig",
        Op::Act(HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        }),
        &[t8],
    );
    let t10 = b.node("silu", Op::Act(Silu), &[t9]);
    let t11 = b.node("none", Op::Act(None), &[t10]);
    let c = b.g.tensors[t11 as usize].shape.c;
    let sc = b.weight("bn.scale", DType::F32, Layout::Canonical, &[c]);
    let sh = b.weight("bn.shift", DType::F16, Layout::Canonical, &[c]);
    let t12 = b.node(
        "bn",
        Op::ChannelAffine {
            scale: sc,
            shift: sh,
            act: HardSwish,
        },
        &[t11],
    );
    let t13 = b.node("flat", Op::Flatten, &[t12]);
    let f = b.g.tensors[t13 as usize].shape.c;
    let fw = b.weight("fc.w", DType::F16, Layout::FcOcBlock(4), &[10, f]);
    let fb = b.weight("fc.b", DType::F32, Layout::Canonical, &[10]);
    let fc = |in_features, out_features, weight, bias, act| Fc {
        in_features,
        out_features,
        weight,
        bias,
        act,
    };
    let t14 = b.node("fc", Op::Fc(fc(f, 10, fw, Some(fb), Tanh)), &[t13]);
    let fw2 = b.weight("fc2.w", DType::F32, Layout::Canonical, &[6, 10]);
    let t15 = b.node("fc2", Op::Fc(fc(10, 6, fw2, Option::None, Relu)), &[t14]);
    let t16 = b.node("softmax", Op::Softmax, &[t15]);
    let _unused = b.weight("unused", DType::F32, Layout::FcOcBlock(8), &[3, 5]);
    b.finish(t16)
}

fn refs(data: &[Vec<u8>]) -> Vec<&[u8]> {
    data.iter().map(|d| d.as_slice()).collect()
}

fn write_every_op() -> (Graph, Vec<Vec<u8>>, Vec<u8>) {
    let (g, data) = every_op();
    let bytes = write(&g, &refs(&data)).unwrap();
    (g, data, bytes)
}

/// `g` with weight offsets cleared, for comparisons.
fn without_offsets(g: &Graph) -> Graph {
    let mut g = g.clone();
    g.weights.iter_mut().for_each(|w| w.offset = 0);
    g
}

fn corrupt_offset(e: &Error) -> u64 {
    match e {
        Error::Corrupt { offset, .. } => *offset,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn every_op_activation_layout_and_dtype_is_covered() {
    let (g, _) = every_op();
    let mut ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len(), 13, "{ops:?}"); // 11 variants, Conv and Pool counted twice by name
    let mut acts = Vec::new();
    for n in &g.nodes {
        match n.op {
            Op::Conv(c) => acts.push(c.act),
            Op::Fc(f) => acts.push(f.act),
            Op::Add { act } | Op::Act(act) | Op::ChannelAffine { act, .. } => acts.push(act),
            _ => {}
        }
    }
    let mut names: Vec<&str> = acts.iter().map(|a| a.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 9, "{names:?}");
    let layouts: std::collections::HashSet<_> = g
        .weights
        .iter()
        .map(|w| std::mem::discriminant(&w.layout))
        .collect();
    assert_eq!(layouts.len(), 4);
    assert!(g.weights.iter().any(|w| w.dtype == DType::F16));
    assert!(g.weights.iter().any(|w| w.dtype == DType::F32));
}

#[test]
fn round_trip_gives_an_equal_graph_and_the_same_weight_bytes() {
    let (g, data, bytes) = write_every_op();
    let back = read(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(without_offsets(&back), without_offsets(&g));
    for (w, d) in back.weights.iter().zip(&data) {
        assert_eq!(w.offset % WEIGHT_ALIGN, 0, "{}", w.name);
        assert_eq!(
            &bytes[w.offset as usize..][..w.byte_len as usize],
            d.as_slice(),
            "{}",
            w.name
        );
    }
    // Writing is deterministic and reading the result writes it back identically.
    assert_eq!(write(&back, &refs(&data)).unwrap(), bytes);
}

#[test]
fn every_activation_round_trips_with_exact_parameter_bits() {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Clip {
            min: -0.0,
            max: 6.0,
        },
        Activation::Clip {
            min: f32::NEG_INFINITY,
            max: 1.5,
        },
        Activation::LeakyRelu { alpha: 0.01 },
        Activation::Sigmoid,
        Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        Activation::HardSwish,
        Activation::Silu,
        Activation::Tanh,
        Activation::Gelu,
    ];
    for a in acts {
        let mut b = Builder::new(Shape4::new(2, 3, 5, 7));
        let t = b.node("act", Op::Act(a), &[0]);
        let t = b.node("add", Op::Add { act: a }, &[t, 0]);
        let (g, data) = b.finish(t);
        let back = read(&write(&g, &refs(&data)).unwrap(), &ReadOptions::default()).unwrap();
        assert_eq!(back, g);
        let got = match back.nodes[0].op {
            Op::Act(x) => x,
            _ => unreachable!(),
        };
        if let (Activation::Clip { min: a0, .. }, Activation::Clip { min: b0, .. }) = (a, got) {
            assert_eq!(a0.to_bits(), b0.to_bits());
        }
    }
}

#[test]
fn empty_graph_without_nodes_or_weights_round_trips() {
    let b = Builder::new(Shape4::new(1, 1, 1, 3));
    let (mut g, data) = b.finish(0);
    g.meta = Metadata::default();
    let bytes = write(&g, &refs(&data)).unwrap();
    assert_eq!(read(&bytes, &ReadOptions::default()).unwrap(), g);
}

#[test]
fn unaligned_buffers_are_read_without_alignment_assumptions() {
    let (g, _, bytes) = write_every_op();
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let back = read(&shifted[1..], &ReadOptions::default()).unwrap();
    assert_eq!(without_offsets(&back), without_offsets(&g));
}

#[test]
fn layout_summary_matches_the_spec() {
    let (_, _, bytes) = write_every_op();
    assert_eq!(&bytes[..8], b"\x89SMOF\r\n\x1a");
    assert_eq!(version(&bytes).unwrap(), (1, 0));
    let list = sections(&bytes).unwrap();
    let kinds: Vec<_> = list.iter().map(|s| s.kind.unwrap()).collect();
    assert_eq!(kinds, SectionKind::ALL);
    assert!(list
        .iter()
        .all(|s| s.crc_ok && s.offset % SECTION_ALIGN == 0));
    assert_eq!(
        list[0].offset,
        (HEADER_SIZE + 7 * SECTION_ENTRY_SIZE) as u64
    );
    let wd = list.last().unwrap();
    assert_eq!(wd.offset % WEIGHT_ALIGN, 0);
    assert_eq!(wd.offset + wd.length, bytes.len() as u64);
    assert_eq!(list[2].name(), "tensors");
}

#[test]
fn writer_rejects_wrong_lengths_counts_layouts_and_invalid_graphs() {
    let (g, data) = every_op();
    let mut short = refs(&data);
    short.pop();
    assert!(matches!(write(&g, &short), Err(Error::InvalidGraph { .. })));

    let mut bad = data.clone();
    bad[0].push(0);
    let e = write(&g, &refs(&bad)).unwrap_err().to_string();
    assert!(e.contains("c0.w"), "{e}");

    // A depthwise layout on the weights of an ungrouped conv.
    let mut g2 = g.clone();
    g2.weights[0].layout = Layout::DwBlock(8);
    let e = write(&g2, &refs(&data)).unwrap_err();
    assert!(matches!(e, Error::InvalidGraph { .. }), "{e}");

    let mut g3 = g.clone();
    g3.nodes[0].inputs = vec![99];
    assert!(matches!(
        write(&g3, &refs(&data)),
        Err(Error::InvalidGraph { .. })
    ));

    let mut g4 = g.clone();
    g4.meta.description = "x".repeat(MAX_STRING_LEN as usize + 1);
    assert!(matches!(
        write(&g4, &refs(&data)),
        Err(Error::TooLarge { .. })
    ));
}

/// Recomputes the header checksum after an edit of the header or the section table.
fn fix_header_crc(bytes: &mut [u8]) {
    let h: FileHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
    let table = h.section_table_offset as usize;
    let end = table + h.section_count as usize * SECTION_ENTRY_SIZE;
    let mut c = crc32fast::Hasher::new();
    c.update(&bytes[..HEADER_CRC_OFFSET]);
    c.update(&[0; 4]);
    c.update(&bytes[HEADER_CRC_OFFSET + 4..h.header_size as usize]);
    c.update(&bytes[table..end]);
    let crc = c.finalize();
    bytes[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// `bytes` with every section checksum and the header checksum recomputed, so that an edit
/// inside a section reaches the record decoding.
fn with_fixed_crcs(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let h: FileHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
    let table = h.section_table_offset as usize;
    for i in 0..h.section_count as usize {
        let at = table + i * SECTION_ENTRY_SIZE;
        let mut e: SectionEntry = bytemuck::pod_read_unaligned(&out[at..at + SECTION_ENTRY_SIZE]);
        e.crc32 = crc32(&out[e.offset as usize..(e.offset + e.length) as usize]);
        out[at..at + SECTION_ENTRY_SIZE].copy_from_slice(bytemuck::bytes_of(&e));
    }
    fix_header_crc(&mut out);
    out
}

/// Appends a section of unknown kind 1000, moving the section table to the end of the file.
fn with_unknown_section(bytes: &[u8]) -> Vec<u8> {
    let mut h: FileHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
    let table = h.section_table_offset as usize;
    let n = h.section_count as usize;
    let mut entries: Vec<SectionEntry> = (0..n)
        .map(|i| bytemuck::pod_read_unaligned(&bytes[table + i * 32..][..32]))
        .collect();
    let mut out = bytes.to_vec();
    out[table..table + n * 32].fill(0);
    let payload = b"future data";
    entries.push(SectionEntry {
        kind: 1000,
        flags: 0,
        offset: out.len() as u64,
        length: payload.len() as u64,
        crc32: crc32(payload),
        reserved: 0,
    });
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(8), 0);
    h.section_table_offset = out.len() as u64;
    h.section_count += 1;
    for e in &entries {
        out.extend_from_slice(bytemuck::bytes_of(e));
    }
    h.file_len = out.len() as u64;
    out[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&h));
    fix_header_crc(&mut out);
    out
}

#[test]
fn unknown_sections_are_skipped_and_newer_minor_versions_read() {
    let (g, _, bytes) = write_every_op();
    let mut extended = with_unknown_section(&bytes);
    extended[10..12].copy_from_slice(&7u16.to_le_bytes());
    fix_header_crc(&mut extended);
    let list = sections(&extended).unwrap();
    assert_eq!(list.len(), 8);
    assert_eq!(
        (list[7].kind, list[7].kind_code, list[7].name()),
        (None, 1000, "unknown")
    );
    let back = read(&extended, &ReadOptions::default()).unwrap();
    assert_eq!(back, read(&bytes, &ReadOptions::default()).unwrap());
    assert_eq!(without_offsets(&back), without_offsets(&g));

    let mut major = bytes.clone();
    major[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut major);
    assert!(matches!(
        read(&major, &ReadOptions::default()),
        Err(Error::UnsupportedVersion {
            major: 2,
            minor: 0,
            supported: 1
        })
    ));
}

#[test]
fn errors_name_the_section_and_the_byte_offset() {
    let (_, _, bytes) = write_every_op();
    let mut b = bytes.clone();
    // Section 3 (weights): length field of its entry.
    let entry = HEADER_SIZE + 3 * SECTION_ENTRY_SIZE;
    b[entry + 16..entry + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    fix_header_crc(&mut b);
    let e = read(&b, &ReadOptions::default()).unwrap_err();
    assert_eq!(corrupt_offset(&e), (entry + 16) as u64);
    let msg = e.to_string();
    assert!(
        msg.contains("section 3 (weights) ends at") && msg.contains("past the end of the file"),
        "{msg}"
    );

    let e = read(&bytes[..bytes.len() - 1], &ReadOptions::default()).unwrap_err();
    assert_eq!(corrupt_offset(&e), 16, "{e}");

    let mut b = bytes.clone();
    let s = &sections(&bytes).unwrap()[1];
    b[s.offset as usize] ^= 1;
    let e = read(&b, &ReadOptions::default()).unwrap_err();
    assert_eq!(corrupt_offset(&e), s.offset);
    assert!(
        e.to_string()
            .contains("section 1 (metadata) checksum mismatch"),
        "{e}"
    );
}

#[test]
fn layout_roles_are_checked_over_every_use() {
    // One weight of dims [8, 1, 3, 3] used by a depthwise conv and by an ungrouped conv with
    // one input channel: DwBlock fits the first use only.
    let mut b = Builder::new(Shape4::new(1, 6, 6, 8));
    let w = b.weight("shared", DType::F32, Layout::Canonical, &[8, 1, 3, 3]);
    let t1 = b.node(
        "dw",
        Op::Conv(conv(8, 8, 8, 3, w, None, Activation::None)),
        &[0],
    );
    let gap = b.node("gap", Op::GlobalAvgPool, &[t1]);
    let one = b.g.tensors.len() as TensorId;
    b.g.tensors.push(TensorDesc {
        name: "one".into(),
        shape: Shape4::new(1, 6, 6, 1),
    });
    b.g.inputs.push(IoDesc {
        name: "one".into(),
        tensor: one,
        dims: vec![1, 1, 6, 6],
    });
    let t2 = b.node(
        "c",
        Op::Conv(conv(1, 8, 1, 3, w, None, Activation::None)),
        &[one],
    );
    let t3 = b.node("mul", Op::Mul, &[t2, gap]);
    let (mut g, data) = b.finish(t3);
    let bytes = write(&g, &refs(&data)).unwrap();
    assert!(read(&bytes, &ReadOptions::default()).is_ok());

    g.weights[0].layout = Layout::DwBlock(8);
    g.weights[0].byte_len = pack::stored_bytes(&g.weights[0]).unwrap();
    let dw_data = vec![0u8; g.weights[0].byte_len as usize];
    let e = write(&g, &[&dw_data]).unwrap_err().to_string();
    assert!(e.contains("ungrouped conv"), "{e}");

    // Patch the layout in a valid file (the byte lengths of Canonical and DwBlock(8) agree
    // here) and fix the checksums: the reader must refuse it too.
    let mut b2 = bytes.clone();
    let list = sections(&b2).unwrap();
    let ws = &list[3];
    let layout_at = ws.offset as usize + 16 + 12;
    b2[layout_at..layout_at + 4].copy_from_slice(&2u32.to_le_bytes());
    b2[layout_at + 4..layout_at + 8].copy_from_slice(&8u32.to_le_bytes());
    let crc = crc32(&b2[ws.offset as usize..(ws.offset + ws.length) as usize]);
    let entry = HEADER_SIZE + 3 * SECTION_ENTRY_SIZE;
    b2[entry + 24..entry + 28].copy_from_slice(&crc.to_le_bytes());
    fix_header_crc(&mut b2);
    let e = read(&b2, &ReadOptions::default()).unwrap_err();
    assert_eq!(corrupt_offset(&e), layout_at as u64, "{e}");
    assert!(e.to_string().contains("ungrouped conv"), "{e}");
}

/// A graph using every op of format 1.1, every resize mode and every reduction.
fn ops_of_1_1() -> (Graph, Vec<Vec<u8>>) {
    let mut b = Builder::new(Shape4::new(1, 6, 5, 8));
    let sl = b.node(
        "slice",
        Op::Slice {
            start: [0, 1, 0, 2],
            end: [1, 6, 5, 8],
            step: [1, 2, 1, 1],
        },
        &[0],
    );
    let mut last = sl;
    for (i, (mode, coord)) in [
        (
            ResizeMode::Nearest(NearestRound::RoundPreferFloor),
            CoordMode::HalfPixel,
        ),
        (
            ResizeMode::Nearest(NearestRound::RoundPreferCeil),
            CoordMode::PytorchHalfPixel,
        ),
        (
            ResizeMode::Nearest(NearestRound::Floor),
            CoordMode::Asymmetric,
        ),
        (
            ResizeMode::Nearest(NearestRound::Ceil),
            CoordMode::TfHalfPixelForNn,
        ),
        (ResizeMode::Linear, CoordMode::AlignCorners),
        (ResizeMode::Linear, CoordMode::HalfPixelSymmetric),
    ]
    .into_iter()
    .enumerate()
    {
        let r = Resize {
            mode,
            coord,
            scale: [2.0, 0.5],
            size: if i % 2 == 0 { [0, 0] } else { [7, 9] },
        };
        last = b.node(&format!("resize{i}"), Op::Resize(r), &[last]);
    }
    let c = b.g.tensors[last as usize].shape.c;
    let w = b.weight("de.w", DType::F16, Layout::Canonical, &[3, 2, c, 4 / 2]);
    let bias = b.weight("de.b", DType::F32, Layout::Canonical, &[4]);
    let de = Deconv {
        in_c: c,
        out_c: 4,
        groups: 2,
        kernel: [3, 2],
        stride: [2, 1],
        dilation: [1, 2],
        pads: [1, 0, 0, 1],
        out_pad: [1, 0],
        weight: w,
        bias: Some(bias),
        act: Activation::LeakyRelu { alpha: 0.25 },
    };
    let t = b.node("deconv", Op::Deconv(de), &[last]);
    let t = b.node("shuffle", Op::ChannelShuffle { groups: 2 }, &[t]);
    let t = b.node("transpose", Op::Transpose { perm: [0, 2, 3, 1] }, &[t]);
    let t = b.node(
        "mean",
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes: REDUCE_C,
        },
        &[t],
    );
    let t = b.node(
        "max",
        Op::Reduce {
            kind: ReduceKind::Max,
            axes: REDUCE_H,
        },
        &[t],
    );
    let t = b.node(
        "sum",
        Op::Reduce {
            kind: ReduceKind::Sum,
            axes: REDUCE_W | REDUCE_H,
        },
        &[t],
    );
    let c = b.g.tensors[t as usize].shape.c;
    let k = b.weight("k", DType::F32, Layout::Canonical, &[1, 1, 1, c]);
    let k = b.node("const", Op::Constant { weight: k }, &[]);
    let mut t = b.node(
        "binary",
        Op::Binary {
            kind: BinaryKind::PRelu,
            act: Activation::Relu,
        },
        &[t, k],
    );
    for kind in UnaryKind::ALL {
        t = b.node(&format!("{kind:?}"), Op::Unary { kind }, &[t]);
    }
    for kind in BinaryKind::ALL {
        t = b.node(
            &format!("{kind:?}"),
            Op::Binary {
                kind,
                act: Activation::None,
            },
            &[t, t],
        );
    }
    let t = b.node("tile", Op::Tile { reps: [1, 2, 3, 1] }, &[t]);
    let t = b.node(
        "pad_edge",
        Op::Pad {
            begin: [0, 1, 1, 0],
            end: [0, 1, 0, 2],
            mode: PadMode::Edge,
        },
        &[t],
    );
    let t = b.node(
        "pad_const",
        Op::Pad {
            begin: [0, 0, 1, 0],
            end: [0, 0, 0, 0],
            mode: PadMode::Constant(2.5),
        },
        &[t],
    );
    let t = b.node(
        "pad_reflect",
        Op::Pad {
            begin: [0, 1, 0, 0],
            end: [0, 1, 1, 0],
            mode: PadMode::Reflect,
        },
        &[t],
    );
    let t = b.node("s2d", Op::SpaceToDepth { block: 2 }, &[t]);
    let t = b.node("lsm", Op::SoftmaxAxis { axis: 1, log: true }, &[t]);
    let t = b.node(
        "d2s",
        Op::DepthToSpace {
            block: 2,
            crd: true,
        },
        &[t],
    );
    b.finish(t)
}

#[test]
fn ops_of_format_1_1_round_trip_and_older_files_stay_1_0() {
    let (g, data) = ops_of_1_1();
    let bytes = write(&g, &refs(&data)).unwrap();
    assert_eq!(version(&bytes).unwrap(), (1, 1));
    let back = read(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(without_offsets(&back), without_offsets(&g));
    assert_eq!(write(&back, &refs(&data)).unwrap(), bytes);
    // A file without them is still written as 1.0, readable by 1.0 readers.
    let (_, _, old) = write_every_op();
    assert_eq!(version(&old).unwrap(), (1, 0));
}

#[test]
fn bad_codes_and_parameters_of_1_1_ops_are_refused() {
    let (g, data) = ops_of_1_1();
    let bad = |f: &dyn Fn(&mut Graph)| {
        let mut g = g.clone();
        f(&mut g);
        write(&g, &refs(&data)).expect_err("writer must refuse an invalid graph");
    };
    // Invalid parameters are refused by the graph rules.
    bad(&|g| {
        if let Op::Slice { step, .. } = &mut g.nodes[0].op {
            step[1] = 0;
        }
    });
    bad(&|g| {
        if let Op::Resize(r) = &mut g.nodes[1].op {
            r.scale[0] = f32::NAN;
        }
    });
    bad(&|g| {
        let n = g.nodes.iter_mut().find(|n| n.name == "deconv").unwrap();
        if let Op::Deconv(d) = &mut n.op {
            d.out_pad = [2, 0];
        }
    });
    bad(&|g| {
        let n = g.nodes.iter_mut().find(|n| n.name == "shuffle").unwrap();
        n.op = Op::ChannelShuffle { groups: 3 };
    });
    bad(&|g| {
        let n = g.nodes.iter_mut().find(|n| n.name == "transpose").unwrap();
        n.op = Op::Transpose { perm: [0, 2, 2, 1] };
    });
    bad(&|g| {
        let n = g.nodes.iter_mut().find(|n| n.name == "mean").unwrap();
        n.op = Op::Reduce {
            kind: ReduceKind::Mean,
            axes: 8,
        };
    });
    // Unknown enumeration codes in the file are refused by the reader, with the offset.
    let bytes = write(&g, &refs(&data)).unwrap();
    let nodes = sections(&bytes)
        .unwrap()
        .into_iter()
        .find(|s| s.kind == Some(SectionKind::Nodes))
        .unwrap();
    let params = |node: usize| {
        nodes.offset as usize
            + records::TABLE_HEADER_SIZE
            + node * std::mem::size_of::<records::NodeRecord>()
            + std::mem::offset_of!(records::NodeRecord, params)
    };
    for (node, word, value) in [(1usize, 0usize, 7u32), (1, 1, 9), (1, 2, 6), (3, 1, 4)] {
        let mut b = bytes.clone();
        let at = params(node) + 4 * word;
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let err = read(&with_fixed_crcs(&b), &ReadOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown") || msg.contains("code"),
            "node {node} word {word} = {value}: {msg}"
        );
    }
}

#[test]
fn ops_of_format_1_2_round_trip_and_are_checked() {
    let mut b = Builder::new(Shape4::new(1, 4, 5, 6));
    // [1, 6, 4, 5] in NCHW: reshaped to [1, 3, 8, 5], joined with itself along H and W.
    let r = b.node(
        "reshape",
        Op::Reshape {
            shape: [1, 8, 5, 3],
        },
        &[0],
    );
    let h = b.node("cat_h", Op::ConcatAxis { axis: 1 }, &[r, r]);
    let w = b.node("cat_w", Op::ConcatAxis { axis: 2 }, &[h, h, h]);
    let am = b.node(
        "argmax",
        Op::Reduce {
            kind: ReduceKind::ArgMax,
            axes: crate::graph::REDUCE_W,
        },
        &[w],
    );
    let (g, data) = b.finish(am);
    assert_eq!(g.tensors[w as usize].shape, Shape4::new(1, 16, 15, 3));
    assert_eq!(g.tensors[am as usize].shape, Shape4::new(1, 16, 1, 3));
    let bytes = write(&g, &refs(&data)).unwrap();
    assert_eq!(version(&bytes).unwrap(), (1, 2));
    let back = read(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(without_offsets(&back), without_offsets(&g));
    assert_eq!(write(&back, &refs(&data)).unwrap(), bytes);
    // The graph rules refuse a reshape that changes the element count, a concatenation on
    // another axis and inputs that differ off the axis.
    for op in [
        Op::Reshape {
            shape: [1, 8, 5, 4],
        },
        Op::Reshape {
            shape: [0, 8, 5, 3],
        },
    ] {
        let mut g = g.clone();
        g.nodes[0].op = op;
        write(&g, &refs(&data)).expect_err("writer must refuse a bad reshape");
    }
    for axis in [0, 3] {
        let mut g = g.clone();
        g.nodes[1].op = Op::ConcatAxis { axis };
        write(&g, &refs(&data)).expect_err("writer must refuse the axis");
    }
    let mut g2 = g.clone();
    g2.nodes[2].inputs = vec![h, r];
    write(&g2, &refs(&data)).expect_err("writer must refuse mismatched inputs");
    let mut g2 = g.clone();
    g2.nodes[3].op = Op::Reduce {
        kind: ReduceKind::ArgMax,
        axes: crate::graph::REDUCE_W | crate::graph::REDUCE_C,
    };
    write(&g2, &refs(&data)).expect_err("ArgMax reduces one axis");
    // ArgMax alone makes a file 1.2: a 1.1 reader would not know the reduction code.
    let mut b = Builder::new(Shape4::new(1, 2, 2, 5));
    let am = b.node(
        "argmax",
        Op::Reduce {
            kind: ReduceKind::ArgMax,
            axes: crate::graph::REDUCE_C,
        },
        &[0],
    );
    let (g, data) = b.finish(am);
    assert_eq!(version(&write(&g, &refs(&data)).unwrap()).unwrap(), (1, 2));
    // The GELU activation makes a file 1.4, and only it: a 1.3 reader does not know its code.
    for (act, minor) in [(Activation::Gelu, 4), (Activation::Silu, 0)] {
        let mut b = Builder::new(Shape4::new(1, 2, 2, 5));
        let t = b.node("act", Op::Act(act), &[0]);
        let (g, data) = b.finish(t);
        assert_eq!(
            version(&write(&g, &refs(&data)).unwrap()).unwrap(),
            (1, minor)
        );
    }
}

#[test]
fn layer_norm_of_format_1_4_round_trips_and_is_checked() {
    let mut b = Builder::new(Shape4::new(1, 4, 5, 6));
    let sc = b.weight("ln.scale", DType::F32, Layout::Canonical, &[6]);
    let sh = b.weight("ln.shift", DType::F16, Layout::Canonical, &[6]);
    let op = Op::LayerNorm {
        scale: sc,
        shift: sh,
        eps: 1e-6,
    };
    let t = b.node("ln", op, &[0]);
    let (g, data) = b.finish(t);
    let bytes = write(&g, &refs(&data)).unwrap();
    assert_eq!(version(&bytes).unwrap(), (1, 4));
    let back = read(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(without_offsets(&back), without_offsets(&g));
    assert_eq!(back.nodes[0].op, op);
    // A negative or NaN eps, and a scale of the wrong length, break the graph rules.
    for eps in [-1e-6, f32::NAN, f32::INFINITY] {
        let mut g2 = g.clone();
        g2.nodes[0].op = Op::LayerNorm {
            scale: sc,
            shift: sh,
            eps,
        };
        write(&g2, &refs(&data)).expect_err("bad eps");
    }
    let mut g3 = g.clone();
    g3.weights[sc as usize].dims = vec![5];
    write(&g3, &refs(&data)).expect_err("scale of 5 for 6 channels");
}
