//! Weight packing: moving weights between the canonical ONNX order and the packed layouts
//! the kernels read. The converter packs for its target; the runtime repacks at load when a
//! file's layout is not the one its kernel table wants.

use crate::graph::{Layout, WeightDesc};
use crate::kernels::WeightRole;

/// Floats a weight of logical `dims` occupies in `layout`, or `None` when the layout does not
/// apply to weights of that rank.
pub fn packed_len(layout: Layout, dims: &[u32]) -> Option<u64> {
    let d = |i: usize| dims.get(i).map(|&v| v as u64);
    let round = |v: u64, b: u64| v.div_ceil(b) * b;
    match layout {
        Layout::Canonical => Some(dims.iter().map(|&v| v as u64).product()),
        Layout::ConvOcBlock(b) if b > 0 && dims.len() == 4 => {
            Some(round(d(0)?, b as u64) * d(1)? * d(2)? * d(3)?)
        }
        Layout::DwBlock(b) if b > 0 && dims.len() == 4 && dims[1] == 1 => {
            Some(round(d(0)?, b as u64) * d(2)? * d(3)?)
        }
        Layout::FcOcBlock(b) if b > 0 && dims.len() == 2 => Some(round(d(0)?, b as u64) * d(1)?),
        _ => None,
    }
}

/// Whether `layout` may be used for a weight with `role`.
///
/// `ConvOcBlock` is for ungrouped convs, `DwBlock` for depthwise convs, `FcOcBlock` for fully
/// connected weights; `Canonical` fits every role.
pub fn layout_fits(layout: Layout, role: &WeightRole) -> bool {
    match (layout, role) {
        (Layout::Canonical, _) => true,
        (Layout::ConvOcBlock(_), WeightRole::Conv(c)) => c.groups == 1,
        (Layout::DwBlock(_), WeightRole::Conv(c)) => c.is_depthwise(),
        (Layout::FcOcBlock(_), WeightRole::Fc) => true,
        _ => false,
    }
}

/// Packs canonical weights of logical `dims` into `layout`. Pad entries are zero.
///
/// # Panics
/// If `canonical.len()` is not the product of `dims` or the layout does not apply to `dims`;
/// callers validate both first (see [`packed_len`]).
pub fn pack(canonical: &[f32], dims: &[u32], layout: Layout) -> Vec<f32> {
    let total = packed_len(layout, dims).expect("layout applies to dims") as usize;
    assert_eq!(
        canonical.len() as u64,
        dims.iter().map(|&v| v as u64).product::<u64>()
    );
    let mut out = vec![0.0f32; total];
    for_each_slot(dims, layout, |src, dst| out[dst] = canonical[src]);
    out
}

/// Inverse of [`pack`]: recovers the canonical order from a packed buffer.
///
/// # Panics
/// Under the same conditions as [`pack`], or if `packed` is shorter than [`packed_len`].
pub fn unpack(packed: &[f32], dims: &[u32], layout: Layout) -> Vec<f32> {
    let total = packed_len(layout, dims).expect("layout applies to dims") as usize;
    assert!(packed.len() >= total);
    let mut out = vec![0.0f32; dims.iter().map(|&v| v as usize).product()];
    for_each_slot(dims, layout, |src, dst| out[src] = packed[dst]);
    out
}

/// Repacks a weight stored as `from` into `to`.
pub fn repack(data: &[f32], dims: &[u32], from: Layout, to: Layout) -> Vec<f32> {
    if from == to {
        return data[..packed_len(to, dims).expect("layout applies") as usize].to_vec();
    }
    let canonical = if from == Layout::Canonical {
        data.to_vec()
    } else {
        unpack(data, dims, from)
    };
    if to == Layout::Canonical {
        canonical
    } else {
        pack(&canonical, dims, to)
    }
}

/// Calls `f(canonical_index, packed_index)` for every logical element.
fn for_each_slot(dims: &[u32], layout: Layout, mut f: impl FnMut(usize, usize)) {
    let d: Vec<usize> = dims.iter().map(|&v| v as usize).collect();
    match layout {
        Layout::Canonical => (0..d.iter().product()).for_each(|i| f(i, i)),
        Layout::ConvOcBlock(b) => {
            // canonical [OC][IC][KH][KW] -> [OC/b][KH][KW][IC][b]
            let b = b as usize;
            let (oc, ic, kh, kw) = (d[0], d[1], d[2], d[3]);
            for o in 0..oc {
                for i in 0..ic {
                    for y in 0..kh {
                        for x in 0..kw {
                            let src = ((o * ic + i) * kh + y) * kw + x;
                            let dst = ((((o / b) * kh + y) * kw + x) * ic + i) * b + o % b;
                            f(src, dst);
                        }
                    }
                }
            }
        }
        Layout::DwBlock(b) => {
            // canonical [C][1][KH][KW] -> [KH][KW][round_up(C, b)]
            let (c, kh, kw) = (d[0], d[2], d[3]);
            let cp = c.div_ceil(b as usize) * b as usize;
            for ch in 0..c {
                for y in 0..kh {
                    for x in 0..kw {
                        f((ch * kh + y) * kw + x, (y * kw + x) * cp + ch);
                    }
                }
            }
        }
        Layout::FcOcBlock(b) => {
            // canonical [OC][IC] -> [OC/b][IC][b]
            let b = b as usize;
            let (oc, ic) = (d[0], d[1]);
            for o in 0..oc {
                for i in 0..ic {
                    f(o * ic + i, ((o / b) * ic + i) * b + o % b);
                }
            }
        }
    }
}

/// Packed length in bytes of `desc` as stored, for the format reader's checks.
pub fn stored_bytes(desc: &WeightDesc) -> Option<u64> {
    packed_len(desc.layout, &desc.dims)?.checked_mul(desc.dtype.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrips_every_layout() {
        let cases: [(Vec<u32>, Layout); 5] = [
            (vec![5, 3, 3, 2], Layout::ConvOcBlock(4)),
            (vec![9, 1, 3, 3], Layout::DwBlock(8)),
            (vec![7, 11], Layout::FcOcBlock(8)),
            (vec![7, 11], Layout::Canonical),
            (vec![16, 2, 1, 1], Layout::ConvOcBlock(16)),
        ];
        for (dims, layout) in cases {
            let n: usize = dims.iter().map(|&v| v as usize).product();
            let w: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let p = pack(&w, &dims, layout);
            assert_eq!(p.len() as u64, packed_len(layout, &dims).unwrap());
            assert_eq!(unpack(&p, &dims, layout), w, "{layout:?}");
            let nonzero = p.iter().filter(|&&v| v != 0.0).count();
            assert_eq!(nonzero, n, "pad entries must be zero");
        }
    }
}
