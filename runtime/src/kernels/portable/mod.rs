//! The portable kernel table: scalar code plus `wide` vectors, runs on every CPU.

use super::*;
use crate::graph::{Activation, Conv, Pool};

fn conv_scratch(_: &Conv, _: Act4, _: Act4) -> usize {
    0
}
fn conv_run(_: &mut ConvArgs) {
    todo!()
}
fn conv_select(_: &Conv) -> ConvKernel {
    ConvKernel { name: "conv_generic_portable", layout: Layout::Canonical, scratch_len: conv_scratch, run: conv_run }
}
fn fc_run(_: &mut FcArgs) {
    todo!()
}
fn pool(_: &Pool, _: &[f32], _: Act4, _: &mut [f32], _: Act4) {
    todo!()
}
fn unary(_: &[f32], _: Act4, _: &mut [f32], _: Act4) {
    todo!()
}
fn add(_: &[f32], _: &[f32], _: &mut [f32], _: Act4, _: Activation) {
    todo!()
}
fn mul(_: &[f32], _: &[f32], _: Act4, _: &mut [f32], _: Act4) {
    todo!()
}
fn concat_part(_: &[f32], _: Act4, _: &mut [f32], _: Act4, _: usize) {
    todo!()
}
fn act(_: &[f32], _: &mut [f32], _: Act4, _: Activation) {
    todo!()
}
fn channel_affine(_: &[f32], _: &[f32], _: &[f32], _: &mut [f32], _: Act4, _: Activation) {
    todo!()
}

/// The portable table.
pub static TABLE: KernelTable = KernelTable {
    name: "portable",
    channel_align: 8,
    conv: conv_select,
    fc: FcKernel { name: "fc_portable", layout: Layout::Canonical, run: fc_run },
    pool,
    global_avg_pool: unary,
    add,
    mul,
    concat_part,
    act,
    softmax: unary,
    flatten: unary,
    channel_affine,
};
