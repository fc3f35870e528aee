//! Graph patterns that a session runs as one fused step: squeeze-excite and YOLO's SPPF.
//!
//! They are found at session creation, on the runtime graph, so every `.smof` file gets
//! them whatever converter wrote it (see `docs/decisions.md`, "Fused patterns"). The first
//! node of a pattern runs the whole of it; the tensors between its nodes get no arena
//! memory, they live in the step's scratch or nowhere.
//!
//! A squeeze-excite whose product only a 1x1 conv reads may hand its gate to that conv
//! instead ([`gate_fold`]): `conv(x * g)` is `conv(x)` with each input channel's weights
//! times its gate, so the pattern scales the conv's weights (`IC x OC` floats) rather than
//! the map (`IC x H x W`), and the conv reads `x`.

use crate::graph::{Graph, Layout, Op, PoolKind};
use crate::kernels::Act4;
use crate::model::Model;

/// A pattern of [`Pattern::NODES`] consecutive nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `GlobalAveragePool(x)`, a 1x1 conv, a 1x1 conv, `Mul(x, gate)`: the squeezed
    /// vector, the hidden vector and the gate are a few hundred floats each, kept in
    /// scratch, and the two convs run on one pixel.
    SqueezeExcite,
    /// Three equal max pools (`k x k`, stride 1, padding `k / 2`), each reading the one
    /// before, and `Concat(x, p1, p2, p3)`: the pools are computed separably (a row pass and
    /// a column pass, `2k` comparisons per element instead of `k²`) straight into their
    /// channel ranges of the concatenation.
    Sppf {
        /// The pools' window.
        k: usize,
    },
}

impl Pattern {
    /// Nodes in every pattern.
    pub const NODES: usize = 4;

    /// Name for profiles.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::SqueezeExcite => "SqueezeExcite",
            Pattern::Sppf { .. } => "Sppf",
        }
    }

    /// Name of the kernel that runs the pattern, as `Session::kernel_names` lists it.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Pattern::SqueezeExcite => "squeeze_excite",
            Pattern::Sppf { .. } => "sppf",
        }
    }
}

/// The patterns of `graph`, as (first node, pattern), in node order and disjoint.
/// `readers[t]` counts the node inputs that read tensor `t`, plus one if it is a model
/// output: a tensor inside a pattern must be read by the pattern only.
pub(crate) fn find(graph: &Graph, readers: &[usize]) -> Vec<(usize, Pattern)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i + Pattern::NODES <= graph.nodes.len() {
        let nodes = &graph.nodes[i..i + Pattern::NODES];
        let hit = match_squeeze_excite(nodes, readers).or_else(|| match_sppf(nodes, readers));
        if let Some(p) = hit {
            found.push((i, p));
            i += Pattern::NODES;
        } else {
            i += 1;
        }
    }
    found
}

fn match_squeeze_excite(n: &[crate::graph::Node], readers: &[usize]) -> Option<Pattern> {
    let only = |t: u32, count: usize| readers[t as usize] == count;
    let pointwise = |op: &Op| {
        matches!(op, Op::Conv(c) if c.kernel == [1, 1] && c.stride == [1, 1]
            && c.pads == [0; 4] && c.groups == 1)
    };
    let x = *n[0].inputs.first()?;
    let (s, t, g) = (n[0].outputs[0], n[1].outputs[0], n[2].outputs[0]);
    let ok = matches!(n[0].op, Op::GlobalAvgPool)
        && pointwise(&n[1].op)
        && n[1].inputs == [s]
        && pointwise(&n[2].op)
        && n[2].inputs == [t]
        && matches!(n[3].op, Op::Mul)
        && n[3].inputs == [x, g]
        && only(s, 1)
        && only(t, 1)
        && only(g, 1);
    ok.then_some(Pattern::SqueezeExcite)
}

fn match_sppf(n: &[crate::graph::Node], readers: &[usize]) -> Option<Pattern> {
    let Op::Pool(p) = n[0].op else {
        return None;
    };
    let k = p.kernel[0] as usize;
    let r = p.kernel[0] / 2;
    let shape_ok = p.kind == PoolKind::Max
        && k % 2 == 1
        && p.kernel == [p.kernel[0]; 2]
        && p.stride == [1, 1]
        && p.dilation == [1, 1]
        && p.pads == [r; 4]
        && p.ceil_pads == [0, 0];
    let x = *n[0].inputs.first()?;
    let (a, b, c) = (n[0].outputs[0], n[1].outputs[0], n[2].outputs[0]);
    let ok = shape_ok
        && matches!(n[1].op, Op::Pool(q) if q == p)
        && n[1].inputs == [a]
        && matches!(n[2].op, Op::Pool(q) if q == p)
        && n[2].inputs == [b]
        && matches!(n[3].op, Op::Concat)
        && n[3].inputs == [x, a, b, c]
        && readers[a as usize] == 2
        && readers[b as usize] == 2
        && readers[c as usize] == 1;
    ok.then_some(Pattern::Sppf { k })
}

/// A squeeze-excite gate folded into the weights of the 1x1 conv that reads the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GateFold {
    /// The conv's node.
    pub consumer: usize,
    /// The conv's input channels.
    pub ic: usize,
    /// Consecutive floats of one input channel in the conv's weights: `b` for
    /// `ConvOcBlock(b)` (`[OC/b][IC][b]` for a 1x1 conv), 1 for canonical (`[OC][IC]`).
    pub block: usize,
    /// The weights' floats.
    pub len: usize,
}

/// A gate is folded only into weights of at most `1 / FOLD_MAX_SHARE` of the map's floats.
/// The map was just written and is read from the cache; the weights come from memory, with
/// nothing to overlap their reading while the pattern scales them. On EfficientNet-B0 the
/// folds with weights of 1/12 of the map and less took 0.01-0.15 ms off each pattern, those
/// of 1/2 to 2/3 added up to 0.025 ms; MobileNetV3-Small's at 1/4 to 1/3 changed nothing
/// (`docs/decisions.md`, session 30).
const FOLD_MAX_SHARE: usize = 4;

/// The fold of the squeeze-excite pattern at node `i` (input geometry `xs`) into the conv
/// that reads its product, when there is one that can take it and its weights are at most
/// [`FOLD_MAX_SHARE`] of the map's floats: the product is read by one plain 1x1
/// conv (stride 1, no padding, one group, outside any pattern) as its input, the batch is one
/// image (the gate differs from image to image), and the weights are laid out per input
/// channel as above. `in_pattern[j]` says whether node `j` is inside a fused pattern.
pub(crate) fn gate_fold(
    graph: &Graph,
    model: &Model,
    i: usize,
    readers: &[usize],
    in_pattern: &[bool],
    xs: Act4,
) -> Option<GateFold> {
    let product = graph.nodes[i + Pattern::NODES - 1].outputs[0];
    if readers[product as usize] != 1 || xs.shape.n != 1 {
        return None;
    }
    let consumer = (i + Pattern::NODES..graph.nodes.len())
        .find(|&j| graph.nodes[j].inputs.contains(&product))?;
    let node = &graph.nodes[consumer];
    let Op::Conv(c) = node.op else {
        return None;
    };
    let plain = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] && c.groups == 1;
    if !plain || node.inputs[0] != product || in_pattern[consumer] {
        return None;
    }
    let block = match model.weight_layout(c.weight) {
        Layout::ConvOcBlock(b) => b as usize,
        Layout::Canonical => 1,
        _ => return None,
    };
    let (ic, len) = (c.in_c as usize, model.weight(c.weight).len());
    let small = len.saturating_mul(FOLD_MAX_SHARE) <= xs.len();
    (len % (ic * block).max(1) == 0 && small).then_some(GateFold {
        consumer,
        ic,
        block,
        len,
    })
}

/// `out = w` with the weights of each input channel `c` times `g[c]`: the 1x1 conv weights
/// `w` of a [`GateFold`] `f` (`f.block` floats per input channel in each of the `f.len /
/// (f.ic * f.block)` blocks).
///
/// # Panics
/// If `w` or `out` does not hold `f.len` floats, or `g` fewer than `f.ic`.
pub(crate) fn scale_inputs(f: &GateFold, w: &[f32], g: &[f32], out: &mut [f32]) {
    assert!(w.len() == f.len && out.len() == f.len && g.len() >= f.ic);
    let g = &g[..f.ic];
    let row = f.ic * f.block;
    for (out, w) in out.chunks_exact_mut(row).zip(w.chunks_exact(row)) {
        if f.block == 1 {
            for ((o, &w), &g) in out.iter_mut().zip(w).zip(g) {
                *o = w * g;
            }
        } else {
            for ((o, w), &g) in out
                .chunks_exact_mut(f.block)
                .zip(w.chunks_exact(f.block))
                .zip(g)
            {
                for (o, &w) in o.iter_mut().zip(w) {
                    *o = w * g;
                }
            }
        }
    }
}

/// Scratch floats of [`sppf`] for input geometry `xs`.
pub(crate) fn sppf_scratch(xs: Act4) -> usize {
    xs.shape.n as usize * xs.shape.h as usize * xs.shape.w as usize * xs.shape.c as usize
}

/// `y = Concat(x, p(x), p(p(x)), p(p(p(x))))` along channels, `p` the `k x k` max pool with
/// stride 1 whose window is clipped to the image (ONNX padding `k / 2`, which never wins a
/// max). `scratch` holds [`sppf_scratch`] floats. Every lane of `y` is written, its pad
/// lanes as zero.
///
/// # Panics
/// If the geometries disagree (the session matched them).
pub(crate) fn sppf(k: usize, x: &[f32], xs: Act4, y: &mut [f32], ys: Act4, scratch: &mut [f32]) {
    let (n, h, w, c) = (
        xs.shape.n as usize,
        xs.shape.h as usize,
        xs.shape.w as usize,
        xs.shape.c as usize,
    );
    let (xcs, ycs) = (xs.cs, ys.cs);
    let pixels = n * h * w;
    assert!(ys.shape.n == xs.shape.n && ys.shape.h == xs.shape.h && ys.shape.w == xs.shape.w);
    assert!(ys.shape.c as usize == 4 * c && ycs >= 4 * c && xcs >= c);
    assert!(x.len() >= pixels * xcs && y.len() >= pixels * ycs && scratch.len() >= pixels * c);
    let r = k / 2;
    for p in 0..pixels {
        let (dst, pad) = y[p * ycs..(p + 1) * ycs].split_at_mut(4 * c);
        dst[..c].copy_from_slice(&x[p * xcs..p * xcs + c]);
        pad.fill(0.0);
    }
    let rows = scratch;
    for stage in 1..4 {
        let (src, dst) = ((stage - 1) * c, stage * c);
        // Row pass: `rows` = max over the clipped horizontal window of the source.
        for row in 0..n * h {
            for ox in 0..w {
                let out = &mut rows[(row * w + ox) * c..][..c];
                let first = (row * w + ox.saturating_sub(r)) * ycs + src;
                out.copy_from_slice(&y[first..first + c]);
                for ix in ox.saturating_sub(r) + 1..(ox + r + 1).min(w) {
                    let at = (row * w + ix) * ycs + src;
                    max_into(out, &y[at..at + c]);
                }
            }
        }
        // Column pass, into the stage's channel range.
        for b in 0..n {
            for oy in 0..h {
                let (top, bottom) = (oy.saturating_sub(r), (oy + r + 1).min(h));
                for ox in 0..w {
                    let at = ((b * h + oy) * w + ox) * ycs + dst;
                    let out = &mut y[at..at + c];
                    let first = ((b * h + top) * w + ox) * c;
                    out.copy_from_slice(&rows[first..first + c]);
                    for iy in top + 1..bottom {
                        let from = ((b * h + iy) * w + ox) * c;
                        max_into(out, &rows[from..from + c]);
                    }
                }
            }
        }
    }
}

/// `out = max(out, v)` lane by lane.
#[inline]
fn max_into(out: &mut [f32], v: &[f32]) {
    for (o, &v) in out.iter_mut().zip(v) {
        *o = o.max(v);
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::*;
    use crate::kernels::KernelTable;
    use crate::{Model, ModelOptions, Precision, Session, SessionOptions};

    // Squeeze and excite weights of 16k each: on two threads they share their output
    // channels (`SE_CONV_SPLIT_MIN_WEIGHTS` in the session).
    const C: usize = 256;
    const HIDDEN: usize = 64;
    const OUT: usize = 20;
    const H: usize = 18;
    const W: usize = 22;

    fn conv(in_c: usize, out_c: usize, weight: u32, act: Activation) -> Op {
        Op::Conv(Conv {
            in_c: in_c as u32,
            out_c: out_c as u32,
            groups: 1,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            weight,
            bias: Some(weight + 1),
            act,
        })
    }

    /// Deterministic values in about `[-1, 1]`.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 - 500.0) / 500.0)
            .collect()
    }

    /// Squeeze-excite (`C` channels, hidden `HIDDEN`, a sigmoid gate) on an `H x W` map,
    /// then a 1x1 conv to `OUT` channels, written with the format writer; and its weights
    /// (canonical layout: the table packs them at load).
    fn model() -> (Vec<u8>, Vec<Vec<f32>>) {
        let t = |name: &str, h: usize, w: usize, c: usize| TensorDesc {
            name: name.into(),
            shape: Shape4::new(1, h as u32, w as u32, c as u32),
        };
        let wd = |name: &str, dims: Vec<u32>| WeightDesc {
            name: name.into(),
            dtype: DType::F32,
            layout: Layout::Canonical,
            dims,
            offset: 0,
            byte_len: 0,
        };
        let node = |name: &str, op: Op, inputs: Vec<u32>, output: u32| Node {
            name: name.into(),
            op,
            inputs,
            outputs: vec![output],
        };
        let (c, hid, out) = (C as u32, HIDDEN as u32, OUT as u32);
        let graph = Graph {
            meta: Metadata {
                producer: "test".into(),
                producer_version: "0".into(),
                model_name: "se-fold".into(),
                description: String::new(),
            },
            tensors: vec![
                t("x", H, W, C),
                t("s", 1, 1, C),
                t("h", 1, 1, HIDDEN),
                t("g", 1, 1, C),
                t("m", H, W, C),
                t("y", H, W, OUT),
            ],
            weights: vec![
                wd("w1", vec![hid, c, 1, 1]),
                wd("b1", vec![hid]),
                wd("w2", vec![c, hid, 1, 1]),
                wd("b2", vec![c]),
                wd("w3", vec![out, c, 1, 1]),
                wd("b3", vec![out]),
            ],
            nodes: vec![
                node("pool", Op::GlobalAvgPool, vec![0], 1),
                node("squeeze", conv(C, HIDDEN, 0, Activation::Relu), vec![1], 2),
                node(
                    "excite",
                    conv(HIDDEN, C, 2, Activation::Sigmoid),
                    vec![2],
                    3,
                ),
                node("scale", Op::Mul, vec![0, 3], 4),
                node("project", conv(C, OUT, 4, Activation::None), vec![4], 5),
            ],
            inputs: vec![IoDesc {
                name: "x".into(),
                tensor: 0,
                dims: vec![1, c, H as u32, W as u32],
            }],
            outputs: vec![IoDesc {
                name: "y".into(),
                tensor: 5,
                dims: vec![1, out, H as u32, W as u32],
            }],
        };
        let sizes = [HIDDEN * C, HIDDEN, C * HIDDEN, C, OUT * C, OUT];
        let weights: Vec<Vec<f32>> = (sizes.iter().enumerate())
            .map(|(k, &n)| values(n, k + 1))
            .collect();
        let bytes: Vec<Vec<u8>> = weights
            .iter()
            .map(|w| bytemuck::cast_slice(w).to_vec())
            .collect();
        let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        (crate::format::write(&graph, &refs).unwrap(), weights)
    }

    /// The model of [`model`] in f64, straight from its definition; NCHW in and out.
    fn reference(x: &[f32], w: &[Vec<f32>]) -> Vec<f64> {
        let hw = H * W;
        let s: Vec<f64> = (0..C)
            .map(|c| {
                x[c * hw..(c + 1) * hw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        let h: Vec<f64> = (0..HIDDEN)
            .map(|o| {
                let z: f64 = (0..C).map(|c| w[0][o * C + c] as f64 * s[c]).sum();
                (z + w[1][o] as f64).max(0.0)
            })
            .collect();
        let g: Vec<f64> = (0..C)
            .map(|o| {
                let z: f64 = (0..HIDDEN)
                    .map(|c| w[2][o * HIDDEN + c] as f64 * h[c])
                    .sum();
                1.0 / (1.0 + (-(z + w[3][o] as f64)).exp())
            })
            .collect();
        let mut y = vec![0.0; OUT * hw];
        for o in 0..OUT {
            for p in 0..hw {
                let z: f64 = (0..C)
                    .map(|c| w[4][o * C + c] as f64 * x[c * hw + p] as f64 * g[c])
                    .sum();
                y[o * hw + p] = z + w[5][o] as f64;
            }
        }
        y
    }

    /// On every table, the gate is folded into the projecting conv, and the result matches
    /// the f64 reference on one and two threads (where the squeeze-excite convs share their
    /// output channels), as does the node-by-node run. In bf16 and f16 sessions too: the
    /// pattern runs its two convs with their f32 weights, and the conv with the folded gate
    /// stays f32, so no conv takes the reduced precision and the result is f32's.
    #[test]
    fn squeeze_excite_gate_folded_into_a_pointwise_conv_matches_the_reference() {
        let (bytes, weights) = model();
        let x = values(C * H * W, 9);
        let want = reference(&x, &weights);
        let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for table in KernelTable::all_supported() {
            let opts = ModelOptions {
                kernels: KernelTable::choice_for_name(table.name).unwrap(),
                ..Default::default()
            };
            let model = Model::from_bytes_with(&bytes, &opts).unwrap();
            let runs = [
                (false, 1, Precision::F32),
                (false, 2, Precision::F32),
                (true, 1, Precision::F32),
                (false, 1, Precision::Bf16),
                (false, 2, Precision::Bf16),
                (false, 1, Precision::F16),
                (false, 2, Precision::F16),
            ];
            for (layer_by_layer, threads, precision) in runs {
                let sopts = SessionOptions::default()
                    .threads(threads)
                    .layer_by_layer(layer_by_layer)
                    .precision(precision);
                let mut s = Session::new(&model, &sopts).unwrap();
                assert_eq!(s.bf16_convs() + s.f16_convs(), 0, "{}", table.name);
                let folds: &[(usize, usize)] = if layer_by_layer { &[] } else { &[(0, 4)] };
                assert_eq!(s.folded_gates(), folds, "{}", table.name);
                s.run(&[&x]).unwrap();
                for (i, (&got, &want)) in s.output(0).iter().zip(&want).enumerate() {
                    // f32 sums of 256 products against f64: the rounding of each product
                    // and partial sum, at most about 256 x 6e-8 of the sum of magnitudes,
                    // a few times the largest output.
                    assert!(
                        (got as f64 - want).abs() <= 2e-5 * max,
                        "{}, layer by layer {layer_by_layer}, {threads} threads, {precision:?}: output {i} \
                         is {got}, want {want}",
                        table.name
                    );
                }
            }
        }
    }
}
