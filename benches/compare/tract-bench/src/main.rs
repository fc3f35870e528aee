//! `tract-bench`: times one ONNX model with tract-onnx (`into_optimized()` +
//! `into_runnable()`), batch 1, on the calling thread, and prints one JSON object with the
//! min and median ms, the way `smof-bench --json` does.
//!
//! `tract-bench MODEL.onnx [--shape 1,3,224,224] [--warmup N] [--loops N] [--dump-output FILE]`
//!
//! The input is the synthetic one of `smof-bench`, and `--dump-output` writes output 0 of the
//! last run as raw little-endian f32, as `smof-bench --dump-output` does, so the two can be
//! compared.

use std::process::ExitCode;
use std::time::Instant;
use tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TValue, TVec, Tensor,
};

const USAGE: &str =
    "usage: tract-bench MODEL.onnx [--shape 1,3,224,224] [--warmup N] [--loops N] [--dump-output FILE]";

struct Args {
    model: String,
    shape: Vec<usize>,
    warmup: usize,
    loops: usize,
    dump_output: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut model = None;
    let mut out = Args {
        model: String::new(),
        shape: vec![1, 3, 224, 224],
        warmup: 3,
        loops: 20,
        dump_output: None,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--shape" => {
                let v = value("--shape")?;
                out.shape = v
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--shape: '{v}' is not a list such as 1,3,224,224"))?;
            }
            "--warmup" => {
                let v = value("--warmup")?;
                out.warmup = v
                    .parse()
                    .map_err(|_| format!("--warmup: '{v}' is not a number"))?;
            }
            "--loops" => {
                let v = value("--loops")?;
                out.loops = v
                    .parse::<usize>()
                    .map_err(|_| format!("--loops: '{v}' is not a number"))?
                    .max(1);
            }
            "--dump-output" => out.dump_output = Some(value("--dump-output")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if model.replace(s.to_string()).is_some() {
                    return Err("give one model".into());
                }
            }
        }
    }
    out.model = model.ok_or("no model given")?;
    Ok(out)
}

/// Deterministic input in [-1, 1) (the same generator as `smof-bench`).
fn synthetic_input(len: usize) -> Vec<f32> {
    let mut s = 2654435761u32;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench(a: &Args) -> Result<String, String> {
    let plan = tract_onnx::onnx()
        .model_for_path(&a.model)
        .map_err(|e| format!("cannot load {}: {e:?}", a.model))?
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), a.shape.as_slice()),
        )
        .map_err(|e| format!("input shape {:?}: {e:?}", a.shape))?
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("cannot optimise {}: {e:?}", a.model))?;
    let data = synthetic_input(a.shape.iter().product());
    let input: TValue = Tensor::from_shape(&a.shape, &data)
        .map_err(|e| format!("input tensor: {e:?}"))?
        .into();
    let run = || -> Result<TVec<TValue>, String> {
        let inputs: TVec<TValue> = std::iter::once(input.clone()).collect();
        plan.run(inputs).map_err(|e| format!("run: {e:?}"))
    };
    let first = run()?;
    if let Some(path) = &a.dump_output {
        let out = first
            .first()
            .ok_or("the model has no output")?
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("output 0 is not f32: {e:?}"))?;
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    drop(first);
    for _ in 1..a.warmup {
        run()?;
    }
    let mut ms = Vec::with_capacity(a.loops);
    for _ in 0..a.loops {
        let t = Instant::now();
        run()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    Ok(format!(
        "{{\"model\":{:?},\"warmup\":{},\"loops\":{},\"min_ms\":{:.4},\"median_ms\":{:.4}}}",
        a.model, a.warmup, a.loops, ms[0], median
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tract-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match bench(&args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tract-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
