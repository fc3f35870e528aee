//! Opening models: weights used in place from the mapping, f16 widened at load, the three
//! ways to open, one `Model` shared by threads, and a file replaced by rename while mapped.

use smof::{Model, ModelOptions, Session, SessionOptions};
use smof_converter::{convert, ConvertOptions};
use std::path::PathBuf;

fn bundled_onnx() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2_imagenet_backbone.onnx"
    ))
    .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smof-open-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn input() -> Vec<f32> {
    (0..3 * 224 * 224)
        .map(|i| ((i * 31) % 199) as f32 / 99.0 - 1.0)
        .collect()
}

fn run(model: &Model) -> Vec<f32> {
    let mut s = Session::new(model, &SessionOptions::default()).unwrap();
    s.run(&[&input()]).unwrap();
    s.output(0).to_vec()
}

#[test]
fn mmap_uses_packed_f32_weights_in_place() {
    let bytes = convert(&bundled_onnx(), &ConvertOptions::default())
        .unwrap()
        .bytes;
    let path = tmp("inplace.smof");
    std::fs::write(&path, &bytes).unwrap();
    let model = Model::open(&path).unwrap();
    let g = model.graph();
    assert!(!g.weights.is_empty());
    for id in 0..g.weights.len() as u32 {
        assert!(
            model.weight_in_place(id),
            "weight {} was copied at load",
            g.weights[id as usize].name
        );
    }
    // The same bytes through from_bytes and open_copied give the same outputs.
    let a = run(&model);
    let b = run(&Model::from_bytes(&bytes).unwrap());
    let c = run(&Model::open_copied(&path, &ModelOptions::default()).unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

/// The f16 file is about half the size, and its weights are widened at load (so not used in
/// place). Its accuracy against tract is checked in `models.rs`, at the calibrated f16 bound.
#[test]
fn fp16_file_is_half_the_size_and_widened_at_load() {
    let onnx = bundled_onnx();
    let f32_bytes = convert(&onnx, &ConvertOptions::default()).unwrap().bytes;
    let f16_bytes = convert(
        &onnx,
        &ConvertOptions {
            fp16: true,
            ..Default::default()
        },
    )
    .unwrap()
    .bytes;
    assert!(
        (f16_bytes.len() as f64) < 0.6 * f32_bytes.len() as f64,
        "f16 file {} vs f32 {}",
        f16_bytes.len(),
        f32_bytes.len()
    );
    let model = Model::from_bytes(&f16_bytes).unwrap();
    let g = model.graph();
    let f16_weights: Vec<u32> = (0..g.weights.len() as u32)
        .filter(|&i| g.weights[i as usize].dtype == smof::graph::DType::F16)
        .collect();
    assert!(!f16_weights.is_empty());
    for id in f16_weights {
        assert!(!model.weight_in_place(id));
        let w = model.weight(id);
        assert!(w.iter().all(|v| v.is_finite()));
        // Converted weights are 64-byte aligned like the file's, so that full-vector loads
        // never straddle cache lines.
        assert_eq!(
            w.as_ptr() as usize % 64,
            0,
            "weight {id} not 64-byte aligned"
        );
    }
    assert!(run(&model).iter().all(|v| v.is_finite()));
}

/// One `Model` (mapped from a file) shared by `THREADS` threads, each with its own
/// `Session`, released together by a barrier and running `RUNS` different inputs: every output
/// is bit-identical to the single-threaded result for the same input.
#[test]
fn one_model_many_threads() {
    const THREADS: usize = 4;
    const RUNS: usize = 3;
    let bytes = convert(&bundled_onnx(), &ConvertOptions::default())
        .unwrap()
        .bytes;
    let path = tmp("threads.smof");
    std::fs::write(&path, &bytes).unwrap();
    let model = Model::open(&path).unwrap();
    let input_of = |t: usize, r: usize| -> Vec<f32> {
        let seed = t * RUNS + r;
        (0..3 * 224 * 224)
            .map(|i| (((i + 1) * (seed * 2 + 31)) % 211) as f32 / 105.0 - 1.0)
            .collect()
    };
    let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
    // Single-threaded results, one session per input as the threads will have.
    let want: Vec<Vec<Vec<u32>>> = (0..THREADS)
        .map(|t| {
            let mut s = Session::new(&model, &SessionOptions::default()).unwrap();
            (0..RUNS)
                .map(|r| {
                    s.run(&[&input_of(t, r)]).unwrap();
                    bits(s.output(0))
                })
                .collect()
        })
        .collect();
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (model, barrier) = (&model, &barrier);
                scope.spawn(move || {
                    let inputs: Vec<Vec<f32>> = (0..RUNS).map(|r| input_of(t, r)).collect();
                    let mut s = Session::new(model, &SessionOptions::default()).unwrap();
                    barrier.wait();
                    inputs
                        .iter()
                        .map(|x| {
                            s.run(&[x]).unwrap();
                            bits(s.output(0))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            for r in 0..RUNS {
                assert!(got[r] == want[t][r], "thread {t} run {r} differs");
            }
        }
    });
    // Different inputs really give different outputs, so the comparison above means something.
    assert_ne!(want[0][0], want[1][0]);
}

#[test]
fn replacing_the_file_by_rename_leaves_a_live_model_intact() {
    let bytes = convert(&bundled_onnx(), &ConvertOptions::default())
        .unwrap()
        .bytes;
    let path = tmp("live.smof");
    std::fs::write(&path, &bytes).unwrap();
    let model = Model::open(&path).unwrap();
    let before = run(&model);
    let next = tmp("live.smof.new");
    std::fs::write(&next, b"not a model any more").unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert_eq!(run(&model), before);
    assert!(Model::open(&path).is_err());
}

/// A session can plan for another input size than the one the model was converted with; the
/// result equals converting at that size. Shapes the layers cannot take are clear errors.
#[test]
fn session_input_shape_option() {
    let onnx = bundled_onnx();
    let at_224 =
        Model::from_bytes(&convert(&onnx, &ConvertOptions::default()).unwrap().bytes).unwrap();
    let at_160 = Model::from_bytes(
        &convert(
            &onnx,
            &ConvertOptions {
                input_shapes: vec![vec![1, 3, 160, 160]],
                ..Default::default()
            },
        )
        .unwrap()
        .bytes,
    )
    .unwrap();
    let x: Vec<f32> = (0..3 * 160 * 160)
        .map(|i| ((i * 17) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let opts = SessionOptions {
        input_shapes: vec![vec![1, 3, 160, 160]],
        ..Default::default()
    };
    let mut reshaped = Session::new(&at_224, &opts).unwrap();
    assert_eq!(reshaped.input_dims(0), &[1, 3, 160, 160]);
    assert_eq!(reshaped.output_dims(0), &[1, 1280]);
    reshaped.run(&[&x]).unwrap();
    let mut direct = Session::new(&at_160, &SessionOptions::default()).unwrap();
    direct.run(&[&x]).unwrap();
    assert_eq!(reshaped.output(0), direct.output(0));
    // The session's graph carries the shapes it planned for: those of the model converted at
    // that size; a session without the option has the model's own graph.
    let shapes = |g: &smof::graph::Graph| -> Vec<_> { g.tensors.iter().map(|t| t.shape).collect() };
    assert_eq!(shapes(reshaped.graph()), shapes(at_160.graph()));
    assert_ne!(shapes(reshaped.graph()), shapes(at_224.graph()));
    assert!(std::ptr::eq(
        Session::new(&at_224, &SessionOptions::default())
            .unwrap()
            .graph(),
        at_224.graph()
    ));

    for bad in [vec![1, 4, 160, 160], vec![1, 3, 160], vec![0, 3, 160, 160]] {
        let opts = SessionOptions {
            input_shapes: vec![bad.clone()],
            ..Default::default()
        };
        let err = Session::new(&at_224, &opts).unwrap_err().to_string();
        assert!(!err.is_empty(), "{bad:?}");
    }
    let err = Session::new(
        &at_224,
        &SessionOptions {
            input_shapes: vec![vec![1, 4, 160, 160]],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("in_c 3 but input has 4 channels"), "{err}");
}
