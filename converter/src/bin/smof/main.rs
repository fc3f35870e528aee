//! `smof`: the command-line front end: convert ONNX to `.smof`, inspect, run, evaluate and
//! compare models.

mod inspect;
mod plot;
use smof_converter::npy;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use smof::{KernelChoice, Model, Precision, Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "smof",
    version,
    about = "SMOF: convert, prune, inspect and run CNN models"
)]
struct Cli {
    /// Read model files into memory instead of mapping them (`Model::open_copied`): for a
    /// file that something may truncate or rewrite in place while it is open.
    #[arg(long, global = true)]
    no_mmap: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Set once from `--no-mmap` before any model is opened.
static NO_MMAP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Convert an ONNX model into a .smof file.
    Convert {
        /// The ONNX model.
        input: PathBuf,
        /// The .smof file to write (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Fixed input shape N,C,H,W (needed when the model's shape is symbolic).
        #[arg(long, value_name = "N,C,H,W")]
        input_shape: Option<String>,
        /// Store conv and fully connected weights as f16.
        #[arg(long)]
        fp16: bool,
        /// Kernel table to pack the weights for: portable, x86_64-avx2, x86_64-avx512,
        /// aarch64 (default: this host).
        #[arg(long)]
        target: Option<String>,
        /// Prune to a budget: `flops=R` keeps at most the fraction R of the conv and fully
        /// connected FLOPs, `latency=R` at most R of the latency predicted by --lut.
        #[arg(long, value_name = "flops=R|latency=R")]
        prune: Option<String>,
        /// Prune kernel rings (KxK to (K-2)x(K-2)).
        #[arg(long, value_name = "on|off", default_value = "on")]
        prune_kernels: String,
        /// Prune channels.
        #[arg(long, value_name = "on|off", default_value = "on")]
        prune_channels: String,
        /// Keep channel counts at multiples of N (default: the target's channel alignment,
        /// 8 for portable, AVX2 and aarch64, 16 for AVX-512); 1 turns rounding off.
        #[arg(long, value_name = "N")]
        channel_multiple: Option<usize>,
        /// Calibration data: an .npy of N samples (N,C,H,W), or a folder of images.
        #[arg(long, value_name = "X.npy|DIR")]
        calib: Option<PathBuf>,
        /// Add each --calib image's mirror image (left to right) to the calibration set:
        /// twice the inputs for the statistics, the refit and --distill, at twice the time
        /// (for photos; not for digits or text).
        #[arg(long, value_name = "on|off", default_value = "off")]
        calib_mirror: String,
        /// Worker threads for the calibration statistics and the refit (default: all
        /// cores); the result is the same for any count.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Inputs kept apart from --calib (an .npy or a folder of images, read as --calib
        /// is): after pruning, each layer's output error is also measured on them, as
        /// err(held-out) beside err(cal).
        #[arg(long, value_name = "X.npy|DIR")]
        holdout: Option<PathBuf>,
        /// With --calib: after the allocation, refit every layer in graph order on the
        /// pruned model's own calibration activations (sequential reconstruction).
        #[arg(long, value_name = "on|off", default_value = "on")]
        refit: String,
        /// With --calib: rank removals by the error they cause at the model outputs
        /// (`output`, each layer's error weighted by backpropagated probes) or by each
        /// layer's own relative output error (`layer`).
        #[arg(long, value_name = "output|layer", default_value = "output")]
        criterion: String,
        /// With --calib: after the refit, train the pruned model towards the dense model's
        /// outputs on the calibration inputs for N epochs (0: off).
        #[arg(long, value_name = "N", default_value_t = 0)]
        distill: usize,
        /// Initial Adam step of --distill, relative to each weight row's root mean square.
        #[arg(long, value_name = "LR", default_value_t = 1e-3)]
        distill_lr: f32,
        /// Mirror image inputs left to right at random during --distill (off for inputs
        /// whose mirror image is not a valid input, such as digits).
        #[arg(long, value_name = "on|off", default_value = "on")]
        distill_mirror: String,
        /// Weight of the block outputs (residual Adds, linear convs) in --distill's loss,
        /// against the model outputs' (0: the outputs only).
        #[arg(long, value_name = "W", default_value_t = 10.0)]
        distill_features: f64,
        /// Per-channel mean of images in --calib DIR (on 0..1 values).
        #[arg(long, value_name = "M,M,M", default_value = "0.485,0.456,0.406")]
        mean: String,
        /// Per-channel std of images in --calib DIR.
        #[arg(long, value_name = "S,S,S", default_value = "0.229,0.224,0.225")]
        std: String,
        /// Latency table from `smof-bench --lut-for`, for --prune latency=R.
        #[arg(long, value_name = "device.lut")]
        lut: Option<PathBuf>,
        /// Use a latency table measured on another model or with other kernels (a warning
        /// instead of an error).
        #[arg(long)]
        lut_allow_mismatch: bool,
        /// Write the pruning report as JSON.
        #[arg(long, value_name = "R.json")]
        report: Option<PathBuf>,
        /// Write an SVG plot of every layer's FLOPs before and after pruning.
        #[arg(long, value_name = "R.svg")]
        plot: Option<PathBuf>,
    },
    /// Print a model's layers, FLOPs, weights and arena size.
    Inspect {
        /// The .smof model.
        model: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a model on an .npy input (NCHW f32) and write its output(s) as .npy; an input of
    /// another batch or image size is planned for when the layers can take it.
    Run {
        /// The .smof model.
        model: PathBuf,
        /// Input array, NCHW f32, as in the ONNX model.
        #[arg(long)]
        input: PathBuf,
        /// Output array. With several model outputs, the others are written beside it as
        /// STEM.NAME.npy.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        precision: PrecisionFlags,
    },
    /// Top-1 accuracy on a labelled .npz set (arrays X and y).
    Eval {
        /// The .smof model.
        model: PathBuf,
        /// Data set with arrays X (N,C,H,W) and y (N).
        #[arg(long)]
        data: PathBuf,
        /// Print {"top1": …, "n": …}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        precision: PrecisionFlags,
    },
    /// Compare two models' outputs on the same inputs.
    Compare {
        /// First model (the reference).
        a: PathBuf,
        /// Second model.
        b: PathBuf,
        /// Inputs, (N,C,H,W) f32.
        #[arg(long)]
        inputs: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Run the second model with bf16 products in its 1x1 convs where the CPU has
        /// AVX512-BF16 or FEAT_BF16 (`smof::Precision::Bf16`): with the same file twice, what
        /// bf16 changes.
        #[arg(long)]
        bf16_b: bool,
        /// Run the second model with f16 arithmetic in its 1x1 convs where the CPU has
        /// FEAT_FP16 (aarch64; `smof::Precision::F16`).
        #[arg(long, conflicts_with = "bf16_b")]
        f16_b: bool,
        /// Run the second model with int8 arithmetic in its 1x1 convs where the CPU has
        /// AVX512-VNNI or FEAT_DotProd (`smof::Precision::Int8`).
        #[arg(long, conflicts_with_all = ["bf16_b", "f16_b"])]
        int8_b: bool,
    },
}

/// The reduced-precision flags of `run` and `eval` (at most one).
#[derive(clap::Args, Clone, Copy)]
#[group(multiple = false)]
struct PrecisionFlags {
    /// bf16 products in the 1x1 convs where the CPU has AVX512-BF16 or FEAT_BF16
    /// (`smof::Precision::Bf16`).
    #[arg(long)]
    bf16: bool,
    /// f16 arithmetic in the 1x1 convs where the CPU has FEAT_FP16 (aarch64;
    /// `smof::Precision::F16`).
    #[arg(long)]
    f16: bool,
    /// int8 arithmetic in the 1x1 convs where the CPU has AVX512-VNNI or FEAT_DotProd
    /// (`smof::Precision::Int8`: weights quantized per output channel, inputs per pixel).
    #[arg(long)]
    int8: bool,
}

/// Parses `--prune flops=R` or `latency=R`.
fn parse_budget(s: &str) -> Result<smof_converter::prune::Budget> {
    use smof_converter::prune::Budget;
    let (kind, r) = s
        .split_once('=')
        .context("--prune takes flops=R or latency=R, e.g. --prune flops=0.5")?;
    let r: f64 = r
        .parse()
        .with_context(|| format!("--prune {s}: '{r}' is not a number"))?;
    if !(r > 0.0 && r <= 1.0) {
        bail!("--prune {s}: the ratio must be in (0, 1]");
    }
    match kind {
        "flops" => Ok(Budget::Flops(r)),
        "latency" => Ok(Budget::Latency(r)),
        _ => bail!("--prune takes flops=R or latency=R, e.g. --prune flops=0.5"),
    }
}

fn parse_floats(flag: &str, s: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .with_context(|| format!("--{flag}: '{v}' is not a number"))
        })
        .collect()
}

fn print_prune_table(r: &smof_converter::prune::PruneReport) {
    let timed = r.time_ms.is_some();
    let held = r.layers.iter().any(|l| l.holdout_error.is_some());
    smof::outln!(
        "{:<34} {:>6} {:>10} {:>9} {:>9} {:>15} {:>9} {:>13}  note",
        "layer",
        "K",
        "channels",
        "MFLOPs",
        "after",
        if timed { "ms before/after" } else { "" },
        if r.calibrated { "err(cal)" } else { "err(est)" },
        if held { "err(held-out)" } else { "" }
    );
    for l in &r.layers {
        smof::outln!(
            "{:<34} {:>6} {:>10} {:>9.2} {:>9.2} {:>15} {:>8.4}% {:>13}  {}",
            l.name.chars().take(34).collect::<String>(),
            format!("{}->{}", l.k_before, l.k_after),
            format!("{}->{}", l.channels_before, l.channels_after),
            l.flops_before as f64 / 1e6,
            l.flops_after as f64 / 1e6,
            l.time_ms
                .map(|(b, a)| format!("{b:.3}/{a:.3}"))
                .unwrap_or_default(),
            l.rel_error * 100.0,
            l.holdout_error
                .map(|e| format!("{:.4}%", e * 100.0))
                .unwrap_or_default(),
            l.blocked.unwrap_or("")
        );
    }
    smof::outln!(
        "FLOPs {:.3} G -> {:.3} G ({:.3} of the dense model){}{}",
        r.flops_before as f64 / 1e9,
        r.flops_after as f64 / 1e9,
        r.flops_after as f64 / r.flops_before.max(1) as f64,
        r.time_ms
            .map(|(b, a)| format!(
                "; predicted {b:.2} ms -> {a:.2} ms ({:.3})",
                a / b.max(f64::MIN_POSITIVE)
            ))
            .unwrap_or_default(),
        if r.exact_channels > 0 {
            format!(
                "; {} zero or constant channel groups removed exactly",
                r.exact_channels
            )
        } else {
            String::new()
        }
    );
    if r.output_weighted {
        smof::outln!("removals ranked by their error at the model outputs (--criterion output)");
    }
    if let (Some(first), Some(last)) = (r.distill_loss.first(), r.distill_loss.last()) {
        smof::outln!(
            "distillation: output error on the calibration set {:.4}% (first epoch) -> {:.4}% ({} epochs)",
            first * 100.0,
            last * 100.0,
            r.distill_loss.len()
        );
    }
    if let (Some(first), Some(last)) = (
        r.distill_feature_loss.first(),
        r.distill_feature_loss.last(),
    ) {
        smof::outln!(
            "distillation: weighted block-output error {:.4}% (first epoch) -> {:.4}%",
            first * 100.0,
            last * 100.0
        );
    }
    if !r.unanalysed.is_empty() {
        smof::outln!(
            "channels kept on both sides of {} node(s) the channel analysis does not follow: {}",
            r.unanalysed.len(),
            r.unanalysed.join(", ")
        );
    }
}

fn prune_json(r: &smof_converter::prune::PruneReport) -> String {
    let layers: Vec<serde_json::Value> = r
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name, "k_before": l.k_before, "k_after": l.k_after,
                "channels_before": l.channels_before, "channels_after": l.channels_after,
                "flops_before": l.flops_before, "flops_after": l.flops_after,
                "ms_before": l.time_ms.map(|t| t.0), "ms_after": l.time_ms.map(|t| t.1),
                "rel_error": l.rel_error, "holdout_error": l.holdout_error,
                "blocked": l.blocked,
            })
        })
        .collect();
    serde_json::json!({
        "flops_before": r.flops_before,
        "flops_after": r.flops_after,
        "flops_ratio": r.flops_after as f64 / r.flops_before.max(1) as f64,
        "ms_before": r.time_ms.map(|t| t.0),
        "ms_after": r.time_ms.map(|t| t.1),
        "calibrated": r.calibrated,
        "exact_channel_groups": r.exact_channels,
        "unanalysed_nodes": r.unanalysed,
        "distill_loss": r.distill_loss,
        "distill_feature_loss": r.distill_feature_loss,
        "output_weighted": r.output_weighted,
        "layers": layers,
    })
    .to_string()
}

/// Maps a `--target` name to the kernel table to pack for.
fn target_choice(target: Option<&str>) -> Result<KernelChoice> {
    let name = target.unwrap_or("host");
    let choice = KernelChoice::from_name(name).with_context(|| {
        format!(
            "unknown --target {name}; use host, portable, x86_64-avx2, x86_64-avx512 or aarch64"
        )
    })?;
    Ok(choice)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    NO_MMAP.store(cli.no_mmap, std::sync::atomic::Ordering::Relaxed);
    match dispatch(cli.cmd) {
        Ok(()) if smof::cli::output_failed() => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smof: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Convert {
            input,
            output,
            input_shape,
            fp16,
            target,
            prune,
            prune_kernels,
            prune_channels,
            channel_multiple,
            calib,
            calib_mirror,
            threads,
            holdout,
            refit,
            criterion,
            distill,
            distill_lr,
            distill_mirror,
            distill_features,
            mean,
            std,
            lut,
            lut_allow_mismatch,
            report,
            plot,
        } => {
            let on_off = |flag: &str, v: &str| -> Result<bool> {
                match v {
                    "on" => Ok(true),
                    "off" => Ok(false),
                    _ => bail!("--{flag} takes on or off, not '{v}'"),
                }
            };
            let input_shapes = match input_shape {
                Some(s) => vec![smof::cli::parse_shape(&s).map_err(anyhow::Error::msg)?],
                None => Vec::new(),
            };
            let kernels = target_choice(target.as_deref())?;
            let budget = prune.as_deref().map(parse_budget).transpose()?;
            if budget.is_none() && (calib.is_some() || lut.is_some() || holdout.is_some()) {
                bail!(
                    "--calib, --holdout and --lut only apply with a budget (--prune flops=R or latency=R)"
                );
            }
            if distill > 0 && calib.is_none() {
                bail!("--distill trains on calibration inputs: give --calib X.npy or DIR");
            }
            if !(distill_lr.is_finite() && distill_lr > 0.0) {
                bail!("--distill-lr must be a positive number, not {distill_lr}");
            }
            if !(distill_features.is_finite() && distill_features >= 0.0) {
                bail!("--distill-features must be 0 or a positive number, not {distill_features}");
            }
            let load = |p: &Option<PathBuf>| -> Result<_> {
                p.as_deref()
                    .map(|p| load_calib(p, &input, &input_shapes, &mean, &std))
                    .transpose()
                    .map(|c| c.map(std::sync::Arc::new))
            };
            let calib_mirror = on_off("calib-mirror", &calib_mirror)?;
            if calib_mirror && calib.is_none() {
                bail!("--calib-mirror mirrors the --calib images: give --calib X.npy or DIR");
            }
            let (calib, holdout) = (load(&calib)?, load(&holdout)?);
            let calib = match calib {
                Some(c) if calib_mirror => Some(std::sync::Arc::new(
                    std::sync::Arc::unwrap_or_clone(c)
                        .with_mirrors()
                        .context("--calib-mirror")?,
                )),
                c => c,
            };
            let lut = match &lut {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let mut l = smof_converter::prune::lut::Lut::parse(&text)
                        .with_context(|| format!("{}", path.display()))?;
                    l.allow_mismatch = lut_allow_mismatch;
                    Some(std::sync::Arc::new(l))
                }
            };
            if channel_multiple == Some(0) {
                bail!("--channel-multiple must be at least 1");
            }
            let opts = smof_converter::ConvertOptions {
                input_shapes,
                fp16,
                kernels,
                model_name: input.file_stem().map(|s| s.to_string_lossy().into_owned()),
                prune: smof_converter::prune::PruneOptions {
                    budget,
                    kernels: on_off("prune-kernels", &prune_kernels)?,
                    channels: on_off("prune-channels", &prune_channels)?,
                    channel_multiple: channel_multiple.unwrap_or(kernels.channel_align()),
                    calib,
                    holdout,
                    refit: on_off("refit", &refit)?,
                    output_weighted: match criterion.as_str() {
                        "output" => true,
                        "layer" => false,
                        _ => bail!("--criterion takes output or layer, not '{criterion}'"),
                    },
                    distill: smof_converter::prune::distill::DistillOptions {
                        epochs: distill,
                        lr: distill_lr,
                        mirror: on_off("distill-mirror", &distill_mirror)?,
                        features: distill_features,
                        ..Default::default()
                    },
                    lut,
                    progress: true,
                    threads: match threads {
                        Some(0) => bail!("--threads must be at least 1"),
                        Some(n) => n,
                        None => smof_converter::prune::PruneOptions::default().threads,
                    },
                },
                // convert_file reads external data beside the input.
                external_data_dir: None,
            };
            let t = std::time::Instant::now();
            let done = smof_converter::convert_file(&input, &output, &opts)?;
            for w in &done.warnings {
                eprintln!("smof: warning: {w}");
            }
            let g = &done.graph;
            if prune.is_some() {
                print_prune_table(&done.prune);
            }
            let folded: usize = (done.stats.passes.iter())
                .filter(|p| p.name == "fold_depthwise_1x1")
                .map(|p| p.changes)
                .sum();
            if folded > 0 {
                smof::outln!(
                    "folded {folded} depthwise 1x1 conv(s) into a neighbouring conv (exact)"
                );
            }
            if let Some(path) = report {
                std::fs::write(&path, prune_json(&done.prune))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = plot {
                plot::write_svg(&path, &done.prune)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            smof::outln!(
                "wrote {} ({} bytes): {} nodes, {} weights, {:.3} GFLOP, in {:.2} s",
                output.display(),
                done.bytes.len(),
                g.nodes.len(),
                g.weights.len(),
                2.0 * inspect::graph_macs(g) as f64 / 1e9,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Inspect { model, json } => inspect::inspect(&model, json),
        Cmd::Run {
            model,
            input,
            output,
            precision: p,
        } => run(&model, &input, &output, precision(p.bf16, p.f16, p.int8)),
        Cmd::Eval {
            model,
            data,
            json,
            precision: p,
        } => eval(&model, &data, json, precision(p.bf16, p.f16, p.int8)),
        Cmd::Compare {
            a,
            b,
            inputs,
            json,
            bf16_b,
            f16_b,
            int8_b,
        } => compare(&a, &b, &inputs, json, precision(bf16_b, f16_b, int8_b)),
    }
}

/// Loads `--calib` or `--holdout`: an .npy array, or a folder of images sized to the
/// model's input.
fn load_calib(
    path: &Path,
    onnx: &Path,
    input_shapes: &[Vec<usize>],
    mean: &str,
    std: &str,
) -> Result<smof_converter::prune::calib::Calibration> {
    use smof_converter::prune::calib::Calibration;
    if path.is_dir() {
        let bytes =
            std::fs::read(onnx).with_context(|| format!("cannot read {}", onnx.display()))?;
        let dir = onnx.parent().filter(|p| !p.as_os_str().is_empty());
        let imported = smof_converter::onnx::import_with(
            &bytes,
            input_shapes,
            Some(dir.unwrap_or(Path::new("."))),
        )?;
        let dims = &imported
            .graph
            .inputs
            .first()
            .context("the model has no input")?
            .dims;
        let [_, c, h, w] = dims[..] else {
            bail!("--calib DIR needs an NCHW image input; the model takes {dims:?}");
        };
        let (mean, std) = (parse_floats("mean", mean)?, parse_floats("std", std)?);
        Ok(Calibration::from_images(path, [c, h, w], &mean, &std)?)
    } else {
        Ok(Calibration::from_npy(path)?)
    }
}

/// The session precision of the `--bf16`, `--f16` and `--int8` flags (which clap keeps
/// apart).
fn precision(bf16: bool, f16: bool, int8: bool) -> Precision {
    match (bf16, f16, int8) {
        (true, ..) => Precision::Bf16,
        (_, true, _) => Precision::F16,
        (.., true) => Precision::Int8,
        _ => Precision::F32,
    }
}

/// A session of `model` at precision `p`, saying so on stderr when bf16 or f16 was asked for
/// and no conv takes it (a CPU without the instructions).
fn session<'m>(model: &'m Model, opts: SessionOptions, p: Precision) -> Result<Session<'m>> {
    let s = Session::new(model, &opts.precision(p))?;
    if p == Precision::Bf16 && s.bf16_convs() == 0 {
        eprintln!("smof: note: no conv runs in bf16 here (it needs AVX512-BF16 or FEAT_BF16, and 1x1 convs)");
    }
    if p == Precision::F16 && s.f16_convs() == 0 {
        eprintln!("smof: note: no conv runs in f16 here (it needs FEAT_FP16, and 1x1 convs)");
    }
    if p == Precision::Int8 && s.int8_convs() == 0 {
        eprintln!("smof: note: no conv runs in int8 here (it needs AVX512-VNNI or FEAT_DotProd, and 1x1 convs)");
    }
    Ok(s)
}

/// Opens a model file, mapped unless `--no-mmap` was given.
fn open(path: &Path) -> Result<Model> {
    if NO_MMAP.load(std::sync::atomic::Ordering::Relaxed) {
        Model::open_copied(path, &smof::ModelOptions::default())
    } else {
        Model::open(path)
    }
    .with_context(|| format!("cannot load {}", path.display()))
}

fn run(model_path: &Path, input: &Path, output: &Path, p: Precision) -> Result<()> {
    let model = open(model_path)?;
    let inputs = &model.graph().inputs;
    if inputs.len() != 1 {
        bail!(
            "the model has {} inputs; `smof run` feeds one",
            inputs.len()
        );
    }
    let x = npy::read(input)?;
    // Another batch or image size is planned for, as far as the layers can take it (a
    // fully convolutional model any size, a classifier another batch).
    let expected: Vec<usize> = inputs[0].dims.iter().map(|&d| d as usize).collect();
    let mut opts = SessionOptions::default();
    if x.shape != expected {
        opts.input_shapes = vec![x.shape.clone()];
    }
    let mut session = session(&model, opts, p).with_context(|| {
        format!(
            "{} has shape {:?}; the model was converted for {:?}",
            input.display(),
            x.shape,
            expected
        )
    })?;
    session.run(&[&x.data])?;
    for (i, desc) in model.graph().outputs.iter().enumerate() {
        let path = if i == 0 {
            output.to_path_buf()
        } else {
            let stem = output
                .file_stem()
                .map_or("output".into(), |s| s.to_string_lossy());
            let name: String = desc
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            output.with_file_name(format!("{stem}.{name}.npy"))
        };
        npy::write(&path, session.output_dims(i), session.output(i))?;
        eprintln!("wrote {} {:?}", path.display(), session.output_dims(i));
    }
    Ok(())
}

/// Runs `session` on each sample of a batch array whose shape is (N, ...) and calls `f` with
/// the sample index and the first output. Works whatever the model's own batch size is.
fn for_each_sample(
    session: &mut Session,
    x: &npy::Array,
    mut f: impl FnMut(usize, &[f32]),
) -> Result<()> {
    let dims = session.input_dims(0).to_vec();
    let per_model: usize = dims.iter().product();
    let model_batch = dims.first().copied().unwrap_or(1);
    let per_sample = per_model / model_batch.max(1);
    if x.shape.len() != dims.len() || x.shape[1..] != dims[1..] {
        bail!(
            "inputs have shape {:?}, the model expects (N, {:?})",
            x.shape,
            &dims[1..]
        );
    }
    let n = x.shape[0];
    let out_per_sample = session.output(0).len() / model_batch.max(1);
    let mut i = 0;
    while i < n {
        let take = model_batch.min(n - i);
        let mut buf = vec![0.0f32; per_model];
        buf[..take * per_sample].copy_from_slice(&x.data[i * per_sample..(i + take) * per_sample]);
        session.run(&[&buf])?;
        for k in 0..take {
            f(
                i + k,
                &session.output(0)[k * out_per_sample..(k + 1) * out_per_sample],
            );
        }
        i += take;
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

fn eval(model_path: &Path, data: &Path, json: bool, p: Precision) -> Result<()> {
    let model = open(model_path)?;
    let mut session = session(&model, SessionOptions::default(), p)?;
    let (x, y) = npy::read_npz_xy(data)?;
    if x.shape.first() != Some(&y.len()) {
        bail!("X has {:?} samples but y has {}", x.shape.first(), y.len());
    }
    let mut correct = 0usize;
    for_each_sample(&mut session, &x, |i, out| {
        if argmax(out) as i64 == y[i] {
            correct += 1;
        }
    })?;
    let n = y.len();
    let top1 = if n > 0 {
        correct as f64 / n as f64
    } else {
        0.0
    };
    if json {
        smof::outln!("{{\"top1\": {top1:.6}, \"n\": {n}}}");
    } else {
        smof::outln!("top-1 {:.2}% ({correct}/{n})", top1 * 100.0);
    }
    Ok(())
}

fn compare(a: &Path, b: &Path, inputs: &Path, json: bool, pb: Precision) -> Result<()> {
    let (ma, mb) = (open(a)?, open(b)?);
    let mut sa = Session::new(&ma, &SessionOptions::default())?;
    let mut sb = session(&mb, SessionOptions::default(), pb)?;
    let x = npy::read(inputs)?;
    let mut outs_a = Vec::new();
    for_each_sample(&mut sa, &x, |_, o| outs_a.push(o.to_vec()))?;
    let (mut sum_cos, mut min_cos, mut agree, mut max_abs, mut n) =
        (0.0f64, f64::INFINITY, 0usize, 0.0f32, 0usize);
    let mut shape_err = None;
    for_each_sample(&mut sb, &x, |i, o| {
        let r = &outs_a[i];
        if r.len() != o.len() {
            shape_err = Some((r.len(), o.len()));
            return;
        }
        let dot: f64 = r.iter().zip(o).map(|(&p, &q)| p as f64 * q as f64).sum();
        let na: f64 = r.iter().map(|&p| p as f64 * p as f64).sum::<f64>().sqrt();
        let nb: f64 = o.iter().map(|&q| q as f64 * q as f64).sum::<f64>().sqrt();
        let cos = if na > 0.0 && nb > 0.0 {
            dot / (na * nb)
        } else {
            f64::from(u8::from(na == nb))
        };
        sum_cos += cos;
        min_cos = min_cos.min(cos);
        agree += usize::from(argmax(r) == argmax(o));
        max_abs = r
            .iter()
            .zip(o)
            .fold(max_abs, |m, (&p, &q)| m.max((p - q).abs()));
        n += 1;
    })?;
    if let Some((la, lb)) = shape_err {
        bail!("the models' outputs differ in size ({la} and {lb})");
    }
    if n == 0 {
        bail!("no samples in {}", inputs.display());
    }
    let mean = sum_cos / n as f64;
    let agreement = agree as f64 / n as f64;
    if json {
        smof::outln!(
            "{{\"mean_cosine\": {mean:.6}, \"min_cosine\": {min_cos:.6}, \"top1_agreement\": {agreement:.6}, \"max_abs_err\": {max_abs:.6e}, \"n\": {n}}}"
        );
    } else {
        smof::outln!("samples {n}: mean cosine {mean:.6}, min cosine {min_cos:.6}, top-1 agreement {:.2}%, max abs err {max_abs:.3e}", agreement * 100.0);
    }
    Ok(())
}
