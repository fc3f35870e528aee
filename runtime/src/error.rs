//! The one error type of the runtime: every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Result alias used across the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when opening a `.smof` file, planning a session or running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error. It is part of the message rather than the error's
        /// `source()`, so a printed chain (`{:#}` of anyhow) does not repeat it.
        error: std::io::Error,
    },
    /// The bytes are not a `.smof` file, or are damaged. `offset` is the byte position of the problem.
    #[error("corrupt .smof at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The file was written by a newer, incompatible major format version.
    #[error(
        "unsupported .smof format version {major}.{minor} (this reader supports major {supported})"
    )]
    UnsupportedVersion {
        /// Major version found in the file.
        major: u16,
        /// Minor version found in the file.
        minor: u16,
        /// Major version this reader understands.
        supported: u16,
    },
    /// The graph stored in the file is not consistent (bad shape, index or parameter).
    #[error("invalid graph: node {node} ({op}): {what}")]
    InvalidGraph {
        /// Node name, or `#index` when unnamed.
        node: String,
        /// Op name.
        op: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A caller-supplied input does not match what the model expects.
    #[error("input {index} ({name}): {what}")]
    BadInput {
        /// Input position.
        index: usize,
        /// Input name in the model.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// The number of inputs given to `run` is not the number the model has.
    #[error("model has {expected} input(s), {got} given")]
    InputCount {
        /// Inputs the model declares.
        expected: usize,
        /// Inputs supplied.
        got: usize,
    },
    /// A caller-supplied option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A requested size would exceed what the runtime is willing to allocate.
    #[error("{what} needs {bytes} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What would be allocated.
        what: String,
        /// Bytes requested.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            offset,
            what: what.into(),
        }
    }
}
