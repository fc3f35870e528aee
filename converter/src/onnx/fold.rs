//! Constant folding of the shape arithmetic exporters emit (`Shape`, `Gather`, `Unsqueeze`,
//! `Concat`, `Reshape`, integer `Add`/`Mul`/`Div`, ...), so it never reaches the runtime.

use super::attrs::Attrs;
use super::tensor::read_tensor;
use crate::ir::tensor::{
    binary, broadcast_index, broadcast_shape, checked_elems, strides, BinOp, ConstTensor, Data,
};

/// What is known about one node input during folding.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// A constant.
    Const(&'a ConstTensor),
    /// An activation, of which only the shape is known.
    Act(&'a [usize]),
    /// An omitted optional input.
    Missing,
}

impl<'a> Input<'a> {
    fn konst(self) -> Option<&'a ConstTensor> {
        match self {
            Input::Const(c) => Some(c),
            _ => None,
        }
    }
}

/// Op types the folder can evaluate when their inputs are constant.
pub fn foldable(op: &str) -> bool {
    matches!(
        op,
        "Constant"
            | "Identity"
            | "Dropout"
            | "Shape"
            | "Size"
            | "Gather"
            | "Unsqueeze"
            | "Squeeze"
            | "Concat"
            | "Cast"
            | "Slice"
            | "ConstantOfShape"
            | "Reshape"
            | "Flatten"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Neg"
            | "Range"
            | "Equal"
            | "Less"
            | "Greater"
            | "Not"
            | "Where"
    )
}

/// The broadcast output dims of `ts` and, per tensor, the element read at each output index.
fn broadcast_all(ts: &[&ConstTensor]) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    let mut out: Vec<usize> = Vec::new();
    for t in ts {
        out = broadcast_shape(&out, &t.dims)
            .ok_or_else(|| format!("cannot broadcast {out:?} with {:?}", t.dims))?;
    }
    checked_elems(&out).ok_or("result too large")?;
    let idx = ts.iter().map(|t| broadcast_index(&t.dims, &out)).collect();
    Ok((out, idx))
}

/// `Equal`, `Less` or `Greater` with broadcasting, as a boolean (0/1) tensor.
fn compare(op: &str, a: &ConstTensor, b: &ConstTensor) -> Result<ConstTensor, String> {
    fn each<T: PartialOrd>(op: &str, x: &[T], y: &[T], idx: &[Vec<usize>]) -> Vec<i64> {
        idx[0]
            .iter()
            .zip(&idx[1])
            .map(|(&i, &j)| match op {
                "Equal" => x[i] == y[j],
                "Less" => x[i] < y[j],
                _ => x[i] > y[j],
            } as i64)
            .collect()
    }
    let (out, idx) = broadcast_all(&[a, b])?;
    let v = match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => each(op, x, y, &idx),
        _ => each(op, &a.to_f32(), &b.to_f32(), &idx),
    };
    Ok(ConstTensor::i64(out, v))
}

/// `Where(cond, a, b)` with broadcasting; integer when both branches are.
fn select_where(
    cond: &ConstTensor,
    a: &ConstTensor,
    b: &ConstTensor,
) -> Result<ConstTensor, String> {
    let (out, idx) = broadcast_all(&[cond, a, b])?;
    let cv = cond.to_i64();
    let pick = |k: usize| cv[idx[0][k]] != 0;
    Ok(match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => ConstTensor::i64(
            out,
            (0..idx[0].len())
                .map(|k| if pick(k) { x[idx[1][k]] } else { y[idx[2][k]] })
                .collect(),
        ),
        _ => {
            let (x, y) = (a.to_f32(), b.to_f32());
            ConstTensor::f32(
                out,
                (0..idx[0].len())
                    .map(|k| if pick(k) { x[idx[1][k]] } else { y[idx[2][k]] })
                    .collect(),
            )
        }
    })
}

/// `Range(start, limit, delta)` of scalars; integer when all three are.
fn range(
    start: &ConstTensor,
    limit: &ConstTensor,
    delta: &ConstTensor,
) -> Result<ConstTensor, String> {
    if [start, limit, delta].iter().any(|t| t.len() != 1) {
        return Err("Range takes scalars".into());
    }
    if let (Data::I64(s), Data::I64(l), Data::I64(d)) = (&start.data, &limit.data, &delta.data) {
        let (s, l, d) = (s[0], l[0], d[0]);
        if d == 0 {
            return Err("Range with delta 0".into());
        }
        let n = ((l as i128 - s as i128 + d as i128 - d.signum() as i128) / d as i128).max(0);
        let n = usize::try_from(n)
            .ok()
            .and_then(|n| checked_elems(&[n]))
            .ok_or("Range result too large")?;
        return Ok(ConstTensor::i64(
            vec![n],
            (0..n as i64).map(|k| s + k * d).collect(),
        ));
    }
    let (s, l, d) = (start.to_f32()[0], limit.to_f32()[0], delta.to_f32()[0]);
    let n = ((l - s) / d).ceil();
    if d == 0.0 || !n.is_finite() {
        return Err("Range with delta 0 or a non-finite bound".into());
    }
    let n = checked_elems(&[n.max(0.0) as usize]).ok_or("Range result too large")?;
    Ok(ConstTensor::f32(
        vec![n],
        (0..n).map(|k| s + k as f32 * d).collect(),
    ))
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} out of range for rank {rank}"))
    }
}

/// Elements of `t` at the cartesian product of per-axis indices, with output dims `dims`.
fn select(
    t: &ConstTensor,
    per_axis: &[Vec<usize>],
    dims: Vec<usize>,
) -> Result<ConstTensor, String> {
    let lens: Vec<usize> = per_axis.iter().map(|v| v.len()).collect();
    let n = checked_elems(&lens).ok_or("result too large")?;
    let st = strides(&t.dims);
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; per_axis.len()];
    for _ in 0..n {
        idx.push(
            pos.iter()
                .enumerate()
                .map(|(k, &p)| per_axis[k][p] * st[k])
                .sum(),
        );
        for k in (0..pos.len()).rev() {
            pos[k] += 1;
            if pos[k] < lens[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    Ok(t.pick(dims, &idx))
}

/// Resolves an ONNX Reshape target (0 = copy, -1 = infer) against `input` dims.
pub fn reshape_target(
    input: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                out.push(*input.get(i).ok_or("0 in the target copies a missing dim")?)
            }
            t if t >= 0 => out.push(usize::try_from(t).map_err(|_| "bad dim")?),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("target too large")?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {input:?} to {target:?}"));
    }
    Ok(out)
}

/// The ONNX Slice start and end on an axis of extent `d`, with negative values counted from
/// the end and both clamped: to `[0, d]` for a positive step, to `[0, d-1]` and `[-1, d-1]`
/// for a negative one. The selected elements are `s, s+step, ...` while before `e`.
pub fn slice_bounds(d: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    if d == 0 {
        (0, 0)
    } else if step > 0 {
        (fix(start).clamp(0, d), fix(end).clamp(0, d))
    } else {
        (fix(start).clamp(0, d - 1), fix(end).clamp(-1, d - 1))
    }
}

pub(super) fn ints_of(c: &ConstTensor, what: &str) -> Result<Vec<i64>, String> {
    c.ints()
        .map(<[i64]>::to_vec)
        .ok_or_else(|| format!("{what} must be an integer tensor"))
}

fn dims_of(c: &ConstTensor, what: &str) -> Result<Vec<usize>, String> {
    ints_of(c, what)?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| format!("{what} has a negative dim {d}")))
        .collect()
}

/// Axes of Unsqueeze/Squeeze: an attribute before opset 13, an input from 13 on.
fn axes(attrs: &Attrs, ins: &[Input], opset: i64) -> Result<Option<Vec<i64>>, String> {
    if opset >= 13 {
        match ins.get(1).copied().unwrap_or(Input::Missing) {
            Input::Const(c) => Ok(Some(ints_of(c, "axes")?)),
            Input::Missing => Ok(None),
            Input::Act(_) => Err("axes must be constant".into()),
        }
    } else {
        Ok(attrs.ints("axes").map(<[i64]>::to_vec))
    }
}

/// Evaluates `op` on constant inputs. `Ok(None)` when it cannot be folded (an input that
/// matters is not constant): the node is then imported as a regular op.
pub fn fold(
    op: &str,
    attrs: &Attrs,
    ins: &[Input],
    opset: i64,
) -> Result<Option<ConstTensor>, String> {
    let c = |i: usize| ins.get(i).and_then(|x| x.konst());
    // Every op but Shape/Size needs its data input constant.
    let x = match op {
        "Constant" => {
            return constant(attrs).map(Some);
        }
        "Shape" | "Size" => {
            let dims: Vec<usize> = match ins.first() {
                Some(Input::Const(t)) => t.dims.clone(),
                Some(Input::Act(s)) => s.to_vec(),
                _ => return Err("missing input".into()),
            };
            if op == "Size" {
                return Ok(Some(ConstTensor::i64(
                    vec![],
                    vec![dims.iter().product::<usize>() as i64],
                )));
            }
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(attrs.int_or("start", 0));
            let end = clamp(attrs.int_or("end", r));
            let v: Vec<i64> = dims[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            return Ok(Some(ConstTensor::i64(vec![v.len()], v)));
        }
        _ => match c(0) {
            Some(x) => x,
            None => return Ok(None),
        },
    };
    let out = match op {
        "Identity" | "Dropout" => x.clone(),
        "Range" => {
            let (Some(l), Some(d)) = (c(1), c(2)) else {
                return Ok(None);
            };
            range(x, l, d)?
        }
        "Equal" | "Less" | "Greater" => {
            let Some(y) = c(1) else { return Ok(None) };
            compare(op, x, y)?
        }
        "Not" => ConstTensor::i64(
            x.dims.clone(),
            x.to_i64().iter().map(|&v| (v == 0) as i64).collect(),
        ),
        "Where" => {
            let (Some(a), Some(b)) = (c(1), c(2)) else {
                return Ok(None);
            };
            select_where(x, a, b)?
        }
        "Neg" => match &x.data {
            Data::F32(v) => ConstTensor::f32(x.dims.clone(), v.iter().map(|a| -a).collect()),
            Data::I64(v) => {
                ConstTensor::i64(x.dims.clone(), v.iter().map(|a| a.wrapping_neg()).collect())
            }
        },
        "Add" | "Sub" | "Mul" | "Div" => {
            let Some(y) = c(1) else { return Ok(None) };
            let bop = match op {
                "Add" => BinOp::Add,
                "Sub" => BinOp::Sub,
                "Mul" => BinOp::Mul,
                _ => BinOp::Div,
            };
            binary(bop, x, y)?
        }
        "Cast" => {
            let to = attrs.int("to").ok_or("missing attribute 'to'")? as i32;
            match to {
                1 | 10 | 11 | 16 => ConstTensor::f32(x.dims.clone(), x.to_f32()),
                9 => ConstTensor::i64(
                    x.dims.clone(),
                    x.to_f32().iter().map(|&v| (v != 0.0) as i64).collect(),
                ),
                2..=7 | 12 | 13 => ConstTensor::i64(x.dims.clone(), x.to_i64()),
                _ => {
                    return Err(format!(
                        "Cast to {} is not supported",
                        super::tensor::dtype_name(to)
                    ))
                }
            }
        }
        "Reshape" => {
            let Some(t) = c(1) else { return Ok(None) };
            let target = reshape_target(
                &x.dims,
                &ints_of(t, "shape")?,
                attrs.int_or("allowzero", 0) != 0,
            )?;
            x.reshaped(target)
                .ok_or("reshape changes the element count")?
        }
        "Flatten" => {
            let r = x.dims.len();
            let a = attrs.int_or("axis", 1);
            let a = if a < 0 { a + r as i64 } else { a };
            if !(0..=r as i64).contains(&a) {
                return Err(format!("axis {a} out of range"));
            }
            let a = a as usize;
            let outer: usize = x.dims[..a].iter().product();
            x.reshaped(vec![outer, x.dims[a..].iter().product()])
                .ok_or("flatten failed")?
        }
        "Unsqueeze" => {
            let ax = axes(attrs, ins, opset)?.ok_or("Unsqueeze needs axes")?;
            let r = x.dims.len() + ax.len();
            let mut ax: Vec<usize> = ax
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?;
            ax.sort_unstable();
            ax.dedup();
            if ax.len() + x.dims.len() != r {
                return Err("repeated axes".into());
            }
            let mut it = x.dims.iter();
            let dims = (0..r)
                .map(|i| {
                    if ax.contains(&i) {
                        1
                    } else {
                        it.next().copied().unwrap_or(1)
                    }
                })
                .collect();
            x.reshaped(dims).ok_or("unsqueeze failed")?
        }
        "Squeeze" => {
            let r = x.dims.len();
            let dims = match axes(attrs, ins, opset)? {
                Some(ax) => {
                    let ax: Vec<usize> = ax
                        .iter()
                        .map(|&a| norm_axis(a, r))
                        .collect::<Result<_, _>>()?;
                    if ax.iter().any(|&a| x.dims[a] != 1) {
                        return Err("Squeeze of a dim that is not 1".into());
                    }
                    x.dims
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !ax.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                }
                None => x.dims.iter().copied().filter(|&d| d != 1).collect(),
            };
            x.reshaped(dims).ok_or("squeeze failed")?
        }
        "Gather" => {
            let Some(i) = c(1) else { return Ok(None) };
            let axis = norm_axis(attrs.int_or("axis", 0), x.dims.len())?;
            let d = x.dims[axis] as i64;
            let mut idx = Vec::new();
            for &k in &ints_of(i, "indices")? {
                let k = if k < 0 { k + d } else { k };
                if !(0..d).contains(&k) {
                    return Err(format!("Gather index {k} out of range for {d}"));
                }
                idx.push(k as usize);
            }
            let mut per_axis: Vec<Vec<usize>> = x.dims.iter().map(|&n| (0..n).collect()).collect();
            per_axis[axis] = idx;
            let dims = [&x.dims[..axis], &i.dims[..], &x.dims[axis + 1..]].concat();
            select(x, &per_axis, dims)?
        }
        "Slice" => {
            if opset < 10 {
                return Err("Slice before opset 10".into());
            }
            let (Some(st), Some(en)) = (c(1), c(2)) else {
                return Ok(None);
            };
            let r = x.dims.len();
            let starts = ints_of(st, "starts")?;
            let ends = ints_of(en, "ends")?;
            let axes: Vec<i64> = match ins.get(3).copied() {
                Some(Input::Const(a)) => ints_of(a, "axes")?,
                Some(Input::Act(_)) => return Ok(None),
                _ => (0..starts.len() as i64).collect(),
            };
            let steps: Vec<i64> = match ins.get(4).copied() {
                Some(Input::Const(s)) => ints_of(s, "steps")?,
                Some(Input::Act(_)) => return Ok(None),
                _ => vec![1; starts.len()],
            };
            if ends.len() != starts.len()
                || axes.len() != starts.len()
                || steps.len() != starts.len()
            {
                return Err("starts, ends, axes and steps differ in length".into());
            }
            let mut per_axis: Vec<Vec<usize>> = x.dims.iter().map(|&n| (0..n).collect()).collect();
            for k in 0..starts.len() {
                let a = norm_axis(axes[k], r)?;
                let d = x.dims[a] as i64;
                let step = steps[k];
                if step == 0 {
                    return Err("Slice step 0".into());
                }
                let (s, e) = slice_bounds(d, starts[k], ends[k], step);
                let mut v = Vec::new();
                let mut i = s;
                while (step > 0 && i < e) || (step < 0 && i > e) {
                    v.push(i as usize);
                    i = i.saturating_add(step);
                }
                per_axis[a] = v;
            }
            let dims = per_axis.iter().map(|v| v.len()).collect();
            select(x, &per_axis, dims)?
        }
        "Concat" => {
            let mut parts = Vec::new();
            for input in ins {
                match input {
                    Input::Const(t) => parts.push(*t),
                    Input::Missing => {}
                    Input::Act(_) => return Ok(None),
                }
            }
            let r = x.dims.len();
            let axis = norm_axis(attrs.int("axis").ok_or("Concat needs an axis")?, r.max(1))?;
            let float = parts.iter().any(|p| p.is_float());
            let mut dims = x.dims.clone();
            if dims.is_empty() {
                return Err("Concat of scalars".into());
            }
            dims[axis] = 0;
            for p in &parts {
                if p.dims.len() != r
                    || p.dims
                        .iter()
                        .enumerate()
                        .any(|(i, &d)| i != axis && d != x.dims[i])
                {
                    return Err("Concat inputs differ outside the axis".into());
                }
                dims[axis] += p.dims[axis];
            }
            checked_elems(&dims).ok_or("result too large")?;
            let outer: usize = dims[..axis].iter().product();
            let (mut fv, mut iv) = (Vec::new(), Vec::new());
            let fparts: Vec<Vec<f32>> = if float {
                parts.iter().map(|p| p.to_f32()).collect()
            } else {
                Vec::new()
            };
            for o in 0..outer {
                for (pi, p) in parts.iter().enumerate() {
                    let inner: usize = p.dims[axis..].iter().product();
                    let range = o * inner..(o + 1) * inner;
                    if float {
                        fv.extend_from_slice(&fparts[pi][range]);
                    } else if let Some(v) = p.ints() {
                        iv.extend_from_slice(&v[range]);
                    }
                }
            }
            if float {
                ConstTensor::f32(dims, fv)
            } else {
                ConstTensor::i64(dims, iv)
            }
        }
        "ConstantOfShape" => {
            let dims = dims_of(x, "shape")?;
            let n = checked_elems(&dims).ok_or("ConstantOfShape result too large")?;
            match attrs.tensor("value") {
                Some(t) => {
                    let v = read_tensor(t, "ConstantOfShape value").map_err(|e| e.to_string())?;
                    match v.data {
                        Data::F32(f) if f.len() == 1 => ConstTensor::f32(dims, vec![f[0]; n]),
                        Data::I64(i) if i.len() == 1 => ConstTensor::i64(dims, vec![i[0]; n]),
                        _ => return Err("value must have one element".into()),
                    }
                }
                None => ConstTensor::f32(dims, vec![0.0; n]),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

/// The value of a `Constant` node.
fn constant(attrs: &Attrs) -> Result<ConstTensor, String> {
    if let Some(t) = attrs.tensor("value") {
        return read_tensor(t, "Constant value").map_err(|e| e.to_string());
    }
    if let Some(f) = attrs.float("value_float") {
        return Ok(ConstTensor::f32(vec![], vec![f]));
    }
    if let Some(i) = attrs.int("value_int") {
        return Ok(ConstTensor::i64(vec![], vec![i]));
    }
    if attrs.has("value_floats") {
        let v = attrs.floats("value_floats").unwrap_or(&[]).to_vec();
        return Ok(ConstTensor::f32(vec![v.len()], v));
    }
    if attrs.has("value_ints") {
        let v = attrs.ints("value_ints").unwrap_or(&[]).to_vec();
        return Ok(ConstTensor::i64(vec![v.len()], v));
    }
    Err("Constant without a supported value (sparse and string values are not supported)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{AttributeProto, NodeProto};

    fn node(attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            attribute: attrs,
            ..Default::default()
        }
    }
    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            i: Some(v),
            r#type: Some(2),
            ..Default::default()
        }
    }
    fn ints(v: &[i64]) -> ConstTensor {
        ConstTensor::i64(vec![v.len()], v.to_vec())
    }

    #[test]
    fn pytorch_flatten_chain() {
        // x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat([.., -1]) -> Reshape
        let n = node(vec![]);
        let a = Attrs::new(&n);
        let shape = fold("Shape", &a, &[Input::Act(&[2, 8, 3, 3])], 17)
            .unwrap()
            .unwrap();
        assert_eq!(shape.ints().unwrap(), &[2, 8, 3, 3]);
        let zero = ConstTensor::i64(vec![], vec![0]);
        let g = fold(
            "Gather",
            &a,
            &[Input::Const(&shape), Input::Const(&zero)],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (g.dims.clone(), g.ints().unwrap().to_vec()),
            (vec![], vec![2])
        );
        let u = fold(
            "Unsqueeze",
            &a,
            &[Input::Const(&g), Input::Const(&ints(&[0]))],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.dims, vec![1]);
        let cn = node(vec![int_attr("axis", 0)]);
        let cat = fold(
            "Concat",
            &Attrs::new(&cn),
            &[Input::Const(&u), Input::Const(&ints(&[-1]))],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cat.ints().unwrap(), &[2, -1]);
        assert_eq!(
            reshape_target(&[2, 8, 3, 3], cat.ints().unwrap(), false).unwrap(),
            vec![2, 72]
        );
        // Reshape of an activation is not folded.
        assert!(fold(
            "Reshape",
            &a,
            &[Input::Act(&[2, 8, 3, 3]), Input::Const(&cat)],
            17
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn slice_cast_arith() {
        let n = node(vec![]);
        let a = Attrs::new(&n);
        let x = ints(&[1, 3, 224, 224]);
        let s = fold(
            "Slice",
            &a,
            &[
                Input::Const(&x),
                Input::Const(&ints(&[-2])),
                Input::Const(&ints(&[i64::MAX])),
            ],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.ints().unwrap(), &[224, 224]);
        let rev = fold(
            "Slice",
            &a,
            &[
                Input::Const(&x),
                Input::Const(&ints(&[-1])),
                Input::Const(&ints(&[i64::MIN])),
                Input::Const(&ints(&[0])),
                Input::Const(&ints(&[-1])),
            ],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(rev.ints().unwrap(), &[224, 224, 3, 1]);
        let cast_node = node(vec![int_attr("to", 1)]);
        let f = fold("Cast", &Attrs::new(&cast_node), &[Input::Const(&s)], 17)
            .unwrap()
            .unwrap();
        assert!(f.is_float());
        let d = fold(
            "Div",
            &a,
            &[
                Input::Const(&s),
                Input::Const(&ConstTensor::i64(vec![], vec![7])),
            ],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.ints().unwrap(), &[32, 32]);
        let cos = fold("ConstantOfShape", &a, &[Input::Const(&ints(&[2, 2]))], 17)
            .unwrap()
            .unwrap();
        assert_eq!(cos.to_f32(), vec![0.0; 4]);
        assert!(fold(
            "ConstantOfShape",
            &a,
            &[Input::Const(&ints(&[1 << 30, 1 << 30]))],
            17
        )
        .is_err());
        let sq = fold(
            "Squeeze",
            &a,
            &[Input::Const(&ConstTensor::i64(vec![1, 2, 1], vec![4, 5]))],
            17,
        )
        .unwrap()
        .unwrap();
        assert_eq!(sq.dims, vec![2]);
    }

    #[test]
    fn range_compare_and_where() {
        let n = node(vec![]);
        let a = Attrs::new(&n);
        let sc = |v: i64| ConstTensor::i64(vec![], vec![v]);
        let scf = |v: f32| ConstTensor::f32(vec![], vec![v]);
        let run = |op: &str, ins: &[&ConstTensor]| {
            let ins: Vec<Input> = ins.iter().map(|t| Input::Const(t)).collect();
            fold(op, &a, &ins, 17)
        };
        let r = run("Range", &[&sc(10), &sc(1), &sc(-3)]).unwrap().unwrap();
        assert_eq!(r, ints(&[10, 7, 4]));
        let r = run("Range", &[&sc(0), &sc(0), &sc(1)]).unwrap().unwrap();
        assert_eq!(r.dims, vec![0]);
        let r = run("Range", &[&scf(0.5), &scf(2.0), &scf(0.5)])
            .unwrap()
            .unwrap();
        assert_eq!(r, ConstTensor::f32(vec![3], vec![0.5, 1.0, 1.5]));
        assert!(run("Range", &[&sc(0), &sc(5), &sc(0)]).is_err());
        assert!(run("Range", &[&sc(0), &sc(i64::MAX), &sc(1)]).is_err());

        let x = ints(&[1, 2, 3, 4]);
        let e = run("Equal", &[&x, &sc(3)]).unwrap().unwrap();
        assert_eq!(e, ints(&[0, 0, 1, 0]));
        let l = run("Less", &[&x, &sc(3)]).unwrap().unwrap();
        assert_eq!(l, ints(&[1, 1, 0, 0]));
        let g = run("Greater", &[&x, &sc(3)]).unwrap().unwrap();
        assert_eq!(g, ints(&[0, 0, 0, 1]));
        assert_eq!(run("Not", &[&g]).unwrap().unwrap(), ints(&[1, 1, 1, 0]));
        // Integer branches stay integers; a float branch makes the result float.
        let w = run("Where", &[&e, &x, &sc(-1)]).unwrap().unwrap();
        assert_eq!(w, ints(&[-1, -1, 3, -1]));
        let w = run("Where", &[&e, &scf(0.5), &x]).unwrap().unwrap();
        assert_eq!(w, ConstTensor::f32(vec![4], vec![1.0, 2.0, 0.5, 4.0]));
        // A computed branch leaves the node to the importer.
        let ins = [Input::Const(&e), Input::Act(&[1, 4]), Input::Const(&x)];
        assert!(fold("Where", &a, &ins, 17).unwrap().is_none());
    }
}
