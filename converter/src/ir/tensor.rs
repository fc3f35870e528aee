//! Constant tensors: weights, and the small integer tensors of shape arithmetic.

/// Largest number of elements the converter materialises for one constant; a guard against
/// hostile models (e.g. a `ConstantOfShape` asking for 2^40 elements).
pub const MAX_CONST_ELEMS: usize = 1 << 28;

/// Element data of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Floating point (float16 and double are converted to f32 on import).
    F32(Vec<f32>),
    /// Integers and booleans (int8..int64, uint8..uint32, bool), widened to i64.
    I64(Vec<i64>),
}

/// A constant tensor, row-major over `dims`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstTensor {
    /// Dimensions; empty for a scalar.
    pub dims: Vec<usize>,
    /// Elements; their count is the product of `dims`.
    pub data: Data,
}

/// Product of `dims`, or `None` on overflow or above [`MAX_CONST_ELEMS`].
pub fn checked_elems(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_CONST_ELEMS)
}

impl ConstTensor {
    /// An f32 tensor. The caller guarantees `data.len()` is the product of `dims`.
    pub fn f32(dims: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        ConstTensor {
            dims,
            data: Data::F32(data),
        }
    }
    /// An i64 tensor. The caller guarantees `data.len()` is the product of `dims`.
    pub fn i64(dims: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        ConstTensor {
            dims,
            data: Data::I64(data),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True for floating point data.
    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F32(_))
    }
    /// The elements as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The elements as i64 (floats truncated toward zero, as ONNX `Cast` does).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }
    /// The integer elements, or `None` for float data.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }
    /// The single element as f32, when the tensor has exactly one.
    pub fn scalar_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }
    /// Same data with other dims of the same element count.
    pub fn reshaped(&self, dims: Vec<usize>) -> Option<ConstTensor> {
        (dims.iter().product::<usize>() == self.len()).then(|| ConstTensor {
            dims,
            data: self.data.clone(),
        })
    }
    /// Picks elements by flat index (used by gather/slice/broadcast).
    pub fn pick(&self, dims: Vec<usize>, idx: &[usize]) -> ConstTensor {
        let data = match &self.data {
            Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
        };
        ConstTensor { dims, data }
    }
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy-style broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// For each element of the broadcast shape `out`, the flat index into a tensor of `dims`.
pub fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let st = strides(dims);
    let off = out.len() - dims.len();
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; out.len()];
    for _ in 0..n {
        let mut flat = 0;
        for (k, &d) in dims.iter().enumerate() {
            if d != 1 {
                flat += pos[off + k] * st[k];
            }
        }
        idx.push(flat);
        for k in (0..out.len()).rev() {
            pos[k] += 1;
            if pos[k] < out[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    idx
}

/// Elementwise arithmetic of constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integer division truncates; division by zero is an error).
    Div,
}

/// Applies `op` with numpy broadcasting. Integer operands stay integers.
pub fn binary(op: BinOp, a: &ConstTensor, b: &ConstTensor) -> Result<ConstTensor, String> {
    let out = broadcast_shape(&a.dims, &b.dims)
        .ok_or_else(|| format!("cannot broadcast {:?} with {:?}", a.dims, b.dims))?;
    checked_elems(&out).ok_or("result too large")?;
    let ia = broadcast_index(&a.dims, &out);
    let ib = broadcast_index(&b.dims, &out);
    match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => {
            let mut v = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(&ib) {
                let (p, q) = (x[i], y[j]);
                v.push(match op {
                    BinOp::Add => p.wrapping_add(q),
                    BinOp::Sub => p.wrapping_sub(q),
                    BinOp::Mul => p.wrapping_mul(q),
                    BinOp::Div => p.checked_div(q).ok_or("integer division by zero")?,
                });
            }
            Ok(ConstTensor::i64(out, v))
        }
        _ => {
            let (x, y) = (a.to_f32(), b.to_f32());
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        BinOp::Add => p + q,
                        BinOp::Sub => p - q,
                        BinOp::Mul => p * q,
                        BinOp::Div => p / q,
                    }
                })
                .collect();
            Ok(ConstTensor::f32(out, v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 4]), Some(vec![2, 4]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        let a = ConstTensor::i64(vec![2, 1], vec![10, 20]);
        let b = ConstTensor::i64(vec![3], vec![1, 2, 3]);
        let c = binary(BinOp::Add, &a, &b).unwrap();
        assert_eq!(c.dims, vec![2, 3]);
        assert_eq!(c.ints().unwrap(), &[11, 12, 13, 21, 22, 23]);
        assert!(binary(BinOp::Div, &a, &ConstTensor::i64(vec![], vec![0])).is_err());
        let d = binary(BinOp::Div, &a, &ConstTensor::i64(vec![], vec![3])).unwrap();
        assert_eq!(d.ints().unwrap(), &[3, 6]);
        let f = binary(BinOp::Mul, &a, &ConstTensor::f32(vec![], vec![0.5])).unwrap();
        assert_eq!(f.to_f32(), vec![5.0, 10.0]);
    }
}
