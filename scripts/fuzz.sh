#!/usr/bin/env bash
# Runs one fuzz target for a fixed time with cargo fuzz (libFuzzer, nightly toolchain).
#
#   scripts/fuzz.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is smof_open (.smof open + session + one run), onnx_import (ONNX -> .smof) or
# npy_parse (the .npy reader). The working corpus is fuzz/corpus/TARGET (grown by the run,
# not committed); it starts from the committed seeds in fuzz/seeds/TARGET
# (python3 fuzz/make_seeds.py regenerates them). A crash, a timeout over 1 s or more than
# 2 GB of memory stops the run and leaves the input in fuzz/artifacts/TARGET/; reproduce
# it with `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...` in fuzz/.
#
# Environment: SANITIZER=none (default: the most executions per second; the Rust code is
# memory-safe outside the kernels' `unsafe`, which scripts/sanitize.sh runs under
# AddressSanitizer, and debug assertions with overflow checks stay on) or address;
# NICE=19 (default) for the scheduling priority.
# The last lines printed give the executions done (stat::number_of_executed_units).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
case $target in
    smof_open | onnx_import | npy_parse) ;;
    *)
        echo "unknown target $target (smof_open, onnx_import, npy_parse)" >&2
        exit 2
        ;;
esac
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi
sanitizer=${SANITIZER:-none}
mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
cd fuzz
cargo +nightly fuzz build --release --sanitizer "$sanitizer" "$target"
exec nice -n "${NICE:-19}" cargo +nightly fuzz run --release --sanitizer "$sanitizer" "$target" \
    "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 "$@"
