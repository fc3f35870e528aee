//! `Precision::Bf16`, `Precision::F16` and `Precision::Int8` sessions on every kernel table of
//! this CPU, with a
//! model written by the runtime's own format writer (so that it also runs on aarch64 under
//! qemu, where the converter's test crate does not build): two 1x1 convs in a row (a conv
//! chain when chains are forced) and a third, whose outputs are concatenated (28 and 13
//! channels) and read in place by a fourth, against f64 references
//! that compute each conv as the precision defines it (`kernels::bf16::dot`,
//! `kernels::f16::dot`, `kernels::int8::dot`); the same to the bit on 1-3 threads; f32 where
//! the table or the CPU has no kernel of that precision.

use smof::graph::*;
use smof::kernels::{bf16, f16, int8, KernelTable};
use smof::{Model, ModelOptions, Precision, Session, SessionOptions};

const H: usize = 12;
const W: usize = 13;
const C_IN: usize = 20;
const C_A0: usize = 32;
const C_A: usize = 28;
const C_B: usize = 13;
const C_OUT: usize = 40;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 - 500.0) / 500.0)
        .collect()
}

fn conv(in_c: usize, out_c: usize, weight: u32, act: Activation) -> Op {
    Op::Conv(Conv {
        in_c: in_c as u32,
        out_c: out_c as u32,
        groups: 1,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
        weight,
        bias: Some(weight + 1),
        act,
    })
}

/// `x -> a = relu(conv 1x1 (relu(conv 1x1))), b = relu(conv 1x1); concat(a, b) -> conv 1x1 ->
/// y`, and its weights (canonical layout, `[OC][IC]`, then the bias, per conv); the biases
/// times `m`, so that an input times `m` gives every activation times `m`.
fn model(m: f32) -> (Vec<u8>, Vec<Vec<f32>>) {
    let t = |name: &str, c: usize| TensorDesc {
        name: name.into(),
        shape: Shape4::new(1, H as u32, W as u32, c as u32),
    };
    let wd = |name: &str, dims: Vec<u32>| WeightDesc {
        name: name.into(),
        dtype: DType::F32,
        layout: Layout::Canonical,
        dims,
        offset: 0,
        byte_len: 0,
    };
    let node = |name: &str, op: Op, inputs: Vec<u32>, output: u32| Node {
        name: name.into(),
        op,
        inputs,
        outputs: vec![output],
    };
    let cat = C_A + C_B;
    let graph = Graph {
        meta: Metadata {
            producer: "test".into(),
            producer_version: "0".into(),
            model_name: "bf16-concat".into(),
            description: String::new(),
        },
        tensors: vec![
            t("x", C_IN),
            t("a0", C_A0),
            t("a", C_A),
            t("b", C_B),
            t("cat", cat),
            t("y", C_OUT),
        ],
        weights: vec![
            wd("wa0", vec![C_A0 as u32, C_IN as u32, 1, 1]),
            wd("ba0", vec![C_A0 as u32]),
            wd("wa", vec![C_A as u32, C_A0 as u32, 1, 1]),
            wd("ba", vec![C_A as u32]),
            wd("wb", vec![C_B as u32, C_IN as u32, 1, 1]),
            wd("bb", vec![C_B as u32]),
            wd("wc", vec![C_OUT as u32, cat as u32, 1, 1]),
            wd("bc", vec![C_OUT as u32]),
        ],
        nodes: vec![
            node("a0", conv(C_IN, C_A0, 0, Activation::Relu), vec![0], 1),
            node("a", conv(C_A0, C_A, 2, Activation::Relu), vec![1], 2),
            node("b", conv(C_IN, C_B, 4, Activation::Relu), vec![0], 3),
            node("cat", Op::Concat, vec![2, 3], 4),
            node("c", conv(cat, C_OUT, 6, Activation::None), vec![4], 5),
        ],
        inputs: vec![IoDesc {
            name: "x".into(),
            tensor: 0,
            dims: vec![1, C_IN as u32, H as u32, W as u32],
        }],
        outputs: vec![IoDesc {
            name: "y".into(),
            tensor: 5,
            dims: vec![1, C_OUT as u32, H as u32, W as u32],
        }],
    };
    let sizes = [
        C_A0 * C_IN,
        C_A0,
        C_A * C_A0,
        C_A,
        C_B * C_IN,
        C_B,
        C_OUT * cat,
        C_OUT,
    ];
    let weights: Vec<Vec<f32>> = (sizes.iter().enumerate())
        .map(|(k, &n)| {
            let scale = if k % 2 == 1 { 0.5 * m } else { 0.5 };
            values(n, k + 1).iter().map(|v| v * scale).collect()
        })
        .collect();
    let bytes: Vec<Vec<u8>> = weights
        .iter()
        .map(|w| bytemuck::cast_slice(w).to_vec())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    (smof::format::write(&graph, &refs).unwrap(), weights)
}

/// A 1x1 conv in f64 over NCHW `x` (`c_in` channels), each output's dot product by `dot`
/// (see [`Arith`]), optionally rectified; also each output's sum of product magnitudes.
fn pointwise(
    x: &[f64],
    c_in: usize,
    (w, b): (&[f32], &[f32]),
    relu: bool,
    dot: Dot,
) -> (Vec<f64>, Vec<f64>) {
    let px = H * W;
    let c_out = b.len();
    let mut out = vec![0f64; c_out * px];
    let mut mags = vec![0f64; c_out * px];
    for i in 0..px {
        let xi: Vec<f32> = (0..c_in).map(|c| x[c * px + i] as f32).collect();
        for o in 0..c_out {
            let (s, m, _) = dot(&xi, &w[o * c_in..][..c_in]);
            let s = s + b[o] as f64;
            out[o * px + i] = if relu { s.max(0.0) } else { s };
            mags[o * px + i] = m;
        }
    }
    (out, mags)
}

/// A conv's dot product (sum, sum of magnitudes, f32 additions) in a precision.
type Dot = fn(&[f32], &[f32]) -> (f64, f64, usize);

/// The f32 dot product, in f64.
fn exact(x: &[f32], w: &[f32]) -> (f64, f64, usize) {
    let t = x.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64);
    (t.clone().sum(), t.map(f64::abs).sum(), x.len())
}

/// The model in f64, each conv's dot products by `dot`.
fn reference(x: &[f32], w: &[Vec<f32>], dot: Dot) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (a0, _) = pointwise(&x, C_IN, (&w[0], &w[1]), true, dot);
    let (a, _) = pointwise(&a0, C_A0, (&w[2], &w[3]), true, dot);
    let (b, _) = pointwise(&x, C_IN, (&w[4], &w[5]), true, dot);
    let cat: Vec<f64> = a.into_iter().chain(b).collect();
    pointwise(&cat, C_A + C_B, (&w[6], &w[7]), false, dot)
}

/// A reduced precision as the test checks it.
struct Arith {
    precision: Precision,
    dot: Dot,
    /// Of the sum of an output's product magnitudes, what an intermediate value that f32
    /// and f64 round to neighbouring values of the precision may change: one product by one
    /// rounding unit in bf16 (2^-8, doubled); in f16 one unit (2^-11) of a product and of
    /// the few partial sums after it that then round the other way.
    slack: f64,
    /// The session's count of convs in this precision.
    convs: fn(&Session) -> usize,
}

/// Whether this CPU has the kernels of `p` in the table `name`.
fn has_kernels(p: Precision, name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let bw = name == "x86_64-avx512" && std::is_x86_feature_detected!("avx512bw");
        bw && match p {
            Precision::Bf16 => std::is_x86_feature_detected!("avx512bf16"),
            Precision::Int8 => std::is_x86_feature_detected!("avx512vnni"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        name == "aarch64"
            && match p {
                Precision::Bf16 => std::arch::is_aarch64_feature_detected!("bf16"),
                Precision::F16 => std::arch::is_aarch64_feature_detected!("fp16"),
                Precision::Int8 => std::arch::is_aarch64_feature_detected!("dotprod"),
                Precision::F32 => true,
            }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (p, name);
        false
    }
}

/// The model, its input and every activation times `m`: 1, and far beyond the f16 range either
/// way (an untrained network's activations of 1e-9, and 16384 times larger than usual).
#[test]
fn reduced_precision_convs_and_a_concatenation_read_in_place_match_their_definition() {
    for m in [1.0, 2f32.powi(-30), 2f32.powi(14)] {
        check_at(m);
    }
}

/// The test at the magnitude `m`.
fn check_at(m: f32) {
    let (bytes, weights) = model(m);
    let x: Vec<f32> = values(C_IN * H * W, 9).iter().map(|v| v * m).collect();
    let f32_ref = reference(&x, &weights, exact);
    let ariths = [
        Arith {
            precision: Precision::Bf16,
            dot: bf16::dot,
            slack: 2f64.powi(-7),
            convs: |s| s.bf16_convs(),
        },
        Arith {
            precision: Precision::F16,
            dot: f16::dot,
            slack: 2f64.powi(-9),
            convs: |s| s.f16_convs(),
        },
        Arith {
            precision: Precision::Int8,
            dot: int8::dot,
            slack: 2f64.powi(-7),
            convs: |s| s.int8_convs(),
        },
    ];
    let mut ran = Vec::new();
    for arith in &ariths {
        let want = reference(&x, &weights, arith.dot);
        for table in KernelTable::all_supported() {
            let opts = ModelOptions {
                kernels: KernelTable::choice_for_name(table.name).unwrap(),
                ..Default::default()
            };
            let model = Model::from_bytes_with(&bytes, &opts).unwrap();
            let run = |opts: SessionOptions| {
                let mut s = Session::new(&model, &opts.precision(arith.precision)).unwrap();
                s.run(&[&x]).unwrap();
                let in_place = s.kernel_names().contains(&"read_in_place");
                (s.output(0).to_vec(), (arith.convs)(&s), in_place)
            };
            let (y, convs, in_place) = run(SessionOptions::default());
            let name = format!("{} {:?} at {m:e}", table.name, arith.precision);
            let reduced = has_kernels(arith.precision, table.name);
            if reduced {
                ran.push(name.clone());
                // All four convs, the last reading the concatenation in place.
                assert_eq!(convs, 4, "{name}: convs in the precision");
                assert!(in_place, "{name}: the concatenation is read in place");
            } else {
                assert_eq!(convs, 0, "{name}: convs in the precision");
            }
            for threads in [2, 3] {
                let (yt, _, _) = run(SessionOptions::default().threads(threads));
                assert!(yt == y, "{name}: {threads} threads differ from one");
            }
            // The first two convs as a chain (their 13 KiB intermediate is below every
            // table's threshold): the kernels run on the chain's bands, to the same bits.
            let chained = SessionOptions::default().chain_min_bytes(1);
            let s = Session::new(&model, &chained.clone().precision(arith.precision)).unwrap();
            assert_eq!(s.conv_chains().len(), 1, "{name}: a chain when forced");
            for threads in [1, 2] {
                let (yc, convs_c, _) = run(chained.clone().threads(threads));
                assert_eq!(convs_c, convs, "{name}: convs in the precision, chained");
                assert!(yc == y, "{name}: the chain on {threads} threads differs");
            }
            let (want, mags) = if reduced { &want } else { &f32_ref };
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let mut off = false;
            for (i, ((&got, &want), &mag)) in y.iter().zip(want).zip(mags).enumerate() {
                // f32 sums against f64 (1e-5 of the largest output), and the precision's
                // slack where it ran.
                let tol = 1e-5 * scale + if reduced { arith.slack * mag } else { 0.0 };
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "{name}: output {i} is {got}, want {want} (tolerance {tol})"
                );
                off |= (got as f64 - f32_ref.0[i]).abs() > 1e-4 * m as f64;
            }
            assert_eq!(
                off, reduced,
                "{name}: the rounding shows iff the precision ran"
            );
            // And the precision keeps the f32 result, at every magnitude: within 1% in norm.
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>().sqrt();
            let diff = norm(&mut y.iter().zip(&f32_ref.0).map(|(&g, &f)| g as f64 - f));
            let rel = diff / norm(&mut f32_ref.0.iter().copied());
            assert!(rel < 1e-2, "{name}: relative error {rel:e} to f32");
            eprintln!("{name}: relative error {rel:e} to f32");
        }
    }
    eprintln!("reduced-precision kernels run on this CPU: {ran:?}");
}

/// A classifier: `x [2, 300] -> fully connected (500 outputs, bias) -> y`, and its weights
/// (canonical `[500][300]`, then the bias).
fn classifier() -> (Vec<u8>, Vec<Vec<f32>>) {
    const IN: u32 = 300;
    const OUT: u32 = 500;
    let t = |name: &str, c: u32| TensorDesc {
        name: name.into(),
        shape: Shape4::new(2, 1, 1, c),
    };
    let wd = |name: &str, dims: Vec<u32>| WeightDesc {
        name: name.into(),
        dtype: DType::F32,
        layout: Layout::Canonical,
        dims,
        offset: 0,
        byte_len: 0,
    };
    let fc = Fc {
        in_features: IN,
        out_features: OUT,
        weight: 0,
        bias: Some(1),
        act: Activation::None,
    };
    let graph = Graph {
        meta: Metadata {
            producer: "test".into(),
            producer_version: "0".into(),
            model_name: "bf16-fc".into(),
            description: String::new(),
        },
        tensors: vec![t("x", IN), t("y", OUT)],
        weights: vec![wd("w", vec![OUT, IN]), wd("b", vec![OUT])],
        nodes: vec![Node {
            name: "fc".into(),
            op: Op::Fc(fc),
            inputs: vec![0],
            outputs: vec![1],
        }],
        inputs: vec![IoDesc {
            name: "x".into(),
            tensor: 0,
            dims: vec![2, IN],
        }],
        outputs: vec![IoDesc {
            name: "y".into(),
            tensor: 1,
            dims: vec![2, OUT],
        }],
    };
    let weights = vec![values((OUT * IN) as usize, 3), values(OUT as usize, 4)];
    let bytes: Vec<Vec<u8>> = weights
        .iter()
        .map(|w| bytemuck::cast_slice(w).to_vec())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    (smof::format::write(&graph, &refs).unwrap(), weights)
}

/// A fully connected layer (a classifier's, large enough to be split between threads) in
/// bf16 and f16 sessions: rounded as `kernels::bf16::dot` defines where the table has the
/// bf16 kernel (AVX-512 with AVX512-BF16), with f16 weights as `kernels::f16::fc_dot` defines
/// in f16 sessions on the aarch64 table, else f32; the same to the bit on 1-3 threads.
#[test]
fn a_classifier_in_a_reduced_precision_matches_its_definition() {
    let (bytes, w) = classifier();
    let (n, c, of) = (2, 300, 500);
    let x: Vec<f32> = values(n * c, 5).iter().map(|v| v * 2.0).collect();
    for table in KernelTable::all_supported() {
        let opts = ModelOptions {
            kernels: KernelTable::choice_for_name(table.name).unwrap(),
            ..Default::default()
        };
        let model = Model::from_bytes_with(&bytes, &opts).unwrap();
        for precision in [Precision::Bf16, Precision::F16] {
            let name = format!("{} {precision:?}", table.name);
            let reduced = match precision {
                Precision::Bf16 => {
                    cfg!(target_arch = "x86_64") && has_kernels(precision, table.name)
                }
                _ => cfg!(target_arch = "aarch64") && table.name == "aarch64",
            };
            let run = |threads: usize| {
                let opts = SessionOptions::default().threads(threads);
                let mut s = Session::new(&model, &opts.precision(precision)).unwrap();
                s.run(&[&x]).unwrap();
                (s.output(0).to_vec(), s.bf16_convs() + s.f16_convs())
            };
            let (y, count) = run(1);
            assert_eq!(count, reduced as usize, "{name}: layers in the precision");
            for threads in [2, 3] {
                assert!(
                    run(threads).0 == y,
                    "{name}: {threads} threads differ from one"
                );
            }
            let dot: Dot = match (reduced, precision) {
                (false, _) => exact,
                (true, Precision::Bf16) => bf16::dot,
                (true, _) => f16::fc_dot,
            };
            let mut off = false;
            for item in 0..n {
                for o in 0..of {
                    let (s, mags, adds) = dot(&x[item * c..][..c], &w[0][o * c..][..c]);
                    let want = s + w[1][o] as f64;
                    let got = y[item * of + o] as f64;
                    let tol = 4e-7 * (adds as f64 + 2.0) * (mags + 1.0);
                    assert!(
                        (got - want).abs() <= tol,
                        "{name}: item {item} output {o} is {got}, want {want}"
                    );
                    let (f, _, _) = exact(&x[item * c..][..c], &w[0][o * c..][..c]);
                    off |= (got - f - w[1][o] as f64).abs() > 1e-4;
                }
            }
            assert_eq!(
                off, reduced,
                "{name}: the rounding shows iff the precision ran"
            );
        }
    }
}
