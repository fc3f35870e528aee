//! The `.smof` file format, version 1: writer and validating reader. Specified in `docs/format.md`.

use crate::error::Result;
use crate::graph::Graph;

/// Options for [`read`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Verify the checksum of the weight data section too (the other sections always are).
    pub verify_weights: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { verify_weights: true }
    }
}

/// Serialises `graph` with the data of each weight (`weight_data[i]` for `graph.weights[i]`,
/// already in that weight's dtype and layout). Weight offsets and lengths are assigned here.
pub fn write(graph: &Graph, weight_data: &[&[u8]]) -> Result<Vec<u8>> {
    let _ = (graph, weight_data);
    todo!("format::write")
}

/// Parses and fully validates a `.smof` file. Weight offsets in the returned graph are
/// absolute positions in `bytes`, already checked to lie inside it.
pub fn read(bytes: &[u8], opts: &ReadOptions) -> Result<Graph> {
    let _ = (bytes, opts);
    todo!("format::read")
}
