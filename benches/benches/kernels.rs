//! Conv and fully connected kernels at the real layer shapes of ResNet-18 and MobileNetV2, in
//! GFLOP/s, for every kernel table this CPU runs: single thread, batch 1, bias and the
//! layer's activation fused, whole output per call.
//!
//! `cargo bench -p smof-benches --bench kernels` (criterion filters work:
//! `... --bench kernels -- x86_64-avx2/resnet18`).
//!
//! One element of criterion's throughput is one FLOP (a multiply-add counts 2), so its
//! `thrpt` reads directly in GFLOP/s as `Gelem/s`. At the end a table lists, per table and
//! layer, the kernel the table chose and the GFLOP/s of the best and the median batch.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use smof::graph::{Activation, Conv, Fc, Shape4};
use smof::kernels::{pack, Act4, AlignedF32, ConvKernel, ConvPlan, FcArgs, KernelTable};
use smof_benches::run_whole_conv;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One conv layer: label, input `hw x hw x ic`, `oc` outputs, `k x k` kernel, stride, fused
/// activation. Labels starting with `dw` are depthwise (`ic == oc` groups).
type Layer = (&'static str, u32, u32, u32, u32, u32, Activation);

const RELU: Activation = Activation::Relu;
const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };
const NONE: Activation = Activation::None;

/// ResNet-18 (torchvision): the stem, every distinct 3x3 shape (stride 1 inside a stage, stride
/// 2 at its first block) and the three 1x1 stride-2 downsamples. Sizes are the layer's input.
const RESNET18: &[Layer] = &[
    ("conv7x7s2 224x224x3->64", 224, 3, 64, 7, 2, RELU),
    ("conv3x3 56x56x64->64", 56, 64, 64, 3, 1, RELU),
    ("conv3x3s2 56x56x64->128", 56, 64, 128, 3, 2, RELU),
    ("conv3x3 28x28x128->128", 28, 128, 128, 3, 1, RELU),
    ("conv3x3s2 28x28x128->256", 28, 128, 256, 3, 2, RELU),
    ("conv3x3 14x14x256->256", 14, 256, 256, 3, 1, RELU),
    ("conv3x3s2 14x14x256->512", 14, 256, 512, 3, 2, RELU),
    ("conv3x3 7x7x512->512", 7, 512, 512, 3, 1, RELU),
    ("conv1x1s2 56x56x64->128", 56, 64, 128, 1, 2, NONE),
    ("conv1x1s2 28x28x128->256", 28, 128, 256, 1, 2, NONE),
    ("conv1x1s2 14x14x256->512", 14, 256, 512, 1, 2, NONE),
];

/// MobileNetV2 (torchvision): the stem, the expand 1x1 (ReLU6) and project 1x1 (linear) layers
/// of one block per resolution, the last 1x1, and the depthwise 3x3 at stride 1 and 2 at every
/// resolution.
const MOBILENET_V2: &[Layer] = &[
    ("conv3x3s2 224x224x3->32", 224, 3, 32, 3, 2, RELU6),
    ("expand 112x112x16->96", 112, 16, 96, 1, 1, RELU6),
    ("expand 56x56x24->144", 56, 24, 144, 1, 1, RELU6),
    ("expand 28x28x32->192", 28, 32, 192, 1, 1, RELU6),
    ("expand 14x14x64->384", 14, 64, 384, 1, 1, RELU6),
    ("expand 7x7x160->960", 7, 160, 960, 1, 1, RELU6),
    ("project 112x112x32->16", 112, 32, 16, 1, 1, NONE),
    ("project 56x56x144->24", 56, 144, 24, 1, 1, NONE),
    ("project 28x28x192->32", 28, 192, 32, 1, 1, NONE),
    ("project 14x14x384->64", 14, 384, 64, 1, 1, NONE),
    ("project 14x14x576->96", 14, 576, 96, 1, 1, NONE),
    ("project 7x7x960->160", 7, 960, 160, 1, 1, NONE),
    ("conv1x1 7x7x320->1280", 7, 320, 1280, 1, 1, RELU6),
    ("dw3x3 112x112x32", 112, 32, 32, 3, 1, RELU6),
    ("dw3x3s2 112x112x96", 112, 96, 96, 3, 2, RELU6),
    ("dw3x3 56x56x144", 56, 144, 144, 3, 1, RELU6),
    ("dw3x3s2 56x56x144", 56, 144, 144, 3, 2, RELU6),
    ("dw3x3 28x28x192", 28, 192, 192, 3, 1, RELU6),
    ("dw3x3s2 28x28x192", 28, 192, 192, 3, 2, RELU6),
    ("dw3x3 14x14x384", 14, 384, 384, 3, 1, RELU6),
    ("dw3x3 14x14x576", 14, 576, 576, 3, 1, RELU6),
    ("dw3x3s2 14x14x576", 14, 576, 576, 3, 2, RELU6),
    ("dw3x3 7x7x960", 7, 960, 960, 3, 1, RELU6),
];

/// Deterministic data (SplitMix64), uniform in `[-scale, scale)`.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(scale)).collect()
    }
    /// An activation buffer of geometry `g`, pad lanes zero as the kernels require, 64-byte
    /// aligned as a session's arena is.
    fn act(&mut self, g: Act4) -> AlignedF32 {
        let c = g.shape.c as usize;
        let mut v = AlignedF32::zeroed(g.len());
        for px in v.chunks_exact_mut(g.cs) {
            for e in &mut px[..c] {
                *e = self.uniform(1.0);
            }
        }
        v
    }
}

/// The conv kernels to time for this layer: the one `table`'s rule picks and, when that is
/// Winograd, also the direct kernel, since both are candidates and the rule is measured by
/// their difference. The one place the benches ask a table for a kernel, so a change of the
/// selection's signature is adapted here only.
fn select_conv(table: &KernelTable, conv: &Conv, xs: Act4, _ys: Act4) -> Vec<ConvKernel> {
    let plan = table.choice.conv_plan(conv, xs.shape);
    let mut v = vec![(table.conv)(conv, plan).expect("a table runs the plan of its own rule")];
    if let ConvPlan::Winograd { nb } | ConvPlan::Winograd23 { nb } = plan {
        v.extend((table.conv)(conv, ConvPlan::Dense { nb }));
    }
    v
}

/// One measured row of the final table.
struct Row {
    table: &'static str,
    model: &'static str,
    label: String,
    kernel: &'static str,
    best_gflops: f64,
    median_gflops: f64,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// Criterion samples per layer.
const SAMPLES: usize = 10;

/// Runs `f` under criterion with `flops` per call and records the best and median batch.
fn measure(
    c: &mut Criterion,
    table: &'static KernelTable,
    model: &'static str,
    label: &str,
    kernel: &'static str,
    flops: u64,
    mut f: impl FnMut(),
) {
    let mut group = c.benchmark_group(format!("{}/{model}", table.name));
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(flops));
    let mut per_iter: Vec<f64> = Vec::new();
    group.bench_function(BenchmarkId::from_parameter(label), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let d = t.elapsed();
            per_iter.push(d.as_secs_f64() / iters as f64);
            d
        })
    });
    group.finish();
    if per_iter.is_empty() {
        // Filtered out on the command line.
        return;
    }
    // Criterion's warm-up calls come first; keep the samples.
    let mut per_iter = per_iter.split_off(per_iter.len().saturating_sub(SAMPLES));
    per_iter.sort_by(f64::total_cmp);
    let gf = |s: f64| flops as f64 / s / 1e9;
    let row = Row {
        table: table.name,
        model,
        label: label.to_string(),
        kernel,
        best_gflops: gf(per_iter[0]),
        median_gflops: gf(per_iter[per_iter.len() / 2]),
    };
    println!(
        "{:>14} {:<34} {:<24} {:6.1} GFLOP/s best, {:6.1} median",
        row.table, row.label, row.kernel, row.best_gflops, row.median_gflops
    );
    ROWS.lock().expect("rows").push(row);
}

fn bench_conv(c: &mut Criterion, table: &'static KernelTable, model: &'static str, l: &Layer) {
    let &(label, hw, ic, oc, k, stride, act) = l;
    let groups = if label.starts_with("dw") { ic } else { 1 };
    let p = k / 2;
    let conv = Conv {
        in_c: ic,
        out_c: oc,
        groups,
        kernel: [k; 2],
        stride: [stride; 2],
        dilation: [1, 1],
        pads: [p; 4],
        weight: 0,
        bias: Some(1),
        act,
    };
    let (oh, ow) = conv.output_hw(hw, hw).expect("layer shape fits");
    // An RGB stem reads the image at channel stride 4, as sessions lay out image inputs.
    let align = if ic <= 4 { 4 } else { table.channel_align };
    let xs = Act4::new(Shape4::new(1, hw, hw, ic), align);
    let ys = Act4::new(Shape4::new(1, oh, ow, oc), table.channel_align);
    let mut rng = Rng(0x5EED ^ ((hw as u64) << 32) ^ ((ic as u64) << 16) ^ oc as u64);
    let dims = [oc, ic / groups, k, k];
    let fan_in = dims[1] * dims[2] * dims[3];
    let canonical = rng.vec(
        dims.iter().map(|&d| d as usize).product(),
        1.0 / (fan_in as f32).sqrt(),
    );
    let bias = rng.vec(oc as usize, 0.1);
    let x = rng.act(xs);
    let mut y = AlignedF32::zeroed(ys.len());
    // The FLOPs of the direct conv, also for Winograd (whose figure is then "effective").
    let flops = 2 * ys.shape.elems() * fan_in as u64;

    for (i, kernel) in select_conv(table, &conv, xs, ys).into_iter().enumerate() {
        let w = AlignedF32::from_slice(&pack::pack(&canonical, &dims, kernel.layout));
        let mut scratch = AlignedF32::zeroed((kernel.scratch_len)(&conv, xs, ys));
        let name = if i == 0 {
            label.to_string()
        } else {
            format!("{label} (direct)")
        };
        measure(c, table, model, &name, kernel.name, flops, || {
            let (x, y) = ((&x[..], xs), (&mut y[..], ys));
            run_whole_conv(&kernel, &conv, x, &w, &bias, y, &mut scratch);
        });
    }
}

/// The classifier of ResNet-18: 512 -> 1000, batch 1.
fn bench_fc(c: &mut Criterion, table: &'static KernelTable) {
    let (inf, outf) = (512u32, 1000u32);
    let fc = Fc {
        in_features: inf,
        out_features: outf,
        weight: 0,
        bias: Some(1),
        act: NONE,
    };
    let xs = Act4::new(Shape4::new(1, 1, 1, inf), table.channel_align);
    let ys = Act4::new(Shape4::new(1, 1, 1, outf), table.channel_align);
    let mut rng = Rng(0xFC);
    let canonical = rng.vec((inf * outf) as usize, 1.0 / (inf as f32).sqrt());
    let w = AlignedF32::from_slice(&pack::pack(&canonical, &[outf, inf], table.fc.layout));
    let bias = rng.vec(outf as usize, 0.1);
    let x = rng.act(xs);
    let mut y = AlignedF32::zeroed(ys.len());
    let flops = 2 * inf as u64 * outf as u64;
    let kernel = table.fc;
    measure(
        c,
        table,
        "resnet18",
        "fc 512->1000",
        kernel.name,
        flops,
        || {
            (kernel.run)(&mut FcArgs {
                fc: &fc,
                x: &x,
                xs,
                w: &w,
                bias: Some(&bias),
                y: &mut y,
                ys,
                share: (0, 1),
            });
            std::hint::black_box(&mut y);
        },
    );
}

fn bench_kernels(c: &mut Criterion) {
    for table in KernelTable::all_supported() {
        for l in RESNET18 {
            bench_conv(c, table, "resnet18", l);
        }
        for l in MOBILENET_V2 {
            bench_conv(c, table, "mobilenet_v2", l);
        }
        bench_fc(c, table);
    }
    print_table();
}

/// The summary: one line per layer, one column pair per table.
fn print_table() {
    let rows = ROWS.lock().expect("rows");
    if rows.is_empty() {
        return;
    }
    let mut tables: Vec<&str> = Vec::new();
    for r in rows.iter() {
        if !tables.contains(&r.table) {
            tables.push(r.table);
        }
    }
    let mut layers: Vec<(&str, &str)> = Vec::new();
    for r in rows.iter() {
        if !layers.contains(&(r.model, r.label.as_str())) {
            layers.push((r.model, r.label.as_str()));
        }
    }
    println!("\nGFLOP/s, best / median batch (1 FLOP = one multiply or one add):\n");
    let mut head = String::from("| model | layer |");
    let mut rule = String::from("|---|---|");
    for t in &tables {
        head.push_str(&format!(" {t} kernel | {t} GFLOP/s |"));
        rule.push_str("---|---:|");
    }
    println!("{head}\n{rule}");
    for (model, label) in layers {
        let mut line = format!("| {model} | {label} |");
        for t in &tables {
            match rows
                .iter()
                .find(|r| r.table == *t && r.model == model && r.label == label)
            {
                Some(r) => line.push_str(&format!(
                    " {} | {:.1} / {:.1} |",
                    r.kernel, r.best_gflops, r.median_gflops
                )),
                None => line.push_str(" | |"),
            }
        }
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    // 60-odd layers per table: short runs, and no plots, keep the whole bench to minutes.
    config = Criterion::default().without_plots();
    targets = bench_kernels
}
criterion_main!(benches);
