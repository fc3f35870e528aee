//! x86-64 kernel tables: AVX2+FMA and AVX-512F, chosen by runtime feature detection.

use super::KernelTable;

/// The AVX2+FMA table, when this CPU has those features and the table is built.
pub fn avx2_table() -> Option<&'static KernelTable> {
    None
}

/// The AVX-512F table, when this CPU has that feature and the table is built.
pub fn avx512_table() -> Option<&'static KernelTable> {
    None
}
