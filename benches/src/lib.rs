//! Benchmarks of SMOF; this crate has no library code of its own. Criterion benches live in
//! `benches/benches/` (whole-model latency, conv kernels in GFLOP/s), the peak FMA rate of a
//! core in `benches/examples/peak_fma.rs`, and the comparison with other runtimes in
//! `benches/compare/` (built on its own, outside the workspace).
