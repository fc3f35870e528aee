//! SMOF runtime: runs `.smof` CNN models on phones and edge CPUs.
//!
//! A [`Model`] is an immutable, memory-mapped `.smof` file whose weights are used in place. A
//! [`Session`] plans every activation buffer into one arena when it is created, so that
//! [`Session::run`] allocates nothing.
//!
//! ```no_run
//! use smof::{Model, Session, SessionOptions};
//! let model = Model::open("models/lenet5.smof")?;
//! let mut session = Session::new(&model, &SessionOptions::default())?;
//! let input = vec![0.0f32; 28 * 28];
//! session.run(&[&input])?;
//! println!("{:?}", session.output(0));
//! # Ok::<(), smof::Error>(())
//! ```
#![warn(missing_docs)]

mod chain;
#[doc(hidden)]
pub mod cli;
mod concat_read;
pub mod error;
pub mod format;
mod fuse;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod plan;
mod pool;
pub mod session;

pub use error::{Error, Result};
pub use kernels::KernelChoice;
pub use model::{Model, ModelOptions};
pub use session::{Precision, Session, SessionOptions};
