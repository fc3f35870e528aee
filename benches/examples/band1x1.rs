//! A 1x1 conv on a band of rows small enough to stay in the cache (as a conv chain runs its
//! members), in GFLOP/s, through a kernel table's own kernel and, on AVX-512 CPUs with a
//! multiple of 32 output channels, through a minimal reference tile loop with the same
//! 12 x 32 tile, weight layout and multiply-add order. The gap between the two is what the
//! production kernel loses around its inner loop (see `docs/decisions.md`, "1x1 convs with few
//! input channels", session 22).
//!
//! `cargo run --release -p smof-benches --example band1x1 -- W ROWS IC OC [ITERS] [TABLE]`
//! (`TABLE` defaults to `x86_64-avx512`; the environment variable `ACT` picks the fused
//! activation: `none`, `relu`, `silu`, `gelu`, else ReLU6; `COPIES=N` keeps N copies of the
//! weights and uses them in turn, so that with enough of them each call streams its weights
//! from memory, as a layer of a large model does). Prints the best of 5 timed runs of `ITERS`
//! calls (default 20,000).

use smof::graph::{Activation, Conv, Shape4};
use smof::kernels::{pack, Act4, AlignedF32, KernelTable};
use smof_benches::run_whole_conv;
use std::time::Instant;

fn usage() -> ! {
    eprintln!("usage: band1x1 W ROWS IC OC [ITERS] [TABLE]");
    std::process::exit(2)
}

/// Seconds per call of `f`: the best of 5 runs of `iters` calls.
fn best_of(iters: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() / iters as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize| -> Option<usize> { args.get(i).map(|s| s.parse().unwrap_or_else(|_| usage())) };
    let (Some(w), Some(rows), Some(ic), Some(oc)) = (num(0), num(1), num(2), num(3)) else {
        usage()
    };
    let iters = num(4).unwrap_or(20_000);
    let tname = args.get(5).map_or("x86_64-avx512", String::as_str);
    let Some(table) = KernelTable::all_supported()
        .into_iter()
        .find(|t| t.name == tname)
    else {
        eprintln!("kernel table {tname} is not supported on this CPU");
        std::process::exit(2)
    };
    let act = match std::env::var("ACT").as_deref() {
        Ok("none") => Activation::None,
        Ok("relu") => Activation::Relu,
        Ok("silu") => Activation::Silu,
        Ok("gelu") => Activation::Gelu,
        _ => Activation::Clip { min: 0.0, max: 6.0 },
    };
    let conv = Conv {
        in_c: ic as u32,
        out_c: oc as u32,
        groups: 1,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
        weight: 0,
        bias: Some(1),
        act,
    };
    let shape = |c: usize| Shape4::new(1, rows as u32, w as u32, c as u32);
    let xs = Act4::new(shape(ic), table.channel_align);
    let ys = Act4::new(shape(oc), table.channel_align);
    let kernel = (table.conv)(&conv, table.choice.conv_plan(&conv, xs.shape))
        .expect("a table runs the plan of its own rule");
    let canonical: Vec<f32> = (0..ic * oc)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
        .collect();
    // Buffers 64-byte aligned, as a session's weights, arena and scratch are.
    let wts = AlignedF32::from_slice(&pack::pack(
        &canonical,
        &[oc as u32, ic as u32, 1, 1],
        kernel.layout,
    ));
    // `COPIES` copies of the weights, used in turn: with enough of them each call streams its
    // weights from memory, as a layer of a large model does.
    let copies: Vec<AlignedF32> = (0..std::env::var("COPIES")
        .map_or(1, |c| c.parse().unwrap_or(1)))
        .map(|_| AlignedF32::from_slice(&wts))
        .collect();
    let mut turn = 0;
    let bias = vec![0.1f32; oc];
    let x: Vec<f32> = (0..xs.len()).map(|i| (i % 5) as f32 * 0.1).collect();
    let x = AlignedF32::from_slice(&x);
    let mut y = AlignedF32::zeroed(ys.len());
    let mut scratch = AlignedF32::zeroed((kernel.scratch_len)(&conv, xs, ys));
    let flops = |px: usize| 2.0 * px as f64 * ic as f64 * oc as f64;
    let s = best_of(iters, || {
        let (x, y) = ((&x[..], xs), (&mut y[..], ys));
        turn = (turn + 1) % copies.len();
        run_whole_conv(&kernel, &conv, x, &copies[turn], &bias, y, &mut scratch);
    });
    println!(
        "{} {rows}x{w}x{ic}->{oc} {act:?}: {:.1} GFLOP/s ({:.2} us)",
        kernel.name,
        flops(w * rows) / s / 1e9,
        s * 1e6
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && oc % 32 == 0 {
        let (px, xcs, ycs) = (w * rows, xs.cs, ys.cs);
        let mut yr = AlignedF32::zeroed(ys.len());
        let s = best_of(iters, || {
            // SAFETY: AVX-512F is present; the buffers hold `px` pixels at these strides and
            // `oc / 32` blocks of `ic` steps of packed weights.
            unsafe { reference::conv1x1_relu6(&x, xcs, ic, px, &wts, &bias, &mut yr, ycs, oc) };
            std::hint::black_box(&mut yr);
        });
        // The same sums in the same order, clamped to [0, 6] whatever `ACT` says: with ReLU6
        // the two outputs agree bit for bit.
        let n = px / 12 * 12;
        let same = y[..n * ycs] == yr[..n * ycs];
        println!(
            "reference 12x32 tile loop, ReLU6, {n} of the pixels: {:.1} GFLOP/s ({:.2} us); \
             outputs identical: {same}",
            flops(n) / s / 1e9,
            s * 1e6
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod reference {
    use std::arch::x86_64::*;

    /// `y = clamp(bias + x w, 0, 6)` over the first `px / 12 * 12` pixels in 12 x 32 tiles:
    /// the accumulators in registers from the bias to the store, nothing else per tile.
    ///
    /// # Safety
    /// AVX-512F is available; `x` holds `px` pixels `xcs` apart, `y` `px` pixels `ycs` apart,
    /// `w` is `ConvOcBlock(32)` with `k` inputs and `oc` (a multiple of 32) outputs.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub unsafe fn conv1x1_relu6(
        x: &[f32],
        xcs: usize,
        k: usize,
        px: usize,
        w: &[f32],
        bias: &[f32],
        y: &mut [f32],
        ycs: usize,
        oc: usize,
    ) {
        assert!(x.len() >= px * xcs && y.len() >= px * ycs && w.len() >= oc * k);
        assert!(oc.is_multiple_of(32) && bias.len() >= oc && xcs >= k && ycs >= oc);
        let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
        for b in 0..oc / 32 {
            let wb = w.as_ptr().add(b * k * 32);
            let b0 = _mm512_loadu_ps(bias.as_ptr().add(b * 32));
            let b1 = _mm512_loadu_ps(bias.as_ptr().add(b * 32 + 16));
            for p in (0..px / 12 * 12).step_by(12) {
                let (mut a0, mut a1) = ([b0; 12], [b1; 12]);
                let xp = x.as_ptr().add(p * xcs);
                for i in 0..k {
                    let w0 = _mm512_loadu_ps(wb.add(i * 32));
                    let w1 = _mm512_loadu_ps(wb.add(i * 32 + 16));
                    for m in 0..12 {
                        let xb = _mm512_set1_ps(*xp.add(m * xcs + i));
                        a0[m] = _mm512_fmadd_ps(xb, w0, a0[m]);
                        a1[m] = _mm512_fmadd_ps(xb, w1, a1[m]);
                    }
                }
                let yp = y.as_mut_ptr().add(p * ycs + b * 32);
                for m in 0..12 {
                    let (v0, v1) = (_mm512_max_ps(a0[m], lo), _mm512_max_ps(a1[m], lo));
                    _mm512_storeu_ps(yp.add(m * ycs), _mm512_min_ps(v0, hi));
                    _mm512_storeu_ps(yp.add(m * ycs + 16), _mm512_min_ps(v1, hi));
                }
            }
        }
    }
}
