//! An opened `.smof` model: the validated graph plus its weights, used in place when the
//! file's layout is the one the kernel table wants, repacked once at load otherwise.

use crate::error::{Error, Result};
use crate::format::{self, ReadOptions};
use crate::graph::{DType, Graph, Layout, Op, Shape4, WeightId};
use crate::kernels::{pack, AlignedF32, KernelChoice, KernelTable, WeightRole};
use std::path::Path;

/// Options for opening a model.
#[derive(Clone, Copy, Debug)]
pub struct ModelOptions {
    /// Which kernel table the model's sessions use; weights are packed for it at load.
    pub kernels: KernelChoice,
    /// Verify the weight section's checksum at open (the default). The graph sections are
    /// always verified. Off, a ResNet-18 opens in about 0.15 ms instead of 10 ms (the
    /// checksum reads all 46 MB); [`Model::verify_weights`] checks later.
    pub verify_weights: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            kernels: KernelChoice::Auto,
            verify_weights: true,
        }
    }
}

/// Where the file's bytes live.
enum Storage {
    Mmap(memmap2::Mmap),
    /// `len` bytes at `start` inside a mapping that begins at a page boundary.
    MmapRange {
        map: memmap2::Mmap,
        start: usize,
        len: usize,
    },
    Static(&'static [u8]),
    Owned(Vec<Aligned64>),
}

/// 64 bytes, 64-aligned: the unit of owned storage, so weights in it can be read as f32.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Aligned64([u8; 64]);

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::MmapRange { map, start, len } => &map[*start..*start + *len],
            Storage::Static(s) => s,
            Storage::Owned(v) => bytemuck_aligned(v),
        }
    }
}

/// `data` (stored as `from`) repacked as `to`, written straight into aligned storage.
fn repacked(data: &[f32], dims: &[u32], from: Layout, to: Layout) -> AlignedF32 {
    let len = pack::packed_len(to, dims).expect("validated by format::read") as usize;
    let mut a = AlignedF32::zeroed(len);
    pack::repack_into(data, dims, from, to, a.as_mut_slice());
    a
}

/// `bytes` in 64-byte-aligned storage (zero-padded to a multiple of 64).
fn aligned_copy(bytes: &[u8]) -> Vec<Aligned64> {
    let mut owned = vec![Aligned64([0; 64]); bytes.len().div_ceil(64)];
    bytemuck_aligned_mut(&mut owned)[..bytes.len()].copy_from_slice(bytes);
    owned
}

fn bytemuck_aligned(v: &[Aligned64]) -> &[u8] {
    // SAFETY: `Aligned64` is `repr(C)` over `[u8; 64]` with no padding, so a slice of them is
    // `64 * len` initialised bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 64) }
}

/// A weight as the kernels read it.
enum WeightData {
    /// f32 data inside the file at this float range, already in the wanted layout.
    InFile { start: usize, len: usize },
    /// Converted (f16 widened, or repacked) at load, 64-byte aligned like the file's weights:
    /// from 16-byte-aligned heap memory the AVX-512 kernels' weight loads straddled cache
    /// lines and ResNet-18 ran 7-8% slower than from the file.
    Owned(AlignedF32),
}

/// An immutable, validated model. `Send + Sync`: one `Model` serves any number of sessions.
pub struct Model {
    storage: Storage,
    graph: Graph,
    weights: Vec<WeightData>,
    layouts: Vec<Layout>,
    table: &'static KernelTable,
    file_len: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.graph.meta.model_name)
            .field("nodes", &self.graph.nodes.len())
            .field("kernels", &self.table.name)
            .field("file_len", &self.file_len)
            .finish()
    }
}

impl Model {
    /// Memory-maps and validates a `.smof` file. Weights stored in the layout of the host's
    /// kernel table are used in place, with no copy.
    ///
    /// The file must not be truncated or rewritten in place while the model is alive (that is
    /// undefined for any mapping, and shows as SIGBUS); replace it by renaming a new file over
    /// it instead, which leaves the old mapping intact.
    ///
    /// ```no_run
    /// let model = smof::Model::open("models/lenet5.smof")?;
    /// println!("{} inputs", model.graph().inputs.len());
    /// # Ok::<(), smof::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        Self::open_with(path, &ModelOptions::default())
    }

    /// [`Model::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, opts: &ModelOptions) -> Result<Model> {
        let path = path.as_ref();
        let io = |error| Error::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // Mapping a directory or a device fails with "No such device": say what is wrong.
        let kind = file.metadata().map_err(io)?.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory, not a .smof file"
            } else {
                "not a regular file, which mapping needs (Model::open_copied reads any file)"
            };
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                what,
            )));
        }
        // SAFETY: the mapping is read-only; the documented contract above is that the file is
        // not modified in place while mapped. Every byte read from it is bounds-checked by
        // `format::read` before use.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_storage(Storage::Mmap(map), opts)
    }

    /// Reads the whole file into memory instead of mapping it, for apps that cannot guarantee
    /// the file stays unchanged while the model is alive.
    pub fn open_copied(path: impl AsRef<Path>, opts: &ModelOptions) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes_with(&bytes, opts)
    }

    /// Maps the `len` bytes at `offset` of an open file, for a model stored inside a larger
    /// file (an uncompressed Android asset, an archive). The caller may close `file` afterwards;
    /// the mapping keeps its own reference.
    ///
    /// The mapping starts at the page boundary below `offset` and the model uses the sub-slice,
    /// so no bytes are copied when `offset` is a multiple of 64 (weights are then 64-byte
    /// aligned in memory, as they are in the file); otherwise the range is read into aligned
    /// memory. The same no-modification contract as [`Model::open`] applies.
    pub fn open_range(
        file: &std::fs::File,
        offset: u64,
        len: u64,
        opts: &ModelOptions,
    ) -> Result<Model> {
        let io = |error| Error::Io {
            path: std::path::PathBuf::from(format!("<file range {offset}+{len}>")),
            error,
        };
        let invalid =
            |what: String| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, what));
        let file_len = file.metadata().map_err(io)?.len();
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(invalid(format!(
                "range {offset}+{len} is outside the file of {file_len} bytes"
            )));
        }
        let len_usize = usize::try_from(len).map_err(|_| invalid("range too large".into()))?;
        if !offset.is_multiple_of(64) {
            let mut bytes = vec![0u8; len_usize];
            read_exact_at(file, &mut bytes, offset).map_err(io)?;
            return Self::from_bytes_with(&bytes, opts);
        }
        let page = page_size() as u64;
        let base = offset / page * page;
        let start = (offset - base) as usize;
        // SAFETY: read-only mapping under the contract documented above; every byte read from
        // it is bounds-checked by `format::read` before use.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(base)
                .len(start + len_usize)
                .map(file)
        }
        .map_err(io)?;
        Self::from_storage(
            Storage::MmapRange {
                map,
                start,
                len: len_usize,
            },
            opts,
        )
    }

    /// Validates a model held in memory, copying it into 64-byte-aligned storage.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Self::from_bytes_with(bytes, &ModelOptions::default())
    }

    /// [`Model::from_bytes`] with options.
    pub fn from_bytes_with(bytes: &[u8], opts: &ModelOptions) -> Result<Model> {
        let storage = Storage::Owned(aligned_copy(bytes));
        Self::from_storage_len(storage, bytes.len(), opts)
    }

    /// Uses a `'static` buffer (for example from `include_bytes!`) in place when it is 64-byte
    /// aligned; copies it otherwise.
    pub fn from_static(bytes: &'static [u8], opts: &ModelOptions) -> Result<Model> {
        if (bytes.as_ptr() as usize).is_multiple_of(64) {
            Self::from_storage(Storage::Static(bytes), opts)
        } else {
            Self::from_bytes_with(bytes, opts)
        }
    }

    fn from_storage(storage: Storage, opts: &ModelOptions) -> Result<Model> {
        let len = storage.bytes().len();
        Self::from_storage_len(storage, len, opts)
    }

    fn from_storage_len(storage: Storage, file_len: usize, opts: &ModelOptions) -> Result<Model> {
        let table = KernelTable::for_choice(opts.kernels).ok_or_else(|| {
            Error::InvalidOption(format!(
                "kernel table {:?} is not supported by this CPU",
                opts.kernels
            ))
        })?;
        let bytes = &storage.bytes()[..file_len];
        let graph = format::read(
            bytes,
            &ReadOptions {
                verify_weights: opts.verify_weights,
            },
        )?;
        let roles = weight_roles(&graph);
        let mut weights = Vec::with_capacity(graph.weights.len());
        let mut layouts = Vec::with_capacity(graph.weights.len());
        for (i, desc) in graph.weights.iter().enumerate() {
            let (role, input) = roles[i].unwrap_or((WeightRole::Vector, Shape4::default()));
            let want = table.layout_for(role, input);
            // Offsets and lengths were validated against the file by `format::read`.
            let start = desc.offset as usize;
            let raw = &bytes[start..start + desc.byte_len as usize];
            let data = match desc.dtype {
                DType::F32 if desc.layout == want => WeightData::InFile {
                    start: start / 4,
                    len: raw.len() / 4,
                },
                DType::F32 => WeightData::Owned(repacked(
                    bytemuck::cast_slice(raw),
                    &desc.dims,
                    desc.layout,
                    want,
                )),
                DType::F16 => {
                    let h: Vec<f32> = raw
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect();
                    WeightData::Owned(repacked(&h, &desc.dims, desc.layout, want))
                }
            };
            weights.push(data);
            layouts.push(want);
        }
        Ok(Model {
            storage,
            graph,
            weights,
            layouts,
            table,
            file_len,
        })
    }

    /// Checks the checksum of every section of the file, the weight data's included.
    /// [`Model::open`] checks the weight data only when [`ModelOptions::verify_weights`] is
    /// set (the default); an app that opens with it off for speed (the weight checksum is
    /// most of the open time of a large model) can call this once, for example after a
    /// download, and open trusted afterwards.
    pub fn verify_weights(&self) -> Result<()> {
        crate::format::verify(&self.storage.bytes()[..self.file_len])
    }

    /// The validated graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The kernel table this model's weights are packed for.
    pub fn kernels(&self) -> &'static KernelTable {
        self.table
    }

    /// Size of the `.smof` file in bytes.
    pub fn file_len(&self) -> usize {
        self.file_len
    }

    /// Whether weight `id` is read in place from the file (no copy was made at load).
    pub fn weight_in_place(&self, id: WeightId) -> bool {
        matches!(
            self.weights.get(id as usize),
            Some(WeightData::InFile { .. })
        )
    }

    /// Weight `id` as f32 in the layout this model's kernel table wants.
    ///
    /// # Panics
    /// If `id` is out of range; ids come from the validated graph.
    pub fn weight(&self, id: WeightId) -> &[f32] {
        match &self.weights[id as usize] {
            WeightData::InFile { start, len } => {
                let all: &[f32] =
                    bytemuck::cast_slice(&self.storage.bytes()[..self.file_len / 4 * 4]);
                &all[*start..*start + *len]
            }
            WeightData::Owned(v) => v.as_slice(),
        }
    }

    /// The layout the kernels read weight `id` in.
    ///
    /// # Panics
    /// If `id` is out of range.
    pub fn weight_layout(&self, id: WeightId) -> Layout {
        self.layouts[id as usize]
    }
}

/// The granularity mmap offsets must be aligned to. 64 KiB is a multiple of every page size in
/// use (4, 16 and 64 KiB pages), so aligning down to it is always valid.
fn page_size() -> usize {
    64 * 1024
}

fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

fn bytemuck_aligned_mut(v: &mut [Aligned64]) -> &mut [u8] {
    // SAFETY: as in `bytemuck_aligned`; the slice is uniquely borrowed.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 64) }
}

/// The role of each weight, from the first node that reads it, with that node's first input
/// shape.
pub fn weight_roles(graph: &Graph) -> Vec<Option<(WeightRole, Shape4)>> {
    let mut roles = vec![None; graph.weights.len()];
    for node in &graph.nodes {
        let input = node
            .inputs
            .first()
            .and_then(|&t| graph.tensors.get(t as usize))
            .map(|t| t.shape)
            .unwrap_or_default();
        let mut set = |id: WeightId, role: WeightRole| {
            if let Some(r) = roles.get_mut(id as usize) {
                r.get_or_insert((role, input));
            }
        };
        match &node.op {
            Op::Conv(c) => {
                set(c.weight, WeightRole::Conv(*c));
                if let Some(b) = c.bias {
                    set(b, WeightRole::Vector);
                }
            }
            Op::Fc(f) => {
                set(f.weight, WeightRole::Fc);
                if let Some(b) = f.bias {
                    set(b, WeightRole::Vector);
                }
            }
            Op::ChannelAffine { scale, shift, .. } | Op::LayerNorm { scale, shift, .. } => {
                set(*scale, WeightRole::Vector);
                set(*shift, WeightRole::Vector);
            }
            Op::Constant { weight } => set(*weight, WeightRole::Vector),
            Op::Deconv(d) => {
                set(d.weight, WeightRole::Vector);
                if let Some(b) = d.bias {
                    set(b, WeightRole::Vector);
                }
            }
            _ => {}
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use crate::graph::*;
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn model_is_send_and_sync() {
        assert_send_sync::<super::Model>();
    }

    /// A small conv + pool model written with the runtime's own writer.
    fn tiny_model() -> Vec<u8> {
        let conv = Conv {
            in_c: 3,
            out_c: 8,
            groups: 1,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [1, 1, 1, 1],
            weight: 0,
            bias: Some(1),
            act: Activation::Relu,
        };
        let graph = Graph {
            meta: Metadata {
                producer: "test".into(),
                producer_version: "0".into(),
                model_name: "tiny".into(),
                description: String::new(),
            },
            tensors: vec![
                TensorDesc {
                    name: "x".into(),
                    shape: Shape4::new(1, 16, 16, 3),
                },
                TensorDesc {
                    name: "c".into(),
                    shape: Shape4::new(1, 16, 16, 8),
                },
                TensorDesc {
                    name: "y".into(),
                    shape: Shape4::new(1, 1, 1, 8),
                },
            ],
            weights: vec![
                WeightDesc {
                    name: "w".into(),
                    dtype: DType::F32,
                    layout: Layout::Canonical,
                    dims: vec![8, 3, 3, 3],
                    offset: 0,
                    byte_len: 0,
                },
                WeightDesc {
                    name: "b".into(),
                    dtype: DType::F32,
                    layout: Layout::Canonical,
                    dims: vec![8],
                    offset: 0,
                    byte_len: 0,
                },
            ],
            nodes: vec![
                Node {
                    name: "conv".into(),
                    op: Op::Conv(conv),
                    inputs: vec![0],
                    outputs: vec![1],
                },
                Node {
                    name: "gap".into(),
                    op: Op::GlobalAvgPool,
                    inputs: vec![1],
                    outputs: vec![2],
                },
            ],
            inputs: vec![IoDesc {
                name: "x".into(),
                tensor: 0,
                dims: vec![1, 3, 16, 16],
            }],
            outputs: vec![IoDesc {
                name: "y".into(),
                tensor: 2,
                dims: vec![1, 8],
            }],
        };
        let w: Vec<u8> = (0..8 * 27)
            .flat_map(|i| ((i % 7) as f32 * 0.1 - 0.3).to_le_bytes())
            .collect();
        let b: Vec<u8> = (0..8)
            .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
            .collect();
        crate::format::write(&graph, &[&w, &b]).expect("write tiny model")
    }

    #[test]
    fn open_range_reads_a_model_inside_a_larger_file() {
        use std::io::Write;
        check_ranges(&tiny_model());

        fn check_ranges(bytes: &[u8]) {
            let reference = super::Model::from_bytes(bytes).unwrap();
            // Aligned (mapped, zero-copy) and unaligned (copied) prefixes.
            for prefix in [0usize, 64, 4096, 70_000, 100, 3] {
                let path = std::env::temp_dir().join(format!(
                    "smof-open-range-{}-{prefix}.bin",
                    std::process::id()
                ));
                {
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(&vec![0xA5u8; prefix]).unwrap();
                    f.write_all(bytes).unwrap();
                    f.write_all(&[1, 2, 3]).unwrap();
                }
                let f = std::fs::File::open(&path).unwrap();
                let m = super::Model::open_range(
                    &f,
                    prefix as u64,
                    bytes.len() as u64,
                    &super::ModelOptions::default(),
                )
                .unwrap();
                drop(f);
                assert_eq!(m.file_len(), bytes.len());
                assert_eq!(m.graph().nodes.len(), reference.graph().nodes.len());
                for id in 0..m.graph().weights.len() as u32 {
                    assert_eq!(m.weight(id), reference.weight(id));
                }
                if prefix % 64 == 0 {
                    assert!(matches!(m.storage, super::Storage::MmapRange { .. }));
                }
                // Out-of-range requests are errors, not panics.
                let f = std::fs::File::open(&path).unwrap();
                assert!(super::Model::open_range(
                    &f,
                    prefix as u64 + 1,
                    bytes.len() as u64 + 10,
                    &super::ModelOptions::default()
                )
                .is_err());
                assert!(super::Model::open_range(&f, u64::MAX, 2, &Default::default()).is_err());
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}
