//! The `smof_open` fuzz harness: open a `.smof` (`Model::from_bytes`), create a session and
//! run it, in f32, bf16 and int8, as given and "repaired". Shared by the fuzz target
//! (`fuzz/fuzz_targets/smof_open.rs`) and the regression tests
//! (`tests/tests/fuzz_regressions.rs`), which include this file with `#[path]`.
//!
//! "Repaired" means `file_len`, every section checksum and the header checksum recomputed,
//! so that mutations reach the record decoding and the graph checks behind the checksums
//! instead of stopping at the first CRC.
//!
//! Work bound: a session is created only when the model's activations (padded to 16
//! channels) total at most `MAX_ARENA_FLOATS`, and run only when the model needs at most
//! `MAX_MACS` multiply-accumulates, so that one input stays well under a second and a few
//! hundred MB. Models above the bound are still opened and validated.

use smof::graph::Shape4;
use smof::{Model, Precision, Session, SessionOptions};

/// Largest activation total (floats) for which a session is created: 64 MB.
pub const MAX_ARENA_FLOATS: u64 = 16 << 20;
/// Largest multiply-accumulate count for which the model is run.
pub const MAX_MACS: u64 = 20_000_000;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Rewrites `file_len`, the section checksums and the header checksum to match the bytes
/// (offsets from docs/format.md). Returns `None` when the header cannot locate its table.
pub fn repair(data: &[u8]) -> Option<Vec<u8>> {
    let mut b = data.to_vec();
    if b.len() < 64 {
        return None;
    }
    let len = b.len() as u64;
    b[16..24].copy_from_slice(&len.to_le_bytes());
    let header_size = u32_at(&b, 12)? as usize;
    let table = usize::try_from(u64_at(&b, 24)?).ok()?;
    let count = u32_at(&b, 32)? as usize;
    if header_size < 44 || header_size > b.len() || count > 64 {
        return None;
    }
    let table_end = table.checked_add(count * 32)?;
    if table_end > b.len() {
        return None;
    }
    for i in 0..count {
        let e = table + i * 32;
        let off = u64_at(&b, e + 8)?;
        let slen = u64_at(&b, e + 16)?;
        if let Some(end) = off.checked_add(slen).filter(|&end| end <= len) {
            let crc = smof::format::crc32(&b[off as usize..end as usize]);
            b[e + 24..e + 28].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let mut h = b[..header_size].to_vec();
    h[40..44].fill(0);
    h.extend_from_slice(&b[table..table_end]);
    let crc = smof::format::crc32(&h);
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}

/// Opens, plans and runs `bytes` within the work bounds; returns whether the model opened.
/// Panics only on a defect: a validated model that fails to run, or outputs of the wrong
/// size.
pub fn open_and_run(bytes: &[u8]) -> bool {
    let Ok(model) = Model::from_bytes(bytes) else {
        return false;
    };
    let g = model.graph();
    let shape = |t: u32| g.tensors[t as usize].shape;
    let arena: u64 = g
        .tensors
        .iter()
        .map(|t| t.shape.pixels() * u64::from(t.shape.c.div_ceil(16) * 16))
        .sum();
    if arena > MAX_ARENA_FLOATS {
        return true;
    }
    let macs: u64 = g
        .nodes
        .iter()
        .map(|n| {
            let ins: Vec<Shape4> = n.inputs.iter().map(|&t| shape(t)).collect();
            n.op.macs(&ins, shape(n.outputs[0]))
        })
        .fold(0u64, u64::saturating_add);
    let Ok(session) = Session::new(&model, &SessionOptions::default().threads(1)) else {
        return true;
    };
    if macs > MAX_MACS {
        return true;
    }
    // Also in bf16 and int8, whose weights are packed at session creation (f32 where the CPU
    // has no such kernels): a model that plans in f32 plans in those too.
    let reduced = |p: Precision| {
        let opts = SessionOptions::default().precision(p);
        Session::new(&model, &opts).expect("a model that plans in f32 plans in every precision")
    };
    let (bf16, int8) = (reduced(Precision::Bf16), reduced(Precision::Int8));
    for session in [session, bf16, int8] {
        run_once(g, session);
    }
    true
}

/// Runs `session` of the graph `g` once on deterministic inputs of the declared sizes.
fn run_once(g: &smof::graph::Graph, mut session: Session) {
    let inputs: Vec<Vec<f32>> = g
        .inputs
        .iter()
        .enumerate()
        .map(|(i, io)| {
            (0..io.elems())
                .map(|k| ((k * 31 + i as u64) % 17) as f32 / 8.0 - 1.0)
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    session
        .run(&refs)
        .expect("a validated model runs on inputs of its declared sizes");
    for i in 0..session.output_count() {
        let n: usize = session.output_dims(i).iter().product();
        assert_eq!(session.output(i).len(), n);
    }
}

/// One fuzz input: as given, then repaired (when repairing changes it).
pub fn smof_open(data: &[u8]) {
    open_and_run(data);
    if let Some(fixed) = repair(data) {
        if fixed != data {
            open_and_run(&fixed);
        }
    }
}
