//! A session: one thread's planned execution of a model. All buffers are allocated at
//! creation; [`Session::run`] allocates nothing and takes no lock.

use crate::chain::{self, Chain};
use crate::concat_read::{self, ConcatReads, View};
use crate::error::{Error, Result};
use crate::fuse::{self, GateFold, Pattern};
use crate::graph::{
    Activation, BinaryKind, Conv, Deconv, Fc, Graph, Op, PadMode, Pool, PoolKind, ReduceKind,
    Resize, Shape4, UnaryKind,
};
use crate::kernels::{
    bf16, f16, int8, is_last_share, share, Act4, AlignedF32, ConvArgs, ConvKernel, ConvPlan,
    FcArgs, FcKernel, KernelTable, PackFn, SelectFn, MAX_CONV_PARTS,
};
use crate::model::Model;
use crate::plan::{self, Interval};
use crate::pool::Pool as Workers;
use std::time::Instant;

/// Options for [`Session::new`].
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Threads a run uses, the calling thread included; 0 and 1 both mean the calling
    /// thread only, and more than 64 are taken as 64. Convs and conv chains split by output
    /// rows, large fully connected layers by output features, squeeze-excite patterns and
    /// max pools of one image by channels and rows, large LayerNorms by pixels; every split
    /// computes the same sums as one thread, so the outputs do not depend on this number.
    pub threads: usize,
    /// Input shapes (ONNX dims, one entry per input, an empty entry keeps the model's) to
    /// plan for instead of those the model was converted with; see
    /// [`Graph::with_input_shapes`](crate::graph::Graph::with_input_shapes).
    pub input_shapes: Vec<Vec<usize>>,
    /// CPUs to pin the session's threads to (the calling thread is not pinned; worker `i`
    /// goes to `cpus[i % len]`). Empty: no pinning. On a phone, name the big cores.
    pub cpus: Vec<usize>,
    /// Runs every node on its own: no conv chains (chains compute the wide activations
    /// between consecutive convs a band of rows at a time, in cache; see
    /// `docs/decisions.md`, "Conv chains") and no fused patterns (squeeze-excite, SPPF; see
    /// "Fused patterns"). The results are the same bit for bit; this exists for
    /// measurements and tests.
    pub layer_by_layer: bool,
    /// Smallest intermediate tensor, in bytes, a conv chain takes; `None`: the kernel
    /// table's [`chain_min_bytes`](crate::kernels::KernelTable::chain_min_bytes). For
    /// measuring chains on a device, and for tests.
    pub chain_min_bytes: Option<usize>,
    /// The arithmetic of the convs: f32 (the default), or bf16 products or f16 arithmetic
    /// where the kernel table and the CPU have such kernels (see [`Precision`]).
    pub precision: Precision,
}

/// The arithmetic a session's convs use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout: the outputs match an f32 reference to rounding.
    #[default]
    F32,
    /// Ungrouped 1x1 convs (stride 1, no padding, with no squeeze-excite gate folded in)
    /// round their inputs and weights to bf16 (8 significant bits: a relative error of at
    /// most 2^-8 each) and accumulate the exact products in f32, on CPUs with AVX512-BF16
    /// (AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and later), where `vdpbf16ps`
    /// does twice the multiply-adds of an f32 FMA, and on aarch64 CPUs with FEAT_BF16
    /// (Armv8.6: Cortex-A510, A710, X2 and later, Apple M2 and later), where `BFDOT` does
    /// twice those of `FMLA`. On AVX512-BF16, fully connected layers of one input pixel per
    /// item (classifiers) also take bf16 weights and inputs: they stream their weights from
    /// memory, and bf16 halves the bytes. The bf16 weights are made at session creation (half
    /// the f32 size, in the session's memory). Every other layer, and every layer on other
    /// CPUs, runs in f32; [`Session::bf16_convs`] counts the layers that took bf16. The
    /// errors add up over the layers: MobileNetV2's ImageNet embedding keeps a cosine of
    /// 0.998 to its f32 value (`docs/decisions.md`, "bf16 pointwise convs").
    Bf16,
    /// Ungrouped 1x1 convs (as for `Bf16`) round their inputs and weights to f16 (11
    /// significant bits) and multiply and add in f16, 32 input channels at a time, each such
    /// sum then added in f32 ([`kernels::f16::dot`](crate::kernels::f16::dot) defines the
    /// result), on aarch64 CPUs with FEAT_FP16 (Armv8.2 half-precision arithmetic:
    /// Cortex-A55, A75, A76 and later, most phones since 2018), where `FMLA` on f16 does
    /// twice the multiply-adds of `FMLA` on f32. On every aarch64 CPU, fully connected
    /// layers (classifiers, which stream their weights from memory) read f16 weights, half the
    /// bytes, and compute in f32 ([`kernels::f16::fc_dot`](crate::kernels::f16::fc_dot)). The
    /// f16 weights are made at session creation (half the f32 size). Every other layer, and
    /// every layer on other CPUs, runs in f32; [`Session::f16_convs`] counts the layers that
    /// took f16. The f16 range (6e-8 to 65504) is narrow, so each output channel's weights,
    /// and each input pixel's channels where their largest magnitude is outside
    /// [2^-4, 2^9), are first scaled by a power of two into it, and the f32 result scaled
    /// back (exact): activations and weights of any magnitude keep f16's precision
    /// (`kernels::f16::input_scale`). Per layer the error is about a third of bf16's
    /// (`docs/decisions.md`, "f16 on aarch64" and "f16 range").
    F16,
    /// Ungrouped 1x1 convs (as for `Bf16`) quantize their weights to int8 per output channel
    /// (at session creation: a quarter of the f32 size) and their inputs to 8 bits per pixel
    /// as they run, over each pixel's own range (dynamic quantization: no calibration data),
    /// multiply the integers exactly and scale the 32-bit sums back to f32
    /// ([`kernels::int8`](crate::kernels::int8) defines the result), on x86 CPUs with
    /// AVX512-VNNI (AMD Zen 4 and later, Intel Ice Lake, Sapphire Rapids and later), where
    /// `vpdpbusd` does four times the multiply-adds of an f32 FMA, and on aarch64 CPUs with
    /// FEAT_DotProd (Armv8.2 dot product: Cortex-A55, A75, A76 and later), where `SDOT` does
    /// four times those of `FMLA`. Every other layer, and
    /// every layer on other CPUs, runs in f32; [`Session::int8_convs`] counts the layers
    /// that took int8. The error per layer is that of 8-bit operands (about 4 times
    /// bf16's; `docs/decisions.md`, "int8 pointwise convs").
    Int8,
}

impl SessionOptions {
    /// Sets the number of worker threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Pins worker threads to `cpus` (see [`SessionOptions::cpus`]).
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.cpus = cpus;
        self
    }

    /// Sets the smallest tensor a conv chain takes (see [`SessionOptions::chain_min_bytes`]).
    pub fn chain_min_bytes(mut self, bytes: usize) -> Self {
        self.chain_min_bytes = Some(bytes);
        self
    }

    /// Sets the convs' arithmetic (see [`Precision`]).
    pub fn precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }

    /// Turns conv chains and fused patterns off (see [`SessionOptions::layer_by_layer`]).
    pub fn layer_by_layer(mut self, on: bool) -> Self {
        self.layer_by_layer = on;
        self
    }
}

/// The kernel a step runs, resolved once at session creation.
enum Kernel<'m> {
    Conv {
        conv: Conv,
        k: ConvKernel,
        /// Inputs read as the parts of a concatenation (1 for a plain conv): the step's
        /// first `parts` inputs, the residual (if any) after them.
        parts: usize,
        w: &'m [f32],
        bias: Option<&'m [f32]>,
        /// Where the conv reads its weights instead of `w`: a squeeze-excite's gate folded
        /// into them, at this offset in [`Session::folded`].
        folded: Option<usize>,
        /// Where the conv reads its weights instead of `w` when it runs a bf16 kernel: their
        /// bf16 packing, these floats of [`Session::packed`].
        packed: Option<std::ops::Range<usize>>,
    },
    Fc {
        fc: Fc,
        k: FcKernel,
        w: &'m [f32],
        bias: Option<&'m [f32]>,
        /// Where the layer reads its weights instead of `w` when it runs a bf16 or an
        /// f16-weight kernel: their packing, these floats of [`Session::packed`].
        packed: Option<std::ops::Range<usize>>,
    },
    Pool(Pool),
    GlobalAvgPool,
    Add(Activation),
    Mul,
    Concat,
    Act(Activation),
    Softmax,
    Flatten,
    Affine {
        scale: &'m [f32],
        shift: &'m [f32],
        act: Activation,
    },
    Slice {
        start: [u32; 4],
        step: [u32; 4],
    },
    Resize(Resize),
    Deconv {
        d: Deconv,
        w: &'m [f32],
        bias: Option<&'m [f32]>,
    },
    ChannelShuffle(usize),
    Transpose([u32; 4]),
    Reduce(ReduceKind, u32),
    Binary(BinaryKind, Activation),
    Unary(UnaryKind),
    Constant(&'m [f32]),
    Pad([u32; 4], PadMode),
    DepthToSpace(usize, bool),
    SpaceToDepth(usize),
    Tile,
    SoftmaxAxis(usize, bool),
    Reshape,
    ConcatAxis(usize),
    LayerNorm {
        scale: &'m [f32],
        shift: &'m [f32],
        eps: f32,
    },
}

/// One node, ready to run: its kernel and the buffers it reads and writes.
struct Step<'m> {
    kernel: Kernel<'m>,
    inputs: Vec<usize>,
    output: usize,
    /// Where the step stands in a conv chain.
    link: Link,
}

/// A step's part in a conv chain.
enum Link {
    /// Not in a chain.
    None,
    /// The first conv of a chain of `chain.members` steps, which it runs as a whole, with
    /// the input and output geometry of every member.
    Head(Chain, Vec<(Act4, Act4)>),
    /// The first node of a fused pattern, which it runs as a whole: for squeeze-excite,
    /// with the geometry of the squeezed vector, the hidden vector and the gate, and the
    /// conv its gate is folded into (with the scaled weights' offset in [`Session::folded`]),
    /// if it is.
    Pattern(Pattern, [Act4; 3], Option<(GateFold, usize)>),
    /// A later member of a chain or a pattern: run by its first node.
    Member,
    /// A Concat that the conv reading it reads in place, or a channel Slice read in place as
    /// one of its parts: never runs.
    InPlace,
}

/// Where an activation lives in the arena.
#[derive(Clone, Copy, Debug)]
struct Buffer {
    offset: usize,
    geom: Act4,
    /// Floats handed to kernels from `offset`: `geom.len()`, less the channel offset for a
    /// channel range read in place (whose last pixel ends before its geometry says).
    len: usize,
}

/// A user-facing output: its ONNX dims and the buffer it is copied from.
struct OutputSlot {
    tensor: usize,
    dims: Vec<usize>,
    data: Vec<f32>,
}

/// One thread's execution state for a [`Model`]: the plan, the arena and the output buffers.
pub struct Session<'m> {
    model: &'m Model,
    /// The model's graph with the shapes inferred for [`SessionOptions::input_shapes`], when
    /// they were given.
    reshaped: Option<Box<Graph>>,
    table: &'static KernelTable,
    steps: Vec<Step<'m>>,
    buffers: Vec<Buffer>,
    /// The activation arena.
    arena: AlignedF32,
    peak_live: usize,
    /// `threads` scratch areas of `scratch_len` floats each, one per participant.
    scratch: AlignedF32,
    /// The weights of the convs that squeeze-excite gates are folded into, scaled by each
    /// run's gates.
    folded: AlignedF32,
    /// The bf16 or f16 weights of the convs that run bf16 or f16 kernels
    /// ([`Precision::Bf16`], [`Precision::F16`]), as the bits of their words.
    packed: AlignedF32,
    precision: Precision,
    scratch_len: usize,
    pool: Workers,
    inputs: Vec<(usize, Vec<usize>)>,
    outputs: Vec<OutputSlot>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("steps", &self.steps.len())
            .field("kernels", &self.table.name)
            .field("arena_bytes", &self.arena_bytes())
            .finish()
    }
}

/// Most threads a session starts.
const MAX_THREADS: usize = 64;

/// Largest arena a session will allocate (4 GiB).
const MAX_ARENA_BYTES: u64 = 4 << 30;

impl<'m> Session<'m> {
    /// Plans every buffer of `model` and allocates them.
    ///
    /// ```no_run
    /// use smof::{Model, Session, SessionOptions};
    /// let model = Model::open("models/mobilenet_v2_imagenet_backbone.smof")?;
    /// let mut session = Session::new(&model, &SessionOptions::default())?;
    /// println!("arena: {} bytes", session.arena_bytes());
    /// # Ok::<(), smof::Error>(())
    /// ```
    pub fn new(model: &'m Model, opts: &SessionOptions) -> Result<Session<'m>> {
        let threads = opts.threads.clamp(1, MAX_THREADS);
        let reshaped = if opts.input_shapes.is_empty() {
            None
        } else {
            Some(Box::new(
                model.graph().with_input_shapes(&opts.input_shapes)?,
            ))
        };
        let graph = reshaped.as_deref().unwrap_or(model.graph());
        let table = model.kernels();
        let mut geoms: Vec<Act4> = graph
            .tensors
            .iter()
            .map(|t| Act4::new(t.shape, table.channel_align))
            .collect();
        // An image input (at most 4 channels) that only dense convs read keeps channel
        // stride 4 instead of the table's alignment: the NCHW-to-NHWC copy of each run
        // writes a quarter of the floats on AVX-512 (the dense kernels take any stride).
        for io in &graph.inputs {
            let only_convs = graph.nodes.iter().all(|n| match n.op {
                Op::Conv(c) if c.groups == 1 => !n.inputs[1..].contains(&io.tensor),
                _ => !n.inputs.contains(&io.tensor),
            }) && graph.outputs.iter().all(|o| o.tensor != io.tensor);
            let g = &mut geoms[io.tensor as usize];
            if only_convs && g.shape.c <= 4 && g.cs > 4 {
                *g = Act4::new(g.shape, 4);
            }
        }

        // Lifetimes: step 0 writes the inputs, node i is step i + 1, outputs are read after
        // the last node.
        let end = graph.nodes.len() + 1;
        let mut first = vec![usize::MAX; geoms.len()];
        let mut last = vec![0usize; geoms.len()];
        for io in &graph.inputs {
            first[io.tensor as usize] = 0;
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            for &t in &node.inputs {
                last[t as usize] = last[t as usize].max(i + 1);
            }
            first[node.outputs[0] as usize] = i + 1;
            last[node.outputs[0] as usize] = last[node.outputs[0] as usize].max(i + 1);
        }
        for io in &graph.outputs {
            last[io.tensor as usize] = end;
        }

        let mut readers = vec![0usize; geoms.len()];
        for &t in graph.nodes.iter().flat_map(|n| &n.inputs) {
            readers[t as usize] += 1;
        }
        for io in &graph.outputs {
            readers[io.tensor as usize] += 1;
        }
        // Fused patterns: the tensors inside get no memory; the pattern's output is written
        // by its first node.
        let patterns = if opts.layer_by_layer {
            Vec::new()
        } else {
            fuse::find(graph, &readers)
        };
        let mut in_pattern = vec![false; graph.nodes.len()];
        for &(i, _) in &patterns {
            in_pattern[i..i + Pattern::NODES].fill(true);
            for node in &graph.nodes[i..i + Pattern::NODES - 1] {
                first[node.outputs[0] as usize] = usize::MAX;
            }
            first[graph.nodes[i + Pattern::NODES - 1].outputs[0] as usize] = i + 1;
        }
        // Squeeze-excite gates folded into the 1x1 conv that reads the product (see
        // `fuse::gate_fold`): the product gets no memory, the pattern's input lives until
        // that conv has run, and the conv is in no chain.
        let folds: Vec<Option<GateFold>> = patterns
            .iter()
            .map(|&(i, p)| {
                let xs = geoms[graph.nodes[i].inputs[0] as usize];
                (p == Pattern::SqueezeExcite)
                    .then(|| fuse::gate_fold(graph, model, i, &readers, &in_pattern, xs))
                    .flatten()
            })
            .collect();
        for (&(i, _), fold) in patterns.iter().zip(&folds) {
            let Some(f) = fold else { continue };
            first[graph.nodes[i + Pattern::NODES - 1].outputs[0] as usize] = usize::MAX;
            let x = graph.nodes[i].inputs[0] as usize;
            last[x] = last[x].max(f.consumer + 1);
        }

        // Concatenations read in place (`concat_read`): the Concat's output and the Slices
        // read through views get no memory; the parts live until the reader runs.
        let reads = if opts.layer_by_layer {
            ConcatReads::none(graph.nodes.len())
        } else {
            concat_read::find(graph, &readers, &in_pattern, &geoms, |c| {
                ConvPlan::from_layout(model.weight_layout(c.weight), c)
                    .and_then(|plan| (table.conv)(c, plan))
                    .is_some_and(|k| k.reads_parts)
            })
        };
        for (j, r) in reads.reader.iter().enumerate() {
            let Some(r) = *r else { continue };
            let node = &graph.nodes[j];
            first[node.outputs[0] as usize] = usize::MAX;
            for (k, &t) in node.inputs.iter().enumerate() {
                let t = t as usize;
                match reads.views.iter().find(|v| v.concat == j && v.part == k) {
                    Some(v) => {
                        first[t] = usize::MAX;
                        last[v.src] = last[v.src].max(r + 1);
                    }
                    None => last[t] = last[t].max(r + 1),
                }
            }
        }
        let ConcatReads {
            reader: read_in_place,
            views,
            sliced_away,
        } = reads;
        let mut no_chain = in_pattern.clone();
        for f in folds.iter().flatten() {
            no_chain[f.consumer] = true;
        }
        for r in read_in_place.iter().flatten() {
            no_chain[*r] = true;
        }

        // Conv chains; their intermediate tensors live in windows in scratch, not the arena.
        let chains = if opts.layer_by_layer {
            Vec::new()
        } else {
            let members: Vec<Option<chain::Member>> = graph
                .nodes
                .iter()
                .zip(&no_chain)
                .map(|(node, &fused)| {
                    let stage = match node.op {
                        Op::Conv(conv) if !fused => chain::Stage::Conv {
                            conv,
                            layout: model.weight_layout(conv.weight),
                            weight_len: model.weight(conv.weight).len(),
                        },
                        Op::Pool(p) if !fused => chain::Stage::pool(&p)?,
                        _ => return None,
                    };
                    Some(chain::Member {
                        stage,
                        xs: geoms[node.inputs[0] as usize],
                        ys: geoms[node.outputs[0] as usize],
                        input: node.inputs[0] as usize,
                        output: node.outputs[0] as usize,
                        residual: node.inputs.len() > 1,
                    })
                })
                .collect();
            chain::find(
                &members,
                &readers,
                opts.chain_min_bytes.unwrap_or(table.chain_min_bytes),
            )
            .into_iter()
            .map(|r| {
                let ms: Vec<chain::Member> =
                    members[r.clone()].iter().map(|m| m.unwrap()).collect();
                (r, Chain::plan(&ms), ms)
            })
            .collect()
        };
        for (r, _, _) in &chains {
            for node in &graph.nodes[r.start..r.end - 1] {
                first[node.outputs[0] as usize] = usize::MAX;
            }
            // The head's input is read until the last member has run (node `r.end - 1` is
            // step `r.end`).
            let input = graph.nodes[r.start].inputs[0] as usize;
            last[input] = last[input].max(r.end);
        }
        // Tensors never written (cannot happen after validation) or never read get no memory.
        let used: Vec<usize> = (0..geoms.len())
            .filter(|&t| first[t] != usize::MAX)
            .collect();
        let intervals: Vec<Interval> = used
            .iter()
            .map(|&t| Interval {
                len: geoms[t].len(),
                first: first[t],
                last: last[t].max(first[t]),
            })
            .collect();
        let p = plan::plan(&intervals);
        plan::verify(&intervals, &p)?;
        let bytes = (p.arena_len as u64 + plan::ALIGN_FLOATS as u64) * 4;
        if bytes > MAX_ARENA_BYTES {
            return Err(Error::TooLarge {
                what: "activation arena".into(),
                bytes,
                limit: MAX_ARENA_BYTES,
            });
        }
        let mut buffers = vec![
            Buffer {
                offset: 0,
                geom: Act4::new(Default::default(), 1),
                len: 0,
            };
            geoms.len()
        ];
        for (k, &t) in used.iter().enumerate() {
            buffers[t] = Buffer {
                offset: p.offsets[k],
                geom: geoms[t],
                len: geoms[t].len(),
            };
        }

        let mut steps = Vec::with_capacity(graph.nodes.len());
        let mut kernel_scratch = 0usize;
        for node in &graph.nodes {
            let out = node.outputs[0] as usize;
            let kernel = match node.op {
                Op::Conv(conv) => {
                    // The weights' layout says how they were planned (at conversion or at
                    // load, for the model's own input shapes); the kernel follows it.
                    let layout = model.weight_layout(conv.weight);
                    let k = ConvPlan::from_layout(layout, &conv)
                        .and_then(|plan| (table.conv)(&conv, plan))
                        .ok_or_else(|| {
                            Error::InvalidOption(format!(
                                "node {}: table {} has no kernel for {layout:?} weights",
                                node.name, table.name
                            ))
                        })?;
                    let xs = geoms[node.inputs[0] as usize];
                    kernel_scratch = kernel_scratch.max((k.scratch_len)(&conv, xs, geoms[out]));
                    Kernel::Conv {
                        conv,
                        k,
                        parts: 1,
                        w: model.weight(conv.weight),
                        bias: conv.bias.map(|b| model.weight(b)),
                        folded: None,
                        packed: None,
                    }
                }
                Op::Fc(fc) => Kernel::Fc {
                    fc,
                    k: table.fc,
                    w: model.weight(fc.weight),
                    bias: fc.bias.map(|b| model.weight(b)),
                    packed: None,
                },
                Op::Pool(p) => Kernel::Pool(p),
                Op::GlobalAvgPool => Kernel::GlobalAvgPool,
                Op::Add { act } => Kernel::Add(act),
                Op::Mul => Kernel::Mul,
                Op::Concat => Kernel::Concat,
                Op::Act(a) => Kernel::Act(a),
                Op::Softmax => Kernel::Softmax,
                Op::Flatten => Kernel::Flatten,
                Op::ChannelAffine { scale, shift, act } => Kernel::Affine {
                    scale: model.weight(scale),
                    shift: model.weight(shift),
                    act,
                },
                Op::Slice { start, step, .. } => Kernel::Slice { start, step },
                Op::Resize(r) => Kernel::Resize(r),
                Op::Deconv(d) => Kernel::Deconv {
                    d,
                    w: model.weight(d.weight),
                    bias: d.bias.map(|b| model.weight(b)),
                },
                Op::ChannelShuffle { groups } => Kernel::ChannelShuffle(groups as usize),
                Op::Transpose { perm } => Kernel::Transpose(perm),
                Op::Reduce { kind, axes } => Kernel::Reduce(kind, axes),
                Op::Binary { kind, act } => Kernel::Binary(kind, act),
                Op::Unary { kind } => Kernel::Unary(kind),
                Op::Constant { weight } => Kernel::Constant(model.weight(weight)),
                Op::Pad { begin, mode, .. } => Kernel::Pad(begin, mode),
                Op::DepthToSpace { block, crd } => Kernel::DepthToSpace(block as usize, crd),
                Op::SpaceToDepth { block } => Kernel::SpaceToDepth(block as usize),
                Op::Tile { .. } => Kernel::Tile,
                Op::SoftmaxAxis { axis, log } => Kernel::SoftmaxAxis(axis as usize, log),
                Op::Reshape { .. } => Kernel::Reshape,
                Op::ConcatAxis { axis } => Kernel::ConcatAxis(axis as usize),
                Op::LayerNorm { scale, shift, eps } => Kernel::LayerNorm {
                    scale: model.weight(scale),
                    shift: model.weight(shift),
                    eps,
                },
            };
            steps.push(Step {
                kernel,
                inputs: node.inputs.iter().map(|&t| t as usize).collect(),
                output: out,
                link: Link::None,
            });
        }
        // Chains: windows first in each participant's scratch, the kernels' scratch after.
        let mut windows_len = 0usize;
        for (r, c, ms) in chains {
            windows_len = windows_len.max(c.windows_len);
            for s in &mut steps[r.start + 1..r.end] {
                s.link = Link::Member;
            }
            steps[r.start].link = Link::Head(c, ms.iter().map(|m| (m.xs, m.ys)).collect());
        }
        for (j, r) in read_in_place.iter().enumerate() {
            let Some(r) = *r else { continue };
            let parts = graph.nodes[j].inputs.len();
            let step = &mut steps[r];
            let residual = step.inputs.split_off(1);
            match &mut step.kernel {
                Kernel::Conv { parts: p, .. } => *p = parts,
                Kernel::Pool(_) => {}
                _ => unreachable!("only convs and pools read a concatenation in place"),
            }
            step.inputs = graph.nodes[j].inputs.iter().map(|&t| t as usize).collect();
            step.inputs.extend(residual);
            steps[j].link = Link::InPlace;
        }
        for (i, away) in sliced_away.iter().enumerate() {
            if *away {
                steps[i].link = Link::InPlace;
            }
        }
        // Channel ranges read in place: buffers past the tensors', aliasing the sliced one.
        for &View {
            concat: j,
            part: k,
            src,
            c0,
        } in &views
        {
            let r = read_in_place[j].expect("views belong to concatenations read in place");
            let b = buffers[src];
            let geom = Act4 {
                shape: geoms[graph.nodes[j].inputs[k] as usize].shape,
                cs: b.geom.cs,
            };
            buffers.push(Buffer {
                offset: b.offset + c0,
                geom,
                len: b.len - c0,
            });
            steps[r].inputs[k] = buffers.len() - 1;
        }
        // Global average pools sum large maps by bands in participant 0's scratch area.
        let mut pattern_scratch = (graph.nodes.iter())
            .filter(|n| matches!(n.op, Op::GlobalAvgPool))
            .map(|n| mean_scratch(geoms[n.outputs[0] as usize]))
            .max()
            .unwrap_or(0);
        let mut folded_len = 0usize;
        for (&(i, p), fold) in patterns.iter().zip(&folds) {
            let out = |j: usize| geoms[graph.nodes[i + j].outputs[0] as usize];
            let inner = [out(0), out(1), out(2)];
            pattern_scratch = pattern_scratch.max(match p {
                Pattern::SqueezeExcite => {
                    inner.iter().map(|g| g.len()).sum::<usize>() + mean_scratch(inner[0])
                }
                Pattern::Sppf { .. } => {
                    fuse::sppf_scratch(geoms[graph.nodes[i].inputs[0] as usize])
                }
            });
            // The folded conv reads the pattern's input and its own scaled weights, each
            // fold's at its own offset (64-byte aligned, as the arena's buffers).
            let fold = fold.map(|f| {
                let at = folded_len;
                folded_len += f.len.next_multiple_of(plan::ALIGN_FLOATS);
                let step = &mut steps[f.consumer];
                step.inputs[0] = graph.nodes[i].inputs[0] as usize;
                if let Kernel::Conv { folded, .. } = &mut step.kernel {
                    *folded = Some(at);
                }
                (f, at)
            });
            steps[i].link = Link::Pattern(p, inner, fold);
            steps[i].output = steps[i + Pattern::NODES - 1].output;
            for s in &mut steps[i + 1..i + Pattern::NODES] {
                s.link = Link::Member;
            }
        }
        // bf16, f16 and int8 convs: the table's kernel of that precision and weights packed
        // for it, for every conv it takes that has no folded gate; one reading a
        // concatenation in place only where every part but the last has a channel count of
        // the kernel's multiple (bf16 rounds channels in pairs, int8 quantizes them in
        // quads).
        // The words' bits as f32 slots, each conv's from a 64-byte boundary.
        let mut packed_words: Vec<f32> = Vec::new();
        let push_words = |all: &mut Vec<f32>, words: &[u32]| {
            let at = all.len();
            all.extend(words.iter().map(|&word| f32::from_bits(word)));
            let end = all.len();
            all.resize(end.next_multiple_of(plan::ALIGN_FLOATS), 0.0);
            at..end
        };
        type Reduced = (SelectFn, PackFn, u32);
        // The kernel, its packing, and the multiple of which every part of a concatenation
        // read in place but the last must have its channel count.
        let reduced: Option<Reduced> = match opts.precision {
            Precision::F32 => None,
            Precision::Bf16 => Some((table.conv_bf16, bf16::pack_pointwise, 2)),
            Precision::F16 => Some((table.conv_f16, f16::pack_pointwise, 1)),
            Precision::Int8 => table
                .conv_int8
                .map(|(k, pack)| (k, pack, int8::QUAD as u32)),
        };
        // The convs inside a fused pattern (a squeeze-excite's squeeze and excite, on one
        // pixel) are run by the pattern with their f32 weights: they stay f32.
        let mut in_pattern = vec![false; steps.len()];
        for (i, s) in steps.iter().enumerate() {
            if matches!(s.link, Link::Pattern(..)) {
                let end = (i + Pattern::NODES).min(steps.len());
                in_pattern[i..end].fill(true);
            }
        }
        if let Some((select, pack, multiple)) = reduced {
            for (i, step) in steps.iter_mut().enumerate() {
                if in_pattern[i] {
                    continue;
                }
                let Kernel::Conv {
                    conv,
                    k,
                    parts,
                    w,
                    folded: None,
                    packed,
                    ..
                } = &mut step.kernel
                else {
                    continue;
                };
                let Some(k16) = select(conv, k.layout) else {
                    continue;
                };
                let odd = |&t: &usize| !buffers[t].geom.shape.c.is_multiple_of(multiple);
                if *parts > 1 && (!k16.reads_parts || step.inputs[..*parts - 1].iter().any(odd)) {
                    continue;
                }
                let in_c = conv.in_c as usize;
                let Some(words) = pack(w, k.layout, in_c, conv.out_c as usize) else {
                    continue;
                };
                *packed = Some(push_words(&mut packed_words, &words));
                *k = k16;
                let xs = geoms[graph.nodes[i].inputs[0] as usize];
                let ys = geoms[graph.nodes[i].outputs[0] as usize];
                kernel_scratch = kernel_scratch.max((k.scratch_len)(conv, xs, ys));
            }
        }
        // Fully connected layers in bf16 or with f16 weights (a classifier's weights,
        // streamed from memory: half the bytes), where the table has the kernel.
        type FcSelect = fn(&Fc, crate::graph::Layout, Act4) -> Option<FcKernel>;
        let fc_reduced: Option<(FcSelect, PackFn)> = match opts.precision {
            Precision::F32 => None,
            Precision::Bf16 => Some((table.fc_bf16, bf16::pack_fc)),
            Precision::F16 => Some((table.fc_f16, f16::pack_fc)),
            Precision::Int8 => None,
        };
        if let Some((select, pack)) = fc_reduced {
            for (i, step) in steps.iter_mut().enumerate() {
                // No pattern has a fully connected member today; one would run it with its
                // f32 weights, as the convs above.
                if in_pattern[i] {
                    continue;
                }
                let Kernel::Fc {
                    fc, k, w, packed, ..
                } = &mut step.kernel
                else {
                    continue;
                };
                let xs = geoms[graph.nodes[i].inputs[0] as usize];
                let Some(k16) = select(fc, k.layout, xs) else {
                    continue;
                };
                let (in_f, out_f) = (fc.in_features as usize, fc.out_features as usize);
                let Some(words) = pack(w, k.layout, in_f, out_f) else {
                    continue;
                };
                *packed = Some(push_words(&mut packed_words, &words));
                *k = k16;
            }
        }
        let packed = AlignedF32::from_slice(&packed_words);
        // Each participant's area starts on a 64-byte boundary, as the arena does: the chains'
        // windows and the kernels' scratch are read and written in whole vectors (a large
        // `Vec<f32>` is only 16-byte aligned; `docs/decisions.md`, session 23).
        let scratch_len = (windows_len.max(pattern_scratch) + kernel_scratch)
            .next_multiple_of(plan::ALIGN_FLOATS);

        let inputs = graph
            .inputs
            .iter()
            .map(|io| {
                (
                    io.tensor as usize,
                    io.dims.iter().map(|&d| d as usize).collect(),
                )
            })
            .collect();
        let outputs = graph
            .outputs
            .iter()
            .map(|io| OutputSlot {
                tensor: io.tensor as usize,
                dims: io.dims.iter().map(|&d| d as usize).collect(),
                data: vec![0.0; io.elems() as usize],
            })
            .collect();
        let pool = Workers::new(threads, &opts.cpus)
            .map_err(|e| Error::InvalidOption(format!("cannot start {threads} threads: {e}")))?;
        Ok(Session {
            model,
            reshaped,
            table,
            steps,
            buffers,
            arena: AlignedF32::zeroed(p.arena_len),
            peak_live: p.peak_live,
            scratch: AlignedF32::zeroed(scratch_len * threads),
            scratch_len,
            folded: AlignedF32::zeroed(folded_len),
            packed,
            precision: opts.precision,
            pool,
            inputs,
            outputs,
        })
    }

    /// Runs the model on `inputs`: one f32 slice per model input, in the model's order, each
    /// in the ONNX (NCHW) element order with exactly the input's element count.
    ///
    /// Allocates nothing.
    ///
    /// ```no_run
    /// # let model = smof::Model::open("m.smof")?;
    /// # let mut session = smof::Session::new(&model, &Default::default())?;
    /// let image = vec![0.0f32; 3 * 224 * 224];
    /// session.run(&[&image])?;
    /// let scores = session.output(0);
    /// # Ok::<(), smof::Error>(())
    /// ```
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<()> {
        self.run_inner(inputs, None)
    }

    /// Like [`Session::run`], and adds the wall time of each step, in seconds, to
    /// `step_seconds` (one entry per graph node, in node order).
    pub fn run_timed(&mut self, inputs: &[&[f32]], step_seconds: &mut [f64]) -> Result<()> {
        if step_seconds.len() != self.steps.len() {
            return Err(Error::InvalidOption(format!(
                "step_seconds has {} entries, the model has {} nodes",
                step_seconds.len(),
                self.steps.len()
            )));
        }
        self.run_inner(inputs, Some(step_seconds))
    }

    fn run_inner(&mut self, inputs: &[&[f32]], mut timing: Option<&mut [f64]>) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
            });
        }
        for (i, (data, (_, dims))) in inputs.iter().zip(&self.inputs).enumerate() {
            let want: usize = dims.iter().product();
            if data.len() != want {
                return Err(Error::BadInput {
                    index: i,
                    name: self.model.graph().inputs[i].name.clone(),
                    what: format!(
                        "has {} values, the model expects {:?} = {want}",
                        data.len(),
                        dims
                    ),
                });
            }
        }
        let arena = self.arena.as_mut_slice();
        for (data, (t, _)) in inputs.iter().zip(&self.inputs) {
            let b = self.buffers[*t];
            nchw_to_nhwc(data, b.geom, &mut arena[b.offset..b.offset + b.geom.len()]);
        }
        let base = arena.as_mut_ptr();
        let buffers = &self.buffers;
        let table = self.table;
        let scratch = SendPtr(self.scratch.as_mut_slice().as_mut_ptr());
        let folded = SendPtr(self.folded.as_mut_slice().as_mut_ptr());
        let packed = self.packed.as_slice();
        let scratch_len = self.scratch_len;
        let pool = &self.pool;
        let steps = &self.steps;
        for (i, step) in steps.iter().enumerate() {
            if matches!(step.link, Link::Member | Link::InPlace) {
                continue;
            }
            let t0 = timing.as_ref().map(|_| Instant::now());
            let input = |k: usize| -> (&[f32], Act4) {
                let b = buffers[step.inputs[k]];
                // SAFETY: the plan was checked by `plan::verify`: every buffer lies inside the
                // arena, and buffers live at the same step (this step's inputs and output) do
                // not overlap, so this shared slice never aliases the output's mutable one.
                (
                    unsafe { std::slice::from_raw_parts(base.add(b.offset), b.len) },
                    b.geom,
                )
            };
            let ob = buffers[step.output];
            // SAFETY: as above; the output is disjoint from every input of this step.
            let y = unsafe { std::slice::from_raw_parts_mut(base.add(ob.offset), ob.geom.len()) };
            let ys = ob.geom;
            if let Link::Pattern(p, inner, fold) = &step.link {
                // SAFETY: a pattern's serial parts run on the calling thread, in participant
                // 0's scratch area; its parallel parts write outside the scratch area or into
                // disjoint parts of participant 0's (see `mean_by_bands`).
                let scratch_all = scratch;
                let scratch = unsafe { std::slice::from_raw_parts_mut(scratch.get(), scratch_len) };
                let (x, xs) = input(0);
                match *p {
                    Pattern::SqueezeExcite => {
                        // Node `j` (a 1x1 conv on one pixel) from `x` into `y`. Large weights
                        // (read from memory at every run) are shared among the threads by
                        // blocks of output channels, each block computed as one thread
                        // computes it; participant 0 uses `scratch`, the others their own
                        // areas.
                        let conv = |j: usize,
                                    x: &[f32],
                                    xs: Act4,
                                    y: &mut [f32],
                                    ys: Act4,
                                    scratch: &mut [f32]| {
                            let Kernel::Conv {
                                conv, k, w, bias, ..
                            } = &steps[i + j].kernel
                            else {
                                unreachable!("squeeze-excite nodes 1 and 2 are convs")
                            };
                            let nb = match k.layout {
                                crate::graph::Layout::ConvOcBlock(b) => b as usize,
                                _ => 0,
                            };
                            let oc = conv.out_c as usize;
                            let blocks = oc.div_ceil(nb.max(1));
                            let parts = if nb > 0
                                && ys.shape.n == 1
                                && w.len() >= SE_CONV_SPLIT_MIN_WEIGHTS
                                && w.len() % blocks == 0
                                && y.len() >= ys.cs
                            {
                                pool.threads().min(blocks)
                            } else {
                                1
                            };
                            if parts <= 1 {
                                return (k.run)(&mut ConvArgs {
                                    conv,
                                    x,
                                    xs,
                                    w,
                                    bias: *bias,
                                    residual: None,
                                    y,
                                    ys,
                                    scratch,
                                    rows: 0..ys.rows(),
                                    parts: &[],
                                });
                            }
                            let per_block = w.len() / blocks;
                            let (yp, own) =
                                (SendPtr(y.as_mut_ptr()), SendPtr(scratch.as_mut_ptr()));
                            let own_len = scratch.len();
                            pool.run_parts(parts, &|t| {
                                let r = share(blocks, (t, parts));
                                let (o0, o1) = (r.start * nb, (r.end * nb).min(oc));
                                if o0 >= o1 {
                                    return;
                                }
                                let sub = Conv {
                                    out_c: (o1 - o0) as u32,
                                    ..*conv
                                };
                                // The last share also writes the output's pad lanes.
                                let cs = if is_last_share((t, parts)) {
                                    ys.cs - o0
                                } else {
                                    o1 - o0
                                };
                                let shape = Shape4 {
                                    c: sub.out_c,
                                    ..ys.shape
                                };
                                // SAFETY: participant `t` writes output channels `o0 .. o0 + cs`
                                // of the one pixel (inside `y`, checked above), disjoint from
                                // the other shares, and its own scratch area: `scratch` for
                                // participant 0, area `t` of the session's scratch for the
                                // others (the pattern's vectors are in area 0).
                                let (y, scratch) = unsafe {
                                    (
                                        std::slice::from_raw_parts_mut(yp.get().add(o0), cs),
                                        if t == 0 {
                                            std::slice::from_raw_parts_mut(own.get(), own_len)
                                        } else {
                                            std::slice::from_raw_parts_mut(
                                                scratch_all.get().add(t * scratch_len),
                                                scratch_len,
                                            )
                                        },
                                    )
                                };
                                (k.run)(&mut ConvArgs {
                                    conv: &sub,
                                    x,
                                    xs,
                                    w: &w[r.start * per_block..r.end * per_block],
                                    bias: bias.map(|b| &b[o0..]),
                                    residual: None,
                                    y,
                                    ys: Act4 { shape, cs },
                                    scratch,
                                    rows: 0..1,
                                    parts: &[],
                                });
                            });
                        };
                        let [ss, ts, gs] = *inner;
                        let (s, rest) = scratch.split_at_mut(ss.len());
                        let (t, rest) = rest.split_at_mut(ts.len());
                        let (g, rest) = rest.split_at_mut(gs.len());
                        // The two ends read the whole map: on one image of some size they run
                        // on every thread, and compute what one thread would, to the bit.
                        let parts = if xs.len() >= SE_SPLIT_MIN_FLOATS {
                            pool.threads()
                        } else {
                            1
                        };
                        mean_by_bands(table, pool, x, xs, s, ss, &mut *rest);
                        conv(1, s, ss, t, ts, &mut *rest);
                        conv(2, t, ts, g, gs, rest);
                        match fold {
                            Some((f, at)) => {
                                let Kernel::Conv { w, .. } = &steps[f.consumer].kernel else {
                                    unreachable!("squeeze-excite gates fold into convs")
                                };
                                // SAFETY: `Session::new` gave this fold `f.len` floats of its
                                // own at `at` in `folded`; only this step writes them, only
                                // the conv `f.consumer` (a later step) reads them.
                                let out = unsafe {
                                    std::slice::from_raw_parts_mut(folded.get().add(*at), f.len)
                                };
                                fuse::scale_inputs(f, w, g, out);
                            }
                            None => scale_by_rows(table, pool, parts, x, xs, g, gs, y, ys),
                        }
                    }
                    Pattern::Sppf { k } => fuse::sppf(k, x, xs, y, ys, scratch),
                }
                if let (Some(t), Some(t0)) = (timing.as_deref_mut(), t0) {
                    t[i] += t0.elapsed().as_secs_f64();
                }
                continue;
            }
            match &step.kernel {
                Kernel::Conv { .. } if matches!(step.link, Link::Head(..)) => {
                    let Link::Head(c, geoms) = &step.link else {
                        unreachable!()
                    };
                    let (x, _) = input(0);
                    let tail = &steps[i + c.members - 1];
                    let buffer = |t: usize| {
                        let b = buffers[t];
                        // SAFETY: as above: the chain's input, residual and output are live
                        // together (the input's lifetime was extended to the chain's end),
                        // so the plan keeps them apart.
                        unsafe { std::slice::from_raw_parts_mut(base.add(b.offset), b.geom.len()) }
                    };
                    let residual = (tail.inputs.len() > 1).then(|| &*buffer(tail.inputs[1]));
                    let y = buffer(tail.output);
                    let link = |j: usize| {
                        let op = match &steps[i + j].kernel {
                            Kernel::Conv {
                                conv,
                                k,
                                w,
                                bias,
                                packed: bf,
                                ..
                            } => chain::LinkOp::Conv {
                                conv,
                                k,
                                w: bf.as_ref().map_or(*w, |r| &packed[r.clone()]),
                                bias: *bias,
                            },
                            Kernel::Pool(pool) => chain::LinkOp::MaxPool {
                                pool,
                                run: table.pool,
                                c0: 0,
                            },
                            _ => unreachable!("chains hold convs and max pools only"),
                        };
                        chain::Link {
                            op,
                            xs: geoms[j].0,
                            ys: geoms[j].1,
                        }
                    };
                    let rows = geoms[c.members - 1].1.rows();
                    let parts = pool.threads().min(rows);
                    let yp = SendPtr(y.as_mut_ptr());
                    let ylen = y.len();
                    let part = |t: usize| {
                        // SAFETY: participant `t` writes only the final output rows of its
                        // range (disjoint from the others') and its own scratch area.
                        let (y, scratch) = unsafe {
                            (
                                std::slice::from_raw_parts_mut(yp.get(), ylen),
                                std::slice::from_raw_parts_mut(
                                    scratch.get().add(t * scratch_len),
                                    scratch_len,
                                ),
                            )
                        };
                        let r = share(rows, (t, parts));
                        chain::run(c, link, x, y, residual, r, scratch);
                    };
                    pool.run_parts(parts, &part);
                }
                Kernel::Conv {
                    conv,
                    k,
                    parts,
                    w,
                    bias,
                    folded: fold,
                    packed: bf,
                } => {
                    let (x, xs) = input(0);
                    // SAFETY: the floats of a fold (see `Session::new`), written by its
                    // squeeze-excite step, which ran before this one; nothing writes them
                    // while this step runs.
                    let w: &[f32] = match (fold, bf) {
                        (Some(at), _) => unsafe {
                            std::slice::from_raw_parts(folded.get().add(*at), w.len())
                        },
                        (None, Some(r)) => &packed[r.clone()],
                        (None, None) => w,
                    };
                    // A concatenation read in place: its further parts, on the stack.
                    let mut more = [(&[][..], xs); MAX_CONV_PARTS];
                    for (j, slot) in more.iter_mut().enumerate().take(parts - 1) {
                        *slot = input(j + 1);
                    }
                    let more = &more[..parts - 1];
                    let residual = (step.inputs.len() > *parts).then(|| input(*parts).0);
                    let rows = ys.rows();
                    let parts = pool.threads().min(rows);
                    // Winograd computes whole 4- or 2-row tiles: cut between tile rows, so
                    // that no tile row is computed by two participants.
                    let align = match k.layout {
                        crate::graph::Layout::WinogradF43(_) => 4,
                        crate::graph::Layout::WinogradF23(_) => 2,
                        _ => 1,
                    };
                    let oh = ys.shape.h as usize;
                    let cut = |t: usize| {
                        let r = rows * t / parts;
                        if t == parts {
                            r
                        } else {
                            r - (r % oh) % align
                        }
                    };
                    let yp = SendPtr(y.as_mut_ptr());
                    let ylen = y.len();
                    let part = |t: usize| {
                        // SAFETY: participant `t` writes only output rows `r` (the contract of
                        // `ConvKernel::run`), and the row ranges of the participants are
                        // disjoint; each participant has its own scratch area.
                        let (y, scratch) = unsafe {
                            (
                                std::slice::from_raw_parts_mut(yp.get(), ylen),
                                std::slice::from_raw_parts_mut(
                                    scratch.get().add(t * scratch_len),
                                    scratch_len,
                                ),
                            )
                        };
                        (k.run)(&mut ConvArgs {
                            conv,
                            x,
                            xs,
                            w,
                            bias: *bias,
                            residual,
                            y,
                            ys,
                            scratch,
                            rows: cut(t)..cut(t + 1),
                            parts: more,
                        });
                    };
                    pool.run_parts(parts, &part);
                }
                Kernel::Fc {
                    fc,
                    k,
                    w,
                    bias,
                    packed: bf,
                } => {
                    let (x, xs) = input(0);
                    let w = bf.as_ref().map_or(*w, |r| &packed[r.clone()]);
                    // Large weights (a classifier) are streamed from memory: each participant
                    // takes a share of the output features, and of the weights.
                    let parts = if w.len() >= FC_SPLIT_MIN_WEIGHTS {
                        pool.threads()
                    } else {
                        1
                    };
                    let yp = SendPtr(y.as_mut_ptr());
                    let ylen = y.len();
                    let part = |t: usize| {
                        // SAFETY: participant `t` writes only the output features of its
                        // share (the contract of `FcArgs::share`), disjoint from the others'.
                        let y = unsafe { std::slice::from_raw_parts_mut(yp.get(), ylen) };
                        (k.run)(&mut FcArgs {
                            fc,
                            x,
                            xs,
                            w,
                            bias: *bias,
                            y,
                            ys,
                            share: (t, parts),
                        });
                    };
                    pool.run_parts(parts, &part);
                }
                Kernel::Pool(p) => {
                    // One input, or the parts of a concatenation read in place (at most
                    // `MAX_CONV_PARTS`: no larger concatenation is read in place).
                    let mut parts = [(&[][..], ys); MAX_CONV_PARTS];
                    debug_assert!(step.inputs.len() <= MAX_CONV_PARTS);
                    let count = step.inputs.len().min(MAX_CONV_PARTS);
                    for (k, slot) in parts.iter_mut().enumerate().take(count) {
                        *slot = input(k);
                    }
                    let parts = &parts[..count];
                    // A large max pool of one image runs by bands of output rows on every
                    // thread, as in a chain (an average's divisor may count the padding).
                    let rows = ys.rows();
                    let split = p.kind == PoolKind::Max
                        && ys.shape.n == 1
                        && ys.len() >= POOL_SPLIT_MIN_FLOATS;
                    let threads = if split { pool.threads().min(rows) } else { 1 };
                    let yp = SendPtr(y.as_mut_ptr());
                    let ylen = y.len();
                    let part = |t: usize| {
                        // SAFETY: participant `t` writes only the output rows of its share,
                        // disjoint from the others'.
                        let y = unsafe { std::slice::from_raw_parts_mut(yp.get(), ylen) };
                        let mut c0 = 0;
                        for &(x, xs) in parts {
                            if threads == 1 {
                                (table.pool)(p, x, xs, &mut *y, ys, c0);
                            } else {
                                let link = chain::Link {
                                    op: chain::LinkOp::MaxPool {
                                        pool: p,
                                        run: table.pool,
                                        c0,
                                    },
                                    xs,
                                    ys,
                                };
                                chain::run_rows(&link, x, &mut *y, share(rows, (t, threads)));
                            }
                            c0 += xs.shape.c as usize;
                        }
                    };
                    pool.run_parts(threads, &part);
                }
                Kernel::GlobalAvgPool => {
                    let (x, xs) = input(0);
                    // SAFETY: the serial part runs on the calling thread, in participant 0's
                    // scratch area; `mean_by_bands`'s participants write disjoint parts of it.
                    let partial =
                        unsafe { std::slice::from_raw_parts_mut(scratch.get(), scratch_len) };
                    mean_by_bands(table, pool, x, xs, y, ys, partial);
                }
                Kernel::Add(act) => {
                    let (a, b) = (input(0).0, input(1).0);
                    by_rows(pool, y, ys, &|r, y, g| {
                        let at = r.start * ys.shape.w as usize * ys.cs;
                        if at + g.len() <= a.len().min(b.len()) {
                            (table.add)(&a[at..], &b[at..], y, g, *act);
                        }
                    });
                }
                Kernel::Mul => {
                    let (b, bs) = input(1);
                    (table.mul)(input(0).0, b, bs, y, ys);
                }
                Kernel::Concat => {
                    let mut c0 = 0;
                    for k in 0..step.inputs.len() {
                        let (x, xs) = input(k);
                        (table.concat_part)(x, xs, y, ys, c0);
                        c0 += xs.shape.c as usize;
                    }
                }
                Kernel::Act(a) => (table.act)(input(0).0, y, ys, *a),
                Kernel::Softmax => {
                    let (x, xs) = input(0);
                    (table.softmax)(x, xs, y, ys);
                }
                Kernel::Flatten => {
                    let (x, xs) = input(0);
                    (table.flatten)(x, xs, y, ys);
                }
                Kernel::Affine { scale, shift, act } => {
                    (table.channel_affine)(input(0).0, scale, shift, y, ys, *act)
                }
                Kernel::Slice { start, step } => {
                    let (x, xs) = input(0);
                    by_rows(pool, y, ys, &|r, y, g| {
                        let mut start = *start;
                        start[1] += r.start as u32 * step[1];
                        crate::ops::slice(&start, step, x, xs, y, g);
                    });
                }
                Kernel::Resize(r) => {
                    let (x, xs) = input(0);
                    crate::ops::resize(r, x, xs, y, ys);
                }
                Kernel::Deconv { d, w, bias } => {
                    let (x, xs) = input(0);
                    crate::ops::deconv(d, x, xs, w, *bias, y, ys);
                }
                Kernel::ChannelShuffle(g) => {
                    let (x, xs) = input(0);
                    crate::ops::channel_shuffle(*g, x, xs, y, ys);
                }
                Kernel::Transpose(perm) => {
                    let (x, xs) = input(0);
                    crate::ops::transpose(perm, x, xs, y, ys);
                }
                Kernel::Reduce(kind, axes) => {
                    let (x, xs) = input(0);
                    crate::ops::reduce(*kind, *axes, x, xs, y, ys);
                }
                Kernel::Binary(kind, act) => {
                    let ((a, a_s), (b, bs)) = (input(0), input(1));
                    crate::ops::binary(*kind, *act, a, a_s, b, bs, y, ys);
                }
                Kernel::Unary(kind) => {
                    let (x, xs) = input(0);
                    crate::ops::unary(*kind, x, xs, y, ys);
                }
                Kernel::Constant(w) => crate::ops::constant(w, y, ys),
                Kernel::Pad(begin, mode) => {
                    let (x, xs) = input(0);
                    crate::ops::pad(begin, *mode, x, xs, y, ys);
                }
                Kernel::DepthToSpace(b, crd) => {
                    let (x, xs) = input(0);
                    crate::ops::depth_to_space(*b, *crd, x, xs, y, ys);
                }
                Kernel::SpaceToDepth(b) => {
                    let (x, xs) = input(0);
                    crate::ops::space_to_depth(*b, x, xs, y, ys);
                }
                Kernel::Tile => {
                    let (x, xs) = input(0);
                    crate::ops::tile(x, xs, y, ys);
                }
                Kernel::SoftmaxAxis(axis, log) => {
                    let (x, xs) = input(0);
                    crate::ops::softmax_axis(*axis, *log, x, xs, y, ys);
                }
                Kernel::Reshape => {
                    let (x, xs) = input(0);
                    crate::ops::reshape(x, xs, y, ys);
                }
                Kernel::LayerNorm { scale, shift, eps } => {
                    let (x, xs) = input(0);
                    layer_norm_by_pixels(table, pool, (x, xs), (scale, shift, *eps), y, ys);
                }
                Kernel::ConcatAxis(axis) => {
                    let mut off = 0;
                    for k in 0..step.inputs.len() {
                        let (x, xs) = input(k);
                        crate::ops::concat_axis_part(*axis, off, x, xs, y, ys);
                        off += if *axis == 1 { xs.shape.h } else { xs.shape.w } as usize;
                    }
                }
            }
            if let (Some(t), Some(t0)) = (timing.as_deref_mut(), t0) {
                t[i] += t0.elapsed().as_secs_f64();
            }
        }
        let arena = self.arena.as_slice();
        for out in &mut self.outputs {
            let b = self.buffers[out.tensor];
            nhwc_to_nchw(
                &arena[b.offset..b.offset + b.geom.len()],
                b.geom,
                &mut out.data,
            );
        }
        Ok(())
    }

    /// Output `i` of the last run, in the ONNX (NCHW) element order.
    ///
    /// # Panics
    /// If `i >= self.output_count()`.
    pub fn output(&self, i: usize) -> &[f32] {
        &self.outputs[i].data
    }

    /// ONNX dims of output `i` (`[N, C, H, W]` or `[N, F]`).
    ///
    /// # Panics
    /// If `i >= self.output_count()`.
    pub fn output_dims(&self, i: usize) -> &[usize] {
        &self.outputs[i].dims
    }

    /// Number of model outputs.
    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    /// ONNX dims of input `i`.
    ///
    /// # Panics
    /// If `i` is not below the number of inputs.
    pub fn input_dims(&self, i: usize) -> &[usize] {
        &self.inputs[i].1
    }

    /// Number of model inputs.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Bytes of the activation arena.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 4
    }

    /// Largest number of activation bytes live at one step of the schedule: the lower bound
    /// for any arena.
    pub fn peak_live_bytes(&self) -> usize {
        self.peak_live * 4
    }

    /// Bytes of kernel scratch space (im2col, tiles).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.as_slice().len() * 4
    }

    /// Name of the kernel each node runs, in node order (e.g. `conv3x3_portable`).
    pub fn kernel_names(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .map(|s| match (&s.link, &s.kernel) {
                (Link::Pattern(p, ..), _) => p.kernel_name(),
                (Link::InPlace, _) => "read_in_place",
                (_, k) => Self::kernel_name(k),
            })
            .collect()
    }

    fn kernel_name(k: &Kernel) -> &'static str {
        match k {
            Kernel::Conv { k, .. } => k.name,
            Kernel::Fc { k, .. } => k.name,
            Kernel::Pool(_) => "pool",
            Kernel::GlobalAvgPool => "global_avg_pool",
            Kernel::Add(_) => "add",
            Kernel::Mul => "mul",
            Kernel::Concat => "concat",
            Kernel::Act(_) => "act",
            Kernel::Softmax => "softmax",
            Kernel::Flatten => "flatten",
            Kernel::Affine { .. } => "channel_affine",
            Kernel::Slice { .. } => "slice",
            Kernel::Resize(_) => "resize",
            Kernel::Deconv { .. } => "deconv",
            Kernel::ChannelShuffle(_) => "channel_shuffle",
            Kernel::Transpose(_) => "transpose",
            Kernel::Reduce(..) => "reduce",
            Kernel::Binary(..) => "binary",
            Kernel::Unary(_) => "unary",
            Kernel::Constant(_) => "constant",
            Kernel::Pad(..) => "pad",
            Kernel::DepthToSpace(..) => "depth_to_space",
            Kernel::SpaceToDepth(_) => "space_to_depth",
            Kernel::Tile => "tile",
            Kernel::SoftmaxAxis(..) => "softmax_axis",
            Kernel::Reshape => "reshape",
            Kernel::ConcatAxis(_) => "concat_axis",
            Kernel::LayerNorm { .. } => "layer_norm",
        }
    }

    /// The node ranges that run as one fused pattern (squeeze-excite, SPPF; see
    /// [`SessionOptions::layer_by_layer`]), each with the pattern's name: the first node of
    /// each runs the whole range, so per-node timings put the pattern's time on it.
    pub fn fused_patterns(&self) -> Vec<(std::ops::Range<usize>, &'static str)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.link {
                Link::Pattern(p, ..) => Some((i..i + Pattern::NODES, p.name())),
                _ => None,
            })
            .collect()
    }

    /// The number of convs and fully connected layers that run a bf16 kernel
    /// ([`Precision::Bf16`]; 0 for another precision or where the CPU or the kernel table has
    /// none).
    pub fn bf16_convs(&self) -> usize {
        if self.precision == Precision::Bf16 {
            self.reduced_convs()
        } else {
            0
        }
    }

    /// The number of convs and fully connected layers that run an f16 kernel
    /// ([`Precision::F16`]; 0 for another precision or where the CPU or the kernel table has
    /// none).
    pub fn f16_convs(&self) -> usize {
        if self.precision == Precision::F16 {
            self.reduced_convs()
        } else {
            0
        }
    }

    /// The number of convs that run an int8 kernel ([`Precision::Int8`]; 0 for another
    /// precision or where the CPU or the kernel table has none).
    pub fn int8_convs(&self) -> usize {
        if self.precision == Precision::Int8 {
            self.reduced_convs()
        } else {
            0
        }
    }

    /// The number of convs and fully connected layers with weights packed at creation for
    /// a reduced precision.
    fn reduced_convs(&self) -> usize {
        (self.steps.iter())
            .filter(|s| {
                matches!(
                    s.kernel,
                    Kernel::Conv {
                        packed: Some(_),
                        ..
                    } | Kernel::Fc {
                        packed: Some(_),
                        ..
                    }
                )
            })
            .count()
    }

    /// The squeeze-excite patterns whose gate is folded into the weights of the 1x1 conv
    /// that reads their product, as (the pattern's first node, the conv's node): the pattern
    /// scales the conv's weights by the gate instead of scaling the feature map, and the
    /// conv reads the pattern's input. Where the conv's weights are more than a quarter of
    /// the map's floats (a small map, many output channels), or the batch holds more than
    /// one image, the gate is not folded.
    pub fn folded_gates(&self) -> Vec<(usize, usize)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.link {
                Link::Pattern(_, _, Some((f, _))) => Some((i, f.consumer)),
                _ => None,
            })
            .collect()
    }

    /// The node ranges that run as conv chains (see [`SessionOptions::layer_by_layer`]): the
    /// first node of each runs the whole range, so per-node timings put the chain's time on
    /// it.
    pub fn conv_chains(&self) -> Vec<std::ops::Range<usize>> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.link {
                Link::Head(c, _) => Some(i..i + c.members),
                _ => None,
            })
            .collect()
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The graph this session runs: the model's, with every tensor's shape inferred for
    /// [`SessionOptions::input_shapes`] when those were given (so that, for example, FLOPs
    /// can be counted for the shapes planned for).
    pub fn graph(&self) -> &Graph {
        self.reshaped.as_deref().unwrap_or(self.model.graph())
    }
}

/// A pointer handed to the participants of a parallel step, each of which touches only its
/// own part of the pointee.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the participants of a step use the pointer for disjoint parts only (see its uses).
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Fully connected layers with at least this many weights run in shares on every thread
/// (smaller ones are not worth waking the workers for).
const FC_SPLIT_MIN_WEIGHTS: usize = 1 << 16;

/// Max pools whose output has at least this many floats run on every thread.
const POOL_SPLIT_MIN_FLOATS: usize = 1 << 14;

/// Squeeze-excite patterns whose input has at least this many floats run their mean and
/// their scaling on every thread.
const SE_SPLIT_MIN_FLOATS: usize = 1 << 14;

/// Squeeze-excite convs (on one pixel) with at least this many weights share their output
/// channels among the threads: MobileNetV3-Small's 576 -> 144 -> 576 (83k weights each) took
/// 0.04 ms of a pattern on one thread and on two alike, reading their weights from memory.
const SE_CONV_SPLIT_MIN_WEIGHTS: usize = 1 << 14;

/// Smallest LayerNorm output (floats) run on every thread (ConvNeXt-Tiny's: 18,816 at 7x7x384
/// up to 301,056 at 56x56x96).
const LAYER_NORM_SPLIT_MIN_FLOATS: usize = 1 << 14;

/// Bands of rows the mean of a large map is summed in (see [`mean_by_bands`]).
const MEAN_BANDS: usize = 4;

/// Scratch floats of [`mean_by_bands`] for a mean of geometry `ss`.
fn mean_scratch(ss: Act4) -> usize {
    MEAN_BANDS * ss.len()
}

/// The mean over H and W of `x` into `s` (`global_avg_pool`), for a `GlobalAveragePool` and
/// the squeeze-excite pattern alike. One image of at least [`SE_SPLIT_MIN_FLOATS`] floats
/// and [`MEAN_BANDS`] rows is summed by bands: the kernel's mean of each of [`MEAN_BANDS`]
/// bands of rows into `partial` ([`mean_scratch`] floats), the bands shared among up to
/// [`MEAN_BANDS`] participants, then the means weighted by their rows, added in band order.
/// The bands do not depend on the thread count, so neither does the result; and each
/// participant reads rows that the convs before (which split by rows too) wrote on its own
/// core, where the former split by channels made every core read the whole map (slower on
/// two threads than on one). Other maps run the kernel whole.
#[allow(clippy::too_many_arguments)]
fn mean_by_bands(
    table: &KernelTable,
    pool: &Workers,
    x: &[f32],
    xs: Act4,
    s: &mut [f32],
    ss: Act4,
    partial: &mut [f32],
) {
    let (h, w) = (xs.shape.h as usize, xs.shape.w as usize);
    let banded = xs.shape.n == 1
        && h >= MEAN_BANDS
        && xs.len() >= SE_SPLIT_MIN_FLOATS
        && partial.len() >= mean_scratch(ss)
        && s.len() >= ss.len();
    if !banded {
        return (table.global_avg_pool)(x, xs, s, ss);
    }
    let band = |b: usize| share(h, (b, MEAN_BANDS));
    let parts = pool.threads().min(MEAN_BANDS);
    let pp = SendPtr(partial.as_mut_ptr());
    pool.run_parts(parts, &|t| {
        for b in share(MEAN_BANDS, (t, parts)) {
            let rows = band(b);
            let g = Act4 {
                shape: Shape4::new(1, rows.len() as u32, w as u32, xs.shape.c),
                cs: xs.cs,
            };
            let x0 = rows.start * w * xs.cs;
            if x0 + g.span() > x.len() {
                return;
            }
            // SAFETY: band `b`'s mean goes to `partial[b * ss.len()..][..ss.len()]` (inside
            // `partial`, checked above), written by the one participant that has band `b`.
            let out =
                unsafe { std::slice::from_raw_parts_mut(pp.get().add(b * ss.len()), ss.len()) };
            (table.global_avg_pool)(&x[x0..], g, out, ss);
        }
    });
    let weights: [f32; MEAN_BANDS] = std::array::from_fn(|b| band(b).len() as f32 / h as f32);
    for (k, o) in s[..ss.len()].iter_mut().enumerate() {
        *o = (0..MEAN_BANDS).fold(0.0, |acc, b| acc + partial[b * ss.len() + k] * weights[b]);
    }
}

/// The table's `layer_norm` of `x` (`scale`, `shift`, `eps`) into `y`, over shares of the
/// pixels on every thread of `pool` when the output holds at least
/// [`LAYER_NORM_SPLIT_MIN_FLOATS`] floats. Each pixel is normalised alone, so any split
/// gives the same result to the bit.
fn layer_norm_by_pixels(
    table: &KernelTable,
    pool: &Workers,
    (x, xs): (&[f32], Act4),
    (scale, shift, eps): (&[f32], &[f32], f32),
    y: &mut [f32],
    ys: Act4,
) {
    let pixels = ys.rows() * ys.shape.w as usize;
    let parts = if ys.len() >= LAYER_NORM_SPLIT_MIN_FLOATS {
        pool.threads().min(pixels)
    } else {
        1
    };
    if parts <= 1 {
        return (table.layer_norm)(x, xs, scale, shift, eps, y, ys);
    }
    in_bands(pool, parts, 1, (x, xs), (y, ys), &|x, xb, y, yb| {
        (table.layer_norm)(x, xb, scale, shift, eps, y, yb)
    });
}

/// `y = x * g` (one scale per channel) on up to `parts` participants, each over a band of
/// rows (one image only; a batch runs whole).
#[allow(clippy::too_many_arguments)]
fn scale_by_rows(
    table: &KernelTable,
    pool: &Workers,
    parts: usize,
    x: &[f32],
    xs: Act4,
    g: &[f32],
    gs: Act4,
    y: &mut [f32],
    ys: Act4,
) {
    let parts = parts.min(ys.rows());
    if parts <= 1 || ys.shape.n != 1 {
        return (table.mul)(x, g, gs, y, ys);
    }
    let w = ys.shape.w as usize;
    in_bands(pool, parts, w, (x, xs), (y, ys), &|x, _, y, yb| {
        (table.mul)(x, g, gs, y, yb)
    });
}

/// Smallest output (floats) of an elementwise Add or a Slice run on every thread. Their inputs
/// were mostly written by convs split by rows: one thread reading them all took longer on
/// two threads than on one (the YOLOv8n-style detector's Adds and Slices: 0.12 against
/// 0.08 ms, and 0.17 against 0.09).
const ROWS_SPLIT_MIN_FLOATS: usize = 1 << 14;

/// What [`bands`] runs on each share: the share's rows (of `unit` pixels), its part of the
/// output, and that part's geometry (one image of the share's rows).
type RowsOp<'a> = dyn Fn(std::ops::Range<usize>, &mut [f32], Act4) + Sync + 'a;

/// Runs `f` on shares of the output rows on every thread of `pool`, for one image of at
/// least [`ROWS_SPLIT_MIN_FLOATS`] floats; otherwise `f` on all of `y` on this thread. Each
/// output row is computed alone, so any split gives the same result to the bit.
fn by_rows(pool: &Workers, y: &mut [f32], ys: Act4, f: &RowsOp) {
    let rows = ys.rows();
    let parts = if ys.shape.n == 1 && ys.len() >= ROWS_SPLIT_MIN_FLOATS {
        pool.threads().min(rows)
    } else {
        1
    };
    if parts <= 1 {
        return f(0..rows, y, ys);
    }
    bands(pool, parts, ys.shape.w as usize, y, ys, f);
}

/// The pixels of `y` taken as rows of `unit` pixels, shared among `parts` participants of
/// `pool`: participant `p` runs `f(its rows, its part of y, that part's geometry)`, the part
/// as one image of `1 x rows x unit` pixels. A share reaching past `y` is skipped.
fn bands(pool: &Workers, parts: usize, unit: usize, y: &mut [f32], ys: Act4, f: &RowsOp) {
    let rows = (ys.rows() * ys.shape.w as usize) / unit.max(1);
    let (yp, ylen) = (SendPtr(y.as_mut_ptr()), y.len());
    pool.run_parts(parts, &|p| {
        let r = share(rows, (p, parts));
        let yb = Act4 {
            shape: Shape4::new(1, r.len() as u32, unit as u32, ys.shape.c),
            cs: ys.cs,
        };
        let y0 = r.start * unit * ys.cs;
        if y0 + yb.len() > ylen {
            return;
        }
        // SAFETY: participant `p` writes its band of `y` only (checked inside `y` above), and
        // the bands of the participants are disjoint.
        let y = unsafe { std::slice::from_raw_parts_mut(yp.get().add(y0), yb.len()) };
        f(r, y, yb);
    });
}

/// What [`in_bands`] runs on each band: `(x, its geometry, y, its geometry)`.
type BandOp<'a> = dyn Fn(&[f32], Act4, &mut [f32], Act4) + Sync + 'a;

/// An op of one input that maps each pixel of `x` to the same pixel of `y` on `parts`
/// participants of `pool`: [`bands`] of `unit` pixels, each participant running
/// `f(x band, its geometry, y band, its geometry)` on the same rows of `x` and `y`. A band
/// reaching past `x` or `y` is skipped.
fn in_bands(
    pool: &Workers,
    parts: usize,
    unit: usize,
    (x, xs): (&[f32], Act4),
    (y, ys): (&mut [f32], Act4),
    f: &BandOp,
) {
    bands(pool, parts, unit, y, ys, &|r, y, yb| {
        let xb = Act4 {
            shape: yb.shape,
            cs: xs.cs,
        };
        let x0 = r.start * unit * xs.cs;
        if x0 + xb.len() <= x.len() {
            f(&x[x0..x0 + xb.len()], xb, y, yb);
        }
    });
}

/// Copies an NCHW tensor into an NHWC buffer with padded channel stride, zeroing pad lanes.
fn nchw_to_nhwc(src: &[f32], g: Act4, dst: &mut [f32]) {
    let (n, h, w, c) = (
        g.shape.n as usize,
        g.shape.h as usize,
        g.shape.w as usize,
        g.shape.c as usize,
    );
    let hw = h * w;
    if hw == 0 || c == 0 {
        dst[..n * hw * g.cs].fill(0.0);
        return;
    }
    for (image, out) in src
        .chunks_exact(c * hw)
        .zip(dst.chunks_exact_mut(hw * g.cs))
        .take(n)
    {
        match g.cs {
            4 if c == 3 => rgb_to_nhwc4(image, out),
            4 => pixels_to_nhwc::<4>(image, c, out),
            8 => pixels_to_nhwc::<8>(image, c, out),
            16 => pixels_to_nhwc::<16>(image, c, out),
            _ => {
                for (p, px) in out.chunks_exact_mut(g.cs).enumerate() {
                    for (ch, v) in px[..c].iter_mut().enumerate() {
                        *v = image[ch * hw + p];
                    }
                    px[c..].fill(0.0);
                }
            }
        }
    }
}

/// One RGB image of [`nchw_to_nhwc`] with channel stride 4 (an image input, see
/// `Session::new`): the three planes are zipped, without index checks, into whole pixels.
fn rgb_to_nhwc4(image: &[f32], out: &mut [f32]) {
    let hw = out.len() / 4;
    let (r, rest) = image.split_at(hw);
    let (g, b) = rest.split_at(hw);
    for (((px, &r), &g), &b) in out.chunks_exact_mut(4).zip(r).zip(g).zip(b) {
        px.copy_from_slice(&[r, g, b, 0.0]);
    }
}

/// One image of [`nchw_to_nhwc`] with channel stride `CS`: each pixel is assembled in a
/// fixed-size array, pad lanes zero, and written whole (no per-pixel `fill`, which is a call
/// to memset for a few floats).
fn pixels_to_nhwc<const CS: usize>(image: &[f32], c: usize, out: &mut [f32]) {
    let hw = out.len() / CS;
    for (p, px) in out.chunks_exact_mut(CS).enumerate() {
        let mut v = [0.0f32; CS];
        for (ch, v) in v.iter_mut().enumerate().take(c) {
            *v = image[ch * hw + p];
        }
        px.copy_from_slice(&v);
    }
}

/// Copies an NHWC buffer with padded channel stride out to NCHW order.
fn nhwc_to_nchw(src: &[f32], g: Act4, dst: &mut [f32]) {
    let (n, h, w, c) = (
        g.shape.n as usize,
        g.shape.h as usize,
        g.shape.w as usize,
        g.shape.c as usize,
    );
    let hw = h * w;
    for b in 0..n {
        for p in 0..hw {
            let row = &src[(b * hw + p) * g.cs..(b * hw + p) * g.cs + c];
            for (ch, &v) in row.iter().enumerate() {
                dst[(b * c + ch) * hw + p] = v;
            }
        }
    }
}
