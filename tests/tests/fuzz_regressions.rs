//! Inputs found by the fuzz targets in `fuzz/` (see `scripts/fuzz.sh`), replayed in the
//! normal test suite: each must give a result or an error, never a panic.
//!
//! Every file under `tests/data/fuzz/TARGET/` (inputs that once crashed a target, kept after
//! the fix) and under `fuzz/seeds/TARGET/` (the seed corpora) goes through the same steps as
//! the fuzz target `TARGET`:
//! - `smof_open`: `Model::from_bytes`, a session and one run, as given and with the
//!   checksums recomputed;
//! - `onnx_import`: `smof_converter::convert`, and the result must load;
//! - `npy_parse`: `smof_converter::npy::parse`, and the shape must match the data.

use smof::Model;
use smof_open_harness::{open_and_run, smof_open};
use std::path::{Path, PathBuf};

/// The fuzz target's own harness.
#[path = "../../fuzz/harness/smof_open.rs"]
mod smof_open_harness;

fn onnx_import(data: &[u8]) {
    if let Ok(c) = smof_converter::convert(data, &smof_converter::ConvertOptions::default()) {
        Model::from_bytes(&c.bytes).expect("the converter's output must load");
    }
}

fn npy_parse(data: &[u8]) {
    if let Ok(a) = smof_converter::npy::parse(data) {
        let count: usize = a.shape.iter().product();
        assert_eq!(count, a.data.len(), "shape {:?}", a.shape);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `tests/data/fuzz/TARGET` and `fuzz/seeds/TARGET`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        root().join("tests/data/fuzz").join(target),
        root().join("fuzz/seeds").join(target),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

/// Replays every stored input of `target` through `f`, naming the file that panics.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("{target}: {} panicked", path.display());
        }
    }
    files.len()
}

#[test]
fn smof_open_inputs_never_panic() {
    let n = replay("smof_open", smof_open);
    assert!(n > 0, "no smof_open inputs found");
    // The seeds are valid models: they must open, plan and run.
    for path in inputs("smof_open")
        .iter()
        .filter(|p| p.starts_with(root().join("fuzz/seeds")))
    {
        assert!(
            open_and_run(&std::fs::read(path).unwrap()),
            "{}",
            path.display()
        );
    }
}

#[test]
fn onnx_import_inputs_never_panic() {
    assert!(replay("onnx_import", onnx_import) > 0);
}

/// `onnx_import` crash (tests/data/fuzz/onnx_import/crash-008f…): a Transpose node with no
/// inputs after a Reshape made the channel-shuffle pattern index its missing first input.
#[test]
fn a_node_without_its_inputs_is_a_clear_error() {
    let data = std::fs::read(
        root().join("tests/data/fuzz/onnx_import/crash-008f482eafd9ca0d226a15c6eb46b12994433c61"),
    )
    .unwrap();
    let err = smof_converter::convert(&data, &smof_converter::ConvertOptions::default())
        .map(|_| ())
        .expect_err("a Transpose without inputs must not convert")
        .to_string();
    assert!(
        err.contains("Transpose") && err.contains("input 0 is missing"),
        "{err}"
    );
}

#[test]
fn npy_parse_inputs_never_panic() {
    assert!(replay("npy_parse", npy_parse) > 0);
}

/// `npy_parse` timeouts (tests/data/fuzz/npy_parse/timeout-*): headers of nested brackets,
/// with or without non-ASCII bytes, made npyz's Python-literal header parser take time
/// exponential in the nesting (30 ms a run for a 130-byte ASCII header 4 deep, 44 ms with
/// non-ASCII bytes, over a second for 21 levels; more on a loaded machine). The reader now
/// parses the header with its own strict, linear-time parser of the dict numpy writes, and
/// refuses all of these as malformed.
#[test]
fn npy_hostile_headers_are_refused_by_a_linear_parser() {
    let found = inputs("npy_parse");
    let found: Vec<_> = found
        .iter()
        .filter(|p| p.starts_with(root().join("tests/data/fuzz")))
        .collect();
    assert!(found.len() >= 3, "{found:?}");
    for path in found {
        let e = smof_converter::npy::parse(&std::fs::read(path).unwrap())
            .err()
            .unwrap_or_else(|| panic!("{} must be refused", path.display()));
        assert!(format!("{e:#}").contains(".npy header"), "{e:#}");
    }

    let npy = |header: &str, data: &[u8]| -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    };
    let four: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // 200 levels of brackets: an exponential parser would never return.
    let deep = format!("{{'descr': '<f4', 'x': {}", "[".repeat(200));
    assert!(smof_converter::npy::parse(&npy(&deep, &four)).is_err());
    // 10001 header bytes (with the 10-byte prefix): over numpy's limit.
    let long = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }}{}\n",
        " ".repeat(9933)
    );
    assert_eq!(long.len() + 10, 10_001);
    let e = smof_converter::npy::parse(&npy(&long, &four))
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("limit"), "{e:#}");

    // Headers as numpy (and Python 2 numpy) write them read, in any key order and spacing.
    for ok in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }           \n",
        "{'descr':'<f4','fortran_order':False,'shape':(2,2)}\n",
        "{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }\n",
    ] {
        let a =
            smof_converter::npy::parse(&npy(ok, &four)).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0], "{ok}");
        assert_eq!(a.shape.iter().product::<usize>(), 4, "{ok}");
    }
    // Anything else is refused with a message.
    for (bad, why) in [
        ("{'descr': '<f4', 'shape': (4,), }", "no 'fortran_order'"),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
            "repeats",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}",
            "unknown key",
        ),
        (
            "{'descr': '>f4', 'fortran_order': False, 'shape': (4,)}",
            "unsupported dtype",
        ),
        (
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}",
            "Fortran",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}",
            "dimension",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x",
            "after its dict",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (5,)}",
            "holds fewer",
        ),
        (
            "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (4,)}",
            "escapes",
        ),
    ] {
        let e = smof_converter::npy::parse(&npy(bad, &four))
            .err()
            .unwrap_or_else(|| panic!("{bad} must be refused"));
        assert!(format!("{e:#}").contains(why), "{bad}: {e:#}");
    }
}
