//! Compute kernels: one contract per operation, one [`KernelTable`] per instruction set.
//!
//! A session picks one table at creation ([`KernelTable::detect`] or a forced choice), then
//! picks per node the kernel that table offers for the node's shape. For convs the choice has
//! two steps: [`KernelChoice::conv_plan`], a pure rule that every build can evaluate for every
//! table (so the converter packs for any target on any host), decides the algorithm and the
//! weight layout; the table then maps that plan to its kernel ([`KernelTable::conv`]). The driver code (session, planner) is written once over this
//! contract; a new ISA or kernel size adds an implementation here, never a branch in the
//! driver.
//!
//! Activation memory is NHWC with the channel stride `cs` padded to the table's
//! `channel_align`. Pad lanes hold zeros: every kernel writes zeros into the pad lanes of its
//! output, and may rely on its inputs' pad lanes being zero.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod bf16;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod expf;
pub mod f16;
pub(crate) mod geom;
pub mod int8;
pub mod pack;
mod plan;
pub mod portable;
pub mod reference;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod rows;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::graph::{Activation, Conv, Fc, Layout, Pool, Shape4};
pub use plan::ConvPlan;
use std::ops::Range;

/// The weight packing of a reduced-precision pointwise kernel ([`bf16::pack_pointwise`],
/// [`f16::pack_pointwise`]): the f32 weights, their layout, the input and output channels;
/// the packed words, or `None` for a layout or length it does not take.
pub type PackFn = fn(&[f32], Layout, usize, usize) -> Option<Vec<u32>>;

/// A table's choice of a reduced-precision kernel for a conv whose weights are stored as the
/// layout given ([`KernelTable::conv_bf16`]), or `None`.
pub type SelectFn = fn(&Conv, Layout) -> Option<ConvKernel>;

/// The definition of a reduced precision's dot product ([`bf16::dot`], [`f16::dot`]): of the
/// inputs and the weights of one output, the sum in f64, the sum of the products'
/// magnitudes, and the number of f32 additions the kernels make.
pub type DotFn = fn(&[f32], &[f32]) -> (f64, f64, usize);

/// Geometry of one activation buffer: logical NHWC shape and the padded channel stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Act4 {
    /// Logical shape.
    pub shape: Shape4,
    /// Distance in floats between two pixels (`>= shape.c`).
    pub cs: usize,
}

impl Act4 {
    /// Geometry for `shape` with the channel stride rounded up to `align`.
    pub fn new(shape: Shape4, align: usize) -> Self {
        let c = shape.c as usize;
        Act4 {
            shape,
            cs: c.div_ceil(align) * align,
        }
    }
    /// Floats the buffer occupies: `n*h*w*cs`.
    pub fn len(&self) -> usize {
        self.shape.pixels() as usize * self.cs
    }
    /// Floats from the first element to the last channel of the last pixel:
    /// `(n*h*w - 1) * cs + c`, or 0 for no pixel. What a kernel that reads channels `0..c`
    /// only needs of its input.
    pub fn span(&self) -> usize {
        match self.shape.pixels() as usize {
            0 => 0,
            p => (p - 1) * self.cs + self.shape.c as usize,
        }
    }
    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows of the buffer (`n*h`): the unit in which work is split.
    pub fn rows(&self) -> usize {
        self.shape.n as usize * self.shape.h as usize
    }
}

/// Everything a convolution kernel reads and writes.
pub struct ConvArgs<'a> {
    /// The conv's parameters.
    pub conv: &'a Conv,
    /// Input activations.
    pub x: &'a [f32],
    /// Input geometry.
    pub xs: Act4,
    /// Weights in the layout the kernel declared ([`ConvKernel::layout`]).
    pub w: &'a [f32],
    /// Bias, `out_c` values (or more; only the first `out_c` are read).
    pub bias: Option<&'a [f32]>,
    /// Fused residual, same geometry as `y`, added before the activation.
    pub residual: Option<&'a [f32]>,
    /// Output activations.
    pub y: &'a mut [f32],
    /// Output geometry.
    pub ys: Act4,
    /// Scratch of at least [`ConvKernel::scratch_len`] floats.
    pub scratch: &'a mut [f32],
    /// Output rows (over `n*oh`) this call computes; the whole range is `0..ys.rows()`.
    pub rows: Range<usize>,
    /// Further inputs whose channels follow `x`'s, each with its geometry: a 1x1 conv
    /// (stride 1, no padding) reading a channel concatenation in place, `conv.in_c` being
    /// the sum. Empty unless the kernel says [`ConvKernel::reads_parts`].
    pub parts: &'a [(&'a [f32], Act4)],
}

/// Most inputs (`x` and [`ConvArgs::parts`]) a conv kernel that [`ConvKernel::reads_parts`]
/// takes.
pub const MAX_CONV_PARTS: usize = 8;

/// A conv kernel chosen for one layer.
#[derive(Clone, Copy)]
pub struct ConvKernel {
    /// XNNPACK-style name, e.g. `conv_generic_portable`, `dw3x3s1_avx2`.
    pub name: &'static str,
    /// Weight layout the kernel reads.
    pub layout: Layout,
    /// Scratch floats needed for a layer of this geometry.
    pub scratch_len: fn(&Conv, Act4, Act4) -> usize,
    /// Computes `args.rows` of the output.
    pub run: fn(&mut ConvArgs),
    /// Takes [`ConvArgs::parts`] (`x` and the parts at most [`MAX_CONV_PARTS`] inputs): a
    /// 1x1 conv that reads a concatenation in place, so the concatenation is never written.
    pub reads_parts: bool,
}

/// Everything a fully connected kernel reads and writes.
pub struct FcArgs<'a> {
    /// The layer's parameters.
    pub fc: &'a Fc,
    /// Input activations, read in NHWC order as `in_features` per batch item.
    pub x: &'a [f32],
    /// Input geometry.
    pub xs: Act4,
    /// Weights in the layout the kernel declared.
    pub w: &'a [f32],
    /// Bias, `out_features` values.
    pub bias: Option<&'a [f32]>,
    /// Output `(N, 1, 1, out_features)`.
    pub y: &'a mut [f32],
    /// Output geometry.
    pub ys: Act4,
    /// The part of the output this call computes, `(t, n)`: share `t` of `n` takes blocks
    /// [`share`]`(blocks, (t, n))` of the weight layout's blocks of output features, so that
    /// `n` threads may each run one share of a batch of one; the last share (`t + 1 == n`)
    /// also clears the output's pad lanes. `(0, 1)` computes everything.
    pub share: (usize, usize),
}

/// Share `t` of `n` of `count` items, `(t, n)` as in [`FcArgs::share`]: the shares of
/// `t = 0 .. n` are consecutive, cover `0..count`, and differ in length by at most one.
/// A share past the last (`t >= n`) is empty, and `n = 0` counts as one share. Has no panic
/// path, so kernels may call it inside their inlined drivers.
pub fn share(count: usize, (t, n): (usize, usize)) -> std::ops::Range<usize> {
    let n = n.max(1);
    let at = |i: usize| count * i.min(n) / n;
    at(t)..at(t + 1)
}

/// Whether share `(t, n)` is the last one ([`share`]'s convention), the one that also
/// writes what belongs to no share, such as the output's pad lanes.
pub fn is_last_share((t, n): (usize, usize)) -> bool {
    t + 1 == n.max(1)
}

/// The fully connected kernel of a table.
#[derive(Clone, Copy)]
pub struct FcKernel {
    /// Kernel name.
    pub name: &'static str,
    /// Weight layout it reads.
    pub layout: Layout,
    /// Computes the whole output.
    pub run: fn(&mut FcArgs),
}

/// A unary kernel over one activation buffer: input, its geometry, output, its geometry.
pub type UnaryFn = fn(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4);
/// `y = act(x * scale[c] + shift[c])`.
pub type ChannelAffineFn =
    fn(x: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32], ys: Act4, act: Activation);

/// LayerNorm over the channels of each pixel (see [`KernelTable::layer_norm`]).
pub type LayerNormFn =
    fn(x: &[f32], xs: Act4, scale: &[f32], shift: &[f32], eps: f32, y: &mut [f32], ys: Act4);

/// A pool kernel (see [`KernelTable::pool`]).
pub type PoolFn = fn(p: &Pool, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize);

/// The table of kernels for one instruction set.
#[derive(Clone, Copy)]
pub struct KernelTable {
    /// Table name: `portable`, `x86_64-avx2`, `x86_64-avx512`, `aarch64`.
    pub name: &'static str,
    /// The choice that selects this table (never `Auto`).
    pub choice: KernelChoice,
    /// Channel stride alignment of activations, in floats.
    pub channel_align: usize,
    /// Smallest intermediate tensor, in bytes, that a conv chain takes on this table
    /// (`docs/decisions.md`, "Conv chains"): smaller ones stay in the caches between the
    /// layers anyway, and banding them costs more than it saves.
    pub chain_min_bytes: usize,
    /// The table's kernel for a conv run by `plan`, or `None` when the table has no kernel
    /// for that plan (a plan from another table's rule).
    pub conv: fn(&Conv, ConvPlan) -> Option<ConvKernel>,
    /// The table's bf16 kernel for a conv whose weights are stored as the layout given, for
    /// [`Precision::Bf16`](crate::session::Precision) sessions, or `None` (the conv runs in
    /// f32). Its weights are [`bf16::pack_pointwise`]'s words, one per f32 slot.
    pub conv_bf16: SelectFn,
    /// The table's f16 kernel for a conv whose weights are stored as the layout given, for
    /// [`Precision::F16`](crate::session::Precision) sessions, or `None` (the conv runs in
    /// f32). Its weights are [`f16::pack_pointwise`]'s, two halves per f32 slot.
    pub conv_f16: SelectFn,
    /// The table's int8 kernel for a conv whose weights are stored as the layout given, for
    /// [`Precision::Int8`](crate::session::Precision) sessions, or `None` (the conv runs in
    /// f32). Its weights are the table's int8 packing's words ([`int8::pack_pointwise`] on
    /// x86), one per f32 slot.
    pub conv_int8: Option<(SelectFn, PackFn)>,
    /// Fully connected.
    pub fc: FcKernel,
    /// The table's bf16 kernel for a fully connected layer whose weights are stored as the
    /// layout given and whose input has the geometry given, for
    /// [`Precision::Bf16`](crate::session::Precision) sessions, or `None` (it runs in f32).
    /// Its weights are [`bf16::pack_pointwise`]'s words for `ConvOcBlock(n)` where the layout
    /// is `FcOcBlock(n)` (the same order for an input of one pixel).
    pub fc_bf16: fn(&Fc, Layout, Act4) -> Option<FcKernel>,
    /// The table's kernel for a fully connected layer in
    /// [`Precision::F16`](crate::session::Precision) sessions (f16 weights), as `fc_bf16`, or
    /// `None` (it runs in f32). Its weights are [`f16::pack_fc`]'s.
    pub fc_f16: fn(&Fc, Layout, Act4) -> Option<FcKernel>,
    /// Max/average pooling of `x` into channels `c0 .. c0 + xs.shape.c` of `y` (pixel
    /// stride `ys.cs`), leaving `y`'s other channels alone: a pool over a concatenation runs
    /// once per part. The pad lanes of `y` are written (as zeros) by the part that ends at
    /// `ys.shape.c`.
    pub pool: PoolFn,
    /// Mean over H and W. Reads `x` up to [`Act4::span`] only, so a window of channels
    /// `c0 .. c0 + c` of a wider buffer is a valid input (`&x[c0..]` with the window's `c`
    /// and the buffer's `cs`), and a channel's mean does not depend on the window it is in.
    pub global_avg_pool: UnaryFn,
    /// `y = act(a + b)`, all of one geometry.
    pub add: fn(a: &[f32], b: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    /// `y = a * b`; `b` has geometry `bs`, equal to `ys` or `(N, 1, 1, C)`.
    pub mul: fn(a: &[f32], b: &[f32], bs: Act4, y: &mut [f32], ys: Act4),
    /// Copies `x` into channels `c0 .. c0 + xs.shape.c` of `y`.
    pub concat_part: fn(x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, c0: usize),
    /// `y = act(x)`.
    pub act: fn(x: &[f32], y: &mut [f32], ys: Act4, act: Activation),
    /// Softmax over channels.
    pub softmax: UnaryFn,
    /// NHWC `(N, H, W, C)` to `(N, 1, 1, C*H*W)` in NCHW element order.
    pub flatten: UnaryFn,
    /// `y = act(x * scale[c] + shift[c])`.
    pub channel_affine: ChannelAffineFn,
    /// `y = (x - mean) / sqrt(var + eps) * scale[c] + shift[c]`, mean and (biased) variance
    /// over the `C` channels of each pixel; `x` and `y` of one shape, each with its own
    /// channel stride.
    pub layer_norm: LayerNormFn,
}

/// Which kernel table to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The fastest table the running CPU supports.
    #[default]
    Auto,
    /// The portable table (scalar plus `wide`), available everywhere.
    Portable,
    /// x86-64 with AVX2 and FMA.
    X86Avx2,
    /// x86-64 with AVX-512F.
    X86Avx512,
    /// aarch64 with NEON.
    Aarch64Neon,
}

impl KernelChoice {
    /// Every choice except `Auto`, fastest last.
    pub const ALL: [KernelChoice; 4] = [
        KernelChoice::Portable,
        KernelChoice::X86Avx2,
        KernelChoice::X86Avx512,
        KernelChoice::Aarch64Neon,
    ];

    /// The `--target` name of the table: `portable`, `x86_64-avx2`, `x86_64-avx512`,
    /// `aarch64`; `host` for `Auto`.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "host",
            KernelChoice::Portable => "portable",
            KernelChoice::X86Avx2 => "x86_64-avx2",
            KernelChoice::X86Avx512 => "x86_64-avx512",
            KernelChoice::Aarch64Neon => "aarch64",
        }
    }

    /// The choice called `name` (see [`KernelChoice::name`]).
    pub fn from_name(name: &str) -> Option<KernelChoice> {
        std::iter::once(KernelChoice::Auto)
            .chain(KernelChoice::ALL)
            .find(|c| c.name() == name)
    }
}

/// `k` when it reads the layout `plan` wants, `None` otherwise: the last step of every
/// table's conv selection.
pub(crate) fn matching(k: ConvKernel, plan: ConvPlan) -> Option<ConvKernel> {
    (k.layout == plan.layout()).then_some(k)
}

impl KernelTable {
    /// The fastest table the running CPU supports.
    pub fn detect() -> &'static KernelTable {
        KernelChoice::ALL
            .iter()
            .rev()
            .find_map(|&c| Self::for_choice(c))
            .unwrap_or(&portable::TABLE)
    }

    /// The table for `choice`, or `None` if this build or this CPU cannot run it.
    pub fn for_choice(choice: KernelChoice) -> Option<&'static KernelTable> {
        match choice {
            KernelChoice::Auto => Some(Self::detect()),
            KernelChoice::Portable => Some(&portable::TABLE),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::X86Avx2 => x86::avx2_table(),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::X86Avx512 => x86::avx512_table(),
            #[cfg(target_arch = "aarch64")]
            KernelChoice::Aarch64Neon => aarch64::neon_table(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The [`KernelChoice`] that selects the table called `name` (a table's `name` field).
    pub fn choice_for_name(name: &str) -> Option<KernelChoice> {
        KernelChoice::from_name(name).filter(|&c| c != KernelChoice::Auto)
    }

    /// Every table this CPU can run, for tests that check each of them.
    pub fn all_supported() -> Vec<&'static KernelTable> {
        KernelChoice::ALL
            .iter()
            .filter_map(|&c| Self::for_choice(c))
            .collect()
    }

    /// The layout this table wants for a weight with the given role (`conv_input`: the
    /// input shape of the conv, for conv weights).
    pub fn layout_for(&self, role: WeightRole, conv_input: Shape4) -> Layout {
        self.choice.layout_for(role, conv_input)
    }

    /// The kernel this table runs for `conv` on an input of shape `input`, by the table's
    /// own plan ([`KernelChoice::conv_plan`]).
    pub fn conv_kernel(&self, conv: &Conv, input: Shape4) -> ConvKernel {
        let plan = self.choice.conv_plan(conv, input);
        (self.conv)(conv, plan).expect("every table has a kernel for each of its own plans")
    }
}

/// What a weight is used for, which decides the layout a table wants for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightRole {
    /// The weights of this conv.
    Conv(Conv),
    /// The weights of a fully connected layer.
    Fc,
    /// A weight read in its canonical order: a per-channel vector (bias, scale, shift) or the
    /// weights of a transposed conv.
    Vector,
}

/// Floats in 64-byte-aligned storage, as the kernels read best: a 64-byte vector load across
/// two cache lines costs two accesses, and a large `Vec<f32>` is only 16 bytes past a
/// 64-byte boundary. A session's arena and scratch and the weights converted at load are
/// kept in it; callers of the kernels (benchmarks) can use it for their buffers. Derefs to
/// `[f32]`.
pub struct AlignedF32 {
    /// `len` floats from `start`, the first 64-byte boundary of `buf`.
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl AlignedF32 {
    /// `len` zeros, 64-byte aligned. The allocation is zeroed memory (`vec![0.0; n]`), so a
    /// large buffer's pages are only touched when first written.
    pub fn zeroed(len: usize) -> AlignedF32 {
        const FLOATS: usize = 64 / 4;
        let buf = vec![0.0f32; len + FLOATS];
        // Always a whole number of floats below `FLOATS`: `buf` is 4-byte aligned.
        let start = buf.as_ptr().align_offset(64).min(FLOATS);
        AlignedF32 { buf, start, len }
    }

    /// A 64-byte-aligned copy of `data`.
    pub fn from_slice(data: &[f32]) -> AlignedF32 {
        let mut a = AlignedF32::zeroed(data.len());
        a.as_mut_slice().copy_from_slice(data);
        a
    }

    /// The floats.
    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The floats, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod aligned_tests {
    #[test]
    fn aligned_floats_start_on_64_byte_boundaries_and_hold_zeros() {
        for len in [0, 1, 15, 16, 17, 1000, 1 << 18, (1 << 20) + 3] {
            let mut a = super::AlignedF32::zeroed(len);
            assert_eq!(a.as_slice().len(), len);
            assert_eq!(a.as_mut_slice().as_ptr() as usize % 64, 0, "{len} floats");
            assert!(a.as_slice().iter().all(|&v| v == 0.0));
            let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let b = super::AlignedF32::from_slice(&data);
            assert_eq!(b.as_ptr() as usize % 64, 0, "copy of {len} floats");
            assert_eq!(&b[..], &data[..]);
        }
    }
}
