//! The model graph the runtime executes: tensors, weights, nodes and their shape rules.
//!
//! Activations are 4-D and channels-last (NHWC). A 2-D tensor `(N, F)` of the ONNX model is
//! held as `(N, 1, 1, F)`. The converter produces a [`Graph`], the format module stores and
//! reloads it, and [`Graph::validate`] checks every index, shape and parameter before the run
//! path trusts it.

use crate::error::{Error, Result};

/// Index into [`Graph::tensors`].
pub type TensorId = u32;
/// Index into [`Graph::weights`].
pub type WeightId = u32;

/// Largest extent accepted for any single dimension; keeps every product well inside `u64`.
pub const MAX_DIM: u32 = 1 << 20;
/// Largest number of f32 elements accepted for one activation tensor (1 GiB of f32).
pub const MAX_TENSOR_ELEMS: u64 = 1 << 28;

/// Logical shape of an activation tensor, NHWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape4 {
    /// Batch.
    pub n: u32,
    /// Height.
    pub h: u32,
    /// Width.
    pub w: u32,
    /// Channels.
    pub c: u32,
}

impl Shape4 {
    /// Builds a shape from its four extents.
    pub const fn new(n: u32, h: u32, w: u32, c: u32) -> Self {
        Shape4 { n, h, w, c }
    }
    /// Number of logical elements (without channel padding).
    pub fn elems(&self) -> u64 {
        self.pixels().saturating_mul(self.c as u64)
    }
    /// Number of pixels `n*h*w`.
    pub fn pixels(&self) -> u64 {
        (self.n as u64 * self.h as u64).saturating_mul(self.w as u64)
    }
}

/// Activation function applied in an op's store.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`; Relu6 is `Clip{0, 6}`.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `x * sigmoid(x)`.
    Silu,
    /// `tanh(x)`.
    Tanh,
    /// `x · Φ(x) = x/2 · (1 + erf(x/√2))`, with [`erf`] (format 1.4).
    Gelu,
}

impl Activation {
    /// Applies the activation to one value. This is the scalar reference every kernel matches.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }
    /// Short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Clip { .. } => "clip",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::HardSigmoid { .. } => "hard_sigmoid",
            Activation::HardSwish => "hard_swish",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }
    fn params_finite(self) -> bool {
        match self {
            Activation::Clip { min, max } => !min.is_nan() && !max.is_nan() && min <= max,
            Activation::LeakyRelu { alpha } => alpha.is_finite(),
            Activation::HardSigmoid { alpha, beta } => alpha.is_finite() && beta.is_finite(),
            _ => true,
        }
    }
}

/// Element type of a stored weight tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE f32.
    F32,
    /// IEEE f16 (`half::f16`), widened to f32 at load.
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// How the elements of a weight tensor are ordered. See `docs/format.md`.
///
/// The *canonical* layouts are the ONNX orders; a kernel table asks for a packed layout and the
/// runtime repacks once at load when the file holds another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Row-major over the logical dims: `[OC][IC/g][KH][KW]` for conv weights, `[OC][IC]` for
    /// fully connected weights (IC in the runtime's NHWC flatten order), `[C]` for vectors.
    Canonical,
    /// Conv weights of an ungrouped conv, blocked by output channel:
    /// `[ceil(OC/b)][KH][KW][IC][b]`, zero padded.
    ConvOcBlock(u16),
    /// Depthwise conv weights `[KH][KW][round_up(C, b)]`, zero padded.
    DwBlock(u16),
    /// Fully connected weights blocked by output: `[ceil(OC/b)][IC][b]`, zero padded.
    FcOcBlock(u16),
    /// Winograd F(4x4, 3x3) transformed weights of an ungrouped 3x3 conv, `U = G g G^T` per
    /// (output, input) channel pair, blocked by output channel:
    /// `[36][ceil(OC/b)][IC][b]`, zero padded (see `kernels::pack`).
    WinogradF43(u16),
    /// Winograd F(2x2, 3x3) transformed weights of an ungrouped 3x3 conv, `U = G g G^T` per
    /// (output, input) channel pair with the 4x3 `G` of F(2, 3), blocked by output channel:
    /// `[16][ceil(OC/b)][IC][b]`, zero padded (see `kernels::pack`).
    WinogradF23(u16),
}

/// One stored weight tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightDesc {
    /// Name, for reports and errors.
    pub name: String,
    /// Element type in the file.
    pub dtype: DType,
    /// Element order in the file.
    pub layout: Layout,
    /// Logical (canonical) dims, 1 to 4 of them.
    pub dims: Vec<u32>,
    /// Byte offset of the data from the start of the file (64-byte aligned). Set by the writer.
    pub offset: u64,
    /// Byte length of the data as stored (padded layouts are longer than the logical size).
    pub byte_len: u64,
}

impl WeightDesc {
    /// Number of logical elements (product of `dims`).
    pub fn logical_elems(&self) -> u64 {
        self.dims
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64))
    }
}

/// An activation tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDesc {
    /// Name from the source model.
    pub name: String,
    /// Logical NHWC shape.
    pub shape: Shape4,
}

/// Convolution parameters. `inputs[0]` is the data; an optional `inputs[1]` of the output's
/// shape is added before the activation (a fused residual Add).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv {
    /// Input channels.
    pub in_c: u32,
    /// Output channels.
    pub out_c: u32,
    /// Groups; `in_c` and `out_c` are multiples of it. Depthwise is `groups == in_c == out_c`.
    pub groups: u32,
    /// Kernel `[kh, kw]`.
    pub kernel: [u32; 2],
    /// Stride `[sh, sw]`.
    pub stride: [u32; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [u32; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [u32; 4],
    /// Weights, logical dims `[out_c, in_c/groups, kh, kw]`.
    pub weight: WeightId,
    /// Optional bias, logical dims `[out_c]`.
    pub bias: Option<WeightId>,
    /// Fused activation.
    pub act: Activation,
}

impl Conv {
    /// True for a depthwise conv with channel multiplier 1.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_c && self.groups == self.out_c
    }
    /// Output spatial size for an input of `h x w`, or `None` when the window does not fit.
    pub fn output_hw(&self, h: u32, w: u32) -> Option<(u32, u32)> {
        window_out(
            h,
            self.kernel[0],
            self.stride[0],
            self.dilation[0],
            self.pads[0],
            self.pads[2],
        )
        .zip(window_out(
            w,
            self.kernel[1],
            self.stride[1],
            self.dilation[1],
            self.pads[1],
            self.pads[3],
        ))
    }
}

/// Output extent of a sliding window, or `None` when it does not fit.
pub fn window_out(size: u32, k: u32, s: u32, d: u32, p0: u32, p1: u32) -> Option<u32> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    let eff = (k as u64 - 1) * d as u64 + 1;
    let padded = size as u64 + p0 as u64 + p1 as u64;
    if padded < eff {
        return None;
    }
    u32::try_from((padded - eff) / s as u64 + 1).ok()
}

/// Fully connected layer. The input `(N, H, W, C)` is read in NHWC order as `H*W*C` features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fc {
    /// Input features (`H*W*C` of the input tensor).
    pub in_features: u32,
    /// Output features.
    pub out_features: u32,
    /// Weights, logical dims `[out_features, in_features]`.
    pub weight: WeightId,
    /// Optional bias `[out_features]`.
    pub bias: Option<WeightId>,
    /// Fused activation.
    pub act: Activation,
}

/// Pooling kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Average over the window.
    Avg {
        /// Divide by the full window size including padding (ONNX `count_include_pad=1`).
        count_include_pad: bool,
    },
}

/// Sliding-window pooling. ONNX `ceil_mode` is resolved by the converter into extra end padding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window `[kh, kw]`.
    pub kernel: [u32; 2],
    /// Stride `[sh, sw]`.
    pub stride: [u32; 2],
    /// Dilation `[dh, dw]` (MaxPool only; 1 for average).
    pub dilation: [u32; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [u32; 4],
    /// Extra bottom/right padding `[bottom, right]` that comes from ONNX `ceil_mode`. Windows
    /// may overhang into it; it is never counted in an average's divisor, and never wins a max.
    pub ceil_pads: [u32; 2],
}

/// Transposed convolution (ONNX `ConvTranspose`): every input pixel scatters `kh x kw`
/// output patches, `stride` apart; `pads` crop the full result, `out_pad` extends it at the
/// bottom and right.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deconv {
    /// Input channels.
    pub in_c: u32,
    /// Output channels.
    pub out_c: u32,
    /// Groups; `in_c` and `out_c` are multiples of it.
    pub groups: u32,
    /// Kernel `[kh, kw]`.
    pub kernel: [u32; 2],
    /// Stride `[sh, sw]`.
    pub stride: [u32; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [u32; 2],
    /// Cropping `[top, left, bottom, right]` of the full output.
    pub pads: [u32; 4],
    /// Extra output rows and columns `[bottom, right]` (ONNX `output_padding`).
    pub out_pad: [u32; 2],
    /// Weights, logical dims `[kh, kw, in_c, out_c/groups]`: input channel `i` of group
    /// `i / (in_c/groups)` feeds that group's `out_c/groups` outputs.
    pub weight: WeightId,
    /// Optional bias, logical dims `[out_c]`.
    pub bias: Option<WeightId>,
    /// Fused activation.
    pub act: Activation,
}

impl Deconv {
    /// Output spatial size for an input of `h x w`, or `None` when the cropping leaves
    /// nothing.
    pub fn output_hw(&self, h: u32, w: u32) -> Option<(u32, u32)> {
        let one = |size: u32, i: usize| -> Option<u32> {
            let full = (size as u64 - 1) * self.stride[i] as u64
                + (self.kernel[i] as u64 - 1) * self.dilation[i] as u64
                + 1
                + self.out_pad[i] as u64;
            let crop = self.pads[i] as u64 + self.pads[i + 2] as u64;
            u32::try_from(full.checked_sub(crop)?)
                .ok()
                .filter(|&o| o > 0)
        };
        if h == 0 || w == 0 {
            return None;
        }
        one(h, 0).zip(one(w, 1))
    }
}

/// How [`Op::Resize`] maps an output coordinate to an input coordinate (ONNX
/// `coordinate_transformation_mode`), per axis, with `scale = out / in` unless given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// `(o + 0.5) / scale - 0.5`.
    HalfPixel,
    /// Like `HalfPixel`, but `0` when the output extent is 1.
    PytorchHalfPixel,
    /// `o * (in - 1) / (out - 1)`, `0` when the output extent is 1.
    AlignCorners,
    /// `o / scale`.
    Asymmetric,
    /// `(o + 0.5) / scale`.
    TfHalfPixelForNn,
    /// `HalfPixel` shifted so that the sampling grid is centred (ONNX opset 19).
    HalfPixelSymmetric,
}

/// How [`Op::Resize`] in nearest mode rounds a coordinate (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRound {
    /// Round to nearest, halves down.
    RoundPreferFloor,
    /// Round to nearest, halves up.
    RoundPreferCeil,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
}

/// Interpolation of [`Op::Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Nearest neighbour with the given rounding.
    Nearest(NearestRound),
    /// Bilinear (ONNX `linear` over H and W); coordinates are clamped to the input.
    Linear,
}

/// Spatial resize over H and W.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    /// Interpolation.
    pub mode: ResizeMode,
    /// Coordinate transformation.
    pub coord: CoordMode,
    /// Scale `[sh, sw]` (output / input), finite and positive.
    pub scale: [f32; 2],
    /// Output size `[oh, ow]`; `0` means `floor(input * scale)` for that axis.
    pub size: [u32; 2],
}

impl Resize {
    /// Output spatial size for an input of `h x w`.
    pub fn output_hw(&self, h: u32, w: u32) -> Option<(u32, u32)> {
        let one = |size: u32, i: usize| -> Option<u32> {
            if self.size[i] != 0 {
                return Some(self.size[i]);
            }
            let o = (size as f64 * self.scale[i] as f64).floor();
            (o >= 1.0 && o <= MAX_DIM as f64).then_some(o as u32)
        };
        one(h, 0).zip(one(w, 1))
    }
}

/// Reduction of [`Op::Reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    /// Mean.
    Mean,
    /// Maximum.
    Max,
    /// Sum.
    Sum,
    /// Index of the first maximum along the one reduced axis, as an f32 (exact below 2^24);
    /// a NaN counts as the maximum (format 1.2).
    ArgMax,
}

/// Elementwise function of two tensors, [`Op::Binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `min(a, b)`.
    Min,
    /// `max(a, b)`.
    Max,
    /// `a^b` (`powf`).
    Pow,
    /// `a` where `a >= 0`, else `a * b` (ONNX `PRelu` with slope `b`).
    PRelu,
}

impl BinaryKind {
    /// Every kind, in the order of their format codes (code = index).
    pub const ALL: [BinaryKind; 8] = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Min,
        BinaryKind::Max,
        BinaryKind::Pow,
        BinaryKind::PRelu,
    ];

    /// The function on one pair of values: the scalar reference of the kernels.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
            BinaryKind::Min => a.min(b),
            BinaryKind::Max => a.max(b),
            BinaryKind::Pow => a.powf(b),
            BinaryKind::PRelu => {
                if a >= 0.0 {
                    a
                } else {
                    a * b
                }
            }
        }
    }
}

/// Elementwise function of one tensor, [`Op::Unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryKind {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `sqrt(x)`.
    Sqrt,
    /// `e^x`.
    Exp,
    /// `ln(x)`.
    Log,
    /// `1 / x`.
    Reciprocal,
    /// The error function.
    Erf,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
    Gelu,
    /// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    GeluTanh,
    /// `x · tanh(softplus(x))`.
    Mish,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
}

impl UnaryKind {
    /// Every kind, in the order of their format codes (code = index).
    pub const ALL: [UnaryKind; 13] = [
        UnaryKind::Neg,
        UnaryKind::Abs,
        UnaryKind::Sqrt,
        UnaryKind::Exp,
        UnaryKind::Log,
        UnaryKind::Reciprocal,
        UnaryKind::Erf,
        UnaryKind::Softplus,
        UnaryKind::Gelu,
        UnaryKind::GeluTanh,
        UnaryKind::Mish,
        UnaryKind::Floor,
        UnaryKind::Ceil,
    ];

    /// The function on one value: the scalar reference of the kernels.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryKind::Neg => -x,
            UnaryKind::Abs => x.abs(),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.ln(),
            UnaryKind::Reciprocal => 1.0 / x,
            UnaryKind::Erf => erf(x),
            UnaryKind::Softplus => softplus(x),
            UnaryKind::Gelu => Activation::Gelu.apply(x),
            UnaryKind::GeluTanh => {
                let k = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044_715 * x * x * x)).tanh())
            }
            UnaryKind::Mish => x * softplus(x).tanh(),
            UnaryKind::Floor => x.floor(),
            UnaryKind::Ceil => x.ceil(),
        }
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// The error function in f32, within 5e-7 of the exact value (about 8 ulp near 1): the
/// rational approximation `x·P(x²)/Q(x²)` of degrees 13 and 8 that XLA and Eigen use, on `x`
/// clamped to [-4, 4] ([`ERF_P`], [`ERF_Q`]; the SIMD GELU activations evaluate the same).
/// Branch-free, so the loops that call it vectorise; `erf_reference` in the tests below, the
/// series and continued fraction in f64, checks the bound on a dense grid.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let c = x.clamp(-4.0, 4.0);
    let x2 = c * c;
    // Plain multiply-adds: `mul_add` is a library call where the target has no FMA.
    let p = ERF_P[1..].iter().fold(ERF_P[0], |acc, &k| acc * x2 + k);
    let q = ERF_Q[1..].iter().fold(ERF_Q[0], |acc, &k| acc * x2 + k);
    c * p / q
}

/// Numerator coefficients of [`erf`], highest power of `x²` first.
pub const ERF_P: [f32; 7] = [
    -2.726_142_4e-10,
    2.770_681_5e-8,
    -2.101_024e-6,
    -5.692_506_2e-5,
    -7.349_906_4e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];

/// Denominator coefficients of [`erf`], highest power of `x²` first.
pub const ERF_Q: [f32; 5] = [
    -1.456_607_15e-5,
    -2.133_740_5e-4,
    -1.682_827e-3,
    -7.373_329_3e-3,
    -1.426_473_9e-2,
];

/// How [`Op::Pad`] fills the new elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// With a constant.
    Constant(f32),
    /// Mirrored without repeating the edge (`[a, b, c]` padded by 2: `c, b, a, b, c, b, a`).
    Reflect,
    /// Repeating the edge element.
    Edge,
}

/// Bit of [`Op::Reduce`]'s axes mask for H.
pub const REDUCE_H: u32 = 1;
/// Bit of [`Op::Reduce`]'s axes mask for W.
pub const REDUCE_W: u32 = 2;
/// Bit of [`Op::Reduce`]'s axes mask for C.
pub const REDUCE_C: u32 = 4;

/// The operation of a node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution, any kernel, stride, dilation, padding and groups.
    Conv(Conv),
    /// Fully connected (Gemm / MatMul with a constant weight).
    Fc(Fc),
    /// Max or average pooling.
    Pool(Pool),
    /// Mean over H and W; output `(N, 1, 1, C)`.
    GlobalAvgPool,
    /// Elementwise sum of two tensors of the same shape, then an activation.
    Add {
        /// Fused activation.
        act: Activation,
    },
    /// Elementwise product. `inputs[1]` has the same shape as `inputs[0]`, or `(N, 1, 1, C)`
    /// (per-channel scale, as in squeeze-excite).
    Mul,
    /// Concatenation of all inputs along channels.
    Concat,
    /// Standalone activation.
    Act(Activation),
    /// Softmax over channels.
    Softmax,
    /// `(N, H, W, C)` to `(N, 1, 1, C*H*W)` in NCHW (ONNX) element order.
    Flatten,
    /// Per-channel `x * scale + shift`, then an activation (an unfolded BatchNormalization).
    ChannelAffine {
        /// Scale `[C]`.
        scale: WeightId,
        /// Shift `[C]`.
        shift: WeightId,
        /// Fused activation.
        act: Activation,
    },
    /// Strided window of the input: element `o` of axis `a` (NHWC) is input element
    /// `start[a] + o * step[a]`, for `o` below `ceil((min(end[a], dim) - start[a]) / step[a])`.
    Slice {
        /// First element per axis `[n, h, w, c]`.
        start: [u32; 4],
        /// End (exclusive) per axis; clamped to the input's extent.
        end: [u32; 4],
        /// Step per axis, at least 1.
        step: [u32; 4],
    },
    /// Spatial resize (ONNX `Resize` over H and W).
    Resize(Resize),
    /// Transposed convolution.
    Deconv(Deconv),
    /// Channel shuffle: output channel `i * groups + j` is input channel `j * (C / groups) + i`
    /// (ShuffleNet's reshape, transpose, reshape).
    ChannelShuffle {
        /// Groups; divides C.
        groups: u32,
    },
    /// Permutation of the four ONNX (NCHW) axes: output axis `k` is input axis `perm[k]`.
    /// The output is held, like every tensor, as NHWC of its own ONNX dims.
    Transpose {
        /// The ONNX permutation of `[0, 1, 2, 3]`.
        perm: [u32; 4],
    },
    /// Reduction over some of H, W and C (a mask of [`REDUCE_H`], [`REDUCE_W`],
    /// [`REDUCE_C`]); reduced axes keep extent 1.
    Reduce {
        /// Mean, max or sum.
        kind: ReduceKind,
        /// Axes mask, non-zero.
        axes: u32,
    },
    /// `kind(a, b)` elementwise, then `act`. Each axis of each input has the output's extent
    /// or 1 (broadcast, as in NumPy).
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
    /// A constant tensor: no input; the output holds the weight, whose dims are the output's
    /// `[n, h, w, c]`.
    Constant {
        /// The values, canonical layout, dims `[n, h, w, c]`.
        weight: WeightId,
    },
    /// Padding of every axis (NHWC): `begin[a]` elements before and `end[a]` after, filled
    /// by `mode`.
    Pad {
        /// Elements before, per axis `[n, h, w, c]`.
        begin: [u32; 4],
        /// Elements after, per axis.
        end: [u32; 4],
        /// How the new elements are filled.
        mode: PadMode,
    },
    /// Rearranges blocks of `block x block` channels into space (ONNX `DepthToSpace`):
    /// `(N, H, W, C)` to `(N, H·b, W·b, C/b²)`.
    DepthToSpace {
        /// Block size `b`.
        block: u32,
        /// ONNX mode CRD (column-row-depth) instead of the default DCR.
        crd: bool,
    },
    /// The inverse (ONNX `SpaceToDepth`): `(N, H, W, C)` to `(N, H/b, W/b, C·b²)`.
    SpaceToDepth {
        /// Block size `b`.
        block: u32,
    },
    /// Repeats the input `reps[a]` times along each axis (NHWC).
    Tile {
        /// Repetitions per axis `[n, h, w, c]`, at least 1.
        reps: [u32; 4],
    },
    /// Softmax, or its logarithm, along one axis (`1` H, `2` W, `3` C of NHWC).
    SoftmaxAxis {
        /// The axis, 1 to 3.
        axis: u32,
        /// LogSoftmax.
        log: bool,
    },
    /// The same elements in the ONNX (NCHW) order, in another shape (an ONNX `Reshape` that
    /// moves data in NHWC, such as `[N, 64, L]` to `[N, 4, 16, L]`). The element counts agree.
    Reshape {
        /// The output shape `[n, h, w, c]`, each at least 1.
        shape: [u32; 4],
    },
    /// Concatenation along H (`axis` 1) or W (`axis` 2) of NHWC; the inputs agree on the
    /// other axes. (Concatenation along C is [`Op::Concat`].)
    ConcatAxis {
        /// 1 (H) or 2 (W).
        axis: u32,
    },
    /// Normalisation over the channels of each pixel (format 1.4): `(x - mean) /
    /// sqrt(variance + eps) * scale + shift`, the mean and the (biased) variance taken over
    /// the pixel's channels; ONNX's `LayerNormalization` over the last axis of an NHWC tensor.
    LayerNorm {
        /// Scale `[C]`.
        scale: WeightId,
        /// Shift `[C]`.
        shift: WeightId,
        /// Added to the variance; finite and not negative.
        eps: f32,
    },
}

impl Op {
    /// Short name, for reports and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(c) if c.is_depthwise() => "ConvDw",
            Op::Conv(_) => "Conv",
            Op::Fc(_) => "Fc",
            Op::Pool(Pool {
                kind: PoolKind::Max,
                ..
            }) => "MaxPool",
            Op::Pool(_) => "AvgPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Add { .. } => "Add",
            Op::Mul => "Mul",
            Op::Concat => "Concat",
            Op::Act(_) => "Act",
            Op::Softmax => "Softmax",
            Op::Flatten => "Flatten",
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::Slice { .. } => "Slice",
            Op::Resize(_) => "Resize",
            Op::Deconv(_) => "Deconv",
            Op::ChannelShuffle { .. } => "ChannelShuffle",
            Op::Transpose { .. } => "Transpose",
            Op::Reduce { .. } => "Reduce",
            Op::Binary { .. } => "Binary",
            Op::Unary { .. } => "Unary",
            Op::Constant { .. } => "Constant",
            Op::Pad { .. } => "Pad",
            Op::DepthToSpace { .. } => "DepthToSpace",
            Op::SpaceToDepth { .. } => "SpaceToDepth",
            Op::Tile { .. } => "Tile",
            Op::SoftmaxAxis { log: false, .. } => "Softmax",
            Op::SoftmaxAxis { log: true, .. } => "LogSoftmax",
            Op::Reshape { .. } => "Reshape",
            Op::ConcatAxis { .. } => "ConcatAxis",
            Op::LayerNorm { .. } => "LayerNorm",
        }
    }

    /// The activation the op applies in its store, if it has one.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Op::Conv(c) => Some(c.act),
            Op::Fc(f) => Some(f.act),
            Op::Deconv(d) => Some(d.act),
            Op::Act(a) | Op::Add { act: a } | Op::ChannelAffine { act: a, .. } => Some(*a),
            Op::Binary { act, .. } => Some(*act),
            _ => None,
        }
    }

    /// Weights this op reads, in a fixed order.
    pub fn weight_ids(&self) -> Vec<WeightId> {
        match self {
            Op::Conv(c) => std::iter::once(c.weight).chain(c.bias).collect(),
            Op::Fc(f) => std::iter::once(f.weight).chain(f.bias).collect(),
            Op::ChannelAffine { scale, shift, .. } | Op::LayerNorm { scale, shift, .. } => {
                vec![*scale, *shift]
            }
            Op::Deconv(d) => std::iter::once(d.weight).chain(d.bias).collect(),
            Op::Constant { weight } => vec![*weight],
            _ => Vec::new(),
        }
    }

    /// Multiply-accumulate count for one run, for reports (`FLOPs = 2 * macs`).
    pub fn macs(&self, inputs: &[Shape4], output: Shape4) -> u64 {
        match self {
            Op::Conv(c) => {
                output.elems()
                    * (c.in_c / c.groups.max(1)) as u64
                    * c.kernel[0] as u64
                    * c.kernel[1] as u64
            }
            Op::Fc(f) => output.n as u64 * f.in_features as u64 * f.out_features as u64,
            Op::Pool(p) => output.elems() * p.kernel[0] as u64 * p.kernel[1] as u64,
            Op::GlobalAvgPool | Op::Reduce { .. } => inputs.first().map_or(0, |s| s.elems()),
            Op::Deconv(d) => {
                inputs.first().map_or(0, |s| s.elems())
                    * (d.out_c / d.groups.max(1)) as u64
                    * d.kernel[0] as u64
                    * d.kernel[1] as u64
            }
            _ => output.elems(),
        }
    }
}

/// One step of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name from the source model.
    pub name: String,
    /// What it does.
    pub op: Op,
    /// Input tensors.
    pub inputs: Vec<TensorId>,
    /// Output tensors (exactly one for every op of format v1).
    pub outputs: Vec<TensorId>,
}

/// A model input or output as the user sees it: its name and its ONNX (NCHW) shape.
#[derive(Clone, Debug, PartialEq)]
pub struct IoDesc {
    /// Name in the source model.
    pub name: String,
    /// The activation tensor that holds it.
    pub tensor: TensorId,
    /// Shape as in the ONNX model: `[N, C, H, W]` for 4-D, `[N, F]` for 2-D.
    pub dims: Vec<u32>,
}

impl IoDesc {
    /// Number of elements of the user-facing tensor.
    pub fn elems(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }
}

/// Who made the model, and from what.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Metadata {
    /// Tool that wrote the file, e.g. `smof-converter`.
    pub producer: String,
    /// Version of that tool.
    pub producer_version: String,
    /// Model name, e.g. the source file stem.
    pub model_name: String,
    /// Free-form description (source producer, opset, pruning summary).
    pub description: String,
}

/// A whole model graph: what the converter writes and the runtime runs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// Provenance.
    pub meta: Metadata,
    /// Activation tensors.
    pub tensors: Vec<TensorDesc>,
    /// Weight tensors.
    pub weights: Vec<WeightDesc>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Model inputs.
    pub inputs: Vec<IoDesc>,
    /// Model outputs.
    pub outputs: Vec<IoDesc>,
}

fn bad(node: &Node, index: usize, what: impl Into<String>) -> Error {
    Error::InvalidGraph {
        node: if node.name.is_empty() {
            format!("#{index}")
        } else {
            node.name.clone()
        },
        op: node.op.name(),
        what: what.into(),
    }
}

impl Graph {
    /// Computes the output shape of `node` from its input shapes, checking every parameter.
    pub fn infer_output(&self, index: usize, node: &Node) -> Result<Shape4> {
        let shape_of = |t: TensorId| -> Result<Shape4> {
            self.tensors
                .get(t as usize)
                .map(|d| d.shape)
                .ok_or_else(|| bad(node, index, format!("input tensor {t} out of range")))
        };
        let ins: Vec<Shape4> = node
            .inputs
            .iter()
            .map(|&t| shape_of(t))
            .collect::<Result<_>>()?;
        let arity = |lo: usize, hi: usize| -> Result<()> {
            if ins.len() < lo || ins.len() > hi {
                Err(bad(
                    node,
                    index,
                    format!("expects {lo}..={hi} inputs, has {}", ins.len()),
                ))
            } else {
                Ok(())
            }
        };
        let weight = |id: WeightId, dims: &[u32]| -> Result<()> {
            let w = self
                .weights
                .get(id as usize)
                .ok_or_else(|| bad(node, index, format!("weight {id} out of range")))?;
            if w.dims != dims {
                return Err(bad(
                    node,
                    index,
                    format!(
                        "weight {} has dims {:?}, expected {:?}",
                        w.name, w.dims, dims
                    ),
                ));
            }
            Ok(())
        };
        let act_ok = |a: Activation| -> Result<()> {
            if a.params_finite() {
                Ok(())
            } else {
                Err(bad(node, index, "activation parameters are not finite"))
            }
        };
        let x = ins.first().copied().unwrap_or_default();
        match &node.op {
            Op::Conv(c) => {
                arity(1, 2)?;
                act_ok(c.act)?;
                if c.groups == 0
                    || c.in_c % c.groups != 0
                    || c.out_c % c.groups != 0
                    || c.out_c == 0
                {
                    return Err(bad(node, index, "groups must divide in_c and out_c"));
                }
                if c.in_c != x.c {
                    return Err(bad(
                        node,
                        index,
                        format!("in_c {} but input has {} channels", c.in_c, x.c),
                    ));
                }
                let too_big = |v: &[u32]| v.iter().any(|&e| e > 1024);
                if too_big(&c.kernel)
                    || too_big(&c.stride)
                    || too_big(&c.dilation)
                    || too_big(&c.pads)
                {
                    return Err(bad(
                        node,
                        index,
                        "kernel, stride, dilation or padding above 1024",
                    ));
                }
                let (oh, ow) = c.output_hw(x.h, x.w).ok_or_else(|| {
                    bad(node, index, "kernel window does not fit the padded input")
                })?;
                weight(
                    c.weight,
                    &[c.out_c, c.in_c / c.groups, c.kernel[0], c.kernel[1]],
                )?;
                if let Some(b) = c.bias {
                    weight(b, &[c.out_c])?;
                }
                let out = Shape4::new(x.n, oh, ow, c.out_c);
                if let Some(r) = ins.get(1) {
                    if *r != out {
                        return Err(bad(
                            node,
                            index,
                            "fused residual has a different shape than the output",
                        ));
                    }
                }
                Ok(out)
            }
            Op::Fc(f) => {
                arity(1, 1)?;
                act_ok(f.act)?;
                let feats = x.h as u64 * x.w as u64 * x.c as u64;
                if feats != f.in_features as u64 || f.out_features == 0 {
                    return Err(bad(
                        node,
                        index,
                        format!("in_features {} but input has {feats}", f.in_features),
                    ));
                }
                weight(f.weight, &[f.out_features, f.in_features])?;
                if let Some(b) = f.bias {
                    weight(b, &[f.out_features])?;
                }
                Ok(Shape4::new(x.n, 1, 1, f.out_features))
            }
            Op::Pool(p) => {
                arity(1, 1)?;
                let big = |v: &[u32]| v.iter().any(|&e| e > 1024);
                if big(&p.kernel)
                    || big(&p.stride)
                    || big(&p.dilation)
                    || big(&p.pads)
                    || big(&p.ceil_pads)
                {
                    return Err(bad(node, index, "window parameters above 1024"));
                }
                let oh = window_out(
                    x.h,
                    p.kernel[0],
                    p.stride[0],
                    p.dilation[0],
                    p.pads[0],
                    p.pads[2] + p.ceil_pads[0],
                );
                let ow = window_out(
                    x.w,
                    p.kernel[1],
                    p.stride[1],
                    p.dilation[1],
                    p.pads[1],
                    p.pads[3] + p.ceil_pads[1],
                );
                let (oh, ow) = oh
                    .zip(ow)
                    .ok_or_else(|| bad(node, index, "pool window does not fit"))?;
                Ok(Shape4::new(x.n, oh, ow, x.c))
            }
            Op::GlobalAvgPool => {
                arity(1, 1)?;
                Ok(Shape4::new(x.n, 1, 1, x.c))
            }
            Op::Add { act } => {
                arity(2, 2)?;
                act_ok(*act)?;
                if ins[0] != ins[1] {
                    return Err(bad(
                        node,
                        index,
                        format!("shapes differ: {:?} and {:?}", ins[0], ins[1]),
                    ));
                }
                Ok(x)
            }
            Op::Mul => {
                arity(2, 2)?;
                let y = ins[1];
                let per_channel = y.n == x.n && y.h == 1 && y.w == 1 && y.c == x.c;
                if y != x && !per_channel {
                    return Err(bad(
                        node,
                        index,
                        format!("cannot broadcast {:?} to {:?}", y, x),
                    ));
                }
                Ok(x)
            }
            Op::Concat => {
                arity(1, 4096)?;
                let mut c = 0u64;
                for s in &ins {
                    if (s.n, s.h, s.w) != (x.n, x.h, x.w) {
                        return Err(bad(node, index, "inputs differ in N, H or W"));
                    }
                    c += s.c as u64;
                }
                let c = u32::try_from(c)
                    .ok()
                    .filter(|&c| c <= MAX_DIM)
                    .ok_or_else(|| bad(node, index, "too many channels"))?;
                Ok(Shape4::new(x.n, x.h, x.w, c))
            }
            Op::Act(a) => {
                arity(1, 1)?;
                act_ok(*a)?;
                Ok(x)
            }
            Op::Softmax => {
                arity(1, 1)?;
                Ok(x)
            }
            Op::Flatten => {
                arity(1, 1)?;
                let f = x.h as u64 * x.w as u64 * x.c as u64;
                let f =
                    u32::try_from(f).map_err(|_| bad(node, index, "flattened size overflows"))?;
                Ok(Shape4::new(x.n, 1, 1, f))
            }
            Op::ChannelAffine { scale, shift, act } => {
                arity(1, 1)?;
                act_ok(*act)?;
                weight(*scale, &[x.c])?;
                weight(*shift, &[x.c])?;
                Ok(x)
            }
            Op::LayerNorm { scale, shift, eps } => {
                arity(1, 1)?;
                if !(eps.is_finite() && *eps >= 0.0) {
                    return Err(bad(
                        node,
                        index,
                        format!("eps {eps} is not finite and >= 0"),
                    ));
                }
                weight(*scale, &[x.c])?;
                weight(*shift, &[x.c])?;
                Ok(x)
            }
            Op::Slice { start, end, step } => {
                arity(1, 1)?;
                let dims = [x.n, x.h, x.w, x.c];
                let mut out = [0u32; 4];
                for a in 0..4 {
                    let e = end[a].min(dims[a]);
                    if step[a] == 0 || start[a] >= e {
                        return Err(bad(
                            node,
                            index,
                            format!(
                                "axis {a}: start {} end {} step {} select nothing of {}",
                                start[a], end[a], step[a], dims[a]
                            ),
                        ));
                    }
                    out[a] = (e - start[a]).div_ceil(step[a]);
                }
                Ok(Shape4::new(out[0], out[1], out[2], out[3]))
            }
            Op::Resize(r) => {
                arity(1, 1)?;
                if !r.scale.iter().all(|s| s.is_finite() && *s > 0.0) {
                    return Err(bad(node, index, "scales must be finite and positive"));
                }
                let (oh, ow) = r
                    .output_hw(x.h, x.w)
                    .filter(|&(h, w)| h <= MAX_DIM && w <= MAX_DIM)
                    .ok_or_else(|| bad(node, index, "output size is zero or too large"))?;
                Ok(Shape4::new(x.n, oh, ow, x.c))
            }
            Op::Deconv(d) => {
                arity(1, 1)?;
                act_ok(d.act)?;
                if d.groups == 0
                    || d.in_c % d.groups != 0
                    || d.out_c % d.groups != 0
                    || d.out_c == 0
                {
                    return Err(bad(node, index, "groups must divide in_c and out_c"));
                }
                if d.in_c != x.c {
                    return Err(bad(
                        node,
                        index,
                        format!("in_c {} but input has {} channels", d.in_c, x.c),
                    ));
                }
                let small = |v: &[u32], lo: u32| v.iter().all(|&e| (lo..=1024).contains(&e));
                if !small(&d.kernel, 1)
                    || !small(&d.stride, 1)
                    || !small(&d.dilation, 1)
                    || !small(&d.pads, 0)
                    || (0..2).any(|i| d.out_pad[i] >= d.stride[i].max(d.dilation[i]))
                {
                    return Err(bad(
                        node,
                        index,
                        "kernel, stride or dilation outside 1..=1024, padding above 1024, or \
                         output padding not below the stride or dilation",
                    ));
                }
                let (oh, ow) = d
                    .output_hw(x.h, x.w)
                    .filter(|&(h, w)| h <= MAX_DIM && w <= MAX_DIM)
                    .ok_or_else(|| bad(node, index, "output size is zero or too large"))?;
                weight(
                    d.weight,
                    &[d.kernel[0], d.kernel[1], d.in_c, d.out_c / d.groups],
                )?;
                if let Some(b) = d.bias {
                    weight(b, &[d.out_c])?;
                }
                Ok(Shape4::new(x.n, oh, ow, d.out_c))
            }
            Op::ChannelShuffle { groups } => {
                arity(1, 1)?;
                if *groups == 0 || x.c % groups != 0 {
                    return Err(bad(node, index, "groups must divide the channels"));
                }
                Ok(x)
            }
            Op::Transpose { perm } => {
                arity(1, 1)?;
                let mut seen = [false; 4];
                for &p in perm {
                    match seen.get_mut(p as usize) {
                        Some(s) if !*s => *s = true,
                        _ => return Err(bad(node, index, format!("{perm:?} is no permutation"))),
                    }
                }
                let nchw = [x.n, x.c, x.h, x.w];
                let o = perm.map(|p| nchw[p as usize]);
                Ok(Shape4::new(o[0], o[2], o[3], o[1]))
            }
            Op::Reduce { kind, axes } => {
                arity(1, 1)?;
                if *axes == 0 || *axes & !(REDUCE_H | REDUCE_W | REDUCE_C) != 0 {
                    return Err(bad(node, index, format!("axes mask {axes} is invalid")));
                }
                if *kind == ReduceKind::ArgMax && axes.count_ones() != 1 {
                    return Err(bad(node, index, "ArgMax reduces exactly one axis"));
                }
                let keep = |bit: u32, d: u32| if axes & bit != 0 { 1 } else { d };
                Ok(Shape4::new(
                    x.n,
                    keep(REDUCE_H, x.h),
                    keep(REDUCE_W, x.w),
                    keep(REDUCE_C, x.c),
                ))
            }
            Op::Binary { act, .. } => {
                arity(2, 2)?;
                act_ok(*act)?;
                let (a, b) = (ins[0], ins[1]);
                let one = |p: u32, q: u32| -> Result<u32> {
                    if p == q || q == 1 {
                        Ok(p)
                    } else if p == 1 {
                        Ok(q)
                    } else {
                        Err(bad(
                            node,
                            index,
                            format!("cannot broadcast {a:?} and {b:?}"),
                        ))
                    }
                };
                Ok(Shape4::new(
                    one(a.n, b.n)?,
                    one(a.h, b.h)?,
                    one(a.w, b.w)?,
                    one(a.c, b.c)?,
                ))
            }
            Op::Unary { .. } => {
                arity(1, 1)?;
                Ok(x)
            }
            Op::Constant { weight: w } => {
                arity(0, 0)?;
                let d = self
                    .weights
                    .get(*w as usize)
                    .map(|d| d.dims.clone())
                    .ok_or_else(|| bad(node, index, format!("weight {w} out of range")))?;
                match d.as_slice() {
                    [n, h, w, c] => Ok(Shape4::new(*n, *h, *w, *c)),
                    _ => Err(bad(node, index, format!("constant dims {d:?} are not 4-D"))),
                }
            }
            Op::Pad { begin, end, mode } => {
                arity(1, 1)?;
                let dims = [x.n, x.h, x.w, x.c];
                if let PadMode::Constant(v) = mode {
                    if v.is_nan() {
                        return Err(bad(node, index, "the pad value is NaN"));
                    }
                }
                let mut out = [0u32; 4];
                for a in 0..4 {
                    if *mode == PadMode::Reflect && (begin[a] >= dims[a] || end[a] >= dims[a]) {
                        return Err(bad(node, index, "reflect padding must be below the extent"));
                    }
                    out[a] = u32::try_from(dims[a] as u64 + begin[a] as u64 + end[a] as u64)
                        .ok()
                        .filter(|&o| o <= MAX_DIM)
                        .ok_or_else(|| bad(node, index, "padded extent too large"))?;
                }
                Ok(Shape4::new(out[0], out[1], out[2], out[3]))
            }
            Op::DepthToSpace { block, .. } => {
                arity(1, 1)?;
                let b = *block;
                if b == 0 || b > 64 || x.c % (b * b) != 0 {
                    return Err(bad(node, index, "block² must divide the channels"));
                }
                let (h, w) = (x.h as u64 * b as u64, x.w as u64 * b as u64);
                if h > MAX_DIM as u64 || w > MAX_DIM as u64 {
                    return Err(bad(node, index, "output too large"));
                }
                Ok(Shape4::new(x.n, h as u32, w as u32, x.c / (b * b)))
            }
            Op::SpaceToDepth { block } => {
                arity(1, 1)?;
                let b = *block;
                if b == 0 || b > 64 || x.h % b != 0 || x.w % b != 0 {
                    return Err(bad(node, index, "block must divide H and W"));
                }
                let c = x.c as u64 * (b * b) as u64;
                if c > MAX_DIM as u64 {
                    return Err(bad(node, index, "output too large"));
                }
                Ok(Shape4::new(x.n, x.h / b, x.w / b, c as u32))
            }
            Op::SoftmaxAxis { axis, .. } => {
                arity(1, 1)?;
                if !(1..=3).contains(axis) {
                    return Err(bad(node, index, format!("axis {axis} is not 1, 2 or 3")));
                }
                Ok(x)
            }
            Op::Tile { reps } => {
                arity(1, 1)?;
                let dims = [x.n, x.h, x.w, x.c];
                let mut out = [0u32; 4];
                for a in 0..4 {
                    out[a] = u32::try_from(dims[a] as u64 * reps[a] as u64)
                        .ok()
                        .filter(|o| (1..=MAX_DIM).contains(o))
                        .ok_or_else(|| bad(node, index, "repetitions zero or too many"))?;
                }
                Ok(Shape4::new(out[0], out[1], out[2], out[3]))
            }
            Op::Reshape { shape } => {
                arity(1, 1)?;
                let [n, h, w, c] = *shape;
                let o = Shape4::new(n, h, w, c);
                if shape.iter().any(|&d| d == 0 || d > MAX_DIM)
                    || o.elems() > MAX_TENSOR_ELEMS
                    || o.elems() != x.elems()
                {
                    return Err(bad(node, index, format!("cannot reshape {x:?} to {o:?}")));
                }
                Ok(o)
            }
            Op::ConcatAxis { axis } => {
                arity(1, 4096)?;
                if !(1..=2).contains(axis) {
                    return Err(bad(node, index, format!("axis {axis} is not 1 or 2")));
                }
                let mut total = 0u64;
                for s in &ins {
                    let other = if *axis == 1 { s.w } else { s.h };
                    let first = if *axis == 1 { x.w } else { x.h };
                    if (s.n, s.c, other) != (x.n, x.c, first) {
                        return Err(bad(node, index, "inputs differ off the concatenation axis"));
                    }
                    total += if *axis == 1 { s.h } else { s.w } as u64;
                }
                let t = u32::try_from(total)
                    .ok()
                    .filter(|&t| t <= MAX_DIM)
                    .ok_or_else(|| bad(node, index, "concatenation too long"))?;
                Ok(if *axis == 1 {
                    Shape4::new(x.n, t, x.w, x.c)
                } else {
                    Shape4::new(x.n, x.h, t, x.c)
                })
            }
        }
    }

    /// Checks the whole graph: every index in range, every shape consistent with its op,
    /// every tensor written once before it is read, inputs and outputs well formed.
    /// After this returns `Ok`, the run path trusts the graph.
    pub fn validate(&self) -> Result<()> {
        let inval = |what: String| Error::InvalidGraph {
            node: "graph".into(),
            op: "-",
            what,
        };
        for t in &self.tensors {
            let s = t.shape;
            if [s.n, s.h, s.w, s.c].iter().any(|&d| d == 0 || d > MAX_DIM) {
                return Err(inval(format!("tensor {} has shape {:?}", t.name, s)));
            }
            if s.elems() > MAX_TENSOR_ELEMS {
                return Err(inval(format!(
                    "tensor {} is too large ({} elements)",
                    t.name,
                    s.elems()
                )));
            }
        }
        for w in &self.weights {
            if w.dims.is_empty()
                || w.dims.len() > 4
                || w.dims.iter().any(|&d| d == 0 || d > MAX_DIM)
            {
                return Err(inval(format!("weight {} has dims {:?}", w.name, w.dims)));
            }
            if w.logical_elems() > MAX_TENSOR_ELEMS {
                return Err(inval(format!("weight {} is too large", w.name)));
            }
        }
        let mut written = vec![false; self.tensors.len()];
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(inval(
                "a model needs at least one input and one output".into(),
            ));
        }
        for io in &self.inputs {
            let t = self.tensors.get(io.tensor as usize).ok_or_else(|| {
                inval(format!(
                    "input {} names tensor {} out of range",
                    io.name, io.tensor
                ))
            })?;
            check_io_dims(io, t.shape).map_err(inval)?;
            if std::mem::replace(&mut written[io.tensor as usize], true) {
                return Err(inval(format!("input {} listed twice", io.name)));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.outputs.len() != 1 {
                return Err(bad(
                    node,
                    i,
                    "every node has exactly one output in format v1",
                ));
            }
            for &t in &node.inputs {
                if !written.get(t as usize).copied().unwrap_or(false) {
                    return Err(bad(
                        node,
                        i,
                        format!("reads tensor {t} before it is written"),
                    ));
                }
            }
            let out = node.outputs[0];
            let desc = self
                .tensors
                .get(out as usize)
                .ok_or_else(|| bad(node, i, format!("output tensor {out} out of range")))?;
            let shape = self.infer_output(i, node)?;
            if shape != desc.shape {
                return Err(bad(
                    node,
                    i,
                    format!(
                        "output {} is declared {:?} but computes to {:?}",
                        desc.name, desc.shape, shape
                    ),
                ));
            }
            if std::mem::replace(&mut written[out as usize], true) {
                return Err(bad(node, i, format!("tensor {} written twice", desc.name)));
            }
        }
        for io in &self.outputs {
            let t = self.tensors.get(io.tensor as usize).ok_or_else(|| {
                inval(format!(
                    "output {} names tensor {} out of range",
                    io.name, io.tensor
                ))
            })?;
            check_io_dims(io, t.shape).map_err(inval)?;
            if !written[io.tensor as usize] {
                return Err(inval(format!("output {} is never computed", io.name)));
            }
        }
        Ok(())
    }
}

impl Graph {
    /// This graph with other input shapes (ONNX dims, one entry per input; an empty entry
    /// keeps that input's shape): every tensor shape is inferred again and the result
    /// validated, so a shape the layers cannot take (other channels, a fully connected layer
    /// fed a different spatial size) is an error naming the layer.
    pub fn with_input_shapes(&self, shapes: &[Vec<usize>]) -> Result<Graph> {
        let bad_input = |index: usize, what: String| Error::BadInput {
            index,
            name: self
                .inputs
                .get(index)
                .map_or(String::new(), |i| i.name.clone()),
            what,
        };
        if shapes.len() > self.inputs.len() {
            return Err(Error::InputCount {
                expected: self.inputs.len(),
                got: shapes.len(),
            });
        }
        let mut g = self.clone();
        for (i, dims) in shapes.iter().enumerate() {
            if dims.is_empty() {
                continue;
            }
            let d: Vec<u32> = dims
                .iter()
                .map(|&v| u32::try_from(v).ok().filter(|&v| v > 0 && v <= MAX_DIM))
                .collect::<Option<_>>()
                .ok_or_else(|| bad_input(i, format!("shape {dims:?} has a zero or huge dim")))?;
            let shape = match d.as_slice() {
                [n, c, h, w] if g.inputs[i].dims.len() == 4 => Shape4::new(*n, *h, *w, *c),
                [n, f] if g.inputs[i].dims.len() == 2 => Shape4::new(*n, 1, 1, *f),
                [n, c, l] if g.inputs[i].dims.len() == 3 => Shape4::new(*n, 1, *l, *c),
                _ => {
                    return Err(bad_input(
                        i,
                        format!(
                            "shape {dims:?} does not have the model's rank {}",
                            g.inputs[i].dims.len()
                        ),
                    ))
                }
            };
            g.inputs[i].dims = d;
            g.tensors[g.inputs[i].tensor as usize].shape = shape;
        }
        for i in 0..g.nodes.len() {
            let shape = g.infer_output(i, &g.nodes[i])?;
            let out = g.nodes[i].outputs[0] as usize;
            g.tensors[out].shape = shape;
        }
        for o in &mut g.outputs {
            let s = g.tensors[o.tensor as usize].shape;
            o.dims = match o.dims.len() {
                4 => vec![s.n, s.c, s.h, s.w],
                3 => vec![s.n, s.c, s.h * s.w],
                _ => vec![s.n, s.h * s.w * s.c],
            };
        }
        g.validate()?;
        Ok(g)
    }
}

/// The user-facing dims of an input or output must describe the same elements as the tensor.
fn check_io_dims(io: &IoDesc, s: Shape4) -> std::result::Result<(), String> {
    let ok = match io.dims.as_slice() {
        [n, c, h, w] => (*n, *c, *h, *w) == (s.n, s.c, s.h, s.w),
        [n, f] => (*n, 1, 1, *f) == (s.n, s.h, s.w, s.c),
        // `[N, C, L]`: the NCHW order of `[N, C, H, W]` with `L = H·W`.
        [n, c, l] => (*n, *c) == (s.n, s.c) && *l as u64 == s.h as u64 * s.w as u64,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} has dims {:?}, which do not match tensor shape {:?}",
            io.name, io.dims, s
        ))
    }
}

#[cfg(test)]
mod tests {
    /// The error function in f64: the series below 2.5, the continued fraction of erfc
    /// above, both exact to far below f32's precision.
    fn erf_reference(x: f32) -> f64 {
        let x = x as f64;
        let a = x.abs();
        let r = if a < 2.5 {
            // erf(a) = 2/√π Σ (-1)^n a^(2n+1) / (n! (2n+1)).
            let (mut term, mut sum) = (a, a);
            for n in 1..80 {
                term *= -a * a / n as f64;
                let t = term / (2 * n + 1) as f64;
                sum += t;
                if t.abs() < 1e-17 * sum.abs() {
                    break;
                }
            }
            sum * std::f64::consts::FRAC_2_SQRT_PI
        } else if a < 6.0 {
            // erfc(a) = e^(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))).
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / (f * std::f64::consts::PI.sqrt())
        } else {
            1.0
        };
        if x < 0.0 {
            -r
        } else {
            r
        }
    }

    #[test]
    fn erf_within_5e_7_everywhere() {
        let n = 400_000;
        for i in 0..=n {
            let x = -8.0 + 16.0 * i as f32 / n as f32;
            let (got, want) = (super::erf(x) as f64, erf_reference(x));
            assert!((got - want).abs() <= 5e-7, "erf({x}) = {got}, not {want}");
        }
        for x in [
            0.0f32,
            -0.0,
            1e-30,
            -1e-20,
            1e-6,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
        ] {
            let (got, want) = (super::erf(x) as f64, erf_reference(x.clamp(-8.0, 8.0)));
            assert!(
                (got - want).abs() <= 5e-7 * want.abs().max(1e-30),
                "erf({x}) = {got}"
            );
        }
        assert_eq!(super::erf(f32::NEG_INFINITY), -1.0);
        assert!(super::erf(f32::NAN).is_nan());
    }
}
