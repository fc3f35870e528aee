//! Reading ONNX `TensorProto`s (initializers and `Constant` values) into [`ConstTensor`]s.

use super::proto::tensor_proto::DataType;
use super::proto::TensorProto;
use crate::error::{Error, Result};
use crate::ir::tensor::{checked_elems, ConstTensor};

/// Name of an ONNX data type code, for messages.
pub fn dtype_name(code: i32) -> String {
    DataType::try_from(code)
        .map_or_else(|_| format!("type {code}"), |t| t.as_str_name().to_string())
}

fn chunks<const N: usize>(raw: &[u8], n: usize, what: &str) -> Result<Vec<[u8; N]>> {
    if raw.len() != n * N {
        return Err(Error::model(format!(
            "{what}: raw_data has {} bytes, {} expected for {n} elements",
            raw.len(),
            n * N
        )));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
        .collect())
}

fn typed<T: Copy>(v: &[T], n: usize, what: &str) -> Result<Vec<T>> {
    if v.len() != n {
        return Err(Error::model(format!(
            "{what}: has {} values, {n} expected",
            v.len()
        )));
    }
    Ok(v.to_vec())
}

/// Reads a tensor. `what` names it in errors.
pub fn read_tensor(t: &TensorProto, what: &str) -> Result<ConstTensor> {
    if super::external::is_external(t) {
        return Err(Error::model(format!(
            "{what} keeps its data in an external file, and no folder to read it from was \
             given: convert the model file (smof convert, convert_file), or set \
             ConvertOptions::external_data_dir"
        )));
    }
    if t.segment.is_some() {
        return Err(Error::model(format!(
            "{what} is a segmented tensor, which is not supported"
        )));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(
            usize::try_from(d)
                .map_err(|_| Error::model(format!("{what} has a negative dimension {d}")))?,
        );
    }
    let n = checked_elems(&dims)
        .ok_or_else(|| Error::model(format!("{what} has too many elements ({:?})", t.dims)))?;
    let code = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let dt = DataType::try_from(code)
        .map_err(|_| Error::model(format!("{what} has unknown data type {code}")))?;
    let f = |v: Vec<f32>| Ok(ConstTensor::f32(dims.clone(), v));
    let i = |v: Vec<i64>| Ok(ConstTensor::i64(dims.clone(), v));
    match dt {
        DataType::Float => match raw {
            Some(r) => f(chunks::<4>(r, n, what)?
                .into_iter()
                .map(f32::from_le_bytes)
                .collect()),
            None => f(typed(&t.float_data, n, what)?),
        },
        DataType::Double => match raw {
            Some(r) => f(chunks::<8>(r, n, what)?
                .into_iter()
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect()),
            None => f(typed(&t.double_data, n, what)?
                .into_iter()
                .map(|x| x as f32)
                .collect()),
        },
        DataType::Float16 | DataType::Bfloat16 => {
            let bits: Vec<u16> = match raw {
                Some(r) => chunks::<2>(r, n, what)?
                    .into_iter()
                    .map(u16::from_le_bytes)
                    .collect(),
                None => typed(&t.int32_data, n, what)?
                    .into_iter()
                    .map(|x| x as u16)
                    .collect(),
            };
            f(bits
                .into_iter()
                .map(|b| {
                    if dt == DataType::Float16 {
                        half::f16::from_bits(b).to_f32()
                    } else {
                        half::bf16::from_bits(b).to_f32()
                    }
                })
                .collect())
        }
        DataType::Int64 => match raw {
            Some(r) => i(chunks::<8>(r, n, what)?
                .into_iter()
                .map(i64::from_le_bytes)
                .collect()),
            None => i(typed(&t.int64_data, n, what)?),
        },
        DataType::Uint64 | DataType::Uint32 => match raw {
            Some(r) if dt == DataType::Uint32 => i(chunks::<4>(r, n, what)?
                .into_iter()
                .map(|b| u32::from_le_bytes(b) as i64)
                .collect()),
            Some(r) => i(chunks::<8>(r, n, what)?
                .into_iter()
                .map(|b| u64::from_le_bytes(b) as i64)
                .collect()),
            None => i(typed(&t.uint64_data, n, what)?
                .into_iter()
                .map(|x| x as i64)
                .collect()),
        },
        DataType::Int32
        | DataType::Int16
        | DataType::Int8
        | DataType::Uint16
        | DataType::Uint8
        | DataType::Bool => match raw {
            Some(r) => i(match dt {
                DataType::Int32 => chunks::<4>(r, n, what)?
                    .into_iter()
                    .map(|b| i32::from_le_bytes(b) as i64)
                    .collect(),
                DataType::Int16 => chunks::<2>(r, n, what)?
                    .into_iter()
                    .map(|b| i16::from_le_bytes(b) as i64)
                    .collect(),
                DataType::Uint16 => chunks::<2>(r, n, what)?
                    .into_iter()
                    .map(|b| u16::from_le_bytes(b) as i64)
                    .collect(),
                DataType::Int8 => chunks::<1>(r, n, what)?
                    .into_iter()
                    .map(|b| b[0] as i8 as i64)
                    .collect(),
                DataType::Bool => chunks::<1>(r, n, what)?
                    .into_iter()
                    .map(|b| (b[0] != 0) as i64)
                    .collect(),
                _ => chunks::<1>(r, n, what)?
                    .into_iter()
                    .map(|b| b[0] as i64)
                    .collect(),
            }),
            None => i(typed(&t.int32_data, n, what)?
                .into_iter()
                .map(|x| x as i64)
                .collect()),
        },
        other => Err(Error::model(format!(
            "{what} has data type {}, which is not supported",
            other.as_str_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raw_and_typed_data() {
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(1),
            raw_data: Some([1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()),
            ..Default::default()
        };
        assert_eq!(read_tensor(&t, "t").unwrap().to_f32(), vec![1.5, -2.0]);
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(7),
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(read_tensor(&t, "t").unwrap().ints().unwrap(), &[1, -1, 7]);
        let t = TensorProto {
            dims: vec![1],
            data_type: Some(10),
            raw_data: Some(half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec()),
            ..Default::default()
        };
        assert_eq!(read_tensor(&t, "t").unwrap().to_f32(), vec![0.5]);
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(11),
            double_data: vec![0.25, 4.0],
            ..Default::default()
        };
        assert_eq!(read_tensor(&t, "t").unwrap().to_f32(), vec![0.25, 4.0]);
    }

    #[test]
    fn rejects_bad_tensors() {
        let short = TensorProto {
            dims: vec![3],
            data_type: Some(1),
            raw_data: Some(vec![0; 8]),
            ..Default::default()
        };
        assert!(read_tensor(&short, "t").is_err());
        let external = TensorProto {
            dims: vec![1],
            data_type: Some(1),
            data_location: Some(1),
            ..Default::default()
        };
        let e = read_tensor(&external, "w").unwrap_err().to_string();
        assert!(e.contains("external"), "{e}");
        let huge = TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: Some(1),
            ..Default::default()
        };
        assert!(read_tensor(&huge, "t").is_err());
        let neg = TensorProto {
            dims: vec![-1],
            data_type: Some(1),
            ..Default::default()
        };
        assert!(read_tensor(&neg, "t").is_err());
    }
}
