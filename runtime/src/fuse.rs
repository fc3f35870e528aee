//! Graph patterns that a session runs as one fused step: squeeze-excite and YOLO's SPPF.
//!
//! They are found at session creation, on the runtime graph, so every `.smof` file gets
//! them whatever converter wrote it (see `docs/decisions.md`, "Fused patterns"). The first
//! node of a pattern runs the whole of it; the tensors between its nodes get no arena
//! memory, they live in the step's scratch or nowhere.

use crate::graph::{Graph, Op, PoolKind};
use crate::kernels::Act4;

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
