//! ONNX import: protobuf decoding, initializers, constant folding of shape arithmetic and
//! translation of every node into the converter IR.
mod attrs;
pub mod builder;
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
/// Highest default-domain opset the converter accepts.
pub const MAX_OPSET: i64 = 21;
