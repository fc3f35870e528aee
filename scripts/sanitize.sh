#!/usr/bin/env bash
# Undefined-behaviour and memory-error checks that are too slow for scripts/test.sh.
#
#   scripts/sanitize.sh miri   # the format reader/writer and the arena planner under Miri
#   scripts/sanitize.sh asan   # the kernels' tests under AddressSanitizer
#   scripts/sanitize.sh        # both
#
# Needs the nightly toolchain with the miri and rust-src components:
#   rustup component add miri rust-src --toolchain nightly
# Each uses its own target directory (target/miri, target/asan), so the normal build is
# not rebuilt. Tests Miri cannot run (SIMD intrinsics it does not implement, file mappings,
# minutes-long loops) are marked `#[cfg_attr(miri, ignore)]` and listed as ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
host=$(rustc +nightly -vV | sed -n 's/^host: //p')

run_miri() {
    # -Zmiri-disable-isolation: tests may read the clock; no test touches other host state.
    export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
    # Property tests draw 16 cases instead of 256: Miri runs them some 1000x slower.
    export PROPTEST_CASES="${PROPTEST_CASES:-16}"
    cargo +nightly miri test -p smof --lib format
    cargo +nightly miri test -p smof --lib plan
}

run_asan() {
    # -Zbuild-std instruments the standard library too, so an overflow of a Vec the kernels
    # write through raw pointers is caught at the access, not later.
    RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
        CARGO_TARGET_DIR=target/asan \
        cargo +nightly test -Zbuild-std --target "$host" -p smof --lib kernels
}

case $what in
    miri) run_miri ;;
    asan) run_asan ;;
    all)
        run_miri
        run_asan
        ;;
    *)
        echo "usage: $0 [miri|asan|all]" >&2
        exit 2
        ;;
esac
