//! Bad input: the converter must reject broken or unsupported ONNX with an error (never a
//! panic), and a session must reject a wrong number or size of inputs.

use prost::Message;
use smof::{Error, Session, SessionOptions};
use smof_tests::onnx_proto as proto;
use smof_tests::{
    assert_close, check_against_tract, kernel_choices, random_input, smof_convert, smof_load,
    tract_run, ConvSpec, GemmSpec, OnnxBuilder, Rng, F32_REL,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A small but complete model: conv + BN + relu, maxpool, GAP, flatten, gemm.
fn small_model() -> Vec<u8> {
    let mut b = OnnxBuilder::new(13);
    let x = b.input("x", &[1, 3, 9, 11]);
    let y = b.conv(&x, &ConvSpec::new(3, 5, [3, 3]).same().no_bias());
    let y = b.batchnorm(&y, 5, None);
    let y = b.node("Relu", &[&y], vec![]);
    let y = b.node(
        "MaxPool",
        &[&y],
        vec![
            smof_tests::attr::ints("kernel_shape", &[2, 2]),
            smof_tests::attr::ints("strides", &[2, 2]),
        ],
    );
    let y = b.node("GlobalAveragePool", &[&y], vec![]);
    let y = b.node("Flatten", &[&y], vec![]);
    let y = b.gemm(&y, &GemmSpec::new(5, 4));
    b.output(&y);
    b.build()
}

const SMALL_SHAPE: [usize; 4] = [1, 3, 9, 11];

/// Runs the converter on `bytes`, turning a panic into `Err("PANIC: ...")` so that callers
/// can tell a panic from an error.
fn convert_outcome(bytes: &[u8], shapes: &[Vec<usize>]) -> Result<Result<(), String>, String> {
    let kernels = kernel_choices()[0].1;
    catch_unwind(AssertUnwindSafe(|| {
        smof_convert(bytes, shapes, kernels, false)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Silences the default panic report for panics on the current thread while `f` runs (the
/// truncation loop would otherwise print thousands of them); other threads keep the hook.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let me = std::thread::current().id();
    let prev = std::sync::Arc::new(std::panic::take_hook());
    let prev2 = prev.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            prev2(info);
        }
    }));
    let r = f();
    let _ = std::panic::take_hook();
    let prev = std::sync::Arc::try_unwrap(prev).ok();
    if let Some(prev) = prev {
        std::panic::set_hook(prev);
    }
    r
}

#[test]
fn not_onnx_bytes_are_an_error() {
    let mut rng = Rng::new(99);
    let mut samples: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        (
            "text".into(),
            b"hello, this is not an ONNX model\n".to_vec(),
        ),
        (
            "png header".into(),
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
        ),
        (
            "smof-like magic".into(),
            b"SMOF\x01\x00\x00\x00garbage".to_vec(),
        ),
        ("zeros".into(), vec![0; 1024]),
        ("0xff".into(), vec![0xff; 1024]),
    ];
    for i in 0..8 {
        let n = 16 << i;
        samples.push((
            format!("{n} random bytes"),
            (0..n).map(|_| rng.next_u64() as u8).collect(),
        ));
    }
    let mut bad = Vec::new();
    for (name, bytes) in &samples {
        match convert_outcome(bytes, &[SMALL_SHAPE.to_vec()]) {
            Ok(Err(e)) => eprintln!("{name}: error as expected: {e}"),
            Ok(Ok(())) => bad.push(format!("{name}: converted without error")),
            Err(p) => bad.push(format!("{name}: PANIC {p}")),
        }
    }
    assert!(bad.is_empty(), "not-ONNX inputs:\n  {}", bad.join("\n  "));
}

#[test]
fn truncated_onnx_is_an_error_at_every_length() {
    let full = small_model();
    let original = proto::ModelProto::decode(&full[..]).unwrap();
    let shapes = [SMALL_SHAPE.to_vec()];
    // The complete model must convert, or the loop below proves nothing.
    match convert_outcome(&full, &shapes) {
        Ok(Ok(())) => {}
        other => panic!("the untruncated model does not convert: {other:?}"),
    }
    let mut panics = Vec::new();
    let mut accepted = Vec::new();
    quiet_panics(|| {
        for len in 0..full.len() {
            let cut = &full[..len];
            match convert_outcome(cut, &shapes) {
                Ok(Err(_)) => {}
                Ok(Ok(())) => {
                    // A prefix that is itself a valid model with the whole graph and an
                    // opset import could legitimately convert; with prost's field order
                    // (graph = 7 before opset_import = 8) no proper prefix is one.
                    let legit = proto::ModelProto::decode(cut)
                        .map(|m| m.graph == original.graph && !m.opset_import.is_empty())
                        .unwrap_or(false);
                    if !legit {
                        accepted.push(len);
                    }
                }
                Err(p) => panics.push((len, p)),
            }
        }
    });
    let mut msg = String::new();
    if !panics.is_empty() {
        msg += &format!(
            "{} of {} truncation lengths PANIC (first: {:?})\n",
            panics.len(),
            full.len(),
            &panics[..panics.len().min(5)]
        );
    }
    if !accepted.is_empty() {
        msg += &format!(
            "{} truncation lengths converted without error (of {}): {:?}\n",
            accepted.len(),
            full.len(),
            &accepted[..accepted.len().min(20)]
        );
    }
    assert!(msg.is_empty(), "{msg}");
}

#[test]
fn unsupported_ops_are_listed_in_one_error() {
    let mut b = OnnxBuilder::new(13);
    let x = b.input("x", &[1, 3, 9, 11]);
    let y = b.conv(&x, &ConvSpec::new(3, 5, [3, 3]).same());
    b.node_full("my_cos_node", "Cos", &[&y], &["cos_out"], vec![]);
    b.node_full(
        "my_round_node",
        "Round",
        &["cos_out"],
        &["round_out"],
        vec![],
    );
    b.output("round_out");
    let onnx = b.build();
    // The graph is valid ONNX: tract runs it.
    let _ = tract_run(&onnx, &[random_input(1, &[1, 3, 9, 11])]);
    let err = match convert_outcome(&onnx, &[vec![1, 3, 9, 11]]) {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("a model with Cos and Round converted without error"),
        Err(p) => panic!("converter PANIC on unsupported ops: {p}"),
    };
    eprintln!("error: {err}");
    let missing: Vec<&str> = ["my_cos_node", "Cos", "my_round_node", "Round", "13"]
        .into_iter()
        .filter(|s| !err.contains(s))
        .collect();
    assert!(missing.is_empty(), "the error must name both nodes, both op types and the opset; missing {missing:?} in: {err}");
}

/// Unsupported attribute values of supported ops are reported like unsupported ops: every
/// node at once, each with its name and what is missing.
#[test]
fn unsupported_attribute_values_are_listed_in_one_error() {
    use smof_tests::attr;
    let mut b = OnnxBuilder::new(13);
    let x = b.input("x", &[1, 4, 6, 6]);
    let roi = b.f32s("roi", &[]);
    let scales = b.f32s("scales", &[1.0, 1.0, 2.0, 2.0]);
    b.node_full(
        "cubic_resize",
        "Resize",
        &[&x, &roi, &scales],
        &["r"],
        vec![attr::string("mode", "cubic")],
    );
    let pads = b.i64s("pads", &[0, 0, 1, 1, 0, 0, 1, 1]);
    b.node_full(
        "wrap_pad",
        "Pad",
        &["r", &pads],
        &["p"],
        vec![attr::string("mode", "wrap")],
    );
    let w = b.weight("w", &[4, 2, 3, 3], None);
    b.node_full(
        "shaped_deconv",
        "ConvTranspose",
        &["p", &w],
        &["d"],
        vec![attr::ints("output_shape", &[20, 20])],
    );
    b.output("d");
    let onnx = b.build();
    let err = match convert_outcome(&onnx, &[]) {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("unsupported attribute values converted without error"),
        Err(p) => panic!("converter PANIC on unsupported attributes: {p}"),
    };
    let missing: Vec<&str> = [
        "cubic_resize",
        "mode='cubic'",
        "wrap_pad",
        "wrap",
        "shaped_deconv",
        "output_shape",
    ]
    .into_iter()
    .filter(|s| !err.contains(s))
    .collect();
    assert!(missing.is_empty(), "missing {missing:?} in: {err}");
}

#[test]
fn dynamic_input_dim_without_shape_names_the_tensor() {
    let mut b = OnnxBuilder::new(13);
    let x = b.input_dynamic("images_in", &[None, Some(3), Some(9), Some(11)]);
    let y = b.conv(&x, &ConvSpec::new(3, 5, [3, 3]).same());
    let y = b.node("Relu", &[&y], vec![]);
    b.output(&y);
    let onnx = b.build();
    match convert_outcome(&onnx, &[]) {
        Ok(Err(e)) => assert!(
            e.contains("images_in"),
            "the error must name the input tensor `images_in`: {e}"
        ),
        Ok(Ok(())) => panic!("a dynamic batch dim without an input shape converted without error"),
        Err(p) => panic!("converter PANIC on a dynamic dim: {p}"),
    }
}

#[test]
fn dynamic_input_dim_with_shape_converts() {
    let mut b = OnnxBuilder::new(13);
    let x = b.input_dynamic("images_in", &[None, Some(3), None, None]);
    let y = b.conv(&x, &ConvSpec::new(3, 5, [3, 3]).same());
    let y = b.node("Relu", &[&y], vec![]);
    b.output(&y);
    check_against_tract(
        "dynamic dims fixed by input_shapes",
        &b.build(),
        &[random_input(4, &[2, 3, 9, 11])],
        false,
    );
}

/// A two-input model: `Add(conv(a), b)`.
fn two_input_model() -> Vec<u8> {
    let mut b = OnnxBuilder::new(13);
    let x = b.input("a", &[1, 3, 5, 7]);
    let y = b.input("b", &[1, 4, 5, 7]);
    let c = b.conv(&x, &ConvSpec::new(3, 4, [3, 3]).same());
    let s = b.node("Add", &[&c, &y], vec![]);
    b.output(&s);
    b.build()
}

#[test]
fn session_rejects_wrong_input_count_and_length() {
    let onnx = small_model();
    let (shape, x) = random_input(8, &SMALL_SHAPE);
    let want = tract_run(&onnx, &[(shape.clone(), x.clone())]);
    let n = x.len();
    let longer: Vec<f32> = x.iter().copied().chain([0.5]).collect();
    for (table, kernels) in kernel_choices() {
        let model = smof_load(&onnx, std::slice::from_ref(&shape), kernels, false);
        let mut s = Session::new(&model, &SessionOptions::default()).expect("Session::new");
        let r = s.run(&[]);
        assert!(
            matches!(
                r,
                Err(Error::InputCount {
                    expected: 1,
                    got: 0
                })
            ),
            "[{table}] no input: {r:?}"
        );
        let r = s.run(&[&x, &x]);
        assert!(
            matches!(
                r,
                Err(Error::InputCount {
                    expected: 1,
                    got: 2
                })
            ),
            "[{table}] two inputs: {r:?}"
        );
        for (what, bad) in [
            ("one short", &x[..n - 1]),
            ("empty", &x[..0]),
            ("one long", &longer[..]),
        ] {
            let r = s.run(&[bad]);
            assert!(
                matches!(r, Err(Error::BadInput { index: 0, .. })),
                "[{table}] input {what}: {r:?}"
            );
        }
        // The session is still usable after rejected runs.
        s.run(&[&x]).expect("run after errors");
        assert_close(
            &format!("small model after rejected runs [{table}]"),
            s.output(0),
            &want[0],
            F32_REL,
        );
    }

    let onnx = two_input_model();
    let a = random_input(9, &[1, 3, 5, 7]);
    let b = random_input(10, &[1, 4, 5, 7]);
    for (table, kernels) in kernel_choices() {
        let model = smof_load(&onnx, &[a.0.clone(), b.0.clone()], kernels, false);
        let mut s = Session::new(&model, &SessionOptions::default()).expect("Session::new");
        let r = s.run(&[&a.1]);
        assert!(
            matches!(
                r,
                Err(Error::InputCount {
                    expected: 2,
                    got: 1
                })
            ),
            "[{table}] one of two inputs: {r:?}"
        );
        let r = s.run(&[&a.1, &b.1[1..]]);
        assert!(
            matches!(r, Err(Error::BadInput { index: 1, .. })),
            "[{table}] second input short: {r:?}"
        );
        // Swapped inputs have different lengths (105 vs 140): must be rejected.
        let r = s.run(&[&b.1, &a.1]);
        assert!(
            matches!(r, Err(Error::BadInput { index: 0, .. })),
            "[{table}] swapped inputs: {r:?}"
        );
    }
}

/// A path that is not a `.smof` file: each error names the path and what is wrong with it,
/// once (the I/O error is part of the message, not repeated as its source).
#[test]
fn opening_a_directory_a_device_or_a_missing_file_is_a_clear_error() {
    let dir = std::env::temp_dir();
    let missing = dir.join(format!("smof-no-such-file-{}.smof", std::process::id()));
    let cases: [(&std::path::Path, &str); 3] = [
        (&dir, "a directory"),
        (std::path::Path::new("/dev/null"), "not a regular file"),
        (&missing, "No such file"),
    ];
    for (path, want) in cases {
        let e = match smof::Model::open(path) {
            Ok(_) => panic!("{} opened as a model", path.display()),
            Err(e) => e,
        };
        assert!(matches!(e, Error::Io { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains(want),
            "{text}"
        );
        assert!(std::error::Error::source(&e).is_none(), "{text}");
    }
    // Reading instead of mapping: the directory is still refused with a message.
    let e = smof::Model::open_copied(&dir, &smof::ModelOptions::default()).err();
    assert!(e.is_some_and(|e| e.to_string().contains(&dir.display().to_string())));
}

/// Channels-last views read in ways ONNX does not allow (a view as an extra input of a
/// Transpose, of a LayerNormalization's scale, of a MatMul's second input): an error or a
/// model, never a panic.
#[test]
fn channels_last_views_in_odd_places_never_panic() {
    type Body = fn(&mut OnnxBuilder, &str, &str) -> String;
    let bodies: [Body; 4] = [
        |b, x, p| {
            b.node(
                "Transpose",
                &[x, p],
                vec![smof_tests::attr::ints("perm", &[0, 3, 1, 2])],
            )
        },
        |b, _, p| b.node("LayerNormalization", &[p, p], vec![]),
        |b, x, p| {
            let q = b.node(
                "Transpose",
                &[x],
                vec![smof_tests::attr::ints("perm", &[0, 2, 3, 1])],
            );
            b.node("MatMul", &[&q, p], vec![])
        },
        |b, _, p| b.node("Add", &[p, p, p], vec![]),
    ];
    for (k, body) in bodies.iter().enumerate() {
        let mut b = OnnxBuilder::new(17);
        let x = b.input("x", &[1, 4, 4, 4]);
        let p = b.node(
            "Transpose",
            &[&x],
            vec![smof_tests::attr::ints("perm", &[0, 2, 3, 1])],
        );
        let y = body(&mut b, &x, &p);
        b.output(&y);
        let outcome = quiet_panics(|| convert_outcome(&b.build(), &[]));
        assert!(outcome.is_ok(), "case {k} panicked: {outcome:?}");
    }
}
