//! SMOF converter: ONNX models to `.smof` files.
//!
//! The pipeline, one module per stage:
//!
//! 1. [`onnx`]: decode the protobuf, read initializers and constants, fold the shape
//!    arithmetic PyTorch exports, and import every node into the converter IR, collecting
//!    every unsupported node into one [`Error::Unsupported`].
//! 2. [`ir`]: the converter's own graph IR (NCHW semantics, constant weights held by the
//!    ops), with shape inference.
//! 3. [`passes`]: graph rewrites, one file each (identity removal, bias and
//!    BatchNormalization folding, Flatten before a fully connected layer, residual and
//!    activation fusion, dead code elimination).
//! 4. [`prune`]: SMOF pruning (kernel rings and channels, data-free or calibrated with OBS
//!    compensation, FLOP or latency budgets), and the lossless exact shrink of zero rings,
//!    zero channels and constant channels.
//! 5. [`lower`]: the IR to the runtime's NHWC [`smof::graph::Graph`], packing every weight
//!    for the chosen kernel table.
//! 6. [`convert`](mod@convert): the public entry points [`convert()`] and [`convert_file`].
#![warn(missing_docs)]

pub mod convert;
pub mod error;
pub mod ir;
pub mod lower;
pub mod npy;
pub mod onnx;
pub mod passes;
pub mod prune;

pub use convert::{
    convert, convert_file, convert_to_graph, ConvertOptions, Converted, Lowered, Stats,
};
pub use error::{Error, Result, UnsupportedNode};
