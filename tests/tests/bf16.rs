//! `Precision::Bf16` sessions: an inverted-residual block (1x1 expand, depthwise 3x3, 1x1
//! project, as MobileNetV2's) and a concatenation read in place by a 1x1 conv, against f64
//! references that round each 1x1 conv's inputs and weights to bf16 as the kernels do; the
//! same to the bit on 1-3 threads and node by node;
//! f32 where the CPU or the kernel table has no bf16 kernel; and the bundled ImageNet
//! backbone on its bundled photo, in bf16 and in int8, close to its f32 embedding.

use smof::kernels::bf16::quantize;
use smof::{Model, Precision, Session, SessionOptions};
use smof_tests::{attr, kernel_choices, pseudo_random, smof_load, OnnxBuilder};

/// Whether this CPU has the bf16 kernels: those of the AVX-512 table (AVX512-BF16), or of
/// the NEON table (FEAT_BF16).
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512bf16") && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Whether sessions on the kernel table `name` run 1x1 convs in bf16 on this CPU.
fn table_has_bf16(name: &str) -> bool {
    (name == "x86_64-avx512" || name == "aarch64") && cpu_has_bf16()
}

const H: usize = 56;
const W: usize = 56;
const C_IN: usize = 24;
const C_MID: usize = 96;
const C_OUT: usize = 32;

/// The block's parameters, NCHW / ONNX layouts.
struct Block {
    w1: Vec<f32>,
    b1: Vec<f32>,
    wd: Vec<f32>,
    bd: Vec<f32>,
    w3: Vec<f32>,
    b3: Vec<f32>,
}

fn block() -> Block {
    let scaled =
        |seed, n, s: f32| -> Vec<f32> { pseudo_random(seed, n).iter().map(|v| v * s).collect() };
    Block {
        w1: scaled(1, C_MID * C_IN, 0.4),
        b1: scaled(2, C_MID, 0.2),
        wd: scaled(3, C_MID * 9, 0.5),
        bd: scaled(4, C_MID, 0.1),
        w3: scaled(5, C_OUT * C_MID, 0.3),
        b3: scaled(6, C_OUT, 0.1),
    }
}

/// The block as ONNX: Conv 1x1 + Relu, depthwise Conv 3x3 + Relu, Conv 1x1.
fn onnx(p: &Block) -> Vec<u8> {
    let mut b = OnnxBuilder::new(17);
    let x = b.input("x", &[1, C_IN, H, W]);
    let conv = |b: &mut OnnxBuilder, x: &str, w: &str, bias: &str, attrs| {
        b.node("Conv", &[x, w, bias], attrs)
    };
    let w1 = b.init("w1", &[C_MID, C_IN, 1, 1], &p.w1);
    let b1 = b.init("b1", &[C_MID], &p.b1);
    let e = conv(&mut b, &x, &w1, &b1, vec![]);
    let e = b.node("Relu", &[&e], vec![]);
    let wd = b.init("wd", &[C_MID, 1, 3, 3], &p.wd);
    let bd = b.init("bd", &[C_MID], &p.bd);
    let dw_attrs = vec![
        attr::int("group", C_MID as i64),
        attr::ints("pads", &[1, 1, 1, 1]),
    ];
    let d = conv(&mut b, &e, &wd, &bd, dw_attrs);
    let d = b.node("Relu", &[&d], vec![]);
    let w3 = b.init("w3", &[C_OUT, C_MID, 1, 1], &p.w3);
    let b3 = b.init("b3", &[C_OUT], &p.b3);
    let y = conv(&mut b, &d, &w3, &b3, vec![]);
    b.output(&y);
    b.build()
}

/// The block in f64 (NCHW), with `q` applied to each 1x1 conv's inputs and weights; also
/// returns, per output, the largest magnitude of one product of the project conv.
fn reference(p: &Block, x: &[f32], q: fn(f32) -> f32) -> (Vec<f64>, Vec<f64>) {
    let px = H * W;
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (e, _) = pointwise(&x, (C_IN, px), (&p.w1, &p.b1), true, q);
    let mut d = vec![0f64; C_MID * px];
    for c in 0..C_MID {
        for y in 0..H {
            for xx in 0..W {
                let mut s = p.bd[c] as f64;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (y + ky, xx + kx);
                        if (1..=H).contains(&iy) && (1..=W).contains(&ix) {
                            let v = e[c * px + (iy - 1) * W + ix - 1];
                            s += v * p.wd[c * 9 + ky * 3 + kx] as f64;
                        }
                    }
                }
                d[c * px + y * W + xx] = s.max(0.0);
            }
        }
    }
    pointwise(&d, (C_MID, px), (&p.w3, &p.b3), false, q)
}

/// Each output within `rel` of the reference's largest output, plus `terms` times the
/// largest single product of that output (a bf16 rounding that fell the other way).
fn assert_near(name: &str, got: &[f32], want: &[f64], term: &[f64], rel: f64, terms: f64) {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rel * scale + terms * term[i];
        assert!(
            (g as f64 - w).abs() <= tol,
            "{name}: output {i}: {g} vs {w} (tolerance {tol})"
        );
    }
}

#[test]
fn bf16_block_matches_a_rounded_reference_on_every_table() {
    let p = block();
    let bytes = onnx(&p);
    let x = pseudo_random(7, C_IN * H * W);
    let exact = reference(&p, &x, |v| v);
    let rounded = reference(&p, &x, quantize);
    for (name, choice) in kernel_choices() {
        let model = smof_load(&bytes, &[], choice, false);
        let run = |opts: SessionOptions| {
            let mut s = Session::new(&model, &opts.precision(Precision::Bf16)).unwrap();
            s.run(&[&x]).unwrap();
            (s.output(0).to_vec(), s.bf16_convs(), s.conv_chains().len())
        };
        let (y, convs, chains) = run(SessionOptions::default());
        let bf16 = table_has_bf16(name);
        assert_eq!(convs, if bf16 { 2 } else { 0 }, "{name}: bf16 convs");
        if name.starts_with("x86_64") {
            // The 1.2 MB expanded map makes a chain on x86 (1 MiB threshold): the bf16
            // kernels run on its bands.
            assert_eq!(chains, 1, "{name}: the block is one chain");
        }
        for threads in [2, 3] {
            let (yt, _, _) = run(SessionOptions::default().threads(threads));
            assert!(yt == y, "{name}: {threads} threads differ from one");
        }
        let (yl, _, _) = run(SessionOptions::default().layer_by_layer(true));
        assert!(yl == y, "{name}: node by node differs from the chain");
        if bf16 {
            // The f32 sums of the kernels against f64 (1e-5 of the largest output), and
            // an intermediate value that f32 and f64 round to neighbouring bf16 values
            // (a relative 2^-8 of one product).
            assert_near(name, &y, &rounded.0, &rounded.1, 1e-5, 2f64.powi(-7));
            // Not the f32 result: the rounding is there.
            let off = y
                .iter()
                .zip(&exact.0)
                .any(|(&g, &w)| (g as f64 - w).abs() > 1e-3);
            assert!(off, "{name}: bf16 output equals the f32 one");
        } else {
            assert_near(name, &y, &exact.0, &exact.1, 1e-5, 0.0);
        }
    }
}

/// Whether sessions on the kernel table `name` run 1x1 convs in int8 on this CPU: the
/// AVX-512 table with AVX512-VNNI, or the NEON table with FEAT_DotProd.
fn table_has_int8(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        name == "x86_64-avx512"
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(target_arch = "aarch64")]
    {
        name == "aarch64" && std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = name;
        false
    }
}

/// The bundled ImageNet backbone in bf16 and in int8 (`Precision::Int8`), against f32.
#[test]
fn bf16_and_int8_backbones_stay_close_to_f32_on_the_bundled_photo() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let onnx = std::fs::read(format!("{dir}/mobilenet_v2_imagenet_backbone.onnx")).unwrap();
    let bytes = smof_converter::convert(&onnx, &Default::default())
        .unwrap()
        .bytes;
    let photo = format!("{dir}/samples/imagenet_00_243.npy");
    let photo = smof_converter::npy::read(std::path::Path::new(&photo)).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let run = |p: Precision| {
        let mut s = Session::new(&model, &SessionOptions::default().precision(p)).unwrap();
        s.run(&[&photo.data]).unwrap();
        let convs = s.bf16_convs() + s.int8_convs();
        (s.output(0).to_vec(), convs)
    };
    let (f, _) = run(Precision::F32);
    let name = model.kernels().name;
    for (p, has) in [
        (Precision::Bf16, table_has_bf16(name)),
        (Precision::Int8, table_has_int8(name)),
    ] {
        let (b, convs) = run(p);
        if !has {
            assert_eq!(convs, 0, "{p:?}");
            assert!(b == f, "a session without {p:?} kernels computes in f32");
            continue;
        }
        // Every 1x1 conv of the backbone: 17 projections, 16 expansions, the last conv.
        assert_eq!(convs, 34, "{p:?}");
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
        };
        let cos = dot(&f, &b) / dot(&f, &f).sqrt() / dot(&b, &b).sqrt();
        // Over the 20 ImageNet photos of `docs/decisions.md`: bf16 0.998 on average (0.991
        // the least), int8 0.989 (0.970; 0.995 on this photo); an error in the kernels (a
        // pair or quad of channels swapped, a block misplaced, a zero point missed) brings it
        // far lower.
        assert!(cos >= 0.99, "{p:?}: embedding cosine to f32 {cos}");
        assert!(cos < 1.0 - 1e-7, "{p:?} changed nothing: {cos}");
    }
}

/// A 1x1 conv in f64 over NCHW `x` (`c_in` channels of `px` pixels), `q` applied to its
/// inputs and weights, optionally rectified; also returns, per output, the largest product.
fn pointwise(
    x: &[f64],
    (c_in, px): (usize, usize),
    (w, b): (&[f32], &[f32]),
    relu: bool,
    q: fn(f32) -> f32,
) -> (Vec<f64>, Vec<f64>) {
    let c_out = b.len();
    let mut out = vec![0f64; c_out * px];
    let mut term = vec![0f64; c_out * px];
    for o in 0..c_out {
        for i in 0..px {
            let mut s = b[o] as f64;
            let mut big = 0f64;
            for c in 0..c_in {
                let t = q(x[c * px + i] as f32) as f64 * q(w[o * c_in + c]) as f64;
                s += t;
                big = big.max(t.abs());
            }
            out[o * px + i] = if relu { s.max(0.0) } else { s };
            term[o * px + i] = big;
        }
    }
    (out, term)
}

#[test]
fn bf16_conv_reads_a_concatenation_in_place() {
    // x -> Conv 1x1 (24 -> 32) + Relu, Conv 1x1 (24 -> 64) + Relu; Concat; Conv 1x1
    // (96 -> 32): the concatenation is read in place by the last conv on the x86 tables.
    let (c_a, c_b, c_out) = (32, 64, 32);
    let scaled =
        |seed, n, s: f32| -> Vec<f32> { pseudo_random(seed, n).iter().map(|v| v * s).collect() };
    let (wa, ba) = (scaled(11, c_a * C_IN, 0.4), scaled(12, c_a, 0.2));
    let (wb, bb) = (scaled(13, c_b * C_IN, 0.4), scaled(14, c_b, 0.2));
    let (wc, bc) = (scaled(15, c_out * (c_a + c_b), 0.3), scaled(16, c_out, 0.1));
    let mut b = OnnxBuilder::new(17);
    let x = b.input("x", &[1, C_IN, H, W]);
    let conv = |b: &mut OnnxBuilder, x: &str, (w, bias): (&[f32], &[f32]), c_in| {
        let wn = b.fresh("w");
        let bn = b.fresh("b");
        let w = b.init(&wn, &[bias.len(), c_in, 1, 1], w);
        let bias = b.init(&bn, &[bias.len()], bias);
        b.node("Conv", &[x, &w, &bias], vec![])
    };
    let a = conv(&mut b, &x, (&wa, &ba), C_IN);
    let a = b.node("Relu", &[&a], vec![]);
    let bo = conv(&mut b, &x, (&wb, &bb), C_IN);
    let bo = b.node("Relu", &[&bo], vec![]);
    let cat = b.node("Concat", &[&a, &bo], vec![attr::int("axis", 1)]);
    let y = conv(&mut b, &cat, (&wc, &bc), c_a + c_b);
    b.output(&y);
    let bytes = b.build();
    let xin = pseudo_random(17, C_IN * H * W);
    let x64: Vec<f64> = xin.iter().map(|&v| v as f64).collect();
    let px = H * W;
    let reference = |q: fn(f32) -> f32| {
        let (ra, _) = pointwise(&x64, (C_IN, px), (&wa, &ba), true, q);
        let (rb, _) = pointwise(&x64, (C_IN, px), (&wb, &bb), true, q);
        let cat: Vec<f64> = ra.into_iter().chain(rb).collect();
        pointwise(&cat, (c_a + c_b, px), (&wc, &bc), false, q)
    };
    let (exact, rounded) = (reference(|v| v), reference(quantize));
    for (name, choice) in kernel_choices() {
        let model = smof_load(&bytes, &[], choice, false);
        let run = |opts: SessionOptions| {
            let mut s = Session::new(&model, &opts.precision(Precision::Bf16)).unwrap();
            s.run(&[&xin]).unwrap();
            let in_place = s.kernel_names().contains(&"read_in_place");
            (s.output(0).to_vec(), s.bf16_convs(), in_place)
        };
        let (y, convs, in_place) = run(SessionOptions::default());
        let bf16 = table_has_bf16(name);
        assert_eq!(convs, if bf16 { 3 } else { 0 }, "{name}: bf16 convs");
        if name.starts_with("x86_64") {
            assert!(in_place, "{name}: the concatenation is read in place");
        }
        for threads in [2, 3] {
            let (yt, _, _) = run(SessionOptions::default().threads(threads));
            assert!(yt == y, "{name}: {threads} threads differ from one");
        }
        if bf16 {
            assert_near(name, &y, &rounded.0, &rounded.1, 1e-5, 2f64.powi(-7));
        } else {
            assert_near(name, &y, &exact.0, &exact.1, 1e-5, 0.0);
        }
    }
}
