//! x86-64 kernel tables: AVX2+FMA and AVX-512F, chosen by runtime feature detection.
//!
//! Both tables share their drivers, written once over the vector contract `isa::Isa`:
//! `dense` (implicit-GEMM convs of any kernel size and the fully connected layer) and
//! `dw` (depthwise convs), and `eltwise` (add, mul, activations, per-channel affine, max and
//! average pools, global average pool). Each ISA module instantiates them with its vector
//! type, tile sizes and kernel sizes, behind `#[target_feature]` entry points, with one
//! `#[target_feature]` function per tile size of each kernel (`Isa::run_tiles`). The other
//! data-movement ops and grouped convs come from the portable table.

mod avx2;
mod avx512;
mod bf16;
mod dense;
mod dw;
mod eltwise;
#[cfg(test)]
mod emu;
mod geom;
mod int8;
mod isa;
mod select;
mod winograd;

use super::KernelTable;

/// The AVX2+FMA table, when this CPU has those features and the table is built.
pub fn avx2_table() -> Option<&'static KernelTable> {
    avx2::table()
}

/// The AVX-512F table, when this CPU has that feature and the table is built.
pub fn avx512_table() -> Option<&'static KernelTable> {
    avx512::table()
}
