//! SMOF converter.
pub mod onnx;
