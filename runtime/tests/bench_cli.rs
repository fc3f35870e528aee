//! `smof-bench` end to end on a small model written with the runtime's own format writer.

use smof::graph::*;
use std::process::{Command, Stdio};

fn tiny_model() -> Vec<u8> {
    let conv = Conv {
        in_c: 3,
        out_c: 8,
        groups: 1,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        pads: [1, 1, 1, 1],
        weight: 0,
        bias: Some(1),
        act: Activation::Relu,
    };
    let graph = Graph {
        meta: Metadata {
            producer: "test".into(),
            producer_version: "0".into(),
            model_name: "tiny".into(),
            description: String::new(),
        },
        tensors: vec![
            TensorDesc {
                name: "x".into(),
                shape: Shape4::new(1, 16, 16, 3),
            },
            TensorDesc {
                name: "c".into(),
                shape: Shape4::new(1, 16, 16, 8),
            },
            TensorDesc {
                name: "y".into(),
                shape: Shape4::new(1, 1, 1, 8),
            },
        ],
        weights: vec![
            WeightDesc {
                name: "w".into(),
                dtype: DType::F32,
                layout: Layout::Canonical,
                dims: vec![8, 3, 3, 3],
                offset: 0,
                byte_len: 0,
            },
            WeightDesc {
                name: "b".into(),
                dtype: DType::F32,
                layout: Layout::Canonical,
                dims: vec![8],
                offset: 0,
                byte_len: 0,
            },
        ],
        nodes: vec![
            Node {
                name: "conv".into(),
                op: Op::Conv(conv),
                inputs: vec![0],
                outputs: vec![1],
            },
            Node {
                name: "gap".into(),
                op: Op::GlobalAvgPool,
                inputs: vec![1],
                outputs: vec![2],
            },
        ],
        inputs: vec![IoDesc {
            name: "x".into(),
            tensor: 0,
            dims: vec![1, 3, 16, 16],
        }],
        outputs: vec![IoDesc {
            name: "y".into(),
            tensor: 2,
            dims: vec![1, 8],
        }],
    };
    let w: Vec<u8> = (0..8 * 27)
        .flat_map(|i| ((i % 7) as f32 * 0.1 - 0.3).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..8)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    smof::format::write(&graph, &[&w, &b]).expect("write tiny model")
}

#[test]
fn bench_prints_stats_and_json() {
    let dir = std::env::temp_dir().join(format!("smof-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.smof");
    std::fs::write(&path, tiny_model()).unwrap();
    let bin = env!("CARGO_BIN_EXE_smof-bench");

    let o = Command::new(bin)
        .arg(&path)
        .args(["--loops", "5", "--warmup", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for key in [
        "min =",
        "median =",
        "mean =",
        "max =",
        "threads = 1",
        "loops = 5",
    ] {
        assert!(text.contains(key), "missing {key:?} in {text}");
    }

    let o = Command::new(bin)
        .arg(&path)
        .args(["--loops", "4", "--json", "--profile"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for key in [
        "\"median_ms\":",
        "\"min_ms\":",
        "\"loops\":4",
        "\"profile\":[",
        "\"gflops\":",
    ] {
        assert!(text.contains(key), "missing {key} in {text}");
    }

    // A folder benches every model in it.
    std::fs::write(dir.join("tiny2.smof"), tiny_model()).unwrap();
    let o = Command::new(bin)
        .arg(&dir)
        .args(["--loops", "2", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);

    // Bad input: a corrupt file and a bad flag exit non-zero with a message.
    let bad = dir.join("bad.smof");
    std::fs::write(&bad, b"SMOF but not really").unwrap();
    let o = Command::new(bin).arg(&bad).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("corrupt"));
    let o = Command::new(bin)
        .arg(&path)
        .args(["--loops", "many"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn bench_survives_a_closed_stdout() {
    let dir = std::env::temp_dir().join(format!("smof-bench-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.smof");
    std::fs::write(&path, tiny_model()).unwrap();
    // The reader is gone before the first line (`smof-bench M --profile | head -1`): the
    // output ends quietly and the run still succeeds.
    let mut child = Command::new(env!("CARGO_BIN_EXE_smof-bench"))
        .arg(&path)
        .args(["--loops", "2", "--profile"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{err}");
}

#[test]
fn bench_plans_for_another_input_shape() {
    let dir = std::env::temp_dir().join(format!("smof-bench-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.smof");
    std::fs::write(&path, tiny_model()).unwrap();
    let bench = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_smof-bench"))
            .arg(&path)
            .args(["--loops", "2", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let gflop = |o: &std::process::Output| -> f64 {
        let text = String::from_utf8_lossy(&o.stdout);
        let v = text.split("\"gflop\":").nth(1).expect("gflop in the JSON");
        v[..v.find(',').unwrap()].parse().unwrap()
    };
    let own = bench(&[]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert!(String::from_utf8_lossy(&own.stdout).contains("\"input_dims\":[[1, 3, 16, 16]]"));
    // A batch of two 32x32 images: eight times the conv's FLOPs.
    let big = bench(&["--input-shape", "2,3,32,32"]);
    assert!(
        big.status.success(),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    assert!(String::from_utf8_lossy(&big.stdout).contains("\"input_dims\":[[2, 3, 32, 32]]"));
    let ratio = gflop(&big) / gflop(&own);
    assert!((7.0..9.0).contains(&ratio), "FLOPs ratio {ratio}");
    // A shape the conv cannot take, and one that is not a shape.
    for (shape, want) in [("1,4,16,16", "channels"), ("1,3,x,16", "not a shape")] {
        let o = bench(&["--input-shape", shape]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{shape}: {err}");
    }
}
