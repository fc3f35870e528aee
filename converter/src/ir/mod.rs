//! The converter's graph IR.
//!
//! Semantics are ONNX's: activations are NCHW (`[N, C, H, W]`) or `[N, F]`, and a fully
//! connected layer over a 4-D input reads it in NCHW flatten order. Weights are constants
//! held by the ops themselves, so every node input is an activation. Layout questions
//! (NHWC, packing, the Flatten permutation) are settled only by [`crate::lower`].

pub mod eval;
pub mod shape;
pub mod tensor;

pub use smof::graph::{
    Activation, BinaryKind, CoordMode, NearestRound, PadMode, PoolKind, ReduceKind, ResizeMode,
    UnaryKind,
};
pub use tensor::ConstTensor;

/// Index into [`Graph::values`].
pub type ValueId = usize;

/// An activation tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Name in the source model.
    pub name: String,
    /// NCHW shape (rank 4) or `[N, F]` (rank 2).
    pub shape: Vec<usize>,
}

/// An f32 weight tensor, row-major over `dims`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    /// Logical dims.
    pub dims: Vec<usize>,
    /// Elements.
    pub data: Vec<f32>,
}

/// 2-D convolution; `inputs[0]` is the data, an optional `inputs[1]` of the output's shape is
/// added before the activation (a fused residual Add).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvOp {
    /// Weights `[OC, IC/group, KH, KW]`.
    pub weight: Weight,
    /// Bias `[OC]`.
    pub bias: Option<Vec<f32>>,
    /// Groups.
    pub group: usize,
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Fused activation.
    pub act: Activation,
}

impl ConvOp {
    /// Output channels.
    pub fn out_c(&self) -> usize {
        self.weight.dims[0]
    }
    /// Kernel `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.dims[2], self.weight.dims[3]]
    }
}

/// Fully connected layer: `y = x_flat · Wᵀ + b`, where `x_flat` is the input flattened in
/// NCHW (ONNX) order.
#[derive(Clone, Debug, PartialEq)]
pub struct FcOp {
    /// Weights `[out_features, in_features]`, columns in the input's NCHW flatten order.
    pub weight: Weight,
    /// Bias `[out_features]`.
    pub bias: Option<Vec<f32>>,
    /// Fused activation.
    pub act: Activation,
}

/// Sliding-window pooling.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolOp {
    /// Max or average.
    pub kind: PoolKind,
    /// Window `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Extra end padding `[bottom, right]` from ONNX `ceil_mode` (never counted in an average).
    pub ceil_pads: [usize; 2],
}

/// Transposed convolution (ONNX `ConvTranspose`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeconvOp {
    /// Weights `[IC, OC/group, KH, KW]` (the ONNX order).
    pub weight: Weight,
    /// Bias `[OC]`.
    pub bias: Option<Vec<f32>>,
    /// Groups.
    pub group: usize,
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Cropping of the full output `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Extra output `[bottom, right]` (ONNX `output_padding`).
    pub out_pad: [usize; 2],
    /// Fused activation.
    pub act: Activation,
}

impl DeconvOp {
    /// Output channels.
    pub fn out_c(&self) -> usize {
        self.weight.dims[1] * self.group
    }
    /// Kernel `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.dims[2], self.weight.dims[3]]
    }
    /// Weights per input channel: `OC/group x KH x KW`, the length of one row of the
    /// `[IC, OC/group, KH, KW]` weights.
    pub fn per_input(&self) -> usize {
        self.weight.dims[1] * self.weight.dims[2] * self.weight.dims[3]
    }
}

/// Spatial resize over H and W.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeOp {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate transformation.
    pub coord: CoordMode,
    /// Scale `[sh, sw]` (output / input).
    pub scale: [f32; 2],
    /// Output size `[oh, ow]` when the model gives sizes rather than scales.
    pub size: Option<[usize; 2]>,
}

/// The operation of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Convolution (with optional fused residual input and activation).
    Conv(ConvOp),
    /// Fully connected; the input is `[N, F]` or `[N, C, H, W]` with `C*H*W = F`.
    Fc(FcOp),
    /// Max or average pooling.
    Pool(PoolOp),
    /// Mean over H and W, `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// Maximum over H and W, `[N, C, 1, 1]`.
    GlobalMaxPool,
    /// Sum of two tensors of one shape, then an activation.
    Add {
        /// Fused activation.
        act: Activation,
    },
    /// Product; `inputs[1]` has the shape of `inputs[0]` or is `[N, C, 1, 1]`.
    Mul,
    /// Concatenation along axis 1.
    Concat,
    /// Standalone activation.
    Act(Activation),
    /// Softmax over axis 1.
    Softmax,
    /// `[N, C, H, W]` to `[N, C*H*W]`.
    Flatten,
    /// Per-channel (axis 1) `act(x * scale + shift)`.
    ChannelAffine {
        /// Scale, one per channel.
        scale: Vec<f32>,
        /// Shift, one per channel.
        shift: Vec<f32>,
        /// Fused activation.
        act: Activation,
    },
    /// Normalisation over axis 1 (the channels) at each position: `(x - mean) /
    /// sqrt(variance + eps) * scale + shift` (ONNX `LayerNormalization` over the last axis of
    /// the NHWC transpose).
    LayerNorm {
        /// Scale, one per channel.
        scale: Vec<f32>,
        /// Shift, one per channel.
        shift: Vec<f32>,
        /// Added to the variance.
        eps: f32,
    },
    /// The output is the input: same elements in the same order, possibly viewed with
    /// another rank (`[N, F]` and `[N, F, 1, 1]`). Identity, Dropout and no-op Reshapes.
    Identity,
    /// Strided window, per axis of the 4-D view (`[N, F]` is `[N, F, 1, 1]`): element `o`
    /// is input element `starts[a] + o * steps[a]`, below `ends[a]`.
    Slice {
        /// First element per axis.
        starts: [usize; 4],
        /// End (exclusive) per axis, at most the extent.
        ends: [usize; 4],
        /// Step per axis, at least 1.
        steps: [usize; 4],
    },
    /// Spatial resize.
    Resize(ResizeOp),
    /// Transposed convolution.
    Deconv(DeconvOp),
    /// Channel shuffle: `[N, g, C/g, H, W]` transposed to `[N, C/g, g, H, W]`, as 4-D.
    ChannelShuffle {
        /// Groups `g`.
        groups: usize,
    },
    /// Permutation of the four axes of a 4-D tensor: output axis `k` is input axis `perm[k]`.
    Transpose {
        /// The permutation.
        perm: [usize; 4],
    },
    /// Reduction over the axes marked in `axes` (never axis 0) of a 4-D tensor; reduced
    /// axes keep extent 1.
    Reduce {
        /// Mean, max or sum.
        kind: ReduceKind,
        /// Which of the axes `[N, C, H, W]` are reduced.
        axes: [bool; 4],
    },
    /// `act(kind(a, b))` elementwise with NumPy broadcasting; both inputs have the same rank
    /// and each axis of each has the output's extent or 1.
    Binary {
        /// The function.
        kind: BinaryKind,
        /// Fused activation.
        act: Activation,
    },
    /// `kind(x)` elementwise.
    Unary {
        /// The function.
        kind: UnaryKind,
    },
    /// A constant tensor (no input) of the weight's dims (`[N, C, H, W]` or `[N, F]`).
    Constant(Weight),
    /// Padding of a 4-D tensor: `begin[a]` elements before and `end[a]` after axis `a`.
    Pad {
        /// Before, per axis `[N, C, H, W]`.
        begin: [usize; 4],
        /// After, per axis.
        end: [usize; 4],
        /// Fill.
        mode: PadMode,
    },
    /// ONNX `DepthToSpace` of a 4-D tensor.
    DepthToSpace {
        /// Block size.
        block: usize,
        /// CRD mode (else DCR).
        crd: bool,
    },
    /// ONNX `SpaceToDepth` of a 4-D tensor.
    SpaceToDepth {
        /// Block size.
        block: usize,
    },
    /// ONNX `Tile` of a 4-D tensor.
    Tile {
        /// Repetitions per axis `[N, C, H, W]`.
        reps: [usize; 4],
    },
    /// Softmax or LogSoftmax along axis 1, 2 or 3 of a 4-D tensor (or 1 of a 2-D one).
    SoftmaxAxis {
        /// The axis.
        axis: usize,
        /// LogSoftmax.
        log: bool,
    },
    /// The same elements in NCHW order, in another shape (a Reshape that is no view).
    Reshape {
        /// The output shape (2-D or 4-D), of the input's element count.
        shape: Vec<usize>,
    },
    /// Concatenation of 4-D tensors along axis 2 (H) or 3 (W). (Axis 1 is [`Op::Concat`].)
    ConcatAxis {
        /// 2 or 3.
        axis: usize,
    },
}

impl Op {
    /// Short name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Fc(_) => "Fc",
            Op::Pool(p) if p.kind == PoolKind::Max => "MaxPool",
            Op::Pool(_) => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Add { .. } => "Add",
            Op::Mul => "Mul",
            Op::Concat => "Concat",
            Op::Act(_) => "Act",
            Op::Softmax => "Softmax",
            Op::Flatten => "Flatten",
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::Identity => "Identity",
            Op::Slice { .. } => "Slice",
            Op::Resize(_) => "Resize",
            Op::Deconv(_) => "ConvTranspose",
            Op::ChannelShuffle { .. } => "ChannelShuffle",
            Op::Transpose { .. } => "Transpose",
            Op::Reduce { .. } => "Reduce",
            Op::Binary { .. } => "Binary",
            Op::Unary { .. } => "Unary",
            Op::Constant(_) => "Constant",
            Op::Pad { .. } => "Pad",
            Op::DepthToSpace { .. } => "DepthToSpace",
            Op::SpaceToDepth { .. } => "SpaceToDepth",
            Op::Tile { .. } => "Tile",
            Op::SoftmaxAxis { .. } => "SoftmaxAxis",
            Op::Reshape { .. } => "Reshape",
            Op::ConcatAxis { .. } => "ConcatAxis",
        }
    }
    /// The fused activation slot of ops that have one.
    pub fn act_mut(&mut self) -> Option<&mut Activation> {
        match self {
            Op::Conv(c) => Some(&mut c.act),
            Op::Fc(f) => Some(&mut f.act),
            Op::Deconv(d) => Some(&mut d.act),
            Op::Binary { act, .. } => Some(act),
            Op::Add { act } | Op::ChannelAffine { act, .. } => Some(act),
            _ => None,
        }
    }
}

/// One node: an op, its activation inputs and its one output.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name in the source model.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Input values.
    pub inputs: Vec<ValueId>,
    /// Output value.
    pub output: ValueId,
}

/// A graph input or output as the user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphIo {
    /// Name in the source model.
    pub name: String,
    /// The value that holds it.
    pub value: ValueId,
    /// User-facing dims (`[N, C, H, W]` or `[N, F]`); may differ in rank from the value's
    /// shape after an alias was removed, never in element order.
    pub dims: Vec<usize>,
}

/// A whole graph. Nodes are in topological order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// Graph name from the source model.
    pub name: String,
    /// Activation tensors.
    pub values: Vec<Value>,
    /// Nodes, topologically ordered.
    pub nodes: Vec<Node>,
    /// Model inputs.
    pub inputs: Vec<GraphIo>,
    /// Model outputs.
    pub outputs: Vec<GraphIo>,
}

impl Graph {
    /// Adds a value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>, shape: Vec<usize>) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            shape,
        });
        self.values.len() - 1
    }
    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v].shape
    }
    /// For each value, the index of the node that writes it.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            p[n.output] = Some(i);
        }
        p
    }
    /// For each value, the number of node inputs that read it (graph outputs not counted).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                c[i] += 1;
            }
        }
        c
    }
    /// True when `v` is a model output.
    pub fn is_output(&self, v: ValueId) -> bool {
        self.outputs.iter().any(|o| o.value == v)
    }
    /// True when `v` is read by exactly one node input and is not a model output: the
    /// condition for fusing its producer with its consumer.
    pub fn single_use(&self, v: ValueId) -> bool {
        !self.is_output(v)
            && self
                .nodes
                .iter()
                .flat_map(|n| &n.inputs)
                .filter(|&&i| i == v)
                .count()
                == 1
    }
    /// Replaces every read of `from` (node inputs and model outputs) by `to`.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == from {
                    *i = to;
                }
            }
        }
        for o in &mut self.outputs {
            if o.value == from {
                o.value = to;
            }
        }
    }
    /// Number of nodes of each op name, for reports.
    pub fn op_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut m = std::collections::BTreeMap::new();
        for n in &self.nodes {
            *m.entry(n.op.name()).or_insert(0) += 1;
        }
        m
    }
}
