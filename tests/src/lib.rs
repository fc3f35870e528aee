//! Helpers for the workspace integration tests: building ONNX graphs in code, running them
//! through tract-onnx as the independent reference, and through SMOF.
//!
//! Every test follows the same path: build (or load) an ONNX model, run it with tract
//! ([`tract_run`]), convert it with `smof-converter` and run it with a SMOF [`Session`]
//! on every kernel table this CPU supports ([`smof_run`], [`kernel_choices`]), then compare
//! with [`assert_close`] at [`F32_REL`] (f32 weights) or [`F16_REL`] / [`F16_MODEL_FACTOR`]
//! (f16 weights).

use prost::Message;
use smof::kernels::KernelTable;
use smof::{KernelChoice, Model, ModelOptions, Session, SessionOptions};
use smof_converter::onnx::proto;
use std::panic::{catch_unwind, AssertUnwindSafe};

use smof_converter as conv;

pub use smof_converter::onnx::proto as onnx_proto;

/// Tolerance for f32 weights, relative to the largest magnitude of the reference output:
/// `max |got - want| <= F32_REL * max |want|`. SMOF and tract compute the same f32 math but
/// sum in a different order (blocked, vectorised, BatchNormalization folded into the conv
/// weights, fused activations), so results differ by rounding only: a few ULPs per
/// accumulation, which stays far below 1e-4 of the output range even through the ~50
/// layers of ResNet-18 or MobileNetV2.
pub const F32_REL: f32 = 1e-4;

/// Tolerance for the small operator graphs (one to three weight layers, random weights)
/// with weights stored as f16 (`fp16: true`), relative to `max |want|`.
///
/// Only conv and fully connected weights are rounded to f16; activations and vectors stay
/// f32. Round-to-nearest f16 has a relative error of at most 2^-11 ≈ 4.9e-4 per weight,
/// so one dot product is off by at most 4.9e-4 × Σ|w·x|, and by about 3e-4 of the output
/// RMS when the errors add in quadrature; the operator graphs measure 1e-4 to 2e-4 of
/// max|ref|. 2e-3 leaves a 4x margin over the worst case of a layer without cancellation
/// and still catches a wrong rounding mode or f16 bits read wrongly (errors ≥ 1e-3), not
/// only the O(1) errors of a wrong layout.
///
/// Whole trained networks need a bound calibrated per model, see [`F16_MODEL_FACTOR`].
pub const F16_REL: f32 = 2e-3;

/// f16 tolerance for whole models, as a multiple of the error that storing the weights as
/// f16 costs in the reference itself.
///
/// A fixed bound does not fit trained networks: merely rounding the conv and Gemm weights
/// of the bundled (BatchNormalization already folded) MobileNetV2 backbone to f16 and
/// running it in tract moves its 1280 features by 1.8e-2 of max|ref|, whereas ResNet-18
/// moves by 3.7e-4 and MobileNetV2 by 5.8e-4. So the model tests run tract twice, on the
/// model and on a copy with those weights rounded to f16 ([`round_weights_to_f16`]), and
/// accept a SMOF f16 error up to `F16_MODEL_FACTOR × that error + F32_REL × max|ref|`. The
/// converter rounds after folding BatchNormalization, so its rounding errors are different
/// values of the same size; the factor 2 covers that difference in the maximum of
/// ~1000 outputs, while a conversion bug (truncation instead of rounding, an f16 value
/// read wrongly, a wrong layout) exceeds it.
pub const F16_MODEL_FACTOR: f32 = 2.0;

/// The tolerance for a run with or without f16 weights.
pub fn tolerance(fp16: bool) -> f32 {
    if fp16 {
        F16_REL
    } else {
        F32_REL
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers.
// ---------------------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64): the same seed gives the same weights and
/// inputs on every machine, with no external crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// `n` deterministic pseudo-random values in `[-1, 1)`, for test inputs.
pub fn pseudo_random(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).vec(n, -1.0, 1.0)
}

/// An input tensor of `shape` filled by [`pseudo_random`]: the `(shape, data)` pair that
/// [`tract_run`] and [`check_against_tract`] take.
pub fn random_input(seed: u64, shape: &[usize]) -> (Vec<usize>, Vec<f32>) {
    (shape.to_vec(), pseudo_random(seed, shape.iter().product()))
}

// ---------------------------------------------------------------------------------------
// ONNX attributes.
// ---------------------------------------------------------------------------------------

/// Constructors for ONNX node attributes.
pub mod attr {
    use super::proto::attribute_proto::AttributeType;
    use super::proto::AttributeProto;

    fn base(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    /// An `INT` attribute.
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            i: Some(v),
            ..base(name, AttributeType::Int)
        }
    }

    /// An `INTS` attribute.
    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: v.to_vec(),
            ..base(name, AttributeType::Ints)
        }
    }

    /// A `FLOAT` attribute.
    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            f: Some(v),
            ..base(name, AttributeType::Float)
        }
    }

    /// A `TENSOR` attribute (the `value` of a `Constant` node).
    pub fn tensor(name: &str, t: super::proto::TensorProto) -> AttributeProto {
        AttributeProto {
            t: Some(t),
            ..base(name, AttributeType::Tensor)
        }
    }

    /// A `STRING` attribute.
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            s: Some(v.as_bytes().to_vec()),
            ..base(name, AttributeType::String)
        }
    }
}

// ---------------------------------------------------------------------------------------
// ONNX builder.
// ---------------------------------------------------------------------------------------

/// Parameters of a `Conv` node for [`OnnxBuilder::conv`]. Unset attributes are left out of
/// the node, so the ONNX defaults apply.
#[derive(Clone, Debug)]
pub struct ConvSpec {
    /// Input channels (`C` of the input).
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `strides` attribute.
    pub strides: Option<[i64; 2]>,
    /// `pads` attribute, ONNX order `[top, left, bottom, right]`.
    pub pads: Option<[i64; 4]>,
    /// `dilations` attribute.
    pub dilations: Option<[i64; 2]>,
    /// `group` attribute.
    pub group: Option<usize>,
    /// `auto_pad` attribute (`SAME_UPPER`, `SAME_LOWER`, `VALID`).
    pub auto_pad: Option<&'static str>,
    /// Whether the node has a bias input.
    pub bias: bool,
    /// Write the `kernel_shape` attribute (optional in ONNX; PyTorch always writes it).
    pub kernel_shape_attr: bool,
}

impl ConvSpec {
    /// A conv `in_c -> out_c` with kernel `[kh, kw]`, a bias, and every other attribute at
    /// its ONNX default.
    pub fn new(in_c: usize, out_c: usize, kernel: [usize; 2]) -> Self {
        ConvSpec {
            in_c,
            out_c,
            kernel,
            strides: None,
            pads: None,
            dilations: None,
            group: None,
            auto_pad: None,
            bias: true,
            kernel_shape_attr: true,
        }
    }
    /// "Same" padding for stride 1 and odd kernels: `k/2` on every side (times dilation).
    pub fn same(mut self) -> Self {
        let d = self.dilations.unwrap_or([1, 1]);
        let ph = (self.kernel[0] as i64 - 1) * d[0] / 2;
        let pw = (self.kernel[1] as i64 - 1) * d[1] / 2;
        self.pads = Some([ph, pw, ph, pw]);
        self
    }
    /// Sets `strides`.
    pub fn stride(mut self, sh: i64, sw: i64) -> Self {
        self.strides = Some([sh, sw]);
        self
    }
    /// Sets `pads` `[top, left, bottom, right]`.
    pub fn pads(mut self, p: [i64; 4]) -> Self {
        self.pads = Some(p);
        self
    }
    /// Sets `dilations`.
    pub fn dilation(mut self, dh: i64, dw: i64) -> Self {
        self.dilations = Some([dh, dw]);
        self
    }
    /// Sets `group`.
    pub fn group(mut self, g: usize) -> Self {
        self.group = Some(g);
        self
    }
    /// Sets `auto_pad`.
    pub fn auto_pad(mut self, mode: &'static str) -> Self {
        self.auto_pad = Some(mode);
        self
    }
    /// Leaves out the bias input.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
    /// Leaves out the `kernel_shape` attribute (it is then inferred from the weight).
    pub fn no_kernel_shape_attr(mut self) -> Self {
        self.kernel_shape_attr = false;
        self
    }
}

/// Parameters of a `Gemm` node for [`OnnxBuilder::gemm`].
#[derive(Clone, Debug)]
pub struct GemmSpec {
    /// Input features.
    pub in_f: usize,
    /// Output features.
    pub out_f: usize,
    /// `transB = 1` (the PyTorch `Linear` export); otherwise `B` is `[in_f, out_f]`.
    pub trans_b: bool,
    /// `alpha` attribute, written only when set.
    pub alpha: Option<f32>,
    /// `beta` attribute, written only when set.
    pub beta: Option<f32>,
    /// Whether the node has the bias input `C`.
    pub bias: bool,
}

impl GemmSpec {
    /// `in_f -> out_f` as PyTorch exports `Linear`: `transB = 1`, bias, default alpha/beta.
    pub fn new(in_f: usize, out_f: usize) -> Self {
        GemmSpec {
            in_f,
            out_f,
            trans_b: true,
            alpha: None,
            beta: None,
            bias: true,
        }
    }
    /// Sets whether `B` is transposed.
    pub fn trans_b(mut self, t: bool) -> Self {
        self.trans_b = t;
        self
    }
    /// Sets `alpha`.
    pub fn alpha(mut self, a: f32) -> Self {
        self.alpha = Some(a);
        self
    }
    /// Sets `beta`.
    pub fn beta(mut self, b: f32) -> Self {
        self.beta = Some(b);
        self
    }
    /// Leaves out the bias `C`.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// Builds an ONNX model in code: inputs with shapes, initializers with deterministic
/// pseudo-random weights, nodes with attributes, outputs; [`OnnxBuilder::build`] returns the
/// encoded bytes.
///
/// ```
/// use smof_tests::{attr, ConvSpec, OnnxBuilder};
/// let mut b = OnnxBuilder::new(13);
/// let x = b.input("x", &[1, 3, 9, 11]);
/// let y = b.conv(&x, &ConvSpec::new(3, 8, [3, 3]).same());
/// let y = b.node("LeakyRelu", &[&y], vec![attr::float("alpha", 0.1)]);
/// b.output(&y);
/// let bytes = b.build();
/// assert!(!bytes.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct OnnxBuilder {
    opset: i64,
    graph: proto::GraphProto,
    rng: Rng,
    next_id: usize,
    raw_data: bool,
}

/// The ONNX IR version that goes with an opset (what exporters write).
fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        25..=27 => 13,
        _ => 14,
    }
}

fn float_value_info(
    name: &str,
    dims: Option<Vec<proto::tensor_shape_proto::Dimension>>,
) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(proto::tensor_proto::DataType::Float as i32),
                    shape: dims.map(|dim| proto::TensorShapeProto { dim }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn dim_value(d: usize) -> proto::tensor_shape_proto::Dimension {
    proto::tensor_shape_proto::Dimension {
        value: Some(proto::tensor_shape_proto::dimension::Value::DimValue(
            d as i64,
        )),
        ..Default::default()
    }
}

fn dim_param(p: &str) -> proto::tensor_shape_proto::Dimension {
    proto::tensor_shape_proto::Dimension {
        value: Some(proto::tensor_shape_proto::dimension::Value::DimParam(
            p.to_string(),
        )),
        ..Default::default()
    }
}

impl OnnxBuilder {
    /// An empty model for the default ONNX domain at `opset`, weights seeded with a fixed seed.
    pub fn new(opset: i64) -> Self {
        Self::with_seed(opset, 0x05EE_D0F5_340F)
    }

    /// An empty model whose pseudo-random weights come from `seed`.
    pub fn with_seed(opset: i64, seed: u64) -> Self {
        OnnxBuilder {
            opset,
            graph: proto::GraphProto {
                name: Some("smof_test".into()),
                ..Default::default()
            },
            rng: Rng::new(seed),
            next_id: 0,
            raw_data: true,
        }
    }

    /// Store float initializers in `float_data` instead of `raw_data` (PyTorch writes
    /// `raw_data`; other exporters write the typed field).
    pub fn use_typed_data(&mut self) -> &mut Self {
        self.raw_data = false;
        self
    }

    /// The opset of the model.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// A fresh unique name starting with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    /// Adds a float graph input with fixed dims and returns its name.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> String {
        let dims = dims.iter().map(|&d| dim_value(d)).collect();
        self.graph.input.push(float_value_info(name, Some(dims)));
        name.to_string()
    }

    /// Adds a float graph input whose `None` dims are symbolic (`dim_param`), e.g. a
    /// dynamic batch. Returns its name.
    pub fn input_dynamic(&mut self, name: &str, dims: &[Option<usize>]) -> String {
        let dims = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(d) => dim_value(*d),
                None => dim_param(&format!("{name}_dim{i}")),
            })
            .collect();
        self.graph.input.push(float_value_info(name, Some(dims)));
        name.to_string()
    }

    /// Marks `name` as a float graph output with no declared shape (valid ONNX; the shape
    /// is inferred). See [`with_output_shapes`] to declare shapes as exporters do.
    pub fn output(&mut self, name: &str) {
        self.graph.output.push(float_value_info(name, None));
    }

    /// Marks `name` as a float graph output with a declared shape.
    pub fn output_with_shape(&mut self, name: &str, dims: &[usize]) {
        let dims = dims.iter().map(|&d| dim_value(d)).collect();
        self.graph.output.push(float_value_info(name, Some(dims)));
    }

    /// Adds a float initializer with the given data and returns its name.
    pub fn init(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {name}"
        );
        let mut t = proto::TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(proto::tensor_proto::DataType::Float as i32),
            ..Default::default()
        };
        if self.raw_data {
            t.raw_data = Some(data.iter().flat_map(|v| v.to_le_bytes()).collect());
        } else {
            t.float_data = data.to_vec();
        }
        self.graph.initializer.push(t);
        name.to_string()
    }

    /// Adds an int64 initializer (shapes, axes, indices) and returns its name.
    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {name}"
        );
        self.graph.initializer.push(proto::TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds a 1-D int64 initializer with a fresh name from `prefix` and returns the name.
    pub fn i64s(&mut self, prefix: &str, data: &[i64]) -> String {
        let name = self.fresh(prefix);
        self.init_i64(&name, &[data.len()], data)
    }

    /// Adds a 1-D float initializer with a fresh name from `prefix` and returns the name.
    pub fn f32s(&mut self, prefix: &str, data: &[f32]) -> String {
        let name = self.fresh(prefix);
        self.init(&name, &[data.len()], data)
    }

    /// Adds a `Constant` node holding an int64 tensor (as PyTorch exports shape arithmetic)
    /// and returns its output. Empty `dims` make a scalar.
    pub fn constant_i64(&mut self, dims: &[usize], data: &[i64]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "constant");
        let t = proto::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        };
        self.node("Constant", &[], vec![attr::tensor("value", t)])
    }

    /// Adds a float initializer of pseudo-random values uniform in `[lo, hi)` and returns its
    /// (fresh) name.
    pub fn random_init(&mut self, prefix: &str, dims: &[usize], lo: f32, hi: f32) -> String {
        let n = dims.iter().product();
        let data = self.rng.vec(n, lo, hi);
        let name = self.fresh(prefix);
        self.init(&name, dims, &data)
    }

    /// Adds a weight initializer scaled like a trained layer's: uniform in
    /// `±sqrt(3 / fan_in)`, so outputs stay of order one. `fan_in` is the product of all
    /// dims but the first (conv `[OC, IC/g, KH, KW]`) unless given.
    pub fn weight(&mut self, prefix: &str, dims: &[usize], fan_in: Option<usize>) -> String {
        let fan_in = fan_in.unwrap_or_else(|| dims[1..].iter().product::<usize>().max(1));
        let a = (3.0 / fan_in as f32).sqrt();
        self.random_init(prefix, dims, -a, a)
    }

    /// Adds a node with one output and returns the output's (fresh) name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<proto::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_full(
            &format!("{op}_{}", self.next_id),
            op,
            inputs,
            &[&out],
            attrs,
        );
        out
    }

    /// Adds a node with explicit node name and output names.
    pub fn node_full(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<proto::AttributeProto>,
    ) {
        self.graph.node.push(proto::NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a squeeze-excite block on `x` of `c` channels: global average pool, 1x1 conv to
    /// `c / 4`, ReLU, 1x1 conv back, the `gate` activation, and `Mul(x, gate)` (`Mul(gate, x)`
    /// when `gate_first`). Returns its output.
    pub fn squeeze_excite(&mut self, x: &str, c: usize, gate: &str, gate_first: bool) -> String {
        let s = self.node("GlobalAveragePool", &[x], vec![]);
        let s = self.conv(&s, &ConvSpec::new(c, c / 4, [1, 1]));
        let s = self.node("Relu", &[&s], vec![]);
        let s = self.conv(&s, &ConvSpec::new(c / 4, c, [1, 1]));
        let s = self.node(gate, &[&s], vec![]);
        if gate_first {
            self.node("Mul", &[&s, x], vec![])
        } else {
            self.node("Mul", &[x, &s], vec![])
        }
    }

    /// GELU written out as exporters before opset 20 (and PyTorch's default export) write
    /// it: `x * (1 + erf(x / sqrt 2)) * 0.5`.
    pub fn gelu_written_out(&mut self, x: &str) -> String {
        let r2 = self.f32s("sqrt2", &[std::f32::consts::SQRT_2]);
        let d = self.node("Div", &[x, &r2], vec![]);
        let e = self.node("Erf", &[&d], vec![]);
        let one = self.f32s("one", &[1.0]);
        let p = self.node("Add", &[&e, &one], vec![]);
        let m = self.node("Mul", &[x, &p], vec![]);
        let half = self.f32s("half", &[0.5]);
        self.node("Mul", &[&m, &half], vec![])
    }

    /// Adds a `Conv` node with pseudo-random weights (and bias) and returns its output.
    pub fn conv(&mut self, x: &str, spec: &ConvSpec) -> String {
        let g = spec.group.unwrap_or(1);
        assert!(
            (spec.in_c % g, spec.out_c % g) == (0, 0),
            "bad group for {spec:?}"
        );
        let w = self.weight(
            "conv_w",
            &[spec.out_c, spec.in_c / g, spec.kernel[0], spec.kernel[1]],
            None,
        );
        let mut inputs = vec![x.to_string(), w];
        if spec.bias {
            inputs.push(self.random_init("conv_b", &[spec.out_c], -0.5, 0.5));
        }
        let mut attrs = Vec::new();
        if spec.kernel_shape_attr {
            attrs.push(attr::ints(
                "kernel_shape",
                &[spec.kernel[0] as i64, spec.kernel[1] as i64],
            ));
        }
        if let Some(s) = spec.strides {
            attrs.push(attr::ints("strides", &s));
        }
        if let Some(p) = spec.pads {
            attrs.push(attr::ints("pads", &p));
        }
        if let Some(d) = spec.dilations {
            attrs.push(attr::ints("dilations", &d));
        }
        if let Some(g) = spec.group {
            attrs.push(attr::int("group", g as i64));
        }
        if let Some(a) = spec.auto_pad {
            attrs.push(attr::string("auto_pad", a));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", &refs, attrs)
    }

    /// Adds a `BatchNormalization` over `c` channels with pseudo-random statistics (positive
    /// variance, scale in `[0.5, 1.5)`) and returns its output. `epsilon` is written only
    /// when given.
    pub fn batchnorm(&mut self, x: &str, c: usize, epsilon: Option<f32>) -> String {
        let scale = self.random_init("bn_scale", &[c], 0.5, 1.5);
        let bias = self.random_init("bn_bias", &[c], -0.5, 0.5);
        let mean = self.random_init("bn_mean", &[c], -0.5, 0.5);
        let var = self.random_init("bn_var", &[c], 0.25, 2.0);
        let attrs = epsilon
            .map(|e| vec![attr::float("epsilon", e)])
            .unwrap_or_default();
        self.node(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            attrs,
        )
    }

    /// Adds a `Gemm` `[N, in_f] -> [N, out_f]` with pseudo-random `B` (stored `[out_f, in_f]`
    /// when `trans_b`) and, unless left out, a bias `C` of shape `[out_f]`.
    pub fn gemm(&mut self, x: &str, spec: &GemmSpec) -> String {
        let (in_f, out_f) = (spec.in_f, spec.out_f);
        let dims = if spec.trans_b {
            [out_f, in_f]
        } else {
            [in_f, out_f]
        };
        let w = self.weight("gemm_w", &dims, Some(in_f));
        let mut inputs = vec![x.to_string(), w];
        if spec.bias {
            inputs.push(self.random_init("gemm_b", &[out_f], -0.5, 0.5));
        }
        let mut attrs = Vec::new();
        if spec.trans_b {
            attrs.push(attr::int("transB", 1));
        }
        if let Some(a) = spec.alpha {
            attrs.push(attr::float("alpha", a));
        }
        if let Some(b) = spec.beta {
            attrs.push(attr::float("beta", b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Gemm", &refs, attrs)
    }

    /// The model as a prost message.
    pub fn model(&self) -> proto::ModelProto {
        proto::ModelProto {
            ir_version: Some(ir_version_for(self.opset)),
            producer_name: Some("smof-tests".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(self.graph.clone()),
            opset_import: vec![proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(self.opset),
            }],
            ..Default::default()
        }
    }

    /// The encoded ONNX model.
    pub fn build(&self) -> Vec<u8> {
        self.model().encode_to_vec()
    }
}

/// Re-encodes `onnx` with the graph outputs' shapes declared as `shapes` (as PyTorch
/// exports do), e.g. with the shapes tract computed.
pub fn with_output_shapes(onnx: &[u8], shapes: &[Vec<usize>]) -> Vec<u8> {
    let mut m = proto::ModelProto::decode(onnx).expect("with_output_shapes: not ONNX");
    let g = m.graph.as_mut().expect("with_output_shapes: no graph");
    assert_eq!(
        g.output.len(),
        shapes.len(),
        "with_output_shapes: output count"
    );
    for (o, s) in g.output.iter_mut().zip(shapes) {
        let name = o.name.clone().unwrap_or_default();
        *o = float_value_info(&name, Some(s.iter().map(|&d| dim_value(d)).collect()));
    }
    m.encode_to_vec()
}

/// Re-encodes `onnx` with every float initializer that is a weight of a `Conv` (input 1),
/// `Gemm` or `MatMul` (input 0 or 1) rounded to f16 and back: what the converter stores
/// with `fp16: true`, before any folding. Used to measure what f16 storage costs.
pub fn round_weights_to_f16(onnx: &[u8]) -> Vec<u8> {
    let mut m = proto::ModelProto::decode(onnx).expect("round_weights_to_f16: not ONNX");
    let g = m.graph.as_mut().expect("round_weights_to_f16: no graph");
    let mut names = std::collections::HashSet::new();
    for n in &g.node {
        let idx: &[usize] = match n.op_type.as_deref() {
            Some("Conv") => &[1],
            Some("Gemm") | Some("MatMul") => &[0, 1],
            _ => &[],
        };
        for &i in idx {
            if let Some(name) = n.input.get(i) {
                names.insert(name.clone());
            }
        }
    }
    let round = |v: f32| half::f16::from_f32(v).to_f32();
    for t in &mut g.initializer {
        let is_weight = t.name.as_ref().is_some_and(|n| names.contains(n));
        if !is_weight || t.data_type != Some(proto::tensor_proto::DataType::Float as i32) {
            continue;
        }
        if let Some(raw) = t.raw_data.as_mut() {
            for ch in raw.chunks_exact_mut(4) {
                let v = round(f32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]));
                ch.copy_from_slice(&v.to_le_bytes());
            }
        }
        for v in &mut t.float_data {
            *v = round(*v);
        }
    }
    m.encode_to_vec()
}

// ---------------------------------------------------------------------------------------
// Running models.
// ---------------------------------------------------------------------------------------

/// Runs `onnx` with tract-onnx (the independent reference) on `inputs` (`(shape, data)` in
/// NCHW order) and returns every output as `(shape, data)` in ONNX element order.
///
/// # Panics
/// If tract cannot load, optimise or run the model: the test graph itself is then wrong.
pub fn tract_run_shaped(
    onnx: &[u8],
    inputs: &[(Vec<usize>, Vec<f32>)],
) -> Vec<(Vec<usize>, Vec<f32>)> {
    use tract_onnx::prelude::{
        Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TValue, TVec, Tensor,
    };
    let bytes: &[u8] = onnx;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap_or_else(|e| panic!("tract cannot load the model: {e:?}"));
    for (i, (shape, _)) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(
                i,
                InferenceFact::dt_shape(f32::datum_type(), shape.as_slice()),
            )
            .unwrap_or_else(|e| panic!("tract: input fact {i}: {e:?}"));
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot optimise the model: {e:?}"));
    let tensors: TVec<TValue> = inputs
        .iter()
        .map(|(s, d)| {
            Tensor::from_shape(s, d)
                .expect("tract: input tensor")
                .into()
        })
        .collect();
    let outs = plan
        .run(tensors)
        .unwrap_or_else(|e| panic!("tract cannot run the model: {e:?}"));
    outs.iter()
        .map(|t| {
            // Integer outputs (ArgMax's indices) are compared as the f32 values SMOF gives.
            let t = t
                .cast_to::<f32>()
                .expect("tract: output cannot be read as f32");
            let v = t
                .to_plain_array_view::<f32>()
                .expect("tract: output is not f32");
            (t.shape().to_vec(), v.iter().copied().collect())
        })
        .collect()
}

/// [`tract_run_shaped`] without the shapes.
pub fn tract_run(onnx: &[u8], inputs: &[(Vec<usize>, Vec<f32>)]) -> Vec<Vec<f32>> {
    tract_run_shaped(onnx, inputs)
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// Kernel choices the model-list tests know how to force. Extend when the runtime gains a
/// [`KernelChoice`] variant for a new table.
const KNOWN_CHOICES: &[KernelChoice] = &KernelChoice::ALL;

/// Every kernel table this CPU can run ([`KernelTable::all_supported`]) as
/// `(table name, choice that forces it)`.
///
/// # Panics
/// If a supported table has no known [`KernelChoice`] forcing it: a table the suite could not
/// test is a failure, not a silent skip.
pub fn kernel_choices() -> Vec<(&'static str, KernelChoice)> {
    KernelTable::all_supported()
        .into_iter()
        .map(|t| {
            let c = KNOWN_CHOICES
                .iter()
                .copied()
                .find(|&c| KernelTable::for_choice(c).is_some_and(|f| f.name == t.name))
                .unwrap_or_else(|| {
                    panic!(
                        "kernel table `{}` has no KernelChoice known to smof-tests (KNOWN_CHOICES)",
                        t.name
                    )
                });
            (t.name, c)
        })
        .collect()
}

/// Converts `onnx` with `smof-converter` (`input_shapes` fix the input dims).
pub fn smof_convert(
    onnx: &[u8],
    input_shapes: &[Vec<usize>],
    kernels: KernelChoice,
    fp16: bool,
) -> Result<conv::Converted, conv::Error> {
    conv::convert(
        onnx,
        &conv::ConvertOptions {
            input_shapes: input_shapes.to_vec(),
            fp16,
            kernels,
            model_name: Some("smof-test".into()),
            ..Default::default()
        },
    )
}

/// Converts `onnx` and loads the result with [`Model::from_bytes_with`] for `kernels`.
///
/// # Panics
/// When conversion or loading fails.
pub fn smof_load(
    onnx: &[u8],
    input_shapes: &[Vec<usize>],
    kernels: KernelChoice,
    fp16: bool,
) -> Model {
    let converted = smof_convert(onnx, input_shapes, kernels, fp16)
        .unwrap_or_else(|e| panic!("smof convert failed: {e}"));
    for w in &converted.warnings {
        eprintln!("converter warning: {w}");
    }
    let opts = ModelOptions {
        kernels,
        ..ModelOptions::default()
    };
    Model::from_bytes_with(&converted.bytes, &opts)
        .unwrap_or_else(|e| panic!("smof Model::from_bytes_with failed: {e}"))
}

/// Converts `onnx`, loads it with [`Model::from_bytes_with`] for `kernels`, runs one
/// [`Session`] on `inputs` (NCHW, one slice per model input) and returns every output as
/// `(dims, data)`, the dims being the ONNX dims the converted graph declares.
///
/// The session is run twice on the same inputs and both results must be bit-identical
/// (no state leaks from one run into the next).
///
/// # Panics
/// On any error (with the step that failed), on a wrong output length, or when the second
/// run differs.
pub fn smof_run_shaped(
    onnx: &[u8],
    input_shapes: &[Vec<usize>],
    inputs: &[&[f32]],
    kernels: KernelChoice,
    fp16: bool,
) -> Vec<(Vec<usize>, Vec<f32>)> {
    smof_run_with(
        onnx,
        input_shapes,
        inputs,
        kernels,
        fp16,
        &SessionOptions::default(),
    )
}

/// [`smof_run_shaped`] with explicit [`SessionOptions`] (e.g. worker threads).
pub fn smof_run_with(
    onnx: &[u8],
    input_shapes: &[Vec<usize>],
    inputs: &[&[f32]],
    kernels: KernelChoice,
    fp16: bool,
    session_opts: &SessionOptions,
) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model = smof_load(onnx, input_shapes, kernels, fp16);
    let mut session = Session::new(&model, session_opts)
        .unwrap_or_else(|e| panic!("smof Session::new failed: {e}"));
    let outputs = &model.graph().outputs;
    let collect = |s: &Session| -> Vec<(Vec<usize>, Vec<f32>)> {
        assert_eq!(
            s.output_count(),
            outputs.len(),
            "Session::output_count vs graph outputs"
        );
        outputs
            .iter()
            .enumerate()
            .map(|(i, io)| {
                let dims: Vec<usize> = io.dims.iter().map(|&d| d as usize).collect();
                let data = s.output(i).to_vec();
                assert_eq!(
                    s.output_dims(i),
                    &dims[..],
                    "Session::output_dims({i}) vs the graph's output dims"
                );
                assert_eq!(
                    data.len(),
                    dims.iter().product::<usize>(),
                    "smof output {i} ({}) has {} values for dims {dims:?}",
                    io.name,
                    data.len()
                );
                (dims, data)
            })
            .collect()
    };
    session
        .run(inputs)
        .unwrap_or_else(|e| panic!("smof Session::run failed: {e}"));
    let first = collect(&session);
    session
        .run(inputs)
        .unwrap_or_else(|e| panic!("smof Session::run (second run) failed: {e}"));
    let second = collect(&session);
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        let same =
            a.1.iter()
                .zip(&b.1)
                .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "smof output {i} differs between two runs on the same input"
        );
    }
    first
}

/// [`smof_run_shaped`] without the shapes: converter, [`Model::from_bytes_with`] and
/// [`Session`] on `inputs` with the kernel table `kernels`, weights as f16 when `fp16`.
pub fn smof_run(
    onnx: &[u8],
    input_shapes: &[Vec<usize>],
    inputs: &[&[f32]],
    kernels: KernelChoice,
    fp16: bool,
) -> Vec<Vec<f32>> {
    smof_run_shaped(onnx, input_shapes, inputs, kernels, fp16)
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// Checks `max |got - want| <= rel * max |want|` (and equal lengths, no NaN), printing the
/// worst index and both values. Panics with the same report when the check fails.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: got {} values, want {}",
        got.len(),
        want.len()
    );
    let max_ref = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = (0usize, 0.0f32);
    let mut nan = None;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.is_nan() != w.is_nan() || g.is_infinite() != w.is_infinite() {
            nan.get_or_insert(i);
        }
        let e = (g - w).abs();
        if e > worst.1 || (e.is_nan() && !worst.1.is_nan()) {
            worst = (i, e);
        }
    }
    let bound = rel * max_ref;
    let (wi, we) = worst;
    let report = format!(
        "{name}: max abs err {we:.3e} at index {wi} (got {}, want {}), bound {bound:.3e} = {rel:e} x max|ref| {max_ref:.4e}, {} values",
        got.get(wi).copied().unwrap_or(f32::NAN),
        want.get(wi).copied().unwrap_or(f32::NAN),
        got.len()
    );
    eprintln!("{report}");
    if let Some(i) = nan {
        panic!(
            "{report}; non-finite mismatch at index {i}: got {}, want {}",
            got[i], want[i]
        );
    }
    assert!(
        we <= bound,
        "{report}; first 8 got {:?}, want {:?}",
        &got[..got.len().min(8)],
        &want[..want.len().min(8)]
    );
}

/// Runs `onnx` through tract once, then through SMOF on every supported kernel table, and
/// checks the output count, the output dims and every value at [`tolerance`]`(fp16)`.
/// The model is re-encoded with the output shapes tract computed declared, as exporters
/// write them.
///
/// # Panics
/// On the first table whose results differ, naming the table.
pub fn check_against_tract(name: &str, onnx: &[u8], inputs: &[(Vec<usize>, Vec<f32>)], fp16: bool) {
    let want = tract_run_shaped(onnx, inputs);
    let shapes: Vec<Vec<usize>> = want.iter().map(|(s, _)| s.clone()).collect();
    let onnx = with_output_shapes(onnx, &shapes);
    check_with_reference(name, &onnx, inputs, &want, fp16);
}

/// Like [`check_against_tract`] with the reference outputs `want` (`(shape, data)`) already
/// computed, and `onnx` used as given.
pub fn check_with_reference(
    name: &str,
    onnx: &[u8],
    inputs: &[(Vec<usize>, Vec<f32>)],
    want: &[(Vec<usize>, Vec<f32>)],
    fp16: bool,
) {
    check_with_reference_tol(name, onnx, inputs, want, fp16, tolerance(fp16));
}

/// [`check_with_reference`] with an explicit relative tolerance `rel` (see [`assert_close`]).
pub fn check_with_reference_tol(
    name: &str,
    onnx: &[u8],
    inputs: &[(Vec<usize>, Vec<f32>)],
    want: &[(Vec<usize>, Vec<f32>)],
    fp16: bool,
    rel: f32,
) {
    let input_shapes: Vec<Vec<usize>> = inputs.iter().map(|(s, _)| s.clone()).collect();
    let slices: Vec<&[f32]> = inputs.iter().map(|(_, d)| d.as_slice()).collect();
    for (table, choice) in kernel_choices() {
        let label = format!("{name} [{table}{}]", if fp16 { ", f16" } else { "" });
        let got = smof_run_shaped(onnx, &input_shapes, &slices, choice, fp16);
        assert_eq!(got.len(), want.len(), "{label}: output count");
        for (i, ((gs, gd), (ws, wd))) in got.iter().zip(want).enumerate() {
            assert_eq!(gs, ws, "{label}: output {i} dims (smof vs tract)");
            assert_close(&format!("{label} output {i}"), gd, wd, rel);
        }
    }
}

/// Collects the failures of several independent cases of one test so that every failing
/// case is reported, not only the first. Each case runs under `catch_unwind`.
#[derive(Default)]
pub struct Cases {
    total: usize,
    failures: Vec<String>,
}

impl Cases {
    /// No cases yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one case; a panic inside is recorded as a failure of `name`.
    pub fn run(&mut self, name: &str, f: impl FnOnce()) {
        self.total += 1;
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            self.failures.push(format!("{name}: {msg}"));
        }
    }

    /// Shorthand: builds nothing, runs [`check_against_tract`] as one case.
    pub fn check(
        &mut self,
        name: &str,
        onnx: &[u8],
        inputs: &[(Vec<usize>, Vec<f32>)],
        fp16: bool,
    ) {
        self.run(name, || check_against_tract(name, onnx, inputs, fp16));
    }

    /// Panics listing every failed case, if any.
    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} of {} cases failed:\n  {}",
                self.failures.len(),
                self.total,
                self.failures.join("\n  ")
            );
        }
    }
}

/// `(in_c, out_c)` of every transposed conv of a `.smof` file, in graph order.
pub fn deconv_channels(bytes: &[u8]) -> Vec<(u32, u32)> {
    smof::format::read(bytes, &Default::default())
        .expect("the file reads")
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            smof::graph::Op::Deconv(d) => Some((d.in_c, d.out_c)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let a = pseudo_random(1, 1000);
        assert_eq!(a, pseudo_random(1, 1000));
        assert_ne!(a, pseudo_random(2, 1000));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }

    #[test]
    #[should_panic(expected = "max abs err")]
    fn assert_close_rejects_a_small_relative_error() {
        let want = [1.0, -2.0, 4.0];
        assert_close("t", &[1.0, -2.0, 4.001], &want, F32_REL);
    }

    #[test]
    #[should_panic(expected = "non-finite")]
    fn assert_close_rejects_nan() {
        assert_close("t", &[f32::NAN, 0.0], &[0.0, 0.0], 1.0);
    }

    #[test]
    #[should_panic(expected = "1 of 2 cases failed")]
    fn cases_reports_failures() {
        let mut c = Cases::new();
        c.run("fine", || {});
        c.run("broken", || panic!("boom"));
        c.finish();
    }

    #[test]
    fn assert_close_accepts_rounding() {
        assert_close("t", &[1.0, -2.0, 4.0001], &[1.0, -2.0, 4.0], F32_REL);
    }

    /// The builder and the tract reference against a conv computed by hand: NCHW input
    /// 1x2x3x3, 3 output channels, 2x2 kernel, pads [1, 0, 0, 1] (top, left, bottom, right),
    /// stride 1, bias.
    #[test]
    fn builder_and_tract_match_a_hand_computed_conv() {
        let mut b = OnnxBuilder::new(13);
        let x = b.input("x", &[1, 2, 3, 3]);
        let w: Vec<f32> = (0..3 * 2 * 2 * 2)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let bias = [0.5, -0.25, 1.0];
        let wn = b.init("w", &[3, 2, 2, 2], &w);
        let bn = b.init("b", &[3], &bias);
        let y = b.node(
            "Conv",
            &[&x, &wn, &bn],
            vec![
                attr::ints("kernel_shape", &[2, 2]),
                attr::ints("pads", &[1, 0, 0, 1]),
            ],
        );
        b.output(&y);
        let input = pseudo_random(3, 18);
        let got = tract_run_shaped(&b.build(), &[(vec![1, 2, 3, 3], input.clone())]);
        // Output H = 3 + 1 + 0 - 2 + 1 = 3, W = 3 + 0 + 1 - 2 + 1 = 3.
        assert_eq!(got[0].0, vec![1, 3, 3, 3]);
        let at = |c: usize, h: isize, w: isize| -> f32 {
            if (0..3).contains(&h) && (0..3).contains(&w) {
                input[c * 9 + h as usize * 3 + w as usize]
            } else {
                0.0
            }
        };
        let mut want = Vec::new();
        for o in 0..3 {
            for oh in 0..3isize {
                for ow in 0..3isize {
                    let mut acc = bias[o];
                    for c in 0..2 {
                        for kh in 0..2isize {
                            for kw in 0..2isize {
                                let wv = w[((o * 2 + c) * 2 + kh as usize) * 2 + kw as usize];
                                acc += wv * at(c, oh + kh - 1, ow + kw);
                            }
                        }
                    }
                    want.push(acc);
                }
            }
        }
        assert_close("hand conv", &got[0].1, &want, 1e-6);
    }

    /// Flatten of a 1x2x2x3 tensor and a Gemm with transB: tract matches the hand result,
    /// which fixes the NCHW flatten order the SMOF converter must reproduce.
    #[test]
    fn builder_and_tract_match_a_hand_computed_flatten_gemm() {
        let mut b = OnnxBuilder::new(13);
        let x = b.input("x", &[1, 2, 2, 3]);
        let f = b.node("Flatten", &[&x], vec![attr::int("axis", 1)]);
        let w: Vec<f32> = (0..4 * 12).map(|i| (i as f32 * 0.11).cos()).collect();
        let wn = b.init("w", &[4, 12], &w);
        let cn = b.init("c", &[4], &[1.0, 2.0, 3.0, 4.0]);
        let y = b.node(
            "Gemm",
            &[&f, &wn, &cn],
            vec![
                attr::int("transB", 1),
                attr::float("alpha", 0.5),
                attr::float("beta", 2.0),
            ],
        );
        b.output(&y);
        let input = pseudo_random(4, 12);
        let got = tract_run(&b.build(), &[(vec![1, 2, 2, 3], input.clone())]);
        let want: Vec<f32> = (0..4)
            .map(|o| {
                let dot: f32 = (0..12).map(|i| w[o * 12 + i] * input[i]).sum();
                0.5 * dot + 2.0 * (o + 1) as f32
            })
            .collect();
        assert_close("hand gemm", &got[0], &want, 1e-6);
    }

    #[test]
    fn f16_rounding_touches_only_weights() {
        let mut b = OnnxBuilder::new(13);
        let x = b.input("x", &[1, 2, 3, 3]);
        let y = b.conv(&x, &ConvSpec::new(2, 3, [3, 3]).same());
        b.output(&y);
        let m = proto::ModelProto::decode(&round_weights_to_f16(&b.build())[..]).unwrap();
        let orig = b.model();
        let inits = &m.graph.as_ref().unwrap().initializer;
        let orig_inits = &orig.graph.as_ref().unwrap().initializer;
        // Weight changed (rounded), bias untouched.
        assert_ne!(inits[0].raw_data, orig_inits[0].raw_data);
        assert_eq!(inits[1].raw_data, orig_inits[1].raw_data);
    }
}
