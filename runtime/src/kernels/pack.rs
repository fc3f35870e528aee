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
        Layout::WinogradF43(b) if b > 0 && dims.len() == 4 && dims[2] == 3 && dims[3] == 3 => {
            Some(36 * round(d(0)?, b as u64) * d(1)?)
        }
        Layout::WinogradF23(b) if b > 0 && dims.len() == 4 && dims[2] == 3 && dims[3] == 3 => {
            Some(16 * round(d(0)?, b as u64) * d(1)?)
        }
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
        (Layout::WinogradF43(_) | Layout::WinogradF23(_), WeightRole::Conv(c)) => {
            super::plan::winograd_applies(c)
        }
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
    let mut out = vec![0.0f32; total];
    pack_into(canonical, dims, layout, &mut out);
    out
}

/// [`pack`] into `out`, which holds at least [`packed_len`] zeros (the padding stays zero).
///
/// # Panics
/// As [`pack`], or if `out` is shorter than [`packed_len`].
pub fn pack_into(canonical: &[f32], dims: &[u32], layout: Layout, out: &mut [f32]) {
    let total = packed_len(layout, dims).expect("layout applies to dims") as usize;
    assert_eq!(
        canonical.len() as u64,
        dims.iter().map(|&v| v as u64).product::<u64>()
    );
    let out = &mut out[..total];
    if let Some((g, b)) = winograd_g(layout) {
        winograd_pack(canonical, dims, g, b, out);
        return;
    }
    for_each_slot(dims, layout, |src, dst| out[dst] = canonical[src]);
}

/// The Winograd F(4x4, 3x3) weight transform `G`: a 3-tap filter to its 6 transformed taps.
pub const WINOGRAD_F43_G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The Winograd F(2x2, 3x3) weight transform `G`: a 3-tap filter to its 4 transformed taps.
pub const WINOGRAD_F23_G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The transform `G` of a Winograd layout, as rows, and its block size.
fn winograd_g(layout: Layout) -> Option<(&'static [[f64; 3]], usize)> {
    match layout {
        Layout::WinogradF43(b) => Some((&WINOGRAD_F43_G, b as usize)),
        Layout::WinogradF23(b) => Some((&WINOGRAD_F23_G, b as usize)),
        _ => None,
    }
}

/// Index of `U[xi][o][i]` in Winograd weights blocked by `b`, with `oc` outputs and `ic`
/// inputs.
fn winograd_index(xi: usize, o: usize, i: usize, oc: usize, ic: usize, b: usize) -> usize {
    ((xi * oc.div_ceil(b) + o / b) * ic + i) * b + o % b
}

/// `U = G g G^T` for every (output, input) pair, in f64, stored blocked by `b` (`G` has `a`
/// rows; `U` is `a x a`).
fn winograd_pack(canonical: &[f32], dims: &[u32], g: &[[f64; 3]], b: usize, out: &mut [f32]) {
    let (oc, ic) = (dims[0] as usize, dims[1] as usize);
    let a_n = g.len();
    for o in 0..oc {
        for i in 0..ic {
            let k = &canonical[(o * ic + i) * 9..(o * ic + i) * 9 + 9];
            for (a, gr) in g.iter().enumerate() {
                // Row `a` of `t = G k` (a x 3).
                let ta: [f64; 3] =
                    std::array::from_fn(|x| (0..3).map(|y| gr[y] * k[y * 3 + x] as f64).sum());
                for (c, gc) in g.iter().enumerate() {
                    let u: f64 = (0..3).map(|x| ta[x] * gc[x]).sum();
                    out[winograd_index(a * a_n + c, o, i, oc, ic, b)] = u as f32;
                }
            }
        }
    }
}

/// Inverse of [`winograd_pack`] through the left inverse `P = (G^T G)^-1 G^T` of `G`:
/// `g = P U P^T`, exact up to rounding.
fn winograd_unpack(packed: &[f32], dims: &[u32], g: &[[f64; 3]], b: usize, out: &mut [f32]) {
    let (oc, ic) = (dims[0] as usize, dims[1] as usize);
    let a_n = g.len();
    // G^T G (3x3), its inverse, then P = (G^T G)^-1 G^T (3 x a).
    let mut gtg = [[0.0f64; 3]; 3];
    for (r, row) in gtg.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = g.iter().map(|gk| gk[r] * gk[c]).sum();
        }
    }
    let inv = invert3(gtg);
    let p: Vec<Vec<f64>> = (0..3)
        .map(|r| {
            g.iter()
                .map(|gk| (0..3).map(|c| inv[r][c] * gk[c]).sum())
                .collect()
        })
        .collect();
    for o in 0..oc {
        for i in 0..ic {
            let u =
                |a: usize, c: usize| packed[winograd_index(a * a_n + c, o, i, oc, ic, b)] as f64;
            for y in 0..3 {
                for x in 0..3 {
                    let mut s = 0.0;
                    for a in 0..a_n {
                        for c in 0..a_n {
                            s += p[y][a] * u(a, c) * p[x][c];
                        }
                    }
                    out[(o * ic + i) * 9 + y * 3 + x] = s as f32;
                }
            }
        }
    }
}

/// Inverse of a 3x3 matrix by cofactors (the callers' matrices are well conditioned).
fn invert3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c = |r: usize, k: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (k1, k2) = ((k + 1) % 3, (k + 2) % 3);
        m[r1][k1] * m[r2][k2] - m[r1][k2] * m[r2][k1]
    };
    let det: f64 = (0..3).map(|k| m[0][k] * c(0, k)).sum();
    let mut out = [[0.0; 3]; 3];
    for (r, row) in out.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = c(k, r) / det;
        }
    }
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
    if let Some((g, b)) = winograd_g(layout) {
        winograd_unpack(packed, dims, g, b, &mut out);
        return out;
    }
    for_each_slot(dims, layout, |src, dst| out[src] = packed[dst]);
    out
}

/// Repacks a weight stored as `from` into `to`.
pub fn repack(data: &[f32], dims: &[u32], from: Layout, to: Layout) -> Vec<f32> {
    let mut out = vec![0.0f32; packed_len(to, dims).expect("layout applies") as usize];
    repack_into(data, dims, from, to, &mut out);
    out
}

/// [`repack`] into `out`, which holds at least [`packed_len`] of `to` zeros (the session
/// repacks straight into its aligned weight storage).
///
/// # Panics
/// As [`pack`] and [`unpack`], or if `out` is too short.
pub fn repack_into(data: &[f32], dims: &[u32], from: Layout, to: Layout, out: &mut [f32]) {
    let total = packed_len(to, dims).expect("layout applies") as usize;
    if from == to {
        out[..total].copy_from_slice(&data[..total]);
        return;
    }
    let unpacked;
    let canonical: &[f32] = if from == Layout::Canonical {
        data
    } else {
        unpacked = unpack(data, dims, from);
        &unpacked[..]
    };
    if to == Layout::Canonical {
        out[..total].copy_from_slice(&canonical[..total]);
    } else {
        pack_into(canonical, dims, to, out);
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
        Layout::WinogradF43(_) | Layout::WinogradF23(_) => {
            unreachable!("a transform, not a permutation")
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

    #[test]
    fn winograd_weights_roundtrip_and_transform_by_g() {
        let dims = [5u32, 3, 3, 3];
        let n = 5 * 3 * 9;
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        // Packs with `taps` transformed taps per pair, checks the length, the way back and
        // that output channels 5..8 of each block are padding.
        let packed = |layout: Layout, taps: usize| {
            let p = pack(&w, &dims, layout);
            assert_eq!(p.len() as u64, packed_len(layout, &dims).unwrap());
            assert_eq!(p.len(), taps * 8 * 3);
            let back = unpack(&p, &dims, layout);
            for (a, b) in back.iter().zip(&w) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            assert_eq!(p[winograd_index(7, 6, 2, 5, 3, 4)], 0.0);
            p
        };
        let k = &w[(2 * 3 + 1) * 9..(2 * 3 + 1) * 9 + 9];

        let p = packed(Layout::WinogradF43(4), 36);
        // The corner tap of U is g[0][0] / 16 (row 0 of G is [1/4, 0, 0]).
        assert!((p[winograd_index(0, 2, 1, 5, 3, 4)] - k[0] / 16.0).abs() < 1e-6);

        let p = packed(Layout::WinogradF23(4), 16);
        // Row 0 of the F(2, 3) `G` is [1, 0, 0]: the corner tap of U is g[0][0]; the centre
        // tap U[1][1] is the sum of all nine taps over 4.
        assert!((p[winograd_index(0, 2, 1, 5, 3, 4)] - k[0]).abs() < 1e-6);
        let centre = p[winograd_index(5, 2, 1, 5, 3, 4)];
        assert!((centre - k.iter().sum::<f32>() / 4.0).abs() < 1e-5);
    }
}
