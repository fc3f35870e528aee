//! `Session::run` allocates nothing, single- and multi-threaded: a counting global allocator
//! (which also sees the worker threads) watches 100 runs of MobileNetV2 after the first, and
//! of a graph whose squeeze-excite patterns (one gate folded into a conv, one not) and max
//! pool split over the threads. Also checks
//! the arena plan against the peak of live bytes.
//!
//! This test binary has its own `main` (`harness = false`): the allocator counts every
//! thread of the process, and libtest's threads (other tests running in parallel, its
//! "has been running for over 60 seconds" notices on a loaded machine) allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn bundled_mobilenet() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2_imagenet_backbone.onnx"
    );
    let onnx =
        std::fs::read(path).expect("bundled model models/mobilenet_v2_imagenet_backbone.onnx");
    smof_converter::convert(&onnx, &smof_converter::ConvertOptions::default())
        .expect("convert")
        .bytes
}

fn main() {
    run_allocates_nothing_after_the_first();
    println!("test run_allocates_nothing_after_the_first ... ok");
    arena_is_within_ten_percent_of_peak_live_bytes();
    println!("test arena_is_within_ten_percent_of_peak_live_bytes ... ok");
}

/// A squeeze-excite pattern whose gate is folded into the 1x1 conv after it, a second one and
/// a padded max pool, all large enough to run on every thread of a session, as a converted
/// model, with an input.
fn squeeze_excite_then_max_pool() -> (Vec<u8>, Vec<f32>) {
    use smof_tests::{attr, ConvSpec};
    let shape = [1, 40, 70, 50];
    let mut b = smof_tests::OnnxBuilder::with_seed(13, 7);
    let x = b.input("x", &shape);
    let y = b.squeeze_excite(&x, 40, "Sigmoid", false);
    let y = b.conv(&y, &ConvSpec::new(40, 40, [1, 1]));
    let y = b.squeeze_excite(&y, 40, "Sigmoid", false);
    let attrs = vec![
        attr::ints("kernel_shape", &[3, 3]),
        attr::ints("strides", &[2, 2]),
        attr::ints("pads", &[1, 1, 1, 1]),
    ];
    let y = b.node("MaxPool", &[&y], attrs);
    b.output(&y);
    let bytes = smof_converter::convert(&b.build(), &smof_converter::ConvertOptions::default())
        .expect("convert")
        .bytes;
    (bytes, smof_tests::random_input(5, &shape).1)
}

/// A depthwise 7x7 conv and a LayerNormalization over the channels between NHWC transposes
/// (ConvNeXt's block start), large enough for the LayerNorm to run on every thread, as a
/// converted model, with an input.
fn depthwise_then_layer_norm() -> (Vec<u8>, Vec<f32>) {
    use smof_tests::{attr, ConvSpec};
    let shape = [1, 40, 30, 30];
    let mut b = smof_tests::OnnxBuilder::with_seed(17, 9);
    let x = b.input("x", &shape);
    let d = b.conv(&x, &ConvSpec::new(40, 40, [7, 7]).same().group(40));
    let p = b.node("Transpose", &[&d], vec![attr::ints("perm", &[0, 2, 3, 1])]);
    let s = b.random_init("ln_scale", &[40], 0.5, 1.5);
    let t = b.random_init("ln_bias", &[40], -0.5, 0.5);
    let attrs = vec![attr::int("axis", -1), attr::float("epsilon", 1e-6)];
    let n = b.node("LayerNormalization", &[&p, &s, &t], attrs);
    let y = b.node("Transpose", &[&n], vec![attr::ints("perm", &[0, 3, 1, 2])]);
    b.output(&y);
    let bytes = smof_converter::convert(&b.build(), &smof_converter::ConvertOptions::default())
        .expect("convert")
        .bytes;
    (bytes, smof_tests::random_input(3, &shape).1)
}

fn run_allocates_nothing_after_the_first() {
    let input: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
        .collect();
    check_runs(&bundled_mobilenet(), &input);
    // A classifier after global pooling (its fully connected layer runs in bf16 where the
    // CPU has AVX512-BF16).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mnist/resnet8.onnx");
    let onnx = std::fs::read(path).expect("bundled model models/mnist/resnet8.onnx");
    let resnet8 = smof_converter::convert(&onnx, &smof_converter::ConvertOptions::default())
        .expect("convert")
        .bytes;
    let digit: Vec<f32> = (0..28 * 28).map(|i| (i % 13) as f32 / 13.0).collect();
    check_runs(&resnet8, &digit);
    let (bytes, input) = squeeze_excite_then_max_pool();
    let model = smof::Model::from_bytes(&bytes).unwrap();
    let session = smof::Session::new(&model, &Default::default()).unwrap();
    assert_eq!(session.folded_gates(), [(0, 4)]);
    assert_eq!(session.fused_patterns().len(), 2);
    check_runs(&bytes, &input);
    let (bytes, input) = depthwise_then_layer_norm();
    let model = smof::Model::from_bytes(&bytes).unwrap();
    let session = smof::Session::new(&model, &Default::default()).unwrap();
    assert!(session.kernel_names().contains(&"layer_norm"));
    check_runs(&bytes, &input);
}

/// 100 runs of the model `bytes` on `input` after the first allocate nothing, on every table,
/// in f32, bf16, f16 and int8 (`Precision::Bf16`, `Precision::F16`, `Precision::Int8`: their
/// convs where the CPU has the instructions), and on 1-3 threads, and give the same output
/// to the bit.
fn check_runs(bytes: &[u8], input: &[f32]) {
    use smof::Precision;
    let precisions = [
        Precision::F32,
        Precision::Bf16,
        Precision::F16,
        Precision::Int8,
    ];
    for (table, precision) in smof::kernels::KernelTable::all_supported()
        .into_iter()
        .flat_map(|t| precisions.map(|p| (t, p)))
    {
        let opts = smof::ModelOptions {
            kernels: smof_tests_choice(table.name),
            ..Default::default()
        };
        let model = smof::Model::from_bytes_with(bytes, &opts).unwrap();
        let mut single = None;
        for threads in [1, 2, 3] {
            let sopts = (smof::SessionOptions::default().threads(threads)).precision(precision);
            let mut session = smof::Session::new(&model, &sopts).unwrap();
            session.run(&[input]).unwrap();
            let first = session.output(0).to_vec();
            // Work is split by output rows (pixels for a LayerNorm), so every thread count
            // computes the same sums.
            let single = single.get_or_insert_with(|| first.clone());
            assert!(
                &first == single,
                "{} {precision:?}: {threads} threads give another result than 1",
                table.name
            );
            let before = ALLOCS.load(Ordering::SeqCst);
            for _ in 0..100 {
                session.run(&[input]).unwrap();
            }
            let after = ALLOCS.load(Ordering::SeqCst);
            assert_eq!(
                after - before,
                0,
                "{} {precision:?}, {threads} threads: Session::run allocated {} times in 100 runs",
                table.name,
                after - before
            );
            assert_eq!(
                session.output(0),
                &first[..],
                "{}: runs are not deterministic",
                table.name
            );
        }
    }
}

fn arena_is_within_ten_percent_of_peak_live_bytes() {
    let bytes = bundled_mobilenet();
    let model = smof::Model::from_bytes(&bytes).unwrap();
    let session = smof::Session::new(&model, &smof::SessionOptions::default()).unwrap();
    let (arena, peak) = (session.arena_bytes(), session.peak_live_bytes());
    assert!(peak > 0);
    assert!(
        arena as f64 <= 1.1 * peak as f64,
        "arena {arena} bytes exceeds 1.1 x peak live {peak}"
    );
}

fn smof_tests_choice(name: &str) -> smof::KernelChoice {
    smof::kernels::KernelTable::choice_for_name(name).expect("every supported table has a choice")
}
