//! Fuzzes the ONNX import (`smof_converter::convert`): protobuf decoding, import, constant
//! folding, the passes, exact-shrink pruning, lowering and serialisation. Any bytes give a
//! converted model or an error, never a panic; a converted model must load in the runtime.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smof_converter::ConvertOptions;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = smof_converter::convert(data, &ConvertOptions::default()) {
        smof::Model::from_bytes(&c.bytes).expect("the converter's output must load");
    }
});
