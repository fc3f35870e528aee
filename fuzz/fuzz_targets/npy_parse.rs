//! Fuzzes the `.npy` reader the CLI uses for inputs (`smof_converter::npy::parse`): any bytes
//! give an array or an error, never a panic, and never an allocation the file cannot back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = smof_converter::npy::parse(data) {
        // The header's shape must describe exactly the elements returned.
        let count: usize = a.shape.iter().product();
        assert_eq!(count, a.data.len(), "shape {:?}", a.shape);
    }
});
