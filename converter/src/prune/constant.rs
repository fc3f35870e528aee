//! Constant channels: a channel whose value is the same at every position for every model
//! input (all-zero weights with a bias, through channel-wise ops). Removing its group is
//! exact once each constant is folded into the bias of the layers that mix it in.

use crate::ir::{Graph, Op, PoolKind, ValueId};
use std::collections::HashMap;

/// The constant value of channel `c` of `v`, if it has one whatever the model's input.
pub fn constant(
    g: &Graph,
    producers: &[Option<usize>],
    v: ValueId,
    c: usize,
    memo: &mut HashMap<(ValueId, usize), Option<f32>>,
) -> Option<f32> {
    if let Some(&z) = memo.get(&(v, c)) {
        return z;
    }
    // The graph is acyclic; mark pessimistically while recursing.
    memo.insert((v, c), None);
    let z = (|| {
        let n = &g.nodes[producers[v]?];
        let mut input = |k: usize, ch: usize| constant(g, producers, *n.inputs.get(k)?, ch, memo);
        match &n.op {
            Op::Conv(conv) => {
                let row = conv.weight.data.len() / conv.out_c();
                let w = &conv.weight.data[c * row..(c + 1) * row];
                let b = conv.bias.as_ref().map_or(0.0, |b| b[c]);
                let mut acc = if w.iter().all(|&x| x == 0.0) {
                    b
                } else {
                    let depthwise = conv.weight.dims[1] == 1 && conv.group == conv.out_c();
                    if !depthwise {
                        return None;
                    }
                    // A constant through a padded depthwise conv differs at the border
                    // unless it is zero.
                    let a = input(0, c)?;
                    if a != 0.0 && conv.pads.iter().any(|&p| p > 0) {
                        return None;
                    }
                    a * w.iter().sum::<f32>() + b
                };
                if n.inputs.len() > 1 {
                    acc += input(1, c)?;
                }
                Some(conv.act.apply(acc))
            }
            // A transposed conv whose weights into channel `c` are all zero writes its bias
            // everywhere.
            Op::Deconv(d) if d.group == 1 => {
                let [kh, kw] = d.kernel();
                let (kk, per) = (kh * kw, d.per_input());
                let zero = d
                    .weight
                    .data
                    .chunks(per)
                    .all(|r| r[c * kk..(c + 1) * kk].iter().all(|&x| x == 0.0));
                zero.then(|| d.act.apply(d.bias.as_ref().map_or(0.0, |b| b[c])))
            }
            Op::ChannelAffine { scale, shift, act } => {
                let a = if scale[c] == 0.0 { 0.0 } else { input(0, c)? };
                Some(act.apply(a * scale[c] + shift[c]))
            }
            Op::Add { act } => Some(act.apply(input(0, c)? + input(1, c)?)),
            Op::Act(act) => Some(act.apply(input(0, c)?)),
            Op::Mul => {
                let a = input(0, c);
                let b = input(1, c);
                match (a, b) {
                    (Some(a), Some(b)) => Some(a * b),
                    (Some(z), _) | (_, Some(z)) if z == 0.0 => Some(0.0),
                    _ => None,
                }
            }
            Op::Pool(p) => {
                let a = input(0, c)?;
                let padded = p.pads.iter().any(|&x| x > 0) || p.ceil_pads.iter().any(|&x| x > 0);
                match p.kind {
                    PoolKind::Avg {
                        count_include_pad: true,
                    } if padded && a != 0.0 => None,
                    _ => Some(a),
                }
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool | Op::Identity => input(0, c),
            Op::Concat => {
                let mut off = 0;
                for k in 0..n.inputs.len() {
                    let ch = g.shape(n.inputs[k]).get(1).copied().unwrap_or(0);
                    if c < off + ch {
                        return input(k, c - off);
                    }
                    off += ch;
                }
                None
            }
            Op::Resize(_) => input(0, c),
            Op::Slice { starts, steps, .. } => input(0, starts[1] + c * steps[1]),
            Op::ChannelShuffle { groups } => {
                let per = g.shape(v).get(1).copied().unwrap_or(0) / groups;
                input(0, (c % groups) * per + c / groups)
            }
            Op::Unary { kind } => Some(kind.apply(input(0, c)?)),
            Op::Binary { kind, act } => {
                let b = input(1, c)?;
                Some(act.apply(kind.apply(input(0, c)?, b)))
            }
            Op::Fc(_)
            | Op::Softmax
            | Op::Flatten
            | Op::Deconv(_)
            | Op::Transpose { .. }
            | Op::Reduce { .. }
            | Op::Pad { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. }
            | Op::Tile { .. }
            | Op::SoftmaxAxis { .. }
            | Op::Reshape { .. }
            | Op::ConcatAxis { .. }
            | Op::LayerNorm { .. }
            | Op::Constant(_) => None,
        }
    })();
    memo.insert((v, c), z);
    z
}

/// A group member `(value, channel)` that a channel-mixing layer reads, with its constant.
pub type Fold = (ValueId, usize, f32);

/// If removing `group` can be made exact by folding constants into biases, the constants
/// to fold: every member read by a dense conv, transposed conv or fully connected layer
/// must be constant, and a non-zero constant may only feed convs without padding (at a
/// padded border the constant would meet zeros), never a transposed conv (whose taps
/// overlap unevenly).
pub fn foldable(
    g: &Graph,
    producers: &[Option<usize>],
    group: &[(ValueId, usize)],
    memo: &mut HashMap<(ValueId, usize), Option<f32>>,
) -> Option<Vec<Fold>> {
    let mut folds = Vec::new();
    for &(v, c) in group {
        let mut padded = false;
        let mut mixed = false;
        for n in &g.nodes {
            if n.inputs.first() != Some(&v) {
                continue;
            }
            match &n.op {
                Op::Conv(cv) if cv.group == 1 => {
                    mixed = true;
                    padded |= cv.pads.iter().any(|&p| p > 0);
                }
                Op::Fc(_) => mixed = true,
                Op::Deconv(_) => {
                    mixed = true;
                    padded = true;
                }
                _ => {}
            }
        }
        if !mixed {
            continue;
        }
        let a = constant(g, producers, v, c, memo)?;
        if a != 0.0 && padded {
            return None;
        }
        if a != 0.0 {
            folds.push((v, c, a));
        }
    }
    Some(folds)
}

/// Adds each constant times its weights to the bias of every dense conv and fully
/// connected layer that reads it (before the channel is removed).
pub fn fold(g: &mut Graph, folds: &[Fold]) {
    let shapes: Vec<Vec<usize>> = g.values.iter().map(|v| v.shape.clone()).collect();
    for &(v, c, a) in folds {
        for n in &mut g.nodes {
            if n.inputs.first() != Some(&v) {
                continue;
            }
            let (w, bias, cols, blk) = match &mut n.op {
                Op::Conv(cv) if cv.group == 1 => {
                    let kk = cv.kernel()[0] * cv.kernel()[1];
                    let cols = cv.weight.dims[1] * kk;
                    (&cv.weight.data, &mut cv.bias, cols, kk)
                }
                Op::Fc(f) => {
                    let blk = shapes[v].iter().skip(2).product::<usize>().max(1);
                    (&f.weight.data, &mut f.bias, f.weight.dims[1], blk)
                }
                _ => continue,
            };
            let oc = w.len() / cols;
            let b = bias.get_or_insert_with(|| vec![0.0; oc]);
            for (o, bo) in b.iter_mut().enumerate() {
                let s: f32 = w[o * cols + c * blk..o * cols + (c + 1) * blk].iter().sum();
                *bo += a * s;
            }
        }
    }
}
