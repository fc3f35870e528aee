//! A session: one thread's planned execution of a model. All buffers are allocated at
//! creation; [`Session::run`] allocates nothing.

use crate::error::Result;
use crate::model::Model;

/// Options for [`Session::new`].
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Worker threads (0 or 1: run on the calling thread).
    pub threads: usize,
}

/// One thread's execution state for a [`Model`].
pub struct Session<'m> {
    model: &'m Model,
}

impl<'m> Session<'m> {
    /// Plans every buffer of `model` and allocates them.
    pub fn new(model: &'m Model, opts: &SessionOptions) -> Result<Session<'m>> {
        let _ = opts;
        Ok(Session { model })
    }
    /// Runs the model on `inputs` (one NCHW f32 slice per model input, in order).
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<()> {
        let _ = (inputs, self.model);
        todo!()
    }
    /// Output `i` of the last run, in the ONNX (NCHW) element order.
    pub fn output(&self, i: usize) -> &[f32] {
        let _ = i;
        todo!()
    }
}
