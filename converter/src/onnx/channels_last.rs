//! Channels-last views: `Transpose(perm = [0, 2, 3, 1])` of a 4-D activation, as PyTorch
//! writes around `nn.Linear` and `nn.LayerNorm` applied to each pixel (ConvNeXt's blocks,
//! its `LayerNorm2d`).
//!
//! Such a transpose moves no data here: its output is a [`Val::ChannelsLast`] view of the
//! NCHW activation it read. The per-pixel ops that follow run on that activation instead:
//! a `MatMul` by a constant `[C, K]` matrix is a 1x1 conv, a `LayerNormalization` over the
//! last axis is a normalisation over channels, elementwise ops with constants along the
//! last axis are per-channel ops, activations are themselves; each gives a view again.
//! `Transpose(perm = [0, 3, 1, 2])` of a view is the activation itself, so that a
//! ConvNeXt block's two transposes vanish. Any other reader gets the transposed tensor,
//! computed once ([`Importer::materialize`]).

use super::import::{Importer, NResult, Val};
use super::proto::{AttributeProto, NodeProto};
use crate::ir::{ConstTensor, Op, ValueId};

/// Elementwise ops of one activation input that run on the view's activation as they are
/// (further inputs are constants: Clip's bounds, Dropout's ratio).
const UNARY: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "HardSwish",
    "HardSigmoid",
    "Mish",
    "Softplus",
    "Erf",
    "Clip",
    "Neg",
    "Abs",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Dropout",
    "Identity",
];

/// Elementwise ops of two inputs, each a view or a constant along the last axis.
const BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Min", "Max", "Pow"];

impl Importer {
    /// Imports `node` when it creates or reads a channels-last view; `None` to import it as
    /// usual (after any view it reads has been materialized).
    pub(super) fn channels_last(
        &mut self,
        node: &NodeProto,
        op: &str,
        name: &str,
    ) -> Option<NResult<()>> {
        let views: Vec<usize> = (0..node.input.len())
            .filter(|&i| matches!(self.val(node, i), Some(Val::ChannelsLast { .. })))
            .collect();
        let perm = || {
            node.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("perm"))
                .map(|a| a.ints.clone())
        };
        if views.is_empty() {
            // A new view: the transpose of an NCHW activation to NHWC.
            if op == "Transpose" && perm().as_deref() == Some(&[0, 2, 3, 1]) {
                if let Some(Val::Act(v)) = self.val(node, 0) {
                    let v = *v;
                    if !self.views.contains_key(&v) && self.g.shape(v).len() == 4 {
                        let s = self.g.shape(v);
                        let shape = vec![s[0], s[2], s[3], s[1]];
                        let out = node.output[0].clone();
                        self.vals.insert(out, Val::ChannelsLast { src: v, shape });
                        return Some(Ok(()));
                    }
                }
            }
            return None;
        }
        let handled = match op {
            "Transpose" if views == [0] && perm().as_deref() == Some(&[0, 3, 1, 2]) => {
                let Some(Val::ChannelsLast { src, .. }) = self.val(node, 0) else {
                    unreachable!("input 0 is the view")
                };
                let src = *src;
                self.vals.insert(node.output[0].clone(), Val::Act(src));
                Some(Ok(()))
            }
            _ if UNARY.contains(&op) && views == [0] => self.per_pixel(node, name, None),
            _ if BINARY.contains(&op) && node.input.len() == 2 => self.per_pixel(node, name, None),
            "MatMul" if views == [0] => self.matmul(node, name),
            "LayerNormalization" if views == [0] => Some(self.layer_norm(node, name)),
            _ => None,
        };
        if handled.is_some() {
            return handled;
        }
        // Any other reader gets the transposed tensor (computed once per view; the view
        // stays, for the per-pixel readers that come later).
        let mut bind = Vec::new();
        for i in views {
            match self.materialized(&node.input[i], name) {
                Ok(v) => bind.push((i, Val::Act(v))),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(self.import_bound(node, name, bind))
    }

    /// Imports `node` with input `i` read as `val` for each `(i, val)` of `bind` (under a
    /// fresh name, unbound afterwards).
    fn import_bound(
        &mut self,
        node: &NodeProto,
        name: &str,
        bind: Vec<(usize, Val)>,
    ) -> NResult<()> {
        let mut inner = node.clone();
        let mut bound = Vec::new();
        for (i, val) in bind {
            let fresh = self.fresh_name(&node.input[i]);
            self.vals.insert(fresh.clone(), val);
            inner.input[i] = fresh.clone();
            bound.push(fresh);
        }
        let result = self.import_node(&inner, inner.op_type.as_deref().unwrap_or(""), name);
        for b in bound {
            self.vals.remove(&b);
        }
        result
    }

    /// The value of input `i` of `node`.
    fn val(&self, node: &NodeProto, i: usize) -> Option<&Val> {
        node.input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| self.vals.get(s))
    }

    /// The NHWC tensor that the view `input` stands for, computed by a transpose the first
    /// time it is asked for.
    fn materialized(&mut self, input: &str, name: &str) -> NResult<ValueId> {
        if let Some(&v) = self.transposed.get(input) {
            return Ok(v);
        }
        let Some(Val::ChannelsLast { src, .. }) = self.vals.get(input) else {
            unreachable!("only views are materialized")
        };
        let op = Op::Transpose { perm: [0, 2, 3, 1] };
        let what = format!("node {name}");
        let v = self.ir_node(&format!("{input}.nhwc"), &what, name, op, vec![*src])?;
        self.transposed.insert(input.to_string(), v);
        Ok(v)
    }

    /// Replaces the view `input`, if it is one, by the NHWC tensor it stands for (for a
    /// graph output).
    pub(super) fn materialize(&mut self, input: &str, name: &str) -> NResult<()> {
        if matches!(self.vals.get(input), Some(Val::ChannelsLast { .. })) {
            let v = self.materialized(input, name)?;
            self.vals.insert(input.to_string(), Val::Act(v));
        }
        Ok(())
    }

    /// A fresh value name derived from `base`.
    fn fresh_name(&self, base: &str) -> String {
        let mut k = 0;
        loop {
            let n = format!(
                "{base}.nchw{}",
                if k == 0 { String::new() } else { k.to_string() }
            );
            if !self.vals.contains_key(&n) {
                return n;
            }
            k += 1;
        }
    }

    /// Imports `node` (or `rewritten`, an equivalent node on the views' activations) with
    /// every view input replaced by its NCHW activation and every constant along the last
    /// axis by the per-channel constant `[1, C, 1, 1]`; its output is a view again. `None`
    /// when an input is neither (an NCHW activation, or a constant that varies along other
    /// axes).
    fn per_pixel(
        &mut self,
        node: &NodeProto,
        name: &str,
        rewritten: Option<NodeProto>,
    ) -> Option<NResult<()>> {
        let node_in = rewritten.as_ref().unwrap_or(node);
        let mut shape = None;
        let mut bind = Vec::new();
        for (i, input) in node_in.input.iter().enumerate() {
            if input.is_empty() {
                continue;
            }
            let val = match self.vals.get(input)? {
                Val::ChannelsLast { src, shape: s } => {
                    if shape.as_ref().is_some_and(|t: &Vec<usize>| t != s) {
                        return None;
                    }
                    shape = Some(s.clone());
                    Val::Act(*src)
                }
                // The operand of an elementwise op of two inputs, along the last axis.
                Val::Const(c) if BINARY.contains(&node_in.op_type.as_deref()?) => {
                    Val::Const(per_channel(c)?)
                }
                // Clip's bounds, Dropout's ratio, the rewritten conv's weight.
                Val::Const(c) if i > 0 => Val::Const(c.clone()),
                _ => return None,
            };
            bind.push((i, val));
        }
        let shape = shape?;
        if let Err(e) = self.import_bound(node_in, name, bind) {
            return Some(Err(e));
        }
        let out = &node.output[0];
        let Some(Val::Act(v)) = self.vals.get(out) else {
            return Some(Ok(()));
        };
        let v = *v;
        let s = self.g.shape(v);
        let shape = vec![shape[0], s[2], s[3], s[1]];
        self.vals
            .insert(out.clone(), Val::ChannelsLast { src: v, shape });
        Some(Ok(()))
    }

    /// `MatMul(view [N, H, W, C], constant [C, K])`: a 1x1 conv of the view's activation.
    fn matmul(&mut self, node: &NodeProto, name: &str) -> Option<NResult<()>> {
        let Some(Val::Const(w)) = self.val(node, 1) else {
            return None;
        };
        let [c, k] = w.dims[..] else {
            return None;
        };
        let t = super::ops::transpose(w).data;
        let weight = self.fresh_name(&format!("{}.weight", node.output[0]));
        self.vals.insert(
            weight.clone(),
            Val::Const(ConstTensor::f32(vec![k, c, 1, 1], t)),
        );
        let conv = NodeProto {
            op_type: Some("Conv".into()),
            input: vec![node.input[0].clone(), weight.clone()],
            output: node.output.clone(),
            name: node.name.clone(),
            ..Default::default()
        };
        let r = self.per_pixel(node, name, Some(conv));
        self.vals.remove(&weight);
        r
    }

    /// `LayerNormalization` over the last axis of a view: a normalisation over the channels
    /// of its activation.
    fn layer_norm(&mut self, node: &NodeProto, name: &str) -> NResult<()> {
        let Some(Val::ChannelsLast { src, shape }) = self.val(node, 0) else {
            unreachable!("input 0 is the view")
        };
        let (x, shape) = (*src, shape.clone());
        let op = self.layer_norm_op(node, 4, shape[3])?;
        let out = &node.output[0];
        let what = format!("LayerNormalization node {name}");
        let y = self.ir_node(&self.fresh_name(out), &what, name, op, vec![x])?;
        self.vals
            .insert(out.clone(), Val::ChannelsLast { src: y, shape });
        Ok(())
    }

    /// The [`Op::LayerNorm`] of `LayerNormalization` node `node` over the last axis of its
    /// rank-`rank` input of `c` elements along that axis (any other axis is unsupported).
    pub(super) fn layer_norm_op(&self, node: &NodeProto, rank: i64, c: usize) -> NResult<Op> {
        let unsup = |what: String| super::import::NodeErr::Unsupported(what);
        let attr = |n: &str| -> Option<&AttributeProto> {
            node.attribute.iter().find(|a| a.name.as_deref() == Some(n))
        };
        let axis = attr("axis").and_then(|a| a.i).unwrap_or(-1);
        if axis != -1 && axis != rank - 1 {
            return Err(unsup(format!(
                "LayerNormalization over axes {axis}.. of a rank-{rank} tensor not supported \
                 (only the last axis)"
            )));
        }
        let eps = attr("epsilon").and_then(|a| a.f).unwrap_or(1e-5);
        let vector = |i: usize, default: f32| -> NResult<Vec<f32>> {
            match self.val(node, i) {
                None => Ok(vec![default; c]),
                Some(Val::Const(t)) if t.len() == c || t.len() == 1 => {
                    let v = t.to_f32();
                    Ok(if v.len() == c { v } else { vec![v[0]; c] })
                }
                _ => Err(unsup(format!(
                    "LayerNormalization input {i} must be a constant of {c} values"
                ))),
            }
        };
        Ok(Op::LayerNorm {
            scale: vector(1, 1.0)?,
            shift: vector(2, 0.0)?,
            eps,
        })
    }
}

/// A constant along the last axis of an NHWC tensor (dims `[.., K]` with every other dim
/// 1, or a scalar) as the per-channel constant `[1, K, 1, 1]` of NCHW.
fn per_channel(c: &ConstTensor) -> Option<ConstTensor> {
    let last = c.dims.last().copied().unwrap_or(1);
    let leading_ones = c.dims.len() <= 4
        && c.dims[..c.dims.len().saturating_sub(1)]
            .iter()
            .all(|&d| d == 1);
    if !leading_ones {
        return None;
    }
    c.reshaped(vec![1, last, 1, 1])
}
