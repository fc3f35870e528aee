//! Peak f32 FMA rate of one core: a loop of nothing but vector FMAs into independent
//! accumulators, so neither latency nor memory limits it. It is the ceiling the conv kernels'
//! GFLOP/s are measured against.
//!
//! `cargo run --release -p smof-benches --example peak_fma [-- SECONDS]`
//!
//! Runs each instruction set this CPU has (x86-64: AVX2+FMA, and AVX-512F when present;
//! aarch64: NEON) on the calling thread and prints GFLOP/s (an FMA counts 2 FLOPs per lane),
//! best of several timed runs.

use std::hint::black_box;
use std::time::Instant;

/// FMAs per accumulator per call of a kernel; large enough that a call takes milliseconds.
const ITERS: u64 = 1 << 20;

/// Initial value of accumulator `i`: distinct, and away from the recurrence's fixed point
/// (`a / (1 - m)` = 10), so every chain does real work.
fn start(i: usize) -> f32 {
    0.5 + 0.01 * black_box(i as f32)
}

/// One measured instruction set: name, FLOPs per call, and the kernel.
struct Peak {
    name: &'static str,
    flops_per_call: u64,
    run: fn() -> f32,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{start, ITERS};
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// Accumulators: FMA latency is 4 cycles on current x86 cores with 2 FMA pipes, so 8
    /// independent chains fill them; 12 leave margin and fit the 16 ymm registers with the
    /// two operands.
    pub const ACC_AVX2: u64 = 12;
    /// AVX-512 has 32 zmm registers; 16 chains cover latency 4 x 2 pipes twice over.
    pub const ACC_AVX512: u64 = 16;

    /// `acc = acc * m + a` on 12 ymm accumulators; converges, so values stay normal.
    /// [`start`] keeps every accumulator off the fixed point `a / (1 - m)`, where the compiler
    /// could prove a chain constant and drop it.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_avx2() -> f32 {
        let m = _mm256_set1_ps(black_box(0.999_9));
        let a = _mm256_set1_ps(black_box(1e-3));
        let mut acc = [_mm256_setzero_ps(); ACC_AVX2 as usize];
        for (i, v) in acc.iter_mut().enumerate() {
            *v = _mm256_set1_ps(start(i));
        }
        for _ in 0..ITERS {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    /// As [`fma_avx2`] on 16 zmm accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn fma_avx512() -> f32 {
        let m = _mm512_set1_ps(black_box(0.999_9));
        let a = _mm512_set1_ps(black_box(1e-3));
        let mut acc = [_mm512_setzero_ps(); ACC_AVX512 as usize];
        for (i, v) in acc.iter_mut().enumerate() {
            *v = _mm512_set1_ps(start(i));
        }
        for _ in 0..ITERS {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in acc {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }

    pub fn avx2() -> f32 {
        assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
        // SAFETY: AVX2 and FMA were detected just above.
        unsafe { fma_avx2() }
    }

    pub fn avx512() -> f32 {
        assert!(is_x86_feature_detected!("avx512f"));
        // SAFETY: AVX-512F was detected just above.
        unsafe { fma_avx512() }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{start, ITERS};
    use std::arch::aarch64::*;
    use std::hint::black_box;

    /// 16 of the 32 q-registers: FMA latency 4 x up to 4 pipes on big cores.
    pub const ACC_NEON: u64 = 16;

    pub fn neon() -> f32 {
        // SAFETY: NEON is part of the aarch64 baseline; these intrinsics touch registers only.
        unsafe {
            let m = vdupq_n_f32(black_box(0.999_9));
            let a = vdupq_n_f32(black_box(1e-3));
            let mut acc = [vdupq_n_f32(0.0); ACC_NEON as usize];
            for (i, v) in acc.iter_mut().enumerate() {
                *v = vdupq_n_f32(start(i));
            }
            for _ in 0..ITERS {
                for v in acc.iter_mut() {
                    *v = vfmaq_f32(a, *v, m);
                }
            }
            let mut s = vdupq_n_f32(0.0);
            for v in acc {
                s = vaddq_f32(s, v);
            }
            vaddvq_f32(s)
        }
    }
}

/// The instruction sets this CPU can run.
fn peaks() -> Vec<Peak> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Peak {
                name: "AVX2+FMA (12 ymm accumulators)",
                flops_per_call: ITERS * x86::ACC_AVX2 * 8 * 2,
                run: x86::avx2,
            });
        }
        if is_x86_feature_detected!("avx512f") {
            v.push(Peak {
                name: "AVX-512F (16 zmm accumulators)",
                flops_per_call: ITERS * x86::ACC_AVX512 * 16 * 2,
                run: x86::avx512,
            });
        }
    }
    #[cfg(target_arch = "aarch64")]
    v.push(Peak {
        name: "NEON (16 q accumulators)",
        flops_per_call: ITERS * arm::ACC_NEON * 4 * 2,
        run: arm::neon,
    });
    v
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        None => 2.0,
        Some(s) => match s.parse() {
            Ok(v) if v > 0.0 => v,
            _ => {
                eprintln!("peak_fma: '{s}' is not a positive number of seconds");
                std::process::exit(2);
            }
        },
    };
    let list = peaks();
    if list.is_empty() {
        eprintln!("peak_fma: no vector FMA instruction set detected on this CPU");
        std::process::exit(1);
    }
    for p in list {
        // Warm up (clock ramp, page faults) before timing.
        black_box((p.run)());
        let begin = Instant::now();
        let mut best = f64::MAX;
        let mut runs = 0;
        while runs < 5 || begin.elapsed().as_secs_f64() < seconds {
            let t = Instant::now();
            black_box((p.run)());
            best = best.min(t.elapsed().as_secs_f64());
            runs += 1;
        }
        println!(
            "{:<32} {:7.1} GFLOP/s  (one core, best of {runs} runs of {:.1} ms)",
            p.name,
            p.flops_per_call as f64 / best / 1e9,
            best * 1e3
        );
    }
}
