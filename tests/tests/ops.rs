//! Operator conformance: every operator and awkward shape the converter accepts, built in
//! code with `OnnxBuilder`, converted, run with SMOF on every kernel table this CPU supports
//! and compared with tract-onnx.
//!
//! Each test groups related cases and reports every failing case (not only the first).

use smof_tests::onnx_proto::AttributeProto;
use smof_tests::{
    assert_close, attr, check_with_reference, kernel_choices, random_input, smof_run_with,
    tract_run_shaped, with_output_shapes, Cases, ConvSpec, GemmSpec, OnnxBuilder, F32_REL,
};

/// A stable seed per case name (FNV-1a), so every case gets its own input.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Builds a one-input model: input `x` of `shape`, body `f` returning the output name.
fn build(opset: i64, shape: &[usize], f: impl FnOnce(&mut OnnxBuilder, &str) -> String) -> Vec<u8> {
    let mut b = OnnxBuilder::with_seed(opset, seed_of(&format!("{shape:?}{opset}")));
    let x = b.input("x", shape);
    let y = f(&mut b, &x);
    b.output(&y);
    b.build()
}

/// One single-input case, f32 weights.
fn case(
    cases: &mut Cases,
    name: &str,
    opset: i64,
    shape: &[usize],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    let onnx = build(opset, shape, f);
    cases.check(name, &onnx, &[random_input(seed_of(name), shape)], false);
}

/// One single-input case, f16 weights.
fn case_f16(
    cases: &mut Cases,
    name: &str,
    opset: i64,
    shape: &[usize],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    let onnx = build(opset, shape, f);
    cases.check(name, &onnx, &[random_input(seed_of(name), shape)], true);
}

/// A conv as the single op of a case.
fn conv_case(cases: &mut Cases, name: &str, shape: &[usize], spec: ConvSpec) {
    case(cases, name, 13, shape, |b, x| b.conv(x, &spec));
}

// ---------------------------------------------------------------------------------------
// Conv
// ---------------------------------------------------------------------------------------

#[test]
fn conv_square_kernels_1_to_7() {
    let mut c = Cases::new();
    for k in 1..=7 {
        conv_case(
            &mut c,
            &format!("conv {k}x{k} same pads 5->13 on 9x11"),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, [k, k]).same(),
        );
        conv_case(
            &mut c,
            &format!("conv {k}x{k} no pads 5->13 on 9x11"),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, [k, k]),
        );
    }
    c.finish();
}

#[test]
fn conv_non_square_kernels() {
    let mut c = Cases::new();
    for k in [
        [1, 3],
        [3, 1],
        [1, 7],
        [7, 1],
        [3, 5],
        [5, 3],
        [2, 3],
        [1, 5],
    ] {
        conv_case(
            &mut c,
            &format!("conv {}x{} same 5->13", k[0], k[1]),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, k).same(),
        );
        conv_case(
            &mut c,
            &format!("conv {}x{} no pads 3->8", k[0], k[1]),
            &[1, 3, 9, 11],
            ConvSpec::new(3, 8, k),
        );
    }
    c.finish();
}

#[test]
fn conv_strides() {
    let mut c = Cases::new();
    for k in [1, 2, 3, 5, 7] {
        conv_case(
            &mut c,
            &format!("conv {k}x{k} stride 2 same 5->13"),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, [k, k]).same().stride(2, 2),
        );
    }
    conv_case(
        &mut c,
        "conv 1x1 stride 2 no pads (resnet downsample)",
        &[1, 8, 9, 11],
        ConvSpec::new(8, 16, [1, 1]).stride(2, 2).no_bias(),
    );
    conv_case(
        &mut c,
        "conv 3x3 stride [1,2]",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().stride(1, 2),
    );
    conv_case(
        &mut c,
        "conv 3x3 stride [2,1]",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().stride(2, 1),
    );
    conv_case(
        &mut c,
        "conv 3x3 stride 3",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().stride(3, 3),
    );
    conv_case(
        &mut c,
        "conv 3x3 stride 2 on 7x9 no pads",
        &[1, 3, 7, 9],
        ConvSpec::new(3, 17, [3, 3]).stride(2, 2),
    );
    conv_case(
        &mut c,
        "conv 7x7 stride 2 pads 3 (resnet stem) 3->16",
        &[1, 3, 15, 17],
        ConvSpec::new(3, 16, [7, 7]).same().stride(2, 2),
    );
    c.finish();
}

#[test]
fn conv_dilation() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "conv 3x3 dilation 2 pads 2",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).dilation(2, 2).same(),
    );
    conv_case(
        &mut c,
        "conv 3x3 dilation 2 no pads",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).dilation(2, 2),
    );
    conv_case(
        &mut c,
        "conv 3x3 dilation [2,1]",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).dilation(2, 1).same(),
    );
    conv_case(
        &mut c,
        "conv 3x3 dilation 2 stride 2",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3])
            .dilation(2, 2)
            .same()
            .stride(2, 2),
    );
    conv_case(
        &mut c,
        "conv 3x3 dilation 3 no pads",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 8, [3, 3]).dilation(3, 3),
    );
    conv_case(
        &mut c,
        "conv 1x3 dilation [1,2]",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 8, [1, 3]).dilation(1, 2).same(),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 dilation 2 pads 2",
        &[1, 13, 9, 11],
        ConvSpec::new(13, 13, [3, 3])
            .group(13)
            .dilation(2, 2)
            .same(),
    );
    c.finish();
}

#[test]
fn conv_asymmetric_pads() {
    let mut c = Cases::new();
    // ONNX pads order: [top, left, bottom, right].
    for p in [
        [0, 0, 1, 1],
        [1, 1, 0, 0],
        [1, 0, 2, 1],
        [2, 1, 0, 0],
        [0, 3, 0, 0],
        [0, 0, 0, 2],
    ] {
        conv_case(
            &mut c,
            &format!("conv 3x3 pads {p:?}"),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, [3, 3]).pads(p),
        );
        conv_case(
            &mut c,
            &format!("conv 3x3 stride 2 pads {p:?}"),
            &[1, 5, 9, 11],
            ConvSpec::new(5, 13, [3, 3]).pads(p).stride(2, 2),
        );
    }
    // Padding wider than the kernel: border outputs see only padding (bias only).
    conv_case(
        &mut c,
        "conv 3x3 pads [4,0,0,4] (wider than kernel)",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).pads([4, 0, 0, 4]),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 pads [0,1,2,0]",
        &[1, 13, 9, 11],
        ConvSpec::new(13, 13, [3, 3]).group(13).pads([0, 1, 2, 0]),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 stride 2 pads [0,0,1,1] (TF style)",
        &[1, 13, 10, 12],
        ConvSpec::new(13, 13, [3, 3])
            .group(13)
            .pads([0, 0, 1, 1])
            .stride(2, 2),
    );
    c.finish();
}

#[test]
fn conv_auto_pad_same_upper() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "SAME_UPPER 3x3 s1 9x11",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).auto_pad("SAME_UPPER"),
    );
    // 10x8, k3 s2: total pad 1 per axis, all at the end.
    conv_case(
        &mut c,
        "SAME_UPPER 3x3 s2 10x8 (asymmetric)",
        &[1, 5, 10, 8],
        ConvSpec::new(5, 13, [3, 3])
            .auto_pad("SAME_UPPER")
            .stride(2, 2),
    );
    // Even kernel: total pad 3, split 1 before / 2 after.
    conv_case(
        &mut c,
        "SAME_UPPER 4x4 s1 9x11 (even kernel)",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 8, [4, 4]).auto_pad("SAME_UPPER"),
    );
    conv_case(
        &mut c,
        "SAME_UPPER 5x5 s2 7x9",
        &[1, 3, 7, 9],
        ConvSpec::new(3, 8, [5, 5])
            .auto_pad("SAME_UPPER")
            .stride(2, 2),
    );
    conv_case(
        &mut c,
        "SAME_UPPER depthwise 3x3 s2 10x12",
        &[1, 13, 10, 12],
        ConvSpec::new(13, 13, [3, 3])
            .group(13)
            .auto_pad("SAME_UPPER")
            .stride(2, 2),
    );
    conv_case(
        &mut c,
        "VALID 3x3",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).auto_pad("VALID"),
    );
    c.finish();
}

#[test]
fn conv_auto_pad_same_lower() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "SAME_LOWER 3x3 s2 10x8 (asymmetric)",
        &[1, 5, 10, 8],
        ConvSpec::new(5, 13, [3, 3])
            .auto_pad("SAME_LOWER")
            .stride(2, 2),
    );
    conv_case(
        &mut c,
        "SAME_LOWER 4x4 s1 9x11 (even kernel)",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 8, [4, 4]).auto_pad("SAME_LOWER"),
    );
    c.finish();
}

#[test]
fn conv_groups() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "group 2 3x3 6->10",
        &[1, 6, 9, 11],
        ConvSpec::new(6, 10, [3, 3]).group(2).same(),
    );
    conv_case(
        &mut c,
        "group 4 3x3 8->12",
        &[1, 8, 9, 11],
        ConvSpec::new(8, 12, [3, 3]).group(4).same(),
    );
    conv_case(
        &mut c,
        "group 4 1x1 16->8",
        &[1, 16, 9, 11],
        ConvSpec::new(16, 8, [1, 1]).group(4),
    );
    conv_case(
        &mut c,
        "group 2 3x3 s2 10->6",
        &[1, 10, 9, 11],
        ConvSpec::new(10, 6, [3, 3]).group(2).same().stride(2, 2),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 13ch",
        &[1, 13, 9, 11],
        ConvSpec::new(13, 13, [3, 3]).group(13).same(),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 s2 8ch",
        &[1, 8, 9, 11],
        ConvSpec::new(8, 8, [3, 3]).group(8).same().stride(2, 2),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 s2 17ch",
        &[1, 17, 9, 11],
        ConvSpec::new(17, 17, [3, 3]).group(17).same().stride(2, 2),
    );
    conv_case(
        &mut c,
        "depthwise 5x5 17ch",
        &[1, 17, 9, 11],
        ConvSpec::new(17, 17, [5, 5]).group(17).same(),
    );
    conv_case(
        &mut c,
        "depthwise 7x7 3ch",
        &[1, 3, 9, 11],
        ConvSpec::new(3, 3, [7, 7]).group(3).same(),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 no bias 16ch",
        &[1, 16, 9, 11],
        ConvSpec::new(16, 16, [3, 3]).group(16).same().no_bias(),
    );
    conv_case(
        &mut c,
        "depthwise 3x3 no pads 5ch",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 5, [3, 3]).group(5),
    );
    conv_case(
        &mut c,
        "depthwise multiplier 2 3x3 5->10",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 10, [3, 3]).group(5).same(),
    );
    conv_case(
        &mut c,
        "depthwise multiplier 2 3x3 s2 8->16",
        &[1, 8, 9, 11],
        ConvSpec::new(8, 16, [3, 3]).group(8).same().stride(2, 2),
    );
    c.finish();
}

#[test]
fn conv_channel_counts() {
    let mut c = Cases::new();
    for (ic, oc) in [
        (3, 5),
        (5, 13),
        (13, 17),
        (17, 3),
        (1, 1),
        (1, 8),
        (8, 16),
        (16, 32),
        (3, 64),
        (33, 9),
    ] {
        conv_case(
            &mut c,
            &format!("conv 3x3 {ic}->{oc}"),
            &[1, ic, 9, 11],
            ConvSpec::new(ic, oc, [3, 3]).same(),
        );
        conv_case(
            &mut c,
            &format!("conv 1x1 {ic}->{oc}"),
            &[1, ic, 9, 11],
            ConvSpec::new(ic, oc, [1, 1]),
        );
    }
    c.finish();
}

#[test]
fn conv_thin_and_odd_shapes() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "H=1: 3x3 pads 1 on 1x15",
        &[1, 5, 1, 15],
        ConvSpec::new(5, 13, [3, 3]).same(),
    );
    conv_case(
        &mut c,
        "W=1: 3x3 pads 1 on 15x1",
        &[1, 5, 15, 1],
        ConvSpec::new(5, 13, [3, 3]).same(),
    );
    conv_case(
        &mut c,
        "H=1: 1x3 no pads on 1x15",
        &[1, 5, 1, 15],
        ConvSpec::new(5, 13, [1, 3]),
    );
    conv_case(
        &mut c,
        "W=1: 3x1 stride 2 on 15x1",
        &[1, 5, 15, 1],
        ConvSpec::new(5, 13, [3, 1]).pads([1, 0, 1, 0]).stride(2, 1),
    );
    conv_case(
        &mut c,
        "1x1 pixel, 1x1 conv",
        &[1, 5, 1, 1],
        ConvSpec::new(5, 13, [1, 1]),
    );
    conv_case(
        &mut c,
        "1x1 pixel, 3x3 conv pads 1",
        &[1, 5, 1, 1],
        ConvSpec::new(5, 13, [3, 3]).same(),
    );
    conv_case(
        &mut c,
        "7x9, 3x3 stride 2 no pads",
        &[1, 5, 7, 9],
        ConvSpec::new(5, 13, [3, 3]).stride(2, 2),
    );
    conv_case(
        &mut c,
        "7x9, 5x5 pads 2",
        &[1, 3, 7, 9],
        ConvSpec::new(3, 17, [5, 5]).same(),
    );
    conv_case(
        &mut c,
        "15x1 depthwise 3x3 pads 1",
        &[1, 13, 15, 1],
        ConvSpec::new(13, 13, [3, 3]).group(13).same(),
    );
    conv_case(
        &mut c,
        "1x15 depthwise 3x3 s2 pads 1",
        &[1, 13, 1, 15],
        ConvSpec::new(13, 13, [3, 3]).group(13).same().stride(2, 2),
    );
    conv_case(
        &mut c,
        "3x3 input, 3x3 conv no pads -> 1x1",
        &[1, 5, 3, 3],
        ConvSpec::new(5, 13, [3, 3]),
    );
    conv_case(
        &mut c,
        "kernel_shape attribute absent",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().no_kernel_shape_attr(),
    );
    c.finish();
}

#[test]
fn conv_without_bias() {
    let mut c = Cases::new();
    conv_case(
        &mut c,
        "1x1 no bias",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [1, 1]).no_bias(),
    );
    conv_case(
        &mut c,
        "3x3 no bias",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().no_bias(),
    );
    conv_case(
        &mut c,
        "3x3 s2 no bias",
        &[1, 5, 9, 11],
        ConvSpec::new(5, 13, [3, 3]).same().stride(2, 2).no_bias(),
    );
    conv_case(
        &mut c,
        "group 2 no bias",
        &[1, 6, 9, 11],
        ConvSpec::new(6, 10, [3, 3]).group(2).same().no_bias(),
    );
    c.finish();
}

#[test]
fn conv_batchnorm_folded() {
    let mut c = Cases::new();
    case(&mut c, "conv (no bias) + BN", 13, &[1, 5, 9, 11], |b, x| {
        let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same().no_bias());
        b.batchnorm(&y, 13, None)
    });
    case(
        &mut c,
        "conv (bias) + BN eps 1e-3",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same());
            b.batchnorm(&y, 13, Some(1e-3))
        },
    );
    case(
        &mut c,
        "conv 1x1 + BN + Relu",
        13,
        &[1, 17, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(17, 8, [1, 1]).no_bias());
            let y = b.batchnorm(&y, 8, None);
            b.node("Relu", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "depthwise + BN + Clip(0,6)",
        13,
        &[1, 13, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(13, 13, [3, 3]).group(13).same().no_bias());
            let y = b.batchnorm(&y, 13, None);
            clip(b, &y, 0.0, 6.0)
        },
    );
    case(&mut c, "group 2 conv + BN", 13, &[1, 6, 9, 11], |b, x| {
        let y = b.conv(
            x,
            &ConvSpec::new(6, 10, [3, 3])
                .group(2)
                .same()
                .stride(2, 2)
                .no_bias(),
        );
        b.batchnorm(&y, 10, Some(1e-5))
    });
    c.finish();
}

/// `Clip` with min/max as inputs (opset 11 and later).
fn clip(b: &mut OnnxBuilder, x: &str, min: f32, max: f32) -> String {
    let lo = b.fresh("clip_min");
    let lo = b.init(&lo, &[], &[min]);
    let hi = b.fresh("clip_max");
    let hi = b.init(&hi, &[], &[max]);
    b.node("Clip", &[x, &lo, &hi], vec![])
}

/// A conv with weights uniform in [-1, 1): with inputs in [-1, 1] its outputs spread over
/// roughly [-7, 7], so every piece of an activation (both Clip bounds, HardSigmoid's
/// saturation at ±2.5, Tanh/Sigmoid tails) is exercised.
fn wide_conv(b: &mut OnnxBuilder, x: &str, c_in: usize, c_out: usize, group: usize) -> String {
    let w = b.random_init("wide_w", &[c_out, c_in / group, 3, 3], -1.0, 1.0);
    let bias = b.random_init("wide_b", &[c_out], -1.0, 1.0);
    b.node(
        "Conv",
        &[x, &w, &bias],
        vec![
            attr::ints("kernel_shape", &[3, 3]),
            attr::ints("pads", &[1, 1, 1, 1]),
            attr::int("group", group as i64),
        ],
    )
}

/// Builds an activation after the tensor named by the second argument.
type ActFn = dyn Fn(&mut OnnxBuilder, &str) -> String;

#[test]
fn conv_fused_activations() {
    let mut c = Cases::new();
    let acts: Vec<(&str, i64, Box<ActFn>)> = vec![
        (
            "Relu",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("Relu", &[y], vec![])),
        ),
        (
            "Clip(0,6) inputs",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| clip(b, y, 0.0, 6.0)),
        ),
        (
            "Clip(-1,1) inputs",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| clip(b, y, -1.0, 1.0)),
        ),
        (
            "Clip(0,6) opset 11",
            11,
            Box::new(|b: &mut OnnxBuilder, y: &str| clip(b, y, 0.0, 6.0)),
        ),
        (
            "LeakyRelu alpha 0.1",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| {
                b.node("LeakyRelu", &[y], vec![attr::float("alpha", 0.1)])
            }),
        ),
        (
            "LeakyRelu default alpha",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("LeakyRelu", &[y], vec![])),
        ),
        (
            "Sigmoid",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("Sigmoid", &[y], vec![])),
        ),
        (
            "HardSigmoid default",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("HardSigmoid", &[y], vec![])),
        ),
        (
            "HardSigmoid alpha 1/6 beta 0.5",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| {
                b.node(
                    "HardSigmoid",
                    &[y],
                    vec![attr::float("alpha", 1.0 / 6.0), attr::float("beta", 0.5)],
                )
            }),
        ),
        (
            "HardSwish (opset 14+)",
            17,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("HardSwish", &[y], vec![])),
        ),
        (
            "SiLU x*Sigmoid(x)",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| {
                let s = b.node("Sigmoid", &[y], vec![]);
                b.node("Mul", &[y, &s], vec![])
            }),
        ),
        (
            "SiLU Sigmoid(x)*x",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| {
                let s = b.node("Sigmoid", &[y], vec![]);
                b.node("Mul", &[&s, y], vec![])
            }),
        ),
        (
            "Tanh",
            13,
            Box::new(|b: &mut OnnxBuilder, y: &str| b.node("Tanh", &[y], vec![])),
        ),
    ];
    for (name, opset, act) in &acts {
        case(
            &mut c,
            &format!("conv + {name}"),
            *opset,
            &[1, 5, 9, 11],
            |b, x| {
                let y = wide_conv(b, x, 5, 13, 1);
                act(b, &y)
            },
        );
        case(
            &mut c,
            &format!("depthwise + {name}"),
            *opset,
            &[1, 13, 9, 11],
            |b, x| {
                let y = wide_conv(b, x, 13, 13, 13);
                act(b, &y)
            },
        );
    }
    c.finish();
}

#[test]
fn conv_residual_add_relu() {
    let mut c = Cases::new();
    case(
        &mut c,
        "Add(conv(x), x) -> Relu",
        13,
        &[1, 13, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(13, 13, [3, 3]).same());
            let y = b.node("Add", &[&y, x], vec![]);
            b.node("Relu", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "Add(x, conv(x)) -> Relu",
        13,
        &[1, 13, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(13, 13, [3, 3]).same());
            let y = b.node("Add", &[x, &y], vec![]);
            b.node("Relu", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "resnet basic block with downsample",
        13,
        &[1, 8, 9, 11],
        |b, x| {
            let a = b.conv(
                x,
                &ConvSpec::new(8, 16, [3, 3]).same().stride(2, 2).no_bias(),
            );
            let a = b.batchnorm(&a, 16, None);
            let a = b.node("Relu", &[&a], vec![]);
            let a = b.conv(&a, &ConvSpec::new(16, 16, [3, 3]).same().no_bias());
            let a = b.batchnorm(&a, 16, None);
            let s = b.conv(x, &ConvSpec::new(8, 16, [1, 1]).stride(2, 2).no_bias());
            let s = b.batchnorm(&s, 16, None);
            let y = b.node("Add", &[&a, &s], vec![]);
            b.node("Relu", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "Add(conv, x) without activation (mobilenet residual)",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 5, [1, 1]));
            b.node("Add", &[&y, x], vec![])
        },
    );
    case(
        &mut c,
        "residual input also used later",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let r = b.node("Relu", &[x], vec![]);
            let y = b.conv(&r, &ConvSpec::new(5, 5, [3, 3]).same());
            let y = b.node("Add", &[&y, &r], vec![]);
            let y = b.node("Relu", &[&y], vec![]);
            b.node("Add", &[&y, &r], vec![])
        },
    );
    c.finish();
}

#[test]
fn batchnorm_standalone() {
    let mut c = Cases::new();
    case(&mut c, "conv -> Relu -> BN", 13, &[1, 5, 9, 11], |b, x| {
        let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same());
        let y = b.node("Relu", &[&y], vec![]);
        b.batchnorm(&y, 13, None)
    });
    case(
        &mut c,
        "BN on the graph input",
        13,
        &[1, 5, 9, 11],
        |b, x| b.batchnorm(x, 5, Some(1e-3)),
    );
    case(
        &mut c,
        "BN on the graph input -> Relu",
        13,
        &[1, 17, 7, 9],
        |b, x| {
            let y = b.batchnorm(x, 17, None);
            b.node("Relu", &[&y], vec![])
        },
    );
    case(&mut c, "BN opset 11", 11, &[1, 5, 9, 11], |b, x| {
        let y = b.node("Relu", &[x], vec![]);
        b.batchnorm(&y, 5, None)
    });
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Gemm, MatMul, Flatten, Reshape
// ---------------------------------------------------------------------------------------

#[test]
fn gemm() {
    let mut c = Cases::new();
    for n in [1, 2] {
        case(
            &mut c,
            &format!("Gemm transB=1 bias, N={n}"),
            13,
            &[n, 37],
            |b, x| b.gemm(x, &GemmSpec::new(37, 10)),
        );
        case(
            &mut c,
            &format!("Gemm transB=0 bias, N={n}"),
            13,
            &[n, 37],
            |b, x| b.gemm(x, &GemmSpec::new(37, 10).trans_b(false)),
        );
        case(
            &mut c,
            &format!("Gemm transB=1 alpha 0.5 beta 2, N={n}"),
            13,
            &[n, 37],
            |b, x| b.gemm(x, &GemmSpec::new(37, 10).alpha(0.5).beta(2.0)),
        );
        case(
            &mut c,
            &format!("Gemm transB=0 alpha 1.5 beta 0.25, N={n}"),
            13,
            &[n, 37],
            |b, x| {
                b.gemm(
                    x,
                    &GemmSpec::new(37, 10).trans_b(false).alpha(1.5).beta(0.25),
                )
            },
        );
        case(
            &mut c,
            &format!("Gemm no C, N={n}"),
            13,
            &[n, 37],
            |b, x| b.gemm(x, &GemmSpec::new(37, 10).no_bias()),
        );
    }
    case(&mut c, "Gemm 64->17 + Relu", 13, &[1, 64], |b, x| {
        let y = b.gemm(x, &GemmSpec::new(64, 17));
        b.node("Relu", &[&y], vec![])
    });
    case(&mut c, "Gemm -> Gemm (MLP)", 13, &[2, 20], |b, x| {
        let y = b.gemm(x, &GemmSpec::new(20, 33));
        let y = b.node("Relu", &[&y], vec![]);
        b.gemm(&y, &GemmSpec::new(33, 5))
    });
    case(
        &mut c,
        "Gemm bias C of shape [1, N]",
        13,
        &[1, 37],
        |b, x| {
            let w = b.weight("w", &[10, 37], None);
            let bias = b.random_init("c", &[1, 10], -0.5, 0.5);
            b.node("Gemm", &[x, &w, &bias], vec![attr::int("transB", 1)])
        },
    );
    c.finish();
}

#[test]
fn matmul_add() {
    let mut c = Cases::new();
    for n in [1, 2] {
        case(
            &mut c,
            &format!("MatMul + Add(mm, B), N={n}"),
            13,
            &[n, 37],
            |b, x| {
                let w = b.weight("w", &[37, 10], Some(37));
                let bias = b.random_init("b", &[10], -0.5, 0.5);
                let y = b.node("MatMul", &[x, &w], vec![]);
                b.node("Add", &[&y, &bias], vec![])
            },
        );
    }
    case(&mut c, "MatMul + Add(B, mm)", 13, &[1, 37], |b, x| {
        let w = b.weight("w", &[37, 10], Some(37));
        let bias = b.random_init("b", &[10], -0.5, 0.5);
        let y = b.node("MatMul", &[x, &w], vec![]);
        b.node("Add", &[&bias, &y], vec![])
    });
    case(&mut c, "MatMul without bias", 13, &[1, 37], |b, x| {
        let w = b.weight("w", &[37, 10], Some(37));
        b.node("MatMul", &[x, &w], vec![])
    });
    c.finish();
}

#[test]
fn flatten_gemm_and_flatten_output() {
    let mut c = Cases::new();
    // H*W > 1: the converter must permute the Gemm weight from the NCHW flatten order to the
    // runtime's NHWC order (or flatten in NCHW order).
    for n in [1, 2] {
        case(
            &mut c,
            &format!("conv -> Flatten -> Gemm (5x3x4=60 features), N={n}"),
            13,
            &[n, 3, 3, 4],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).same());
                let y = b.node("Flatten", &[&y], vec![attr::int("axis", 1)]);
                b.gemm(&y, &GemmSpec::new(60, 10))
            },
        );
    }
    case(
        &mut c,
        "conv -> Flatten (default axis) -> Gemm transB=0",
        13,
        &[1, 3, 5, 7],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(3, 13, [3, 3]).same());
            let y = b.node("Flatten", &[&y], vec![]);
            b.gemm(&y, &GemmSpec::new(13 * 35, 7).trans_b(false))
        },
    );
    case(
        &mut c,
        "maxpool -> Flatten -> Gemm (lenet tail)",
        13,
        &[1, 5, 8, 8],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 16, [5, 5]));
            let y = b.node("Relu", &[&y], vec![]);
            let y = b.node(
                "MaxPool",
                &[&y],
                vec![
                    attr::ints("kernel_shape", &[2, 2]),
                    attr::ints("strides", &[2, 2]),
                ],
            );
            let y = b.node("Flatten", &[&y], vec![attr::int("axis", 1)]);
            let y = b.gemm(&y, &GemmSpec::new(64, 12));
            b.node("Relu", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "GAP -> Flatten -> Gemm (H*W=1)",
        13,
        &[1, 13, 9, 11],
        |b, x| {
            let y = b.node("GlobalAveragePool", &[x], vec![]);
            let y = b.node("Flatten", &[&y], vec![attr::int("axis", 1)]);
            b.gemm(&y, &GemmSpec::new(13, 10))
        },
    );
    for n in [1, 2] {
        case(
            &mut c,
            &format!("conv -> Flatten as graph output, N={n}"),
            13,
            &[n, 3, 5, 7],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(3, 13, [3, 3]).same());
                b.node("Flatten", &[&y], vec![attr::int("axis", 1)])
            },
        );
    }
    case(
        &mut c,
        "Flatten of the graph input",
        13,
        &[1, 5, 3, 4],
        |b, x| {
            let y = b.node("Flatten", &[x], vec![attr::int("axis", 1)]);
            b.gemm(&y, &GemmSpec::new(60, 9))
        },
    );
    c.finish();
}

/// PyTorch's `x.view(x.size(0), -1)`: Shape -> Gather(0) -> Unsqueeze -> Concat([n, -1]) ->
/// Reshape. Opset 13 passes Unsqueeze axes as an input, opset 11 as an attribute.
fn pytorch_view_flatten(b: &mut OnnxBuilder, x: &str) -> String {
    let shape = b.node("Shape", &[x], vec![]);
    let idx = b.constant_i64(&[], &[0]);
    let n = b.node("Gather", &[&shape, &idx], vec![attr::int("axis", 0)]);
    let n = if b.opset() >= 13 {
        let axes = b.constant_i64(&[1], &[0]);
        b.node("Unsqueeze", &[&n, &axes], vec![])
    } else {
        b.node("Unsqueeze", &[&n], vec![attr::ints("axes", &[0])])
    };
    let minus_one = b.constant_i64(&[1], &[-1]);
    let target = b.node("Concat", &[&n, &minus_one], vec![attr::int("axis", 0)]);
    b.node("Reshape", &[x, &target], vec![])
}

#[test]
fn reshape_pytorch_chain() {
    let mut c = Cases::new();
    for opset in [11, 13, 17] {
        for n in [1, 2] {
            case(
                &mut c,
                &format!("GAP -> view(n,-1) -> Gemm, opset {opset}, N={n}"),
                opset,
                &[n, 13, 7, 9],
                |b, x| {
                    let y = b.node("GlobalAveragePool", &[x], vec![]);
                    let y = pytorch_view_flatten(b, &y);
                    b.gemm(&y, &GemmSpec::new(13, 10))
                },
            );
        }
        case(
            &mut c,
            &format!("conv -> view(n,-1) (H*W>1) -> Gemm, opset {opset}"),
            opset,
            &[1, 3, 3, 4],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).same());
                let y = pytorch_view_flatten(b, &y);
                b.gemm(&y, &GemmSpec::new(60, 10))
            },
        );
    }
    case(
        &mut c,
        "Reshape to constant [1, -1] -> Gemm",
        13,
        &[1, 5, 3, 4],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 5, [1, 1]));
            let s = b.init_i64("target_shape", &[2], &[1, -1]);
            let y = b.node("Reshape", &[&y, &s], vec![]);
            b.gemm(&y, &GemmSpec::new(60, 10))
        },
    );
    case(
        &mut c,
        "Reshape to constant [1, 60] as output",
        13,
        &[1, 5, 3, 4],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 5, [1, 1]));
            let s = b.init_i64("target_shape", &[2], &[1, 60]);
            b.node("Reshape", &[&y, &s], vec![])
        },
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------

fn pool_attrs(
    k: [i64; 2],
    s: [i64; 2],
    pads: Option<[i64; 4]>,
    extra: Vec<AttributeProto>,
) -> Vec<AttributeProto> {
    let mut a = vec![attr::ints("kernel_shape", &k), attr::ints("strides", &s)];
    if let Some(p) = pads {
        a.push(attr::ints("pads", &p));
    }
    a.extend(extra);
    a
}

#[test]
fn maxpool() {
    let mut c = Cases::new();
    let mp = |c: &mut Cases, name: &str, shape: &[usize], attrs: Vec<AttributeProto>| {
        case(c, name, 13, shape, |b, x| b.node("MaxPool", &[x], attrs));
    };
    mp(
        &mut c,
        "MaxPool k3 s2 p1 (resnet)",
        &[1, 5, 9, 11],
        pool_attrs([3, 3], [2, 2], Some([1, 1, 1, 1]), vec![]),
    );
    mp(
        &mut c,
        "MaxPool k2 s2 (floor) 9x11",
        &[1, 5, 9, 11],
        pool_attrs([2, 2], [2, 2], None, vec![]),
    );
    mp(
        &mut c,
        "MaxPool k2 s2 ceil_mode 9x11",
        &[1, 5, 9, 11],
        pool_attrs([2, 2], [2, 2], None, vec![attr::int("ceil_mode", 1)]),
    );
    mp(
        &mut c,
        "MaxPool k3 s2 ceil_mode 10x12 (squeezenet)",
        &[1, 13, 10, 12],
        pool_attrs([3, 3], [2, 2], None, vec![attr::int("ceil_mode", 1)]),
    );
    mp(
        &mut c,
        "MaxPool k3 s2 p1 ceil_mode 10x12",
        &[1, 5, 10, 12],
        pool_attrs(
            [3, 3],
            [2, 2],
            Some([1, 1, 1, 1]),
            vec![attr::int("ceil_mode", 1)],
        ),
    );
    mp(
        &mut c,
        "MaxPool k3 s1 p1",
        &[1, 17, 9, 11],
        pool_attrs([3, 3], [1, 1], Some([1, 1, 1, 1]), vec![]),
    );
    mp(
        &mut c,
        "MaxPool k3 s2 asymmetric pads [0,1,1,0]",
        &[1, 5, 9, 11],
        pool_attrs([3, 3], [2, 2], Some([0, 1, 1, 0]), vec![]),
    );
    mp(
        &mut c,
        "MaxPool k3 s1 dilation 2",
        &[1, 5, 9, 11],
        pool_attrs([3, 3], [1, 1], None, vec![attr::ints("dilations", &[2, 2])]),
    );
    mp(
        &mut c,
        "MaxPool k2 s1 dilation 2 p1",
        &[1, 5, 9, 11],
        pool_attrs(
            [2, 2],
            [1, 1],
            Some([1, 1, 1, 1]),
            vec![attr::ints("dilations", &[2, 2])],
        ),
    );
    mp(
        &mut c,
        "MaxPool k1x3 s1x2",
        &[1, 5, 9, 11],
        pool_attrs([1, 3], [1, 2], None, vec![]),
    );
    mp(
        &mut c,
        "MaxPool k3 s2 on 1x15 (H=1)",
        &[1, 5, 1, 15],
        pool_attrs([1, 3], [1, 2], None, vec![]),
    );
    c.finish();
}

#[test]
fn maxpool_padding_never_wins() {
    // Conv output shifted to be all negative (bias -10), then MaxPool with padding: a kernel
    // that treats padding as 0 returns 0 on the border instead of a negative value.
    let mut c = Cases::new();
    case(
        &mut c,
        "conv(bias<<0) -> MaxPool k3 s2 p1",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let w = b.weight("w", &[8, 5, 1, 1], None);
            let bias = b.init("neg_bias", &[8], &[-10.0; 8]);
            let y = b.node(
                "Conv",
                &[x, &w, &bias],
                vec![attr::ints("kernel_shape", &[1, 1])],
            );
            b.node(
                "MaxPool",
                &[&y],
                pool_attrs([3, 3], [2, 2], Some([1, 1, 1, 1]), vec![]),
            )
        },
    );
    c.finish();
}

#[test]
fn averagepool() {
    let mut c = Cases::new();
    let ap = |c: &mut Cases, name: &str, shape: &[usize], attrs: Vec<AttributeProto>| {
        case(c, name, 13, shape, |b, x| {
            b.node("AveragePool", &[x], attrs)
        });
    };
    for cip in [0, 1] {
        ap(
            &mut c,
            &format!("AvgPool k3 s1 p1 cip={cip}"),
            &[1, 5, 9, 11],
            pool_attrs(
                [3, 3],
                [1, 1],
                Some([1, 1, 1, 1]),
                vec![attr::int("count_include_pad", cip)],
            ),
        );
        ap(
            &mut c,
            &format!("AvgPool k3 s2 p1 cip={cip}"),
            &[1, 13, 9, 11],
            pool_attrs(
                [3, 3],
                [2, 2],
                Some([1, 1, 1, 1]),
                vec![attr::int("count_include_pad", cip)],
            ),
        );
        ap(
            &mut c,
            &format!("AvgPool k3 s2 asym pads [0,1,1,0] cip={cip}"),
            &[1, 5, 9, 11],
            pool_attrs(
                [3, 3],
                [2, 2],
                Some([0, 1, 1, 0]),
                vec![attr::int("count_include_pad", cip)],
            ),
        );
        ap(
            &mut c,
            &format!("AvgPool k2 s2 ceil_mode cip={cip} 9x11"),
            &[1, 5, 9, 11],
            pool_attrs(
                [2, 2],
                [2, 2],
                None,
                vec![
                    attr::int("ceil_mode", 1),
                    attr::int("count_include_pad", cip),
                ],
            ),
        );
        ap(
            &mut c,
            &format!("AvgPool k3 s2 p1 ceil_mode cip={cip} 10x12"),
            &[1, 5, 10, 12],
            pool_attrs(
                [3, 3],
                [2, 2],
                Some([1, 1, 1, 1]),
                vec![
                    attr::int("ceil_mode", 1),
                    attr::int("count_include_pad", cip),
                ],
            ),
        );
    }
    ap(
        &mut c,
        "AvgPool k2 s2 default attrs",
        &[1, 17, 8, 10],
        pool_attrs([2, 2], [2, 2], None, vec![]),
    );
    ap(
        &mut c,
        "AvgPool k7 s1 on 7x7 (global by window)",
        &[1, 16, 7, 7],
        pool_attrs([7, 7], [1, 1], None, vec![]),
    );
    c.finish();
}

#[test]
fn global_average_pool() {
    let mut c = Cases::new();
    for shape in [
        [1, 13, 9, 11],
        [1, 5, 1, 1],
        [2, 17, 7, 7],
        [1, 3, 1, 15],
        [1, 64, 3, 3],
    ] {
        case(
            &mut c,
            &format!("GlobalAveragePool {shape:?}"),
            13,
            &shape,
            |b, x| b.node("GlobalAveragePool", &[x], vec![]),
        );
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Elementwise, Concat, Softmax, pass-through ops
// ---------------------------------------------------------------------------------------

/// A two-input case: inputs `x` and `y` of the same shape.
fn case2(
    c: &mut Cases,
    name: &str,
    shape: &[usize],
    f: impl FnOnce(&mut OnnxBuilder, &str, &str) -> String,
) {
    let mut b = OnnxBuilder::with_seed(13, seed_of(name));
    let x = b.input("x", shape);
    let y = b.input("y", shape);
    let out = f(&mut b, &x, &y);
    b.output(&out);
    let inputs = [
        random_input(seed_of(name), shape),
        random_input(seed_of(name) ^ 1, shape),
    ];
    c.check(name, &b.build(), &inputs, false);
}

#[test]
fn add_same_shape() {
    let mut c = Cases::new();
    case2(
        &mut c,
        "Add(x, y) graph inputs",
        &[1, 5, 9, 11],
        |b, x, y| b.node("Add", &[x, y], vec![]),
    );
    case2(&mut c, "Add(x, y) -> Relu", &[1, 13, 7, 9], |b, x, y| {
        let s = b.node("Add", &[x, y], vec![]);
        b.node("Relu", &[&s], vec![])
    });
    case2(&mut c, "Add(conv x, conv y)", &[1, 5, 9, 11], |b, x, y| {
        let a = b.conv(x, &ConvSpec::new(5, 17, [3, 3]).same());
        let d = b.conv(y, &ConvSpec::new(5, 17, [1, 1]));
        b.node("Add", &[&a, &d], vec![])
    });
    case(&mut c, "Add(x, x)", 13, &[1, 5, 9, 11], |b, x| {
        b.node("Add", &[x, x], vec![])
    });
    case2(&mut c, "Add 2-D [2, 37]", &[2, 37], |b, x, y| {
        b.node("Add", &[x, y], vec![])
    });
    c.finish();
}

#[test]
fn mul_squeeze_excite_and_same_shape() {
    let mut c = Cases::new();
    case(
        &mut c,
        "SE: Mul(x, sigmoid gate) 16ch",
        13,
        &[1, 16, 9, 11],
        |b, x| b.squeeze_excite(x, 16, "Sigmoid", false),
    );
    case(
        &mut c,
        "SE: Mul(gate, x) 16ch",
        13,
        &[1, 16, 9, 11],
        |b, x| b.squeeze_excite(x, 16, "Sigmoid", true),
    );
    case(
        &mut c,
        "SE: 20ch (not a multiple of 8) with HardSigmoid gate",
        13,
        &[1, 20, 7, 9],
        |b, x| b.squeeze_excite(x, 20, "HardSigmoid", false),
    );
    case(
        &mut c,
        "SE after a conv, batch 2",
        13,
        &[2, 8, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(8, 12, [3, 3]).same());
            b.squeeze_excite(&y, 12, "Sigmoid", false)
        },
    );
    case2(&mut c, "Mul(x, y) same shape", &[1, 5, 9, 11], |b, x, y| {
        b.node("Mul", &[x, y], vec![])
    });
    case2(
        &mut c,
        "Mul(conv x, conv y) same shape",
        &[1, 5, 9, 11],
        |b, x, y| {
            let a = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same());
            let d = b.conv(y, &ConvSpec::new(5, 13, [3, 3]).same());
            b.node("Mul", &[&a, &d], vec![])
        },
    );
    c.finish();
}

#[test]
fn concat_channels() {
    let mut c = Cases::new();
    for axis in [1, -3] {
        case(
            &mut c,
            &format!("Concat axis {axis} of 3 convs (3, 5, 13 channels)"),
            13,
            &[1, 5, 9, 11],
            |b, x| {
                let a = b.conv(x, &ConvSpec::new(5, 3, [1, 1]));
                let d = b.conv(x, &ConvSpec::new(5, 5, [3, 3]).same());
                let e = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same());
                b.node("Concat", &[&a, &d, &e], vec![attr::int("axis", axis)])
            },
        );
    }
    case(
        &mut c,
        "Concat(x, conv x) -> conv",
        13,
        &[1, 3, 9, 11],
        |b, x| {
            let a = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).same());
            let y = b.node("Concat", &[x, &a], vec![attr::int("axis", 1)]);
            b.conv(&y, &ConvSpec::new(8, 7, [3, 3]).same())
        },
    );
    case(
        &mut c,
        "squeezenet fire module (16 -> 3 -> 5+7 -> concat)",
        13,
        &[1, 16, 9, 11],
        |b, x| {
            let s = b.conv(x, &ConvSpec::new(16, 3, [1, 1]));
            let s = b.node("Relu", &[&s], vec![]);
            let e1 = b.conv(&s, &ConvSpec::new(3, 5, [1, 1]));
            let e1 = b.node("Relu", &[&e1], vec![]);
            let e3 = b.conv(&s, &ConvSpec::new(3, 7, [3, 3]).same());
            let e3 = b.node("Relu", &[&e3], vec![]);
            b.node("Concat", &[&e1, &e3], vec![attr::int("axis", 1)])
        },
    );
    case2(
        &mut c,
        "Concat of two graph inputs, batch 2",
        &[2, 5, 3, 4],
        |b, x, y| b.node("Concat", &[x, y], vec![attr::int("axis", 1)]),
    );
    c.finish();
}

#[test]
fn softmax_2d() {
    let mut c = Cases::new();
    for (opset, n) in [(11, 1), (13, 1), (13, 2), (17, 2)] {
        case(
            &mut c,
            &format!("Gemm -> Softmax axis 1, opset {opset}, N={n}"),
            opset,
            &[n, 37],
            |b, x| {
                // Large logits (alpha 20): tests the max-subtraction for stability.
                let y = b.gemm(x, &GemmSpec::new(37, 10).alpha(20.0));
                b.node("Softmax", &[&y], vec![attr::int("axis", 1)])
            },
        );
    }
    case(
        &mut c,
        "Softmax default axis opset 13 (-1)",
        13,
        &[2, 37],
        |b, x| {
            let y = b.gemm(x, &GemmSpec::new(37, 1000));
            b.node("Softmax", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "Softmax default axis opset 11 (1)",
        11,
        &[1, 37],
        |b, x| {
            let y = b.gemm(x, &GemmSpec::new(37, 17));
            b.node("Softmax", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "GAP -> Flatten -> Gemm -> Softmax axis -1",
        13,
        &[1, 13, 5, 7],
        |b, x| {
            let y = b.node("GlobalAveragePool", &[x], vec![]);
            let y = b.node("Flatten", &[&y], vec![]);
            let y = b.gemm(&y, &GemmSpec::new(13, 9));
            b.node("Softmax", &[&y], vec![attr::int("axis", -1)])
        },
    );
    c.finish();
}

#[test]
fn identity_and_dropout() {
    let mut c = Cases::new();
    for opset in [11, 13] {
        case(
            &mut c,
            &format!("conv -> Identity -> Dropout -> Relu, opset {opset}"),
            opset,
            &[1, 5, 9, 11],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same());
                let y = b.node("Identity", &[&y], vec![]);
                let y = if opset < 12 {
                    b.node("Dropout", &[&y], vec![attr::float("ratio", 0.2)])
                } else {
                    b.node("Dropout", &[&y], vec![])
                };
                b.node("Relu", &[&y], vec![])
            },
        );
    }
    case(
        &mut c,
        "Identity as last node",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 8, [1, 1]));
            b.node("Identity", &[&y], vec![])
        },
    );
    case(
        &mut c,
        "Dropout as last node before Gemm output",
        13,
        &[1, 37],
        |b, x| {
            let y = b.node("Dropout", &[x], vec![]);
            b.gemm(&y, &GemmSpec::new(37, 10))
        },
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Whole small networks: opsets, batch, f16, storage, outputs, threads
// ---------------------------------------------------------------------------------------

/// A small classifier touching most ops: conv+BN+Relu, MaxPool, depthwise+BN+Clip,
/// residual Add, GAP, Flatten, Gemm, Softmax.
fn mini_net(b: &mut OnnxBuilder, x: &str) -> String {
    let y = b.conv(
        x,
        &ConvSpec::new(3, 16, [3, 3]).same().stride(2, 2).no_bias(),
    );
    let y = b.batchnorm(&y, 16, None);
    let y = b.node("Relu", &[&y], vec![]);
    let y = b.node(
        "MaxPool",
        &[&y],
        pool_attrs([3, 3], [2, 2], Some([1, 1, 1, 1]), vec![]),
    );
    let d = b.conv(
        &y,
        &ConvSpec::new(16, 16, [3, 3]).group(16).same().no_bias(),
    );
    let d = b.batchnorm(&d, 16, None);
    let d = clip(b, &d, 0.0, 6.0);
    let d = b.conv(&d, &ConvSpec::new(16, 16, [1, 1]).no_bias());
    let d = b.batchnorm(&d, 16, None);
    let y = b.node("Add", &[&d, &y], vec![]);
    let y = b.node("GlobalAveragePool", &[&y], vec![]);
    let y = b.node("Flatten", &[&y], vec![attr::int("axis", 1)]);
    let y = b.gemm(&y, &GemmSpec::new(16, 10));
    b.node("Softmax", &[&y], vec![attr::int("axis", 1)])
}

#[test]
fn opsets_11_13_17() {
    let mut c = Cases::new();
    for opset in [11, 13, 17] {
        case(
            &mut c,
            &format!("mini net opset {opset}"),
            opset,
            &[1, 3, 17, 19],
            mini_net,
        );
    }
    c.finish();
}

#[test]
fn batch_2() {
    let mut c = Cases::new();
    case(&mut c, "mini net batch 2", 13, &[2, 3, 17, 19], mini_net);
    case(&mut c, "conv 3x3 s2 batch 2", 13, &[2, 5, 9, 11], |b, x| {
        b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same().stride(2, 2))
    });
    case(&mut c, "depthwise batch 2", 13, &[2, 13, 9, 11], |b, x| {
        b.conv(x, &ConvSpec::new(13, 13, [3, 3]).group(13).same())
    });
    case(
        &mut c,
        "MaxPool + AvgPool batch 2",
        13,
        &[2, 5, 9, 11],
        |b, x| {
            let y = b.node(
                "MaxPool",
                &[x],
                pool_attrs([3, 3], [2, 2], Some([1, 1, 1, 1]), vec![]),
            );
            b.node(
                "AveragePool",
                &[&y],
                pool_attrs([2, 2], [1, 1], None, vec![]),
            )
        },
    );
    c.finish();
}

#[test]
fn f16_weights() {
    let mut c = Cases::new();
    case_f16(&mut c, "f16 conv 3x3 5->13", 13, &[1, 5, 9, 11], |b, x| {
        b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same())
    });
    case_f16(
        &mut c,
        "f16 depthwise 3x3 13ch",
        13,
        &[1, 13, 9, 11],
        |b, x| b.conv(x, &ConvSpec::new(13, 13, [3, 3]).group(13).same()),
    );
    case_f16(
        &mut c,
        "f16 conv + BN + Relu",
        13,
        &[1, 5, 9, 11],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same().no_bias());
            let y = b.batchnorm(&y, 13, None);
            b.node("Relu", &[&y], vec![])
        },
    );
    case_f16(&mut c, "f16 Flatten -> Gemm", 13, &[1, 3, 3, 4], |b, x| {
        let y = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).same());
        let y = b.node("Flatten", &[&y], vec![attr::int("axis", 1)]);
        b.gemm(&y, &GemmSpec::new(60, 10))
    });
    case_f16(&mut c, "f16 standalone BN", 13, &[1, 5, 9, 11], |b, x| {
        let y = b.node("Relu", &[x], vec![]);
        b.batchnorm(&y, 5, None)
    });
    case_f16(&mut c, "f16 mini net", 13, &[1, 3, 17, 19], mini_net);
    c.finish();
}

#[test]
fn initializers_in_float_data() {
    let mut b = OnnxBuilder::new(13);
    b.use_typed_data();
    let x = b.input("x", &[1, 3, 17, 19]);
    let y = mini_net(&mut b, &x);
    b.output(&y);
    let mut c = Cases::new();
    c.check(
        "mini net, initializers in float_data",
        &b.build(),
        &[random_input(7, &[1, 3, 17, 19])],
        false,
    );
    c.finish();
}

#[test]
fn outputs_without_declared_shape() {
    // `check_against_tract` declares the output shapes as exporters do; here they stay
    // undeclared (valid ONNX), so the converter must infer them.
    let onnx = build(13, &[1, 5, 9, 11], |b, x| {
        let y = b.conv(x, &ConvSpec::new(5, 13, [3, 3]).same().stride(2, 2));
        b.node("Relu", &[&y], vec![])
    });
    let inputs = [random_input(3, &[1, 5, 9, 11])];
    let want = tract_run_shaped(&onnx, &inputs);
    check_with_reference(
        "conv+relu with undeclared output shape",
        &onnx,
        &inputs,
        &want,
        false,
    );
}

#[test]
fn multiple_outputs() {
    let mut b = OnnxBuilder::new(13);
    let x = b.input("x", &[1, 5, 9, 11]);
    let f = b.conv(&x, &ConvSpec::new(5, 13, [3, 3]).same());
    let f = b.node("Relu", &[&f], vec![]);
    let g = b.node("GlobalAveragePool", &[&f], vec![]);
    let g = b.node("Flatten", &[&g], vec![]);
    let logits = b.gemm(&g, &GemmSpec::new(13, 7));
    // Order: the logits first, then the feature map that is also consumed inside the graph.
    b.output(&logits);
    b.output(&f);
    let mut c = Cases::new();
    c.check(
        "two outputs (logits, intermediate feature map)",
        &b.build(),
        &[random_input(11, &[1, 5, 9, 11])],
        false,
    );
    c.finish();
}

#[test]
fn two_worker_threads() {
    let onnx = build(13, &[1, 3, 17, 19], mini_net);
    let inputs = [random_input(5, &[1, 3, 17, 19])];
    let want = tract_run_shaped(&onnx, &inputs);
    let shapes: Vec<Vec<usize>> = want.iter().map(|(s, _)| s.clone()).collect();
    let onnx = with_output_shapes(&onnx, &shapes);
    let opts = smof::SessionOptions::default().threads(2);
    for (table, choice) in kernel_choices() {
        let got = smof_run_with(
            &onnx,
            &[inputs[0].0.clone()],
            &[&inputs[0].1],
            choice,
            false,
            &opts,
        );
        assert_eq!(got[0].0, want[0].0, "[{table}] dims");
        assert_close(
            &format!("mini net, 2 threads [{table}]"),
            &got[0].1,
            &want[0].1,
            F32_REL,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Split, Slice, Resize, ConvTranspose, channel shuffle, Transpose, reductions
// ---------------------------------------------------------------------------------------

/// A one-input model whose body returns several outputs, all of them graph outputs.
fn case_multi(
    cases: &mut Cases,
    name: &str,
    opset: i64,
    shape: &[usize],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> Vec<String>,
) {
    let mut b = OnnxBuilder::with_seed(opset, seed_of(name));
    let x = b.input("x", shape);
    for y in f(&mut b, &x) {
        b.output(&y);
    }
    cases.check(
        name,
        &b.build(),
        &[random_input(seed_of(name), shape)],
        false,
    );
}

/// A Split node with `outs` outputs; returns their names.
fn split(
    b: &mut OnnxBuilder,
    inputs: &[&str],
    outs: usize,
    attrs: Vec<AttributeProto>,
) -> Vec<String> {
    let names: Vec<String> = (0..outs).map(|_| b.fresh("split")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let node = b.fresh("Split");
    b.node_full(&node, "Split", inputs, &refs, attrs);
    names
}

#[test]
fn split_every_form() {
    let mut c = Cases::new();
    case_multi(
        &mut c,
        "Split axis 1 sizes [16, 16] (input, opset 13)",
        13,
        &[1, 32, 5, 6],
        |b, x| {
            let s = b.init_i64("sizes", &[2], &[16, 16]);
            split(b, &[x, &s], 2, vec![attr::int("axis", 1)])
        },
    );
    case_multi(
        &mut c,
        "Split axis 1 sizes [5, 3, 9] (attribute, opset 11)",
        11,
        &[1, 17, 4, 3],
        |b, x| {
            split(
                b,
                &[x],
                3,
                vec![attr::int("axis", 1), attr::ints("split", &[5, 3, 9])],
            )
        },
    );
    case_multi(
        &mut c,
        "Split axis 1 equal, no sizes",
        13,
        &[1, 24, 3, 5],
        |b, x| split(b, &[x], 3, vec![attr::int("axis", 1)]),
    );
    case_multi(
        &mut c,
        "Split num_outputs 3 of 10 (opset 18)",
        18,
        &[1, 10, 4, 4],
        |b, x| {
            split(
                b,
                &[x],
                3,
                vec![attr::int("axis", 1), attr::int("num_outputs", 3)],
            )
        },
    );
    case_multi(
        &mut c,
        "Split axis 2 (rows) sizes [2, 5]",
        13,
        &[1, 6, 7, 5],
        |b, x| {
            let s = b.init_i64("sizes", &[2], &[2, 5]);
            split(b, &[x, &s], 2, vec![attr::int("axis", 2)])
        },
    );
    case_multi(
        &mut c,
        "Split axis -1 (columns) equal",
        13,
        &[1, 6, 3, 8],
        |b, x| split(b, &[x], 2, vec![attr::int("axis", -1)]),
    );
    // YOLOv8's C2f: split in two, a bottleneck on the second half, concat all three.
    case(
        &mut c,
        "C2f: Split -> conv -> Concat",
        13,
        &[1, 32, 8, 8],
        |b, x| {
            let x = b.conv(x, &ConvSpec::new(32, 32, [1, 1]));
            let s = b.init_i64("sizes", &[2], &[16, 16]);
            let parts = split(b, &[&x, &s], 2, vec![attr::int("axis", 1)]);
            let m = b.conv(&parts[1], &ConvSpec::new(16, 16, [3, 3]).same());
            let m = b.conv(&m, &ConvSpec::new(16, 16, [3, 3]).same());
            let m = b.node("Add", &[&m, &parts[1]], vec![]);
            let cat = b.node(
                "Concat",
                &[&parts[0], &parts[1], &m],
                vec![attr::int("axis", 1)],
            );
            b.conv(&cat, &ConvSpec::new(48, 32, [1, 1]))
        },
    );
    c.finish();
}

#[test]
fn slice_on_activations() {
    let mut c = Cases::new();
    let slice =
        |b: &mut OnnxBuilder, x: &str, st: &[i64], en: &[i64], ax: &[i64], sp: Option<&[i64]>| {
            let st = b.i64s("starts", st);
            let en = b.i64s("ends", en);
            let ax = b.i64s("axes", ax);
            match sp {
                Some(sp) => {
                    let sp = b.i64s("steps", sp);
                    b.node("Slice", &[x, &st, &en, &ax, &sp], vec![])
                }
                None => b.node("Slice", &[x, &st, &en, &ax], vec![]),
            }
        };
    case(
        &mut c,
        "Slice channels [2, 9)",
        13,
        &[1, 12, 7, 9],
        |b, x| slice(b, x, &[2], &[9], &[1], None),
    );
    case(
        &mut c,
        "Slice channels [-5, max) (ShuffleNet's chunk)",
        13,
        &[1, 12, 7, 9],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(12, 12, [1, 1]));
            let s = slice(b, &y, &[-5], &[i64::MAX], &[1], None);
            b.conv(&s, &ConvSpec::new(5, 8, [3, 3]).same())
        },
    );
    case(
        &mut c,
        "Slice H and W step 2",
        13,
        &[1, 5, 9, 11],
        |b, x| slice(b, x, &[1, 0], &[9, 11], &[2, 3], Some(&[2, 3])),
    );
    case(
        &mut c,
        "Slice channels step 3",
        13,
        &[1, 20, 3, 4],
        |b, x| slice(b, x, &[1], &[20], &[1], Some(&[3])),
    );
    case(
        &mut c,
        "Slice of a 2-D [2, 40] tensor",
        13,
        &[2, 40],
        |b, x| slice(b, x, &[3], &[-7], &[1], None),
    );
    case(&mut c, "Slice all four axes", 13, &[2, 6, 5, 7], |b, x| {
        slice(
            b,
            x,
            &[1, 1, 1, 2],
            &[2, 5, 4, 7],
            &[0, 1, 2, 3],
            Some(&[1, 2, 1, 2]),
        )
    });
    c.finish();
}

/// A Resize node with constant scales (`sizes` empty) or sizes.
fn resize(
    b: &mut OnnxBuilder,
    x: &str,
    scales: &[f32],
    sizes: &[i64],
    attrs: Vec<AttributeProto>,
) -> String {
    let roi = b.f32s("roi", &[]);
    if sizes.is_empty() {
        let s = b.f32s("scales", scales);
        b.node("Resize", &[x, &roi, &s], attrs)
    } else {
        let s = b.i64s("sizes", sizes);
        b.node("Resize", &[x, &roi, "", &s], attrs)
    }
}

#[test]
fn resize_nearest_and_linear() {
    let mut c = Cases::new();
    let s = |k: &str, v: &str| attr::string(k, v);
    // YOLOv8 and DBNet: nearest, asymmetric, floor, integer scales.
    for k in [2.0f32, 4.0] {
        case(
            &mut c,
            &format!("Resize nearest asymmetric floor x{k}"),
            13,
            &[1, 6, 5, 7],
            |b, x| {
                resize(
                    b,
                    x,
                    &[1.0, 1.0, k, k],
                    &[],
                    vec![
                        s("mode", "nearest"),
                        s("coordinate_transformation_mode", "asymmetric"),
                        s("nearest_mode", "floor"),
                    ],
                )
            },
        );
    }
    for (coord, round) in [
        ("half_pixel", "round_prefer_floor"),
        ("half_pixel", "round_prefer_ceil"),
        ("asymmetric", "round_prefer_floor"),
        ("align_corners", "round_prefer_floor"),
        ("pytorch_half_pixel", "floor"),
        ("half_pixel", "ceil"),
    ] {
        case(
            &mut c,
            &format!("Resize nearest {coord} {round} 5x7 -> 8x13"),
            13,
            &[1, 3, 5, 7],
            |b, x| {
                resize(
                    b,
                    x,
                    &[],
                    &[1, 3, 8, 13],
                    vec![
                        s("mode", "nearest"),
                        s("coordinate_transformation_mode", coord),
                        s("nearest_mode", round),
                    ],
                )
            },
        );
    }
    for coord in [
        "half_pixel",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
    ] {
        case(
            &mut c,
            &format!("Resize linear {coord} x2"),
            13,
            &[1, 5, 6, 4],
            |b, x| {
                resize(
                    b,
                    x,
                    &[1.0, 1.0, 2.0, 2.0],
                    &[],
                    vec![
                        s("mode", "linear"),
                        s("coordinate_transformation_mode", coord),
                    ],
                )
            },
        );
        case(
            &mut c,
            &format!("Resize linear {coord} 9x11 -> 4x5"),
            13,
            &[1, 5, 9, 11],
            |b, x| {
                resize(
                    b,
                    x,
                    &[],
                    &[1, 5, 4, 5],
                    vec![
                        s("mode", "linear"),
                        s("coordinate_transformation_mode", coord),
                    ],
                )
            },
        );
    }
    case(
        &mut c,
        "Resize nearest default attributes x3 (opset 11)",
        11,
        &[1, 4, 3, 5],
        |b, x| resize(b, x, &[1.0, 1.0, 3.0, 3.0], &[], vec![]),
    );
    case(
        &mut c,
        "Resize linear then conv (FPN)",
        13,
        &[1, 8, 6, 6],
        |b, x| {
            let y = resize(b, x, &[1.0, 1.0, 2.0, 2.0], &[], vec![s("mode", "linear")]);
            b.conv(&y, &ConvSpec::new(8, 8, [3, 3]).same())
        },
    );
    c.finish();
}

#[test]
fn conv_transpose() {
    let mut c = Cases::new();
    let deconv = |b: &mut OnnxBuilder,
                  x: &str,
                  ic: usize,
                  ocg: usize,
                  k: [usize; 2],
                  group: usize,
                  attrs: Vec<AttributeProto>,
                  bias: bool| {
        let w = b.weight("w", &[ic, ocg, k[0], k[1]], Some(ic / group * k[0] * k[1]));
        let mut attrs = attrs;
        attrs.push(attr::int("group", group as i64));
        if bias {
            let bb = b.random_init("b", &[ocg * group], -0.5, 0.5);
            b.node("ConvTranspose", &[x, &w, &bb], attrs)
        } else {
            b.node("ConvTranspose", &[x, &w], attrs)
        }
    };
    case(
        &mut c,
        "ConvTranspose 2x2 s2 (DBNet)",
        13,
        &[1, 16, 5, 6],
        |b, x| {
            deconv(
                b,
                x,
                16,
                8,
                [2, 2],
                1,
                vec![attr::ints("strides", &[2, 2])],
                true,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose 3x3 s2 p1 output_padding 1",
        13,
        &[1, 6, 5, 4],
        |b, x| {
            deconv(
                b,
                x,
                6,
                7,
                [3, 3],
                1,
                vec![
                    attr::ints("strides", &[2, 2]),
                    attr::ints("pads", &[1, 1, 1, 1]),
                    attr::ints("output_padding", &[1, 1]),
                ],
                true,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose 4x4 s2 p1, no bias",
        13,
        &[1, 5, 4, 6],
        |b, x| {
            deconv(
                b,
                x,
                5,
                3,
                [4, 4],
                1,
                vec![
                    attr::ints("strides", &[2, 2]),
                    attr::ints("pads", &[1, 1, 1, 1]),
                ],
                false,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose 3x3 s1 p1 groups 2",
        13,
        &[1, 8, 5, 5],
        |b, x| {
            deconv(
                b,
                x,
                8,
                3,
                [3, 3],
                2,
                vec![attr::ints("pads", &[1, 1, 1, 1])],
                true,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose depthwise 4x4 s2 p1",
        13,
        &[1, 6, 4, 4],
        |b, x| {
            deconv(
                b,
                x,
                6,
                1,
                [4, 4],
                6,
                vec![
                    attr::ints("strides", &[2, 2]),
                    attr::ints("pads", &[1, 1, 1, 1]),
                ],
                true,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose 3x2 dilation 2 asymmetric pads",
        13,
        &[1, 4, 5, 6],
        |b, x| {
            deconv(
                b,
                x,
                4,
                5,
                [3, 2],
                1,
                vec![
                    attr::ints("dilations", &[2, 2]),
                    attr::ints("strides", &[1, 2]),
                    attr::ints("pads", &[1, 0, 2, 1]),
                ],
                true,
            )
        },
    );
    case(
        &mut c,
        "ConvTranspose -> BatchNorm -> Relu",
        13,
        &[1, 8, 4, 4],
        |b, x| {
            let y = deconv(
                b,
                x,
                8,
                4,
                [2, 2],
                1,
                vec![attr::ints("strides", &[2, 2])],
                true,
            );
            let y = b.batchnorm(&y, 4, None);
            b.node("Relu", &[&y], vec![])
        },
    );
    c.finish();
}

#[test]
fn channel_shuffle_and_transpose() {
    let mut c = Cases::new();
    for (ch, g) in [(24usize, 2usize), (24, 3), (32, 4)] {
        case(
            &mut c,
            &format!("channel shuffle {ch} channels, {g} groups"),
            13,
            &[1, ch, 5, 6],
            |b, x| {
                let x = b.conv(x, &ConvSpec::new(ch, ch, [1, 1]));
                let to5 = b.i64s("shape", &[1, g as i64, (ch / g) as i64, 5, 6]);
                let r = b.node("Reshape", &[&x, &to5], vec![]);
                let t = b.node(
                    "Transpose",
                    &[&r],
                    vec![attr::ints("perm", &[0, 2, 1, 3, 4])],
                );
                let to4 = b.i64s("shape", &[1, -1, 5, 6]);
                let y = b.node("Reshape", &[&t, &to4], vec![]);
                b.conv(&y, &ConvSpec::new(ch, 8, [3, 3]).same())
            },
        );
    }
    for perm in [[0i64, 2, 3, 1], [0, 1, 3, 2], [0, 3, 1, 2], [1, 0, 2, 3]] {
        case(
            &mut c,
            &format!("Transpose {perm:?}"),
            13,
            &[2, 5, 3, 4],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(5, 6, [1, 1]));
                b.node("Transpose", &[&y], vec![attr::ints("perm", &perm)])
            },
        );
    }
    c.finish();
}

#[test]
fn reductions() {
    let mut c = Cases::new();
    let reduce = |b: &mut OnnxBuilder, x: &str, op: &str, axes: &[i64], keep: i64| {
        b.node(
            op,
            &[x],
            vec![attr::ints("axes", axes), attr::int("keepdims", keep)],
        )
    };
    case(
        &mut c,
        "ReduceMean [2, 3] keepdims 0 -> Gemm (MnasNet)",
        13,
        &[1, 16, 5, 6],
        |b, x| {
            let r = reduce(b, x, "ReduceMean", &[2, 3], 0);
            b.gemm(&r, &GemmSpec::new(16, 10))
        },
    );
    case(
        &mut c,
        "ReduceMean [2, 3] keepdims 1",
        13,
        &[1, 7, 5, 6],
        |b, x| reduce(b, x, "ReduceMean", &[2, 3], 1),
    );
    case(
        &mut c,
        "ReduceMean [1] keepdims 1",
        13,
        &[1, 7, 5, 6],
        |b, x| reduce(b, x, "ReduceMean", &[1], 1),
    );
    case(
        &mut c,
        "ReduceMax [-1, -2] keepdims 1",
        13,
        &[2, 7, 5, 6],
        |b, x| reduce(b, x, "ReduceMax", &[-1, -2], 1),
    );
    case(
        &mut c,
        "ReduceMax [1] keepdims 1",
        13,
        &[1, 9, 4, 3],
        |b, x| reduce(b, x, "ReduceMax", &[1], 1),
    );
    case(
        &mut c,
        "ReduceMean [3] keepdims 1",
        13,
        &[1, 4, 5, 6],
        |b, x| reduce(b, x, "ReduceMean", &[3], 1),
    );
    case(
        &mut c,
        "ReduceSum axes [1, 2, 3] as input (opset 13)",
        13,
        &[1, 4, 5, 6],
        |b, x| {
            let ax = b.init_i64("axes", &[3], &[1, 2, 3]);
            b.node("ReduceSum", &[x, &ax], vec![attr::int("keepdims", 1)])
        },
    );
    case(
        &mut c,
        "ReduceMean axes [2, 3] as input (opset 18), keepdims 0",
        18,
        &[1, 6, 4, 4],
        |b, x| {
            let ax = b.init_i64("axes", &[2], &[2, 3]);
            b.node("ReduceMean", &[x, &ax], vec![attr::int("keepdims", 0)])
        },
    );
    case(
        &mut c,
        "ReduceSum over the features of [3, 20], keepdims 1",
        13,
        &[3, 20],
        |b, x| {
            let ax = b.init_i64("axes", &[1], &[1]);
            b.node("ReduceSum", &[x, &ax], vec![attr::int("keepdims", 1)])
        },
    );
    c.finish();
}

#[test]
fn unary_functions() {
    let mut c = Cases::new();
    // Positive inputs for the functions defined on them: |x| + 0.25.
    let positive = |b: &mut OnnxBuilder, x: &str| {
        let a = b.node("Abs", &[x], vec![]);
        let q = b.f32s("quarter", &[0.25]);
        b.node("Add", &[&a, &q], vec![])
    };
    for op in ["Abs", "Neg", "Exp", "Erf", "Softplus", "Floor", "Ceil"] {
        case(
            &mut c,
            &format!("{op} after a conv"),
            13,
            &[1, 5, 6, 7],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(5, 9, [3, 3]).same());
                b.node(op, &[&y], vec![])
            },
        );
    }
    for op in ["Sqrt", "Log", "Reciprocal"] {
        case(
            &mut c,
            &format!("{op} of positive values"),
            13,
            &[1, 6, 5, 4],
            |b, x| {
                let p = positive(b, x);
                b.node(op, &[&p], vec![])
            },
        );
    }
    case(&mut c, "Mish (opset 18)", 18, &[1, 6, 5, 4], |b, x| {
        b.node("Mish", &[x], vec![])
    });
    case(
        &mut c,
        "Mish written out: x * tanh(softplus(x))",
        13,
        &[1, 6, 5, 4],
        |b, x| {
            let sp = b.node("Softplus", &[x], vec![]);
            let t = b.node("Tanh", &[&sp], vec![]);
            b.node("Mul", &[x, &t], vec![])
        },
    );
    case(
        &mut c,
        "Gelu written out: x * 0.5 * (1 + erf(x / sqrt 2))",
        13,
        &[1, 6, 5, 4],
        |b, x| b.gelu_written_out(x),
    );
    case(
        &mut c,
        "HardSwish written out: x * clip(x + 3, 0, 6) / 6",
        13,
        &[1, 6, 5, 4],
        |b, x| {
            let three = b.f32s("three", &[3.0]);
            let s = b.node("Add", &[x, &three], vec![]);
            let lo = b.f32s("lo", &[0.0]);
            let hi = b.f32s("hi", &[6.0]);
            let cl = b.node("Clip", &[&s, &lo, &hi], vec![]);
            let m = b.node("Mul", &[x, &cl], vec![]);
            let six = b.f32s("six", &[6.0]);
            b.node("Div", &[&m, &six], vec![])
        },
    );
    c.finish();
}

#[test]
fn binary_broadcasting() {
    let mut c = Cases::new();
    let two = |c: &mut Cases, name: &str, xs: &[usize], ys: &[usize], op: &'static str| {
        let mut b = OnnxBuilder::with_seed(13, seed_of(name));
        let x = b.input("x", xs);
        let y = b.input("y", ys);
        let out = b.node(op, &[&x, &y], vec![]);
        b.output(&out);
        let inputs = [
            random_input(seed_of(name), xs),
            random_input(seed_of(name) ^ 1, ys),
        ];
        c.check(name, &b.build(), &inputs, false);
    };
    two(
        &mut c,
        "Add [1,8,5,6] + [1,1,5,6]",
        &[1, 8, 5, 6],
        &[1, 1, 5, 6],
        "Add",
    );
    two(
        &mut c,
        "Sub [1,8,5,6] - [1,8,1,1]",
        &[1, 8, 5, 6],
        &[1, 8, 1, 1],
        "Sub",
    );
    two(
        &mut c,
        "Sub [1,8,1,6] - [1,1,5,1]",
        &[1, 8, 1, 6],
        &[1, 1, 5, 1],
        "Sub",
    );
    two(
        &mut c,
        "Max [1,8,5,6], [1,8,5,6]",
        &[1, 8, 5, 6],
        &[1, 8, 5, 6],
        "Max",
    );
    two(
        &mut c,
        "Min [1,8,5,6], [1,1,1,6]",
        &[1, 8, 5, 6],
        &[1, 1, 1, 6],
        "Min",
    );
    two(
        &mut c,
        "Mul [2,8,5,6] * [1,8,5,6]",
        &[2, 8, 5, 6],
        &[1, 8, 5, 6],
        "Mul",
    );
    two(&mut c, "Add 2-D [3,10] + [1,10]", &[3, 10], &[1, 10], "Add");
    case(
        &mut c,
        "Div by |y| + 1 over channels",
        13,
        &[1, 8, 5, 6],
        |b, x| {
            let gap = b.node("GlobalAveragePool", &[x], vec![]);
            let a = b.node("Abs", &[&gap], vec![]);
            let one = b.f32s("one", &[1.0]);
            let d = b.node("Add", &[&a, &one], vec![]);
            b.node("Div", &[x, &d], vec![])
        },
    );
    let with_const = |c: &mut Cases,
                      name: &str,
                      shape: &[usize],
                      cdims: &[usize],
                      op: &'static str,
                      first: bool| {
        case(c, name, 13, shape, |b, x| {
            let k = b.random_init("k", cdims, 0.5, 1.5);
            if first {
                b.node(op, &[&k, x], vec![])
            } else {
                b.node(op, &[x, &k], vec![])
            }
        });
    };
    with_const(
        &mut c,
        "Mul by a [1,1,5,6] constant",
        &[1, 8, 5, 6],
        &[1, 1, 5, 6],
        "Mul",
        false,
    );
    with_const(
        &mut c,
        "Add a full-shape constant",
        &[1, 8, 5, 6],
        &[1, 8, 5, 6],
        "Add",
        false,
    );
    with_const(
        &mut c,
        "Sub from a [5,6] constant (aligned right)",
        &[1, 8, 5, 6],
        &[5, 6],
        "Sub",
        true,
    );
    with_const(
        &mut c,
        "Div a [6] constant by x",
        &[1, 8, 5, 6],
        &[6],
        "Div",
        true,
    );
    with_const(
        &mut c,
        "Div a per-channel constant by x",
        &[1, 8, 5, 6],
        &[8, 1, 1],
        "Div",
        true,
    );
    with_const(
        &mut c,
        "Max with a [1,8,1,1] constant",
        &[1, 8, 5, 6],
        &[1, 8, 1, 1],
        "Max",
        false,
    );
    with_const(
        &mut c,
        "2-D [2,10] * [10] constant",
        &[2, 10],
        &[10],
        "Mul",
        false,
    );
    with_const(
        &mut c,
        "PRelu per-channel slope [8,1,1]",
        &[1, 8, 5, 6],
        &[8, 1, 1],
        "PRelu",
        false,
    );
    case(&mut c, "PRelu scalar slope", 13, &[1, 8, 5, 6], |b, x| {
        let k = b.f32s("slope", &[0.2]);
        b.node("PRelu", &[x, &k], vec![])
    });
    for e in [2.0f32, 3.0, 0.5, 1.0] {
        case(
            &mut c,
            &format!("Pow(|x| + 0.1, {e})"),
            13,
            &[1, 4, 5, 6],
            |b, x| {
                let a = b.node("Abs", &[x], vec![]);
                let t = b.f32s("tenth", &[0.1]);
                let p = b.node("Add", &[&a, &t], vec![]);
                let k = b.f32s("exponent", &[e]);
                b.node("Pow", &[&p, &k], vec![])
            },
        );
    }
    c.finish();
}

#[test]
fn gelu_opset_20() {
    let mut c = Cases::new();
    for approx in ["none", "tanh"] {
        case(
            &mut c,
            &format!("Gelu approximate={approx} (opset 20)"),
            20,
            &[1, 6, 5, 4],
            |b, x| b.node("Gelu", &[x], vec![attr::string("approximate", approx)]),
        );
    }
    c.finish();
}

/// The activations written out as several ops are fused into one: Mish into a unary op,
/// HardSwish into the conv before it.
#[test]
fn written_out_activations_are_fused() {
    use smof::graph::{Activation, Op, UnaryKind};
    let conv_then = |f: &dyn Fn(&mut OnnxBuilder, &str) -> String| {
        let onnx = build(13, &[1, 4, 6, 6], |b, x| {
            let y = b.conv(x, &ConvSpec::new(4, 8, [3, 3]).same());
            f(b, &y)
        });
        smof_tests::smof_convert(&onnx, &[], smof::KernelChoice::Portable, false)
            .expect("converts")
            .graph
    };
    let g = conv_then(&|b, x| {
        let sp = b.node("Softplus", &[x], vec![]);
        let t = b.node("Tanh", &[&sp], vec![]);
        b.node("Mul", &[x, &t], vec![])
    });
    let ops: Vec<Op> = g.nodes.iter().map(|n| n.op).collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(
        ops[1],
        Op::Unary {
            kind: UnaryKind::Mish
        }
    );
    let g = conv_then(&|b, x| {
        let three = b.f32s("three", &[3.0]);
        let s = b.node("Add", &[x, &three], vec![]);
        let lo = b.f32s("lo", &[0.0]);
        let hi = b.f32s("hi", &[6.0]);
        let cl = b.node("Clip", &[&s, &lo, &hi], vec![]);
        let m = b.node("Mul", &[x, &cl], vec![]);
        let six = b.f32s("six", &[6.0]);
        b.node("Div", &[&m, &six], vec![])
    });
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    match g.nodes[0].op {
        Op::Conv(c) => assert_eq!(c.act, Activation::HardSwish),
        ref other => panic!("expected a conv with HardSwish, got {other:?}"),
    }
}

#[test]
fn pad_depth_space_tile_expand() {
    let mut c = Cases::new();
    let pad = |b: &mut OnnxBuilder, x: &str, pads: &[i64], mode: &str, value: Option<f32>| {
        let p = b.i64s("pads", pads);
        let mut ins = vec![x.to_string(), p];
        if let Some(v) = value {
            let name = b.fresh("value");
            ins.push(b.init(&name, &[], &[v]));
        }
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        b.node("Pad", &refs, vec![attr::string("mode", mode)])
    };
    case(
        &mut c,
        "Pad constant 0, spatial",
        13,
        &[1, 5, 6, 7],
        |b, x| pad(b, x, &[0, 0, 1, 2, 0, 0, 3, 1], "constant", None),
    );
    case(
        &mut c,
        "Pad constant -1.5, channels and space",
        13,
        &[1, 5, 6, 7],
        |b, x| pad(b, x, &[0, 2, 1, 0, 0, 1, 0, 2], "constant", Some(-1.5)),
    );
    case(
        &mut c,
        "Pad reflect then conv",
        13,
        &[1, 4, 6, 7],
        |b, x| {
            let p = pad(b, x, &[0, 0, 2, 1, 0, 0, 1, 2], "reflect", None);
            b.conv(&p, &ConvSpec::new(4, 6, [3, 3]))
        },
    );
    case(&mut c, "Pad edge", 13, &[1, 3, 4, 5], |b, x| {
        pad(b, x, &[0, 1, 3, 2, 0, 2, 1, 3], "edge", None)
    });
    for (op, mode) in [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD")] {
        case(
            &mut c,
            &format!("{op} {mode} block 2"),
            13,
            &[1, 12, 3, 4],
            |b, x| {
                b.node(
                    op,
                    &[x],
                    vec![attr::int("blocksize", 2), attr::string("mode", mode)],
                )
            },
        );
    }
    case(
        &mut c,
        "SpaceToDepth block 2 then conv",
        13,
        &[1, 3, 8, 6],
        |b, x| {
            let s = b.node("SpaceToDepth", &[x], vec![attr::int("blocksize", 2)]);
            b.conv(&s, &ConvSpec::new(12, 8, [1, 1]))
        },
    );
    case(&mut c, "Tile [1, 2, 3, 1]", 13, &[1, 3, 4, 5], |b, x| {
        let r = b.i64s("repeats", &[1, 2, 3, 1]);
        b.node("Tile", &[x, &r], vec![])
    });
    case(
        &mut c,
        "Expand [1, 6, 1, 1] to [1, 6, 4, 5]",
        13,
        &[1, 6, 5, 4],
        |b, x| {
            let g = b.node("GlobalAveragePool", &[x], vec![]);
            let s = b.i64s("shape", &[1, 6, 4, 5]);
            b.node("Expand", &[&g, &s], vec![])
        },
    );
    c.finish();
}

#[test]
fn softmax_and_log_softmax_on_any_axis() {
    let mut c = Cases::new();
    for op in ["Softmax", "LogSoftmax"] {
        for axis in [1i64, 2, 3, -1] {
            case(
                &mut c,
                &format!("{op} axis {axis} (opset 13)"),
                13,
                &[2, 5, 4, 6],
                |b, x| {
                    let y = b.conv(x, &ConvSpec::new(5, 7, [3, 3]).same());
                    b.node(op, &[&y], vec![attr::int("axis", axis)])
                },
            );
        }
        case(
            &mut c,
            &format!("{op} 2-D (opset 11)"),
            11,
            &[3, 10],
            |b, x| b.node(op, &[x], vec![attr::int("axis", 1)]),
        );
        case(
            &mut c,
            &format!("{op} axis 3 (opset 11, the last axis)"),
            11,
            &[1, 5, 4, 6],
            |b, x| b.node(op, &[x], vec![attr::int("axis", 3)]),
        );
    }
    c.finish();
}

#[test]
fn gather_with_constant_indices() {
    let mut c = Cases::new();
    let gather = |b: &mut OnnxBuilder, x: &str, idx: &[i64], axis: i64| {
        let i = b.i64s("indices", idx);
        b.node("Gather", &[x, &i], vec![attr::int("axis", axis)])
    };
    case(
        &mut c,
        "Gather channels [0, 2, 3, 7, 1, -1]",
        13,
        &[1, 9, 4, 5],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(9, 9, [1, 1]));
            gather(b, &y, &[0, 2, 3, 7, 1, -1], 1)
        },
    );
    case(
        &mut c,
        "Gather rows [1, 2, 3]",
        13,
        &[1, 4, 6, 5],
        |b, x| gather(b, x, &[1, 2, 3], 2),
    );
    case(
        &mut c,
        "Gather columns [-2, -1]",
        13,
        &[1, 4, 6, 5],
        |b, x| gather(b, x, &[-2, -1], 3),
    );
    case(
        &mut c,
        "Gather features [5, 6, 4] of [2, 10]",
        13,
        &[2, 10],
        |b, x| gather(b, x, &[5, 6, 4], 1),
    );
    c.finish();
}

#[test]
fn rank3_tensors_and_a_yolo_decoding_head() {
    let mut c = Cases::new();
    let shape = |b: &mut OnnxBuilder, x: &str, dims: &[i64]| {
        let s = b.i64s("shape", dims);
        b.node("Reshape", &[x, &s], vec![])
    };
    case(
        &mut c,
        "Reshape to [N, C, L], rank-3 output",
        13,
        &[2, 3, 4, 5],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(3, 10, [3, 3]).same());
            let r = shape(b, &y, &[2, 10, 20]);
            b.node("Sigmoid", &[&r], vec![])
        },
    );
    // The YOLOv8 decoding head: two levels flattened and joined along L, split into box
    // distributions and classes, DFL (reshape, transpose, softmax, 1x1 conv), then the boxes
    // from anchors, strides and the class probabilities.
    case(
        &mut c,
        "YOLOv8-style decoding head",
        17,
        &[1, 3, 16, 16],
        |b, x| {
            let p3 = b.conv(x, &ConvSpec::new(3, 72, [3, 3]).same().stride(2, 2));
            let p4 = b.conv(&p3, &ConvSpec::new(72, 72, [3, 3]).same().stride(2, 2));
            let f3 = shape(b, &p3, &[1, 72, 64]);
            let f4 = shape(b, &p4, &[1, 72, 16]);
            let cat = b.node("Concat", &[&f3, &f4], vec![attr::int("axis", 2)]);
            let sizes = b.i64s("split", &[64, 8]);
            let (dist, cls) = (b.fresh("dist"), b.fresh("cls"));
            b.node_full(
                "split",
                "Split",
                &[&cat, &sizes],
                &[&dist, &cls],
                vec![attr::int("axis", 1)],
            );
            let (dist, cls) = (&dist, &cls);
            let d = shape(b, dist, &[1, 4, 16, 80]);
            let d = b.node("Transpose", &[&d], vec![attr::ints("perm", &[0, 2, 1, 3])]);
            let d = b.node("Softmax", &[&d], vec![attr::int("axis", 1)]);
            let arange: Vec<f32> = (0..16).map(|v| v as f32).collect();
            let w = b.init("dfl.weight", &[1, 16, 1, 1], &arange);
            let d = b.node("Conv", &[&d, &w], vec![]);
            let d = shape(b, &d, &[1, 4, 80]);
            let st = b.i64s("starts", &[0]);
            let mid = b.i64s("mid", &[2]);
            let en = b.i64s("ends", &[4]);
            let ax = b.i64s("axes", &[1]);
            let lt = b.node("Slice", &[&d, &st, &mid, &ax], vec![]);
            let rb = b.node("Slice", &[&d, &mid, &en, &ax], vec![]);
            let anchors: Vec<f32> = (0..160).map(|i| (i % 80) as f32 * 0.5 + 0.25).collect();
            let anc = b.init("anchors", &[1, 2, 80], &anchors);
            let x1y1 = b.node("Sub", &[&anc, &lt], vec![]);
            let x2y2 = b.node("Add", &[&anc, &rb], vec![]);
            let sum = b.node("Add", &[&x1y1, &x2y2], vec![]);
            let two = b.init("two", &[], &[2.0]);
            let cxy = b.node("Div", &[&sum, &two], vec![]);
            let wh = b.node("Sub", &[&x2y2, &x1y1], vec![]);
            let boxes = b.node("Concat", &[&cxy, &wh], vec![attr::int("axis", 1)]);
            let strides: Vec<f32> = (0..80).map(|i| if i < 64 { 8.0 } else { 16.0 }).collect();
            let s = b.init("strides", &[1, 80], &strides);
            let boxes = b.node("Mul", &[&boxes, &s], vec![]);
            let probs = b.node("Sigmoid", &[cls], vec![]);
            b.node("Concat", &[&boxes, &probs], vec![attr::int("axis", 1)])
        },
    );
    case(
        &mut c,
        "Transpose [0, 2, 1] of [N, C, L]",
        13,
        &[1, 6, 3, 4],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(6, 9, [1, 1]));
            let r = shape(b, &y, &[1, 9, 12]);
            b.node("Transpose", &[&r], vec![attr::ints("perm", &[0, 2, 1])])
        },
    );
    for (op, axis) in [("Softmax", -1i64), ("LogSoftmax", 1)] {
        case(
            &mut c,
            &format!("{op} axis {axis} of [N, C, L]"),
            13,
            &[2, 5, 3, 3],
            |b, x| {
                let r = shape(b, x, &[2, 5, 9]);
                b.node(op, &[&r], vec![attr::int("axis", axis)])
            },
        );
    }
    case(
        &mut c,
        "rank-3 input, reshaped to 4-D for a conv",
        13,
        &[2, 6, 10],
        |b, x| {
            let y = b.node("Relu", &[x], vec![]);
            let y = shape(b, &y, &[2, 6, 2, 5]);
            b.conv(&y, &ConvSpec::new(6, 4, [3, 3]).same())
        },
    );
    case(
        &mut c,
        "Unsqueeze and Squeeze around a rank-3 Mul",
        13,
        &[1, 4, 12],
        |b, x| {
            let g = b.random_init("gate", &[4, 1], -1.0, 1.0);
            let y = b.node("Mul", &[x, &g], vec![]);
            let ax = b.i64s("axes", &[2]);
            let y = b.node("Unsqueeze", &[&y, &ax], vec![]);
            let y = b.conv(&y, &ConvSpec::new(4, 5, [1, 1]));
            b.node("Squeeze", &[&y, &ax], vec![])
        },
    );
    case(
        &mut c,
        "Flatten axis 2 and Reshape to [N·C, H, W]",
        13,
        &[2, 3, 4, 5],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(3, 7, [3, 3]).same());
            let f = b.node("Flatten", &[&y], vec![attr::int("axis", 2)]);
            shape(b, &f, &[2, 7, 4, 5])
        },
    );
    case(
        &mut c,
        "Concat of 4-D tensors along H and W",
        13,
        &[1, 3, 6, 6],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).same());
            let z = b.conv(x, &ConvSpec::new(3, 5, [3, 3]).stride(2, 2).same());
            let zz = b.node("Concat", &[&z, &z], vec![attr::int("axis", 3)]);
            b.node("Concat", &[&y, &zz], vec![attr::int("axis", 2)])
        },
    );
    c.finish();

    // An operator that does not take rank-3 tensors says so, naming the tensor's dims.
    let onnx = build(13, &[1, 4, 12], |b, x| {
        let w = b.random_init("w", &[5, 4, 3], -1.0, 1.0);
        b.node("Conv", &[x, &w], vec![])
    });
    let err = smof_converter::convert(&onnx, &Default::default())
        .expect_err("a Conv over a rank-3 tensor must be refused")
        .to_string();
    assert!(
        err.contains("[1, 4, 12]") && err.contains("only 2-D and 4-D"),
        "unexpected error: {err}"
    );
}

#[test]
fn arg_max_on_every_axis() {
    let mut c = Cases::new();
    for (axis, keepdims) in [(1i64, 1i64), (2, 1), (3, 0), (-1, 1), (1, 0)] {
        case(
            &mut c,
            &format!("ArgMax axis {axis} keepdims {keepdims}"),
            13,
            &[2, 6, 5, 7],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(6, 11, [3, 3]).same());
                b.node(
                    "ArgMax",
                    &[&y],
                    vec![attr::int("axis", axis), attr::int("keepdims", keepdims)],
                )
            },
        );
    }
    case(
        &mut c,
        "ArgMax of [N, C, L] axis 1, then Cast to float",
        13,
        &[1, 9, 4, 4],
        |b, x| {
            let s = b.i64s("shape", &[1, 9, 16]);
            let r = b.node("Reshape", &[x, &s], vec![]);
            let a = b.node("ArgMax", &[&r], vec![attr::int("axis", 1)]);
            b.node("Cast", &[&a], vec![attr::int("to", 1)])
        },
    );
    case(
        &mut c,
        "ArgMax of [N, F] (top-1 class)",
        13,
        &[3, 10],
        |b, x| b.node("ArgMax", &[x], vec![attr::int("axis", 1)]),
    );
    // Ties: the first maximum wins, as in ONNX with select_last_index=0.
    case(
        &mut c,
        "ArgMax with ties (ReLU zeros)",
        13,
        &[1, 8, 3, 3],
        |b, x| {
            let y = b.node("Relu", &[x], vec![]);
            let y = b.node("Neg", &[&y], vec![]);
            b.node("ArgMax", &[&y], vec![attr::int("axis", 1)])
        },
    );
    c.finish();
}

#[test]
fn shape_arithmetic_folds_range_equal_where() {
    let mut c = Cases::new();
    // A mask along W made from the input's shape: Shape -> Gather -> Range -> Equal/Less ->
    // Not -> Where, then applied to the activation; and a Reshape whose target comes from
    // Shape, Gather and Concat.
    case(
        &mut c,
        "Range, Equal, Less, Not, Where on shapes",
        13,
        &[2, 5, 4, 6],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(5, 7, [3, 3]).same());
            let s = b.node("Shape", &[&y], vec![]);
            let i3 = b.i64s("i3", &[3]);
            let w = b.node("Gather", &[&s, &i3], vec![attr::int("axis", 0)]);
            let zero = b.init_i64("zero", &[], &[0]);
            let one = b.init_i64("one", &[], &[1]);
            let w = b.node("Squeeze", &[&w], vec![]);
            let r = b.node("Range", &[&zero, &w, &one], vec![]);
            let two = b.init_i64("two", &[], &[2]);
            let four = b.init_i64("four", &[], &[4]);
            let eq = b.node("Equal", &[&r, &two], vec![]);
            let lt = b.node("Less", &[&r, &four], vec![]);
            let nlt = b.node("Not", &[&lt], vec![]);
            let hi = b.init("hi", &[], &[3.0]);
            let lo = b.init("lo", &[], &[0.5]);
            let one_f = b.init("one_f", &[], &[1.0]);
            let m1 = b.node("Where", &[&eq, &hi, &one_f], vec![]);
            let m2 = b.node("Where", &[&nlt, &lo, &m1], vec![]);
            let z = b.node("Mul", &[&y, &m2], vec![]);
            let i0 = b.i64s("i0", &[0]);
            let n = b.node("Gather", &[&s, &i0], vec![attr::int("axis", 0)]);
            let rest = b.i64s("rest", &[-1]);
            let target = b.node("Concat", &[&n, &rest], vec![attr::int("axis", 0)]);
            b.node("Reshape", &[&z, &target], vec![])
        },
    );
    c.finish();
}

/// Opsets 22 to 28: the ops whose schemas got new versions there (types only, plus
/// SpaceToDepth's `mode` in 28), in one model declared at each opset, against tract; and a
/// SpaceToDepth of the CRD order is refused, by name.
#[test]
fn opsets_22_to_28() {
    let mut c = Cases::new();
    for opset in [22, 23, 25, 28] {
        case(
            &mut c,
            &format!("opset {opset}"),
            opset,
            &[1, 4, 8, 8],
            |b, x| {
                let y = b.conv(x, &ConvSpec::new(4, 8, [3, 3]).same());
                let y = b.node("HardSwish", &[&y], vec![]);
                let y = b.node(
                    "MaxPool",
                    &[&y],
                    vec![
                        attr::ints("kernel_shape", &[3, 3]),
                        attr::ints("pads", &[1, 1, 1, 1]),
                    ],
                );
                let y = b.node("SpaceToDepth", &[&y], vec![attr::int("blocksize", 2)]);
                let y = b.node(
                    "DepthToSpace",
                    &[&y],
                    vec![attr::int("blocksize", 2), attr::string("mode", "CRD")],
                );
                let y = b.node("Mish", &[&y], vec![]);
                let w = b.weight("w", &[8, 4, 2, 2], Some(8 * 4));
                let y = b.node(
                    "ConvTranspose",
                    &[&y, &w],
                    vec![attr::ints("strides", &[2, 2])],
                );
                let y = b.node("Softplus", &[&y], vec![]);
                let y = b.node("HardSigmoid", &[&y], vec![]);
                let y = b.node("Dropout", &[&y], vec![]);
                let y = b.node(
                    "AveragePool",
                    &[&y],
                    vec![
                        attr::ints("kernel_shape", &[3, 3]),
                        attr::ints("pads", &[1, 1, 1, 1]),
                    ],
                );
                let y = b.node("Transpose", &[&y], vec![attr::ints("perm", &[0, 1, 3, 2])]);
                let g = b.node("GlobalMaxPool", &[&y], vec![]);
                b.node("Flatten", &[&g], vec![])
            },
        );
    }
    c.finish();

    let onnx = build(28, &[1, 4, 8, 8], |b, x| {
        b.node(
            "SpaceToDepth",
            &[x],
            vec![attr::int("blocksize", 2), attr::string("mode", "CRD")],
        )
    });
    let e = smof_converter::convert(&onnx, &Default::default())
        .expect_err("SpaceToDepth mode=CRD refused")
        .to_string();
    assert!(e.contains("SpaceToDepth") && e.contains("DCR"), "{e}");
}

/// Channels-last views (`converter/src/onnx/channels_last.rs`), as PyTorch's ConvNeXt
/// writes them: a block (depthwise 7x7, NHWC transpose, LayerNormalization over the last
/// axis, two MatMuls with a bias and GELU between, transpose back, layer scale, residual),
/// `LayerNorm2d`, a view read by an op that needs the NHWC tensor itself (its transpose is
/// then computed, also when it comes before a per-pixel reader), a view as the graph
/// output, LayerNormalization of `[N, F]` features, and the 1-D reshape plus in-order Gather of
/// PyTorch's `as_strided` export; against tract.
#[test]
fn channels_last_views_and_layer_norm() {
    let mut c = Cases::new();
    let layer_norm = |b: &mut OnnxBuilder, x: &str, ch: usize| {
        let s = b.random_init("ln_scale", &[ch], 0.5, 1.5);
        let t = b.random_init("ln_bias", &[ch], -0.5, 0.5);
        b.node(
            "LayerNormalization",
            &[x, &s, &t],
            vec![attr::int("axis", -1), attr::float("epsilon", 1e-6)],
        )
    };
    let nhwc = |b: &mut OnnxBuilder, x: &str| {
        b.node("Transpose", &[x], vec![attr::ints("perm", &[0, 2, 3, 1])])
    };
    let nchw = |b: &mut OnnxBuilder, x: &str| {
        b.node("Transpose", &[x], vec![attr::ints("perm", &[0, 3, 1, 2])])
    };
    for (opset, ch) in [(17, 24), (20, 40)] {
        case(
            &mut c,
            &format!("ConvNeXt block, opset {opset}, {ch} channels"),
            opset,
            &[1, ch, 9, 11],
            |b, x| {
                let d = b.conv(x, &ConvSpec::new(ch, ch, [7, 7]).same().group(ch));
                let p = nhwc(b, &d);
                let n = layer_norm(b, &p, ch);
                let w1 = b.weight("w1", &[ch, 4 * ch], Some(ch));
                let m = b.node("MatMul", &[&n, &w1], vec![]);
                let b1 = b.random_init("b1", &[4 * ch], -0.5, 0.5);
                let m = b.node("Add", &[&m, &b1], vec![]);
                let g = b.node("Gelu", &[&m], vec![]);
                let w2 = b.weight("w2", &[4 * ch, ch], Some(4 * ch));
                let m = b.node("MatMul", &[&g, &w2], vec![]);
                let b2 = b.random_init("b2", &[ch], -0.5, 0.5);
                let m = b.node("Add", &[&b2, &m], vec![]);
                let q = nchw(b, &m);
                let gamma = b.random_init("gamma", &[ch, 1, 1], 0.1, 1.0);
                let s = b.node("Mul", &[&gamma, &q], vec![]);
                b.node("Add", &[&s, x], vec![])
            },
        );
    }
    case(
        &mut c,
        "LayerNorm2d then a strided conv",
        17,
        &[1, 16, 8, 8],
        |b, x| {
            let p = nhwc(b, x);
            let n = layer_norm(b, &p, 16);
            let q = nchw(b, &n);
            b.conv(&q, &ConvSpec::new(16, 32, [2, 2]).stride(2, 2))
        },
    );
    case(
        &mut c,
        "a view read by Reshape (computed)",
        17,
        &[1, 8, 4, 6],
        |b, x| {
            let p = nhwc(b, x);
            let n = layer_norm(b, &p, 8);
            let r = b.i64s("shape", &[1, 4 * 6 * 8]);
            b.node("Reshape", &[&n, &r], vec![])
        },
    );
    case(&mut c, "a view as the output", 17, &[1, 8, 4, 6], |b, x| {
        let p = nhwc(b, x);
        b.node("Relu", &[&p], vec![])
    });
    // The op that needs the NHWC tensor comes first; the MatMul after it still reads the view.
    case_multi(
        &mut c,
        "a view read by Reshape, then by MatMul",
        17,
        &[1, 8, 4, 6],
        |b, x| {
            let p = nhwc(b, x);
            let r = b.i64s("shape", &[1, 4 * 6 * 8]);
            let flat = b.node("Reshape", &[&p, &r], vec![]);
            let w = b.weight("w", &[8, 16], Some(8));
            let m = b.node("MatMul", &[&p, &w], vec![]);
            vec![flat, nchw(b, &m)]
        },
    );
    case(
        &mut c,
        "LayerNormalization of [N, F] features",
        17,
        &[2, 12, 5, 5],
        |b, x| {
            let g = b.node("GlobalAveragePool", &[x], vec![]);
            let f = b.node("Flatten", &[&g], vec![]);
            let n = layer_norm(b, &f, 12);
            b.gemm(&n, &GemmSpec::new(12, 7))
        },
    );
    case(
        &mut c,
        "1-D reshape and in-order Gather",
        17,
        &[1, 12, 5, 5],
        |b, x| {
            let g = b.node("GlobalAveragePool", &[x], vec![]);
            let r = b.i64s("flat", &[12]);
            let f = b.node("Reshape", &[&g, &r], vec![]);
            let idx = b.init_i64("idx", &[1, 12, 1, 1], &(0..12).collect::<Vec<_>>());
            let gathered = b.node("Gather", &[&f, &idx], vec![attr::int("axis", 0)]);
            let s = b.i64s("shape", &[1, 12]);
            b.node("Reshape", &[&gathered, &s], vec![])
        },
    );
    c.finish();

    // LayerNormalization elsewhere, and a Gather of a 1-D view out of order, are refused by
    // name.
    for (what, onnx) in [
        (
            "LayerNormalization",
            build(17, &[1, 8, 4, 6], |b, x| layer_norm(b, x, 6)),
        ),
        (
            "Gather",
            build(17, &[1, 4, 2, 2], |b, x| {
                let g = b.node("GlobalAveragePool", &[x], vec![]);
                let r = b.i64s("flat", &[4]);
                let f = b.node("Reshape", &[&g, &r], vec![]);
                let idx = b.init_i64("idx", &[1, 4, 1, 1], &[1, 0, 2, 3]);
                b.node("Gather", &[&f, &idx], vec![attr::int("axis", 0)])
            }),
        ),
    ] {
        let e = smof_converter::convert(&onnx, &Default::default())
            .expect_err(what)
            .to_string();
        assert!(
            e.contains(what) && e.contains("not supported") || e.contains("supported over"),
            "{e}"
        );
    }
}

/// GELU written out as `0.5 · (x · (1 + erf(x / √2)))`, as exporters before opset 20 write it:
/// one activation fused into the conv before it, and the same outputs as tract.
#[test]
fn gelu_written_out_becomes_one_fused_activation() {
    let gelu = |b: &mut OnnxBuilder, x: &str| {
        let y = b.conv(x, &ConvSpec::new(4, 12, [3, 3]).same());
        b.gelu_written_out(&y)
    };
    let mut c = Cases::new();
    case(
        &mut c,
        "GELU written out after a conv",
        17,
        &[1, 4, 9, 7],
        gelu,
    );
    c.finish();
    let onnx = build(17, &[1, 4, 9, 7], gelu);
    let g = smof_converter::convert(&onnx, &Default::default())
        .expect("converts")
        .graph;
    let ops: Vec<_> = g
        .nodes
        .iter()
        .map(|n| (n.op.name(), n.op.activation()))
        .collect();
    assert_eq!(
        ops,
        [("Conv", Some(smof::graph::Activation::Gelu))],
        "{ops:?}"
    );
}
