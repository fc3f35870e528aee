//! Translation of each supported ONNX op into IR nodes.

use super::attrs::Attrs;
use super::import::Val;
use super::import::{ir_axis, ir_dims, unsup, Importer, NResult, NodeErr};
use super::proto::NodeProto;
use crate::error::Error;
use crate::ir::shape::alias_compatible;
use crate::ir::shape::dims4;
use crate::ir::tensor::broadcast_shape;
use crate::ir::{
    Activation, BinaryKind, ConstTensor, ConvOp, CoordMode, DeconvOp, FcOp, NearestRound, Op,
    PadMode, PoolKind, PoolOp, ReduceKind, ResizeMode, ResizeOp, UnaryKind, Weight,
};

/// Every op type the importer handles (with or without folding).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Concat",
    "Relu",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "Identity",
    "Dropout",
    "Constant",
    "Shape",
    "Size",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Cast",
    "Slice",
    "ConstantOfShape",
    "Neg",
    "Split",
    "Resize",
    "ConvTranspose",
    "Transpose",
    "ReduceMean",
    "ReduceMax",
    "ReduceSum",
    "Pow",
    "Min",
    "Max",
    "PRelu",
    "Abs",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Erf",
    "Softplus",
    "Gelu",
    "Mish",
    "Floor",
    "Ceil",
    "Pad",
    "DepthToSpace",
    "SpaceToDepth",
    "LayerNormalization",
    "Tile",
    "Expand",
    "ArgMax",
    "Range",
    "Equal",
    "Less",
    "Greater",
    "Not",
    "Where",
];

/// Why a node cannot be imported, judged from its op type and attributes alone (no shapes
/// needed), or `None`.
pub fn static_reason(op: &str, node: &NodeProto) -> Option<String> {
    if !SUPPORTED_OPS.contains(&op) {
        return Some(format!("op type {op} is not supported"));
    }
    let a = Attrs::new(node);
    if let Some(p) = a.string("auto_pad") {
        if !matches!(
            p.as_str(),
            "" | "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER"
        ) {
            return Some(format!("attribute auto_pad='{p}' not supported"));
        }
    }
    match op {
        "ArgMax" if a.int_or("select_last_index", 0) != 0 => {
            Some("select_last_index=1 not supported (the first maximum is taken)".into())
        }
        "MaxPool" if a.int_or("storage_order", 0) != 0 => {
            Some("attribute storage_order=1 not supported".into())
        }
        "AveragePool"
            if a.ints("dilations")
                .is_some_and(|d| d.iter().any(|&v| v != 1)) =>
        {
            Some("attribute dilations other than 1 not supported for AveragePool".into())
        }
        "BatchNormalization" if a.int_or("training_mode", 0) != 0 => {
            Some("attribute training_mode=1 not supported (inference only)".into())
        }
        "Gemm" if a.int_or("transA", 0) != 0 => Some("attribute transA=1 not supported".into()),
        "MaxPool" | "AveragePool" | "Conv" | "ConvTranspose"
            if a.ints("kernel_shape").is_some_and(|k| k.len() != 2) =>
        {
            Some("only 2-D windows (4-D tensors) are supported".into())
        }
        "Gelu"
            if !matches!(
                a.string("approximate").as_deref(),
                None | Some("none") | Some("tanh")
            ) =>
        {
            Some("attribute approximate must be 'none' or 'tanh'".into())
        }
        "Pad"
            if !matches!(
                a.string("mode").as_deref(),
                None | Some("constant") | Some("reflect") | Some("edge")
            ) =>
        {
            Some(format!(
                "attribute mode='{}' not supported (constant, reflect, edge)",
                a.string("mode").unwrap_or_default()
            ))
        }
        "DepthToSpace"
            if !matches!(
                a.string("mode").as_deref(),
                None | Some("DCR") | Some("CRD")
            ) =>
        {
            Some("attribute mode must be DCR or CRD".into())
        }
        // Opset 28 added `mode`; the order of the earlier opsets is DCR.
        "SpaceToDepth" if !matches!(a.string("mode").as_deref(), None | Some("DCR")) => {
            Some("attribute mode must be DCR (the order before opset 28)".into())
        }
        "ConvTranspose" if a.has("output_shape") => Some(
            "attribute output_shape not supported; export with explicit pads and output_padding"
                .into(),
        ),
        "ConvTranspose" if a.string("auto_pad").is_some_and(|p| p.starts_with("SAME")) => {
            Some("attribute auto_pad=SAME_* not supported for ConvTranspose".into())
        }
        "Resize" => {
            let mode = a.string("mode").unwrap_or_else(|| "nearest".into());
            let coord = a
                .string("coordinate_transformation_mode")
                .unwrap_or_else(|| "half_pixel".into());
            let nearest = a
                .string("nearest_mode")
                .unwrap_or_else(|| "round_prefer_floor".into());
            let policy = a
                .string("keep_aspect_ratio_policy")
                .unwrap_or_else(|| "stretch".into());
            if mode != "nearest" && mode != "linear" {
                Some(format!(
                    "attribute mode='{mode}' not supported (nearest and linear are)"
                ))
            } else if resize_coord(&coord).is_none() {
                Some(format!(
                    "attribute coordinate_transformation_mode='{coord}' not supported"
                ))
            } else if mode == "nearest" && resize_round(&nearest).is_none() {
                Some(format!("attribute nearest_mode='{nearest}' not supported"))
            } else if a.int_or("antialias", 0) != 0 {
                Some("attribute antialias=1 not supported".into())
            } else if policy != "stretch" {
                Some(format!(
                    "attribute keep_aspect_ratio_policy='{policy}' not supported (only stretch)"
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The coordinate mode named by a Resize attribute.
fn resize_coord(name: &str) -> Option<CoordMode> {
    Some(match name {
        "half_pixel" => CoordMode::HalfPixel,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nn" => CoordMode::TfHalfPixelForNn,
        "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
        _ => return None,
    })
}

/// The nearest rounding named by a Resize attribute.
fn resize_round(name: &str) -> Option<NearestRound> {
    Some(match name {
        "round_prefer_floor" => NearestRound::RoundPreferFloor,
        "round_prefer_ceil" => NearestRound::RoundPreferCeil,
        "floor" => NearestRound::Floor,
        "ceil" => NearestRound::Ceil,
        _ => return None,
    })
}

pub(super) fn model_err<T>(name: &str, what: impl std::fmt::Display) -> NResult<T> {
    Err(NodeErr::Fatal(Error::model(format!("node {name}: {what}"))))
}

fn pos(v: i64, what: &str, name: &str) -> NResult<usize> {
    if (1..=1 << 20).contains(&v) {
        Ok(v as usize)
    } else {
        model_err(name, format!("{what} {v} out of range"))
    }
}

/// Strides, dilations and pads of a 2-D window op, with `auto_pad` resolved.
fn window(
    a: &Attrs,
    name: &str,
    hw: [usize; 2],
    kernel: [usize; 2],
) -> NResult<([usize; 2], [usize; 2], [usize; 4])> {
    let pair = |key: &str| -> NResult<[usize; 2]> {
        match a.ints(key) {
            None => Ok([1, 1]),
            Some([x, y]) => Ok([pos(*x, key, name)?, pos(*y, key, name)?]),
            Some(v) => model_err(name, format!("{key} {v:?} must have 2 values")),
        }
    };
    let stride = pair("strides")?;
    let dilation = pair("dilations")?;
    let mut pads = [0usize; 4];
    match a.string("auto_pad").as_deref() {
        None | Some("") | Some("NOTSET") => {
            if let Some(p) = a.ints("pads") {
                if p.len() != 4 {
                    return model_err(name, format!("pads {p:?} must have 4 values"));
                }
                for (k, &v) in p.iter().enumerate() {
                    pads[k] = if v == 0 { 0 } else { pos(v, "pad", name)? };
                }
            }
        }
        Some("VALID") => {}
        Some(mode) => {
            for d in 0..2 {
                let eff = (kernel[d] - 1) * dilation[d] + 1;
                let out = hw[d].div_ceil(stride[d]);
                let total = ((out - 1) * stride[d] + eff).saturating_sub(hw[d]);
                let (begin, end) = if mode == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[d] = begin;
                pads[d + 2] = end;
            }
        }
    }
    Ok((stride, dilation, pads))
}

/// Extra end padding that reproduces ONNX/PyTorch `ceil_mode` output sizes (a last window
/// that would start inside the end padding is dropped).
fn ceil_pad(size: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> Option<usize> {
    let eff = (k - 1) * d + 1;
    let padded = size + p0 + p1;
    if padded < eff {
        return None;
    }
    let mut out = (padded - eff).div_ceil(s) + 1;
    if (out - 1) * s >= size + p0 {
        out -= 1;
    }
    Some(((out - 1) * s + eff).saturating_sub(padded))
}

/// The per-channel (axis 1) values of constant `c` broadcast over an activation of shape
/// `xs`, or `None` when it broadcasts otherwise.
fn per_channel(xs: &[usize], c: &ConstTensor) -> Option<Vec<f32>> {
    if xs.len() < 2 {
        return None;
    }
    if broadcast_shape(xs, &c.dims)? != xs {
        return None;
    }
    let ch = xs[1];
    if c.len() == 1 {
        return Some(vec![c.to_f32()[0]; ch]);
    }
    let off = xs.len() - c.dims.len();
    if c.dims
        .iter()
        .enumerate()
        .any(|(k, &d)| off + k != 1 && d != 1)
        || c.len() != ch
    {
        return None;
    }
    Some(c.to_f32())
}

fn float_weight<'a>(
    imp: &'a Importer,
    node: &NodeProto,
    i: usize,
    what: &str,
) -> NResult<&'a ConstTensor> {
    match imp.konst(node, i) {
        Some(c) if c.is_float() => Ok(c),
        Some(_) => unsup(format!("{what} (input {i}) is not a float tensor")),
        None => unsup(format!("{what} (input {i}) is not a constant")),
    }
}

/// Scalar constant input `i`, or `None` when omitted.
fn scalar_input(imp: &Importer, node: &NodeProto, i: usize, what: &str) -> NResult<Option<f32>> {
    if imp.missing(node, i) {
        return Ok(None);
    }
    match imp.konst(node, i).and_then(ConstTensor::scalar_f32) {
        Some(v) => Ok(Some(v)),
        None => unsup(format!("{what} (input {i}) is not a constant scalar")),
    }
}

/// The transpose of the 2-D constant `w`.
pub(super) fn transpose(w: &ConstTensor) -> Weight {
    let (r, c) = (w.dims[0], w.dims[1]);
    let v = w.to_f32();
    let mut t = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    Weight {
        dims: vec![c, r],
        data: t,
    }
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// What Conv and ConvTranspose share: the weight, bias, groups and window.
struct Windowed {
    weight: Weight,
    bias: Option<Vec<f32>>,
    group: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [usize; 4],
}

/// Reads the data input, the 4-D constant weight, the optional bias, `kernel_shape` (which
/// must agree with the weight), `group` and the window of a Conv or ConvTranspose.
fn windowed(
    imp: &Importer,
    node: &NodeProto,
    name: &str,
    a: &Attrs,
    what: &str,
) -> NResult<(usize, Windowed)> {
    let x = imp.act(node, 0)?;
    let xs = imp.g.shape(x).to_vec();
    let w = float_weight(imp, node, 1, "weight")?;
    if w.dims.len() != 4 || xs.len() != 4 {
        return unsup(format!(
            "only 2-D {what} is supported (input {xs:?}, weight {:?})",
            w.dims
        ));
    }
    let bias = if imp.missing(node, 2) {
        None
    } else {
        Some(float_weight(imp, node, 2, "bias")?.to_f32())
    };
    let kernel = [w.dims[2], w.dims[3]];
    if let Some(ks) = a.ints("kernel_shape") {
        if ks.iter().map(|&k| k as usize).ne(kernel) {
            return model_err(
                name,
                format!("kernel_shape {ks:?} differs from the weight {:?}", w.dims),
            );
        }
    }
    if kernel.contains(&0) {
        return model_err(name, "empty kernel");
    }
    let (stride, dilation, pads) = window(a, name, [xs[2], xs[3]], kernel)?;
    let group = pos(a.int_or("group", 1), "group", name)?;
    let weight = Weight {
        dims: w.dims.clone(),
        data: w.to_f32(),
    };
    Ok((
        x,
        Windowed {
            weight,
            bias,
            group,
            stride,
            dilation,
            pads,
        },
    ))
}

/// The `axes` of Squeeze, Unsqueeze and the reductions: input 1 (a constant) when
/// `from_input` (the newer opsets), else the attribute; `None` when absent.
fn axes_of(
    imp: &Importer,
    node: &NodeProto,
    a: &Attrs,
    from_input: bool,
) -> NResult<Option<Vec<i64>>> {
    if !from_input {
        return Ok(a.ints("axes").map(<[i64]>::to_vec));
    }
    if imp.missing(node, 1) {
        return Ok(None);
    }
    match imp
        .konst(node, 1)
        .and_then(|t| t.ints().map(<[i64]>::to_vec))
    {
        Some(v) => Ok(Some(v)),
        None => unsup("axes is not a constant"),
    }
}

/// Imports one node whose inputs are not all constant.
pub(super) fn import_op(imp: &mut Importer, node: &NodeProto, op: &str, name: &str) -> NResult<()> {
    let a = Attrs::new(node);
    let act = |kind: Activation, imp: &mut Importer| -> NResult<()> {
        let (x, xs) = imp.act_nd(node, 0)?;
        imp.emit_nd(node, 0, name, Op::Act(kind), vec![x], xs)
    };
    match op {
        "Conv" => {
            let (x, w) = windowed(imp, node, name, &a, "convolution")?;
            let conv = ConvOp {
                weight: w.weight,
                bias: w.bias,
                group: w.group,
                stride: w.stride,
                dilation: w.dilation,
                pads: w.pads,
                act: Activation::None,
            };
            imp.emit(node, name, Op::Conv(conv), vec![x])
        }
        "Gemm" | "MatMul" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            if xs.len() != 2 {
                return unsup(format!("input A must be 2-D, it is {xs:?}"));
            }
            let b = float_weight(imp, node, 1, "B")?;
            if b.dims.len() != 2 {
                return unsup(format!("B must be a 2-D constant, it is {:?}", b.dims));
            }
            let mut weight = if op == "Gemm" && a.int_or("transB", 0) != 0 {
                Weight {
                    dims: b.dims.clone(),
                    data: b.to_f32(),
                }
            } else {
                transpose(b)
            };
            let oc = weight.dims[0];
            let mut bias = None;
            if op == "Gemm" {
                let alpha = a.float_or("alpha", 1.0);
                if alpha != 1.0 {
                    weight.data.iter_mut().for_each(|v| *v *= alpha);
                }
                let beta = a.float_or("beta", 1.0);
                if !imp.missing(node, 2) {
                    let c = float_weight(imp, node, 2, "C")?;
                    let lead_ones =
                        c.dims.len() <= 2 && c.dims.iter().rev().skip(1).all(|&d| d == 1);
                    let vals = if c.len() == 1 {
                        vec![c.to_f32()[0]; oc]
                    } else if c.len() == oc && lead_ones {
                        c.to_f32()
                    } else {
                        return unsup(format!(
                            "bias C of shape {:?} not supported (expected [{oc}] or [1, {oc}])",
                            c.dims
                        ));
                    };
                    if beta != 0.0 {
                        bias = Some(vals.into_iter().map(|v| v * beta).collect());
                    }
                }
            }
            let fc = FcOp {
                weight,
                bias,
                act: Activation::None,
            };
            imp.emit(node, name, Op::Fc(fc), vec![x])
        }
        "MaxPool" | "AveragePool" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            if xs.len() != 4 {
                return unsup(format!(
                    "only 2-D pooling (4-D input) is supported, input is {xs:?}"
                ));
            }
            let kernel = match a.ints("kernel_shape") {
                Some([h, w]) => [pos(*h, "kernel", name)?, pos(*w, "kernel", name)?],
                _ => return model_err(name, "kernel_shape must have 2 values"),
            };
            let (stride, dilation, pads) = window(&a, name, [xs[2], xs[3]], kernel)?;
            let auto = !matches!(
                a.string("auto_pad").as_deref(),
                None | Some("") | Some("NOTSET")
            );
            let mut ceil_pads = [0, 0];
            if a.int_or("ceil_mode", 0) != 0 && !auto {
                for d in 0..2 {
                    ceil_pads[d] = ceil_pad(
                        xs[2 + d],
                        kernel[d],
                        stride[d],
                        dilation[d],
                        pads[d],
                        pads[d + 2],
                    )
                    .ok_or_else(|| {
                        NodeErr::Fatal(Error::shape(&node.output[0], "pool window does not fit"))
                    })?;
                }
            }
            let kind = if op == "MaxPool" {
                PoolKind::Max
            } else {
                if dilation != [1, 1] {
                    return unsup("attribute dilations other than 1 not supported for AveragePool");
                }
                PoolKind::Avg {
                    count_include_pad: a.int_or("count_include_pad", 0) != 0,
                }
            };
            let pool = PoolOp {
                kind,
                kernel,
                stride,
                dilation,
                pads,
                ceil_pads,
            };
            imp.emit(node, name, Op::Pool(pool), vec![x])
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = imp.act(node, 0)?;
            if imp.g.shape(x).len() != 4 {
                return unsup("only 4-D inputs are supported");
            }
            let op = if op == "GlobalMaxPool" {
                Op::GlobalMaxPool
            } else {
                Op::GlobalAvgPool
            };
            imp.emit(node, name, op, vec![x])
        }
        "Add" | "Sub" | "Mul" | "Div" | "Min" | "Max" | "PRelu" => binary(imp, node, op, name),
        "Pow" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let Some(e) = imp.konst(node, 1).and_then(ConstTensor::scalar_f32) else {
                return unsup("only a constant scalar exponent is supported");
            };
            if e == 1.0 {
                imp.emit_nd(node, 0, name, Op::Identity, vec![x], xs)
            } else if e == 0.5 {
                unary(imp, node, name, UnaryKind::Sqrt)
            } else if e == 2.0 {
                let op = Op::Binary {
                    kind: BinaryKind::Mul,
                    act: Activation::None,
                };
                imp.emit_nd(node, 0, name, op, vec![x, x], xs)
            } else {
                binary(imp, node, op, name)
            }
        }
        "Pad" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            let r = xs.len();
            if r != 4 {
                return unsup(format!("Pad of a {xs:?} tensor not supported (4-D only)"));
            }
            let mode = a.string("mode").unwrap_or_else(|| "constant".into());
            let value = match imp.konst(node, 2) {
                Some(c) if !c.is_float() => return unsup("a non-float pad value not supported"),
                Some(c) => c.to_f32().first().copied().unwrap_or(0.0),
                None if imp.missing(node, 2) => 0.0,
                None => return unsup("the pad value is not a constant"),
            };
            let mode = match mode.as_str() {
                "constant" => PadMode::Constant(value),
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                m => {
                    return unsup(format!(
                        "mode '{m}' not supported (constant, reflect, edge)"
                    ))
                }
            };
            let pads: Vec<i64> = if imp.opset >= 11 {
                match imp
                    .konst(node, 1)
                    .and_then(|t| t.ints().map(<[i64]>::to_vec))
                {
                    Some(p) => p,
                    None => return unsup("pads is not a constant"),
                }
            } else {
                a.ints("pads").map(<[i64]>::to_vec).unwrap_or_default()
            };
            let axes: Vec<usize> = match imp
                .konst(node, 3)
                .and_then(|t| t.ints().map(<[i64]>::to_vec))
            {
                Some(ax) => ax
                    .iter()
                    .map(|&v| norm_axis(v, r))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        NodeErr::Fatal(Error::model(format!("node {name}: axes out of range")))
                    })?,
                None => (0..r).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return model_err(
                    name,
                    format!("pads {pads:?} do not match {} axes", axes.len()),
                );
            }
            if pads.iter().any(|&p| p < 0) {
                return unsup(format!("negative pads (cropping) {pads:?} not supported"));
            }
            let (mut begin, mut end) = ([0usize; 4], [0usize; 4]);
            for (k, &ax) in axes.iter().enumerate() {
                begin[ax] = pads[k] as usize;
                end[ax] = pads[k + axes.len()] as usize;
            }
            if begin == [0; 4] && end == [0; 4] {
                return imp.emit(node, name, Op::Identity, vec![x]);
            }
            imp.emit(node, name, Op::Pad { begin, end, mode }, vec![x])
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let x = imp.act(node, 0)?;
            let block = pos(a.int_or("blocksize", 0), "blocksize", name)?;
            let op = if op == "DepthToSpace" {
                let crd = match a.string("mode").as_deref() {
                    None | Some("DCR") => false,
                    Some("CRD") => true,
                    Some(m) => return model_err(name, format!("mode '{m}' is not DCR or CRD")),
                };
                Op::DepthToSpace { block, crd }
            } else {
                Op::SpaceToDepth { block }
            };
            imp.emit(node, name, op, vec![x])
        }
        "Tile" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            let Some(reps) = imp
                .konst(node, 1)
                .and_then(|t| t.ints().map(<[i64]>::to_vec))
            else {
                return unsup("repeats is not a constant");
            };
            if reps.len() != xs.len() || reps.iter().any(|&v| v < 1) {
                return model_err(name, format!("repeats {reps:?} do not fit {xs:?}"));
            }
            if xs.len() != 4 {
                return unsup(format!("Tile of a {xs:?} tensor not supported (4-D only)"));
            }
            let reps = [reps[0], reps[1], reps[2], reps[3]].map(|v| v as usize);
            imp.emit(node, name, Op::Tile { reps }, vec![x])
        }
        "Expand" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            let Some(shape) = imp
                .konst(node, 1)
                .and_then(|t| t.ints().map(<[i64]>::to_vec))
            else {
                return unsup("the target shape is not a constant");
            };
            if shape.len() != xs.len() || shape.iter().any(|&d| d < 1) {
                return unsup(format!(
                    "Expand of {xs:?} to {shape:?} not supported (same rank, positive dims)"
                ));
            }
            // NumPy broadcast of the input and the shape; the input repeats along the axes
            // where it has extent 1, which a broadcasting add of zeros does.
            let mut zeros = Vec::with_capacity(xs.len());
            for (&d, &t) in xs.iter().zip(&shape) {
                let t = t as usize;
                if d != t && d != 1 && t != 1 {
                    return Err(NodeErr::Fatal(Error::shape(
                        &node.output[0],
                        format!("cannot expand {xs:?} to {shape:?}"),
                    )));
                }
                zeros.push(if d == 1 { t } else { 1 });
            }
            if zeros.iter().all(|&d| d == 1) {
                return imp.emit(node, name, Op::Identity, vec![x]);
            }
            let z = imp.add_node(
                &format!("{}/zeros", node.output[0]),
                name,
                Op::Constant(Weight {
                    data: vec![0.0; zeros.iter().product()],
                    dims: zeros.clone(),
                }),
                vec![],
                zeros,
            )?;
            let add = Op::Binary {
                kind: BinaryKind::Add,
                act: Activation::None,
            };
            imp.emit(node, name, add, vec![x, z])
        }
        "Gather" => {
            // All the elements of a 1-D view, in order (PyTorch's export of some
            // `as_strided` calls): a reshape of its activation to the indices' shape.
            if let Some(&Val::Flat { src, .. }) = imp.vals.get(&node.input[0]) {
                let shape = imp.onnx_dims(src).to_vec();
                let n = shape.iter().product::<usize>() as i64;
                let ind = imp.konst(node, 1).cloned();
                let in_order = ind.as_ref().and_then(|t| t.ints()).is_some_and(|v| {
                    v.len() as i64 == n && v.iter().zip(0..).all(|(&k, i)| k == i)
                });
                let axis = a.int_or("axis", 0);
                return match ind {
                    Some(t) if in_order && (axis == 0 || axis == -1) => {
                        reshape_nd(imp, node, name, src, &shape, t.dims.clone())
                    }
                    _ => unsup(format!(
                        "Gather from a 1-D view of a {shape:?} tensor not supported (only of all \
                         its elements in order)"
                    )),
                };
            }
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            let r = xs.len();
            let Some(ind) = imp.konst(node, 1).cloned() else {
                return unsup("indices that are not constant are not supported");
            };
            let Some(vals) = ind.ints().map(<[i64]>::to_vec) else {
                return model_err(name, "indices must be integers");
            };
            let axis = a.int_or("axis", 0);
            let Some(ax) = norm_axis(axis, r) else {
                return model_err(name, format!("axis {axis} out of range for rank {r}"));
            };
            if ind.dims.len() != 1 || (r != 2 && r != 4) || ax == 0 {
                return unsup(format!(
                    "Gather of {:?} indices along axis {axis} of a {xs:?} tensor not supported \
                     (1-D constant indices along axis 1, 2 or 3 of a 2-D or 4-D tensor)",
                    ind.dims
                ));
            }
            let d = xs[ax] as i64;
            let mut idx = Vec::with_capacity(vals.len());
            for &k in &vals {
                let k = if k < 0 { k + d } else { k };
                if !(0..d).contains(&k) {
                    return model_err(name, format!("index {k} out of range for {d}"));
                }
                idx.push(k as usize);
            }
            // Runs of consecutive indices, each one Slice; channel runs are concatenated.
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for &k in &idx {
                match runs.last_mut() {
                    Some((s, e)) if *e == k => *e = k + 1,
                    _ => runs.push((k, k + 1)),
                }
            }
            if runs.len() > 1 && ax != 1 {
                return unsup(format!(
                    "Gather of non-consecutive indices along axis {ax} not supported (only along \
                     channels)"
                ));
            }
            let slice = |(s, e): (usize, usize)| {
                let mut starts = [0usize; 4];
                let mut ends = dims4(&xs);
                starts[ax] = s;
                ends[ax] = e;
                Op::Slice {
                    starts,
                    ends,
                    steps: [1; 4],
                }
            };
            if runs.len() == 1 {
                return imp.emit(node, name, slice(runs[0]), vec![x]);
            }
            let mut parts = Vec::with_capacity(runs.len());
            for (k, &run) in runs.iter().enumerate() {
                let mut shape = xs.clone();
                shape[1] = run.1 - run.0;
                let v = imp.add_node(
                    &format!("{}/part{k}", node.output[0]),
                    name,
                    slice(run),
                    vec![x],
                    shape,
                )?;
                parts.push(v);
            }
            imp.emit(node, name, Op::Concat, parts)
        }
        "Neg" => unary(imp, node, name, UnaryKind::Neg),
        "Abs" => unary(imp, node, name, UnaryKind::Abs),
        "Sqrt" => unary(imp, node, name, UnaryKind::Sqrt),
        "Exp" => unary(imp, node, name, UnaryKind::Exp),
        "Log" => unary(imp, node, name, UnaryKind::Log),
        "Reciprocal" => unary(imp, node, name, UnaryKind::Reciprocal),
        "Erf" => unary(imp, node, name, UnaryKind::Erf),
        "Softplus" => unary(imp, node, name, UnaryKind::Softplus),
        "Mish" => unary(imp, node, name, UnaryKind::Mish),
        "Floor" => unary(imp, node, name, UnaryKind::Floor),
        "Ceil" => unary(imp, node, name, UnaryKind::Ceil),
        "Gelu" => {
            if a.string("approximate").as_deref() == Some("tanh") {
                return unary(imp, node, name, UnaryKind::GeluTanh);
            }
            // An activation, which the passes fuse into the conv or FC before it.
            let (x, xs) = imp.act_nd(node, 0)?;
            imp.emit_nd(node, 0, name, Op::Act(Activation::Gelu), vec![x], xs)
        }
        "Concat" => {
            let mut ins = Vec::new();
            let mut dims: Vec<Vec<usize>> = Vec::new();
            for i in 0..node.input.len() {
                if !imp.missing(node, i) {
                    let (v, d) = imp.act_nd(node, i)?;
                    ins.push(v);
                    dims.push(d);
                }
            }
            let Some(first) = dims.first() else {
                return model_err(name, "Concat without inputs");
            };
            let rank = first.len();
            let axis = a.int("axis").ok_or_else(|| {
                NodeErr::Fatal(Error::model(format!("node {name}: Concat needs an axis")))
            })?;
            let Some(ax) = norm_axis(axis, rank) else {
                return model_err(name, format!("axis {axis} out of range for rank {rank}"));
            };
            if dims.iter().any(|d| d.len() != rank) {
                return model_err(name, format!("inputs of different ranks {dims:?}"));
            }
            let mut out = first.clone();
            out[ax] = dims.iter().map(|d| d[ax]).sum();
            let op = match (rank, ir_axis(rank, ax)) {
                (_, 1) => Op::Concat,
                (3 | 4, axis @ 2..=3) => Op::ConcatAxis { axis },
                _ => {
                    return unsup(format!(
                        "concatenation along axis {axis} of {rank}-D tensors not supported"
                    ))
                }
            };
            imp.emit_nd(node, 0, name, op, ins, out)
        }
        "Relu" => act(Activation::Relu, imp),
        "Sigmoid" => act(Activation::Sigmoid, imp),
        "Tanh" => act(Activation::Tanh, imp),
        "HardSwish" => act(Activation::HardSwish, imp),
        "LeakyRelu" => act(
            Activation::LeakyRelu {
                alpha: a.float_or("alpha", 0.01),
            },
            imp,
        ),
        "HardSigmoid" => act(
            Activation::HardSigmoid {
                alpha: a.float_or("alpha", 0.2),
                beta: a.float_or("beta", 0.5),
            },
            imp,
        ),
        "Clip" => {
            let min = match scalar_input(imp, node, 1, "min")? {
                Some(v) => v,
                None => a.float_or("min", f32::NEG_INFINITY),
            };
            let max = match scalar_input(imp, node, 2, "max")? {
                Some(v) => v,
                None => a.float_or("max", f32::INFINITY),
            };
            if min.is_nan() || max.is_nan() || min > max {
                return unsup(format!("Clip with min {min} and max {max} not supported"));
            }
            act(Activation::Clip { min, max }, imp)
        }
        "Softmax" | "LogSoftmax" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let default = if imp.opset < 13 { 1 } else { -1 };
            let axis = a.int_or("axis", default);
            let ax = norm_axis(axis, xs.len());
            // Before opset 13 the function runs over all dims from `axis` on, flattened: one
            // axis when the others of them have extent 1.
            let ax = match ax {
                Some(k) if imp.opset < 13 => {
                    let big: Vec<usize> = (k..xs.len()).filter(|&i| xs[i] != 1).collect();
                    match big.as_slice() {
                        [] => Some(k),
                        [one] => Some(*one),
                        _ => None,
                    }
                }
                other => other,
            };
            let log = op == "LogSoftmax";
            let r = xs.len();
            match (r, ax) {
                (2 | 4, Some(1)) if !log => imp.emit(node, name, Op::Softmax, vec![x]),
                (2, Some(1)) | (3, Some(1..=2)) | (4, Some(1..=3)) => {
                    let axis = ir_axis(r, ax.unwrap_or(1));
                    imp.emit_nd(node, 0, name, Op::SoftmaxAxis { axis, log }, vec![x], xs)
                }
                _ => unsup(format!(
                    "{op} with axis={axis} over a {xs:?} tensor not supported (opset {})",
                    imp.opset
                )),
            }
        }
        "Flatten" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let axis = a.int_or("axis", 1);
            // Axis r is allowed: everything goes to the first dim.
            let Some(ax) = norm_axis(axis, xs.len() + 1) else {
                return model_err(name, format!("axis {axis} out of range for {xs:?}"));
            };
            let to = vec![xs[..ax].iter().product(), xs[ax..].iter().product()];
            reshape_nd(imp, node, name, x, &xs, to)
        }
        "Reshape" => {
            let Some(target) = imp
                .konst(node, 1)
                .and_then(|t| t.ints().map(<[i64]>::to_vec))
            else {
                return unsup("the target shape is not a constant");
            };
            let allowzero = a.int_or("allowzero", 0) != 0;
            if let Some(Val::Shuffle {
                src,
                groups,
                transposed,
                shape,
            }) = imp.vals.get(&node.input[0])
            {
                let (src, groups, transposed) = (*src, *groups, *transposed);
                let to = super::fold::reshape_target(shape, &target, allowzero)
                    .map_err(|e| NodeErr::Fatal(Error::shape(&node.output[0], e)))?;
                if to != imp.g.shape(src) {
                    return unsup(format!(
                        "reshape of a channel-shuffle view {shape:?} to {to:?} not supported \
                         (only back to {:?})",
                        imp.g.shape(src)
                    ));
                }
                let op = if transposed {
                    Op::ChannelShuffle { groups }
                } else {
                    Op::Identity
                };
                return imp.emit(node, name, op, vec![src]);
            }
            // A 1-D view read back into a shape: a reshape of the activation it stands for.
            let (x, xs) = match imp.vals.get(&node.input[0]) {
                Some(Val::Flat { src, dims, .. }) => (*src, dims.to_vec()),
                _ => imp.act_nd(node, 0)?,
            };
            let to = super::fold::reshape_target(&xs, &target, allowzero)
                .map_err(|e| NodeErr::Fatal(Error::shape(&node.output[0], e)))?;
            if to.len() == 1 {
                let dims = [imp.onnx_dims(x).iter().product()];
                imp.vals
                    .insert(node.output[0].clone(), Val::Flat { src: x, dims });
                return Ok(());
            }
            if xs.len() == 1 {
                let from = imp.onnx_dims(x).to_vec();
                return reshape_nd(imp, node, name, x, &from, to);
            }
            // [N, C, H, W] -> [N, g, C/g, H, W]: the first step of a channel shuffle.
            if let ([n, c, h, w], [n2, g, cg, h2, w2]) = (xs.as_slice(), to.as_slice()) {
                if (n, h, w) == (n2, h2, w2) && g * cg == *c && *g > 1 {
                    imp.vals.insert(
                        node.output[0].clone(),
                        Val::Shuffle {
                            src: x,
                            groups: *g,
                            transposed: false,
                            shape: to.clone(),
                        },
                    );
                    return Ok(());
                }
            }
            reshape_nd(imp, node, name, x, &xs, to)
        }
        "Transpose" => {
            let perm: Option<Vec<i64>> = a.ints("perm").map(<[i64]>::to_vec);
            if let Some(Val::Shuffle {
                src,
                groups,
                transposed,
                shape,
            }) = node.input.first().and_then(|i| imp.vals.get(i))
            {
                if perm.as_deref() != Some(&[0, 2, 1, 3, 4]) {
                    return unsup(format!(
                        "transpose {perm:?} of a channel-shuffle view {shape:?} not supported \
                         (only [0, 2, 1, 3, 4])"
                    ));
                }
                let mut shape = shape.clone();
                shape.swap(1, 2);
                let v = Val::Shuffle {
                    src: *src,
                    groups: *groups,
                    transposed: !transposed,
                    shape,
                };
                imp.vals.insert(node.output[0].clone(), v);
                return Ok(());
            }
            let (x, xs) = imp.act_nd(node, 0)?;
            let r = xs.len();
            let perm: Vec<usize> = match perm {
                None => (0..r).rev().collect(),
                Some(p) => p
                    .iter()
                    .map(|&v| norm_axis(v, r))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        NodeErr::Fatal(Error::model(format!(
                            "node {name}: perm {p:?} out of range for rank {r}"
                        )))
                    })?,
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..r).collect::<Vec<_>>() {
                return model_err(name, format!("perm {perm:?} is no permutation"));
            }
            let to: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
            // A permutation that moves only extent-1 axes keeps the element order.
            let moved: Vec<usize> = perm.iter().copied().filter(|&p| xs[p] != 1).collect();
            if moved.windows(2).all(|w| w[0] < w[1])
                && alias_compatible(&ir_dims(&xs), &ir_dims(&to))
            {
                return imp.emit_nd(node, 0, name, Op::Identity, vec![x], to);
            }
            // `[N, C, L]` is `[N, C, 1, L]`: its unit axis 2 stays in place.
            let perm = match *perm.as_slice() {
                [a, b, c, d] => [a, b, c, d],
                [a, b, c] => [ir_axis(3, a), ir_axis(3, b), 2, ir_axis(3, c)],
                _ => {
                    return unsup(format!(
                        "transpose of a {xs:?} tensor not supported (3-D and 4-D only)"
                    ))
                }
            };
            imp.emit_nd(node, 0, name, Op::Transpose { perm }, vec![x], to)
        }
        "Split" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let r = xs.len();
            let axis = a.int_or("axis", 0);
            let ax = norm_axis(axis, r).ok_or_else(|| {
                NodeErr::Fatal(Error::model(format!(
                    "node {name}: axis {axis} out of range for rank {r}"
                )))
            })?;
            let d = xs[ax];
            let outs = node.output.len();
            let sizes: Vec<usize> = if imp.opset >= 13 && !imp.missing(node, 1) {
                match imp
                    .konst(node, 1)
                    .and_then(|t| t.ints().map(<[i64]>::to_vec))
                {
                    Some(v) => v.iter().map(|&s| s.max(0) as usize).collect(),
                    None => return unsup("split sizes are not a constant"),
                }
            } else if let (true, Some(v)) = (imp.opset < 13, a.ints("split")) {
                v.iter().map(|&s| s.max(0) as usize).collect()
            } else {
                let parts = if a.has("num_outputs") {
                    a.int_or("num_outputs", 0).max(0) as usize
                } else {
                    outs
                };
                if parts == 0 {
                    return model_err(name, "Split into no outputs");
                }
                let each = d.div_ceil(parts);
                (0..parts)
                    .map(|k| each.min(d.saturating_sub(k * each)))
                    .collect()
            };
            if sizes.len() != outs || sizes.iter().sum::<usize>() != d {
                return model_err(
                    name,
                    format!(
                        "split sizes {sizes:?} do not cut an extent of {d} into {outs} outputs"
                    ),
                );
            }
            let mut off = 0;
            for (k, &len) in sizes.iter().enumerate() {
                if len == 0 {
                    return unsup("an empty output of Split not supported");
                }
                let mut starts = [0usize; 4];
                let mut ends = dims4(&ir_dims(&xs));
                starts[ir_axis(r, ax)] = off;
                ends[ir_axis(r, ax)] = off + len;
                off += len;
                if node.output[k].is_empty() {
                    continue;
                }
                let op = Op::Slice {
                    starts,
                    ends,
                    steps: [1; 4],
                };
                let mut to = xs.clone();
                to[ax] = len;
                imp.emit_nd(node, k, name, op, vec![x], to)?;
            }
            Ok(())
        }
        "Slice" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let r = xs.len();
            let ints = |i: usize, what: &str| -> NResult<Option<Vec<i64>>> {
                if imp.missing(node, i) {
                    return Ok(None);
                }
                match imp
                    .konst(node, i)
                    .and_then(|t| t.ints().map(<[i64]>::to_vec))
                {
                    Some(v) => Ok(Some(v)),
                    None => unsup(format!("{what} is not a constant")),
                }
            };
            let (Some(st), Some(en)) = (ints(1, "starts")?, ints(2, "ends")?) else {
                return model_err(name, "Slice needs starts and ends");
            };
            let axes = ints(3, "axes")?.unwrap_or_else(|| (0..st.len() as i64).collect());
            let steps = ints(4, "steps")?.unwrap_or_else(|| vec![1; st.len()]);
            if en.len() != st.len() || axes.len() != st.len() || steps.len() != st.len() {
                return model_err(name, "starts, ends, axes and steps differ in length");
            }
            let mut starts = [0usize; 4];
            let mut ends = dims4(&ir_dims(&xs));
            let mut step4 = [1usize; 4];
            let mut to = xs.clone();
            for k in 0..st.len() {
                let ax = norm_axis(axes[k], r).ok_or_else(|| {
                    NodeErr::Fatal(Error::model(format!(
                        "node {name}: axis {} out of range for rank {r}",
                        axes[k]
                    )))
                })?;
                if steps[k] <= 0 {
                    return unsup(format!(
                        "step {} not supported (only positive steps)",
                        steps[k]
                    ));
                }
                let (s, e) = super::fold::slice_bounds(xs[ax] as i64, st[k], en[k], steps[k]);
                if s >= e {
                    return unsup("a Slice that selects nothing is not supported");
                }
                to[ax] = ((e - s) as usize).div_ceil(steps[k] as usize);
                let ia = ir_axis(r, ax);
                starts[ia] = s as usize;
                ends[ia] = e as usize;
                step4[ia] = steps[k] as usize;
            }
            let op = Op::Slice {
                starts,
                ends,
                steps: step4,
            };
            imp.emit_nd(node, 0, name, op, vec![x], to)
        }
        "Resize" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            let [n, c, h, w] = match xs.as_slice() {
                [n, c, h, w] => [*n, *c, *h, *w],
                _ => {
                    return unsup(format!(
                        "Resize of a {xs:?} tensor not supported (4-D only)"
                    ))
                }
            };
            let mode = a.string("mode").unwrap_or_else(|| "nearest".into());
            let coord = resize_coord(
                &a.string("coordinate_transformation_mode")
                    .unwrap_or_else(|| "half_pixel".into()),
            )
            .unwrap_or(CoordMode::HalfPixel);
            let mode = if mode == "linear" {
                ResizeMode::Linear
            } else {
                ResizeMode::Nearest(
                    resize_round(
                        &a.string("nearest_mode")
                            .unwrap_or_else(|| "round_prefer_floor".into()),
                    )
                    .unwrap_or(NearestRound::RoundPreferFloor),
                )
            };
            // Axes the scales or sizes list (opset 18); all four before.
            let axes: Vec<usize> = match a.ints("axes") {
                Some(v) => v
                    .iter()
                    .map(|&ax| norm_axis(ax, 4))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        NodeErr::Fatal(Error::model(format!(
                            "node {name}: axes {v:?} out of range"
                        )))
                    })?,
                None => vec![0, 1, 2, 3],
            };
            let present = |i: usize| {
                !imp.missing(node, i) && imp.konst(node, i).is_none_or(|t| !t.is_empty())
            };
            let mut scale = [1.0f64; 4];
            let mut size = None;
            if present(3) {
                let Some(v) = imp
                    .konst(node, 3)
                    .and_then(|t| t.ints().map(<[i64]>::to_vec))
                else {
                    return unsup("sizes is not a constant");
                };
                if v.len() != axes.len() || v.iter().any(|&s| s <= 0) {
                    return model_err(name, format!("sizes {v:?} do not match axes {axes:?}"));
                }
                let mut full = [n, c, h, w];
                for (k, &ax) in axes.iter().enumerate() {
                    full[ax] = v[k] as usize;
                }
                for ax in 0..4 {
                    scale[ax] = full[ax] as f64 / xs[ax] as f64;
                }
                size = Some([full[2], full[3]]);
            } else if present(2) {
                let Some(t) = imp.konst(node, 2).filter(|t| t.is_float()) else {
                    return unsup("scales is not a float constant");
                };
                let v = t.to_f32();
                if v.len() != axes.len() {
                    return model_err(name, format!("scales {v:?} do not match axes {axes:?}"));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    scale[ax] = v[k] as f64;
                }
            } else {
                return model_err(name, "Resize needs scales or sizes");
            }
            if scale[0] != 1.0 || scale[1] != 1.0 {
                return unsup(format!(
                    "resizing the batch or channel axis (scales {:?}) not supported",
                    &scale[..2]
                ));
            }
            let op = Op::Resize(ResizeOp {
                mode,
                coord,
                scale: [scale[2] as f32, scale[3] as f32],
                size,
            });
            imp.emit(node, name, op, vec![x])
        }
        "ConvTranspose" => {
            let (x, w) = windowed(imp, node, name, &a, "transposed convolution")?;
            let out_pad = match a.ints("output_padding") {
                None => [0, 0],
                Some([p, q]) if *p >= 0 && *q >= 0 => [*p as usize, *q as usize],
                Some(v) => return model_err(name, format!("output_padding {v:?} is invalid")),
            };
            let d = DeconvOp {
                weight: w.weight,
                bias: w.bias,
                group: w.group,
                stride: w.stride,
                dilation: w.dilation,
                pads: w.pads,
                out_pad,
                act: Activation::None,
            };
            imp.emit(node, name, Op::Deconv(d), vec![x])
        }
        "ReduceMean" | "ReduceMax" | "ReduceSum" | "ArgMax" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let r = xs.len();
            let out_of_range = |v: &[i64]| {
                NodeErr::Fatal(Error::model(format!(
                    "node {name}: axes {v:?} out of range for rank {r}"
                )))
            };
            let axes: Vec<usize> = if op == "ArgMax" {
                let axis = a.int_or("axis", 0);
                vec![norm_axis(axis, r).ok_or_else(|| out_of_range(&[axis]))?]
            } else {
                let from_input = imp.opset >= 18 || (op == "ReduceSum" && imp.opset >= 13);
                match axes_of(imp, node, &a, from_input)? {
                    Some(v) if !v.is_empty() => v
                        .iter()
                        .map(|&ax| norm_axis(ax, r))
                        .collect::<Option<_>>()
                        .ok_or_else(|| out_of_range(&v))?,
                    _ if from_input && a.int_or("noop_with_empty_axes", 0) != 0 => {
                        return imp.emit_nd(node, 0, name, Op::Identity, vec![x], xs);
                    }
                    _ => (0..r).collect(),
                }
            };
            let kind = match op {
                "ReduceMean" => ReduceKind::Mean,
                "ReduceMax" => ReduceKind::Max,
                "ReduceSum" => ReduceKind::Sum,
                _ => ReduceKind::ArgMax,
            };
            let keepdims = a.int_or("keepdims", 1) != 0;
            let kept: Vec<usize> = (0..r)
                .map(|i| if axes.contains(&i) { 1 } else { xs[i] })
                .collect();
            let out: Vec<usize> = (0..r)
                .filter(|i| keepdims || !axes.contains(i))
                .map(|i| kept[i])
                .collect();
            // The 4-D view ([N, F] is [N, F, 1, 1], [N, C, L] is [N, C, 1, L]); reducing an
            // extent-1 axis changes nothing, except for ArgMax, whose result is then 0.
            let x4 = dims4(&ir_dims(&xs));
            let mut red = [false; 4];
            for &i in &axes {
                let ia = ir_axis(r, i);
                red[ia] = x4[ia] != 1 || kind == ReduceKind::ArgMax;
            }
            if red[0] {
                return unsup(format!("{op} over the batch axis not supported"));
            }
            if !red.contains(&true) {
                return reshape_nd(imp, node, name, x, &xs, out);
            }
            let rop = if red == [false, false, true, true] && kind == ReduceKind::Mean {
                Op::GlobalAvgPool
            } else if red == [false, false, true, true] && kind == ReduceKind::Max {
                Op::GlobalMaxPool
            } else {
                Op::Reduce { kind, axes: red }
            };
            let full: Vec<usize> = (0..4).map(|i| if red[i] { 1 } else { x4[i] }).collect();
            if keepdims && r != 2 {
                return imp.emit_nd(node, 0, name, rop, vec![x], kept);
            }
            // A 2-D input is reduced as its 4-D view; the result is then reshaped to the
            // ONNX dims.
            let out0 = node.output[0].clone();
            let x = if r == 2 {
                imp.add_node(
                    &format!("{out0}/4d"),
                    name,
                    Op::Identity,
                    vec![x],
                    x4.to_vec(),
                )?
            } else {
                x
            };
            let src = imp.add_node(&format!("{out0}/reduced"), name, rop, vec![x], full.clone())?;
            let src_dims = if r == 3 { kept } else { full };
            reshape_nd(imp, node, name, src, &src_dims, out)
        }
        "Cast" => {
            // Only a cast to float of a computed tensor (for example of ArgMax's indices,
            // which the runtime holds as exact f32 values) is an identity.
            let (x, xs) = imp.act_nd(node, 0)?;
            match a.int("to") {
                Some(1) => imp.emit_nd(node, 0, name, Op::Identity, vec![x], xs),
                to => unsup(format!(
                    "Cast of a computed tensor to type {} not supported (only to float)",
                    to.map_or("?".into(), |t| super::tensor::dtype_name(t as i32)
                        .to_string())
                )),
            }
        }
        "Unsqueeze" | "Squeeze" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            let axes = axes_of(imp, node, &a, imp.opset >= 13)?;
            let to = if op == "Squeeze" {
                let ax: Vec<usize> = match axes {
                    Some(ax) => ax.iter().filter_map(|&v| norm_axis(v, xs.len())).collect(),
                    None => (0..xs.len()).filter(|&i| xs[i] == 1).collect(),
                };
                xs.iter()
                    .enumerate()
                    .filter(|(i, _)| !ax.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            } else {
                let Some(ax) = axes else {
                    return model_err(name, "Unsqueeze needs axes");
                };
                let r = xs.len() + ax.len();
                let ax: Vec<usize> = ax.iter().filter_map(|&v| norm_axis(v, r)).collect();
                let mut it = xs.iter();
                (0..r)
                    .map(|i| {
                        if ax.contains(&i) {
                            1
                        } else {
                            it.next().copied().unwrap_or(1)
                        }
                    })
                    .collect()
            };
            reshape_nd(imp, node, name, x, &xs, to)
        }
        "BatchNormalization" => {
            let x = imp.act(node, 0)?;
            let xs = imp.g.shape(x).to_vec();
            if xs.len() != 4 && xs.len() != 2 {
                return unsup(format!("input {xs:?} not supported (only 2-D and 4-D)"));
            }
            let c = xs[1];
            let mut p = Vec::new();
            for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
                let t = float_weight(imp, node, i, what)?;
                if t.len() != c {
                    return Err(NodeErr::Fatal(Error::shape(
                        &node.input[i],
                        format!("{what} has {} values for {c} channels", t.len()),
                    )));
                }
                p.push(t.to_f32());
            }
            let eps = a.float_or("epsilon", 1e-5) as f64;
            let mut scale = Vec::with_capacity(c);
            let mut shift = Vec::with_capacity(c);
            for (((&gamma, &beta), &mean), &var) in p[0].iter().zip(&p[1]).zip(&p[2]).zip(&p[3]) {
                let s = gamma as f64 / (var as f64 + eps).sqrt();
                scale.push(s as f32);
                shift.push((beta as f64 - mean as f64 * s) as f32);
            }
            let op = Op::ChannelAffine {
                scale,
                shift,
                act: Activation::None,
            };
            imp.emit(node, name, op, vec![x])
        }
        "Identity" | "Dropout" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            if op == "Dropout" {
                if let Some(t) = imp.konst(node, 2) {
                    if t.to_f32().iter().any(|&v| v != 0.0) {
                        return unsup("training_mode=true not supported (inference only)");
                    }
                } else if !imp.missing(node, 2) {
                    return unsup("training_mode is not a constant");
                }
            }
            imp.emit_nd(node, 0, name, Op::Identity, vec![x], xs)
        }
        // Over the features of `[N, F]`, or the channels of a channels-last view
        // (`super::channels_last`).
        "LayerNormalization" => {
            let (x, xs) = imp.act_nd(node, 0)?;
            if xs.len() != 2 {
                return unsup(
                    "LayerNormalization is supported over the last axis of a 2-D [N, F] tensor \
                     and of an NHWC transpose of a 4-D tensor (Transpose perm [0, 2, 3, 1], as \
                     ConvNeXt's blocks and LayerNorm2d write it)",
                );
            }
            let op = imp.layer_norm_op(node, 2, xs[1])?;
            imp.emit(node, name, op, vec![x])
        }
        _ => unsup(format!(
            "{op} of a computed tensor not supported (only constant shape arithmetic is folded)"
        )),
    }
}

/// A reshape of activation `x` from ONNX dims `xs` to `to`: a view (no node at run time),
/// a flatten, or a reshape that moves the elements.
fn reshape_nd(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
    x: usize,
    xs: &[usize],
    to: Vec<usize>,
) -> NResult<()> {
    if !(2..=4).contains(&to.len()) {
        return unsup(format!(
            "reshape from {xs:?} to {to:?} not supported (ranks 2 to 4)"
        ));
    }
    let (xi, ti) = (ir_dims(xs), ir_dims(&to));
    if alias_compatible(&xi, &ti) {
        imp.emit_nd(node, 0, name, Op::Identity, vec![x], to)
    } else if xs.len() == 4 && to.len() == 2 && to[0] == xs[0] {
        imp.emit(node, name, Op::Flatten, vec![x])
    } else {
        imp.emit_nd(node, 0, name, Op::Reshape { shape: ti }, vec![x], to)
    }
}

/// An elementwise function of one activation.
fn unary(imp: &mut Importer, node: &NodeProto, name: &str, kind: UnaryKind) -> NResult<()> {
    let (x, xs) = imp.act_nd(node, 0)?;
    imp.emit_nd(node, 0, name, Op::Unary { kind }, vec![x], xs)
}

/// The function of a binary ONNX op.
fn binary_kind(op: &str) -> BinaryKind {
    match op {
        "Add" => BinaryKind::Add,
        "Sub" => BinaryKind::Sub,
        "Mul" => BinaryKind::Mul,
        "Div" => BinaryKind::Div,
        "Min" => BinaryKind::Min,
        "Max" => BinaryKind::Max,
        "Pow" => BinaryKind::Pow,
        _ => BinaryKind::PRelu,
    }
}

/// True when `a` and `b` (same rank) broadcast, NumPy style.
fn broadcastable(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&p, &q)| p == q || p == 1 || q == 1)
}

fn binary(imp: &mut Importer, node: &NodeProto, op: &str, name: &str) -> NResult<()> {
    if matches!(op, "Min" | "Max") && node.input.len() != 2 {
        if node.input.len() == 1 {
            let (x, xs) = imp.act_nd(node, 0)?;
            return imp.emit_nd(node, 0, name, Op::Identity, vec![x], xs);
        }
        return unsup(format!(
            "{op} of {} inputs not supported (1 or 2)",
            node.input.len()
        ));
    }
    let kind = binary_kind(op);
    let general = Op::Binary {
        kind,
        act: Activation::None,
    };
    let ca = imp.konst(node, 0).cloned();
    let cb = imp.konst(node, 1).cloned();
    match (ca, cb) {
        (None, None) => {
            let ((x, xd), (y, yd)) = (imp.act_nd(node, 0)?, imp.act_nd(node, 1)?);
            let (xs, ys) = (ir_dims(&xd), ir_dims(&yd));
            let out = broadcast_shape(&xd, &yd).ok_or_else(|| {
                NodeErr::Fatal(Error::shape(
                    &node.output[0],
                    format!("cannot broadcast {xd:?} and {yd:?}"),
                ))
            });
            let per_ch = |a: &[usize], b: &[usize]| {
                a.len() == 4 && b.len() == 4 && b[0] == a[0] && b[1] == a[1] && b[2] * b[3] == 1
            };
            let op = match op {
                "Add" if xs == ys => Op::Add {
                    act: Activation::None,
                },
                "Mul" if xs == ys || per_ch(&xs, &ys) => Op::Mul,
                "Mul" if per_ch(&ys, &xs) => {
                    return imp.emit_nd(node, 0, name, Op::Mul, vec![y, x], out?);
                }
                _ if xd.len() == yd.len() && broadcastable(&xs, &ys) => general,
                _ => {
                    return unsup(format!(
                        "{op} of computed tensors {xd:?} and {yd:?} not supported (they must \
                         have the same rank and broadcast)"
                    ))
                }
            };
            imp.emit_nd(node, 0, name, op, vec![x, y], out?)
        }
        (Some(c), None) | (None, Some(c)) => {
            let const_first = imp.konst(node, 0).is_some();
            let (x, xs) = imp.act_nd(node, if const_first { 1 } else { 0 })?;
            if let Some(v) = per_channel(&xs, &c) {
                if op == "PRelu" && !const_first && v.iter().all(|&s| s == v[0]) {
                    let op = Op::Act(Activation::LeakyRelu { alpha: v[0] });
                    return imp.emit_nd(node, 0, name, op, vec![x], xs);
                }
                let ones = vec![1.0f32; v.len()];
                let zeros = vec![0.0f32; v.len()];
                let affine = match (op, const_first) {
                    ("Add", _) => Some((ones, v)),
                    ("Sub", false) => Some((ones, v.iter().map(|s| -s).collect())),
                    ("Sub", true) => Some((vec![-1.0; v.len()], v)),
                    ("Mul", _) => Some((v, zeros)),
                    ("Div", false) => Some((v.iter().map(|s| 1.0 / s).collect(), zeros)),
                    _ => None,
                };
                if let Some((scale, shift)) = affine {
                    let op = Op::ChannelAffine {
                        scale,
                        shift,
                        act: Activation::None,
                    };
                    return imp.emit_nd(node, 0, name, op, vec![x], xs);
                }
            }
            // Any other constant: a Constant node of the activation's rank (dims aligned
            // right, as ONNX broadcasts), then the general elementwise op.
            if !c.is_float() || c.dims.len() > xs.len() {
                return unsup(format!(
                    "{op} of a {xs:?} tensor with a constant of shape {:?} not supported",
                    c.dims
                ));
            }
            let mut dims = vec![1usize; xs.len() - c.dims.len()];
            dims.extend(&c.dims);
            if !broadcastable(&xs, &dims) {
                return Err(NodeErr::Fatal(Error::shape(
                    &node.output[0],
                    format!("cannot broadcast {xs:?} and {dims:?}"),
                )));
            }
            let out = broadcast_shape(&xs, &dims).unwrap_or_default();
            let cd = ir_dims(&dims);
            let cv = imp.add_node(
                &format!("{}/constant", node.output[0]),
                name,
                Op::Constant(Weight {
                    dims: cd.clone(),
                    data: c.to_f32(),
                }),
                vec![],
                cd,
            )?;
            let ins = if const_first {
                vec![cv, x]
            } else {
                vec![x, cv]
            };
            imp.emit_nd(node, 0, name, general, ins, out)
        }
        (Some(_), Some(_)) => unsup("both inputs are constant but could not be folded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::shape::window_out;

    #[test]
    fn ceil_mode_matches_pytorch() {
        // 112 -> k3 s2 p0: floor 55, ceil 56 (ceil pad 1).
        assert_eq!(ceil_pad(112, 3, 2, 1, 0, 0), Some(1));
        assert_eq!(window_out(112, 3, 2, 1, 0, 1), Some(56));
        // Exact fit: no extra padding.
        assert_eq!(ceil_pad(111, 3, 2, 1, 0, 0), Some(0));
        // A last window starting in the end padding is dropped: 5, k2 s2 p1 -> 3 (not 4).
        let cp = ceil_pad(5, 2, 2, 1, 1, 1).unwrap();
        assert_eq!(window_out(5, 2, 2, 1, 1, 1 + cp), Some(3));
    }

    #[test]
    fn per_channel_broadcasts() {
        let c = ConstTensor::f32(vec![3, 1, 1], vec![1.0, 2.0, 3.0]);
        assert_eq!(per_channel(&[1, 3, 4, 4], &c), Some(vec![1.0, 2.0, 3.0]));
        let s = ConstTensor::f32(vec![], vec![2.0]);
        assert_eq!(per_channel(&[1, 3, 4, 4], &s), Some(vec![2.0; 3]));
        let row = ConstTensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0]);
        assert_eq!(per_channel(&[2, 3], &row), Some(vec![1.0, 2.0, 3.0]));
        // Broadcast over W, not channels.
        let w = ConstTensor::f32(vec![4], vec![0.0; 4]);
        assert_eq!(per_channel(&[1, 3, 4, 4], &w), None);
    }
}
