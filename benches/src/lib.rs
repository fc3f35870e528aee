//! Benchmarks of SMOF; the library holds only helpers they share. Criterion benches live in
//! `benches/benches/` (whole-model latency, conv kernels in GFLOP/s), the peak FMA rate of a
//! core in `benches/examples/peak_fma.rs`, a 1x1 conv on a cached band against a minimal
//! reference loop in `benches/examples/band1x1.rs`, and the comparison with other runtimes in
//! `benches/compare/` (built on its own, outside the workspace).

use smof::graph::Conv;
use smof::kernels::{Act4, ConvArgs, ConvKernel};

/// Runs `kernel` over the whole output of `conv`, as the kernel benches and examples time it:
/// input `x` of geometry `xs`, weights `w` in the kernel's layout, the bias, no residual,
/// output `y` of geometry `ys`, `scratch` of the kernel's `scratch_len`.
pub fn run_whole_conv(
    kernel: &ConvKernel,
    conv: &Conv,
    (x, xs): (&[f32], Act4),
    w: &[f32],
    bias: &[f32],
    (y, ys): (&mut [f32], Act4),
    scratch: &mut [f32],
) {
    (kernel.run)(&mut ConvArgs {
        conv,
        x,
        xs,
        w,
        bias: Some(bias),
        residual: None,
        y,
        ys,
        scratch,
        rows: 0..ys.rows(),
        parts: &[],
    });
    std::hint::black_box(y);
}
