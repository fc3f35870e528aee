//! Fuzzes opening a `.smof` model (`Model::from_bytes`), creating a session and running it;
//! the harness (and its work bounds) is `fuzz/harness/smof_open.rs`, which the regression
//! tests share.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/smof_open.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::smof_open(data));
