//! `smof-bench`: times `.smof` models on this device, in the manner of ncnn's `benchncnn` and
//! TFLite's `benchmark_model`. Depends only on the runtime, so the same static binary runs on
//! a phone through `adb shell`.

use smof::graph::Graph;
use smof::{Model, Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str =
    "usage: smof-bench MODEL.smof|DIR [--threads N] [--cpus LIST] [--warmup N] [--loops N] [--profile] [--json] [--no-mmap] [--no-verify] [--layer-by-layer] [--bf16|--f16|--int8] [--chain-min-kib N] [--kernels NAME] [--input-shape N,C,H,W]...

Times each model on synthetic input and prints min, median, mean and max ms.
  --threads N   threads, the calling one included (default 1; at most 64 are used)
  --cpus LIST   pin the worker threads to these CPUs, e.g. 4-7 or 0,2 (the big cores of a phone)
  --warmup N    untimed runs first (default 3)
  --loops N     timed runs (default 20)
  --profile     per-layer time, share of total and GFLOP/s, slowest first
  --json        one JSON object per model on stdout
  --no-mmap     read the file into memory instead of mapping it (Model::open_copied), for
                files that may be truncated or replaced while in use
  --no-verify   skip the weight checksum at open (ModelOptions::verify_weights = false), for
                files already verified once, e.g. after download: open_ms without it
  --layer-by-layer  run every node on its own, without conv chains or fused patterns (to
                measure what they give)
  --bf16        bf16 products in the 1x1 convs, where the CPU has AVX512-BF16 or (aarch64)
                FEAT_BF16 (see smof::Precision::Bf16)
  --f16         f16 arithmetic in the 1x1 convs, where the CPU has FEAT_FP16 (aarch64; see
                smof::Precision::F16)
  --int8        int8 arithmetic in the 1x1 convs, where the CPU has AVX512-VNNI or (aarch64)
                FEAT_DotProd (see smof::Precision::Int8); with any of the three, the output
                says how many layers took it
  --chain-min-kib N  chain convs through intermediate tensors of at least N KiB (default:
                the kernel table's; 256 on NEON, 1024 on x86), to tune chains on a device
  --kernels NAME  kernel table: host (default), portable, x86_64-avx2, x86_64-avx512, aarch64
  --input-shape N,C,H,W  plan for this input shape instead of the model's (once per input,
                in order): another image size of a fully convolutional model, or a batch
  --dump-output FILE  write output 0 of the last run (raw little-endian f32) to FILE, to
                compare devices: the synthetic input is the same everywhere
  --lut-for M.smof -o FILE  measure a latency table for `smof convert --prune latency=R
                --lut FILE`: every conv of M alone, at each kernel size from K down to 1
                (by rings) and input/output channel counts at 25/50/75/100% rounded up to
                the kernel table's channel alignment (median of --loops runs, default 20)";

struct Args {
    models: Vec<PathBuf>,
    threads: usize,
    cpus: Vec<usize>,
    warmup: usize,
    loops: usize,
    profile: bool,
    json: bool,
    no_mmap: bool,
    no_verify: bool,
    layer_by_layer: bool,
    /// The precision of `--bf16`, `--f16` or `--int8` (one at most).
    precision: Option<smof::Precision>,
    chain_min_kib: Option<usize>,
    kernels: smof::KernelChoice,
    dump_output: Option<PathBuf>,
    lut_out: Option<PathBuf>,
    input_shapes: Vec<Vec<usize>>,
}

/// Parses a CPU list such as `4-7` or `0,2,5-6`.
fn parse_cpus(v: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--cpus: '{v}' is not a CPU list such as 4-7 or 0,2");
    let mut out = Vec::new();
    for part in v.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        models: Vec::new(),
        threads: 1,
        cpus: Vec::new(),
        warmup: 3,
        loops: 20,
        profile: false,
        json: false,
        no_mmap: false,
        no_verify: false,
        layer_by_layer: false,
        precision: None,
        chain_min_kib: None,
        kernels: smof::KernelChoice::Auto,
        dump_output: None,
        lut_out: None,
        input_shapes: Vec::new(),
    };
    let mut lut_for = false;
    let mut path: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: '{v}' is not a number"))
        };
        match a.as_str() {
            "--threads" => out.threads = num("--threads")?,
            "--cpus" => {
                let v = args.next().ok_or("--cpus needs a list")?;
                out.cpus = parse_cpus(&v)?;
            }
            "--warmup" => out.warmup = num("--warmup")?,
            "--loops" => out.loops = num("--loops")?.max(1),
            "--profile" => out.profile = true,
            "--json" => out.json = true,
            "--no-mmap" => out.no_mmap = true,
            "--layer-by-layer" => out.layer_by_layer = true,
            "--bf16" | "--f16" | "--int8" => {
                let p = match a.as_str() {
                    "--bf16" => smof::Precision::Bf16,
                    "--f16" => smof::Precision::F16,
                    _ => smof::Precision::Int8,
                };
                if out.precision.is_some_and(|q| q != p) {
                    return Err("--bf16, --f16 and --int8 exclude each other".into());
                }
                out.precision = Some(p);
            }
            "--chain-min-kib" => out.chain_min_kib = Some(num("--chain-min-kib")?),
            "--no-verify" => out.no_verify = true,
            "--kernels" => {
                let v = args.next().ok_or("--kernels needs a value")?;
                out.kernels = smof::KernelChoice::from_name(&v)
                    .ok_or(format!("--kernels: unknown table '{v}'"))?;
            }
            "--input-shape" => {
                let v = args
                    .next()
                    .ok_or("--input-shape needs a shape such as 1,3,320,320")?;
                out.input_shapes.push(smof::cli::parse_shape(&v)?);
            }
            "--dump-output" => {
                out.dump_output = Some(args.next().ok_or("--dump-output needs a file")?.into());
            }
            "--lut-for" => {
                lut_for = true;
                let v = args.next().ok_or("--lut-for needs a model")?;
                if path.replace(PathBuf::from(v)).is_some() {
                    return Err("give one model file or one folder".into());
                }
            }
            "-o" => out.lut_out = Some(args.next().ok_or("-o needs a file")?.into()),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if path.replace(PathBuf::from(s)).is_some() {
                    return Err("give one model file or one folder".into());
                }
            }
        }
    }
    let path = path.ok_or("no model given")?;
    if lut_for != out.lut_out.is_some() {
        return Err("--lut-for M.smof and -o FILE go together".into());
    }
    if lut_for && path.is_dir() {
        return Err("--lut-for takes one model file".into());
    }
    out.models = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| format!("cannot list {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "smof"))
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(format!("no .smof files in {}", path.display()));
        }
        v
    } else {
        vec![path]
    };
    Ok(out)
}

/// Deterministic input in [-1, 1), so runs are comparable across devices.
fn synthetic_input(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Stats {
    min: f64,
    median: f64,
    mean: f64,
    max: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    Stats {
        min: ms[0],
        median,
        mean: ms.iter().sum::<f64>() / n as f64,
        max: ms[n - 1],
    }
}

fn total_macs(g: &Graph) -> Vec<u64> {
    g.nodes
        .iter()
        .map(|n| {
            let ins: Vec<_> = n
                .inputs
                .iter()
                .map(|&t| g.tensors[t as usize].shape)
                .collect();
            n.op.macs(&ins, g.tensors[n.outputs[0] as usize].shape)
        })
        .collect()
}

fn bench(path: &Path, a: &Args) -> Result<(), String> {
    let t_open = Instant::now();
    let opts = smof::ModelOptions {
        kernels: a.kernels,
        verify_weights: !a.no_verify,
    };
    let model = if a.no_mmap {
        Model::open_copied(path, &opts)
    } else {
        Model::open_with(path, &opts)
    }
    .map_err(|e| e.to_string())?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
    let t_sess = Instant::now();
    let mut opts = SessionOptions::default()
        .threads(a.threads)
        .cpus(a.cpus.clone())
        .layer_by_layer(a.layer_by_layer);
    if let Some(p) = a.precision {
        opts = opts.precision(p);
    }
    if let Some(kib) = a.chain_min_kib {
        opts = opts.chain_min_bytes(kib.saturating_mul(1024));
    }
    opts.input_shapes = a.input_shapes.clone();
    let mut session = Session::new(&model, &opts).map_err(|e| e.to_string())?;
    let session_ms = t_sess.elapsed().as_secs_f64() * 1e3;
    let inputs: Vec<Vec<f32>> = (0..session.input_count())
        .map(|i| synthetic_input(session.input_dims(i).iter().product(), i as u32 + 1))
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    for _ in 0..a.warmup {
        session.run(&refs).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(a.loops);
    for _ in 0..a.loops {
        let t = Instant::now();
        session.run(&refs).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let s = stats(times);
    if let Some(path) = &a.dump_output {
        let bytes: Vec<u8> = session
            .output(0)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // The FLOPs of the shapes planned for.
    let macs = total_macs(session.graph());
    let gflops = 2.0 * macs.iter().sum::<u64>() as f64 / 1e9;
    let name = path
        .file_name()
        .map_or("?".into(), |n| n.to_string_lossy().into_owned());

    let mut profile = Vec::new();
    if a.profile {
        let mut secs = vec![0.0; session.graph().nodes.len()];
        for _ in 0..a.loops {
            session
                .run_timed(&refs, &mut secs)
                .map_err(|e| e.to_string())?;
        }
        let g = session.graph();
        let kernels = session.kernel_names();
        let total: f64 = secs.iter().sum();
        // A conv chain's or fused pattern's time is on its first node: show it once, with
        // the FLOPs of all its nodes.
        let groups: Vec<(std::ops::Range<usize>, String)> = session
            .conv_chains()
            .into_iter()
            .map(|r| {
                let name = format!("ConvChain({})", r.len());
                (r, name)
            })
            .chain(
                session
                    .fused_patterns()
                    .into_iter()
                    .map(|(r, name)| (r, name.to_string())),
            )
            .collect();
        for (i, node) in g.nodes.iter().enumerate() {
            let group = groups.iter().find(|(r, _)| r.contains(&i));
            if group.is_some_and(|(r, _)| r.start != i) {
                continue;
            }
            let (op, macs) = match group {
                Some((r, name)) => (name.clone(), macs[r.clone()].iter().sum()),
                None => (node.op.name().to_string(), macs[i]),
            };
            let ms = secs[i] * 1e3 / a.loops as f64;
            let share = if total > 0.0 { secs[i] / total } else { 0.0 };
            let gf = if secs[i] > 0.0 {
                2.0 * macs as f64 * a.loops as f64 / secs[i] / 1e9
            } else {
                0.0
            };
            profile.push((i, node.name.clone(), op, kernels[i], ms, share, gf));
        }
        profile.sort_by(|x, y| y.4.total_cmp(&x.4));
    }

    if a.json {
        let mut j = format!(
            "{{\"model\":{:?},\"threads\":{},\"warmup\":{},\"loops\":{},\"min_ms\":{:.4},\"median_ms\":{:.4},\"mean_ms\":{:.4},\"max_ms\":{:.4},\"gflop\":{:.6},\"open_ms\":{:.4},\"session_ms\":{:.4},\"arena_bytes\":{},\"kernels\":{:?},\"bf16_convs\":{},\"f16_convs\":{},\"int8_convs\":{}",
            name, a.threads, a.warmup, a.loops, s.min, s.median, s.mean, s.max, gflops, open_ms, session_ms,
            session.arena_bytes(), model.kernels().name, session.bf16_convs(),
            session.f16_convs(), session.int8_convs()
        );
        let dims: Vec<&[usize]> = (0..session.input_count())
            .map(|i| session.input_dims(i))
            .collect();
        j.push_str(&format!(",\"input_dims\":{dims:?}"));
        if a.profile {
            j.push_str(",\"profile\":[");
            for (k, (i, n, op, kern, ms, share, gf)) in profile.iter().enumerate() {
                if k > 0 {
                    j.push(',');
                }
                j.push_str(&format!(
                    "{{\"node\":{i},\"name\":{n:?},\"op\":{op:?},\"kernel\":{kern:?},\"ms\":{ms:.4},\"share\":{share:.4},\"gflops\":{gf:.3}}}"
                ));
            }
            j.push(']');
        }
        j.push('}');
        smof::outln!("{j}");
    } else {
        smof::outln!(
            "{name:>32}  min = {:8.3}  median = {:8.3}  mean = {:8.3}  max = {:8.3} ms   ({gflops:.3} GFLOP, {:.1} GFLOP/s)",
            s.min,
            s.median,
            s.mean,
            s.max,
            gflops / (s.median / 1e3)
        );
        let reduced = match a.precision {
            Some(smof::Precision::Bf16) => Some(("bf16 products", session.bf16_convs())),
            Some(smof::Precision::F16) => Some(("f16 arithmetic", session.f16_convs())),
            Some(smof::Precision::Int8) => Some(("int8 arithmetic", session.int8_convs())),
            _ => None,
        };
        if let Some((what, n)) = reduced {
            smof::outln!("{:>32}  {what} in {n} of the layers", "");
        }
        if a.profile {
            smof::outln!(
                "{:>5} {:<28} {:<14} {:<24} {:>9} {:>7} {:>8}",
                "node",
                "name",
                "op",
                "kernel",
                "ms",
                "share",
                "GFLOP/s"
            );
            for (i, n, op, kern, ms, share, gf) in &profile {
                smof::outln!(
                    "{i:>5} {:<28} {op:<14} {kern:<24} {ms:>9.4} {:>6.1}% {gf:>8.2}",
                    truncate(n, 28),
                    share * 100.0
                );
            }
        }
    }
    Ok(())
}

/// Latency tables: each conv of a model timed alone over a grid of geometries.
mod lut {
    use smof::graph::{
        Conv, DType, Graph, IoDesc, Layout, Metadata, Node, Op, Shape4, TensorDesc, WeightDesc,
    };
    use smof::{KernelChoice, Model, ModelOptions, Session, SessionOptions};
    use std::path::Path;
    use std::time::Instant;

    /// A one-node model: `conv` at input `input` (NHWC), canonical weights.
    fn one_conv(conv: &Conv, input: Shape4) -> Result<Vec<u8>, String> {
        let (oh, ow) = conv
            .output_hw(input.h, input.w)
            .ok_or("window does not fit")?;
        let icg = conv.in_c / conv.groups;
        let wn = (conv.out_c * icg * conv.kernel[0] * conv.kernel[1]) as usize;
        let w: Vec<u8> = super::synthetic_input(wn, 7)
            .iter()
            .flat_map(|v| (v * 0.1).to_le_bytes())
            .collect();
        let b: Vec<u8> = vec![0u8; 4 * conv.out_c as usize];
        let desc = |name: &str, dims: Vec<u32>, len: usize| WeightDesc {
            name: name.into(),
            dtype: DType::F32,
            layout: Layout::Canonical,
            dims,
            offset: 0,
            byte_len: len as u64,
        };
        let out = Shape4::new(1, oh, ow, conv.out_c);
        let g = Graph {
            meta: Metadata {
                producer: "smof-bench".into(),
                producer_version: env!("CARGO_PKG_VERSION").into(),
                model_name: "lut".into(),
                description: String::new(),
            },
            tensors: vec![
                TensorDesc {
                    name: "x".into(),
                    shape: input,
                },
                TensorDesc {
                    name: "y".into(),
                    shape: out,
                },
            ],
            weights: vec![
                desc(
                    "w",
                    vec![conv.out_c, icg, conv.kernel[0], conv.kernel[1]],
                    w.len(),
                ),
                desc("b", vec![conv.out_c], b.len()),
            ],
            nodes: vec![Node {
                name: "conv".into(),
                op: Op::Conv(Conv {
                    weight: 0,
                    bias: Some(1),
                    ..*conv
                }),
                inputs: vec![0],
                outputs: vec![1],
            }],
            inputs: vec![IoDesc {
                name: "x".into(),
                tensor: 0,
                dims: vec![1, input.c, input.h, input.w],
            }],
            outputs: vec![IoDesc {
                name: "y".into(),
                tensor: 1,
                dims: vec![1, conv.out_c, oh, ow],
            }],
        };
        smof::format::write(&g, &[&w, &b]).map_err(|e| e.to_string())
    }

    fn time(bytes: &[u8], kernels: KernelChoice, loops: usize) -> Result<f64, String> {
        let model = Model::from_bytes_with(
            bytes,
            &ModelOptions {
                kernels,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let mut s = Session::new(&model, &SessionOptions::default()).map_err(|e| e.to_string())?;
        let x = super::synthetic_input(s.input_dims(0).iter().product(), 1);
        s.run(&[&x]).map_err(|e| e.to_string())?;
        let mut ms = Vec::with_capacity(loops);
        for _ in 0..loops {
            let t = Instant::now();
            s.run(&[&x]).map_err(|e| e.to_string())?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(super::stats(ms).median)
    }

    /// Counts at 25, 50, 75 and 100% of `c`, rounded up to `align`, ascending and distinct.
    fn grid(c: u32, align: u32) -> Vec<u32> {
        let mut v: Vec<u32> = [1u32, 2, 3, 4]
            .iter()
            .map(|q| (c * q).div_ceil(4).div_ceil(align) * align)
            .map(|x| x.min(c).max(1))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn cpu_name() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Hardware"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string())
    }

    /// Measures the table of `model` and writes it to `out`; returns the number of timings.
    pub fn measure(
        model: &Path,
        out: &Path,
        kernels: KernelChoice,
        loops: usize,
    ) -> Result<usize, String> {
        let m = Model::open_with(
            model,
            &ModelOptions {
                kernels,
                ..Default::default()
            },
        )
        .map_err(|e| format!("{}: {e}", model.display()))?;
        let table = m.kernels();
        let align = table.channel_align as u32;
        let g = m.graph();
        let mut layers = Vec::new();
        let mut count = 0;
        for n in &g.nodes {
            let Op::Conv(c) = n.op else { continue };
            if c.groups != 1 && !c.is_depthwise() {
                continue;
            }
            let input = g.tensors[n.inputs[0] as usize].shape;
            let k = c.kernel[0];
            let mut ks = vec![k];
            if c.kernel[0] == c.kernel[1] && k % 2 == 1 {
                let mut kk = k;
                while kk >= 3 {
                    kk -= 2;
                    ks.push(kk);
                }
            }
            let dw = c.is_depthwise();
            let ic_grid = if dw { vec![1] } else { grid(c.in_c, align) };
            let oc_grid = grid(c.out_c, align);
            let mut ms = Vec::new();
            for &kk in &ks {
                let r = (k - kk) / 2;
                let pads = [
                    c.pads[0].saturating_sub(r * c.dilation[0]),
                    c.pads[1].saturating_sub(r * c.dilation[1]),
                    c.pads[2].saturating_sub(r * c.dilation[0]),
                    c.pads[3].saturating_sub(r * c.dilation[1]),
                ];
                let mut by_ic = Vec::new();
                for &ic in &ic_grid {
                    let mut by_oc = Vec::new();
                    for &oc in &oc_grid {
                        let ic = if dw { oc } else { ic };
                        let conv = Conv {
                            in_c: ic,
                            out_c: oc,
                            groups: if dw { oc } else { 1 },
                            kernel: [kk, if kk == k { c.kernel[1] } else { kk }],
                            pads,
                            ..c
                        };
                        let shape = Shape4::new(1, input.h, input.w, ic);
                        let bytes =
                            one_conv(&conv, shape).map_err(|e| format!("layer {}: {e}", n.name))?;
                        by_oc.push(time(&bytes, kernels, loops)?);
                        count += 1;
                    }
                    by_ic.push(by_oc);
                }
                ms.push(by_ic);
            }
            // A depthwise layer's input count is its output count: one row serves all.
            let ic_list = if dw { oc_grid.clone() } else { ic_grid };
            if dw {
                for per_k in &mut ms {
                    let row = per_k[0].clone();
                    *per_k = vec![row; ic_list.len()];
                }
            }
            layers.push(format!(
                "{:?}:{{\"dense\":[{},{},{}],\"k\":{:?},\"ic\":{:?},\"oc\":{:?},\"ms\":{:?}}}",
                n.name, k, c.in_c, c.out_c, ks, ic_list, oc_grid, ms
            ));
            eprint!("\r{} layers measured", layers.len());
        }
        eprintln!();
        let json = format!(
            "{{\"format\":\"smof-lut-1\",\"kernels\":{:?},\"device\":{:?},\"model\":{:?},\"layers\":{{{}}}}}\n",
            table.name,
            cpu_name(),
            g.meta.model_name,
            layers.join(",")
        );
        std::fs::write(out, json).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        Ok(count)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("smof-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if !args.json {
        smof::outln!(
            "threads = {}  warmup = {}  loops = {}  kernels = {}",
            args.threads,
            args.warmup,
            args.loops,
            smof::kernels::KernelTable::for_choice(args.kernels).map_or("unsupported", |t| t.name)
        );
    }
    if let Some(out) = &args.lut_out {
        return match lut::measure(&args.models[0], out, args.kernels, args.loops) {
            Ok(n) => {
                smof::outln!("wrote {} ({n} timings)", out.display());
                if smof::cli::output_failed() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("smof-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut failed = false;
    for m in &args.models {
        if let Err(e) = bench(m, &args) {
            eprintln!("smof-bench: {}: {e}", m.display());
            failed = true;
        }
    }
    if failed || smof::cli::output_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
