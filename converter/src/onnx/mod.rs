//! ONNX import.
pub mod proto;
