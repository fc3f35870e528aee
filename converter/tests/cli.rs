//! The `smof` command line end to end: convert, inspect, run, and a non-zero exit with a
//! clear message for every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn smof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smof"))
        .args(args)
        .output()
        .expect("run smof")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smof-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bundled() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/mobilenet_v2_imagenet_backbone.onnx"
    )
}

/// Writes a C-order little-endian f32 `.npy` (format 1.0).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// `smof [global...] run MODEL --input X --output Y`.
fn smof_run(global: &[&str], model: &Path, x: &Path, y: &Path) -> Output {
    let mut args = global.to_vec();
    args.extend([
        "run",
        model.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    smof(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn converted() -> PathBuf {
    let out = tmp("mnv2.smof");
    let o = smof(&["convert", bundled(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "convert failed: {}", stderr(&o));
    out
}

#[test]
fn convert_inspect_run() {
    let model = converted();
    let o = smof(&["inspect", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ConvDw") && text.contains("arena"), "{text}");

    let o = smof(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect --json is JSON");
    for key in ["flops", "params", "weight_bytes", "arena_bytes"] {
        assert!(j[key].as_u64().unwrap_or(0) > 0, "{key} missing in {j}");
    }
    // MobileNetV2 is about 300 M multiply-adds.
    let flops = j["flops"].as_u64().unwrap();
    assert!((550_000_000..700_000_000).contains(&flops), "flops {flops}");

    let x = tmp("x.npy");
    let data: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    write_npy(&x, &[1, 3, 224, 224], &data);
    let y = tmp("y.npy");
    let o = smof_run(&[], &model, &x, &y);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&y).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    // 1 x 1280 f32 after the header.
    assert_eq!((bytes.len() - 128) / 4, 1280, "output size");

    // --no-mmap reads the file into memory: the same result.
    let y2 = tmp("y_copied.npy");
    let o = smof_run(&["--no-mmap"], &model, &x, &y2);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&y2).unwrap(),
        bytes,
        "--no-mmap output differs"
    );
}

/// Runs `smof args` with its standard output going to `out`, which the caller may have closed
/// (a reader that went away, as in `smof inspect M | head -1`).
fn smof_to(args: &[&str], out: Stdio, close: bool) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smof"))
        .args(args)
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smof");
    if close {
        drop(child.stdout.take());
    }
    child.wait_with_output().expect("wait for smof")
}

#[test]
fn output_to_a_closed_pipe_or_a_full_disk_is_no_crash() {
    let model = converted();
    let m = model.to_str().unwrap();
    // The reader is gone before the first line: the output ends quietly, exit 0.
    let o = smof_to(&["inspect", m], Stdio::piped(), true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    // A conversion whose table cannot be printed still writes its model.
    let out = tmp("closed_pipe.smof");
    let _ = std::fs::remove_file(&out);
    let o = smof_to(
        &["convert", bundled(), "-o", out.to_str().unwrap()],
        Stdio::piped(),
        true,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap());
    // Output lost to a full disk is an error, reported once.
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let o = smof_to(&["inspect", m], Stdio::from(full), false);
        assert!(!o.status.success(), "lost output must not exit 0");
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.matches("standard output").count(), 1, "{err}");
    }
}

#[test]
fn bad_inputs_exit_non_zero_with_a_message() {
    let model = converted();

    // Not ONNX.
    let junk = tmp("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf at all \xff\xff\xff").unwrap();
    let o = smof(&[
        "convert",
        junk.to_str().unwrap(),
        "-o",
        tmp("junk.smof").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("error"), "{}", stderr(&o));
    assert!(!tmp("junk.smof").exists(), "no partial output on failure");

    // Missing file.
    let o = smof(&["inspect", tmp("does-not-exist.smof").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does-not-exist"), "{}", stderr(&o));

    // Truncated .smof.
    let bytes = std::fs::read(&model).unwrap();
    let cut = tmp("cut.smof");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = smof(&["inspect", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));

    // Wrong input shape: channels the first conv cannot take (another image size is
    // planned for: `run_plans_for_another_batch_or_image_size`).
    let x = tmp("wrong.npy");
    write_npy(&x, &[1, 2, 32, 32], &vec![0.0; 2 * 32 * 32]);
    let o = smof_run(&[], &model, &x, &tmp("o.npy"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[1, 3, 224, 224]"), "{}", stderr(&o));

    // Not an .npy.
    let o = smof_run(&[], &model, &junk, &tmp("o.npy"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("npy"), "{}", stderr(&o));

    // Converting the bundled model with bad options fails, naming what was wrong where
    // `names` is given.
    let refused = |options: &[&str], names: Option<&str>| {
        let out = tmp("s.smof");
        let mut args = vec!["convert", bundled(), "-o", out.to_str().unwrap()];
        args.extend_from_slice(options);
        let o = smof(&args);
        assert!(!o.status.success(), "{options:?}");
        if let Some(n) = names {
            assert!(stderr(&o).contains(n), "{}", stderr(&o));
        }
    };
    // Bad --input-shape and unknown --target.
    refused(&["--input-shape", "1,3,x,224"], None);
    refused(&["--target", "riscv"], Some("riscv"));
    // An unknown --criterion.
    refused(
        &["--prune", "flops=0.5", "--criterion", "energy"],
        Some("--criterion"),
    );
    // A negative or non-finite --distill-features.
    for w in ["--distill-features=-1", "--distill-features=nan"] {
        refused(&["--prune", "flops=0.5", w], Some("--distill-features"));
    }
    // No worker threads.
    refused(
        &["--prune", "flops=0.5", "--threads", "0"],
        Some("--threads"),
    );
    // --calib-mirror: not on or off, without --calib, or on samples that are not images.
    refused(
        &["--prune", "flops=0.5", "--calib-mirror", "yes"],
        Some("--calib-mirror"),
    );
    refused(
        &["--prune", "flops=0.5", "--calib-mirror", "on"],
        Some("--calib"),
    );
    let flat = tmp("flat.npy");
    write_npy(&flat, &[4, 784], &vec![0.0; 4 * 784]);
    refused(
        &[
            "--prune",
            "flops=0.5",
            "--calib",
            flat.to_str().unwrap(),
            "--calib-mirror",
            "on",
        ],
        Some("mirror images need image samples"),
    );

    // Converting onto its own input is refused.
    let copy = tmp("self.onnx");
    std::fs::copy(bundled(), &copy).unwrap();
    let o = smof(&[
        "convert",
        copy.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(bundled()).unwrap(),
        "input untouched"
    );
}

/// `smof run` on an input of another batch or image size than the model was converted for
/// plans the session for it: a batch of two gives each sample's own output, and a 160x160
/// image gives what the model converted at 160x160 gives. A shape the layers cannot take
/// (other channels) is an error that names both shapes.
#[test]
fn run_plans_for_another_batch_or_image_size() {
    use smof_converter::npy;
    let model = converted();
    let sample = |seed: usize, side: usize| -> Vec<f32> {
        (0..3 * side * side)
            .map(|i| ((i * 7919 + seed * 104_729) % 255) as f32 / 255.0 - 0.5)
            .collect()
    };
    let run = |model: &Path, shape: &[usize], data: &[f32], name: &str| -> npy::Array {
        let (x, y) = (tmp(&format!("{name}_x.npy")), tmp(&format!("{name}_y.npy")));
        write_npy(&x, shape, data);
        let o = smof_run(&[], model, &x, &y);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        npy::read(&y).unwrap()
    };
    let close = |a: &[f32], b: &[f32], what: &str| {
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            a.len() == b.len() && err <= 1e-5 * max,
            "{what}: {err} of {max}"
        );
    };
    let (a, b) = (sample(1, 224), sample(2, 224));
    let both = run(
        &model,
        &[2, 3, 224, 224],
        &[a.clone(), b.clone()].concat(),
        "batch",
    );
    assert_eq!(both.shape, [2, 1280]);
    close(
        &both.data[..1280],
        &run(&model, &[1, 3, 224, 224], &a, "a").data,
        "sample 0",
    );
    close(
        &both.data[1280..],
        &run(&model, &[1, 3, 224, 224], &b, "b").data,
        "sample 1",
    );

    let at160 = tmp("mnv2_160.smof");
    let o = smof(&[
        "convert",
        bundled(),
        "-o",
        at160.to_str().unwrap(),
        "--input-shape",
        "1,3,160,160",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let small = sample(3, 160);
    let planned = run(&model, &[1, 3, 160, 160], &small, "planned");
    assert_eq!(planned.shape, [1, 1280]);
    close(
        &planned.data,
        &run(&at160, &[1, 3, 160, 160], &small, "converted").data,
        "160x160",
    );

    let (x, y) = (tmp("four_channels_x.npy"), tmp("four_channels_y.npy"));
    write_npy(&x, &[1, 4, 32, 32], &vec![0.5; 4 * 32 * 32]);
    let o = smof_run(&[], &model, &x, &y);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("[1, 4, 32, 32]")
            && err.contains("[1, 3, 224, 224]")
            && err.contains("channels"),
        "{err}"
    );
}

/// A model whose weights are in an external data file beside it (as PyTorch and
/// `onnx.save_model(..., save_as_external_data=True)` write them) converts to the same
/// `.smof` as the model with its weights inside, from any working directory; a missing data
/// file is an error that names it.
#[test]
fn external_data_beside_the_model() {
    use prost::Message;
    use smof_converter::onnx::proto::{ModelProto, StringStringEntryProto};
    let mut m = ModelProto::decode(&std::fs::read(bundled()).unwrap()[..]).unwrap();
    let mut data = Vec::new();
    let entry = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    let mut moved = 0;
    for t in &mut m.graph.as_mut().unwrap().initializer {
        let Some(raw) = t.raw_data.take_if(|r| r.len() >= 64) else {
            continue;
        };
        // Aligned like onnx's writer does, so offsets are not all contiguous.
        data.resize(data.len().next_multiple_of(4096), 0);
        t.external_data = vec![
            entry("location", "weights/mnv2.data".into()),
            entry("offset", data.len().to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(1);
        data.extend_from_slice(&raw);
        moved += 1;
    }
    assert!(moved > 50, "{moved} tensors moved out");
    let dir = tmp("external");
    std::fs::create_dir_all(dir.join("weights")).unwrap();
    // The file stem names the model: the same as the bundled file's, for equal bytes.
    let onnx = dir.join("mobilenet_v2_imagenet_backbone.onnx");
    std::fs::write(&onnx, m.encode_to_vec()).unwrap();
    std::fs::write(dir.join("weights/mnv2.data"), &data).unwrap();

    let out = tmp("external.smof");
    let o = Command::new(env!("CARGO_BIN_EXE_smof"))
        .current_dir("/")
        .args([
            "convert",
            onnx.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(converted()).unwrap(),
        "external data converted to other bytes"
    );

    std::fs::remove_file(dir.join("weights/mnv2.data")).unwrap();
    let o = smof(&[
        "convert",
        onnx.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mnv2.data"), "{}", stderr(&o));
}

/// A detector-like model with two named outputs (a 4-D map and a rank-3 `[N, C, L]` head):
/// `smof run` writes the first to `--output` and the other beside it as `STEM.NAME.npy`, each
/// with its ONNX dims and values that agree with each other.
#[test]
fn run_writes_every_output() {
    use smof_converter::onnx::builder::ModelBuilder;
    let mut b = ModelBuilder::new(17);
    b.input("x", &[1, 2, 3, 4]);
    let w: Vec<f32> = (0..2 * 2).map(|i| i as f32 * 0.5 - 0.5).collect();
    b.init("w", &[2, 2, 1, 1], &w);
    b.node("Conv", &["x", "w"], &["feat"], vec![]);
    b.node("Relu", &["feat"], &["map"], vec![]);
    b.init_i64("shape", &[3], &[1, 2, 12]);
    b.node("Reshape", &["feat", "shape"], &["flat"], vec![]);
    b.node("Sigmoid", &["flat"], &["head/scores"], vec![]);
    b.output("map").output("head/scores");
    let onnx = tmp("two_outputs.onnx");
    std::fs::write(&onnx, b.bytes()).unwrap();
    let model = tmp("two_outputs.smof");
    let o = smof(&[
        "convert",
        onnx.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let x = tmp("two_outputs_x.npy");
    let data: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) / 6.0).collect();
    write_npy(&x, &[1, 2, 3, 4], &data);
    let y = tmp("two_outputs_y.npy");
    let o = smof_run(&[], &model, &x, &y);
    assert!(o.status.success(), "{}", stderr(&o));
    let map = smof_converter::npy::read(&y).unwrap();
    let scores = smof_converter::npy::read(&y.with_file_name("two_outputs_y.head_scores.npy"))
        .expect("the second output is written beside the first");
    assert_eq!(map.shape, vec![1, 2, 3, 4]);
    assert_eq!(scores.shape, vec![1, 2, 12]);
    // The conv, computed here: feat[o] = sum_i w[o][i] * x[i].
    for o in 0..2 {
        for p in 0..12 {
            let feat: f32 = (0..2).map(|i| w[o * 2 + i] * data[i * 12 + p]).sum();
            let (m, s) = (map.data[o * 12 + p], scores.data[o * 12 + p]);
            assert!(
                (m - feat.max(0.0)).abs() < 1e-6,
                "map[{o},{p}] {m} vs {feat}"
            );
            let want = 1.0 / (1.0 + (-feat).exp());
            assert!((s - want).abs() < 1e-6, "scores[{o},{p}] {s} vs {want}");
        }
    }
}
