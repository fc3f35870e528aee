//! SMOF pruning: the exact shrink of zero rings, zero channels and constant channels leaves
//! the outputs unchanged (checked against tract on the unpruned model) for every kernel
//! size, stride, dilation and depthwise; FLOP budgets over rings and channels are met with
//! consistent shapes and SIMD-rounded channel counts; impossible budgets are clear errors.

use smof::graph::Op;
use smof_converter::prune::{Budget, PruneOptions};
use smof_converter::{convert, ConvertOptions};
use smof_tests::{attr, check_against_tract, deconv_channels, random_input, OnnxBuilder, Rng};

/// A conv whose weights are random inside and exactly zero on the outer `zero_rings` rings.
#[allow(clippy::too_many_arguments)]
fn ring_zeroed_conv(
    b: &mut OnnxBuilder,
    x: &str,
    in_c: usize,
    out_c: usize,
    group: usize,
    k: usize,
    zero_rings: usize,
    stride: usize,
    dil: usize,
    pads: [usize; 4],
    seed: u64,
) -> String {
    let mut rng = Rng::new(seed);
    let icg = in_c / group;
    let mut w = rng.vec(out_c * icg * k * k, -0.5, 0.5);
    for (i, v) in w.iter_mut().enumerate() {
        let (y, xx) = ((i / k) % k, i % k);
        let edge = y.min(xx).min(k - 1 - y).min(k - 1 - xx);
        if edge < zero_rings {
            *v = 0.0;
        }
    }
    let wn = b.init(&format!("w{seed}"), &[out_c, icg, k, k], &w);
    let bn = b.init(&format!("b{seed}"), &[out_c], &rng.vec(out_c, -0.1, 0.1));
    b.node(
        "Conv",
        &[x, &wn, &bn],
        vec![
            attr::ints("kernel_shape", &[k as i64, k as i64]),
            attr::ints("strides", &[stride as i64, stride as i64]),
            attr::ints("dilations", &[dil as i64, dil as i64]),
            attr::ints("pads", &pads.map(|p| p as i64)),
            attr::int("group", group as i64),
        ],
    )
}

fn conv_kernels(bytes: &[u8]) -> Vec<[u32; 2]> {
    smof::format::read(bytes, &Default::default())
        .unwrap()
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Conv(c) => Some(c.kernel),
            _ => None,
        })
        .collect()
}

#[test]
fn zero_rings_shrink_exactly_for_every_k_stride_dilation_and_depthwise() {
    let mut seed = 1;
    for k in [3usize, 5, 7] {
        for stride in [1usize, 2] {
            for dil in [1usize, 2] {
                for (in_c, out_c, group) in [(5, 11, 1), (9, 9, 9)] {
                    for zero_rings in 1..=k / 2 {
                        seed += 1;
                        let p = dil * (k - 1) / 2;
                        // Asymmetric but always >= dil * zero_rings on every side.
                        let pads = [p, p + dil, p, p];
                        let shape = [1, in_c, 13, 10];
                        let mut b = OnnxBuilder::with_seed(13, seed);
                        let x = b.input("x", &shape);
                        let y = ring_zeroed_conv(
                            &mut b, &x, in_c, out_c, group, k, zero_rings, stride, dil, pads, seed,
                        );
                        b.output(&y);
                        let onnx = b.build();
                        let name =
                            format!("k{k} s{stride} d{dil} g{group} zero rings {zero_rings}");
                        let conv = convert(&onnx, &ConvertOptions::default()).expect(&name);
                        let kk = (k - 2 * zero_rings) as u32;
                        assert_eq!(conv_kernels(&conv.bytes), vec![[kk, kk]], "{name}");
                        assert_eq!(conv.prune.layers[0].k_after, k - 2 * zero_rings, "{name}");
                        // The shrunk model against tract on the original, unpruned model.
                        check_against_tract(&name, &onnx, &[random_input(seed, &shape)], false);
                    }
                }
            }
        }
    }
}

/// A depthwise 3x3 trained down to 1x1 (its ring zeroed) is a per-channel scale. Where a
/// neighbour can take it exactly it is folded away, at stride 1 or 2: into the 1x1 conv
/// that reads it (a separable conv, the depthwise conv without an activation), or into
/// the conv that writes it (that conv without an activation).
#[test]
fn depthwise_1x1_folds_into_its_neighbours() {
    for stride in [1usize, 2] {
        for into_producer in [false, true] {
            let seed = 40 + stride as u64 * 2 + into_producer as u64;
            let shape = [1, 6, 12, 11];
            let mut b = OnnxBuilder::with_seed(13, seed);
            let x = b.input("x", &shape);
            let mut a = ring_zeroed_conv(&mut b, &x, 6, 8, 1, 3, 0, 1, 1, [1; 4], seed);
            if !into_producer {
                a = b.node("Relu", &[&a], vec![]);
            }
            let d = ring_zeroed_conv(&mut b, &a, 8, 8, 8, 3, 1, stride, 1, [1; 4], seed + 10);
            let y = if into_producer {
                b.node("Relu", &[&d], vec![])
            } else {
                ring_zeroed_conv(&mut b, &d, 8, 4, 1, 1, 0, 1, 1, [0; 4], seed + 20)
            };
            b.output(&y);
            let onnx = b.build();
            let name = format!("stride {stride}, into the producer: {into_producer}");
            let conv = convert(&onnx, &ConvertOptions::default()).expect(&name);
            let left = if into_producer {
                vec![[3, 3]]
            } else {
                vec![[3, 3], [1, 1]]
            };
            assert_eq!(conv_kernels(&conv.bytes), left, "{name}");
            assert_eq!(conv.prune.layers[1].k_after, 1, "{name}");
            check_against_tract(&name, &onnx, &[random_input(seed, &shape)], false);
        }
    }
}

#[test]
fn padding_below_the_dilation_is_left_out_and_reported() {
    let mut b = OnnxBuilder::with_seed(13, 7);
    let x = b.input("x", &[1, 4, 9, 9]);
    let y = ring_zeroed_conv(&mut b, &x, 4, 8, 1, 3, 1, 1, 2, [1, 1, 1, 1], 7);
    b.output(&y);
    let onnx = b.build();
    let conv = convert(&onnx, &ConvertOptions::default()).unwrap();
    assert_eq!(conv_kernels(&conv.bytes), vec![[3, 3]]);
    assert!(conv.prune.layers[0].blocked.unwrap().contains("dilation"));
    check_against_tract("p<d", &onnx, &[random_input(7, &[1, 4, 9, 9])], false);
}

fn two_conv_model() -> Vec<u8> {
    let mut b = OnnxBuilder::with_seed(13, 3);
    let x = b.input("x", &[1, 8, 16, 16]);
    let a = ring_zeroed_conv(&mut b, &x, 8, 16, 1, 5, 0, 1, 1, [2; 4], 11);
    let r = b.node("Relu", &[&a], vec![]);
    let c = ring_zeroed_conv(&mut b, &r, 16, 16, 1, 3, 0, 1, 1, [1; 4], 12);
    b.output(&c);
    b.build()
}

#[test]
fn a_flop_budget_shrinks_kernels_until_it_is_met() {
    let onnx = two_conv_model();
    let opts = ConvertOptions {
        prune: PruneOptions {
            budget: Some(Budget::Flops(0.5)),
            channels: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let conv = convert(&onnx, &opts).unwrap();
    let r = &conv.prune;
    assert!(r.flops_after as f64 <= 0.5 * r.flops_before as f64, "{r:?}");
    assert!(r.layers.iter().any(|l| l.k_after < l.k_before));
    assert!(r
        .layers
        .iter()
        .all(|l| l.channels_after == l.channels_before));
    // The pruned file runs, and its layers agree with the report.
    let model = smof::Model::from_bytes(&conv.bytes).unwrap();
    let mut s = smof::Session::new(&model, &Default::default()).unwrap();
    s.run(&[&random_input(3, &[1, 8, 16, 16]).1]).unwrap();
    let ks: Vec<u32> = conv_kernels(&conv.bytes).iter().map(|k| k[0]).collect();
    let reported: Vec<u32> = r.layers.iter().map(|l| l.k_after as u32).collect();
    assert_eq!(ks, reported);
}

#[test]
fn impossible_budgets_are_clear_errors() {
    let onnx = two_conv_model();
    let with = |budget, channels| ConvertOptions {
        prune: PruneOptions {
            budget: Some(budget),
            kernels: true,
            channels,
            ..Default::default()
        },
        ..Default::default()
    };
    for r in [0.0, -1.0, 1.5, f64::NAN] {
        let e = convert(&onnx, &with(Budget::Flops(r), false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0, 1]"), "{r}: {e}");
    }
    // Rings alone cannot reach 1% (both convs bottom out at 1x1).
    let e = convert(&onnx, &with(Budget::Flops(0.01), false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reaches only"), "{e}");
    // Neither dimension switched on.
    let mut none = with(Budget::Flops(0.5), false);
    none.prune.kernels = false;
    let e = convert(&onnx, &none).unwrap_err().to_string();
    assert!(e.contains("nothing to prune"), "{e}");
    // A latency budget without a table.
    let e = convert(&onnx, &with(Budget::Latency(0.5), true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--lut"), "{e}");
}

/// A conv whose output channels in `zero` have all-zero weights and bias.
#[allow(clippy::too_many_arguments)]
fn conv_zero_channels(
    b: &mut OnnxBuilder,
    x: &str,
    in_c: usize,
    out_c: usize,
    group: usize,
    k: usize,
    zero: &[usize],
    seed: u64,
) -> String {
    let mut rng = Rng::new(seed);
    let icg = in_c / group;
    let row = icg * k * k;
    let mut w = rng.vec(out_c * row, -0.5, 0.5);
    let mut bias = rng.vec(out_c, -0.2, 0.2);
    for &c in zero {
        w[c * row..(c + 1) * row].fill(0.0);
        bias[c] = 0.0;
    }
    let wn = b.init(&format!("cw{seed}"), &[out_c, icg, k, k], &w);
    let bn = b.init(&format!("cb{seed}"), &[out_c], &bias);
    let p = (k / 2) as i64;
    b.node(
        "Conv",
        &[x, &wn, &bn],
        vec![
            attr::ints("kernel_shape", &[k as i64, k as i64]),
            attr::ints("pads", &[p, p, p, p]),
            attr::int("group", group as i64),
        ],
    )
}

fn out_channels(bytes: &[u8]) -> Vec<u32> {
    smof::format::read(bytes, &Default::default())
        .unwrap()
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Conv(c) => Some(c.out_c),
            _ => None,
        })
        .collect()
}

/// Zero channels through a residual block, a depthwise conv, a Concat and a squeeze-excite
/// Mul are removed with their whole group, and the outputs do not change.
#[test]
fn zero_channels_shrink_exactly_through_residual_depthwise_concat_and_se() {
    let shape = [1, 6, 10, 10];
    let mut b = OnnxBuilder::with_seed(13, 21);
    let x = b.input("x", &shape);
    let a = conv_zero_channels(&mut b, &x, 6, 16, 1, 3, &[2, 5, 11], 1);
    let a = b.node("Relu", &[&a], vec![]);
    let d = conv_zero_channels(&mut b, &a, 16, 16, 16, 3, &[2, 5, 11], 2);
    let d = b.node("Relu", &[&d], vec![]);
    let e = conv_zero_channels(&mut b, &d, 16, 16, 1, 1, &[2, 5, 11], 3);
    let r = b.node("Add", &[&e, &a], vec![]);
    let r = b.node("Relu", &[&r], vec![]);
    let c = conv_zero_channels(&mut b, &x, 6, 8, 1, 1, &[3], 4);
    let cat = b.node("Concat", &[&r, &c], vec![attr::int("axis", 1)]);
    // Squeeze-excite over the 24 concatenated channels.
    let gap = b.node("GlobalAveragePool", &[&cat], vec![]);
    let s1 = conv_zero_channels(&mut b, &gap, 24, 4, 1, 1, &[], 5);
    let s1 = b.node("Relu", &[&s1], vec![]);
    let s2 = conv_zero_channels(&mut b, &s1, 4, 24, 1, 1, &[], 6);
    let s2 = b.node("Sigmoid", &[&s2], vec![]);
    let m = b.node("Mul", &[&cat, &s2], vec![]);
    let y = conv_zero_channels(&mut b, &m, 24, 10, 1, 1, &[], 7);
    b.output(&y);
    let onnx = b.build();

    let conv = convert(&onnx, &ConvertOptions::default()).unwrap();
    // The 3 zero channels of the residual group and the 1 of the side branch are gone.
    assert_eq!(
        out_channels(&conv.bytes),
        vec![13, 13, 13, 7, 4, 20, 10],
        "{:?}",
        conv.prune.layers
    );
    check_against_tract("zero channels", &onnx, &[random_input(21, &shape)], false);
}

/// Zero channels on both sides of a Split (YOLOv8's C2f, ShuffleNet's channel split) and
/// through a channel shuffle are removed with their groups: the Split's ranges shift, the
/// shuffle loses the same channel of each of its groups, and the outputs do not change.
#[test]
fn zero_channels_shrink_exactly_through_split_and_channel_shuffle() {
    let shape = [1, 3, 8, 8];
    let mut b = OnnxBuilder::with_seed(13, 31);
    let x = b.input("x", &shape);
    // Stem channel 1 falls in the first half of the Split, channel 9 in the second.
    let s = conv_zero_channels(&mut b, &x, 3, 16, 1, 3, &[1, 9], 11);
    let s = b.node("Relu", &[&s], vec![]);
    let sizes = b.i64s("sizes", &[8, 8]);
    let (p0, p1) = (b.fresh("part"), b.fresh("part"));
    b.node_full(
        "split",
        "Split",
        &[&s, &sizes],
        &[&p0, &p1],
        vec![attr::int("axis", 1)],
    );
    // Channel 1 of this conv is zero too: it is shuffled next to the stem's channel 1.
    let q = conv_zero_channels(&mut b, &p1, 8, 8, 1, 3, &[1], 12);
    let q = b.node("Relu", &[&q], vec![]);
    let cat = b.node("Concat", &[&p0, &q], vec![attr::int("axis", 1)]);
    let v5 = b.i64s("view", &[1, 2, 8, 8, 8]);
    let v4 = b.i64s("back", &[1, 16, 8, 8]);
    let r = b.node("Reshape", &[&cat, &v5], vec![]);
    let t = b.node(
        "Transpose",
        &[&r],
        vec![attr::ints("perm", &[0, 2, 1, 3, 4])],
    );
    let sh = b.node("Reshape", &[&t, &v4], vec![]);
    let y = conv_zero_channels(&mut b, &sh, 16, 10, 1, 1, &[], 13);
    b.output(&y);
    let onnx = b.build();

    let conv = convert(&onnx, &ConvertOptions::default()).unwrap();
    assert_eq!(
        out_channels(&conv.bytes),
        vec![14, 7, 10],
        "{:?}",
        conv.prune.layers
    );
    assert!(
        conv.prune.unanalysed.is_empty(),
        "{:?}",
        conv.prune.unanalysed
    );
    check_against_tract(
        "split and shuffle",
        &onnx,
        &[random_input(31, &shape)],
        false,
    );
}

/// A transposed conv whose output channels in `zero` have all-zero weights and bias.
fn deconv_zero_channels(
    b: &mut OnnxBuilder,
    x: &str,
    (in_c, out_c): (usize, usize),
    zero: &[usize],
    seed: u64,
) -> String {
    let mut rng = Rng::new(seed);
    let k = 2;
    let mut w = rng.vec(in_c * out_c * k * k, -0.5, 0.5);
    let mut bias = rng.vec(out_c, -0.2, 0.2);
    for row in w.chunks_mut(out_c * k * k) {
        for &c in zero {
            row[c * k * k..(c + 1) * k * k].fill(0.0);
        }
    }
    for &c in zero {
        bias[c] = 0.0;
    }
    let wn = b.init(&format!("dw{seed}"), &[in_c, out_c, k, k], &w);
    let bn = b.init(&format!("db{seed}"), &[out_c], &bias);
    b.node(
        "ConvTranspose",
        &[x, &wn, &bn],
        vec![
            attr::ints("kernel_shape", &[2, 2]),
            attr::ints("strides", &[2, 2]),
        ],
    )
}

/// Zero channels on both sides of a transposed conv (the input side a conv's zero outputs,
/// the output side its own zero weights) are removed exactly: the outputs do not change.
#[test]
fn zero_channels_shrink_exactly_through_transposed_convs() {
    let shape = [1, 3, 6, 6];
    let mut b = OnnxBuilder::with_seed(13, 41);
    let x = b.input("x", &shape);
    let s = conv_zero_channels(&mut b, &x, 3, 16, 1, 3, &[2, 7], 21);
    let s = b.node("Relu", &[&s], vec![]);
    let u = deconv_zero_channels(&mut b, &s, (16, 12), &[0, 5, 6], 22);
    let u = b.node("Relu", &[&u], vec![]);
    let y = conv_zero_channels(&mut b, &u, 12, 4, 1, 3, &[], 23);
    b.output(&y);
    let onnx = b.build();

    let conv = convert(&onnx, &ConvertOptions::default()).unwrap();
    assert_eq!(
        deconv_channels(&conv.bytes),
        vec![(14, 9)],
        "{:?}",
        conv.prune.layers
    );
    assert_eq!(out_channels(&conv.bytes), vec![14, 4]);
    assert!(
        conv.prune.unanalysed.is_empty(),
        "{:?}",
        conv.prune.unanalysed
    );
    check_against_tract(
        "transposed conv zero channels",
        &onnx,
        &[random_input(41, &shape)],
        false,
    );
}
