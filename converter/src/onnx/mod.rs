//! ONNX import: protobuf decoding, initializers, constant folding of shape arithmetic and
//! translation of every node into the converter IR.
mod attrs;
pub mod builder;
mod channels_last;
pub mod external;
mod fold;
pub mod import;
mod ops;
#[rustfmt::skip]
pub mod proto;
pub mod tensor;
#[cfg(test)]
mod tests;

pub use import::{import, import_with, Imported, ModelInfo};

/// Lowest default-domain opset the converter accepts.
pub const MIN_OPSET: i64 = 11;
/// Highest default-domain opset the converter accepts. Opsets 22 to 28 changed the ops the
/// converter reads only by the element types they allow (bfloat16, float4/float8, int2),
/// except for three attributes: SpaceToDepth's `mode` (28; anything but the old order, DCR,
/// is refused), Cast's `round_mode` (24; only for float8e8m0, which is refused) and Range's
/// `stash_type` (27; for 16-bit floats only). Checked against the operator schemas of the
/// `onnx` Python package 1.23 (`onnx.defs.get_schema(op, v).since_version` for v up to 28).
pub const MAX_OPSET: i64 = 28;
