#!/usr/bin/env bash
# Builds libsmof_android.so for the Android ABIs into smof/src/main/jniLibs/<abi>/ with
# cargo-ndk. Needs the Android NDK (ANDROID_NDK_HOME) and `cargo install cargo-ndk`, plus
# `rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo-ndk >/dev/null; then
  echo "error: cargo-ndk is not installed: cargo install cargo-ndk" >&2
  exit 1
fi
if [ -z "${ANDROID_NDK_HOME:-}${ANDROID_NDK_ROOT:-}" ]; then
  echo "error: set ANDROID_NDK_HOME to the Android NDK (r26 or newer)" >&2
  exit 1
fi
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o smof/src/main/jniLibs \
  build --release -p smof-android
ls -l smof/src/main/jniLibs/*/libsmof_android.so
