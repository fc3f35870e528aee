//! Public entry points: ONNX bytes or file in, `.smof` out.

use crate::error::{Error, Result};
use crate::lower::{lower, LowerOptions};
use crate::passes::{self, PassReport};
use crate::prune::{self, PruneOptions, PruneReport};
use smof::graph::Graph;
use smof::KernelChoice;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options of a conversion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConvertOptions {
    /// One NCHW (or `[N, F]`) shape per graph input; empty to use the shapes the model
    /// declares. Needed when the model has symbolic dims; may also change the batch.
    pub input_shapes: Vec<Vec<usize>>,
    /// Store conv and fully connected weights as f16 (vectors stay f32).
    pub fp16: bool,
    /// Kernel table to pack the weights for; `Auto` is the host's.
    pub kernels: KernelChoice,
    /// Model name for the metadata; the ONNX graph name when `None`.
    pub model_name: Option<String>,
    /// SMOF pruning. The default removes only kernel rings that are already all zero,
    /// which never changes the outputs.
    pub prune: PruneOptions,
    /// The folder that the model's external data locations are relative to (the folder of
    /// the `.onnx` file, where PyTorch writes `model.onnx.data`). [`convert_file`] uses the
    /// input file's folder when this is `None`; [`convert`] of bytes then rejects external
    /// data.
    pub external_data_dir: Option<PathBuf>,
}

/// Node counts along the pipeline, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Nodes of the ONNX graph.
    pub onnx_nodes: usize,
    /// IR nodes after import (constants and shape arithmetic folded).
    pub imported_nodes: usize,
    /// IR nodes after the passes.
    pub optimized_nodes: usize,
    /// Nodes of the runtime graph (aliases removed).
    pub runtime_nodes: usize,
    /// What each pass did.
    pub passes: Vec<PassReport>,
}

/// A converted model before serialisation.
#[derive(Clone, Debug)]
pub struct Lowered {
    /// The runtime graph, validated.
    pub graph: Graph,
    /// `weight_data[i]` holds the bytes of `graph.weights[i]` in its dtype and layout.
    pub weight_data: Vec<Vec<u8>>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Node counts.
    pub stats: Stats,
    /// What pruning did.
    pub prune: PruneReport,
}

/// A converted model.
#[derive(Clone, Debug)]
pub struct Converted {
    /// The runtime graph, as read back from `bytes` (weight offsets are file positions).
    pub graph: Graph,
    /// The `.smof` file.
    pub bytes: Vec<u8>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Node counts.
    pub stats: Stats,
    /// What pruning did.
    pub prune: PruneReport,
}

/// Converts ONNX bytes to a validated runtime graph and its packed weights, without
/// serialising them.
pub fn convert_to_graph(onnx: &[u8], opts: &ConvertOptions) -> Result<Lowered> {
    lower_in(onnx, opts, opts.external_data_dir.as_deref())
}

/// [`convert_to_graph`] with external data read from `external_dir`.
fn lower_in(onnx: &[u8], opts: &ConvertOptions, external_dir: Option<&Path>) -> Result<Lowered> {
    // Packing needs only the table's layout rule, which every build has for every table.
    let table = opts.kernels.resolve();
    let imported = crate::onnx::import_with(onnx, &opts.input_shapes, external_dir)?;
    let mut g = imported.graph;
    let imported_nodes = g.nodes.len();
    let mut reports = passes::run_all(&mut g)?;
    let mut warnings = Vec::new();
    if let Some(lut) = &opts.prune.lut {
        for p in lut.check_for(&g, table.name())? {
            warnings.push(format!("latency table used anyway: {p}"));
        }
    }
    let prune_report = prune::prune(&mut g, &opts.prune)?;
    reports.extend(passes::run_after_prune(&mut g)?);
    let optimized_nodes = g.nodes.len();
    let name = opts.model_name.clone().unwrap_or_else(|| {
        if imported.info.graph_name.is_empty() {
            "model".into()
        } else {
            imported.info.graph_name.clone()
        }
    });
    let lowered = lower(
        &g,
        &imported.info,
        &LowerOptions {
            table,
            fp16: opts.fp16,
            model_name: &name,
        },
    )?;
    let stats = Stats {
        onnx_nodes: imported.info.onnx_nodes,
        imported_nodes,
        optimized_nodes,
        runtime_nodes: lowered.graph.nodes.len(),
        passes: reports,
    };
    Ok(Lowered {
        graph: lowered.graph,
        weight_data: lowered.weight_data,
        warnings: imported
            .warnings
            .into_iter()
            .chain(warnings)
            .chain(lowered.warnings)
            .collect(),
        stats,
        prune: prune_report,
    })
}

/// Converts an ONNX model (the bytes of a `.onnx` file) into a `.smof` file in memory.
pub fn convert(onnx: &[u8], opts: &ConvertOptions) -> Result<Converted> {
    convert_in(onnx, opts, opts.external_data_dir.as_deref())
}

/// [`convert`] with external data read from `external_dir`.
fn convert_in(
    onnx: &[u8],
    opts: &ConvertOptions,
    external_dir: Option<&Path>,
) -> Result<Converted> {
    let l = lower_in(onnx, opts, external_dir)?;
    let refs: Vec<&[u8]> = l.weight_data.iter().map(Vec::as_slice).collect();
    let bytes = smof::format::write(&l.graph, &refs)?;
    // Read the file back: checks the writer's output and yields the final weight offsets.
    let graph = smof::format::read(&bytes, &smof::format::ReadOptions::default())?;
    Ok(Converted {
        graph,
        bytes,
        warnings: l.warnings,
        stats: l.stats,
        prune: l.prune,
    })
}

/// [`Error::Io`] of `path`, for `map_err`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A key identifying the file `p` names: its device and inode on Unix when it exists (so a
/// hard link matches too), else its absolute, symlink-resolved path (also for a file that
/// does not exist yet).
fn file_key(p: &Path) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        // A hard link to the input resolves to another path but is the same file.
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(p) {
            return Some(PathBuf::from(format!("/dev/{}/inode/{}", m.dev(), m.ino())));
        }
    }
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(parent.canonicalize().ok()?.join(p.file_name()?))
}

/// Converts the ONNX file `input` and writes the `.smof` file `output` atomically (a
/// temporary file in the same directory, then a rename): `output` is either left untouched
/// or replaced by the complete file. Refuses to write over `input`.
pub fn convert_file(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<Converted> {
    if file_key(input).is_some_and(|i| Some(i) == file_key(output)) {
        return Err(Error::Options(format!(
            "the output {} is the input file; refusing to overwrite it",
            output.display()
        )));
    }
    let onnx = std::fs::read(input).map_err(io_err(input))?;
    let dir = match (&opts.external_data_dir, input.parent()) {
        (Some(d), _) => d.as_path(),
        (None, Some(p)) if !p.as_os_str().is_empty() => p,
        (None, _) => Path::new("."),
    };
    let converted = convert_in(&onnx, opts, Some(dir))?;
    let file_name = output.file_name().ok_or_else(|| {
        Error::Options(format!(
            "the output {} is not a file path",
            output.display()
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = output.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&converted.bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, output)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(output)(e));
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_model(name: &str) -> Option<Vec<u8>> {
        let path = format!(
            "{}/../../shared/models/{name}.onnx",
            env!("CARGO_MANIFEST_DIR")
        );
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(_) => {
                println!("NOT RUN: {path} missing");
                None
            }
        }
    }

    /// Converts a shared model, checks the graph, runs it with the runtime and compares with
    /// the IR reference evaluator.
    fn shared(name: &str, expect_nodes: usize) {
        let Some(bytes) = shared_model(name) else {
            return;
        };
        let opts = ConvertOptions::default();
        let l = convert_to_graph(&bytes, &opts).expect("convert_to_graph");
        l.graph.validate().expect("validate");
        println!("{name}: {:?}", l.stats);
        assert_eq!(l.stats.runtime_nodes, expect_nodes, "{name}");
        assert_eq!(l.graph.meta.producer, "smof-converter");
        assert!(
            l.graph.meta.description.contains("opset 17"),
            "{}",
            l.graph.meta.description
        );

        let c = convert(&bytes, &opts).expect("convert");
        let model = smof::Model::from_bytes(&c.bytes).expect("load");
        let mut s = smof::Session::new(&model, &smof::SessionOptions::default()).expect("session");
        let imported = crate::onnx::import(&bytes, &[]).expect("import");
        let n: usize = imported.graph.inputs[0].dims.iter().product();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        s.run(&[&x]).expect("run");
        let want = crate::ir::eval::eval(&imported.graph, &[&x]);
        let got = s.output(0);
        let max = want[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want[0])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("{name}: max |err| {err:e} over max |y| {max}");
        assert!(err <= 1e-4 * max, "{name}: error {err} vs {max}");
    }

    #[test]
    fn shared_resnet18() {
        shared("resnet18", 23);
    }
    #[test]
    fn shared_mobilenet_v2() {
        shared("mobilenet_v2", 54);
    }
    #[test]
    fn shared_mobilenet_v2_backbone() {
        shared("mobilenet_v2_imagenet_backbone", 53);
    }
    #[test]
    fn shared_squeezenet1_1() {
        shared("squeezenet1_1", 38);
    }

    #[test]
    fn convert_file_is_atomic_and_refuses_its_input() {
        let dir = std::env::temp_dir().join(format!("smof-convert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = crate::onnx::builder::ModelBuilder::new(17);
        b.input("x", &[1, 3]).output("y");
        b.node("Relu", &["x"], &["y"], vec![]);
        let input = dir.join("m.onnx");
        std::fs::write(&input, b.bytes()).unwrap();
        let opts = ConvertOptions::default();
        let e = convert_file(&input, &input, &opts).unwrap_err();
        assert!(matches!(e, Error::Options(_)), "{e}");
        let e = convert_file(&input, &dir.join(".").join("m.onnx"), &opts).unwrap_err();
        assert!(matches!(e, Error::Options(_)), "{e}");
        let link = dir.join("link.onnx");
        std::fs::hard_link(&input, &link).unwrap();
        let e = convert_file(&input, &link, &opts).unwrap_err();
        assert!(matches!(e, Error::Options(_)), "{e}");
        std::fs::remove_file(&link).unwrap();
        assert_eq!(std::fs::read(&input).unwrap(), b.bytes());

        let out = dir.join("m.smof");
        let c = convert_file(&input, &out, &opts).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), c.bytes);
        // A failed conversion leaves the previous output untouched and no temp file.
        std::fs::write(&input, b"garbage").unwrap();
        assert!(convert_file(&input, &out, &opts).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), c.bytes);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        // Missing input: an Io error naming the file.
        let e = convert_file(&dir.join("none.onnx"), &out, &opts).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
