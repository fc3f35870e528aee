#!/usr/bin/env bash
# Builds the runtime for aarch64 (static musl, linked with rust-lld) and runs its tests under
# qemu-user: the lib tests (including the kernel property suite, which covers the portable
# and the NEON tables) and runtime/tests/*. The runner is set in .cargo/config.toml.
# Installs the Rust target and qemu-user-static when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-musl

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v qemu-aarch64-static >/dev/null; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update
  "${sudo_cmd[@]}" apt-get install -y qemu-user-static
fi

# qemu-user is 10-30x slower than native: run fewer proptest cases than on x86 (the suite
# reads PROPTEST_CASES; its default without the variable is unchanged). Override it by
# setting PROPTEST_CASES before calling this script.
export PROPTEST_CASES=${PROPTEST_CASES:-128}

cargo test -p smof --release --target "$target" "$@"
