//! Whole-model latency: `Session::run` on the bundled MobileNetV2 and, when present, the
//! shared torchvision exports (ResNet-18, MobileNetV2, SqueezeNet 1.1), single thread,
//! batch 1, 224x224.
//!
//! `cargo bench -p smof-benches --bench model_latency`

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;

fn models() -> Vec<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut v = vec![root.join("models/mobilenet_v2_imagenet_backbone.onnx")];
    let shared = std::env::var_os("SMOF_SHARED_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/models"));
    for name in ["resnet18.onnx", "mobilenet_v2.onnx", "squeezenet1_1.onnx"] {
        let p = shared.join(name);
        if p.exists() {
            v.push(p);
        } else {
            eprintln!("NOT RUN: {} missing", p.display());
        }
    }
    v
}

fn bench_models(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_latency");
    group.sample_size(20);
    for path in models() {
        let onnx = std::fs::read(&path).expect("read model");
        let opts = smof_converter::ConvertOptions {
            input_shapes: vec![vec![1, 3, 224, 224]],
            ..Default::default()
        };
        let bytes = smof_converter::convert(&onnx, &opts)
            .expect("convert")
            .bytes;
        let model = smof::Model::from_bytes(&bytes).expect("load");
        let mut session =
            smof::Session::new(&model, &smof::SessionOptions::default()).expect("session");
        let input: Vec<f32> = (0..3 * 224 * 224)
            .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
            .collect();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        group.bench_function(name, |b| b.iter(|| session.run(&[&input]).expect("run")));
    }
    group.finish();
}

criterion_group!(benches, bench_models);
criterion_main!(benches);
