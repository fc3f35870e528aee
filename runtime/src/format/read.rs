//! The `.smof` v1 reader: validates the header, the section table and every record before
//! anything is trusted or allocated, then builds and validates the [`Graph`].

use super::records::{
    act, coord, dtype, layout, op, pool, reduce, resize, FileHeader, IoRecord, MetaRecord,
    NodeRecord, SectionEntry, StrRef, TableHeader, TensorRecord, WeightRecord, HEADER_CRC_OFFSET,
    HEADER_SIZE, NODE_PARAM_WORDS, NO_WEIGHT, SECTION_ENTRY_SIZE, TABLE_HEADER_SIZE,
};
use super::{
    ReadOptions, SectionInfo, SectionKind, MAGIC, MAX_HEADER_SIZE, MAX_MODEL_IOS, MAX_NODES,
    MAX_NODE_INPUTS, MAX_NODE_IO, MAX_NODE_OUTPUTS, MAX_RANK, MAX_SECTIONS, MAX_STRING_BYTES,
    MAX_STRING_LEN, MAX_TENSORS, MAX_WEIGHTS, SECTION_ALIGN, VERSION_MAJOR, WEIGHT_ALIGN,
};
use crate::error::{Error, Result};
use crate::graph::{
    Activation, BinaryKind, Conv, CoordMode, DType, Deconv, Fc, Graph, IoDesc, Layout, Metadata,
    NearestRound, Node, Op, PadMode, Pool, PoolKind, ReduceKind, Resize, ResizeMode, Shape4,
    TensorDesc, TensorId, UnaryKind, WeightDesc, WeightId, MAX_DIM, MAX_TENSOR_ELEMS,
};
use crate::kernels::pack;
use bytemuck::{pod_read_unaligned, Pod};
use std::borrow::Cow;
use std::mem::{offset_of, size_of};

/// Shorthand for [`Error::corrupt`].
fn corrupt(offset: u64, what: impl Into<String>) -> Error {
    Error::corrupt(offset, what)
}

/// Whether `v` is a multiple of `align` (`u64::is_multiple_of` needs Rust 1.87; MSRV is 1.80).
#[allow(clippy::manual_is_multiple_of)]
fn aligned(v: u64, align: u64) -> bool {
    v % align == 0
}

/// Reads a record at `pos`; the caller has checked that it lies inside `bytes`.
fn record<T: Pod>(bytes: &[u8], pos: usize) -> T {
    pod_read_unaligned(&bytes[pos..pos + size_of::<T>()])
}

/// Reads the version of a `.smof` file after checking its magic.
pub(super) fn version(bytes: &[u8]) -> Result<(u16, u16)> {
    if bytes.len() < MAGIC.len() {
        return Err(corrupt(
            bytes.len() as u64,
            format!(
                "the file is {} bytes long, too short for the 8-byte magic",
                bytes.len()
            ),
        ));
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            0,
            format!(
                "not a .smof file: it starts with {:02x?}, not {:02x?}",
                &bytes[..8],
                MAGIC
            ),
        ));
    }
    if bytes.len() < 12 {
        return Err(corrupt(
            bytes.len() as u64,
            format!(
                "the file is {} bytes long and ends inside the version field",
                bytes.len()
            ),
        ));
    }
    let major = u16::from_le_bytes([bytes[8], bytes[9]]);
    let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
    Ok((major, minor))
}

/// A section table entry that passed the structural checks.
#[derive(Clone, Copy, Debug)]
struct Section {
    index: usize,
    kind_code: u32,
    kind: Option<SectionKind>,
    offset: u64,
    length: u64,
    crc32: u32,
    /// Absolute position of the entry in the section table, for error messages.
    entry_pos: u64,
}

impl Section {
    /// The section's bytes; its bounds were checked against the file.
    fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.offset as usize..(self.offset + self.length) as usize]
    }
    /// `section 3 (weights)`, for messages.
    fn label(&self) -> String {
        format!(
            "section {} ({})",
            self.index,
            self.kind.map_or("unknown kind", SectionKind::name)
        )
    }
    /// Whether the bytes match the stored checksum.
    fn crc_ok(&self, file: &[u8]) -> bool {
        super::crc32(self.bytes(file)) == self.crc32
    }
}

/// [`Section::crc_ok`], or the error naming the damaged section.
fn check_crc(bytes: &[u8], s: &Section) -> Result<()> {
    if s.crc_ok(bytes) {
        return Ok(());
    }
    Err(corrupt(
        s.offset,
        format!(
            "{} checksum mismatch: stored {:08x}, computed {:08x} (its {} bytes are damaged)",
            s.label(),
            s.crc32,
            super::crc32(s.bytes(bytes)),
            s.length
        ),
    ))
}

/// The validated header and section table of a file.
struct Structure {
    sections: Vec<Section>,
}

impl Structure {
    /// The section of a kind every v1 file has; its presence was checked.
    fn get(&self, kind: SectionKind) -> &Section {
        self.sections
            .iter()
            .find(|s| s.kind == Some(kind))
            .expect("required sections are checked in `structure`")
    }
}

/// Checks magic, version, header, header checksum and section table: every section inside the
/// file, aligned, not overlapping any other or the header or the table, each v1 kind present
/// once, and every byte outside them zero. Section checksums are not checked here.
fn structure(bytes: &[u8]) -> Result<Structure> {
    let (major, minor) = version(bytes)?;
    if major != VERSION_MAJOR {
        return Err(Error::UnsupportedVersion {
            major,
            minor,
            supported: VERSION_MAJOR,
        });
    }
    let len = bytes.len() as u64;
    if bytes.len() < HEADER_SIZE {
        return Err(corrupt(
            len,
            format!("the file is {len} bytes long, shorter than the {HEADER_SIZE}-byte header"),
        ));
    }
    let h: FileHeader = record(bytes, 0);
    let at = |field: usize| field as u64;

    // The fields that delimit the checksummed bytes come first.
    let hs = h.header_size;
    if (hs as usize) < HEADER_SIZE
        || hs > MAX_HEADER_SIZE
        || !aligned(hs as u64, SECTION_ALIGN)
        || hs as u64 > len
    {
        return Err(corrupt(
            at(offset_of!(FileHeader, header_size)),
            format!(
                "header size {hs} is not a multiple of 8 between {HEADER_SIZE} and \
                 {MAX_HEADER_SIZE} inside the file ({len} bytes)"
            ),
        ));
    }
    if h.file_len != len {
        return Err(corrupt(
            at(offset_of!(FileHeader, file_len)),
            format!(
                "the header gives the file length as {} bytes but the file is {len} bytes \
                 (truncated or damaged)",
                h.file_len
            ),
        ));
    }
    let count = h.section_count;
    if count == 0 || count > MAX_SECTIONS {
        return Err(corrupt(
            at(offset_of!(FileHeader, section_count)),
            format!("section count {count} is not between 1 and {MAX_SECTIONS}"),
        ));
    }
    let table = h.section_table_offset;
    let table_end = table.checked_add(count as u64 * SECTION_ENTRY_SIZE as u64);
    if !aligned(table, SECTION_ALIGN)
        || table < hs as u64
        || !matches!(table_end, Some(e) if e <= len)
    {
        return Err(corrupt(
            at(offset_of!(FileHeader, section_table_offset)),
            format!(
                "the section table ({count} entries of {SECTION_ENTRY_SIZE} bytes at offset \
                 {table}) is not 8-aligned, overlaps the {hs}-byte header or ends past the end \
                 of the file ({len})"
            ),
        ));
    }
    let table_end = table + count as u64 * SECTION_ENTRY_SIZE as u64;
    let table_bytes = &bytes[table as usize..table_end as usize];

    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..HEADER_CRC_OFFSET]);
    crc.update(&[0; 4]);
    crc.update(&bytes[HEADER_CRC_OFFSET + 4..hs as usize]);
    crc.update(table_bytes);
    let computed = crc.finalize();
    if computed != h.header_crc {
        return Err(corrupt(
            HEADER_CRC_OFFSET as u64,
            format!(
                "header checksum mismatch: stored {:08x}, computed {computed:08x} (the header or \
                 the section table is damaged)",
                h.header_crc
            ),
        ));
    }
    if h.flags != 0 {
        return Err(corrupt(
            at(offset_of!(FileHeader, flags)),
            format!("unknown header flags {:#x}", h.flags),
        ));
    }
    if h.reserved != [0; 5] {
        return Err(corrupt(
            at(offset_of!(FileHeader, reserved)),
            "reserved header bytes are not zero",
        ));
    }

    let mut sections: Vec<Section> = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let entry_pos = table + (index * SECTION_ENTRY_SIZE) as u64;
        let e: SectionEntry = record(table_bytes, index * SECTION_ENTRY_SIZE);
        let s = Section {
            index,
            kind_code: e.kind,
            kind: SectionKind::from_code(e.kind),
            offset: e.offset,
            length: e.length,
            crc32: e.crc32,
            entry_pos,
        };
        let field = |f: usize| entry_pos + f as u64;
        if e.flags != 0 || e.reserved != 0 {
            return Err(corrupt(
                field(offset_of!(SectionEntry, flags)),
                format!("{}: reserved entry fields are not zero", s.label()),
            ));
        }
        match e.offset.checked_add(e.length) {
            Some(end) if end <= len => {}
            end => {
                return Err(corrupt(
                    field(offset_of!(SectionEntry, length)),
                    format!(
                        "{} ends at {}, past the end of the file ({len})",
                        s.label(),
                        end.map_or_else(|| "more than 2^64".to_string(), |e| e.to_string())
                    ),
                ))
            }
        }
        let align = if s.kind == Some(SectionKind::WeightData) {
            WEIGHT_ALIGN
        } else {
            SECTION_ALIGN
        };
        if !aligned(e.offset, align) {
            return Err(corrupt(
                field(offset_of!(SectionEntry, offset)),
                format!(
                    "{} starts at {}, which is not a multiple of {align}",
                    s.label(),
                    e.offset
                ),
            ));
        }
        if let Some(dup) = sections
            .iter()
            .find(|o| o.kind.is_some() && o.kind == s.kind)
        {
            return Err(corrupt(
                field(offset_of!(SectionEntry, kind)),
                format!("{} repeats the kind of section {}", s.label(), dup.index),
            ));
        }
        sections.push(s);
    }
    for kind in SectionKind::ALL {
        if !sections.iter().any(|s| s.kind == Some(kind)) {
            return Err(corrupt(
                table,
                format!("the file has no {} section", kind.name()),
            ));
        }
    }

    // Non-overlap and zero gaps: sort every non-empty range (header and table included).
    struct Range {
        start: u64,
        end: u64,
        what: String,
        pos: u64,
    }
    let mut ranges = vec![
        Range {
            start: 0,
            end: hs as u64,
            what: "the header".into(),
            pos: 0,
        },
        Range {
            start: table,
            end: table_end,
            what: "the section table".into(),
            pos: table,
        },
    ];
    ranges.extend(sections.iter().filter(|s| s.length > 0).map(|s| Range {
        start: s.offset,
        end: s.offset + s.length,
        what: s.label(),
        pos: s.entry_pos + offset_of!(SectionEntry, offset) as u64,
    }));
    ranges.sort_by_key(|r| (r.start, r.end));
    // Sorted by start, any overlap shows between neighbours.
    for pair in ranges.windows(2) {
        let (x, y) = (&pair[0], &pair[1]);
        if y.start < x.end {
            // Report at the table entry of the later of the two (the header and table come first).
            let (a, b) = if y.pos >= x.pos { (y, x) } else { (x, y) };
            return Err(corrupt(
                a.pos,
                format!(
                    "{} ({}..{}) overlaps {} ({}..{})",
                    a.what, a.start, a.end, b.what, b.start, b.end
                ),
            ));
        }
    }
    // Only then the gaps, so that a moved section is reported as such, not as stray bytes.
    let mut covered_to = 0u64;
    for r in &ranges {
        check_zero(bytes, covered_to, r.start)?;
        covered_to = r.end;
    }
    check_zero(bytes, covered_to, len)?;
    Ok(Structure { sections })
}

/// Checks that the bytes `start..end`, which belong to no section, are zero.
fn check_zero(bytes: &[u8], start: u64, end: u64) -> Result<()> {
    let gap = &bytes[start as usize..end as usize];
    match gap.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => Err(corrupt(
            start + i as u64,
            format!(
                "padding byte outside every section is {:#04x}, not zero",
                gap[i]
            ),
        )),
    }
}

/// Lists the section table of a `.smof` file, for `smof inspect`.
///
/// Checks everything about the file's structure that [`read`] does (magic, version, header,
/// header checksum, section bounds, alignment and overlap) and reports, without failing,
/// whether each section's checksum matches. The sections' contents are not decoded.
pub fn sections(bytes: &[u8]) -> Result<Vec<SectionInfo>> {
    let st = structure(bytes)?;
    Ok(st
        .sections
        .iter()
        .map(|s| SectionInfo {
            index: s.index,
            kind_code: s.kind_code,
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            crc32: s.crc32,
            crc_ok: s.crc_ok(bytes),
        })
        .collect())
}

/// Checks the structure of a `.smof` file and the checksum of every section, the weight
/// data's included, without decoding the graph: what [`read`] adds to a read without
/// [`ReadOptions::verify_weights`]. For a file opened trusted after it was verified once
/// (for example right after a download).
pub fn verify(bytes: &[u8]) -> Result<()> {
    let st = structure(bytes)?;
    st.sections.iter().try_for_each(|s| check_crc(bytes, s))
}

/// Parses and fully validates a `.smof` file. Weight offsets in the returned graph are
/// absolute positions in `bytes`, already checked to lie inside it and to be 64-byte aligned.
///
/// Checks, in order: magic and version ([`Error::UnsupportedVersion`] for another major
/// version), the header and its checksum, the section table, each section's checksum (the
/// weight data's only when [`ReadOptions::verify_weights`] is set), every record, every
/// string, enum code, count and index, each weight's length, alignment and layout, and
/// finally [`Graph::validate`]. Any failure is an [`Error`] naming the byte offset at fault;
/// nothing is allocated beyond what the checked section lengths allow.
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Graph> {
    let st = structure(bytes)?;
    for s in &st.sections {
        if s.kind == Some(SectionKind::WeightData) && !opts.verify_weights {
            continue;
        }
        check_crc(bytes, s)?;
    }

    let strings_sec = st.get(SectionKind::Strings);
    if strings_sec.length > MAX_STRING_BYTES {
        return Err(corrupt(
            strings_sec.entry_pos + offset_of!(SectionEntry, length) as u64,
            format!(
                "the strings section is {} bytes, more than the limit of {MAX_STRING_BYTES}",
                strings_sec.length
            ),
        ));
    }
    let mut d = Decoder {
        file: bytes,
        strings: strings_sec.bytes(bytes),
        string_budget: MAX_STRING_BYTES,
    };

    let tensors = d.tensors(st.get(SectionKind::Tensors))?;
    let weights = d.weights(
        st.get(SectionKind::Weights),
        st.get(SectionKind::WeightData),
    )?;
    let node_io = d.node_io(st.get(SectionKind::NodeIo), tensors.len())?;
    let nodes = d.nodes(st.get(SectionKind::Nodes), &node_io, weights.len())?;
    let (meta, inputs, outputs) = d.metadata(st.get(SectionKind::Metadata), tensors.len())?;
    let graph = Graph {
        meta,
        tensors,
        weights,
        nodes,
        inputs,
        outputs,
    };

    if let Some(c) = super::layout_conflict(&graph) {
        let w = &graph.weights[c.weight];
        let pos = st.get(SectionKind::Weights).offset
            + (TABLE_HEADER_SIZE
                + c.weight * size_of::<WeightRecord>()
                + offset_of!(WeightRecord, layout)) as u64;
        return Err(corrupt(
            pos,
            format!(
                "weight {} ({}) has layout {:?}, but node {} ({}) uses it as {}, \
                 which that layout does not fit",
                c.weight, w.name, w.layout, c.node, graph.nodes[c.node].name, c.role
            ),
        ));
    }
    graph.validate()?;
    Ok(graph)
}

/// The records of a table section, borrowed in place when aligned, copied otherwise.
struct Table<'a, T: Pod> {
    records: Cow<'a, [T]>,
    /// Absolute position of the first record.
    base: u64,
}

impl<T: Pod> Table<'_, T> {
    /// Absolute position of byte `field` of record `i`.
    fn pos(&self, i: usize, field: usize) -> u64 {
        self.base + (i * size_of::<T>() + field) as u64
    }
}

/// Decodes the sections into graph parts, tracking the string budget.
struct Decoder<'a> {
    file: &'a [u8],
    strings: &'a [u8],
    /// Bytes of strings that may still be decoded ([`MAX_STRING_BYTES`] in all).
    string_budget: u64,
}

impl<'a> Decoder<'a> {
    /// Checks a table section's header against its length and the limit `max`, then gives
    /// access to its records. Nothing is allocated before the count is checked.
    fn table<T: Pod>(&self, s: &Section, max: u64) -> Result<Table<'a, T>> {
        let data = s.bytes(self.file);
        let name = s.kind.map_or("unknown", SectionKind::name);
        let size = size_of::<T>();
        if data.len() < TABLE_HEADER_SIZE {
            return Err(corrupt(
                s.offset,
                format!(
                    "the {name} section is {} bytes, shorter than its \
                     {TABLE_HEADER_SIZE}-byte table header",
                    data.len()
                ),
            ));
        }
        let th: TableHeader = record(data, 0);
        if th.record_size as usize != size {
            return Err(corrupt(
                s.offset + offset_of!(TableHeader, record_size) as u64,
                format!(
                    "the {name} section has {}-byte records; format v1 has {size}",
                    th.record_size
                ),
            ));
        }
        if th.reserved != 0 {
            return Err(corrupt(
                s.offset + offset_of!(TableHeader, reserved) as u64,
                format!("the {name} section's reserved header field is not zero"),
            ));
        }
        if th.count > max {
            return Err(corrupt(
                s.offset,
                format!(
                    "the {name} section claims {} records, more than the limit of {max}",
                    th.count
                ),
            ));
        }
        // `count <= max <= 2^24` and `size <= 128`: no overflow.
        let need = TABLE_HEADER_SIZE as u64 + th.count * size as u64;
        if need != s.length {
            return Err(corrupt(
                s.offset,
                format!(
                    "the {name} section claims {} records of {size} bytes ({need} bytes with its \
                     header) but is {} bytes long",
                    th.count, s.length
                ),
            ));
        }
        let body = &data[TABLE_HEADER_SIZE..];
        let records = match bytemuck::try_cast_slice::<u8, T>(body) {
            Ok(r) => Cow::Borrowed(r),
            Err(_) => Cow::Owned(body.chunks_exact(size).map(pod_read_unaligned).collect()),
        };
        Ok(Table {
            records,
            base: s.offset + TABLE_HEADER_SIZE as u64,
        })
    }

    /// Decodes a string reference stored at absolute position `pos`; `what` names it.
    fn string(&mut self, r: StrRef, pos: u64, what: impl FnOnce() -> String) -> Result<String> {
        if r.len > MAX_STRING_LEN {
            return Err(corrupt(
                pos + offset_of!(StrRef, len) as u64,
                format!(
                    "{}: string of {} bytes, more than the limit of {MAX_STRING_LEN}",
                    what(),
                    r.len
                ),
            ));
        }
        let end = r.offset as u64 + r.len as u64;
        if end > self.strings.len() as u64 {
            return Err(corrupt(
                pos,
                format!(
                    "{}: string at {}..{end} lies outside the strings section ({} bytes)",
                    what(),
                    r.offset,
                    self.strings.len()
                ),
            ));
        }
        if r.len as u64 > self.string_budget {
            return Err(corrupt(
                pos,
                format!(
                    "{}: the strings referenced add up to more than {MAX_STRING_BYTES} bytes",
                    what()
                ),
            ));
        }
        self.string_budget -= r.len as u64;
        match std::str::from_utf8(&self.strings[r.offset as usize..end as usize]) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(corrupt(
                pos,
                format!("{}: string is not valid UTF-8 ({e})", what()),
            )),
        }
    }

    /// The tensor table.
    fn tensors(&mut self, s: &Section) -> Result<Vec<TensorDesc>> {
        let t = self.table::<TensorRecord>(s, MAX_TENSORS)?;
        let mut out = Vec::with_capacity(t.records.len());
        for (i, r) in t.records.iter().enumerate() {
            let name = self.string(r.name, t.pos(i, 0), || format!("tensor {i} name"))?;
            let [n, h, w, c] = r.shape;
            let shape = Shape4::new(n, h, w, c);
            // Each extent is checked before the product, which then fits in u64 step by step.
            let elems = r.shape.iter().try_fold(1u64, |acc, &d| {
                (d != 0 && d <= MAX_DIM)
                    .then(|| acc * d as u64)
                    .filter(|&p| p <= MAX_TENSOR_ELEMS)
            });
            if elems.is_none() {
                return Err(corrupt(
                    t.pos(i, offset_of!(TensorRecord, shape)),
                    format!(
                        "tensor {i} ({name}) has shape {:?}: every extent must be 1..={MAX_DIM} \
                         and the product at most {MAX_TENSOR_ELEMS}",
                        r.shape
                    ),
                ));
            }
            out.push(TensorDesc { name, shape });
        }
        Ok(out)
    }

    /// The weight table, with offsets made absolute.
    fn weights(&mut self, s: &Section, data: &Section) -> Result<Vec<WeightDesc>> {
        let t = self.table::<WeightRecord>(s, MAX_WEIGHTS)?;
        let mut out = Vec::with_capacity(t.records.len());
        for (i, r) in t.records.iter().enumerate() {
            let at = |f: usize| t.pos(i, f);
            let name = self.string(r.name, at(0), || format!("weight {i} name"))?;
            let ctx = || format!("weight {i} ({name})");
            let dtype = match r.dtype {
                dtype::F32 => DType::F32,
                dtype::F16 => DType::F16,
                c => {
                    return Err(corrupt(
                        at(offset_of!(WeightRecord, dtype)),
                        format!("{}: unknown dtype code {c}", ctx()),
                    ))
                }
            };
            let layout_at = at(offset_of!(WeightRecord, layout));
            let block = |b: u32| {
                u16::try_from(b).ok().filter(|&b| b > 0).ok_or_else(|| {
                    corrupt(
                        at(offset_of!(WeightRecord, block)),
                        format!("{}: block size {b} is not between 1 and 65535", ctx()),
                    )
                })
            };
            let layout = match r.layout {
                layout::CANONICAL if r.block == 0 => Layout::Canonical,
                layout::CANONICAL => {
                    return Err(corrupt(
                        at(offset_of!(WeightRecord, block)),
                        format!(
                            "{}: canonical layout with block size {} (must be 0)",
                            ctx(),
                            r.block
                        ),
                    ))
                }
                layout::CONV_OC_BLOCK => Layout::ConvOcBlock(block(r.block)?),
                layout::DW_BLOCK => Layout::DwBlock(block(r.block)?),
                layout::FC_OC_BLOCK => Layout::FcOcBlock(block(r.block)?),
                layout::WINOGRAD_F43 => Layout::WinogradF43(block(r.block)?),
                layout::WINOGRAD_F23 => Layout::WinogradF23(block(r.block)?),
                c => {
                    return Err(corrupt(
                        layout_at,
                        format!("{}: unknown layout code {c}", ctx()),
                    ))
                }
            };
            let dims = dims(r.rank, &r.dims, at(offset_of!(WeightRecord, rank)), &ctx)?;
            let mut elems = 1u64;
            for &d in &dims {
                if d == 0 || d > MAX_DIM {
                    return Err(corrupt(
                        at(offset_of!(WeightRecord, dims)),
                        format!("{}: dims {dims:?}: every dim must be 1..={MAX_DIM}", ctx()),
                    ));
                }
                elems *= d as u64; // at most (2^20)^3 before the check below
                if elems > MAX_TENSOR_ELEMS {
                    return Err(corrupt(
                        at(offset_of!(WeightRecord, dims)),
                        format!(
                            "{}: dims {dims:?} hold more than {MAX_TENSOR_ELEMS} elements",
                            ctx()
                        ),
                    ));
                }
            }
            let mut desc = WeightDesc {
                name: String::new(),
                dtype,
                layout,
                dims,
                offset: 0,
                byte_len: r.byte_len,
            };
            let Some(want) = pack::stored_bytes(&desc) else {
                return Err(corrupt(
                    layout_at,
                    format!(
                        "{}: layout {layout:?} does not apply to dims {:?}",
                        ctx(),
                        desc.dims
                    ),
                ));
            };
            if r.byte_len != want {
                return Err(corrupt(
                    at(offset_of!(WeightRecord, byte_len)),
                    format!(
                        "{}: {} bytes stored, but {dtype:?} {layout:?} with dims {:?} takes {want}",
                        ctx(),
                        r.byte_len,
                        desc.dims
                    ),
                ));
            }
            let offset_at = at(offset_of!(WeightRecord, offset));
            if !aligned(r.offset, WEIGHT_ALIGN) {
                return Err(corrupt(
                    offset_at,
                    format!(
                        "{}: data offset {} is not a multiple of {WEIGHT_ALIGN}",
                        ctx(),
                        r.offset
                    ),
                ));
            }
            match r.offset.checked_add(r.byte_len) {
                Some(end) if end <= data.length => {}
                _ => {
                    return Err(corrupt(
                        offset_at,
                        format!(
                            "{}: data at {}+{} lies outside the weight data section ({} bytes)",
                            ctx(),
                            r.offset,
                            r.byte_len,
                            data.length
                        ),
                    ))
                }
            }
            desc.offset = data.offset + r.offset;
            desc.name = name;
            out.push(desc);
        }
        Ok(out)
    }

    /// The node-io array, every entry checked to be a tensor id.
    fn node_io(&mut self, s: &Section, tensors: usize) -> Result<Vec<TensorId>> {
        let t = self.table::<u32>(s, MAX_NODE_IO)?;
        if let Some(i) = t.records.iter().position(|&id| id as usize >= tensors) {
            return Err(corrupt(
                t.pos(i, 0),
                format!(
                    "node-io entry {i} is tensor {}, but there are {tensors} tensors",
                    t.records[i]
                ),
            ));
        }
        Ok(t.records.into_owned())
    }

    /// The node table.
    fn nodes(&mut self, s: &Section, io: &[TensorId], weights: usize) -> Result<Vec<Node>> {
        let t = self.table::<NodeRecord>(s, MAX_NODES)?;
        let mut out = Vec::with_capacity(t.records.len());
        let mut io_refs = 0u64;
        for (i, r) in t.records.iter().enumerate() {
            let at = |f: usize| t.pos(i, f);
            let name = self.string(r.name, at(0), || format!("node {i} name"))?;
            let ctx = || format!("node {i} ({name})");
            if r.reserved != 0 {
                return Err(corrupt(
                    at(offset_of!(NodeRecord, reserved)),
                    format!("{}: reserved field is not zero", ctx()),
                ));
            }
            let range = |first: u32, count: u32, max: u32, field: usize, what: &str| {
                if count > max {
                    return Err(corrupt(
                        at(field + 4),
                        format!("{}: {count} {what}, more than the limit of {max}", ctx()),
                    ));
                }
                let end = first as u64 + count as u64;
                if end > io.len() as u64 {
                    return Err(corrupt(
                        at(field),
                        format!(
                            "{}: {what} {first}..{end} lie outside the node-io array ({} entries)",
                            ctx(),
                            io.len()
                        ),
                    ));
                }
                Ok(io[first as usize..end as usize].to_vec())
            };
            io_refs += r.input_count as u64 + r.output_count as u64;
            if io_refs > MAX_NODE_IO {
                return Err(corrupt(
                    at(offset_of!(NodeRecord, input_count)),
                    format!(
                        "{}: the nodes' inputs and outputs add up to more than {MAX_NODE_IO}",
                        ctx()
                    ),
                ));
            }
            let inputs = range(
                r.input_first,
                r.input_count,
                MAX_NODE_INPUTS,
                offset_of!(NodeRecord, input_first),
                "inputs",
            )?;
            let outputs = range(
                r.output_first,
                r.output_count,
                MAX_NODE_OUTPUTS,
                offset_of!(NodeRecord, output_first),
                "outputs",
            )?;
            let params = Params {
                words: &r.params,
                base: at(offset_of!(NodeRecord, params)),
                weights,
                ctx: &ctx,
            };
            let op = params.op(r.op, at(offset_of!(NodeRecord, op)))?;
            out.push(Node {
                name,
                op,
                inputs,
                outputs,
            });
        }
        Ok(out)
    }

    /// The metadata section: provenance, model inputs and model outputs.
    fn metadata(
        &mut self,
        s: &Section,
        tensors: usize,
    ) -> Result<(Metadata, Vec<IoDesc>, Vec<IoDesc>)> {
        let data = s.bytes(self.file);
        let head = size_of::<MetaRecord>();
        if data.len() < head {
            return Err(corrupt(
                s.offset,
                format!(
                    "the metadata section is {} bytes, shorter than its {head}-byte record",
                    data.len()
                ),
            ));
        }
        let m: MetaRecord = record(data, 0);
        let at = |f: usize| s.offset + f as u64;
        for (n, f, what) in [
            (m.input_count, offset_of!(MetaRecord, input_count), "inputs"),
            (
                m.output_count,
                offset_of!(MetaRecord, output_count),
                "outputs",
            ),
        ] {
            if n > MAX_MODEL_IOS {
                return Err(corrupt(
                    at(f),
                    format!("the model claims {n} {what}, more than the limit of {MAX_MODEL_IOS}"),
                ));
            }
        }
        let ios = (m.input_count + m.output_count) as usize;
        let need = head + ios * size_of::<IoRecord>();
        if data.len() != need {
            return Err(corrupt(
                s.offset,
                format!(
                    "the metadata section holds {} inputs and {} outputs ({need} bytes) \
                     but is {} bytes long",
                    m.input_count,
                    m.output_count,
                    data.len()
                ),
            ));
        }
        let meta = Metadata {
            producer: self.string(m.producer, at(offset_of!(MetaRecord, producer)), || {
                "producer".into()
            })?,
            producer_version: self.string(
                m.producer_version,
                at(offset_of!(MetaRecord, producer_version)),
                || "producer version".into(),
            )?,
            model_name: self.string(
                m.model_name,
                at(offset_of!(MetaRecord, model_name)),
                || "model name".into(),
            )?,
            description: self.string(
                m.description,
                at(offset_of!(MetaRecord, description)),
                || "description".into(),
            )?,
        };
        let mut inputs = Vec::with_capacity(m.input_count as usize);
        let mut outputs = Vec::with_capacity(m.output_count as usize);
        for i in 0..ios {
            let rec_at = head + i * size_of::<IoRecord>();
            let r: IoRecord = record(data, rec_at);
            let pos = |f: usize| s.offset + (rec_at + f) as u64;
            let (list, k, what) = if i < m.input_count as usize {
                (&mut inputs, i, "input")
            } else {
                (&mut outputs, i - m.input_count as usize, "output")
            };
            let name = self.string(r.name, pos(0), || format!("model {what} {k} name"))?;
            let ctx = || format!("model {what} {k} ({name})");
            if r.tensor as usize >= tensors {
                return Err(corrupt(
                    pos(offset_of!(IoRecord, tensor)),
                    format!(
                        "{}: tensor {} out of range ({tensors} tensors)",
                        ctx(),
                        r.tensor
                    ),
                ));
            }
            let dims = dims(r.rank, &r.dims, pos(offset_of!(IoRecord, rank)), &ctx)?;
            list.push(IoDesc {
                name,
                tensor: r.tensor,
                dims,
            });
        }
        Ok((meta, inputs, outputs))
    }
}

/// The used dims of a rank + `[u32; 4]` pair, checking the rank and that unused dims are zero.
/// `pos` is the position of the rank field; the dims follow it.
fn dims(rank: u32, dims: &[u32; 4], pos: u64, ctx: &dyn Fn() -> String) -> Result<Vec<u32>> {
    if rank == 0 || rank > MAX_RANK {
        return Err(corrupt(
            pos,
            format!("{}: rank {rank} is not between 1 and {MAX_RANK}", ctx()),
        ));
    }
    if dims[rank as usize..].iter().any(|&d| d != 0) {
        return Err(corrupt(
            pos + 4,
            format!("{}: dims {dims:?} past rank {rank} are not zero", ctx()),
        ));
    }
    Ok(dims[..rank as usize].to_vec())
}

/// The parameter area of one node.
struct Params<'a> {
    words: &'a [u32; NODE_PARAM_WORDS],
    /// Absolute position of word 0.
    base: u64,
    /// Number of weights, for id checks.
    weights: usize,
    /// `node 3 (name)`, for messages.
    ctx: &'a dyn Fn() -> String,
}

impl Params<'_> {
    /// Position of word `i`.
    fn pos(&self, i: usize) -> u64 {
        self.base + 4 * i as u64
    }

    /// Words `i..i+N`.
    fn get<const N: usize>(&self, i: usize) -> [u32; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.words[i..i + N]);
        out
    }

    /// Word `i` as a weight id.
    fn weight(&self, i: usize) -> Result<WeightId> {
        let id = self.words[i];
        if id as usize >= self.weights {
            return Err(corrupt(
                self.pos(i),
                format!(
                    "{}: weight {id} out of range ({} weights)",
                    (self.ctx)(),
                    self.weights
                ),
            ));
        }
        Ok(id)
    }

    /// Word `i` as an optional weight id.
    fn opt_weight(&self, i: usize) -> Result<Option<WeightId>> {
        if self.words[i] == NO_WEIGHT {
            Ok(None)
        } else {
            self.weight(i).map(Some)
        }
    }

    /// Words `i..i+3` as an activation: code and two f32 parameters, unused ones zero.
    fn act(&self, i: usize) -> Result<Activation> {
        let [code, p0, p1] = self.get::<3>(i);
        let (a, used) = match code {
            act::NONE => (Activation::None, 0),
            act::RELU => (Activation::Relu, 0),
            act::CLIP => (
                Activation::Clip {
                    min: f32::from_bits(p0),
                    max: f32::from_bits(p1),
                },
                2,
            ),
            act::LEAKY_RELU => (
                Activation::LeakyRelu {
                    alpha: f32::from_bits(p0),
                },
                1,
            ),
            act::SIGMOID => (Activation::Sigmoid, 0),
            act::HARD_SIGMOID => (
                Activation::HardSigmoid {
                    alpha: f32::from_bits(p0),
                    beta: f32::from_bits(p1),
                },
                2,
            ),
            act::HARD_SWISH => (Activation::HardSwish, 0),
            act::SILU => (Activation::Silu, 0),
            act::TANH => (Activation::Tanh, 0),
            act::GELU => (Activation::Gelu, 0),
            c => {
                return Err(corrupt(
                    self.pos(i),
                    format!("{}: unknown activation code {c}", (self.ctx)()),
                ))
            }
        };
        if let Some(j) = [p0, p1].iter().skip(used).position(|&w| w != 0) {
            return Err(corrupt(
                self.pos(i + 1 + used + j),
                format!(
                    "{}: unused parameter of activation {} is not zero",
                    (self.ctx)(),
                    a.name()
                ),
            ));
        }
        Ok(a)
    }

    /// Decodes op `code` (stored at `pos`); words past the op's parameters must be zero.
    fn op(&self, code: u32, pos: u64) -> Result<Op> {
        let (op, used) = match code {
            op::CONV => {
                let [in_c, out_c, groups] = self.get(0);
                let conv = Conv {
                    in_c,
                    out_c,
                    groups,
                    kernel: self.get(3),
                    stride: self.get(5),
                    dilation: self.get(7),
                    pads: self.get(9),
                    weight: self.weight(13)?,
                    bias: self.opt_weight(14)?,
                    act: self.act(15)?,
                };
                (Op::Conv(conv), 18)
            }
            op::FC => {
                let [in_features, out_features] = self.get(0);
                let fc = Fc {
                    in_features,
                    out_features,
                    weight: self.weight(2)?,
                    bias: self.opt_weight(3)?,
                    act: self.act(4)?,
                };
                (Op::Fc(fc), 7)
            }
            op::POOL => {
                let [kind, include_pad] = self.get(0);
                let kind = match (kind, include_pad) {
                    (pool::MAX, 0) => PoolKind::Max,
                    (pool::AVG, 0 | 1) => PoolKind::Avg {
                        count_include_pad: include_pad == 1,
                    },
                    (pool::MAX | pool::AVG, v) => {
                        return Err(corrupt(
                            self.pos(1),
                            format!(
                                "{}: count_include_pad {v} is not 0 or 1 (0 for max pooling)",
                                (self.ctx)()
                            ),
                        ))
                    }
                    (k, _) => {
                        return Err(corrupt(
                            self.pos(0),
                            format!("{}: unknown pool kind {k}", (self.ctx)()),
                        ));
                    }
                };
                let p = Pool {
                    kind,
                    kernel: self.get(2),
                    stride: self.get(4),
                    dilation: self.get(6),
                    pads: self.get(8),
                    ceil_pads: self.get(12),
                };
                (Op::Pool(p), 14)
            }
            op::GLOBAL_AVG_POOL => (Op::GlobalAvgPool, 0),
            op::ADD => (Op::Add { act: self.act(0)? }, 3),
            op::MUL => (Op::Mul, 0),
            op::CONCAT => (Op::Concat, 0),
            op::ACT => (Op::Act(self.act(0)?), 3),
            op::SOFTMAX => (Op::Softmax, 0),
            op::FLATTEN => (Op::Flatten, 0),
            op::CHANNEL_AFFINE => (
                Op::ChannelAffine {
                    scale: self.weight(0)?,
                    shift: self.weight(1)?,
                    act: self.act(2)?,
                },
                5,
            ),
            op::SLICE => (
                Op::Slice {
                    start: self.get(0),
                    end: self.get(4),
                    step: self.get(8),
                },
                12,
            ),
            op::RESIZE => {
                let [mode, round, coord] = self.get(0);
                let bad_code = |at: usize, what: &str, v: u32| {
                    Err(corrupt(
                        self.pos(at),
                        format!("{}: unknown {what} code {v}", (self.ctx)()),
                    ))
                };
                let mode = match (mode, round) {
                    (resize::NEAREST, resize::ROUND_PREFER_FLOOR) => {
                        ResizeMode::Nearest(NearestRound::RoundPreferFloor)
                    }
                    (resize::NEAREST, resize::ROUND_PREFER_CEIL) => {
                        ResizeMode::Nearest(NearestRound::RoundPreferCeil)
                    }
                    (resize::NEAREST, resize::FLOOR) => ResizeMode::Nearest(NearestRound::Floor),
                    (resize::NEAREST, resize::CEIL) => ResizeMode::Nearest(NearestRound::Ceil),
                    (resize::LINEAR, 0) => ResizeMode::Linear,
                    (resize::NEAREST | resize::LINEAR, r) => {
                        return bad_code(1, "nearest rounding (0 for linear)", r)
                    }
                    (m, _) => return bad_code(0, "resize mode", m),
                };
                let coord = match coord {
                    coord::HALF_PIXEL => CoordMode::HalfPixel,
                    coord::PYTORCH_HALF_PIXEL => CoordMode::PytorchHalfPixel,
                    coord::ALIGN_CORNERS => CoordMode::AlignCorners,
                    coord::ASYMMETRIC => CoordMode::Asymmetric,
                    coord::TF_HALF_PIXEL_FOR_NN => CoordMode::TfHalfPixelForNn,
                    coord::HALF_PIXEL_SYMMETRIC => CoordMode::HalfPixelSymmetric,
                    c => return bad_code(2, "coordinate mode", c),
                };
                let r = Resize {
                    mode,
                    coord,
                    scale: self.get::<2>(3).map(f32::from_bits),
                    size: self.get(5),
                };
                (Op::Resize(r), 7)
            }
            op::DECONV => {
                let [in_c, out_c, groups] = self.get(0);
                let d = Deconv {
                    in_c,
                    out_c,
                    groups,
                    kernel: self.get(3),
                    stride: self.get(5),
                    dilation: self.get(7),
                    pads: self.get(9),
                    out_pad: self.get(13),
                    weight: self.weight(15)?,
                    bias: self.opt_weight(16)?,
                    act: self.act(17)?,
                };
                (Op::Deconv(d), 20)
            }
            op::CHANNEL_SHUFFLE => (
                Op::ChannelShuffle {
                    groups: self.get::<1>(0)[0],
                },
                1,
            ),
            op::TRANSPOSE => (Op::Transpose { perm: self.get(0) }, 4),
            op::REDUCE => {
                let [kind, axes] = self.get(0);
                let kind = match kind {
                    reduce::MEAN => ReduceKind::Mean,
                    reduce::MAX => ReduceKind::Max,
                    reduce::SUM => ReduceKind::Sum,
                    reduce::ARGMAX => ReduceKind::ArgMax,
                    k => {
                        return Err(corrupt(
                            self.pos(0),
                            format!("{}: unknown reduction code {k}", (self.ctx)()),
                        ))
                    }
                };
                (Op::Reduce { kind, axes }, 2)
            }
            op::BINARY => {
                let code = self.get::<1>(0)[0];
                let kind = *BinaryKind::ALL.get(code as usize).ok_or_else(|| {
                    corrupt(
                        self.pos(0),
                        format!("{}: unknown binary function code {code}", (self.ctx)()),
                    )
                })?;
                (
                    Op::Binary {
                        kind,
                        act: self.act(1)?,
                    },
                    4,
                )
            }
            op::UNARY => {
                let code = self.get::<1>(0)[0];
                let kind = *UnaryKind::ALL.get(code as usize).ok_or_else(|| {
                    corrupt(
                        self.pos(0),
                        format!("{}: unknown unary function code {code}", (self.ctx)()),
                    )
                })?;
                (Op::Unary { kind }, 1)
            }
            op::CONSTANT => (
                Op::Constant {
                    weight: self.weight(0)?,
                },
                1,
            ),
            op::PAD => {
                let [m, v] = self.get(8);
                let mode = match (m, v) {
                    (0, v) => PadMode::Constant(f32::from_bits(v)),
                    (1, 0) => PadMode::Reflect,
                    (2, 0) => PadMode::Edge,
                    (1 | 2, _) => {
                        return Err(corrupt(
                            self.pos(9),
                            format!(
                                "{}: pad value of a non-constant mode is not zero",
                                (self.ctx)()
                            ),
                        ))
                    }
                    (m, _) => {
                        return Err(corrupt(
                            self.pos(8),
                            format!("{}: unknown pad mode code {m}", (self.ctx)()),
                        ))
                    }
                };
                (
                    Op::Pad {
                        begin: self.get(0),
                        end: self.get(4),
                        mode,
                    },
                    10,
                )
            }
            op::DEPTH_TO_SPACE => {
                let [block, crd] = self.get(0);
                if crd > 1 {
                    return Err(corrupt(
                        self.pos(1),
                        format!("{}: unknown depth-to-space mode code {crd}", (self.ctx)()),
                    ));
                }
                (
                    Op::DepthToSpace {
                        block,
                        crd: crd == 1,
                    },
                    2,
                )
            }
            op::SPACE_TO_DEPTH => (
                Op::SpaceToDepth {
                    block: self.get::<1>(0)[0],
                },
                1,
            ),
            op::TILE => (Op::Tile { reps: self.get(0) }, 4),
            op::SOFTMAX_AXIS => {
                let [axis, log] = self.get(0);
                if log > 1 {
                    return Err(corrupt(
                        self.pos(1),
                        format!("{}: log flag {log} is not 0 or 1", (self.ctx)()),
                    ));
                }
                (
                    Op::SoftmaxAxis {
                        axis,
                        log: log == 1,
                    },
                    2,
                )
            }
            op::RESHAPE => (Op::Reshape { shape: self.get(0) }, 4),
            op::CONCAT_AXIS => (
                Op::ConcatAxis {
                    axis: self.get::<1>(0)[0],
                },
                1,
            ),
            op::LAYER_NORM => (
                Op::LayerNorm {
                    scale: self.weight(0)?,
                    shift: self.weight(1)?,
                    eps: f32::from_bits(self.get::<1>(2)[0]),
                },
                3,
            ),
            c => {
                return Err(corrupt(
                    pos,
                    format!(
                        "{}: unknown op code {c} (a newer format version may define it)",
                        (self.ctx)()
                    ),
                ))
            }
        };
        if let Some(j) = self.words[used..].iter().position(|&w| w != 0) {
            return Err(corrupt(
                self.pos(used + j),
                format!(
                    "{}: parameter word {} is not zero, but a {} has only {used}",
                    (self.ctx)(),
                    used + j,
                    op.name()
                ),
            ));
        }
        Ok(op)
    }
}
