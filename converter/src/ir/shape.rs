//! Shape inference for the IR.

use super::{Graph, Op};
use crate::error::{Error, Result};

/// Output extent of a sliding window, or `None` when the window does not fit.
pub fn window_out(
    size: usize,
    k: usize,
    s: usize,
    d: usize,
    p0: usize,
    p1: usize,
) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    let eff = (k - 1).checked_mul(d)? + 1;
    let padded = size.checked_add(p0)?.checked_add(p1)?;
    (padded >= eff).then(|| (padded - eff) / s + 1)
}

/// True when a tensor of shape `a` can be read as one of shape `b` without moving data in
/// either layout: equal shapes, or `[N, F]` and `[N, F, 1, 1]`.
pub fn alias_compatible(a: &[usize], b: &[usize]) -> bool {
    let flat = |s: &[usize]| match s {
        [n, f] => Some((*n, *f)),
        [n, c, 1, 1] => Some((*n, *c)),
        _ => None,
    };
    a == b || (flat(a).is_some() && flat(a) == flat(b))
}

/// True when user-facing dims `io` describe the elements of a value of shape `v` in the same
/// order: an alias, or `[N, C, L]` for `[N, C, H, W]` with `L = H·W`.
pub fn io_compatible(io: &[usize], v: &[usize]) -> bool {
    match (io, v) {
        ([n, c, l], [n2, c2, h, w]) => (n, c) == (n2, c2) && *l == h * w,
        _ => alias_compatible(io, v),
    }
}

fn rank24(x: &[usize]) -> Result<(), String> {
    if x.len() == 2 || x.len() == 4 {
        Ok(())
    } else {
        Err(format!("expects a 2-D or 4-D input, got {x:?}"))
    }
}

fn rank4(x: &[usize]) -> Result<[usize; 4], String> {
    <[usize; 4]>::try_from(x).map_err(|_| format!("expects a 4-D input, got {x:?}"))
}

/// Output shape of `op` for inputs of shapes `ins`, checking every parameter.
pub fn infer(op: &Op, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
    let arity = |lo: usize, hi: usize| {
        if ins.len() < lo || ins.len() > hi {
            Err(format!("expects {lo}..={hi} inputs, has {}", ins.len()))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Conv(c) => {
            arity(1, 2)?;
            let [n, ch, h, w] = rank4(ins[0])?;
            let wd = &c.weight.dims;
            if wd.len() != 4 || wd.contains(&0) {
                return Err(format!("weight has dims {wd:?}"));
            }
            if c.group == 0 || wd[0] % c.group != 0 || wd[1] * c.group != ch {
                return Err(format!(
                    "weight {wd:?} with group {} does not match {ch} input channels",
                    c.group
                ));
            }
            if c.weight.data.len() != wd.iter().product::<usize>() {
                return Err("weight data does not match its dims".into());
            }
            if c.bias.as_ref().is_some_and(|b| b.len() != wd[0]) {
                return Err("bias length differs from the output channels".into());
            }
            let oh = window_out(h, wd[2], c.stride[0], c.dilation[0], c.pads[0], c.pads[2]);
            let ow = window_out(w, wd[3], c.stride[1], c.dilation[1], c.pads[1], c.pads[3]);
            let (oh, ow) = oh
                .zip(ow)
                .ok_or("kernel window does not fit the padded input")?;
            let out = vec![n, wd[0], oh, ow];
            if ins.len() == 2 && ins[1] != out.as_slice() {
                return Err(format!(
                    "residual {:?} differs from the output {out:?}",
                    ins[1]
                ));
            }
            Ok(out)
        }
        Op::Fc(f) => {
            arity(1, 1)?;
            rank24(ins[0])?;
            let feats: usize = ins[0][1..].iter().product();
            let wd = &f.weight.dims;
            if wd.len() != 2 || wd[1] != feats || wd[0] == 0 {
                return Err(format!(
                    "weight {wd:?} does not match {feats} input features"
                ));
            }
            if f.weight.data.len() != wd[0] * wd[1] {
                return Err("weight data does not match its dims".into());
            }
            if f.bias.as_ref().is_some_and(|b| b.len() != wd[0]) {
                return Err("bias length differs from the output features".into());
            }
            Ok(vec![ins[0][0], wd[0]])
        }
        Op::Pool(p) => {
            arity(1, 1)?;
            let [n, c, h, w] = rank4(ins[0])?;
            let oh = window_out(
                h,
                p.kernel[0],
                p.stride[0],
                p.dilation[0],
                p.pads[0],
                p.pads[2] + p.ceil_pads[0],
            );
            let ow = window_out(
                w,
                p.kernel[1],
                p.stride[1],
                p.dilation[1],
                p.pads[1],
                p.pads[3] + p.ceil_pads[1],
            );
            let (oh, ow) = oh
                .zip(ow)
                .ok_or("pool window does not fit the padded input")?;
            Ok(vec![n, c, oh, ow])
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => {
            arity(1, 1)?;
            let [n, c, _, _] = rank4(ins[0])?;
            Ok(vec![n, c, 1, 1])
        }
        Op::Add { .. } => {
            arity(2, 2)?;
            rank24(ins[0])?;
            if ins[0] != ins[1] {
                return Err(format!("shapes differ: {:?} and {:?}", ins[0], ins[1]));
            }
            Ok(ins[0].to_vec())
        }
        Op::Mul => {
            arity(2, 2)?;
            rank24(ins[0])?;
            let (a, b) = (ins[0], ins[1]);
            let per_channel = a.len() == 4
                && b.len() == 4
                && b[0] == a[0]
                && b[1] == a[1]
                && b[2] == 1
                && b[3] == 1;
            if a != b && !per_channel {
                return Err(format!("cannot broadcast {b:?} to {a:?}"));
            }
            Ok(a.to_vec())
        }
        Op::Concat => {
            arity(1, usize::MAX)?;
            let x = ins[0];
            rank24(x)?;
            let mut c = 0usize;
            for s in ins {
                if s.len() != x.len() || s[0] != x[0] || s[2..] != x[2..] {
                    return Err(format!("inputs {s:?} and {x:?} differ outside axis 1"));
                }
                c = c.checked_add(s[1]).ok_or("too many channels")?;
            }
            let mut out = x.to_vec();
            out[1] = c;
            Ok(out)
        }
        Op::Act(_) | Op::Softmax => {
            arity(1, 1)?;
            rank24(ins[0])?;
            Ok(ins[0].to_vec())
        }
        Op::Flatten => {
            arity(1, 1)?;
            let [n, c, h, w] = rank4(ins[0])?;
            let f = c
                .checked_mul(h)
                .and_then(|v| v.checked_mul(w))
                .ok_or("too large")?;
            Ok(vec![n, f])
        }
        Op::LayerNorm { scale, shift, eps } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            let c = ins[0][1];
            if scale.len() != c || shift.len() != c || !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!(
                    "{} scales, {} shifts and eps {eps} for {c} channels",
                    scale.len(),
                    shift.len()
                ));
            }
            Ok(ins[0].to_vec())
        }
        Op::ChannelAffine { scale, shift, .. } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            if scale.len() != ins[0][1] || shift.len() != ins[0][1] {
                return Err(format!(
                    "{} scales and {} shifts for {} channels",
                    scale.len(),
                    shift.len(),
                    ins[0][1]
                ));
            }
            Ok(ins[0].to_vec())
        }
        Op::Identity => {
            arity(1, 1)?;
            Ok(ins[0].to_vec())
        }
        Op::Slice {
            starts,
            ends,
            steps,
        } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            let d = dims4(ins[0]);
            let mut out = [0usize; 4];
            for a in 0..4 {
                if steps[a] == 0 || ends[a] > d[a] || starts[a] >= ends[a] {
                    return Err(format!(
                        "axis {a}: [{}, {}) step {} selects nothing of {}",
                        starts[a], ends[a], steps[a], d[a]
                    ));
                }
                out[a] = (ends[a] - starts[a]).div_ceil(steps[a]);
            }
            Ok(if ins[0].len() == 2 {
                vec![out[0], out[1]]
            } else {
                out.to_vec()
            })
        }
        Op::Resize(r) => {
            arity(1, 1)?;
            let [n, c, h, w] = rank4(ins[0])?;
            if !r.scale.iter().all(|s| s.is_finite() && *s > 0.0) {
                return Err(format!("scales {:?} must be finite and positive", r.scale));
            }
            let (oh, ow) = match r.size {
                Some([oh, ow]) => (oh, ow),
                None => (
                    (h as f64 * r.scale[0] as f64).floor() as usize,
                    (w as f64 * r.scale[1] as f64).floor() as usize,
                ),
            };
            if oh == 0 || ow == 0 {
                return Err(format!("output size {oh}x{ow} is empty"));
            }
            Ok(vec![n, c, oh, ow])
        }
        Op::Deconv(d) => {
            arity(1, 1)?;
            let [n, ch, h, w] = rank4(ins[0])?;
            let wd = &d.weight.dims;
            if wd.len() != 4 || wd.contains(&0) {
                return Err(format!("weight has dims {wd:?}"));
            }
            if d.group == 0 || wd[0] != ch || ch % d.group != 0 {
                return Err(format!(
                    "weight {wd:?} with group {} does not match {ch} input channels",
                    d.group
                ));
            }
            if d.weight.data.len() != wd.iter().product::<usize>() {
                return Err("weight data does not match its dims".into());
            }
            if d.bias.as_ref().is_some_and(|b| b.len() != d.out_c()) {
                return Err("bias length differs from the output channels".into());
            }
            if d.stride.contains(&0) || d.dilation.contains(&0) {
                return Err("stride and dilation must be at least 1".into());
            }
            if (0..2).any(|i| d.out_pad[i] >= d.stride[i].max(d.dilation[i])) {
                return Err("output_padding must be below the stride or the dilation".into());
            }
            let one = |size: usize, i: usize| -> Option<usize> {
                let full =
                    (size - 1) * d.stride[i] + (wd[2 + i] - 1) * d.dilation[i] + 1 + d.out_pad[i];
                full.checked_sub(d.pads[i] + d.pads[i + 2])
                    .filter(|&o| o > 0)
            };
            let (oh, ow) = one(h, 0)
                .zip(one(w, 1))
                .ok_or("the padding crops the whole output")?;
            Ok(vec![n, d.out_c(), oh, ow])
        }
        Op::ChannelShuffle { groups } => {
            arity(1, 1)?;
            let [_, c, _, _] = rank4(ins[0])?;
            if *groups == 0 || c % groups != 0 {
                return Err(format!("{groups} groups do not divide {c} channels"));
            }
            Ok(ins[0].to_vec())
        }
        Op::Transpose { perm } => {
            arity(1, 1)?;
            let x = rank4(ins[0])?;
            let mut sorted = *perm;
            sorted.sort_unstable();
            if sorted != [0, 1, 2, 3] {
                return Err(format!("{perm:?} is no permutation"));
            }
            Ok(perm.iter().map(|&p| x[p]).collect())
        }
        Op::Reduce { axes, .. } => {
            arity(1, 1)?;
            let x = rank4(ins[0])?;
            if axes[0] || !axes.contains(&true) {
                return Err(format!(
                    "reduced axes {axes:?}: only C, H and W can be reduced"
                ));
            }
            Ok((0..4).map(|a| if axes[a] { 1 } else { x[a] }).collect())
        }
        Op::Binary { .. } => {
            arity(2, 2)?;
            let (a, b) = (ins[0], ins[1]);
            rank24(a)?;
            if a.len() != b.len() {
                return Err(format!("inputs {a:?} and {b:?} differ in rank"));
            }
            a.iter()
                .zip(b)
                .map(|(&p, &q)| match (p, q) {
                    _ if p == q => Ok(p),
                    (1, q) => Ok(q),
                    (p, 1) => Ok(p),
                    _ => Err(format!("cannot broadcast {a:?} and {b:?}")),
                })
                .collect()
        }
        Op::Unary { .. } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            Ok(ins[0].to_vec())
        }
        Op::Constant(w) => {
            arity(0, 0)?;
            rank24(&w.dims)?;
            if w.data.len() != w.dims.iter().product::<usize>() || w.dims.contains(&0) {
                return Err(format!("constant data does not match dims {:?}", w.dims));
            }
            Ok(w.dims.clone())
        }
        Op::Pad { begin, end, mode } => {
            arity(1, 1)?;
            let x = rank4(ins[0])?;
            if *mode == super::PadMode::Reflect && (0..4).any(|a| begin[a].max(end[a]) >= x[a]) {
                return Err(format!(
                    "reflect padding of {x:?} must be below each extent"
                ));
            }
            Ok((0..4).map(|a| x[a] + begin[a] + end[a]).collect())
        }
        Op::DepthToSpace { block, .. } => {
            arity(1, 1)?;
            let [n, c, h, w] = rank4(ins[0])?;
            let b = *block;
            if b == 0 || c % (b * b) != 0 {
                return Err(format!("block {b}: block² must divide {c} channels"));
            }
            Ok(vec![n, c / (b * b), h * b, w * b])
        }
        Op::SpaceToDepth { block } => {
            arity(1, 1)?;
            let [n, c, h, w] = rank4(ins[0])?;
            let b = *block;
            if b == 0 || h % b != 0 || w % b != 0 {
                return Err(format!("block {b} must divide {h}x{w}"));
            }
            Ok(vec![n, c * b * b, h / b, w / b])
        }
        Op::SoftmaxAxis { axis, .. } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            if *axis == 0 || *axis >= ins[0].len() {
                return Err(format!("axis {axis} of {:?}", ins[0]));
            }
            Ok(ins[0].to_vec())
        }
        Op::Tile { reps } => {
            arity(1, 1)?;
            let x = rank4(ins[0])?;
            if reps.contains(&0) {
                return Err("zero repetitions".into());
            }
            Ok((0..4).map(|a| x[a] * reps[a]).collect())
        }
        Op::Reshape { shape } => {
            arity(1, 1)?;
            rank24(ins[0])?;
            rank24(shape)?;
            if shape.contains(&0)
                || shape.iter().product::<usize>() != ins[0].iter().product::<usize>()
            {
                return Err(format!("cannot reshape {:?} to {shape:?}", ins[0]));
            }
            Ok(shape.clone())
        }
        Op::ConcatAxis { axis } => {
            if ins.is_empty() || !(2..=3).contains(axis) {
                return Err(format!(
                    "concatenation of {} inputs on axis {axis}",
                    ins.len()
                ));
            }
            let mut out = rank4(ins[0])?;
            out[*axis] = 0;
            for s in ins {
                let s = rank4(s)?;
                if (0..4).any(|a| a != *axis && s[a] != out[a]) {
                    return Err(format!("{:?} differ off axis {axis}", ins));
                }
                out[*axis] += s[*axis];
            }
            Ok(out.to_vec())
        }
    }
}

/// The 4-D view of a 2-D or 4-D shape (`[N, F]` is `[N, F, 1, 1]`).
pub fn dims4(s: &[usize]) -> [usize; 4] {
    match s {
        [n, c, h, w] => [*n, *c, *h, *w],
        [n, f] => [*n, *f, 1, 1],
        _ => [0; 4],
    }
}

impl Graph {
    /// Re-checks the whole graph: every value id in range, nodes in topological order, every
    /// value written once, every recorded shape equal to what its node computes.
    pub fn check(&self) -> Result<()> {
        let nv = self.values.len();
        let mut written = vec![false; nv];
        for io in &self.inputs {
            if io.value >= nv {
                return Err(Error::model(format!("input {} out of range", io.name)));
            }
            written[io.value] = true;
        }
        for n in &self.nodes {
            if n.output >= nv || n.inputs.iter().any(|&i| i >= nv) {
                return Err(Error::model(format!(
                    "node {} has a value out of range",
                    n.name
                )));
            }
            for &i in &n.inputs {
                if !written[i] {
                    return Err(Error::model(format!(
                        "node {} reads {} before it is written",
                        n.name, self.values[i].name
                    )));
                }
            }
            if std::mem::replace(&mut written[n.output], true) {
                return Err(Error::model(format!(
                    "{} is written twice",
                    self.values[n.output].name
                )));
            }
            let ins: Vec<&[usize]> = n.inputs.iter().map(|&i| self.shape(i)).collect();
            let out = infer(&n.op, &ins).map_err(|e| {
                Error::shape(
                    &self.values[n.output].name,
                    format!("{} {}: {e}", n.op.name(), n.name),
                )
            })?;
            let declared = self.shape(n.output);
            let ok = if n.op == Op::Identity {
                alias_compatible(&out, declared)
            } else {
                out == declared
            };
            if !ok {
                return Err(Error::shape(
                    &self.values[n.output].name,
                    format!("declared {declared:?} but {} computes {out:?}", n.name),
                ));
            }
        }
        for io in &self.outputs {
            if io.value >= nv || !written[io.value] {
                return Err(Error::model(format!(
                    "output {} is never computed",
                    io.name
                )));
            }
            if !io_compatible(&io.dims, self.shape(io.value)) {
                return Err(Error::shape(
                    &io.name,
                    format!(
                        "dims {:?} do not match value shape {:?}",
                        io.dims,
                        self.shape(io.value)
                    ),
                ));
            }
        }
        Ok(())
    }
}
