#!/usr/bin/env bash
# Builds the workspace for the host in release: every library (the C API's libsmof.a/.so,
# the JNI library), the binaries (smof, smof-bench) and the test targets.
#
# It selects the same packages and targets as `cargo test --workspace --release`
# (scripts/test.sh), so Cargo unifies dependency features the same way and, after the test
# run, rebuilds nothing. A narrower selection such as `-p smof-capi` would unify fewer
# features and build the shared dependencies (faer, gemm, half, …) a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --lib --bins --tests
