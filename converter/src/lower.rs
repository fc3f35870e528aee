//! Lowering: the IR (NCHW semantics) to the runtime's [`smof::graph::Graph`] (NHWC), with
//! every weight packed for the chosen kernel table.

use crate::error::{Error, Result};
use crate::ir::{self, Op, PoolOp};
use crate::onnx::ModelInfo;
use smof::graph::{
    Conv, DType, Fc, Graph, IoDesc, Layout, Metadata, Node, Op as ROp, Pool, PoolKind, Shape4,
    TensorDesc, TensorId, WeightDesc, WeightId,
};
use smof::kernels::{pack, KernelChoice, WeightRole};

/// A lowered graph and the bytes of each of its weights (in `graph.weights` order, already in
/// the weight's dtype and layout, little-endian): the arguments of `smof::format::write`.
#[derive(Clone, Debug)]
pub struct LoweredGraph {
    /// The runtime graph, validated.
    pub graph: Graph,
    /// `weight_data[i]` holds the bytes of `graph.weights[i]`.
    pub weight_data: Vec<Vec<u8>>,
    /// Things the user should know (e.g. weights out of the f16 range).
    pub warnings: Vec<String>,
}

/// What the lowering needs to know besides the graph.
#[derive(Clone, Copy)]
pub struct LowerOptions<'a> {
    /// Kernel table the weights are packed for (a concrete choice, not `Auto`).
    pub table: KernelChoice,
    /// Store conv and fc weights as f16.
    pub fp16: bool,
    /// Model name for the metadata.
    pub model_name: &'a str,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::model(format!("{what} {v} does not fit the format")))
}

fn u32x2(v: [usize; 2], what: &str) -> Result<[u32; 2]> {
    Ok([u32_of(v[0], what)?, u32_of(v[1], what)?])
}

fn u32x4(v: [usize; 4], what: &str) -> Result<[u32; 4]> {
    Ok([
        u32_of(v[0], what)?,
        u32_of(v[1], what)?,
        u32_of(v[2], what)?,
        u32_of(v[3], what)?,
    ])
}

/// NHWC shape of an NCHW (or `[N, F]`) shape.
pub fn nhwc(name: &str, s: &[usize]) -> Result<Shape4> {
    let u = |v: usize| u32_of(v, "dimension");
    match s {
        [n, c, h, w] => Ok(Shape4::new(u(*n)?, u(*h)?, u(*w)?, u(*c)?)),
        [n, f] => Ok(Shape4::new(u(*n)?, 1, 1, u(*f)?)),
        _ => Err(Error::shape(
            name,
            format!("rank-{} tensors are not supported", s.len()),
        )),
    }
}

/// Permutes fully connected weight columns from NCHW flatten order `(c, h, w)` to the
/// runtime's NHWC order `(h, w, c)`.
pub fn permute_fc_columns(w: &[f32], out_f: usize, c: usize, h: usize, wd: usize) -> Vec<f32> {
    let inf = c * h * wd;
    let mut p = vec![0.0; w.len()];
    for o in 0..out_f {
        let row = &w[o * inf..(o + 1) * inf];
        let dst = &mut p[o * inf..(o + 1) * inf];
        for ci in 0..c {
            for y in 0..h {
                for x in 0..wd {
                    dst[(y * wd + x) * c + ci] = row[(ci * h + y) * wd + x];
                }
            }
        }
    }
    p
}

struct Lowerer<'a> {
    opts: &'a LowerOptions<'a>,
    graph: Graph,
    data: Vec<Vec<u8>>,
    warnings: Vec<String>,
}

impl Lowerer<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<TensorId> {
        let shape = nhwc(name, shape)?;
        self.graph.tensors.push(TensorDesc {
            name: name.to_string(),
            shape,
        });
        u32_of(self.graph.tensors.len() - 1, "tensor count")
    }

    /// Adds a weight with the layout the table wants for `role` (not a conv's weights).
    fn weight(
        &mut self,
        name: String,
        dims: &[usize],
        data: &[f32],
        role: WeightRole,
    ) -> Result<WeightId> {
        self.weight_at(name, dims, data, role, Shape4::default())
    }

    /// Adds a weight with the layout the table wants for `role`, for a conv whose input
    /// has shape `conv_input`.
    fn weight_at(
        &mut self,
        name: String,
        dims: &[usize],
        data: &[f32],
        role: WeightRole,
        conv_input: Shape4,
    ) -> Result<WeightId> {
        let dims: Vec<u32> = dims
            .iter()
            .map(|&d| u32_of(d, "weight dim"))
            .collect::<Result<_>>()?;
        let mut layout = self.opts.table.layout_for(role, conv_input);
        if !pack::layout_fits(layout, &role) || pack::packed_len(layout, &dims).is_none() {
            layout = Layout::Canonical;
        }
        let packed;
        let values: &[f32] = if layout == Layout::Canonical {
            data
        } else {
            packed = pack::pack(data, &dims, layout);
            &packed
        };
        let half = self.opts.fp16 && role != WeightRole::Vector;
        if half {
            let over = values.iter().filter(|v| v.abs() > 65504.0).count();
            if over > 0 {
                self.warnings
                    .push(format!("{over} value(s) of weight {name} exceed the f16 range and are stored as infinity"));
            }
        }
        let bytes: Vec<u8> = if half {
            values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect()
        } else {
            values.iter().flat_map(|&v| v.to_le_bytes()).collect()
        };
        self.graph.weights.push(WeightDesc {
            name,
            dtype: if half { DType::F16 } else { DType::F32 },
            layout,
            dims,
            offset: 0,
            byte_len: bytes.len() as u64,
        });
        self.data.push(bytes);
        u32_of(self.graph.weights.len() - 1, "weight count")
    }

    /// Writes the bias of node `name`, if it has one, and returns its id.
    fn bias(&mut self, name: &str, bias: &Option<Vec<f32>>) -> Result<Option<WeightId>> {
        bias.as_ref()
            .map(|b| self.weight(format!("{name}.bias"), &[b.len()], b, WeightRole::Vector))
            .transpose()
    }

    fn next_weight_id(&self, k: usize) -> Result<WeightId> {
        u32_of(self.graph.weights.len() + k, "weight count")
    }

    fn pool(p: &PoolOp) -> Result<Pool> {
        Ok(Pool {
            kind: p.kind,
            kernel: u32x2(p.kernel, "kernel")?,
            stride: u32x2(p.stride, "stride")?,
            dilation: u32x2(p.dilation, "dilation")?,
            pads: u32x4(p.pads, "pad")?,
            ceil_pads: u32x2(p.ceil_pads, "pad")?,
        })
    }

    fn op(&mut self, g: &ir::Graph, node: &ir::Node) -> Result<ROp> {
        let xs = node
            .inputs
            .first()
            .map(|&i| g.shape(i).to_vec())
            .unwrap_or_default();
        Ok(match &node.op {
            Op::Conv(c) => {
                let weight = self.next_weight_id(0)?;
                let bias = c
                    .bias
                    .as_ref()
                    .map(|_| self.next_weight_id(1))
                    .transpose()?;
                let conv = Conv {
                    in_c: u32_of(xs[1], "channels")?,
                    out_c: u32_of(c.out_c(), "channels")?,
                    groups: u32_of(c.group, "groups")?,
                    kernel: u32x2(c.kernel(), "kernel")?,
                    stride: u32x2(c.stride, "stride")?,
                    dilation: u32x2(c.dilation, "dilation")?,
                    pads: u32x4(c.pads, "pad")?,
                    weight,
                    bias,
                    act: c.act,
                };
                let input = Shape4::new(
                    u32_of(xs[0], "batch")?,
                    u32_of(xs[2], "height")?,
                    u32_of(xs[3], "width")?,
                    conv.in_c,
                );
                self.weight_at(
                    format!("{}.weight", node.name),
                    &c.weight.dims,
                    &c.weight.data,
                    WeightRole::Conv(conv),
                    input,
                )?;
                self.bias(&node.name, &c.bias)?;
                ROp::Conv(conv)
            }
            Op::Fc(f) => {
                let (out_f, in_f) = (f.weight.dims[0], f.weight.dims[1]);
                let data = match xs.as_slice() {
                    [_, c, h, w] if h * w > 1 => {
                        permute_fc_columns(&f.weight.data, out_f, *c, *h, *w)
                    }
                    _ => f.weight.data.clone(),
                };
                let weight = self.weight(
                    format!("{}.weight", node.name),
                    &f.weight.dims,
                    &data,
                    WeightRole::Fc,
                )?;
                let bias = self.bias(&node.name, &f.bias)?;
                ROp::Fc(Fc {
                    in_features: u32_of(in_f, "features")?,
                    out_features: u32_of(out_f, "features")?,
                    weight,
                    bias,
                    act: f.act,
                })
            }
            Op::Pool(p) => ROp::Pool(Self::pool(p)?),
            Op::GlobalAvgPool => ROp::GlobalAvgPool,
            Op::GlobalMaxPool => ROp::Pool(Self::pool(&PoolOp {
                kind: PoolKind::Max,
                kernel: [xs[2], xs[3]],
                stride: [1, 1],
                dilation: [1, 1],
                pads: [0; 4],
                ceil_pads: [0; 2],
            })?),
            Op::Add { act } => ROp::Add { act: *act },
            Op::Mul => ROp::Mul,
            Op::Concat => ROp::Concat,
            Op::Act(a) => ROp::Act(*a),
            Op::Softmax => ROp::Softmax,
            Op::Flatten => ROp::Flatten,
            Op::ChannelAffine { scale, shift, act } => {
                let scale = self.weight(
                    format!("{}.scale", node.name),
                    &[scale.len()],
                    scale,
                    WeightRole::Vector,
                )?;
                let shift = self.weight(
                    format!("{}.shift", node.name),
                    &[shift.len()],
                    shift,
                    WeightRole::Vector,
                )?;
                ROp::ChannelAffine {
                    scale,
                    shift,
                    act: *act,
                }
            }
            Op::LayerNorm { scale, shift, eps } => ROp::LayerNorm {
                scale: self.weight(
                    format!("{}.scale", node.name),
                    &[scale.len()],
                    scale,
                    WeightRole::Vector,
                )?,
                shift: self.weight(
                    format!("{}.shift", node.name),
                    &[shift.len()],
                    shift,
                    WeightRole::Vector,
                )?,
                eps: *eps,
            },
            Op::Identity => return Err(Error::model("an identity reached the lowering of ops")),
            Op::Slice {
                starts,
                ends,
                steps,
            } => {
                // NCHW [n, c, h, w] to NHWC [n, h, w, c].
                let nhwc = |v: &[usize; 4], what| -> Result<[u32; 4]> {
                    Ok([
                        u32_of(v[0], what)?,
                        u32_of(v[2], what)?,
                        u32_of(v[3], what)?,
                        u32_of(v[1], what)?,
                    ])
                };
                ROp::Slice {
                    start: nhwc(starts, "slice start")?,
                    end: nhwc(ends, "slice end")?,
                    step: nhwc(steps, "slice step")?,
                }
            }
            Op::Resize(r) => ROp::Resize(smof::graph::Resize {
                mode: r.mode,
                coord: r.coord,
                scale: r.scale,
                size: match r.size {
                    Some(s) => u32x2(s, "resize size")?,
                    None => [0, 0],
                },
            }),
            Op::Deconv(d) => {
                let [ic, ocg, kh, kw] = <[usize; 4]>::try_from(d.weight.dims.as_slice())
                    .map_err(|_| Error::model("transposed conv weight is not 4-D"))?;
                // [IC][OCg][KH][KW] -> [KH][KW][IC][OCg].
                let mut data = vec![0.0f32; d.weight.data.len()];
                for i in 0..ic {
                    for o in 0..ocg {
                        for y in 0..kh {
                            for x in 0..kw {
                                data[((y * kw + x) * ic + i) * ocg + o] =
                                    d.weight.data[((i * ocg + o) * kh + y) * kw + x];
                            }
                        }
                    }
                }
                let weight = self.weight(
                    format!("{}.weight", node.name),
                    &[kh, kw, ic, ocg],
                    &data,
                    WeightRole::Vector,
                )?;
                let bias = self.bias(&node.name, &d.bias)?;
                ROp::Deconv(smof::graph::Deconv {
                    in_c: u32_of(ic, "channels")?,
                    out_c: u32_of(d.out_c(), "channels")?,
                    groups: u32_of(d.group, "groups")?,
                    kernel: u32x2([kh, kw], "kernel")?,
                    stride: u32x2(d.stride, "stride")?,
                    dilation: u32x2(d.dilation, "dilation")?,
                    pads: u32x4(d.pads, "pad")?,
                    out_pad: u32x2(d.out_pad, "output padding")?,
                    weight,
                    bias,
                    act: d.act,
                })
            }
            Op::ChannelShuffle { groups } => ROp::ChannelShuffle {
                groups: u32_of(*groups, "groups")?,
            },
            Op::Transpose { perm } => ROp::Transpose {
                perm: perm.map(|p| p as u32),
            },
            Op::Pad { begin, end, mode } => {
                let nhwc = |v: &[usize; 4]| -> Result<[u32; 4]> {
                    Ok([
                        u32_of(v[0], "pad")?,
                        u32_of(v[2], "pad")?,
                        u32_of(v[3], "pad")?,
                        u32_of(v[1], "pad")?,
                    ])
                };
                ROp::Pad {
                    begin: nhwc(begin)?,
                    end: nhwc(end)?,
                    mode: *mode,
                }
            }
            Op::DepthToSpace { block, crd } => ROp::DepthToSpace {
                block: u32_of(*block, "block size")?,
                crd: *crd,
            },
            Op::SpaceToDepth { block } => ROp::SpaceToDepth {
                block: u32_of(*block, "block size")?,
            },
            Op::SoftmaxAxis { axis, log } => ROp::SoftmaxAxis {
                // NCHW axis 1 (or F of [N, F]) is C, 2 is H, 3 is W.
                axis: match axis {
                    1 => 3,
                    2 => 1,
                    _ => 2,
                },
                log: *log,
            },
            Op::Reshape { shape } => {
                let [n, c, h, w] = crate::ir::shape::dims4(shape);
                ROp::Reshape {
                    shape: [
                        u32_of(n, "dim")?,
                        u32_of(h, "dim")?,
                        u32_of(w, "dim")?,
                        u32_of(c, "dim")?,
                    ],
                }
            }
            Op::ConcatAxis { axis } => ROp::ConcatAxis {
                // NCHW axis 2 (H) is NHWC axis 1, 3 (W) is 2.
                axis: *axis as u32 - 1,
            },
            Op::Tile { reps } => ROp::Tile {
                reps: [
                    u32_of(reps[0], "repetitions")?,
                    u32_of(reps[2], "repetitions")?,
                    u32_of(reps[3], "repetitions")?,
                    u32_of(reps[1], "repetitions")?,
                ],
            },
            Op::Binary { kind, act } => ROp::Binary {
                kind: *kind,
                act: *act,
            },
            Op::Unary { kind } => ROp::Unary { kind: *kind },
            Op::Constant(w) => {
                let [n, c, h, wd] = crate::ir::shape::dims4(&w.dims);
                // NCHW -> NHWC.
                let mut data = vec![0.0f32; w.data.len()];
                for b in 0..n {
                    for ch in 0..c {
                        for y in 0..h {
                            for x in 0..wd {
                                data[((b * h + y) * wd + x) * c + ch] =
                                    w.data[((b * c + ch) * h + y) * wd + x];
                            }
                        }
                    }
                }
                let weight = self.weight(
                    format!("{}.value", node.name),
                    &[n, h, wd, c],
                    &data,
                    WeightRole::Vector,
                )?;
                ROp::Constant { weight }
            }
            Op::Reduce { kind, axes } => ROp::Reduce {
                kind: *kind,
                axes: [
                    (axes[1], smof::graph::REDUCE_C),
                    (axes[2], smof::graph::REDUCE_H),
                    (axes[3], smof::graph::REDUCE_W),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |m, (_, bit)| m | bit),
            },
        })
    }
}

/// Description stored in the metadata.
pub fn describe(info: &ModelInfo) -> String {
    format!(
        "converted from ONNX (producer {} {}, IR version {}, opset {})",
        if info.producer_name.is_empty() {
            "unknown"
        } else {
            &info.producer_name
        },
        info.producer_version,
        info.ir_version,
        info.opset
    )
}

/// Lowers `g` (after the passes) into a validated runtime graph and its weight bytes.
pub fn lower(g: &ir::Graph, info: &ModelInfo, opts: &LowerOptions) -> Result<LoweredGraph> {
    let mut l = Lowerer {
        opts,
        graph: Graph {
            meta: Metadata {
                producer: "smof-converter".into(),
                producer_version: env!("CARGO_PKG_VERSION").into(),
                model_name: opts.model_name.to_string(),
                description: describe(info),
            },
            ..Default::default()
        },
        data: Vec::new(),
        warnings: Vec::new(),
    };
    let mut tmap: Vec<Option<TensorId>> = vec![None; g.values.len()];
    for io in &g.inputs {
        let t = l.tensor(&io.name, g.shape(io.value))?;
        tmap[io.value] = Some(t);
        l.graph.inputs.push(IoDesc {
            name: io.name.clone(),
            tensor: t,
            dims: io
                .dims
                .iter()
                .map(|&d| u32_of(d, "dimension"))
                .collect::<Result<_>>()?,
        });
    }
    for node in &g.nodes {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for &v in &node.inputs {
            inputs.push(tmap[v].ok_or_else(|| {
                Error::model(format!("{} is read before it is written", g.values[v].name))
            })?);
        }
        if node.op == Op::Identity {
            tmap[node.output] = Some(inputs[0]);
            continue;
        }
        let op = l.op(g, node)?;
        let out = &g.values[node.output];
        let t = l.tensor(&out.name, &out.shape)?;
        tmap[node.output] = Some(t);
        l.graph.nodes.push(Node {
            name: node.name.clone(),
            op,
            inputs,
            outputs: vec![t],
        });
    }
    for io in &g.outputs {
        let t = tmap[io.value]
            .ok_or_else(|| Error::model(format!("output {} is never computed", io.name)))?;
        l.graph.outputs.push(IoDesc {
            name: io.name.clone(),
            tensor: t,
            dims: io
                .dims
                .iter()
                .map(|&d| u32_of(d, "dimension"))
                .collect::<Result<_>>()?,
        });
    }
    l.graph.validate()?;
    Ok(LoweredGraph {
        graph: l.graph,
        weight_data: l.data,
        warnings: l.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fc_column_permutation() {
        // One output, C=2, H=1, W=3: column (c, w) moves to (w, c).
        let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(
            permute_fc_columns(&w, 1, 2, 1, 3),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
    }
}
