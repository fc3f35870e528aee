//! Every NEON conv kernel is selected for the layers it is meant for and matches the
//! reference, on channel strides that are and are not multiples of 8. (The shared property
//! suite in `kernels/tests.rs` runs random layers over this table as well.)

use super::TABLE;
use crate::graph::{Activation, Conv, Shape4};
use crate::kernels::reference::tests::{check_conv, ConvCase};
use crate::kernels::Act4;

/// A conv case of `(groups, in_c, out_c)` with a `k`x`k` kernel on a `h`x`w` input.
fn case(
    (groups, in_c, out_c): (u32, u32, u32),
    k: u32,
    stride: u32,
    pad: u32,
    (n, h, w): (u32, u32, u32),
    (xextra, yextra): (usize, usize),
    act: Activation,
) -> ConvCase {
    let conv = Conv {
        in_c,
        out_c,
        groups,
        kernel: [k, k],
        stride: [stride; 2],
        dilation: [1, 1],
        pads: [pad; 4],
        weight: 0,
        bias: Some(1),
        act,
    };
    let (oh, ow) = conv.output_hw(h, w).unwrap();
    let xs = Act4 {
        shape: Shape4::new(n, h, w, in_c),
        cs: in_c as usize + xextra,
    };
    let ys = Act4 {
        shape: Shape4::new(n, oh, ow, out_c),
        cs: out_c as usize + yextra,
    };
    ConvCase {
        conv,
        xs,
        ys,
        residual: true,
        split: ys.rows() / 2,
        seed: 11,
    }
}

#[test]
fn every_neon_conv_kernel_is_selected_and_correct() {
    let relu = Activation::Relu;
    let hs = Activation::HardSwish;
    let cases = [
        (
            "dw1x1_neon",
            case((17, 17, 17), 1, 1, 0, (2, 9, 21), (3, 7), relu),
        ),
        (
            "dw1x1_neon",
            case((16, 16, 16), 1, 2, 0, (1, 11, 13), (0, 0), hs),
        ),
        (
            "dw3x3s1_neon",
            case((17, 17, 17), 3, 1, 1, (2, 9, 21), (3, 7), relu),
        ),
        (
            "dw3x3s1_neon",
            case((16, 16, 16), 3, 1, 0, (1, 5, 13), (0, 0), hs),
        ),
        (
            "dw3x3s2_neon",
            case((20, 20, 20), 3, 2, 1, (1, 10, 19), (4, 4), relu),
        ),
        (
            "dw3x3_neon",
            case((9, 9, 9), 3, 3, 1, (1, 7, 25), (1, 0), relu),
        ),
        (
            "dw5x5s1_neon",
            case((24, 24, 24), 5, 1, 2, (1, 6, 20), (0, 0), hs),
        ),
        (
            "dw5x5s2_neon",
            case((9, 9, 9), 5, 2, 2, (2, 9, 23), (7, 2), relu),
        ),
        (
            "dw5x5_neon",
            case((5, 5, 5), 5, 3, 0, (1, 8, 30), (0, 3), relu),
        ),
        (
            "dw7x7s1_neon",
            case((24, 24, 24), 7, 1, 3, (1, 7, 7), (0, 0), hs),
        ),
        (
            "dw7x7s1_neon",
            case((11, 11, 11), 7, 1, 3, (2, 9, 17), (5, 2), relu),
        ),
        (
            "dw7x7_neon",
            case((9, 9, 9), 7, 2, 3, (1, 12, 19), (1, 0), relu),
        ),
        (
            "gemm_8x8_neon",
            case((1, 17, 20), 1, 1, 0, (2, 5, 13), (3, 5), relu),
        ),
        (
            "gemm_8x8_neon",
            case((1, 64, 32), 1, 1, 0, (1, 7, 9), (0, 0), hs),
        ),
        (
            "conv1x1s_8x8_neon",
            case((1, 17, 20), 1, 2, 0, (2, 9, 21), (1, 2), relu),
        ),
        (
            "conv3x3_neon",
            case((1, 9, 17), 3, 1, 1, (2, 6, 19), (3, 5), relu),
        ),
        (
            "conv3x3_neon",
            case((1, 16, 16), 3, 2, 1, (1, 9, 33), (0, 0), hs),
        ),
        (
            "wino43_8x8_neon",
            case((1, 17, 20), 3, 1, 1, (2, 14, 15), (3, 5), relu),
        ),
        (
            "wino43_8x8_neon",
            case((1, 32, 24), 3, 1, 0, (1, 19, 18), (0, 0), hs),
        ),
        (
            "wino23_8x8_neon",
            case((1, 256, 260), 3, 1, 1, (1, 7, 9), (0, 4), relu),
        ),
        (
            "conv5x5_neon",
            case((1, 3, 9), 5, 1, 2, (1, 7, 12), (2, 1), relu),
        ),
        (
            "conv7x7_neon",
            case((1, 3, 16), 7, 2, 3, (1, 15, 29), (0, 6), relu),
        ),
        (
            "conv_kxk_neon",
            case((1, 9, 17), 1, 1, 1, (1, 4, 11), (0, 1), relu),
        ),
        (
            "conv_kxk_neon",
            case((1, 5, 8), 4, 3, 2, (1, 9, 14), (1, 1), hs),
        ),
        (
            "dw_generic_portable",
            case((9, 9, 9), 4, 1, 2, (1, 8, 10), (0, 0), relu),
        ),
        (
            "conv_generic_portable",
            case((4, 8, 12), 3, 1, 1, (1, 5, 9), (0, 4), relu),
        ),
    ];
    for (name, case) in &cases {
        let kernel = TABLE.conv_kernel(&case.conv, case.xs.shape);
        assert_eq!(kernel.name, *name, "{:?}", case.conv);
        check_conv(&TABLE, case).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn neon_table_is_listed() {
    let tables = crate::kernels::KernelTable::all_supported();
    assert!(tables.iter().any(|t| t.name == TABLE.name));
    assert_eq!(crate::kernels::KernelTable::detect().name, TABLE.name);
}

/// The Winograd kernels against the reference on layers drawn at random within their rule:
/// ragged channel counts and strides, both paddings, maps whose tiles overhang the border,
/// a residual, and the rows split in two (as threads split them).
#[test]
fn neon_winograd_matches_the_reference_on_random_layers() {
    let mut seed = 0x5EED_u64;
    let mut next = |lo: u32, hi: u32| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((seed >> 33) as u32) % (hi - lo + 1)
    };
    for i in 0..16 {
        let wide = i % 4 == 3;
        let (ic, oc) = if wide {
            (next(256, 270), next(256, 270))
        } else {
            (next(16, 44), next(16, 44))
        };
        let pad = next(0, 1);
        let (h, w) = if wide {
            (next(6, 12), next(6, 12))
        } else {
            (next(15, 23), next(15, 23))
        };
        let act = if next(0, 1) == 0 {
            Activation::Relu
        } else {
            Activation::HardSwish
        };
        let extra = (next(0, 5) as usize, next(0, 5) as usize);
        let mut c = case((1, ic, oc), 3, 1, pad, (next(1, 2), h, w), extra, act);
        c.seed = 100 + i;
        let want = if wide {
            "wino23_8x8_neon"
        } else {
            "wino43_8x8_neon"
        };
        let kernel = TABLE.conv_kernel(&c.conv, c.xs.shape);
        assert_eq!(kernel.name, want, "{:?} on {:?}", c.conv, c.xs.shape);
        check_conv(&TABLE, &c).unwrap_or_else(|e| panic!("case {i} {:?}: {e}", c.conv));
    }
}
