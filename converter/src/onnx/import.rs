//! Decoding an ONNX model and importing it into the IR.
//!
//! Nodes are visited in topological order with every activation shape known (the input
//! shapes are fixed first). A node whose inputs are all constant and whose op is shape
//! arithmetic is evaluated on the spot (see `fold`); every other node becomes an IR node.
//! A node that cannot be translated is recorded and its outputs are poisoned, so that the
//! walk goes on and [`Error::Unsupported`] lists every such node at once.

use super::attrs::Attrs;
use super::fold::{self, Input};
use super::proto::{tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto, NodeProto};
use super::tensor::read_tensor;
use super::{MAX_OPSET, MIN_OPSET};
use crate::error::{Error, Result, UnsupportedNode};
use crate::ir::{self, ConstTensor, GraphIo, Op, ValueId};
use prost::Message;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Provenance of the source model, for the `.smof` metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    /// `producer_name` of the ONNX model (e.g. `pytorch`).
    pub producer_name: String,
    /// `producer_version` of the ONNX model.
    pub producer_version: String,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Default-domain opset.
    pub opset: i64,
    /// Name of the ONNX graph.
    pub graph_name: String,
    /// Number of nodes in the ONNX graph.
    pub onnx_nodes: usize,
}

/// The result of [`import`].
#[derive(Clone, Debug)]
pub struct Imported {
    /// The IR graph, before any pass.
    pub graph: ir::Graph,
    /// Provenance.
    pub info: ModelInfo,
    /// Things the user should know (e.g. an overridden input shape).
    pub warnings: Vec<String>,
}

/// Decodes the protobuf, rejecting bytes that are not an ONNX model.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(Error::NotOnnx {
            what: "the input is empty".into(),
        });
    }
    let m = ModelProto::decode(bytes).map_err(|e| Error::NotOnnx {
        what: format!("cannot decode the protobuf ({e}); the file is not ONNX or is truncated"),
    })?;
    if m.graph.is_none() || (m.ir_version.is_none() && m.opset_import.is_empty()) {
        return Err(Error::NotOnnx {
            what: "the protobuf has no graph, IR version or opset: not an ONNX model".into(),
        });
    }
    Ok(m)
}

/// A value during import.
pub(super) enum Val {
    /// An activation of the IR graph.
    Act(ValueId),
    /// A constant (initializer, `Constant`, or folded).
    Const(ConstTensor),
    /// The output of an unsupported node.
    Poison,
    /// The 5-D view `[N, g, C/g, H, W]` of the activation `src` (`[N, C, H, W]`) in the middle
    /// of a channel shuffle, with axes 1 and 2 swapped when `transposed`: only a Transpose
    /// swapping them or a Reshape back to 4-D may read it.
    /// The NHWC transpose (`perm = [0, 2, 3, 1]`) of the 4-D activation `src`, not computed
    /// unless an op needs it (see [`super::channels_last`]).
    ChannelsLast {
        /// The NCHW activation.
        src: ValueId,
        /// The ONNX dims of the view, `[N, H, W, C]`.
        shape: Vec<usize>,
    },
    /// The 1-D reshape of the activation `src` (its elements in the order of its ONNX
    /// dims): only a Reshape back to 2 to 4 dims and a Gather of every element in order
    /// read it.
    Flat {
        /// The activation.
        src: ValueId,
        /// The view's dims: the element count.
        dims: [usize; 1],
    },
    Shuffle {
        /// The 4-D activation.
        src: ValueId,
        /// Groups `g`.
        groups: usize,
        /// True after the transpose.
        transposed: bool,
        /// The 5-D shape as ONNX sees it.
        shape: Vec<usize>,
    },
}

/// The IR shape that holds a tensor of ONNX dims `d`: `[N, C, L]` is `[N, C, 1, L]`; 2-D and
/// 4-D dims are their own.
pub(super) fn ir_dims(d: &[usize]) -> Vec<usize> {
    match d {
        [n, c, l] => vec![*n, *c, 1, *l],
        _ => d.to_vec(),
    }
}

/// The IR axis of ONNX axis `a` of a tensor of rank `r` (axis 2 of `[N, C, L]` is W).
pub(super) fn ir_axis(r: usize, a: usize) -> usize {
    if r == 3 && a == 2 {
        3
    } else {
        a
    }
}

/// Why a node was not imported.
pub(super) enum NodeErr {
    /// The node is valid ONNX but not supported: reported with all the others.
    Unsupported(String),
    /// The model is wrong: conversion stops.
    Fatal(Error),
}

impl From<Error> for NodeErr {
    fn from(e: Error) -> Self {
        NodeErr::Fatal(e)
    }
}

pub(super) type NResult<T> = std::result::Result<T, NodeErr>;

/// Shorthand for an unsupported-node error.
pub(super) fn unsup<T>(reason: impl Into<String>) -> NResult<T> {
    Err(NodeErr::Unsupported(reason.into()))
}

pub(super) struct Importer {
    pub g: ir::Graph,
    pub vals: HashMap<String, Val>,
    pub opset: i64,
    /// Names read by some node or listed as a graph output.
    pub used: HashSet<String>,
    /// The ONNX dims of activations whose ONNX rank is not the IR's: a 3-D `[N, C, L]`
    /// tensor is held as the IR value `[N, C, 1, L]` (the same elements in NCHW order).
    /// Only the operators that know this read such a value (through [`Importer::act_nd`]).
    pub views: HashMap<ValueId, Vec<usize>>,
    /// The NHWC tensors computed for channels-last views that an op needed as they are, by
    /// the view's name (see [`super::channels_last`]).
    pub transposed: HashMap<String, ValueId>,
}

fn normalize_domain(d: Option<&str>) -> &str {
    match d {
        None | Some("") | Some("ai.onnx") => "",
        Some(d) => d,
    }
}

/// Nodes in topological order (stable: ready nodes keep their file order).
fn topo_order(graph: &GraphProto) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), i).is_some() {
                return Err(Error::model(format!(
                    "tensor '{o}' is produced by two nodes"
                )));
            }
        }
    }
    let mut pending = vec![0usize; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        let deps: HashSet<usize> = n
            .input
            .iter()
            .filter_map(|x| producer.get(x.as_str()).copied())
            .collect();
        pending[i] = deps.len();
        for d in deps {
            users[d].push(i);
        }
    }
    let mut ready: BinaryHeap<std::cmp::Reverse<usize>> = (0..graph.node.len())
        .filter(|&i| pending[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(std::cmp::Reverse(u));
            }
        }
    }
    if order.len() != graph.node.len() {
        return Err(Error::model("the graph has a cycle"));
    }
    Ok(order)
}

/// The declared dims of a graph input or output: `Some(d)` for fixed dims, `None` for
/// symbolic or missing ones. `None` overall when the shape itself is missing.
fn declared_dims(
    vi: &super::proto::ValueInfoProto,
) -> Option<(i32, Vec<std::result::Result<usize, String>>)> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return None;
    };
    let shape = t.shape.as_ref()?;
    let dims = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => Ok(*v as usize),
            Some(dimension::Value::DimValue(v)) => Err(format!("is {v}")),
            Some(dimension::Value::DimParam(p)) => Err(format!("is symbolic ('{p}')")),
            None => Err("is unknown".to_string()),
        })
        .collect();
    Some((t.elem_type.unwrap_or(1), dims))
}

/// True when every dim is within the runtime's limits (so products of dims cannot overflow).
fn shape_in_bounds(shape: &[usize]) -> bool {
    shape
        .iter()
        .all(|&d| d as u64 <= smof::graph::MAX_DIM as u64)
        && shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .is_some_and(|n| n <= smof::graph::MAX_TENSOR_ELEMS)
}

/// Decodes and imports an ONNX model. `input_shapes` (NCHW, one per graph input, or
/// empty) overrides the shapes the model declares. A model with external data is an error
/// here; see [`import_with`].
pub fn import(bytes: &[u8], input_shapes: &[Vec<usize>]) -> Result<Imported> {
    import_with(bytes, input_shapes, None)
}

/// [`import`], reading tensors kept in external data files from `external_dir` (the
/// folder of the model file; see [`super::external`]).
pub fn import_with(
    bytes: &[u8],
    input_shapes: &[Vec<usize>],
    external_dir: Option<&std::path::Path>,
) -> Result<Imported> {
    let mut model = decode(bytes)?;
    if let Some(dir) = external_dir {
        super::external::load(&mut model, dir)?;
    }
    let mut opsets: HashMap<String, i64> = HashMap::new();
    for o in &model.opset_import {
        opsets.insert(
            normalize_domain(o.domain.as_deref()).to_string(),
            o.version.unwrap_or(0),
        );
    }
    let opset = *opsets.get("").ok_or_else(|| Error::Opset {
        domain: "ai.onnx".into(),
        version: 0,
        what: "the model imports no default-domain opset".into(),
    })?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(Error::Opset {
            domain: "ai.onnx".into(),
            version: opset,
            what: format!(
                "supported opsets are {MIN_OPSET} to {MAX_OPSET}; re-export the model with one of them"
            ),
        });
    }
    let graph = model.graph.as_ref().ok_or_else(|| Error::NotOnnx {
        what: "no graph".into(),
    })?;
    let info = ModelInfo {
        producer_name: model.producer_name.clone().unwrap_or_default(),
        producer_version: model.producer_version.clone().unwrap_or_default(),
        ir_version: model.ir_version.unwrap_or(0),
        opset,
        graph_name: graph.name.clone().unwrap_or_default(),
        onnx_nodes: graph.node.len(),
    };
    let mut warnings = Vec::new();
    if !graph.sparse_initializer.is_empty() {
        return Err(Error::model("sparse initializers are not supported"));
    }
    let mut imp = Importer {
        g: ir::Graph {
            name: info.graph_name.clone(),
            ..Default::default()
        },
        vals: HashMap::new(),
        opset,
        used: HashSet::new(),
        views: HashMap::new(),
        transposed: HashMap::new(),
    };
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let c = read_tensor(t, &format!("initializer '{name}'"))?;
        imp.vals.insert(name, Val::Const(c));
    }

    // Graph inputs (those without an initializer).
    let real_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !imp.vals.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    if real_inputs.is_empty() {
        return Err(Error::model("the graph has no input"));
    }
    if !input_shapes.is_empty() && input_shapes.len() != real_inputs.len() {
        return Err(Error::Options(format!(
            "{} input shape(s) given, the model has {} input(s)",
            input_shapes.len(),
            real_inputs.len()
        )));
    }
    for (k, vi) in real_inputs.iter().enumerate() {
        let name = vi.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(Error::model("a graph input has no name"));
        }
        let declared = declared_dims(vi);
        if let Some((et, _)) = &declared {
            if *et != 1 {
                return Err(Error::shape(
                    &name,
                    format!(
                        "input type is {}; only float32 inputs are supported",
                        super::tensor::dtype_name(*et)
                    ),
                ));
            }
        }
        let shape: Vec<usize> = if let Some(given) = input_shapes.get(k) {
            if given.contains(&0) {
                return Err(Error::Options(format!(
                    "input shape {given:?} for '{name}' has a zero dim"
                )));
            }
            if let Some((_, dims)) = &declared {
                if dims.len() != given.len() {
                    return Err(Error::shape(
                        &name,
                        format!(
                            "the model declares rank {}, the given shape {given:?} has rank {}",
                            dims.len(),
                            given.len()
                        ),
                    ));
                }
                let fixed: Vec<usize> = dims.iter().map(|d| d.as_ref().map_or(0, |v| *v)).collect();
                if fixed.iter().zip(given).any(|(&f, &g)| f != 0 && f != g) {
                    warnings.push(format!(
                        "input '{name}': the model declares {fixed:?}, using the given {given:?}"
                    ));
                }
            }
            given.clone()
        } else {
            let (_, dims) = declared.ok_or_else(|| {
                Error::shape(
                    &name,
                    "the model does not declare the input shape; give it with --input-shape",
                )
            })?;
            let mut shape = Vec::new();
            for (i, d) in dims.into_iter().enumerate() {
                shape.push(d.map_err(|what| {
                    Error::shape(
                        &name,
                        format!("dimension {i} {what}; give the input shape with --input-shape"),
                    )
                })?);
            }
            shape
        };
        if !shape_in_bounds(&shape) {
            return Err(Error::shape(
                &name,
                format!("input shape {shape:?} is too large"),
            ));
        }
        if !(2..=4).contains(&shape.len()) {
            return Err(Error::shape(
                &name,
                format!(
                    "input shape {shape:?}: only 4-D (NCHW), 3-D (N, C, L) and 2-D (N, F) \
                     inputs are supported"
                ),
            ));
        }
        let v = imp.g.add_value(&name, ir_dims(&shape));
        if shape.len() == 3 {
            imp.views.insert(v, shape.clone());
        }
        imp.g.inputs.push(GraphIo {
            name: name.clone(),
            value: v,
            dims: shape,
        });
        imp.vals.insert(name, Val::Act(v));
    }

    for n in &graph.node {
        imp.used
            .extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
    }
    for o in &graph.output {
        imp.used.insert(o.name.clone().unwrap_or_default());
    }

    let mut unsupported = Vec::new();
    for idx in topo_order(graph)? {
        let node = &graph.node[idx];
        let name = match node.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("#{idx}"),
        };
        let op = node.op_type.clone().unwrap_or_default();
        let domain = normalize_domain(node.domain.as_deref()).to_string();
        let report = |reason: String| UnsupportedNode {
            name: name.clone(),
            op_type: op.clone(),
            domain: domain.clone(),
            opset: opsets.get(&domain).copied().unwrap_or(0),
            reason,
        };
        if node.output.first().is_none_or(|o| o.is_empty()) {
            return Err(Error::model(format!("node {name} ({op}) has no output")));
        }
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            if !imp.vals.contains_key(i) {
                return Err(Error::model(format!(
                    "node {name} ({op}) reads '{i}', which is no graph input, initializer or node output"
                )));
            }
        }
        let result = if !domain.is_empty() {
            unsup(format!("domain '{domain}' is not supported"))
        } else if let Some(reason) = super::ops::static_reason(&op, node) {
            unsup(reason)
        } else if node
            .input
            .iter()
            .any(|i| matches!(imp.vals.get(i), Some(Val::Poison)))
        {
            // Reported through the node that poisoned its input.
            Err(NodeErr::Unsupported(String::new()))
        } else {
            match imp.channels_last(node, &op, &name) {
                Some(r) => r,
                None => imp.import_node(node, &op, &name),
            }
        };
        match result {
            Ok(()) => {}
            Err(NodeErr::Fatal(e)) => return Err(e),
            Err(NodeErr::Unsupported(reason)) => {
                if !reason.is_empty() {
                    unsupported.push(report(reason));
                }
                for o in node.output.iter().filter(|o| !o.is_empty()) {
                    imp.vals.insert(o.clone(), Val::Poison);
                }
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported { nodes: unsupported });
    }

    for o in &graph.output {
        let name = o.name.clone().unwrap_or_default();
        if let Err(NodeErr::Fatal(e)) = imp.materialize(&name, &name) {
            return Err(e);
        }
        let v = match imp.vals.get(&name) {
            Some(Val::Act(v)) => *v,
            Some(Val::Const(_)) => {
                return Err(Error::model(format!(
                    "output '{name}' is a constant; nothing computes it from the inputs"
                )))
            }
            _ => {
                return Err(Error::model(format!(
                    "output '{name}' is not produced by any node"
                )))
            }
        };
        let shape = imp.onnx_dims(v).to_vec();
        if input_shapes.is_empty() {
            if let Some((_, dims)) = declared_dims(o) {
                let fixed: std::result::Result<Vec<usize>, _> = dims.into_iter().collect();
                if let Ok(fixed) = fixed {
                    if fixed != shape {
                        warnings.push(format!("output '{name}': the model declares {fixed:?}, inference gives {shape:?}"));
                    }
                }
            }
        }
        imp.g.outputs.push(GraphIo {
            name,
            value: v,
            dims: shape,
        });
    }
    if imp.g.outputs.is_empty() {
        return Err(Error::model("the graph has no output"));
    }
    imp.g.check()?;
    Ok(Imported {
        graph: imp.g,
        info,
        warnings,
    })
}

impl Importer {
    /// The import-time view of input `i` of `node`.
    pub fn input(&self, node: &NodeProto, i: usize) -> Input<'_> {
        match node
            .input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| self.vals.get(s))
        {
            Some(Val::Const(c)) => Input::Const(c),
            Some(Val::Act(v)) => Input::Act(self.onnx_dims(*v)),
            Some(Val::Shuffle { shape, .. }) => Input::Act(shape),
            Some(Val::ChannelsLast { shape, .. }) => Input::Act(shape),
            Some(Val::Flat { dims, .. }) => Input::Act(dims),
            _ => Input::Missing,
        }
    }

    /// The ONNX dims of activation `v` (its IR shape unless it is a 3-D view).
    pub fn onnx_dims(&self, v: ValueId) -> &[usize] {
        self.views.get(&v).map_or(self.g.shape(v), Vec::as_slice)
    }

    /// Input `i`, an activation of any rank the importer holds, with its ONNX dims.
    pub fn act_nd(&self, node: &NodeProto, i: usize) -> NResult<(ValueId, Vec<usize>)> {
        let name = node.input.get(i).map_or("", String::as_str);
        match self.vals.get(name) {
            Some(Val::Act(v)) => Ok((*v, self.onnx_dims(*v).to_vec())),
            _ => self.act(node, i).map(|v| (v, self.g.shape(v).to_vec())),
        }
    }

    /// Input `i`, which must be a 2-D or 4-D activation.
    pub fn act(&self, node: &NodeProto, i: usize) -> NResult<ValueId> {
        let name = node.input.get(i).map_or("", String::as_str);
        match self.vals.get(name) {
            Some(Val::Act(v)) if self.views.contains_key(v) => unsup(format!(
                "input {i} ('{name}') is a {:?} tensor; {} takes only 2-D and 4-D inputs",
                self.views[v],
                node.op_type.as_deref().unwrap_or("")
            )),
            Some(Val::Act(v)) => Ok(*v),
            Some(Val::Const(_)) => unsup(format!(
                "input {i} ('{name}') is a constant; only computed tensors are supported there"
            )),
            Some(Val::Shuffle { shape, .. }) => unsup(format!(
                "input {i} ('{name}') is a {}-D view of a channel shuffle; only the shuffle's \
                 Transpose and its Reshape back to 4-D may read it",
                shape.len()
            )),
            Some(Val::ChannelsLast { .. }) => unsup(format!(
                "input {i} ('{name}') is a channels-last view that was not computed"
            )),
            Some(Val::Flat { src, .. }) => unsup(format!(
                "input {i} ('{name}') is the 1-D reshape of a {:?} tensor; only a Reshape \
                 and a Gather of all its elements in order may read it",
                self.onnx_dims(*src)
            )),
            _ => unsup(format!("input {i} is missing")),
        }
    }

    /// Input `i` when it is a constant.
    pub fn konst(&self, node: &NodeProto, i: usize) -> Option<&ConstTensor> {
        match node.input.get(i).and_then(|n| self.vals.get(n)) {
            Some(Val::Const(c)) => Some(c),
            _ => None,
        }
    }

    /// True when input `i` is omitted.
    pub fn missing(&self, node: &NodeProto, i: usize) -> bool {
        node.input.get(i).is_none_or(|s| s.is_empty())
    }

    /// Adds an IR node computing `op` on `inputs` into the node's first output.
    pub fn emit(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
    ) -> NResult<()> {
        self.emit_output(node, 0, name, op, inputs).map(|_| ())
    }

    /// Like [`Importer::emit`], into output `k` of the node (Split); returns the new value.
    pub fn emit_output(
        &mut self,
        node: &NodeProto,
        k: usize,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
    ) -> NResult<ValueId> {
        let out = node.output.get(k).cloned().unwrap_or_default();
        let what = format!("{} node {name}", node.op_type.as_deref().unwrap_or(""));
        let v = self.ir_node(&out, &what, name, op, inputs)?;
        self.vals.insert(out, Val::Act(v));
        Ok(v)
    }

    /// Adds an IR node `name` of `op` on `inputs` writing the new value `value`, its shape
    /// inferred; `what` names the node in a shape error. Returns the value.
    pub(super) fn ir_node(
        &mut self,
        value: &str,
        what: &str,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
    ) -> NResult<ValueId> {
        let ins: Vec<&[usize]> = inputs.iter().map(|&i| self.g.shape(i)).collect();
        let shape =
            ir::shape::infer(&op, &ins).map_err(|e| Error::shape(value, format!("{what}: {e}")))?;
        self.add_node(value, name, op, inputs, shape)
    }

    /// Like [`Importer::emit_output`] for an output whose ONNX dims are `dims`: a 3-D
    /// `[N, C, L]` output is the IR value `[N, C, 1, L]`, recorded as a view.
    pub fn emit_nd(
        &mut self,
        node: &NodeProto,
        k: usize,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        dims: Vec<usize>,
    ) -> NResult<()> {
        let out = node.output.get(k).cloned().unwrap_or_default();
        let v = if op == Op::Identity {
            // A view: the IR shape is the one of the ONNX dims (the graph check confirms that
            // it describes the input's elements).
            let v = self.add_node(&out, name, op, inputs, ir_dims(&dims))?;
            self.vals.insert(out, Val::Act(v));
            v
        } else {
            self.emit_output(node, k, name, op, inputs)?
        };
        if ir_dims(&dims) != self.g.shape(v) {
            return super::ops::model_err(
                name,
                format!("the output computes to {:?}, not {dims:?}", self.g.shape(v)),
            );
        }
        if dims.len() == 3 {
            self.views.insert(v, dims);
        }
        Ok(())
    }

    /// Adds an IR node writing a new value `value_name` of `shape`; returns the value.
    pub fn add_node(
        &mut self,
        value_name: &str,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        shape: Vec<usize>,
    ) -> NResult<ValueId> {
        let out = value_name.to_string();
        if shape.len() != 2 && shape.len() != 4 {
            return unsup(format!(
                "output shape {shape:?}: only 2-D and 4-D tensors are supported"
            ));
        }
        if !shape_in_bounds(&shape) {
            return Err(NodeErr::Fatal(Error::shape(
                &out,
                format!("shape {shape:?} is too large"),
            )));
        }
        let v = self.g.add_value(&out, shape);
        self.g.nodes.push(ir::Node {
            name: name.to_string(),
            op,
            inputs,
            output: v,
        });
        Ok(v)
    }

    pub(super) fn import_node(&mut self, node: &NodeProto, op: &str, name: &str) -> NResult<()> {
        for (k, o) in node.output.iter().enumerate().skip(1) {
            if op != "Split" && !o.is_empty() && self.used.contains(o) {
                return unsup(format!(
                    "output {k} ('{o}') is used; only the first output is supported"
                ));
            }
        }
        if fold::foldable(op) {
            let ins: Vec<Input> = (0..node.input.len()).map(|i| self.input(node, i)).collect();
            match fold::fold(op, &Attrs::new(node), &ins, self.opset) {
                Ok(Some(t)) => {
                    let out = node.output.first().cloned().unwrap_or_default();
                    self.vals.insert(out, Val::Const(t));
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return unsup(e),
            }
        }
        super::ops::import_op(self, node, op, name)
    }
}
