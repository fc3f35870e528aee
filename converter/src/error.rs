//! The converter's error type.

use std::fmt;
use std::path::PathBuf;

/// Result alias used across the converter.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One node of the source model that the converter cannot translate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    /// Node name (or `#index` when the model leaves it empty).
    pub name: String,
    /// ONNX op type, e.g. `Resize`.
    pub op_type: String,
    /// Operator domain; empty for the default `ai.onnx` domain.
    pub domain: String,
    /// Opset version of that domain imported by the model.
    pub opset: i64,
    /// What is missing, e.g. `attribute mode='cubic' not supported`.
    pub reason: String,
}

impl fmt::Display for UnsupportedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = if self.domain.is_empty() {
            String::new()
        } else {
            format!("{}::", self.domain)
        };
        write!(
            f,
            "node '{}' ({}{}, opset {}): {}",
            self.name, domain, self.op_type, self.opset, self.reason
        )
    }
}

fn list_unsupported(nodes: &[UnsupportedNode]) -> String {
    let mut s = format!(
        "the model has {} unsupported node{}:",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" }
    );
    for n in nodes {
        s.push_str("\n  - ");
        s.push_str(&n.to_string());
    }
    s
}

/// Everything that can go wrong when converting an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not an ONNX model (not a protobuf `ModelProto`, truncated, or without a graph).
    #[error("not an ONNX model: {what}")]
    NotOnnx {
        /// What is wrong with the bytes.
        what: String,
    },
    /// The model imports an opset this converter does not handle.
    #[error("unsupported opset: domain '{domain}' version {version} ({what})")]
    Opset {
        /// Operator domain (`ai.onnx` for the default one).
        domain: String,
        /// Imported version, or 0 when missing.
        version: i64,
        /// What is supported instead.
        what: String,
    },
    /// Nodes the converter cannot translate; lists every one of them.
    #[error("{}", list_unsupported(.nodes))]
    Unsupported {
        /// Every unsupported node of the model, in graph order.
        nodes: Vec<UnsupportedNode>,
    },
    /// A tensor shape is unknown, symbolic, or inconsistent.
    #[error("shape of tensor '{tensor}': {what}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        what: String,
    },
    /// The model is malformed (dangling references, bad initializer data, ...).
    #[error("invalid model: {0}")]
    Model(String),
    /// A conversion option is invalid.
    #[error("invalid option: {0}")]
    Options(String),
    /// The runtime rejected the produced graph, or the format writer failed.
    #[error("runtime: {0}")]
    Runtime(smof::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error. Like the runtime's error in [`Error::Runtime`], it is part
        /// of the message rather than the error's `source()`, so a printed chain (`{:#}` of
        /// anyhow) does not repeat it.
        error: std::io::Error,
    },
}

impl From<smof::Error> for Error {
    fn from(e: smof::Error) -> Self {
        Error::Runtime(e)
    }
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(tensor: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Shape {
            tensor: tensor.into(),
            what: what.into(),
        }
    }
    /// Shorthand for [`Error::Model`].
    pub fn model(what: impl Into<String>) -> Self {
        Error::Model(what.into())
    }
}
