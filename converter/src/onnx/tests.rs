//! End-to-end tests of the import: ONNX models built in code, converted, run by the SMOF
//! runtime and compared with the IR reference evaluator; and every import error.

use super::builder::*;
use crate::error::Error;
use crate::ir::eval::eval;
use crate::{convert, convert_to_graph, ConvertOptions};
use smof::graph::{Activation, Op as ROp};
use smof::{Model, Session, SessionOptions};

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn opts() -> ConvertOptions {
    ConvertOptions::default()
}

/// Converts, runs with SMOF and with the reference evaluator on the imported IR; compares
/// every output. Returns the runtime graph for structural checks.
fn check(b: &ModelBuilder, o: &ConvertOptions, tol: f32) -> smof::graph::Graph {
    let bytes = b.bytes();
    let imported = super::import(&bytes, &o.input_shapes).expect("import");
    let inputs: Vec<Vec<f32>> = imported
        .graph
        .inputs
        .iter()
        .enumerate()
        .map(|(k, io)| rand_vec(io.dims.iter().product(), 7 + k as u64))
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let want = eval(&imported.graph, &refs);
    let conv = convert(&bytes, o).expect("convert");
    let model = Model::from_bytes(&conv.bytes).expect("load");
    let mut s = Session::new(&model, &SessionOptions::default()).expect("session");
    s.run(&refs).expect("run");
    for (k, w) in want.iter().enumerate() {
        let got = s.output(k);
        assert_eq!(got.len(), w.len(), "output {k} length");
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let err = got
            .iter()
            .zip(w)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= tol * max,
            "output {k}: max error {err} vs max {max}\n got {:?}\nwant {:?}",
            &got[..got.len().min(8)],
            &w[..w.len().min(8)]
        );
    }
    conv.graph
}

fn names(g: &smof::graph::Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

fn conv_w(b: &mut ModelBuilder, name: &str, dims: &[i64], seed: u64) {
    let n = dims.iter().product::<i64>() as usize;
    b.init(name, dims, &rand_vec(n, seed));
}

#[test]
fn conv_bn_relu_folds_into_one_conv() {
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 3, 9, 9]).output("y");
    conv_w(&mut b, "w", &[4, 3, 3, 3], 1);
    conv_w(&mut b, "bias", &[4], 2);
    b.init("g", &[4], &[1.0, 2.0, 0.5, -1.0]);
    b.init("beta", &[4], &[0.1, 0.2, 0.3, 0.4]);
    b.init("mean", &[4], &[0.0, 0.5, -0.5, 1.0]);
    b.init("var", &[4], &[1.0, 0.25, 4.0, 0.01]);
    b.node(
        "Conv",
        &["x", "w", "bias"],
        &["c"],
        vec![
            attr_ints("pads", &[1, 1, 1, 1]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    b.node(
        "BatchNormalization",
        &["c", "g", "beta", "mean", "var"],
        &["bn"],
        vec![attr_f("epsilon", 1e-3)],
    );
    b.node("Relu", &["bn"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["Conv"]);
    let ROp::Conv(c) = g.nodes[0].op else {
        panic!()
    };
    assert_eq!(c.act, Activation::Relu);
}

#[test]
fn batchnorm_without_conv_is_channel_affine() {
    let mut b = ModelBuilder::new(15);
    b.input("x", &[2, 3, 4, 4]).output("y");
    b.init("g", &[3], &[1.0, 2.0, 0.5]);
    b.init("beta", &[3], &[0.1, 0.2, 0.3]);
    b.init("mean", &[3], &[0.0, 0.5, -0.5]);
    b.init("var", &[3], &[1.0, 0.25, 4.0]);
    b.node(
        "BatchNormalization",
        &["x", "g", "beta", "mean", "var"],
        &["bn"],
        vec![],
    );
    b.node("LeakyRelu", &["bn"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["ChannelAffine"]);
    let ROp::ChannelAffine { act, .. } = g.nodes[0].op else {
        panic!()
    };
    assert_eq!(act, Activation::LeakyRelu { alpha: 0.01 });
}

#[test]
fn mobilenet_block_depthwise_clip_residual() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 8, 10, 10]).output("y");
    conv_w(&mut b, "w1", &[16, 8, 1, 1], 1);
    conv_w(&mut b, "w2", &[16, 1, 3, 3], 2);
    conv_w(&mut b, "b2", &[16], 3);
    conv_w(&mut b, "w3", &[8, 16, 1, 1], 4);
    b.init("lo", &[], &[0.0]).init("hi", &[], &[6.0]);
    b.node("Conv", &["x", "w1"], &["c1"], vec![]);
    b.node("Clip", &["c1", "lo", "hi"], &["r1"], vec![]);
    b.node(
        "Conv",
        &["r1", "w2", "b2"],
        &["c2"],
        vec![attr_i("group", 16), attr_ints("pads", &[1, 1, 1, 1])],
    );
    b.node("Clip", &["c2", "lo", "hi"], &["r2"], vec![]);
    b.node("Conv", &["r2", "w3"], &["c3"], vec![]);
    b.node("Identity", &["x"], &["xi"], vec![]);
    b.node("Add", &["xi", "c3"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["Conv", "ConvDw", "Conv"]);
    assert_eq!(g.nodes[2].inputs.len(), 2, "residual fused");
    let ROp::Conv(c) = g.nodes[1].op else {
        panic!()
    };
    assert_eq!(c.act, Activation::Clip { min: 0.0, max: 6.0 });
}

#[test]
fn resnet_block_with_downsample() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 4, 8, 8]).output("y");
    conv_w(&mut b, "w1", &[8, 4, 3, 3], 1);
    conv_w(&mut b, "w2", &[8, 8, 3, 3], 2);
    conv_w(&mut b, "wd", &[8, 4, 1, 1], 3);
    let p = || vec![attr_ints("pads", &[1, 1, 1, 1])];
    b.node(
        "Conv",
        &["x", "w1"],
        &["c1"],
        vec![
            attr_ints("pads", &[1, 1, 1, 1]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    b.node("Relu", &["c1"], &["r1"], vec![]);
    b.node("Conv", &["r1", "w2"], &["c2"], p());
    b.node(
        "Conv",
        &["x", "wd"],
        &["d"],
        vec![attr_ints("strides", &[2, 2])],
    );
    b.node("Add", &["c2", "d"], &["s"], vec![]);
    b.node("Relu", &["s"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["Conv", "Conv", "Conv"]);
    let ROp::Conv(c) = g.nodes[2].op else {
        panic!()
    };
    assert_eq!((g.nodes[2].inputs.len(), c.act), (2, Activation::Relu));
}

#[test]
fn flatten_gemm_permutes_weights() {
    for trans_b in [0, 1] {
        let mut b = ModelBuilder::new(13);
        b.input("x", &[2, 3, 2, 3]).output("y");
        let wdims: &[i64] = if trans_b == 1 { &[5, 18] } else { &[18, 5] };
        conv_w(&mut b, "w", wdims, 9);
        conv_w(&mut b, "c", &[1, 5], 10);
        b.node("Flatten", &["x"], &["f"], vec![]);
        b.node(
            "Gemm",
            &["f", "w", "c"],
            &["y"],
            vec![
                attr_i("transB", trans_b),
                attr_f("alpha", 0.5),
                attr_f("beta", 2.0),
            ],
        );
        let g = check(&b, &opts(), 1e-5);
        assert_eq!(names(&g), vec!["Fc"], "transB={trans_b}");
    }
}

#[test]
fn pytorch_view_chain_and_matmul_add() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 4, 3, 3]).output("y");
    conv_w(&mut b, "w", &[36, 6], 3);
    conv_w(&mut b, "bias", &[6], 4);
    b.init_i64("zero", &[], &[0])
        .init_i64("ax0", &[1], &[0])
        .init_i64("minus1", &[1], &[-1]);
    b.node("Shape", &["x"], &["sh"], vec![]);
    b.node("Gather", &["sh", "zero"], &["n"], vec![attr_i("axis", 0)]);
    b.node("Unsqueeze", &["n", "ax0"], &["n1"], vec![]);
    b.node(
        "Concat",
        &["n1", "minus1"],
        &["shape"],
        vec![attr_i("axis", 0)],
    );
    b.node("Reshape", &["x", "shape"], &["flat"], vec![]);
    b.node("MatMul", &["flat", "w"], &["m"], vec![]);
    b.node("Add", &["m", "bias"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["Fc"]);
    let ROp::Fc(f) = g.nodes[0].op else { panic!() };
    assert!(f.bias.is_some());
}

#[test]
fn pools_and_padding_modes() {
    let mut b = ModelBuilder::new(11);
    b.input("x", &[1, 3, 11, 11]).output("y").output("z");
    conv_w(&mut b, "w", &[4, 3, 3, 3], 5);
    b.node(
        "Conv",
        &["x", "w"],
        &["c"],
        vec![
            attr_s("auto_pad", "SAME_UPPER"),
            attr_ints("strides", &[2, 2]),
        ],
    );
    b.node(
        "MaxPool",
        &["c"],
        &["m"],
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("strides", &[2, 2]),
            attr_i("ceil_mode", 1),
        ],
    );
    b.node(
        "AveragePool",
        &["m"],
        &["y"],
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("pads", &[1, 0, 1, 1]),
            attr_i("count_include_pad", 1),
        ],
    );
    conv_w(&mut b, "w2", &[4, 3, 3, 3], 6);
    b.node(
        "Conv",
        &["x", "w2"],
        &["c2"],
        vec![
            attr_ints("pads", &[0, 1, 2, 1]),
            attr_ints("dilations", &[2, 2]),
            attr_ints("strides", &[1, 2]),
        ],
    );
    b.node(
        "AveragePool",
        &["c2"],
        &["a2"],
        vec![
            attr_ints("kernel_shape", &[3, 2]),
            attr_ints("strides", &[2, 2]),
            attr_i("ceil_mode", 1),
            attr_ints("pads", &[1, 1, 1, 1]),
        ],
    );
    b.node("GlobalMaxPool", &["a2"], &["z"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert!(g
        .nodes
        .iter()
        .any(|n| matches!(n.op, ROp::Pool(p) if p.ceil_pads != [0, 0])));
}

#[test]
fn squeeze_excite_and_activations() {
    let mut b = ModelBuilder::new(14);
    b.input("x", &[1, 8, 5, 5]).output("y");
    conv_w(&mut b, "w1", &[2, 8, 1, 1], 1);
    conv_w(&mut b, "w2", &[8, 2, 1, 1], 2);
    conv_w(&mut b, "w3", &[8, 8, 1, 1], 3);
    b.node("GlobalAveragePool", &["x"], &["p"], vec![]);
    b.node("Conv", &["p", "w1"], &["s1"], vec![]);
    b.node("Relu", &["s1"], &["s2"], vec![]);
    b.node("Conv", &["s2", "w2"], &["s3"], vec![]);
    b.node("HardSigmoid", &["s3"], &["s4"], vec![]);
    b.node("Mul", &["s4", "x"], &["se"], vec![]);
    b.node("Conv", &["se", "w3"], &["c"], vec![]);
    b.node("Sigmoid", &["c"], &["sg"], vec![]);
    b.node("Mul", &["c", "sg"], &["silu"], vec![]);
    b.node("HardSwish", &["silu"], &["h"], vec![]);
    b.node("Tanh", &["h"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(
        names(&g),
        vec!["GlobalAvgPool", "Conv", "Conv", "Mul", "Conv", "Act", "Act"]
    );
    let ROp::Conv(c) = g.nodes[2].op else {
        panic!()
    };
    assert_eq!(
        c.act,
        Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5
        }
    );
    let ROp::Conv(c) = g.nodes[4].op else {
        panic!()
    };
    assert_eq!(c.act, Activation::Silu);
}

#[test]
fn concat_softmax_and_constant_affines() {
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 3, 4, 4]).output("y");
    b.init("m", &[1, 3, 1, 1], &[0.5, 2.0, -1.0]);
    b.init("a", &[3, 1, 1], &[1.0, -2.0, 0.25]);
    b.init("s", &[], &[0.5]);
    b.node("Mul", &["x", "m"], &["xm"], vec![]);
    b.node("Sub", &["xm", "a"], &["xs"], vec![]);
    b.node("Div", &["xs", "s"], &["xd"], vec![]);
    b.node("Sub", &["a", "x"], &["xr"], vec![]);
    b.node(
        "Concat",
        &["xd", "xr", "x"],
        &["cat"],
        vec![attr_i("axis", 1)],
    );
    b.node("Softmax", &["cat"], &["y"], vec![attr_i("axis", 1)]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(
        names(&g).iter().filter(|&&n| n == "ChannelAffine").count(),
        4
    );
}

#[test]
fn two_d_classifier_head_opset11_and_flatten_output() {
    let mut b = ModelBuilder::new(11);
    b.input("x", &[3, 10]).output("y");
    conv_w(&mut b, "w1", &[16, 10], 1);
    conv_w(&mut b, "b1", &[16], 2);
    conv_w(&mut b, "w2", &[4, 16], 3);
    b.node(
        "Gemm",
        &["x", "w1", "b1"],
        &["h"],
        vec![attr_i("transB", 1)],
    );
    b.node(
        "Clip",
        &["h"],
        &["r"],
        vec![attr_f("min", -0.5), attr_f("max", 0.5)],
    );
    b.node("Gemm", &["r", "w2"], &["l"], vec![attr_i("transB", 1)]);
    b.node("Softmax", &["l"], &["y"], vec![]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["Fc", "Fc", "Softmax"]);
    assert_eq!(g.outputs[0].dims, vec![3, 4]);

    let mut b = ModelBuilder::new(17);
    b.input("x", &[2, 3, 2, 2]).output("y").output("z");
    b.node("Flatten", &["x"], &["y"], vec![]);
    b.node("GlobalAveragePool", &["x"], &["p"], vec![]);
    b.node("Flatten", &["p"], &["z"], vec![]);
    let g = check(&b, &opts(), 1e-6);
    assert_eq!(names(&g), vec!["Flatten", "GlobalAvgPool"]);
    assert_eq!(g.outputs[1].dims, vec![2, 3]);
}

#[test]
fn fp16_weights() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 4, 6, 6]).output("y");
    conv_w(&mut b, "w", &[8, 4, 3, 3], 1);
    conv_w(&mut b, "bias", &[8], 2);
    conv_w(&mut b, "fw", &[5, 8 * 36], 3);
    b.node(
        "Conv",
        &["x", "w", "bias"],
        &["c"],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
    b.node("Flatten", &["c"], &["f"], vec![]);
    b.node("Gemm", &["f", "fw"], &["y"], vec![attr_i("transB", 1)]);
    let o = ConvertOptions {
        fp16: true,
        ..opts()
    };
    let g = check(&b, &o, 2e-2);
    assert_eq!(
        g.weights
            .iter()
            .filter(|w| w.dtype == smof::graph::DType::F16)
            .count(),
        2
    );
    assert_eq!(
        g.weights
            .iter()
            .filter(|w| w.dtype == smof::graph::DType::F32)
            .count(),
        1
    );
}

#[test]
fn symbolic_batch_needs_a_shape() {
    let mut b = ModelBuilder::new(17);
    b.input("images", &[-1, 3, 4, 4]).output("y");
    b.node("Relu", &["images"], &["y"], vec![]);
    let e = convert_to_graph(&b.bytes(), &opts()).unwrap_err();
    match &e {
        Error::Shape { tensor, what } => {
            assert_eq!(tensor, "images");
            assert!(what.contains("symbolic"), "{what}");
        }
        other => panic!("{other}"),
    }
    let o = ConvertOptions {
        input_shapes: vec![vec![2, 3, 4, 4]],
        ..opts()
    };
    let g = check(&b, &o, 1e-6);
    assert_eq!(g.inputs[0].dims, vec![2, 3, 4, 4]);
    let o = ConvertOptions {
        input_shapes: vec![vec![2, 3, 4, 4], vec![1, 2]],
        ..opts()
    };
    assert!(matches!(
        convert_to_graph(&b.bytes(), &o),
        Err(Error::Options(_))
    ));
}

#[test]
fn every_unsupported_node_is_listed() {
    let mut b = ModelBuilder::new(17);
    b.extra_opsets.push(("com.microsoft".into(), 1));
    b.input("x", &[1, 3, 8, 8]).output("y");
    b.init("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    b.node(
        "Resize",
        &["x", "", "scales"],
        &["r"],
        vec![attr_s("mode", "cubic")],
    );
    b.node("Relu", &["r"], &["a"], vec![]);
    b.node(
        "MaxPool",
        &["a"],
        &["m"],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_i("storage_order", 1),
        ],
    );
    b.node("Elu", &["m"], &["e"], vec![]);
    b.graph.node.push(super::proto::NodeProto {
        name: Some("fused".into()),
        op_type: Some("FusedConv".into()),
        domain: Some("com.microsoft".into()),
        input: vec!["e".into()],
        output: vec!["f".into()],
        ..Default::default()
    });
    b.node("Softmax", &["f"], &["y"], vec![]);
    let e = convert_to_graph(&b.bytes(), &opts()).unwrap_err();
    let Error::Unsupported { nodes } = &e else {
        panic!("{e}")
    };
    let listed: Vec<(&str, &str, i64)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.op_type.as_str(), n.opset))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("r", "Resize", 17),
            ("m", "MaxPool", 17),
            ("e", "Elu", 17),
            ("fused", "FusedConv", 1)
        ]
    );
    let text = e.to_string();
    assert!(text.contains("4 unsupported nodes"), "{text}");
    assert!(text.contains("storage_order"), "{text}");
    assert!(text.contains("com.microsoft"), "{text}");

    // Shape-dependent reasons are collected too.
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 3, 8, 8]).output("y").output("z");
    b.node("Softmax", &["x"], &["y"], vec![attr_i("axis", 0)]);
    b.node("Concat", &["x", "x"], &["z"], vec![attr_i("axis", 0)]);
    let Err(Error::Unsupported { nodes }) = convert_to_graph(&b.bytes(), &opts()) else {
        panic!()
    };
    assert_eq!(nodes.len(), 2);
    assert!(nodes[0].reason.contains("axis=0"), "{}", nodes[0].reason);
}

#[test]
fn opset_out_of_range() {
    for (v, ok) in [
        (10, false),
        (11, true),
        (21, true),
        (22, true),
        (28, true),
        (29, false),
    ] {
        let mut b = ModelBuilder::new(v);
        b.input("x", &[1, 3]).output("y");
        b.node("Relu", &["x"], &["y"], vec![]);
        let r = convert_to_graph(&b.bytes(), &opts());
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(Error::Opset { version, .. }), false) => assert_eq!(version, v),
            (r, _) => panic!("opset {v}: {:?}", r.err()),
        }
    }
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3]).output("y");
    b.node("Relu", &["x"], &["y"], vec![]);
    let mut m = b.build();
    m.opset_import.clear();
    m.ir_version = Some(8);
    let e = convert_to_graph(&prost::Message::encode_to_vec(&m), &opts()).unwrap_err();
    assert!(matches!(e, Error::Opset { .. }), "{e}");
}

#[test]
fn not_onnx_and_truncated_bytes_never_panic() {
    for bytes in [
        &b""[..],
        b"hello, this is not a model",
        b"\x08\x07\x12\x04abc",
        &[0xff; 64],
    ] {
        let e = convert_to_graph(bytes, &opts()).unwrap_err();
        assert!(matches!(e, Error::NotOnnx { .. }), "{e}");
    }
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3, 8, 8]).output("y");
    conv_w(&mut b, "w", &[4, 3, 3, 3], 1);
    b.node("Conv", &["x", "w"], &["c"], vec![]);
    b.node("Relu", &["c"], &["y"], vec![]);
    let bytes = b.bytes();
    let e = convert_to_graph(&bytes[..bytes.len() / 2], &opts()).unwrap_err();
    assert!(matches!(e, Error::NotOnnx { .. }), "{e}");
    for cut in 0..bytes.len() {
        let _ = convert_to_graph(&bytes[..cut], &opts());
    }
    // Single-byte corruptions: any result but a panic.
    for i in (0..bytes.len()).step_by(3) {
        let mut c = bytes.clone();
        c[i] ^= 0x5a;
        let _ = convert_to_graph(&c, &opts());
    }
}

#[test]
fn external_data_and_bad_initializers() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3, 8, 8]).output("y");
    b.node("Conv", &["x", "w"], &["y"], vec![]);
    b.graph.initializer.push(super::proto::TensorProto {
        name: Some("w".into()),
        dims: vec![4, 3, 3, 3],
        data_type: Some(1),
        data_location: Some(1),
        ..Default::default()
    });
    let e = convert_to_graph(&b.bytes(), &opts()).unwrap_err();
    assert!(e.to_string().contains("external"), "{e}");
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3, 8, 8]).output("y");
    b.init("w", &[4, 3, 3, 3], &[0.0; 10]);
    b.node("Conv", &["x", "w"], &["y"], vec![]);
    assert!(matches!(
        convert_to_graph(&b.bytes(), &opts()),
        Err(Error::Model(_))
    ));
}

#[test]
fn dangling_inputs_and_constant_outputs() {
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3]).output("y");
    b.node("Add", &["x", "ghost"], &["y"], vec![]);
    assert!(matches!(
        convert_to_graph(&b.bytes(), &opts()),
        Err(Error::Model(_))
    ));
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 3]).output("y");
    b.init("c", &[1], &[1.0]);
    b.node("Identity", &["c"], &["y"], vec![]);
    assert!(matches!(
        convert_to_graph(&b.bytes(), &opts()),
        Err(Error::Model(_))
    ));
}

#[test]
fn squeeze_unsqueeze_aliases_and_constants() {
    let mut b = ModelBuilder::new(13);
    b.input("x", &[2, 4, 3, 3]).output("y").output("p");
    conv_w(&mut b, "w", &[4, 4], 1);
    b.init_i64("hw", &[2], &[2, 3]);
    b.node("GlobalAveragePool", &["x"], &["g"], vec![]);
    b.node("Squeeze", &["g", "hw"], &["s"], vec![]);
    b.node(
        "Constant",
        &[],
        &["bias"],
        vec![attr_t("value", tensor_f32("", &[4], &[0.1, 0.2, 0.3, 0.4]))],
    );
    b.node("Gemm", &["s", "w", "bias"], &["l"], vec![]);
    b.node("Dropout", &["l"], &["d"], vec![]);
    b.node("Sigmoid", &["d"], &["sg"], vec![]);
    b.node("Unsqueeze", &["sg", "hw"], &["u"], vec![]);
    b.node("Mul", &["x", "u"], &["y"], vec![]);
    b.node("Softmax", &["g"], &["p"], vec![attr_i("axis", 1)]);
    let g = check(&b, &opts(), 1e-5);
    assert_eq!(names(&g), vec!["GlobalAvgPool", "Fc", "Mul", "Softmax"]);
    assert_eq!(g.outputs[1].dims, vec![2, 4, 1, 1]);

    // Opset 11: Softmax over C*H*W is channel softmax only when H*W == 1.
    let mut b = ModelBuilder::new(11);
    b.input("x", &[1, 5, 1, 1]).output("y");
    b.node("Softmax", &["x"], &["y"], vec![]);
    check(&b, &opts(), 1e-6);
    let mut b = ModelBuilder::new(11);
    b.input("x", &[1, 5, 2, 1]).output("y");
    b.node("Softmax", &["x"], &["y"], vec![]);
    assert!(matches!(
        convert_to_graph(&b.bytes(), &opts()),
        Err(Error::Unsupported { .. })
    ));
}
