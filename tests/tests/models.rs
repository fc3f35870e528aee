//! Whole models: the four shared CNNs and the bundled MobileNetV2 backbone, converted with
//! f32 and with f16 weights, run on every kernel table and compared with tract-onnx.
//!
//! The shared models live outside the repository (`../shared/models` from the workspace
//! root, or `$SMOF_SHARED_MODELS`). When that directory is missing the tests print
//! `NOT RUN: <path> missing` to stderr and return, except under CI (`$CI` set), where a
//! missing directory is a failure.

use smof_tests::{
    check_with_reference_tol, round_weights_to_f16, tract_run_shaped, Cases, F16_MODEL_FACTOR,
    F32_REL,
};
use std::path::{Path, PathBuf};

const INPUT_SHAPE: [usize; 4] = [1, 3, 224, 224];

/// The shared model directory.
fn shared_dir() -> PathBuf {
    match std::env::var_os("SMOF_SHARED_MODELS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/models")),
    }
}

/// A deterministic image-like input in [-1, 1]: a smooth per-channel pattern plus
/// pseudo-random noise, so that activations look like a normalised photo rather than
/// white noise (white noise saturates little and exercises fewer paths).
fn image_input() -> Vec<f32> {
    let [_, c, h, w] = INPUT_SHAPE;
    let noise = smof_tests::pseudo_random(2024, c * h * w);
    let mut v = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let fy = y as f32 / h as f32;
                let fx = x as f32 / w as f32;
                let smooth = (6.0 * fx + 2.0 * ch as f32).sin() * (4.0 * fy + 1.0).cos();
                let n = noise[(ch * h + y) * w + x];
                v.push((0.7 * smooth + 0.3 * n).clamp(-1.0, 1.0));
            }
        }
    }
    v
}

/// Runs tract on the model (and on a copy with f16-rounded weights, to calibrate the f16
/// bound, see [`F16_MODEL_FACTOR`]), then SMOF on every kernel table with f32 weights at
/// [`F32_REL`] and with f16 weights at the calibrated bound; reports every failing variant.
fn check_model(path: &Path) {
    let onnx =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let inputs = [(INPUT_SHAPE.to_vec(), image_input())];
    let want = tract_run_shaped(&onnx, &inputs);
    let want16 = tract_run_shaped(&round_weights_to_f16(&onnx), &inputs);
    // Relative error (to max|ref|) that f16 weights cost in tract itself, worst output.
    let f16_cost = want
        .iter()
        .zip(&want16)
        .map(|((_, a), (_, b))| {
            let max_ref = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            err / max_ref
        })
        .fold(0f32, f32::max);
    let f16_rel = F16_MODEL_FACTOR * f16_cost + F32_REL;
    eprintln!(
        "{name}: f16 weights cost {f16_cost:.3e} of max|ref| in tract; f16 bound {f16_rel:.3e}"
    );
    let mut cases = Cases::new();
    for (fp16, rel) in [(false, F32_REL), (true, f16_rel)] {
        let label = format!("{name} {}", if fp16 { "f16" } else { "f32" });
        cases.run(&label, || {
            check_with_reference_tol(&label, &onnx, &inputs, &want, fp16, rel)
        });
    }
    cases.finish();
}

/// [`check_model`] on a shared model, or the documented NOT RUN line when the shared
/// directory is missing (a failure under CI).
fn check_shared(file: &str) {
    let dir = shared_dir();
    if !dir.is_dir() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "shared model directory {} missing (CI is set, so this is a failure)",
                dir.display()
            );
        }
        eprintln!("NOT RUN: {} missing", dir.display());
        return;
    }
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} missing although {} exists",
        path.display(),
        dir.display()
    );
    check_model(&path);
}

#[test]
fn resnet18() {
    check_shared("resnet18.onnx");
}

#[test]
fn mobilenet_v2() {
    check_shared("mobilenet_v2.onnx");
}

#[test]
fn squeezenet1_1() {
    check_shared("squeezenet1_1.onnx");
}

#[test]
fn mobilenet_v2_imagenet_backbone_shared() {
    check_shared("mobilenet_v2_imagenet_backbone.onnx");
}

/// The backbone bundled in the repository is always present: tested unconditionally.
#[test]
fn bundled_mobilenet_v2_imagenet_backbone() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2_imagenet_backbone.onnx"
    ));
    check_model(path);
}
