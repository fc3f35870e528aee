//! ONNX external data: tensors whose bytes live in a file beside the model (PyTorch writes
//! `model.onnx.data` for its weights with `torch.onnx.export(..., external_data=True)`, and
//! `onnx.save_model(..., save_as_external_data=True)` does the same).
//!
//! [`load`] reads every such tensor's bytes into its `raw_data`, so the rest of the importer
//! sees an ordinary model. A tensor's `external_data` entries name the file (`location`,
//! relative to the model's folder), and optionally the byte `offset` and `length` in it
//! (the rest of the file when `length` is absent). A location may not leave the model's
//! folder (an absolute path or a `..` component), and a range must lie inside its file.

use super::proto::{GraphProto, ModelProto, TensorProto};
use crate::convert::io_err;
use crate::error::{Error, Result};
use std::collections::hash_map::{Entry, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Whether `t` keeps its data outside the model file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(1) || !t.external_data.is_empty()
}

/// Reads the external data of every tensor of `model` (initializers, tensor attributes,
/// subgraphs) from files in `dir` into the tensors themselves. Returns how many tensors
/// were read.
pub fn load(model: &mut ModelProto, dir: &Path) -> Result<usize> {
    let mut files = Files {
        dir,
        open: HashMap::new(),
    };
    let mut count = 0;
    if let Some(g) = model.graph.as_mut() {
        load_graph(g, &mut files, &mut count)?;
    }
    Ok(count)
}

/// The data files opened so far, by location.
struct Files<'a> {
    dir: &'a Path,
    open: HashMap<String, (File, u64)>,
}

fn load_graph(g: &mut GraphProto, files: &mut Files, count: &mut usize) -> Result<()> {
    for t in &mut g.initializer {
        load_tensor(t, files, count)?;
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                load_tensor(t, files, count)?;
            }
            for t in &mut a.tensors {
                load_tensor(t, files, count)?;
            }
            if let Some(sub) = a.g.as_mut() {
                load_graph(sub, files, count)?;
            }
            for sub in &mut a.graphs {
                load_graph(sub, files, count)?;
            }
        }
    }
    Ok(())
}

fn load_tensor(t: &mut TensorProto, files: &mut Files, count: &mut usize) -> Result<()> {
    if !is_external(t) {
        return Ok(());
    }
    let name = t.name.clone().unwrap_or_default();
    let bad = |what: String| Error::model(format!("tensor {name}: external data {what}"));
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        let value = e.value.as_deref().unwrap_or("");
        let number = || {
            value.parse::<u64>().map_err(|_| {
                bad(format!(
                    "has a bad {}: '{value}'",
                    e.key.as_deref().unwrap_or("")
                ))
            })
        };
        match e.key.as_deref() {
            Some("location") => location = Some(value.to_string()),
            Some("offset") => offset = number()?,
            Some("length") => length = Some(number()?),
            // "checksum" (an optional SHA-1) and unknown keys are not needed to read the data.
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad("names no location".into()))?;
    let path = inside(files.dir, &location).ok_or_else(|| {
        bad(format!(
            "location '{location}' leaves the model's folder (only a relative path without '..' is read)"
        ))
    })?;
    let (file, file_len) = match files.open.entry(location.clone()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let file = File::open(&path).map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            e.insert((file, len))
        }
    };
    let length = length.unwrap_or(file_len.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > *file_len) {
        return Err(bad(format!(
            "range {offset}+{length} is outside '{location}' ({file_len} bytes)"
        )));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(length as usize)
        .map_err(|_| bad(format!("of {length} bytes cannot be allocated")))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
    file.take(length)
        .read_to_end(&mut bytes)
        .map_err(io_err(&path))?;
    if bytes.len() as u64 != length {
        return Err(bad(format!("'{location}' ended early")));
    }
    t.raw_data = Some(bytes);
    t.external_data.clear();
    t.data_location = Some(0);
    *count += 1;
    Ok(())
}

/// `dir/location` when `location` is a relative path that stays inside `dir`.
fn inside(dir: &Path, location: &str) -> Option<PathBuf> {
    let rel = Path::new(location);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (plain && !location.is_empty()).then(|| dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{NodeProto, StringStringEntryProto};

    fn entry(k: &str, v: &str) -> StringStringEntryProto {
        StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    fn external(name: &str, entries: &[(&str, &str)]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: vec![2],
            data_type: Some(1),
            data_location: Some(1),
            external_data: entries.iter().map(|(k, v)| entry(k, v)).collect(),
            ..Default::default()
        }
    }

    fn model(tensors: Vec<TensorProto>, constant: Option<TensorProto>) -> ModelProto {
        let node = constant.map(|t| NodeProto {
            op_type: Some("Constant".into()),
            attribute: vec![crate::onnx::proto::AttributeProto {
                name: Some("value".into()),
                t: Some(t),
                ..Default::default()
            }],
            ..Default::default()
        });
        ModelProto {
            graph: Some(GraphProto {
                initializer: tensors,
                node: node.into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A folder of its own for test `name`, holding `w.data` (six f32 values).
    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("smof-external-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(d.join("w.data"), bytes).unwrap();
        d
    }

    #[test]
    fn reads_offsets_lengths_and_constants() {
        let d = dir("read");
        let mut m = model(
            vec![
                external(
                    "a",
                    &[("location", "w.data"), ("offset", "8"), ("length", "8")],
                ),
                external("b", &[("location", "./w.data"), ("offset", "16")]),
            ],
            Some(external("c", &[("location", "w.data"), ("length", "8")])),
        );
        assert_eq!(load(&mut m, &d).unwrap(), 3);
        let g = m.graph.as_ref().unwrap();
        let value = |t: &TensorProto| crate::onnx::tensor::read_tensor(t, "t").unwrap().to_f32();
        assert_eq!(value(&g.initializer[0]), [3.0, 4.0]);
        assert_eq!(value(&g.initializer[1]), [5.0, 6.0]);
        assert_eq!(
            value(g.node[0].attribute[0].t.as_ref().unwrap()),
            [1.0, 2.0]
        );
    }

    #[test]
    fn rejects_bad_locations_and_ranges() {
        let d = dir("bad");
        for (entries, want) in [
            (vec![("location", "../w.data")], "leaves the model's folder"),
            (
                vec![("location", "/etc/passwd")],
                "leaves the model's folder",
            ),
            (vec![("offset", "0")], "no location"),
            (
                vec![("location", "w.data"), ("offset", "20"), ("length", "8")],
                "outside",
            ),
            (vec![("location", "w.data"), ("offset", "x")], "bad offset"),
            (
                vec![
                    ("location", "w.data"),
                    ("offset", "18446744073709551615"),
                    ("length", "8"),
                ],
                "outside",
            ),
            (vec![("location", "missing.data")], "missing.data"),
        ] {
            let mut m = model(vec![external("w", &entries)], None);
            let e = load(&mut m, &d).unwrap_err().to_string();
            assert!(
                e.contains(want) && (e.contains("tensor w") || e.contains("missing")),
                "{e}"
            );
        }
    }
}
