//! Fused patterns (squeeze-excite, SPPF), squeeze-excite gates folded into the next conv's
//! weights, and concatenations read in place by 1x1 convs and pools: graphs built in code are
//! converted and run on every kernel table; each must be found where it applies (and not
//! where it does not), match tract-onnx, and match the same session run node by node
//! (`SessionOptions::layer_by_layer`) bit for bit, or within [`FOLD_REL`] where a gate is
//! folded.

use smof::{Session, SessionOptions};
use smof_tests::{
    assert_close, attr, kernel_choices, random_input, smof_load, tract_run, ConvSpec, OnnxBuilder,
    F32_REL,
};

/// A `k x k` max pool, stride 1, padding `k / 2`, as YOLOv8's SPPF exports it.
fn max_pool(b: &mut OnnxBuilder, x: &str, k: i64) -> String {
    let p = k / 2;
    b.node(
        "MaxPool",
        &[x],
        vec![
            attr::ints("kernel_shape", &[k, k]),
            attr::ints("strides", &[1, 1]),
            attr::ints("pads", &[p, p, p, p]),
        ],
    )
}

/// SPPF: `Concat(x, p(x), p(p(x)), p(p(p(x))))` with window `k`; `ks` overrides the
/// three windows (a look-alike that is not SPPF).
fn sppf(b: &mut OnnxBuilder, x: &str, ks: [i64; 3]) -> String {
    let a = max_pool(b, x, ks[0]);
    let p = max_pool(b, &a, ks[1]);
    let q = max_pool(b, &p, ks[2]);
    b.node("Concat", &[x, &a, &p, &q], vec![attr::int("axis", 1)])
}

/// How far a model with squeeze-excite gates folded into the next conv's weights may be from
/// the same model run node by node, relative to the largest output: the folded conv
/// multiplies each input by `w * g` instead of `(x * g)` by `w`, a rounding apart per
/// product (about 6e-8 relative), over sums of at most 96 products here. A wrong fold (a
/// gate on the wrong channel, a block laid out wrongly) is off by the gates' spread, 1e-2
/// and more.
const FOLD_REL: f32 = 1e-5;

/// Builds the model, runs it fused and node by node on every table, compares with tract,
/// and checks that the patterns found are `want` (names, in node order) and that no
/// concatenation is read in place.
fn check(
    name: &str,
    shape: &[usize],
    want: &[&str],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    check_fusion(name, shape, want, (0, 0), f)
}

/// [`check`], with `in_place.0` steps read in place (concatenations read by 1x1 convs or
/// pools, and slices read only by convs) on the x86 tables, whose dense kernels take parts,
/// and `in_place.1` on the others: the portable table's convs do not take parts (NEON's
/// `gemm_8x8_neon` does: the kernel property tests cover it), every table's pool does.
fn check_fusion(
    name: &str,
    shape: &[usize],
    want: &[&str],
    in_place: (usize, usize),
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    check_all(name, shape, want, in_place, &[], f)
}

/// [`check_fusion`], with the squeeze-excite gates folded into convs `folds` (the pattern's
/// first node, the conv's node) on every table.
fn check_all(
    name: &str,
    shape: &[usize],
    want: &[&str],
    in_place: (usize, usize),
    folds: &[(usize, usize)],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    let mut b = OnnxBuilder::with_seed(13, name.len() as u64 * 7919);
    let x = b.input("x", shape);
    let y = f(&mut b, &x);
    b.output(&y);
    let onnx = b.build();
    let input = random_input(name.len() as u64, shape);
    let reference = tract_run(&onnx, std::slice::from_ref(&input));
    for (table, kernels) in kernel_choices() {
        let model = smof_load(&onnx, &[], kernels, false);
        let mut outs = Vec::new();
        for layer_by_layer in [false, true] {
            let opts = SessionOptions::default().layer_by_layer(layer_by_layer);
            let mut s = Session::new(&model, &opts).unwrap();
            let found: Vec<&str> = s.fused_patterns().iter().map(|p| p.1).collect();
            let expect: &[&str] = if layer_by_layer { &[] } else { want };
            assert_eq!(found, expect, "{name} on {table}: patterns found");
            let expect: &[(usize, usize)] = if layer_by_layer { &[] } else { folds };
            assert_eq!(s.folded_gates(), expect, "{name} on {table}: gates folded");
            let read = s
                .kernel_names()
                .iter()
                .filter(|k| **k == "read_in_place")
                .count();
            let expect = if layer_by_layer {
                0
            } else if table.starts_with("x86_64") {
                in_place.0
            } else {
                in_place.1
            };
            assert_eq!(
                read, expect,
                "{name} on {table}: concatenations read in place"
            );
            s.run(&[&input.1]).unwrap();
            outs.push(s.output(0).to_vec());
            // A large pattern runs on every thread, and computes the same bits.
            for threads in [2, 3] {
                let opts = opts.clone().threads(threads);
                let mut s = Session::new(&model, &opts).unwrap();
                s.run(&[&input.1]).unwrap();
                let last = outs.last().unwrap();
                assert!(
                    s.output(0)
                        .iter()
                        .zip(last)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name} on {table}, layer_by_layer {layer_by_layer}: {threads} threads \
                     differ from one"
                );
            }
        }
        assert_close(
            &format!("{name} on {table}"),
            &outs[0],
            &reference[0],
            F32_REL,
        );
        if folds.is_empty() {
            let same = outs[0]
                .iter()
                .zip(&outs[1])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{name} on {table}: fused and node-by-node runs differ"
            );
        } else {
            let what = format!("{name} on {table}: folded against node by node");
            assert_close(&what, &outs[0], &outs[1], FOLD_REL);
        }
    }
}

#[test]
fn squeeze_excite_runs_as_one_step() {
    check(
        "SE sigmoid 16ch",
        &[1, 16, 9, 11],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 16, "Sigmoid", false),
    );
    check(
        "SE gate first",
        &[1, 16, 9, 11],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 16, "Sigmoid", true),
    );
    check(
        "SE HardSigmoid 20ch",
        &[1, 20, 7, 9],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 20, "HardSigmoid", false),
    );
    check(
        "SE 96ch batch 2 after a conv",
        &[2, 8, 6, 5],
        &["SqueezeExcite"],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(8, 96, [3, 3]).same());
            let y = b.node("Relu", &[&y], vec![]);
            b.squeeze_excite(&y, 96, "Sigmoid", false)
        },
    );
    // Large enough to run on every thread: the mean by channel windows (40 channels: windows
    // of 16, 16 and 8), the scaling by rows.
    check(
        "SE 40ch 24x20",
        &[1, 40, 24, 20],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 40, "Sigmoid", false),
    );
    check(
        "SE 96ch 14x14 HardSigmoid",
        &[1, 96, 14, 14],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 96, "HardSigmoid", false),
    );
    // Convs of at least 16k weights share their output channels among the threads: whole
    // blocks (256 -> 64 -> 256), and a last block that is not (264 -> 66 -> 264).
    check(
        "SE 256ch 6x6",
        &[1, 256, 6, 6],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 256, "Sigmoid", false),
    );
    check(
        "SE 264ch 5x5 HardSigmoid",
        &[1, 264, 5, 5],
        &["SqueezeExcite"],
        |b, x| b.squeeze_excite(x, 264, "HardSigmoid", false),
    );
    check(
        "two SE blocks",
        &[1, 24, 8, 8],
        &["SqueezeExcite"; 2],
        |b, x| {
            let y = b.squeeze_excite(x, 24, "Sigmoid", false);
            let y = b.conv(&y, &ConvSpec::new(24, 40, [1, 1]));
            b.squeeze_excite(&y, 40, "HardSigmoid", false)
        },
    );
    // The gate also feeds the output: not a pattern, still right.
    check(
        "SE whose gate is read twice",
        &[1, 16, 5, 5],
        &[],
        |b, x| {
            let s = b.node("GlobalAveragePool", &[x], vec![]);
            let s = b.conv(&s, &ConvSpec::new(16, 4, [1, 1]));
            let s = b.node("Relu", &[&s], vec![]);
            let s = b.conv(&s, &ConvSpec::new(4, 16, [1, 1]));
            let g = b.node("Sigmoid", &[&s], vec![]);
            let y = b.node("Mul", &[x, &g], vec![]);
            b.node("Add", &[&y, &g], vec![])
        },
    );
}

/// [`check_all`] of a graph with `patterns` squeeze-excite patterns and no concatenation
/// read in place, whose gates are folded into convs `folds`.
fn check_se(
    name: &str,
    shape: &[usize],
    patterns: usize,
    folds: &[(usize, usize)],
    f: impl FnOnce(&mut OnnxBuilder, &str) -> String,
) {
    check_all(
        name,
        shape,
        &vec!["SqueezeExcite"; patterns],
        (0, 0),
        folds,
        f,
    )
}

#[test]
fn squeeze_excite_gates_fold_into_the_next_pointwise_conv() {
    // Node numbers: the squeeze-excite's five nodes (pool, conv, ReLU, conv, gate) and the
    // Mul are six; the converter fuses the ReLU and the gate into the convs, so the pattern
    // is four nodes and the conv reading the product the fifth after the pattern's first.
    check_se(
        "SE 32ch 28x28 then 1x1 to 24",
        &[1, 32, 28, 28],
        1,
        &[(0, 4)],
        |b, x| {
            let y = b.squeeze_excite(x, 32, "Sigmoid", false);
            b.conv(&y, &ConvSpec::new(32, 24, [1, 1]))
        },
    );
    // An inverted residual: expand, squeeze-excite, project, plus the block's input (the Add
    // fused into the projecting conv, which keeps its residual input), then ReLU6 on it.
    check_se(
        "expand, SE (HardSigmoid), project + residual",
        &[1, 24, 20, 18],
        1,
        &[(1, 5)],
        |b, x| {
            let h = b.conv(x, &ConvSpec::new(24, 96, [1, 1]));
            let h = b.node("Relu", &[&h], vec![]);
            let h = b.squeeze_excite(&h, 96, "HardSigmoid", true);
            let y = b.conv(&h, &ConvSpec::new(96, 24, [1, 1]));
            b.node("Add", &[&y, x], vec![])
        },
    );
    check_se(
        "SE then 1x1 with ReLU, twice",
        &[1, 16, 24, 24],
        2,
        &[(0, 4), (5, 9)],
        |b, x| {
            let y = b.squeeze_excite(x, 16, "Sigmoid", false);
            let y = b.conv(&y, &ConvSpec::new(16, 16, [1, 1]));
            let y = b.node("Relu", &[&y], vec![]);
            let y = b.squeeze_excite(&y, 16, "HardSigmoid", false);
            b.conv(&y, &ConvSpec::new(16, 8, [1, 1]))
        },
    );
    // Not folded: a batch of two (a gate per image), a product read twice, a 3x3 conv, and
    // weights larger than a quarter of the map (14x14 map of 64 channels, 1x1 to 64).
    check_se("SE batch 2 then 1x1", &[2, 32, 16, 16], 1, &[], |b, x| {
        let y = b.squeeze_excite(x, 32, "Sigmoid", false);
        b.conv(&y, &ConvSpec::new(32, 24, [1, 1]))
    });
    check_se("SE product read twice", &[1, 32, 16, 16], 1, &[], |b, x| {
        let y = b.squeeze_excite(x, 32, "Sigmoid", false);
        let z = b.conv(&y, &ConvSpec::new(32, 32, [1, 1]));
        b.node("Add", &[&y, &z], vec![])
    });
    check_se("SE then 3x3", &[1, 32, 16, 16], 1, &[], |b, x| {
        let y = b.squeeze_excite(x, 32, "Sigmoid", false);
        b.conv(&y, &ConvSpec::new(32, 24, [3, 3]).same())
    });
    check_se(
        "SE 64ch 14x14 then 1x1 to 64",
        &[1, 64, 14, 14],
        1,
        &[],
        |b, x| {
            let y = b.squeeze_excite(x, 64, "Sigmoid", false);
            b.conv(&y, &ConvSpec::new(64, 64, [1, 1]))
        },
    );
}

/// A large map's mean is summed by four bands of rows on every thread (`mean_by_bands` in
/// the session): against tract, and the same bits on 1-3 threads, for row counts that four
/// divides and that it does not, four rows exactly, and a batch of two (summed whole).
#[test]
fn large_means_sum_by_bands() {
    for shape in [
        [1, 40, 24, 20],
        [1, 19, 30, 31],
        [1, 16, 4, 300],
        [2, 40, 24, 20],
    ] {
        check(
            &format!("GlobalAveragePool {shape:?}"),
            &shape,
            &[],
            |b, x| b.node("GlobalAveragePool", &[x], vec![]),
        );
    }
}

/// Adds and Slices of one large image run by shares of their output rows on every thread:
/// against tract, and the same bits on 1-3 threads.
#[test]
fn large_adds_and_slices_split_by_rows() {
    check("Add 40ch 24x20", &[1, 40, 24, 20], &[], |b, x| {
        let sq = b.node("Mul", &[x, x], vec![]);
        b.node("Add", &[x, &sq], vec![])
    });
    // A channel range (as YOLO's C2f splits), and a window with steps on H and W.
    check("Slice channels 8..40", &[1, 48, 26, 22], &[], |b, x| {
        let (st, en, ax) = (b.i64s("st", &[8]), b.i64s("en", &[40]), b.i64s("ax", &[1]));
        b.node("Slice", &[x, &st, &en, &ax], vec![])
    });
    check(
        "Slice H 3..77 step 2, W 1..58 step 3",
        &[1, 32, 80, 60],
        &[],
        |b, x| {
            let st = b.i64s("st", &[3, 1]);
            let en = b.i64s("en", &[77, 58]);
            let ax = b.i64s("ax", &[2, 3]);
            let sp = b.i64s("sp", &[2, 3]);
            b.node("Slice", &[x, &st, &en, &ax, &sp], vec![])
        },
    );
}

#[test]
fn sppf_runs_as_one_step() {
    check("SPPF k5 10x10 32ch", &[1, 32, 10, 10], &["Sppf"], |b, x| {
        let y = sppf(b, x, [5, 5, 5]);
        b.conv(&y, &ConvSpec::new(128, 16, [1, 1]))
    });
    check(
        "SPPF k5 after a conv, 20ch 7x9",
        &[1, 8, 7, 9],
        &["Sppf"],
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(8, 20, [1, 1]));
            sppf(b, &y, [5, 5, 5])
        },
    );
    check(
        "SPPF k3 batch 2, 3x13",
        &[2, 5, 3, 13],
        &["Sppf"],
        |b, x| sppf(b, x, [3, 3, 3]),
    );
    // Windows larger than the map: every window is clipped on both sides.
    check("SPPF k9 on 4x6", &[1, 17, 4, 6], &["Sppf"], |b, x| {
        sppf(b, x, [9, 9, 9])
    });
    // Look-alikes: different windows, or a pool read outside the pattern.
    check("pools of 5, 9, 13", &[1, 8, 10, 10], &[], |b, x| {
        sppf(b, x, [5, 9, 13])
    });
    check("SPPF with a pool read twice", &[1, 8, 6, 6], &[], |b, x| {
        let a = max_pool(b, x, 5);
        let p = max_pool(b, &a, 5);
        let q = max_pool(b, &p, 5);
        let y = b.node("Concat", &[x, &a, &p, &q], vec![attr::int("axis", 1)]);
        let extra = b.node("Concat", &[&y, &q], vec![attr::int("axis", 1)]);
        b.node("Relu", &[&extra], vec![])
    });
}

fn concat(b: &mut OnnxBuilder, parts: &[&str]) -> String {
    b.node("Concat", parts, vec![attr::int("axis", 1)])
}

#[test]
fn concatenations_are_read_in_place_by_pointwise_convs() {
    // C2f's tail: a split conv output, a bottleneck, the concatenation, a 1x1 conv.
    check_fusion("C2f tail", &[1, 16, 12, 10], &[], (1, 0), |b, x| {
        let y = b.conv(x, &ConvSpec::new(16, 32, [1, 1]));
        let y = b.node("Relu", &[&y], vec![]);
        let m = b.conv(&y, &ConvSpec::new(32, 16, [3, 3]).same());
        let c = concat(b, &[&y, &m]);
        b.conv(&c, &ConvSpec::new(48, 24, [1, 1]))
    });
    // The whole C2f as YOLOv8 exports it: cv1, Split in two, two bottlenecks with
    // shortcuts on the second half, Concat of all four, cv2. The first half is read in place
    // from cv1's output (its Slice never runs: 2 steps read in place); the second half is
    // still sliced, for the bottleneck and its shortcut.
    check_fusion("C2f", &[1, 16, 10, 12], &[], (2, 0), |b, x| {
        let silu = |b: &mut OnnxBuilder, v: &str| {
            let s = b.node("Sigmoid", &[v], vec![]);
            b.node("Mul", &[v, &s], vec![])
        };
        let y = b.conv(x, &ConvSpec::new(16, 32, [1, 1]));
        let y = silu(b, &y);
        let sizes = b.init_i64("sizes", &[2], &[16, 16]);
        let (y0, y1) = (b.fresh("y0"), b.fresh("y1"));
        b.node_full(
            "split",
            "Split",
            &[&y, &sizes],
            &[&y0, &y1],
            vec![attr::int("axis", 1)],
        );
        let mut parts = vec![y0, y1.clone()];
        let mut prev = y1;
        for _ in 0..2 {
            let m = b.conv(&prev, &ConvSpec::new(16, 16, [3, 3]).same());
            let m = silu(b, &m);
            let m = b.conv(&m, &ConvSpec::new(16, 16, [3, 3]).same());
            let m = silu(b, &m);
            prev = b.node("Add", &[&prev, &m], vec![]);
            parts.push(prev.clone());
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let c = concat(b, &refs);
        let y = b.conv(&c, &ConvSpec::new(64, 24, [1, 1]));
        silu(b, &y)
    });
    // A Split whose halves are both read only by the Concat: both read in place, at odd
    // channel offsets (3 + 10 of 13).
    check_fusion(
        "split halves at odd offsets",
        &[1, 6, 7, 5],
        &[],
        (3, 0),
        |b, x| {
            let y = b.conv(x, &ConvSpec::new(6, 13, [1, 1]));
            let sizes = b.init_i64("sizes", &[2], &[3, 10]);
            let (y0, y1) = (b.fresh("y0"), b.fresh("y1"));
            b.node_full(
                "split",
                "Split",
                &[&y, &sizes],
                &[&y0, &y1],
                vec![attr::int("axis", 1)],
            );
            let c = concat(b, &[&y1, x, &y0]);
            b.conv(&c, &ConvSpec::new(19, 8, [1, 1]))
        },
    );
    // SqueezeNet's fire: expand 1x1 and 3x3 concatenated, read by the next squeeze conv;
    // odd channel counts, the model input as a part, an activation on the conv.
    check_fusion(
        "fire, odd channels, input as a part",
        &[1, 5, 9, 7],
        &[],
        (1, 0),
        |b, x| {
            let e1 = b.conv(x, &ConvSpec::new(5, 13, [1, 1]));
            let e3 = b.conv(x, &ConvSpec::new(5, 19, [3, 3]).same());
            let c = concat(b, &[&e1, x, &e3]);
            let y = b.conv(&c, &ConvSpec::new(37, 11, [1, 1]));
            b.node("Relu", &[&y], vec![])
        },
    );
    // A residual added to the conv reading the concatenation; batch 2; 7 parts.
    check_fusion(
        "7 parts plus a residual, batch 2",
        &[2, 8, 5, 6],
        &[],
        (1, 0),
        |b, x| {
            let ps: Vec<String> = (0..6)
                .map(|i| b.conv(x, &ConvSpec::new(8, 3 + 5 * i, [1, 1])))
                .collect();
            let mut refs: Vec<&str> = ps.iter().map(|p| p.as_str()).collect();
            refs.insert(3, x);
            let c = concat(b, &refs);
            let y = b.conv(&c, &ConvSpec::new(8 + 3 * 6 + 5 * 15, 8, [1, 1]));
            b.node("Add", &[&y, x], vec![])
        },
    );
    // Not read in place: a 3x3 conv reads it, it is read twice, 9 parts.
    check_fusion(
        "3x3 conv on a concatenation",
        &[1, 8, 6, 6],
        &[],
        (0, 0),
        |b, x| {
            let a = b.conv(x, &ConvSpec::new(8, 8, [1, 1]));
            let c = concat(b, &[x, &a]);
            b.conv(&c, &ConvSpec::new(16, 8, [3, 3]).same())
        },
    );
    check_fusion(
        "concatenation read twice",
        &[1, 8, 6, 6],
        &[],
        (0, 0),
        |b, x| {
            let a = b.conv(x, &ConvSpec::new(8, 8, [1, 1]));
            let c = concat(b, &[x, &a]);
            let y = b.conv(&c, &ConvSpec::new(16, 16, [1, 1]));
            b.node("Add", &[&y, &c], vec![])
        },
    );
    check_fusion("9 parts", &[1, 4, 5, 5], &[], (0, 0), |b, x| {
        let parts = [x; 9];
        let c = concat(b, &parts);
        b.conv(&c, &ConvSpec::new(36, 8, [1, 1]))
    });
}

/// A pool with `kind` (`MaxPool`, `AveragePool`), window `k`, stride `s` and `pads`, and
/// `more` attributes.
fn pool(
    b: &mut OnnxBuilder,
    kind: &str,
    x: &str,
    (k, s): (i64, i64),
    pads: [i64; 4],
    more: Vec<smof_tests::onnx_proto::AttributeProto>,
) -> String {
    let mut attrs = vec![
        attr::ints("kernel_shape", &[k, k]),
        attr::ints("strides", &[s, s]),
        attr::ints("pads", &pads),
    ];
    attrs.extend(more);
    b.node(kind, &[x], attrs)
}

/// SqueezeNet's fire module (8 channels in) before its max pool (3x3/2, ceil mode), then a
/// 1x1 conv.
fn fire_then_max_pool(b: &mut OnnxBuilder, x: &str) -> String {
    let s = b.conv(x, &ConvSpec::new(8, 4, [1, 1]));
    let e1 = b.conv(&s, &ConvSpec::new(4, 16, [1, 1]));
    let e3 = b.conv(&s, &ConvSpec::new(4, 16, [3, 3]).same());
    let c = concat(b, &[&e1, &e3]);
    let p = pool(
        b,
        "MaxPool",
        &c,
        (3, 2),
        [0; 4],
        vec![attr::int("ceil_mode", 1)],
    );
    b.conv(&p, &ConvSpec::new(32, 8, [1, 1]))
}

#[test]
fn concatenations_are_read_in_place_by_pools() {
    // SqueezeNet's fire module before its max pool (3x3/2, ceil mode): the pool reads the
    // two expand convs' outputs, each into its channels of the pooled tensor.
    check_fusion(
        "fire then max pool",
        &[1, 8, 13, 11],
        &[],
        (1, 1),
        fire_then_max_pool,
    );
    // The same, large enough for the pool to run by bands of rows on every thread (29
    // output rows, ceil mode).
    check_fusion(
        "fire then max pool, large",
        &[1, 8, 59, 61],
        &[],
        (1, 1),
        fire_then_max_pool,
    );
    // A padded max pool on its own (the graph's input and output), by bands of rows.
    check_fusion(
        "padded max pool, large",
        &[1, 24, 70, 50],
        &[],
        (0, 0),
        |b, x| pool(b, "MaxPool", x, (3, 2), [1, 1, 1, 1], vec![]),
    );
    // Ragged parts (5, the input's 3, 13 channels), an average pool counting its padding,
    // batch 2, the pool as the graph output.
    check_fusion(
        "ragged parts, average pool",
        &[2, 3, 7, 9],
        &[],
        (1, 1),
        |b, x| {
            let a = b.conv(x, &ConvSpec::new(3, 5, [1, 1]));
            let c = b.conv(x, &ConvSpec::new(3, 13, [3, 3]).same());
            let cat = concat(b, &[&a, x, &c]);
            pool(
                b,
                "AveragePool",
                &cat,
                (3, 2),
                [1, 0, 1, 1],
                vec![attr::int("count_include_pad", 1)],
            )
        },
    );
}
