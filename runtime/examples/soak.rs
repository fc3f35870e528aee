//! Soak run: one model, one session, many runs; RSS sampled throughout, latency percentiles
//! at the end. Not a unit test: `scripts/soak.sh` converts MobileNetV2 and runs this.
//!
//! ```text
//! cargo run --release -p smof --example soak -- MODEL.smof [--runs N] [--warmup N]
//!     [--sample-every N] [--max-seconds S]
//! ```
//!
//! The first `--warmup` runs (default 1000) are excluded from the statistics; the RSS at the
//! end of the warm-up is the baseline. Every `--sample-every` runs (default 100) the RSS is
//! read from `/proc/self/statm`. Every output must be bit-identical to the first run's.
//! `--max-seconds` stops early (the report then says how many runs were done). Exits with
//! status 1 when the RSS grew by more than 1% over the baseline or an output changed.

use smof::{Model, Session, SessionOptions};
use std::time::{Duration, Instant};

/// Largest allowed growth of the RSS over its value at the end of the warm-up.
const MAX_DRIFT: f64 = 0.01;

/// Resident set size in bytes, from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Args {
    model: String,
    runs: usize,
    warmup: usize,
    sample_every: usize,
    max_seconds: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        model: String::new(),
        runs: 100_000,
        warmup: 1000,
        sample_every: 100,
        max_seconds: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String, String> {
            it.next().ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |s: String, name: &str| -> Result<usize, String> {
            s.parse().map_err(|_| format!("{name}: not a count: {s}"))
        };
        match arg.as_str() {
            "--runs" => a.runs = num(value("--runs")?, "--runs")?,
            "--warmup" => a.warmup = num(value("--warmup")?, "--warmup")?,
            "--sample-every" => {
                a.sample_every = num(value("--sample-every")?, "--sample-every")?.max(1)
            }
            "--max-seconds" => {
                let v = value("--max-seconds")?;
                a.max_seconds = Some(v.parse().map_err(|_| format!("--max-seconds: {v}"))?);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => a.model = s.to_string(),
        }
    }
    if a.model.is_empty() {
        return Err(
            "usage: soak MODEL.smof [--runs N] [--warmup N] [--sample-every N] \
                    [--max-seconds S]"
                .into(),
        );
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = soak(&args) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn soak(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::open(&args.model)?;
    let mut session = Session::new(&model, &SessionOptions::default())?;
    let n: usize = session.input_dims(0).iter().product();
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    // Everything the loop touches is allocated and written before it starts: a buffer only
    // reserved would be paged in as it fills (8 bytes a run), which shows as RSS growth.
    let mut latencies: Vec<f64> = vec![f64::NAN; args.runs];
    let mut rss: Vec<(usize, u64)> =
        vec![(usize::MAX, u64::MAX); args.runs / args.sample_every + 2];
    let (mut n_lat, mut n_rss) = (0usize, 0usize);
    session.run(&[&input])?;
    let reference: Vec<u32> = session.output(0).iter().map(|v| v.to_bits()).collect();
    let rss_start = rss_bytes().ok_or("cannot read /proc/self/statm")?;
    let mut baseline = rss_start;
    let deadline = args
        .max_seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let started = Instant::now();
    let mut done = 0usize;
    let mut mismatches = 0usize;
    for run in 0..args.runs {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let t = Instant::now();
        session.run(&[&input])?;
        let dt = t.elapsed().as_secs_f64();
        if session
            .output(0)
            .iter()
            .zip(&reference)
            .any(|(v, &r)| v.to_bits() != r)
        {
            mismatches += 1;
        }
        done = run + 1;
        if run >= args.warmup {
            latencies[n_lat] = dt;
            n_lat += 1;
        }
        if done == args.warmup {
            baseline = rss_bytes().unwrap_or(baseline);
            rss[n_rss] = (done, baseline);
            n_rss += 1;
        } else if done.is_multiple_of(args.sample_every) {
            if let Some(r) = rss_bytes() {
                rss[n_rss] = (done, r);
                n_rss += 1;
            }
        }
    }
    latencies.truncate(n_lat);
    rss.truncate(n_rss);
    let wall = started.elapsed().as_secs_f64();
    let after: Vec<u64> = rss
        .iter()
        .filter(|&&(r, _)| r >= args.warmup)
        .map(|&(_, b)| b)
        .collect();
    let max_after = after.iter().copied().max().unwrap_or(baseline);
    let min_after = after.iter().copied().min().unwrap_or(baseline);
    let last = after.last().copied().unwrap_or(baseline);
    let drift = (max_after as f64 - baseline as f64) / baseline as f64;
    latencies.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1e3;
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("model            {}", args.model);
    println!(
        "runs             {done} of {} ({} warm-up), {wall:.1} s",
        args.runs, args.warmup
    );
    println!(
        "latency ms       p50 {:.3}  p99 {:.3}  p99.9 {:.3}  min {:.3}  mean {:.3}  max {:.3}  ({} runs after warm-up)",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.9)),
        ms(latencies.first().copied().unwrap_or(f64::NAN)),
        ms(mean),
        ms(latencies.last().copied().unwrap_or(f64::NAN)),
        latencies.len()
    );
    println!(
        "rss MiB          start {:.2}  after warm-up {:.2}  min {:.2}  max {:.2}  last {:.2}  ({} samples after warm-up)",
        mib(rss_start),
        mib(baseline),
        mib(min_after),
        mib(max_after),
        mib(last),
        after.len()
    );
    println!(
        "rss drift        {:+.3}% (limit {:.0}%)",
        drift * 100.0,
        MAX_DRIFT * 100.0
    );
    println!("output changes   {mismatches}");
    if done <= args.warmup {
        return Err(format!(
            "only {done} runs, not past the {} warm-up runs",
            args.warmup
        )
        .into());
    }
    if drift > MAX_DRIFT {
        return Err(format!("RSS grew {:.3}% after warm-up", drift * 100.0).into());
    }
    if mismatches > 0 {
        return Err(format!("{mismatches} runs gave a different output").into());
    }
    Ok(())
}
