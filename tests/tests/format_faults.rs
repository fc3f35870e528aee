//! Fault injection on `.smof` v1 files: truncation at every length, every bit flipped, and
//! hand-made hostile edits (with the checksums fixed up so the intended check is the one that
//! fires) must all give an `Err`, never a panic, a huge allocation or a silently different model.
//!
//! Uses only the `smof` API plus an independent CRC-32 and the byte offsets of
//! `docs/format.md`, so it also checks that the spec describes the files the writer makes.

use smof::format::{self, read, write, ReadOptions, SectionKind};
use smof::graph::*;
use smof::kernels::pack;
use smof::{Error, KernelChoice, Model, ModelOptions};
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Largest single allocation, per thread, so a test can show that a hostile count was refused
// before anything of its size was allocated.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only records
// the requested size in a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Reads `bytes`, returning the result, the largest single allocation made and the time taken.
fn read_measured(bytes: &[u8], opts: &ReadOptions) -> (smof::Result<Graph>, usize, Duration) {
    LARGEST.with(|l| l.set(0));
    let t = Instant::now();
    let r = read(bytes, opts);
    let took = t.elapsed();
    (r, LARGEST.with(|l| l.get()), took)
}

// ---------------------------------------------------------------------------------------------
// The model: conv 3x3 + bias + relu, depthwise conv (DwBlock, f16), add, max pool, fully
// connected (FcOcBlock, f16), softmax. Weights hold known canonical values.

/// Canonical value `i` of weight `w`: a multiple of 1/16, exact in f16.
fn value(w: usize, i: usize) -> f32 {
    ((i * 7 + w * 3) % 17) as f32 / 16.0 - 0.5
}

/// f16 bits of `v`, which must be exactly representable (checked).
fn f16_bits(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let man = b & 0x7f_ffff;
    assert!(
        exp > 0 && exp < 31 && man & 0x1fff == 0,
        "{v} is not exact in f16"
    );
    sign | ((exp as u16) << 10) | (man >> 13) as u16
}

struct Built {
    graph: Graph,
    /// Canonical f32 values of each weight.
    canonical: Vec<Vec<f32>>,
    /// Bytes of each weight as stored (dtype and layout applied).
    data: Vec<Vec<u8>>,
}

impl Built {
    fn weight(&mut self, name: &str, dtype: DType, layout: Layout, dims: &[u32]) -> WeightId {
        let id = self.graph.weights.len();
        let n: usize = dims.iter().map(|&d| d as usize).product();
        let canonical: Vec<f32> = (0..n).map(|i| value(id, i)).collect();
        let packed = pack::repack(&canonical, dims, Layout::Canonical, layout);
        let bytes: Vec<u8> = match dtype {
            DType::F32 => packed.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => packed
                .iter()
                .flat_map(|&v| f16_bits(v).to_le_bytes())
                .collect(),
        };
        let desc = WeightDesc {
            name: name.into(),
            dtype,
            layout,
            dims: dims.to_vec(),
            offset: 0,
            byte_len: bytes.len() as u64,
        };
        assert_eq!(pack::stored_bytes(&desc), Some(bytes.len() as u64));
        self.graph.weights.push(desc);
        self.canonical.push(canonical);
        self.data.push(bytes);
        id as WeightId
    }

    fn node(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> TensorId {
        let out = self.graph.tensors.len() as TensorId;
        let node = Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
            outputs: vec![out],
        };
        let shape = self
            .graph
            .infer_output(self.graph.nodes.len(), &node)
            .unwrap();
        self.graph.tensors.push(TensorDesc {
            name: format!("{name}.out"),
            shape,
        });
        self.graph.nodes.push(node);
        out
    }

    fn refs(&self) -> Vec<&[u8]> {
        self.data.iter().map(|d| d.as_slice()).collect()
    }
}

fn build() -> Built {
    let mut b = Built {
        graph: Graph {
            meta: Metadata {
                producer: "format_faults".into(),
                producer_version: "1.0".into(),
                model_name: "tiny".into(),
                description: "conv, depthwise, add, pool, fc, softmax".into(),
            },
            tensors: vec![TensorDesc {
                name: "image".into(),
                shape: Shape4::new(1, 8, 8, 3),
            }],
            inputs: vec![IoDesc {
                name: "image".into(),
                tensor: 0,
                dims: vec![1, 3, 8, 8],
            }],
            ..Graph::default()
        },
        canonical: Vec::new(),
        data: Vec::new(),
    };
    let conv = |in_c, out_c, groups, weight, bias, act| Conv {
        in_c,
        out_c,
        groups,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [1; 4],
        weight,
        bias,
        act,
    };
    let w0 = b.weight("conv.w", DType::F32, Layout::ConvOcBlock(8), &[8, 3, 3, 3]);
    let b0 = b.weight("conv.b", DType::F32, Layout::Canonical, &[8]);
    let t1 = b.node(
        "conv",
        Op::Conv(conv(3, 8, 1, w0, Some(b0), Activation::Relu)),
        &[0],
    );
    let w1 = b.weight("dw.w", DType::F16, Layout::DwBlock(8), &[8, 1, 3, 3]);
    let b1 = b.weight("dw.b", DType::F16, Layout::Canonical, &[8]);
    let clip = Activation::Clip { min: 0.0, max: 6.0 };
    let t2 = b.node("dw", Op::Conv(conv(8, 8, 8, w1, Some(b1), clip)), &[t1]);
    let t3 = b.node(
        "add",
        Op::Add {
            act: Activation::None,
        },
        &[t1, t2],
    );
    let pool = Pool {
        kind: PoolKind::Max,
        kernel: [2, 2],
        stride: [2, 2],
        dilation: [1, 1],
        pads: [0; 4],
        ceil_pads: [0; 2],
    };
    let t4 = b.node("pool", Op::Pool(pool), &[t3]);
    let feats = 4 * 4 * 8;
    let w2 = b.weight("fc.w", DType::F16, Layout::FcOcBlock(8), &[10, feats]);
    let b2 = b.weight("fc.b", DType::F32, Layout::Canonical, &[10]);
    let fc = Fc {
        in_features: feats,
        out_features: 10,
        weight: w2,
        bias: Some(b2),
        act: Activation::None,
    };
    let t5 = b.node("fc", Op::Fc(fc), &[t4]);
    let t6 = b.node("softmax", Op::Softmax, &[t5]);
    b.graph.outputs.push(IoDesc {
        name: "probs".into(),
        tensor: t6,
        dims: vec![1, 10],
    });
    b.graph.validate().unwrap();
    b
}

fn valid_file() -> (Built, Vec<u8>) {
    let b = build();
    let bytes = write(&b.graph, &b.refs()).unwrap();
    (b, bytes)
}

fn without_offsets(g: &Graph) -> Graph {
    let mut g = g.clone();
    g.weights.iter_mut().for_each(|w| w.offset = 0);
    g
}

// ---------------------------------------------------------------------------------------------
// The byte layout of docs/format.md, and the checksum fix-ups.

const HEADER: usize = 64;
const ENTRY: usize = 32;
const TABLE_HEADER: usize = 16;
const META_RECORD: usize = 40;
const IO_RECORD: usize = 32;
const TENSOR_RECORD: usize = 24;
const WEIGHT_RECORD: usize = 56;
const NODE_RECORD: usize = 128;
/// Byte offset of the parameter area in a node record.
const NODE_PARAMS: usize = 32;

/// CRC-32/ISO-HDLC, bit by bit: independent of the runtime's `crc32fast`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Section table position and entry count, from the header.
fn table(b: &[u8]) -> (usize, usize) {
    (get64(b, 24) as usize, get32(b, 32) as usize)
}

/// Position of entry `i` of the section table.
fn entry_at(b: &[u8], i: usize) -> usize {
    table(b).0 + i * ENTRY
}

/// Index, offset and length of the section of `kind`.
fn section(b: &[u8], kind: SectionKind) -> (usize, usize, usize) {
    let (_, n) = table(b);
    (0..n)
        .map(|i| {
            let e = entry_at(b, i);
            (
                i,
                get32(b, e),
                get64(b, e + 8) as usize,
                get64(b, e + 16) as usize,
            )
        })
        .find(|s| s.1 == kind.code())
        .map(|(i, _, off, len)| (i, off, len))
        .expect("section present")
}

/// Recomputes the CRC of the header (crc field zeroed) plus the section table.
fn fix_header_crc(b: &mut [u8]) {
    let header_size = get32(b, 12) as usize;
    let (t, n) = table(b);
    let mut covered = b[..header_size].to_vec();
    covered[40..44].fill(0);
    covered.extend_from_slice(&b[t..t + n * ENTRY]);
    put32(b, 40, crc32(&covered));
}

/// Recomputes every section's CRC, then the header's: after this, only the check aimed at
/// can catch an edit.
fn fix_all(b: &mut [u8]) {
    let (_, n) = table(b);
    for i in 0..n {
        let e = entry_at(b, i);
        let (off, len) = (get64(b, e + 8) as usize, get64(b, e + 16) as usize);
        if off.checked_add(len).is_some_and(|end| end <= b.len()) {
            let crc = crc32(&b[off..off + len]);
            put32(b, e + 24, crc);
        }
    }
    fix_header_crc(b);
}

/// Ranges of the file covered by the header, the table or a section.
fn covered(b: &[u8]) -> Vec<(usize, usize)> {
    let (t, n) = table(b);
    let mut v = vec![(0, HEADER), (t, t + n * ENTRY)];
    for i in 0..n {
        let e = entry_at(b, i);
        let off = get64(b, e + 8) as usize;
        v.push((off, off + get64(b, e + 16) as usize));
    }
    v
}

fn is_checksum_error(e: &Error) -> bool {
    e.to_string().contains("checksum")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn valid_file_reads_back_and_opens_as_a_model() {
    let (b, bytes) = valid_file();
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(&bytes), format::crc32(&bytes));
    assert_eq!(&bytes[..8], &format::MAGIC);
    // The writer writes the lowest minor version the file needs: this model uses only ops
    // of 1.0.
    assert_eq!(format::version(&bytes).unwrap(), (format::VERSION_MAJOR, 0));
    assert_eq!(get64(&bytes, 16) as usize, bytes.len());

    for verify_weights in [true, false] {
        let g = read(&bytes, &ReadOptions { verify_weights }).unwrap();
        assert_eq!(without_offsets(&g), without_offsets(&b.graph));
        for (w, d) in g.weights.iter().zip(&b.data) {
            assert_eq!(w.offset % 64, 0);
            assert_eq!(
                &bytes[w.offset as usize..][..w.byte_len as usize],
                d.as_slice()
            );
        }
    }

    let list = format::sections(&bytes).unwrap();
    assert_eq!(
        list.iter().map(|s| s.kind.unwrap()).collect::<Vec<_>>(),
        SectionKind::ALL
    );
    assert!(list.iter().all(|s| s.crc_ok));

    for verify_weights in [true, false] {
        let opts = ModelOptions {
            kernels: smof::KernelChoice::Portable,
            verify_weights,
        };
        let model = Model::from_bytes_with(&bytes, &opts).unwrap();
        assert_eq!(without_offsets(model.graph()), without_offsets(&b.graph));
        assert_eq!(model.file_len(), bytes.len());
        for (id, w) in b.graph.weights.iter().enumerate() {
            let want = model.weight_layout(id as WeightId);
            let expect = pack::repack(&b.canonical[id], &w.dims, Layout::Canonical, want);
            assert_eq!(
                model.weight(id as WeightId),
                expect.as_slice(),
                "weight {}",
                w.name
            );
        }
    }
    assert!(Model::from_bytes(&bytes).is_ok());
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let (_, bytes) = valid_file();
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        for verify_weights in [true, false] {
            let r = std::panic::catch_unwind(|| read(cut, &ReadOptions { verify_weights }));
            match r {
                Ok(Err(Error::Corrupt { .. })) => {}
                Ok(other) => panic!("truncated to {len}: expected Corrupt, got {other:?}"),
                Err(_) => panic!("truncated to {len}: read panicked"),
            }
        }
        assert!(format::sections(cut).is_err(), "sections() of {len} bytes");
    }
    assert!(Model::from_bytes(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn every_bit_flip_in_the_header_and_section_table_is_an_error() {
    let (_, bytes) = valid_file();
    let (t, n) = table(&bytes);
    assert_eq!(
        t, HEADER,
        "the writer puts the table right after the header"
    );
    let mut flipped = bytes.clone();
    for byte in 0..t + n * ENTRY {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            for verify_weights in [true, false] {
                let r = read(&flipped, &ReadOptions { verify_weights });
                assert!(r.is_err(), "flip of byte {byte} bit {bit} was accepted");
            }
            assert!(
                format::sections(&flipped).is_err(),
                "sections(): byte {byte} bit {bit}"
            );
            flipped[byte] ^= 1 << bit;
        }
    }
    assert_eq!(flipped, bytes);
}

/// Every bit of every section (and of the padding between them) flipped: an error, except in
/// the weight data when `verify_weights` is off, where the documented behaviour is that the
/// file is accepted with the same graph (the weights' bytes are then what the file holds).
#[test]
fn every_bit_flip_in_the_sections_is_an_error_unless_weight_checks_are_off() {
    let (b, bytes) = valid_file();
    let (_, wd_off, wd_len) = section(&bytes, SectionKind::WeightData);
    let start = table(&bytes).0 + table(&bytes).1 * ENTRY;
    let mut flipped = bytes.clone();
    let mut accepted = 0usize;
    for byte in start..bytes.len() {
        let in_weights = (wd_off..wd_off + wd_len).contains(&byte);
        // Every bit of the graph sections; a sample of the weight data (every 7th byte).
        if in_weights && byte % 7 != 0 {
            continue;
        }
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            let strict = read(
                &flipped,
                &ReadOptions {
                    verify_weights: true,
                },
            );
            assert!(
                strict.is_err(),
                "byte {byte} bit {bit} accepted with verify_weights"
            );
            let lax = read(
                &flipped,
                &ReadOptions {
                    verify_weights: false,
                },
            );
            if in_weights {
                let g = lax.unwrap_or_else(|e| panic!("byte {byte} bit {bit} in weight data: {e}"));
                assert_eq!(without_offsets(&g), without_offsets(&b.graph));
                accepted += 1;
            } else {
                assert!(
                    lax.is_err(),
                    "byte {byte} bit {bit} accepted without verify_weights"
                );
            }
            flipped[byte] ^= 1 << bit;
        }
    }
    assert!(accepted > 0);
    let mut one = bytes.clone();
    one[wd_off + 3] ^= 0x10;
    assert!(Model::from_bytes(&one).is_err());
    let lax = ModelOptions {
        verify_weights: false,
        ..ModelOptions::default()
    };
    let trusted = Model::from_bytes_with(&one, &lax).expect("opens without the weight check");
    // The deferred check finds the damage, and names the weight data.
    let e = trusted.verify_weights().unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(format::verify(&one).is_err());
    let intact = Model::from_bytes_with(&bytes, &lax).unwrap();
    intact.verify_weights().unwrap();
    format::verify(&bytes).unwrap();
}

#[test]
fn sections_outside_the_file_are_errors_even_with_fixed_checksums() {
    let (_, bytes) = valid_file();
    let len = bytes.len() as u64;
    let (_, n) = table(&bytes);
    for i in 0..n {
        let e = entry_at(&bytes, i);
        let off = get64(&bytes, e + 8);
        let cases: [(u64, u64); 4] = [
            (off, len - off + 1), // one byte too long
            (len, 8),             // starts at the end
            (len + 64, 0),        // empty, but past the end
            (u64::MAX - 63, 128), // offset + length overflows
        ];
        for (new_off, new_len) in cases {
            let mut b = bytes.clone();
            put64(&mut b, e + 8, new_off);
            put64(&mut b, e + 16, new_len);
            fix_header_crc(&mut b);
            let err = read(&b, &ReadOptions::default()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("past the end of the file") && msg.contains(&format!("section {i} (")),
                "section {i} at {new_off}+{new_len}: {msg}"
            );
            assert!(
                matches!(err, Error::Corrupt { offset, .. } if offset == (e + 16) as u64),
                "{msg}"
            );
        }
    }
}

#[test]
fn overlapping_sections_are_errors_even_with_fixed_checksums() {
    let (_, bytes) = valid_file();
    let (_, n) = table(&bytes);
    let (t, _) = table(&bytes);
    for i in 0..n {
        let e = entry_at(&bytes, i);
        let off = get64(&bytes, e + 8);
        let len = get64(&bytes, e + 16).max(8);
        // Onto the header, onto the table, onto each other section.
        let mut targets = vec![0u64, t as u64];
        for j in (0..n).filter(|&j| j != i) {
            let ej = entry_at(&bytes, j);
            if get64(&bytes, ej + 16) > 0 {
                targets.push(get64(&bytes, ej + 8));
            }
        }
        for target in targets {
            let mut b = bytes.clone();
            let align = if i == n - 1 { 64 } else { 8 };
            let start = target / align * align;
            let new_len = len.min(b.len() as u64 - start);
            put64(&mut b, e + 8, start);
            put64(&mut b, e + 16, new_len);
            fix_all(&mut b);
            let err = read(&b, &ReadOptions::default()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("overlaps"),
                "section {i} moved from {off} to {target}: {msg}"
            );
            assert!(!is_checksum_error(&err), "{msg}");
        }
    }
}

/// A change made to a valid file's bytes.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

/// One hostile edit: what it does, and a phrase the error must contain.
struct Case {
    what: &'static str,
    edit: Edit,
    expect: &'static str,
}

fn case(what: &'static str, expect: &'static str, edit: impl Fn(&mut Vec<u8>) + 'static) -> Case {
    Case {
        what,
        edit: Box::new(edit),
        expect,
    }
}

/// Position of record `i` of the table section `kind`.
fn rec(b: &[u8], kind: SectionKind, size: usize, i: usize) -> usize {
    section(b, kind).1 + TABLE_HEADER + i * size
}

fn tensors(b: &[u8]) -> usize {
    section(b, SectionKind::Tensors).1
}
fn weight(b: &[u8], i: usize) -> usize {
    rec(b, SectionKind::Weights, WEIGHT_RECORD, i)
}
fn node(b: &[u8], i: usize) -> usize {
    rec(b, SectionKind::Nodes, NODE_RECORD, i)
}
fn meta(b: &[u8]) -> usize {
    section(b, SectionKind::Metadata).1
}

fn hostile_cases() -> Vec<Case> {
    use SectionKind::*;
    vec![
        // Counts that would need huge allocations.
        case("2^40 tensors", "more than the limit", |b| {
            let at = tensors(b);
            put64(b, at, 1 << 40)
        }),
        case("u64::MAX tensors", "more than the limit", |b| {
            let at = tensors(b);
            put64(b, at, u64::MAX)
        }),
        case("2^40 weights", "more than the limit", |b| {
            let at = section(b, Weights).1;
            put64(b, at, 1 << 40)
        }),
        case("2^40 nodes", "more than the limit", |b| {
            let at = section(b, Nodes).1;
            put64(b, at, 1 << 40)
        }),
        case("2^40 node-io entries", "more than the limit", |b| {
            let at = section(b, NodeIo).1;
            put64(b, at, 1 << 40)
        }),
        case(
            "a count under the limit but past the section",
            "records of 24 bytes",
            |b| {
                let at = tensors(b);
                put64(b, at, 1 << 20)
            },
        ),
        case(
            "a count one short of the records",
            "records of 24 bytes",
            |b| {
                let at = tensors(b);
                let n = get64(b, at);
                put64(b, at, n - 1)
            },
        ),
        case("a wrong record size", "24", |b| {
            let at = tensors(b) + 8;
            put32(b, at, 25)
        }),
        case("u32::MAX model inputs", "more than the limit", |b| {
            let at = meta(b) + 32;
            put32(b, at, u32::MAX)
        }),
        case("more model outputs than records", "bytes long", |b| {
            let at = meta(b) + 36;
            put32(b, at, 3)
        }),
        // Dims that would need huge allocations.
        case("a tensor extent of 2^31", "shape", |b| {
            let at = tensors(b) + TABLE_HEADER + 8;
            put32(b, at, 1 << 31)
        }),
        case("a tensor of (2^20)^4 elements", "shape", |b| {
            let at = tensors(b) + TABLE_HEADER + TENSOR_RECORD + 8;
            for k in 0..4 {
                put32(b, at + 4 * k, 1 << 20);
            }
        }),
        case("a weight dim of 2^31", "dims", |b| {
            let at = weight(b, 0) + 24;
            put32(b, at, 1 << 31)
        }),
        case("a weight of (2^20)^4 elements", "elements", |b| {
            let at = weight(b, 0) + 24;
            for k in 0..4 {
                put32(b, at + 4 * k, 1 << 20);
            }
        }),
        case("a model input dim of 2^31", "dims", |b| {
            let at = meta(b) + META_RECORD + 16;
            put32(b, at, 1 << 31)
        }),
        // Weight records.
        case("weight rank 5", "rank", |b| {
            let at = weight(b, 0) + 20;
            put32(b, at, 5)
        }),
        case("weight rank 0", "rank", |b| {
            let at = weight(b, 1) + 20;
            put32(b, at, 0)
        }),
        case("a dim past the rank", "past rank", |b| {
            let at = weight(b, 1) + 28;
            put32(b, at, 1)
        }),
        case("unknown dtype", "unknown dtype", |b| {
            let at = weight(b, 0) + 8;
            put32(b, at, 2)
        }),
        case("unknown layout", "unknown layout", |b| {
            // Well past the defined codes (0-4), so a new layout does not make it known.
            let at = weight(b, 0) + 12;
            put32(b, at, 0x4000)
        }),
        case("block size 0", "block size", |b| {
            let at = weight(b, 0) + 16;
            put32(b, at, 0)
        }),
        case("block size 2^16", "block size", |b| {
            let at = weight(b, 0) + 16;
            put32(b, at, 1 << 16)
        }),
        case("canonical with a block size", "block size", |b| {
            let at = weight(b, 1) + 16;
            put32(b, at, 4)
        }),
        case("FcOcBlock on conv dims", "does not apply", |b| {
            let at = weight(b, 0) + 12;
            put32(b, at, 3)
        }),
        case("ConvOcBlock on a depthwise conv", "does not fit", |b| {
            let at = weight(b, 2) + 12;
            put32(b, at, 1)
        }),
        case("byte_len one too long", "bytes stored", |b| {
            let at = weight(b, 0) + 48;
            let v = get64(b, at);
            put64(b, at, v + 1)
        }),
        case("weight offset not 64-aligned", "multiple of 64", |b| {
            let at = weight(b, 1) + 40;
            put64(b, at, 32)
        }),
        case(
            "weight data past the section",
            "outside the weight data",
            |b| {
                let at = weight(b, 4) + 40;
                put64(b, at, 1 << 40)
            },
        ),
        case(
            "weight offset + byte_len overflows",
            "outside the weight data",
            |b| {
                let at = weight(b, 4) + 40;
                put64(b, at, u64::MAX - 63)
            },
        ),
        // Strings.
        case(
            "a string past the strings section",
            "outside the strings section",
            |b| {
                let len = section(b, Strings).2 as u32;
                {
                    let at = tensors(b) + TABLE_HEADER;
                    put32(b, at, len)
                }
            },
        ),
        case("a string longer than the limit", "limit", |b| {
            let at = tensors(b) + TABLE_HEADER + 4;
            put32(b, at, u32::MAX)
        }),
        case("a string that is not UTF-8", "UTF-8", |b| {
            let at = section(b, Strings).1;
            b[at] = 0xff;
        }),
        // Nodes and node-io.
        case("unknown op", "unknown op code", |b| {
            let at = node(b, 0) + 8;
            put32(b, at, 999)
        }),
        case("unknown activation", "unknown activation", |b| {
            let at = node(b, 0) + NODE_PARAMS + 15 * 4;
            put32(b, at, 99)
        }),
        case("relu with a parameter", "not zero", |b| {
            let at = node(b, 0) + NODE_PARAMS + 16 * 4;
            put32(b, at, 1)
        }),
        case("a parameter word past the op's", "not zero", |b| {
            let at = node(b, 0) + NODE_PARAMS + 23 * 4;
            put32(b, at, 1)
        }),
        case("a weight id out of range", "out of range", |b| {
            let at = node(b, 0) + NODE_PARAMS + 13 * 4;
            put32(b, at, 6)
        }),
        case("a bias id out of range", "out of range", |b| {
            let at = node(b, 0) + NODE_PARAMS + 14 * 4;
            put32(b, at, 1000)
        }),
        case("unknown pool kind", "pool kind", |b| {
            let at = node(b, 3) + NODE_PARAMS;
            put32(b, at, 2)
        }),
        case("max pool counting padding", "count_include_pad", |b| {
            let at = node(b, 3) + NODE_PARAMS + 4;
            put32(b, at, 1)
        }),
        case("input range past node-io", "node-io", |b| {
            let at = node(b, 0) + 12;
            put32(b, at, 1 << 31)
        }),
        case("too many inputs", "more than the limit of 4096", |b| {
            let at = node(b, 0) + 16;
            put32(b, at, 5000)
        }),
        case("node reserved field", "reserved", |b| {
            let at = node(b, 0) + 28;
            put32(b, at, 1)
        }),
        case("a node-io tensor out of range", "node-io entry 0", |b| {
            let at = section(b, NodeIo).1 + TABLE_HEADER;
            put32(b, at, 999)
        }),
        case("a model input tensor out of range", "out of range", |b| {
            let at = meta(b) + META_RECORD + 8;
            put32(b, at, 99)
        }),
        case("a model output tensor out of range", "output 0", |b| {
            let at = meta(b) + META_RECORD + IO_RECORD + 8;
            put32(b, at, 7)
        }),
        case("model input rank 0", "rank", |b| {
            let at = meta(b) + META_RECORD + 12;
            put32(b, at, 0)
        }),
        // Only Graph::validate can see these.
        case("conv in_c that does not match its input", "in_c", |b| {
            let at = node(b, 0) + NODE_PARAMS;
            put32(b, at, 4)
        }),
        case(
            "a node reading its own output",
            "before it is written",
            |b| {
                let at = section(b, NodeIo).1 + TABLE_HEADER;
                put32(b, at, 1)
            },
        ),
        // Header and section table fields.
        case("a header flag", "flags", |b| put32(b, 36, 1)),
        case("a reserved header word", "reserved", |b| put32(b, 60, 1)),
        case("zero sections", "section count", |b| put32(b, 32, 0)),
        case("65 sections", "section count", |b| put32(b, 32, 65)),
        case("a 72-byte header over the table", "section table", |b| {
            put32(b, 12, 72)
        }),
        case("a header size not a multiple of 8", "header size", |b| {
            put32(b, 12, 65)
        }),
        case("a section flag", "reserved entry", |b| {
            let e = entry_at(b, 0);
            put32(b, e + 4, 1)
        }),
        case("a repeated section kind", "repeats", |b| {
            let e = entry_at(b, 1);
            put32(b, e, Strings.code())
        }),
        case("a missing section", "no metadata section", |b| {
            let e = entry_at(b, 1);
            put32(b, e, 1000)
        }),
        case("a section not 8-aligned", "multiple of 8", |b| {
            let e = entry_at(b, 2);
            let off = get64(b, e + 8);
            put64(b, e + 8, off + 4);
            let len = get64(b, e + 16);
            put64(b, e + 16, len - 4)
        }),
        case("weight data not 64-aligned", "multiple of 64", |b| {
            let e = entry_at(b, 6);
            let off = get64(b, e + 8);
            put64(b, e + 8, off + 8);
            let len = get64(b, e + 16);
            put64(b, e + 16, len - 8)
        }),
        case("a non-zero byte between sections", "padding", |b| {
            let cov = covered(b);
            let gap = (0..b.len()).find(|&i| !cov.iter().any(|&(s, e)| (s..e).contains(&i)));
            b[gap.expect("the test file has padding")] = 1;
        }),
        case("non-zero bytes after the last section", "padding", |b| {
            b.extend_from_slice(&[0, 0, 0, 7]);
            let len = b.len() as u64;
            put64(b, 16, len)
        }),
    ]
}

#[test]
fn hostile_edits_with_fixed_checksums_are_refused_without_big_allocations() {
    let (_, bytes) = valid_file();
    let limit = 1 << 20; // no single allocation above 1 MiB for a file of a few KiB
    let (ok, largest, _) = read_measured(&bytes, &ReadOptions::default());
    ok.unwrap();
    assert!(
        largest < limit,
        "the valid file needs a {largest}-byte allocation"
    );
    for c in hostile_cases() {
        let mut b = bytes.clone();
        (c.edit)(&mut b);
        assert_ne!(b, bytes, "{}: the edit changed nothing", c.what);
        fix_all(&mut b);
        let (r, largest, took) = read_measured(&b, &ReadOptions::default());
        let err = match r {
            Err(e) => e,
            Ok(_) => panic!("{}: accepted", c.what),
        };
        let msg = err.to_string();
        assert!(
            !is_checksum_error(&err),
            "{}: caught by a checksum, not its own check: {msg}",
            c.what
        );
        assert!(
            msg.contains(c.expect),
            "{}: expected {:?} in: {msg}",
            c.what,
            c.expect
        );
        assert!(
            matches!(err, Error::Corrupt { .. } | Error::InvalidGraph { .. }),
            "{}: {err:?}",
            c.what
        );
        assert!(
            largest < limit,
            "{}: allocated {largest} bytes at once",
            c.what
        );
        assert!(took < Duration::from_secs(1), "{}: took {took:?}", c.what);
        assert!(
            Model::from_bytes(&b).is_err(),
            "{}: Model accepted it",
            c.what
        );
    }
    // Appending zero bytes (with the length fixed) is padding, and allowed.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 8]);
    let len = padded.len() as u64;
    put64(&mut padded, 16, len);
    fix_header_crc(&mut padded);
    assert!(read(&padded, &ReadOptions::default()).is_ok());
}

#[test]
fn newer_major_is_unsupported_and_newer_minor_is_read() {
    let (b, bytes) = valid_file();
    for major in [0u16, 2, u16::MAX] {
        let mut f = bytes.clone();
        f[8..10].copy_from_slice(&major.to_le_bytes());
        fix_header_crc(&mut f);
        match read(&f, &ReadOptions::default()) {
            Err(Error::UnsupportedVersion {
                major: m,
                minor: 0,
                supported: 1,
            }) if m == major => {}
            other => panic!("major {major}: {other:?}"),
        }
        assert!(matches!(
            Model::from_bytes(&f),
            Err(Error::UnsupportedVersion { .. })
        ));
    }
    for minor in [1u16, 9, u16::MAX] {
        let mut f = bytes.clone();
        f[10..12].copy_from_slice(&minor.to_le_bytes());
        fix_header_crc(&mut f);
        let g = read(&f, &ReadOptions::default()).unwrap();
        assert_eq!(without_offsets(&g), without_offsets(&b.graph));
        assert_eq!(format::version(&f).unwrap(), (1, minor));
        assert!(Model::from_bytes(&f).is_ok());
    }
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let b = build();
    let mut data = b.refs();
    data.pop();
    assert!(write(&b.graph, &data).is_err(), "one buffer missing");

    let mut long = b.data.clone();
    long[3].extend_from_slice(&[0, 0]);
    let refs: Vec<&[u8]> = long.iter().map(|d| d.as_slice()).collect();
    assert!(
        write(&b.graph, &refs).is_err(),
        "a buffer of the wrong length"
    );

    let mut g = b.graph.clone();
    g.weights[2].layout = Layout::ConvOcBlock(8); // same length as DwBlock(8) here
    assert!(
        write(&g, &b.refs()).is_err(),
        "ConvOcBlock on a depthwise conv"
    );

    let mut g = b.graph.clone();
    g.nodes[1].inputs = vec![5];
    assert!(matches!(
        write(&g, &b.refs()),
        Err(Error::InvalidGraph { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// A real converted model (the bundled MobileNetV2 backbone, f32 and f16) cut short: at every
// section boundary (and one byte either side) and at a sample of other offsets, through
// `from_bytes`, through a mapped file (`Model::open`) and through `open_copied`.

fn bundled_smof(fp16: bool) -> Vec<u8> {
    let onnx = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2_imagenet_backbone.onnx"
    ))
    .unwrap();
    let opts = smof_converter::ConvertOptions {
        fp16,
        ..Default::default()
    };
    smof_converter::convert(&onnx, &opts).unwrap().bytes
}

/// Section starts and ends (and their neighbours), plus `samples` pseudo-random offsets,
/// sorted from the longest cut to the shortest.
fn cut_points(bytes: &[u8], samples: usize) -> Vec<usize> {
    let mut cuts = vec![0, 1, 7, 8, 63, 64, HEADER + 1];
    for (start, end) in covered(bytes) {
        for c in [start, start + 1, end.saturating_sub(1), end, end + 1] {
            cuts.push(c);
        }
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..samples {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        cuts.push((x >> 11) as usize % bytes.len());
    }
    cuts.retain(|&c| c < bytes.len());
    cuts.sort_unstable_by(|a, b| b.cmp(a));
    cuts.dedup();
    cuts
}

#[test]
fn real_model_truncated_at_section_boundaries_and_sampled_offsets_is_an_error() {
    for fp16 in [false, true] {
        let bytes = bundled_smof(fp16);
        assert!(Model::from_bytes(&bytes).is_ok());
        let cuts = cut_points(&bytes, 200);
        assert!(cuts.len() > 200, "{} cut points", cuts.len());
        for &len in &cuts {
            for verify_weights in [true, false] {
                let opts = ModelOptions {
                    verify_weights,
                    ..ModelOptions::default()
                };
                match Model::from_bytes_with(&bytes[..len], &opts) {
                    Err(Error::Corrupt { .. }) => {}
                    other => panic!("fp16 {fp16}, cut to {len}: expected Corrupt, got {other:?}"),
                }
            }
        }
        // The same cuts on a file: shrunk in place, longest first, then opened mapped and
        // copied. (A file shrunk while a model maps it is the SIGBUS case documented on
        // `Model::open`; here every open happens after the cut.)
        let path = std::env::temp_dir().join(format!(
            "smof-faults-trunc-{}-{fp16}.smof",
            std::process::id()
        ));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for &len in cuts.iter().filter(|&&c| c.is_multiple_of(5) || c < 4096) {
            file.set_len(len as u64).unwrap();
            assert!(Model::open(&path).is_err(), "mapped, cut to {len}");
            assert!(
                Model::open_copied(&path, &ModelOptions::default()).is_err(),
                "copied, cut to {len}"
            );
        }
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// f16 NaN and infinity in the weights. Documented behaviour (docs/reliability.md): the reader
// does not inspect weight values, so such a file opens; every f16 value, NaN, infinities,
// subnormals and the largest finite value included, widens to the f32 of the same value
// (NaN stays NaN); a run then follows IEEE 754 arithmetic, so a NaN weight makes its output
// channel NaN and an infinite one makes it infinite (inputs here are strictly positive and no
// activation follows, where min/max of NaN would differ between instruction sets).

const F16_NAN: u16 = 0x7E00;
const F16_INF: u16 = 0x7C00;
const F16_NEG_INF: u16 = 0xFC00;
const F16_MAX: u16 = 0x7BFF; // 65504
const F16_MIN_SUBNORMAL: u16 = 0x0001; // 2^-24

#[test]
fn f16_nan_and_inf_weights_load_as_is_and_propagate_by_ieee_rules() {
    let (ic, oc, h, w) = (4usize, 8usize, 3u32, 2u32);
    // Canonical [OC, IC, 1, 1]: finite multiples of 1/16, then the special values.
    let mut wbits: Vec<u16> = (0..oc * ic)
        .map(|i| f16_bits((i % 7) as f32 / 16.0 - 0.1875))
        .collect();
    wbits[ic + 1] = F16_NAN; // channel 1
    wbits[2 * ic + 2] = F16_INF; // channel 2
    wbits[3 * ic] = F16_NEG_INF; // channel 3
    wbits[4 * ic + 3] = F16_MAX; // channel 4: large but finite
    wbits[5 * ic + 1] = F16_MIN_SUBNORMAL; // channel 5
    let mut bbits: Vec<u16> = (0..oc).map(|o| f16_bits(o as f32 / 8.0)).collect();
    bbits[6] = F16_INF; // channel 6
    bbits[7] = F16_NAN; // channel 7
    let le = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|b| b.to_le_bytes()).collect() };
    let (wbytes, bbytes) = (le(&wbits), le(&bbits));
    let desc = |name: &str, dims: Vec<u32>, len: usize| WeightDesc {
        name: name.into(),
        dtype: DType::F16,
        layout: Layout::Canonical,
        dims,
        offset: 0,
        byte_len: len as u64,
    };
    let conv = Conv {
        in_c: ic as u32,
        out_c: oc as u32,
        groups: 1,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
        weight: 0,
        bias: Some(1),
        act: Activation::None,
    };
    let graph = Graph {
        meta: Metadata::default(),
        tensors: vec![
            TensorDesc {
                name: "x".into(),
                shape: Shape4::new(1, h, w, ic as u32),
            },
            TensorDesc {
                name: "y".into(),
                shape: Shape4::new(1, h, w, oc as u32),
            },
        ],
        weights: vec![
            desc("w", vec![oc as u32, ic as u32, 1, 1], wbytes.len()),
            desc("b", vec![oc as u32], bbytes.len()),
        ],
        nodes: vec![Node {
            name: "conv".into(),
            op: Op::Conv(conv),
            inputs: vec![0],
            outputs: vec![1],
        }],
        inputs: vec![IoDesc {
            name: "x".into(),
            tensor: 0,
            dims: vec![1, ic as u32, h, w],
        }],
        outputs: vec![IoDesc {
            name: "y".into(),
            tensor: 1,
            dims: vec![1, oc as u32, h, w],
        }],
    };
    let bytes = write(&graph, &[&wbytes, &bbytes]).expect("the writer accepts any f16 values");
    let wide = |b: u16| half::f16::from_bits(b).to_f32();
    assert!(wide(F16_NAN).is_nan());
    assert_eq!(wide(F16_INF), f32::INFINITY);
    assert_eq!(wide(F16_NEG_INF), f32::NEG_INFINITY);
    assert_eq!(wide(F16_MAX), 65504.0);
    assert_eq!(wide(F16_MIN_SUBNORMAL), 2f32.powi(-24));

    let pixels = (h * w) as usize;
    // NCHW input, strictly positive.
    let x: Vec<f32> = (0..ic * pixels)
        .map(|i| 0.25 + (i % 5) as f32 / 8.0)
        .collect();
    let mut tables = 0;
    for kernels in KernelChoice::ALL {
        let opts = ModelOptions {
            kernels,
            verify_weights: true,
        };
        let model = match Model::from_bytes_with(&bytes, &opts) {
            Ok(m) => m,
            Err(Error::InvalidOption(_)) => continue, // table not supported by this CPU
            Err(e) => panic!("{kernels:?}: {e}"),
        };
        tables += 1;
        // Weights widen value for value (compared in canonical order).
        let got_w = pack::repack(
            model.weight(0),
            &[oc as u32, ic as u32, 1, 1],
            model.weight_layout(0),
            Layout::Canonical,
        );
        for (i, (&g, &b)) in got_w.iter().zip(&wbits).enumerate() {
            let want = wide(b);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{kernels:?}: weight {i}: {g} vs {want}"
            );
        }
        for (o, (&g, &b)) in model.weight(1).iter().zip(&bbits).enumerate() {
            let want = wide(b);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{kernels:?}: bias {o}: {g} vs {want}"
            );
        }
        let mut s = smof::Session::new(&model, &smof::SessionOptions::default()).unwrap();
        s.run(&[&x]).unwrap();
        let y = s.output(0);
        for o in 0..oc {
            for p in 0..pixels {
                let got = y[o * pixels + p];
                let want: f64 = wide(bbits[o]) as f64
                    + (0..ic)
                        .map(|i| wide(wbits[o * ic + i]) as f64 * x[i * pixels + p] as f64)
                        .sum::<f64>();
                let ok = match o {
                    1 | 7 => got.is_nan(),
                    2 | 6 => got == f32::INFINITY,
                    3 => got == f32::NEG_INFINITY,
                    _ => got.is_finite() && (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                };
                assert!(
                    ok,
                    "{kernels:?}: channel {o} pixel {p}: got {got}, want {want}"
                );
            }
        }
    }
    assert!(tables >= 1);
}
