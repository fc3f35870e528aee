//! `Precision::Bf16` sessions on every kernel table of this CPU, with a model written by the
//! runtime's own format writer (so that it also runs on aarch64 under qemu, where the
//! converter's test crate does not build): two 1x1 convs whose outputs are concatenated and
//! read in place by a third, against f64 references that round each conv's inputs and
//! weights to bf16 as the kernels do; the same to the bit on 1-3 threads; f32 where the
//! table or the CPU has no bf16 kernel.

use smof::graph::*;
use smof::kernels::bf16::quantize;
use smof::kernels::KernelTable;
use smof::{Model, ModelOptions, Precision, Session, SessionOptions};

const H: usize = 12;
const W: usize = 13;
const C_IN: usize = 20;
const C_A: usize = 26;
const C_B: usize = 14;
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

/// `x -> a = relu(conv 1x1), b = relu(conv 1x1); concat(a, b) -> conv 1x1 -> y`, and its
/// weights (canonical layout, `[OC][IC]`, then the bias, per conv).
fn model() -> (Vec<u8>, Vec<Vec<f32>>) {
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
            t("a", C_A),
            t("b", C_B),
            t("cat", cat),
            t("y", C_OUT),
        ],
        weights: vec![
            wd("wa", vec![C_A as u32, C_IN as u32, 1, 1]),
            wd("ba", vec![C_A as u32]),
            wd("wb", vec![C_B as u32, C_IN as u32, 1, 1]),
            wd("bb", vec![C_B as u32]),
            wd("wc", vec![C_OUT as u32, cat as u32, 1, 1]),
            wd("bc", vec![C_OUT as u32]),
        ],
        nodes: vec![
            node("a", conv(C_IN, C_A, 0, Activation::Relu), vec![0], 1),
            node("b", conv(C_IN, C_B, 2, Activation::Relu), vec![0], 2),
            node("cat", Op::Concat, vec![1, 2], 3),
            node("c", conv(cat, C_OUT, 4, Activation::None), vec![3], 4),
        ],
        inputs: vec![IoDesc {
            name: "x".into(),
            tensor: 0,
            dims: vec![1, C_IN as u32, H as u32, W as u32],
        }],
        outputs: vec![IoDesc {
            name: "y".into(),
            tensor: 4,
            dims: vec![1, C_OUT as u32, H as u32, W as u32],
        }],
    };
    let sizes = [C_A * C_IN, C_A, C_B * C_IN, C_B, C_OUT * cat, C_OUT];
    let weights: Vec<Vec<f32>> = (sizes.iter().enumerate())
        .map(|(k, &n)| values(n, k + 1).iter().map(|v| v * 0.5).collect())
        .collect();
    let bytes: Vec<Vec<u8>> = weights
        .iter()
        .map(|w| bytemuck::cast_slice(w).to_vec())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    (smof::format::write(&graph, &refs).unwrap(), weights)
}

/// A 1x1 conv in f64 over NCHW `x`, `q` applied to its inputs and weights; also the largest
/// product of each output.
fn pointwise(
    x: &[f64],
    c_in: usize,
    (w, b): (&[f32], &[f32]),
    relu: bool,
    q: fn(f32) -> f32,
) -> (Vec<f64>, Vec<f64>) {
    let px = H * W;
    let c_out = b.len();
    let mut out = vec![0f64; c_out * px];
    let mut big = vec![0f64; c_out * px];
    for o in 0..c_out {
        for i in 0..px {
            let mut s = b[o] as f64;
            let mut m = 0f64;
            for c in 0..c_in {
                let t = q(x[c * px + i] as f32) as f64 * q(w[o * c_in + c]) as f64;
                s += t;
                m = m.max(t.abs());
            }
            out[o * px + i] = if relu { s.max(0.0) } else { s };
            big[o * px + i] = m;
        }
    }
    (out, big)
}

/// The model in f64, each conv's operands through `q`.
fn reference(x: &[f32], w: &[Vec<f32>], q: fn(f32) -> f32) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (a, _) = pointwise(&x, C_IN, (&w[0], &w[1]), true, q);
    let (b, _) = pointwise(&x, C_IN, (&w[2], &w[3]), true, q);
    let cat: Vec<f64> = a.into_iter().chain(b).collect();
    pointwise(&cat, C_A + C_B, (&w[4], &w[5]), false, q)
}

/// Whether this CPU has the bf16 kernels of the table `name`.
fn has_bf16(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        name == "x86_64-avx512"
            && std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(target_arch = "aarch64")]
    {
        name == "aarch64" && std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = name;
        false
    }
}

#[test]
fn bf16_convs_and_a_concatenation_read_in_place_match_a_rounded_reference() {
    let (bytes, weights) = model();
    let x = values(C_IN * H * W, 9);
    let exact = reference(&x, &weights, |v| v);
    let rounded = reference(&x, &weights, quantize);
    let mut bf16_tables = 0;
    for table in KernelTable::all_supported() {
        let opts = ModelOptions {
            kernels: KernelTable::choice_for_name(table.name).unwrap(),
            ..Default::default()
        };
        let model = Model::from_bytes_with(&bytes, &opts).unwrap();
        let run = |threads: usize| {
            let opts = SessionOptions::default()
                .threads(threads)
                .precision(Precision::Bf16);
            let mut s = Session::new(&model, &opts).unwrap();
            s.run(&[&x]).unwrap();
            let in_place = s.kernel_names().contains(&"read_in_place");
            (s.output(0).to_vec(), s.bf16_convs(), in_place)
        };
        let (y, convs, in_place) = run(1);
        let bf16 = has_bf16(table.name);
        bf16_tables += bf16 as usize;
        assert_eq!(
            convs,
            if bf16 { 3 } else { 0 },
            "{}: bf16 convs",
            table.name
        );
        if bf16 {
            assert!(
                in_place,
                "{}: the concatenation is read in place",
                table.name
            );
        }
        for threads in [2, 3] {
            let (yt, _, _) = run(threads);
            assert!(yt == y, "{}: {threads} threads differ from one", table.name);
        }
        let (want, big) = if bf16 { &rounded } else { &exact };
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let mut off = false;
        for (i, ((&got, &want), &big)) in y.iter().zip(want).zip(big).enumerate() {
            // f32 sums of at most 40 terms against f64 (1e-5 of the largest output); with
            // bf16, also an intermediate value that f32 and f64 round to neighbouring bf16
            // values (a relative 2^-8 of one product, doubled).
            let tol = 1e-5 * scale + if bf16 { 2f64.powi(-7) * big } else { 0.0 };
            assert!(
                (got as f64 - want).abs() <= tol,
                "{}: output {i} is {got}, want {want} (tolerance {tol})",
                table.name
            );
            off |= (got as f64 - exact.0[i]).abs() > 1e-3;
        }
        assert_eq!(
            off, bf16,
            "{}: bf16 rounding shows iff bf16 ran",
            table.name
        );
    }
    eprintln!("{bf16_tables} kernel table(s) with bf16 kernels on this CPU");
}
