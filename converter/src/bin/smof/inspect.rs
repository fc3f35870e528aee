//! `smof inspect`: the layer table of a `.smof` model, its totals and its arena size.

use anyhow::Result;
use smof::graph::{Graph, Op};
use smof::{Session, SessionOptions};
use std::path::Path;

/// Multiply-accumulates of each node.
pub fn node_macs(g: &Graph) -> Vec<u64> {
    g.nodes
        .iter()
        .map(|n| {
            let ins: Vec<_> = n
                .inputs
                .iter()
                .map(|&t| g.tensors[t as usize].shape)
                .collect();
            n.op.macs(&ins, g.tensors[n.outputs[0] as usize].shape)
        })
        .collect()
}

/// Total multiply-accumulates of a graph.
pub fn graph_macs(g: &Graph) -> u64 {
    node_macs(g).iter().sum()
}

struct Row {
    name: String,
    op: &'static str,
    kernel: String,
    stride: String,
    channels: String,
    out: String,
    flops: u64,
    params: u64,
    weight_bytes: u64,
    impl_name: &'static str,
}

fn rows(g: &Graph, kernels: &[&'static str]) -> Vec<Row> {
    let macs = node_macs(g);
    g.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let s = g.tensors[n.outputs[0] as usize].shape;
            let in_c = n
                .inputs
                .first()
                .map_or(0, |&t| g.tensors[t as usize].shape.c);
            let (kernel, stride) = match &n.op {
                Op::Conv(c) => (
                    format!("{}x{}", c.kernel[0], c.kernel[1]),
                    format!("{}", c.stride[0])
                        + &if c.stride[0] != c.stride[1] {
                            format!("x{}", c.stride[1])
                        } else {
                            String::new()
                        },
                ),
                Op::Pool(p) => (
                    format!("{}x{}", p.kernel[0], p.kernel[1]),
                    format!("{}", p.stride[0]),
                ),
                _ => ("-".into(), "-".into()),
            };
            let ws: Vec<_> =
                n.op.weight_ids()
                    .into_iter()
                    .map(|w| &g.weights[w as usize])
                    .collect();
            Row {
                name: n.name.clone(),
                op: n.op.name(),
                kernel,
                stride,
                channels: format!("{in_c}->{}", s.c),
                out: format!("{}x{}x{}", s.h, s.w, s.c),
                flops: 2 * macs[i],
                params: ws.iter().map(|w| w.logical_elems()).sum(),
                weight_bytes: ws.iter().map(|w| w.byte_len).sum(),
                impl_name: kernels.get(i).copied().unwrap_or("-"),
            }
        })
        .collect()
}

/// Prints the layer table (or JSON) of the model at `path`.
pub fn inspect(path: &Path, json: bool) -> Result<()> {
    let model = crate::open(path)?;
    let session = Session::new(&model, &SessionOptions::default())?;
    let g = model.graph();
    let rows = rows(g, &session.kernel_names());
    let flops: u64 = rows.iter().map(|r| r.flops).sum();
    let params: u64 = g.weights.iter().map(|w| w.logical_elems()).sum();
    let weight_bytes: u64 = g.weights.iter().map(|w| w.byte_len).sum();
    let io = |v: &[smof::graph::IoDesc]| -> String {
        v.iter()
            .map(|i| format!("{{\"name\":{:?},\"dims\":{:?}}}", i.name, i.dims))
            .collect::<Vec<_>>()
            .join(",")
    };
    if json {
        let layers: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":{:?},\"op\":{:?},\"kernel\":{:?},\"stride\":{:?},\"channels\":{:?},\"output\":{:?},\"flops\":{},\"params\":{},\"weight_bytes\":{},\"impl\":{:?}}}",
                    r.name, r.op, r.kernel, r.stride, r.channels, r.out, r.flops, r.params, r.weight_bytes, r.impl_name
                )
            })
            .collect();
        smof::outln!(
            "{{\"model\":{:?},\"producer\":{:?},\"producer_version\":{:?},\"file_bytes\":{},\"nodes\":{},\"flops\":{flops},\"params\":{params},\"weight_bytes\":{weight_bytes},\"arena_bytes\":{},\"peak_live_bytes\":{},\"scratch_bytes\":{},\"kernels\":{:?},\"inputs\":[{}],\"outputs\":[{}],\"layers\":[{}]}}",
            g.meta.model_name,
            g.meta.producer,
            g.meta.producer_version,
            model.file_len(),
            g.nodes.len(),
            session.arena_bytes(),
            session.peak_live_bytes(),
            session.scratch_bytes(),
            model.kernels().name,
            io(&g.inputs),
            io(&g.outputs),
            layers.join(",")
        );
        return Ok(());
    }
    smof::outln!(
        "{} — {} {} ({}), {} bytes, kernels {}",
        g.meta.model_name,
        g.meta.producer,
        g.meta.producer_version,
        g.meta.description,
        model.file_len(),
        model.kernels().name
    );
    for i in &g.inputs {
        smof::outln!("input  {} {:?}", i.name, i.dims);
    }
    for o in &g.outputs {
        smof::outln!("output {} {:?}", o.name, o.dims);
    }
    smof::outln!(
        "{:>4}  {:<30} {:<13} {:>6} {:>6} {:>12} {:>13} {:>12} {:>11}  impl",
        "#",
        "name",
        "op",
        "kernel",
        "stride",
        "channels",
        "output",
        "MFLOPs",
        "weight B"
    );
    for (i, r) in rows.iter().enumerate() {
        let name: String = if r.name.chars().count() > 30 {
            r.name
                .chars()
                .take(29)
                .chain(std::iter::once('…'))
                .collect()
        } else {
            r.name.clone()
        };
        smof::outln!(
            "{i:>4}  {name:<30} {:<13} {:>6} {:>6} {:>12} {:>13} {:>12.3} {:>11}  {}",
            r.op,
            r.kernel,
            r.stride,
            r.channels,
            r.out,
            r.flops as f64 / 1e6,
            r.weight_bytes,
            r.impl_name
        );
    }
    smof::outln!(
        "total: {} nodes, {:.3} GFLOPs, {} params, {} weight bytes; arena {} bytes (peak live {}), scratch {} bytes",
        g.nodes.len(),
        flops as f64 / 1e9,
        params,
        weight_bytes,
        session.arena_bytes(),
        session.peak_live_bytes(),
        session.scratch_bytes()
    );
    Ok(())
}
