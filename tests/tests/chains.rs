//! Conv chains (runtime/src/chain.rs): consecutive convs whose wide intermediate tensors are
//! computed a band of rows at a time. Each graph here has such a sequence (intermediates
//! of at least 256 KiB, the threshold the sessions here set on every table): inverted
//! residual blocks at stride 1 and 2, 3x3 and 5x5, dilation, asymmetric padding, odd sizes,
//! batch 2, an RGB stem (the im2col path), a residual Add, and max pools after a stem conv
//! and between two convs.
//!
//! Every graph must match tract on every kernel table, form at least one chain, and give
//! the same outputs bit for bit as the layer-by-layer run, with 1, 2 and 3 threads.

use smof::{Session, SessionOptions};
use smof_tests::{attr, check_against_tract, kernel_choices, random_input, smof_load, ConvSpec};
use smof_tests::{Cases, OnnxBuilder};

/// The chain threshold of these tests (the NEON and portable tables' own; the x86 tables
/// chain only tensors of 1 MiB and more).
const MIN_BYTES: usize = 256 << 10;

/// Session options with this file's chain threshold.
fn chained() -> SessionOptions {
    SessionOptions::default().chain_min_bytes(MIN_BYTES)
}

/// One inverted residual block: 1x1 expand (ReLU6), `k x k` depthwise at `stride` and
/// `dilation` with `pads` (ReLU6), 1x1 project; plus the input when the shapes allow and
/// `residual` is set.
#[allow(clippy::too_many_arguments)]
fn block(
    b: &mut OnnxBuilder,
    x: &str,
    c: usize,
    wide: usize,
    out: usize,
    k: usize,
    stride: i64,
    dilation: i64,
    pads: [i64; 4],
    residual: bool,
) -> String {
    let relu6 = |b: &mut OnnxBuilder, v: &str| {
        let lo = b.f32s("lo", &[0.0]);
        let hi = b.f32s("hi", &[6.0]);
        b.node("Clip", &[v, &lo, &hi], vec![])
    };
    let e = b.conv(x, &ConvSpec::new(c, wide, [1, 1]));
    let e = relu6(b, &e);
    let d = b.conv(
        &e,
        &ConvSpec::new(wide, wide, [k, k])
            .group(wide)
            .stride(stride, stride)
            .dilation(dilation, dilation)
            .pads(pads),
    );
    let d = relu6(b, &d);
    let p = b.conv(&d, &ConvSpec::new(wide, out, [1, 1]));
    if residual {
        b.node("Add", &[&p, x], vec![])
    } else {
        p
    }
}

/// The test graphs: name, ONNX, input shape.
fn graphs() -> Vec<(&'static str, Vec<u8>, Vec<usize>)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, shape: &[usize], f: &dyn Fn(&mut OnnxBuilder, &str)| {
        let mut b = OnnxBuilder::with_seed(13, name.len() as u64);
        let x = b.input("x", shape);
        f(&mut b, &x);
        out.push((name, b.build(), shape.to_vec()));
    };
    add(
        "expand_dw3x3_project_residual",
        &[1, 16, 40, 44],
        &|b, x| {
            let y = block(b, x, 16, 96, 16, 3, 1, 1, [1; 4], true);
            b.output(&y);
        },
    );
    add("dw3x3_stride2_odd_size", &[1, 12, 57, 61], &|b, x| {
        let y = block(b, x, 12, 72, 20, 3, 2, 1, [1; 4], false);
        b.output(&y);
    });
    add("dw5x5_stride2_two_blocks", &[1, 8, 48, 48], &|b, x| {
        let y = block(b, x, 8, 48, 24, 5, 2, 1, [2; 4], false);
        let y = block(b, &y, 24, 144, 24, 5, 1, 1, [2; 4], true);
        b.output(&y);
    });
    add("dilated_asymmetric_pads", &[1, 8, 50, 46], &|b, x| {
        let y = block(b, x, 8, 64, 8, 3, 1, 2, [2, 1, 1, 2], false);
        b.output(&y);
    });
    add("batch_two", &[2, 8, 36, 36], &|b, x| {
        let y = block(b, x, 8, 64, 8, 3, 1, 1, [1; 4], true);
        b.output(&y);
    });
    add("rgb_stem_dw_project", &[1, 3, 96, 96], &|b, x| {
        let s = b.conv(x, &ConvSpec::new(3, 32, [3, 3]).stride(2, 2).pads([1; 4]));
        let s = b.node("Relu", &[&s], vec![]);
        let d = b.conv(&s, &ConvSpec::new(32, 32, [3, 3]).group(32).pads([1; 4]));
        let d = b.node("Relu", &[&d], vec![]);
        let p = b.conv(&d, &ConvSpec::new(32, 16, [1, 1]));
        // A second reader of the projection ends the chain there.
        let g = b.node("GlobalAveragePool", &[&p], vec![]);
        let m = b.node("Mul", &[&p, &g], vec![]);
        b.output(&m);
    });
    add("stride2_top_padding_only", &[1, 16, 33, 40], &|b, x| {
        let y = block(b, x, 16, 64, 16, 3, 2, 1, [1, 1, 0, 0], false);
        let y = b.node("Softmax", &[&y], vec![attr::int("axis", 1)]);
        b.output(&y);
    });
    // ConvNeXt's pointwise pair: 1x1 expand 96 -> 384 through GELU (written out, as
    // PyTorch's default export writes it), 1x1 project, residual. Each conv has 36,864
    // weights, members since session 29.
    add("pointwise_pair_gelu_residual", &[1, 96, 20, 22], &|b, x| {
        let e = b.conv(x, &ConvSpec::new(96, 384, [1, 1]));
        let g = b.gelu_written_out(&e);
        let p = b.conv(&g, &ConvSpec::new(384, 96, [1, 1]));
        let y = b.node("Add", &[&p, x], vec![]);
        b.output(&y);
    });
    // Max pools as members: ResNet's and SqueezeNet's stem conv and pool, and a pool between
    // two convs. A pool never heads a chain, so every chain these graphs form holds the pool.
    let max_pool = |b: &mut OnnxBuilder, x: &str, k: i64, s: i64, pads: [i64; 4], more| {
        let mut attrs = vec![
            attr::ints("kernel_shape", &[k, k]),
            attr::ints("strides", &[s, s]),
            attr::ints("pads", &pads),
        ];
        attrs.extend(more);
        b.node("MaxPool", &[x], attrs)
    };
    add("stem_max_pool_ceil_mode", &[1, 3, 97, 99], &|b, x| {
        let s = b.conv(x, &ConvSpec::new(3, 32, [3, 3]).stride(2, 2));
        let s = b.node("Relu", &[&s], vec![]);
        let p = max_pool(b, &s, 3, 2, [0; 4], vec![attr::int("ceil_mode", 1)]);
        let y = b.conv(&p, &ConvSpec::new(32, 16, [1, 1]));
        b.output(&y);
    });
    add("stem_7x7_max_pool_padded", &[1, 3, 130, 128], &|b, x| {
        let s = b.conv(x, &ConvSpec::new(3, 16, [7, 7]).stride(2, 2).pads([3; 4]));
        let s = b.node("Relu", &[&s], vec![]);
        let p = max_pool(b, &s, 3, 2, [1; 4], vec![]);
        b.output(&p);
    });
    add(
        "max_pool_between_convs_dilated",
        &[1, 16, 66, 64],
        &|b, x| {
            let e = b.conv(x, &ConvSpec::new(16, 64, [1, 1]));
            let p = max_pool(
                b,
                &e,
                3,
                1,
                [2, 1, 0, 2],
                vec![attr::ints("dilations", &[2, 2])],
            );
            let y = b.conv(&p, &ConvSpec::new(64, 16, [3, 3]).pads([1; 4]));
            b.output(&y);
        },
    );
    out
}

#[test]
fn chained_convs_match_tract_and_the_layer_by_layer_run_bit_for_bit() {
    let mut cases = Cases::new();
    for (name, onnx, shape) in graphs() {
        let input = random_input(7, &shape);
        cases.check(name, &onnx, std::slice::from_ref(&input), false);
        cases.run(&format!("{name}: chains vs layer by layer"), || {
            for (table, choice) in kernel_choices() {
                let model = smof_load(&onnx, &[], choice, false);
                let run = |opts: SessionOptions| {
                    let mut s = Session::new(&model, &opts).expect("session");
                    s.run(&[&input.1]).expect("run");
                    (s.output(0).to_vec(), s.conv_chains())
                };
                let (want, none) = run(SessionOptions::default().layer_by_layer(true));
                assert!(none.is_empty(), "{name} [{table}]: layer_by_layer chained");
                for threads in 1..=3 {
                    let (got, chains) = run(chained().threads(threads));
                    assert!(!chains.is_empty(), "{name} [{table}]: no conv chain formed");
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{name} [{table}, {threads} threads]: chained outputs differ from \
                         the layer-by-layer run"
                    );
                }
            }
        });
    }
    cases.finish();
}

#[test]
fn chains_shrink_the_arena() {
    let (_, onnx, shape) = graphs().remove(0);
    let model = smof_load(&onnx, &[], smof::KernelChoice::Auto, false);
    let chained = Session::new(&model, &chained()).expect("session");
    let plain =
        Session::new(&model, &SessionOptions::default().layer_by_layer(true)).expect("session");
    assert_eq!(chained.conv_chains(), vec![0..3], "{shape:?}");
    // The two 96-channel intermediates (40x44 pixels) are not in the arena.
    assert!(
        chained.arena_bytes() + 40 * 44 * 96 * 4 <= plain.arena_bytes(),
        "arena {} (chained) vs {} (layer by layer)",
        chained.arena_bytes(),
        plain.arena_bytes()
    );
}

#[test]
fn small_intermediates_are_not_chained() {
    // 16x16x96 floats (96 KiB) stay in cache anyway: no chain.
    let mut b = OnnxBuilder::with_seed(13, 3);
    let x = b.input("x", &[1, 16, 16, 16]);
    let y = block(&mut b, &x, 16, 96, 16, 3, 1, 1, [1; 4], true);
    b.output(&y);
    let model = smof_load(&b.build(), &[], smof::KernelChoice::Auto, false);
    let s = Session::new(&model, &chained()).expect("session");
    assert!(s.conv_chains().is_empty());
    check_against_tract(
        "small",
        &b.build(),
        &[random_input(3, &[1, 16, 16, 16])],
        false,
    );
}
