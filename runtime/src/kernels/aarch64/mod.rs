//! aarch64 kernel table: NEON (always present on aarch64).

use super::KernelTable;

/// The NEON table, when it is built.
pub fn neon_table() -> Option<&'static KernelTable> {
    None
}
