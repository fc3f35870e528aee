//! Converter robustness on random valid CNN graphs: kernels 1/3/5/7, strides 1 and 2,
//! asymmetric pads, dilation, dense, grouped and depthwise convs, BatchNormalization, Relu,
//! Add and Concat branches, max and average pooling, global pooling and a Gemm head.
//!
//! Each graph is converted, run on every kernel table and compared with tract (the
//! independent reference). Some convs get an all-zero outer ring: the conversion's exact
//! shrink must remove it and keep the outputs. Each graph is also converted with a FLOP
//! budget (rings and channels): the pruned file must load, run and keep the input and output
//! shapes, and meet the budget it reports, or fail with a clear error.
//!
//! The generator is seeded, so every run checks the same `CASES` graphs; set
//! `SMOF_RANDOM_GRAPHS_SEED` to draw another set.

use smof_converter::prune::{Budget, PruneOptions};
use smof_converter::{convert, convert_file, ConvertOptions};
use smof_tests::{attr, check_against_tract, random_input, OnnxBuilder, Rng};

/// Graphs per run: a few seconds in CI.
const CASES: usize = 30;

/// The feature map a generator step works on.
#[derive(Clone)]
struct Feat {
    name: String,
    c: usize,
    h: usize,
    w: usize,
}

/// What the generator made, for the checks.
struct Generated {
    onnx: Vec<u8>,
    input: Vec<usize>,
    description: Vec<String>,
    /// Convs whose outer ring is all zero and whose pads allow removing it.
    prunable_zero_rings: usize,
}

struct Gen {
    rng: Rng,
    b: OnnxBuilder,
    description: Vec<String>,
    prunable_zero_rings: usize,
}

fn out_size(size: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (size + p0 + p1)
        .checked_sub(span)
        .map(|v| v / s + 1)
        .filter(|&v| v >= 1)
}

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    /// A conv with weights uniform in `±sqrt(3 / fan_in)` (outputs of order one), the outer
    /// ring zeroed when `zero_ring`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &Feat,
        out_c: usize,
        k: usize,
        stride: usize,
        dil: usize,
        pads: [usize; 4],
        group: usize,
        zero_ring: bool,
    ) -> Option<Feat> {
        let h = out_size(x.h, k, stride, dil, pads[0], pads[2])?;
        let w = out_size(x.w, k, stride, dil, pads[1], pads[3])?;
        let icg = x.c / group;
        let bound = (3.0 / (icg * k * k) as f32).sqrt();
        let mut wdata = self.rng.vec(out_c * icg * k * k, -bound, bound);
        if zero_ring {
            for (i, v) in wdata.iter_mut().enumerate() {
                let (y, xx) = ((i / k) % k, i % k);
                if y == 0 || xx == 0 || y == k - 1 || xx == k - 1 {
                    *v = 0.0;
                }
            }
            if pads.iter().all(|&p| p >= dil) {
                self.prunable_zero_rings += 1;
            }
        }
        let bias = self.rng.vec(out_c, -0.1, 0.1);
        let wn = self.b.fresh("w");
        let wn = self.b.init(&wn, &[out_c, icg, k, k], &wdata);
        let bn = self.b.fresh("b");
        let bn = self.b.init(&bn, &[out_c], &bias);
        let y = self.b.node(
            "Conv",
            &[&x.name, &wn, &bn],
            vec![
                attr::ints("kernel_shape", &[k as i64, k as i64]),
                attr::ints("strides", &[stride as i64, stride as i64]),
                attr::ints("dilations", &[dil as i64, dil as i64]),
                attr::ints("pads", &pads.map(|p| p as i64)),
                attr::int("group", group as i64),
            ],
        );
        self.description.push(format!(
            "conv{k}x{k} s{stride} d{dil} g{group} {}->{out_c} pads {pads:?}{}",
            x.c,
            if zero_ring { " zero-ring" } else { "" }
        ));
        Some(Feat {
            name: y,
            c: out_c,
            h,
            w,
        })
    }

    /// A random conv (dense, grouped or depthwise), maybe followed by BatchNormalization and
    /// maybe by Relu. Falls back to a 1x1 conv when the drawn window does not fit.
    fn random_conv(&mut self, x: &Feat) -> Feat {
        let k = self.pick(&[1, 3, 3, 5, 7]);
        let stride = if x.h >= 4 && x.w >= 4 {
            self.pick(&[1, 1, 2])
        } else {
            1
        };
        let dil = if k == 3 && self.below(4) == 0 { 2 } else { 1 };
        let mut pads = [0usize; 4];
        for p in &mut pads {
            *p = self.below(dil * (k / 2) + 1);
        }
        let kind = self.below(4);
        let (group, out_c) = match kind {
            0 if x.c > 1 => (x.c, x.c), // depthwise
            1 if x.c.is_multiple_of(2) => (2, 2 * (1 + self.below(6))),
            _ => (1, 1 + self.below(16)),
        };
        let zero_ring = k >= 3 && self.below(3) == 0;
        let y = self
            .conv(x, out_c, k, stride, dil, pads, group, zero_ring)
            .or_else(|| self.conv(x, out_c, 1, 1, 1, [0; 4], group, false))
            .expect("a 1x1 conv always fits");
        let mut y = y;
        if self.below(3) == 0 {
            y.name = self.b.batchnorm(&y.name, y.c, None);
            self.description.push("bn".into());
        }
        if self.below(2) == 0 {
            y.name = self.b.node("Relu", &[&y.name], vec![]);
            self.description.push("relu".into());
        }
        y
    }

    /// Two "same" convs from `x`, joined by Add (same channels) or Concat.
    fn branch(&mut self, x: &Feat) -> Feat {
        let c = 1 + self.below(12);
        let ka = self.pick(&[1, 3, 5]);
        let kb = self.pick(&[1, 3, 7]);
        let za = ka >= 3 && self.below(3) == 0;
        let a = self
            .conv(x, c, ka, 1, 1, [ka / 2; 4], 1, za)
            .expect("same conv");
        let concat = self.below(2) == 0;
        let cb = if concat { 1 + self.below(12) } else { c };
        let bb = self
            .conv(x, cb, kb, 1, 1, [kb / 2; 4], 1, false)
            .expect("same conv");
        let name = if concat {
            self.description.push("concat".into());
            self.b
                .node("Concat", &[&a.name, &bb.name], vec![attr::int("axis", 1)])
        } else {
            self.description.push("add".into());
            self.b.node("Add", &[&a.name, &bb.name], vec![])
        };
        Feat {
            name,
            c: if concat { c + cb } else { c },
            h: x.h,
            w: x.w,
        }
    }

    fn pool(&mut self, x: &Feat) -> Option<Feat> {
        let max = self.below(2) == 0;
        let k = self.pick(&[2, 3]);
        let s = self.pick(&[1, 2]);
        let p = if k == 3 { self.below(2) } else { 0 };
        let h = out_size(x.h, k, s, 1, p, p)?;
        let w = out_size(x.w, k, s, 1, p, p)?;
        let op = if max { "MaxPool" } else { "AveragePool" };
        let name = self.b.node(
            op,
            &[&x.name],
            vec![
                attr::ints("kernel_shape", &[k as i64, k as i64]),
                attr::ints("strides", &[s as i64, s as i64]),
                attr::ints("pads", &[p as i64; 4]),
            ],
        );
        self.description.push(format!("{op} k{k} s{s} p{p}"));
        Some(Feat { name, c: x.c, h, w })
    }
}

fn generate(seed: u64) -> Generated {
    let mut g = Gen {
        rng: Rng::new(seed),
        b: OnnxBuilder::with_seed(13, seed),
        description: Vec::new(),
        prunable_zero_rings: 0,
    };
    let c = 1 + g.below(6);
    let h = 6 + g.below(15);
    let w = 6 + g.below(15);
    let input = vec![1, c, h, w];
    let x = g.b.input("x", &input);
    let mut f = Feat { name: x, c, h, w };
    let steps = 2 + g.below(4);
    for _ in 0..steps {
        f = match g.below(5) {
            0 => g.branch(&f),
            1 => g.pool(&f).unwrap_or(f),
            _ => g.random_conv(&f),
        };
    }
    if g.below(2) == 0 {
        let p = g.b.node("GlobalAveragePool", &[&f.name], vec![]);
        let flat = g.b.node("Flatten", &[&p], vec![attr::int("axis", 1)]);
        let out = 1 + g.below(10);
        let wn = g.b.fresh("fc");
        let bound = (3.0 / f.c as f32).sqrt();
        let wdata = g.rng.vec(out * f.c, -bound, bound);
        let wn = g.b.init(&wn, &[out, f.c], &wdata);
        let bn = g.b.fresh("fcb");
        let bdata = g.rng.vec(out, -0.1, 0.1);
        let bn = g.b.init(&bn, &[out], &bdata);
        let y =
            g.b.node("Gemm", &[&flat, &wn, &bn], vec![attr::int("transB", 1)]);
        g.description
            .push(format!("gap flatten gemm {}->{out}", f.c));
        f.name = y;
    }
    g.b.output(&f.name);
    Generated {
        onnx: g.b.build(),
        input,
        description: g.description,
        prunable_zero_rings: g.prunable_zero_rings,
    }
}

fn base_seed() -> u64 {
    std::env::var("SMOF_RANDOM_GRAPHS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE)
}

#[test]
fn random_cnn_graphs_match_tract_and_prune_consistently() {
    let base = base_seed();
    let mut zero_ring_layers = 0;
    let mut pruned_runs = 0;
    let mut budget_errors = 0;
    for case in 0..CASES as u64 {
        let seed = base.wrapping_add(case * 0x9E37_79B9);
        let gen = generate(seed);
        let name = format!("seed {seed}: {}", gen.description.join(", "));
        let x = random_input(seed ^ 1, &gen.input);

        // 1. Default conversion (exact shrink on) against tract, on every kernel table.
        check_against_tract(&name, &gen.onnx, std::slice::from_ref(&x), false);
        let plain = convert(&gen.onnx, &ConvertOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shrunk = plain
            .prune
            .layers
            .iter()
            .filter(|l| l.k_after < l.k_before)
            .count();
        assert!(
            shrunk >= gen.prunable_zero_rings,
            "{name}: {} zero rings removable, {shrunk} removed: {:?}",
            gen.prunable_zero_rings,
            plain.prune.layers
        );
        zero_ring_layers += gen.prunable_zero_rings;
        let model = smof::Model::from_bytes(&plain.bytes).unwrap();
        let mut s = smof::Session::new(&model, &Default::default()).unwrap();
        s.run(&[&x.1]).unwrap();
        let out_dims = s.output_dims(0).to_vec();

        // 2. A FLOP budget over rings and channels: same input and output shapes, and the
        //    budget met, or a clear error when the graph cannot reach it.
        let budget = [0.5, 0.7, 0.9][(seed % 3) as usize];
        let opts = ConvertOptions {
            prune: PruneOptions {
                budget: Some(Budget::Flops(budget)),
                ..Default::default()
            },
            ..Default::default()
        };
        match convert(&gen.onnx, &opts) {
            Ok(p) => {
                let r = &p.prune;
                assert!(
                    r.flops_after as f64 <= budget * r.flops_before as f64 + 1.0,
                    "{name}: budget {budget}: {} of {} FLOPs",
                    r.flops_after,
                    r.flops_before
                );
                let m = smof::Model::from_bytes(&p.bytes)
                    .unwrap_or_else(|e| panic!("{name}: pruned file: {e}"));
                m.graph().validate().unwrap();
                let mut s = smof::Session::new(&m, &Default::default()).unwrap();
                assert_eq!(s.input_dims(0), gen.input.as_slice(), "{name}");
                s.run(&[&x.1]).unwrap();
                assert_eq!(s.output_dims(0), out_dims.as_slice(), "{name}");
                assert!(s.output(0).iter().all(|v| v.is_finite()), "{name}");
                pruned_runs += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("budget") || msg.contains("FLOP"),
                    "{name}: {msg}"
                );
                budget_errors += 1;
            }
        }
    }
    println!(
        "{CASES} graphs: {zero_ring_layers} zero rings removed exactly, {pruned_runs} pruned \
         files ran, {budget_errors} budgets unreachable"
    );
    assert!(
        zero_ring_layers > 0,
        "the generator made no removable zero ring"
    );
    assert!(pruned_runs > 0, "no pruned file was checked");
}

/// `convert_file` refuses to write over its input, under any name that reaches the same
/// file (the same path, `dir/./name`, a hard link, a symbolic link), leaves the input as it
/// was, and leaves no file behind when the conversion fails.
#[test]
fn convert_file_never_overwrites_its_input_nor_leaves_a_partial_file() {
    let dir = std::env::temp_dir().join(format!("smof-random-graphs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gen = generate(base_seed());
    let input = dir.join("model.onnx");
    std::fs::write(&input, &gen.onnx).unwrap();
    let opts = ConvertOptions::default();
    let hard = dir.join("hard.onnx");
    std::fs::hard_link(&input, &hard).unwrap();
    let soft = dir.join("soft.smof");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&input, &soft).unwrap();
    let mut same = vec![
        input.clone(),
        dir.join(".").join("model.onnx"),
        hard.clone(),
    ];
    if cfg!(unix) {
        same.push(soft.clone());
    }
    for out in &same {
        let e = convert_file(&input, out, &opts).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{}: {e}", out.display());
        assert_eq!(
            std::fs::read(&input).unwrap(),
            gen.onnx,
            "{}",
            out.display()
        );
    }
    // A conversion that fails (a truncated model) writes nothing.
    let bad = dir.join("truncated.onnx");
    std::fs::write(&bad, &gen.onnx[..gen.onnx.len() / 2]).unwrap();
    let out = dir.join("out.smof");
    assert!(convert_file(&bad, &out, &opts).is_err());
    assert!(!out.exists());
    // An output in a missing directory is an I/O error naming it, and creates nothing.
    let missing = dir.join("no-such-dir").join("out.smof");
    let e = convert_file(&input, &missing, &opts).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    // A good conversion writes exactly the converted bytes, and only the output file.
    let c = convert_file(&input, &out, &opts).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), c.bytes);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec!["hard.onnx", "model.onnx", "out.smof", "truncated.onnx"];
    if cfg!(unix) {
        want.push("soft.smof");
    }
    want.sort();
    assert_eq!(names, want);
    std::fs::remove_dir_all(&dir).unwrap();
}
