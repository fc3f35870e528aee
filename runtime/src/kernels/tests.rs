//! Property tests shared by every kernel table: each entry against the scalar reference.
//!
//! Random shapes, geometries (random channel strides) and activations are drawn by proptest
//! and every entry is compared with [`super`] (the reference).
//!
//! The `check_*` functions take any [`KernelTable`]; the proptest cases run them for the
//! portable table and every other table [`KernelTable::all_supported`] lists, so a new table
//! is covered as soon as it is listed there (or by calling the `check_*` functions directly).

use crate::graph::{window_out, Activation, Conv, Fc, Pool, PoolKind, Shape4};
use crate::kernels::{
    pack, portable, reference, Act4, ConvArgs, ConvKernel, ConvPlan, FcArgs, KernelChoice,
    KernelTable,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestCaseError;

/// Relative tolerance: `|got - ref| <= TOL_REL * max|ref| + TOL_ABS` over one output tensor.
///
/// The kernels sum in another order than the reference (and in f32 where the reference uses
/// f64), and some use `x * (1/d)` for `x / d`. Test data is scaled so that values are O(1)
/// (weights are uniform in `±1/sqrt(fan_in)`), where those rounding differences stay near
/// 1e-6; an indexing or padding bug shows up as an O(0.1) difference.
const TOL_REL: f32 = 1e-4;
/// Absolute part of the tolerance, for outputs whose reference is near zero everywhere.
const TOL_ABS: f32 = 1e-5;

/// Proptest cases per test.
const CASES: u32 = 512;

/// The tables under test: portable, then every other one this CPU supports.
fn tables() -> Vec<&'static KernelTable> {
    let mut v: Vec<&'static KernelTable> = vec![&portable::TABLE];
    v.extend(
        KernelTable::all_supported()
            .into_iter()
            .filter(|t| t.name != portable::TABLE.name),
    );
    v
}

/// Deterministic data from a seed (SplitMix64), so a case is reproducible from its `seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-scale, scale)`.
    fn uniform(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(scale)).collect()
    }
    /// An activation buffer of geometry `g`: values in `±scale`, pad lanes zero.
    fn act(&mut self, g: Act4, scale: f32) -> Vec<f32> {
        let c = g.shape.c as usize;
        let mut v = vec![0.0; g.len()];
        for px in v.chunks_exact_mut(g.cs) {
            for e in &mut px[..c] {
                *e = self.uniform(scale);
            }
        }
        v
    }
}

/// A geometry with channel stride `c + extra`.
fn geom(shape: Shape4, extra: usize) -> Act4 {
    Act4 {
        shape,
        cs: shape.c as usize + extra,
    }
}

/// Checks `got` against `expect` (both of geometry `g`): within tolerance, pad lanes exactly 0.
fn compare(got: &[f32], expect: &[f32], g: Act4, what: &str) -> Result<(), TestCaseError> {
    let scale = expect.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = TOL_REL * scale + TOL_ABS;
    let c = g.shape.c as usize;
    for (i, (&a, &b)) in got.iter().zip(expect).enumerate() {
        let (pixel, lane) = (i / g.cs, i % g.cs);
        let ok = if lane >= c {
            a == 0.0
        } else {
            (a - b).abs() <= tol
        };
        prop_assert!(
            ok,
            "{what}: pixel {pixel} lane {lane} (c {c}, cs {}): got {a}, reference {b}, tolerance {tol}",
            g.cs
        );
    }
    prop_assert_eq!(got.len(), expect.len());
    Ok(())
}

/// Any activation, with parameters in their usual ranges.
fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        (-1.0f32..0.0, 0.0f32..1.0).prop_map(|(min, max)| Activation::Clip { min, max }),
        Just(Activation::Clip { min: 0.0, max: 6.0 }),
        (0.01f32..0.5).prop_map(|alpha| Activation::LeakyRelu { alpha }),
        Just(Activation::Sigmoid),
        (0.1f32..0.5, 0.3f32..0.7)
            .prop_map(|(alpha, beta)| Activation::HardSigmoid { alpha, beta }),
        Just(Activation::HardSwish),
        Just(Activation::Silu),
        Just(Activation::Tanh),
        Just(Activation::Gelu),
    ]
}

/// Channel counts around the vector width.
fn channels() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![1u32, 3, 7, 8, 9, 16, 17]),
        1u32..=20
    ]
}

/// Channel counts for the per-pixel kernels, which walk channels in blocks of up to four
/// vectors (64 lanes on AVX-512): the small counts of [`channels`], or past one block.
fn wide_channels() -> impl Strategy<Value = u32> {
    prop_oneof![3 => channels(), 1 => 60u32..=140]
}

/// Extra channel-stride lanes: none, up to the next multiple of 8, or random.
fn cs_extra(c: u32) -> impl Strategy<Value = usize> {
    let to8 = (c as usize).next_multiple_of(8) - c as usize;
    prop_oneof![Just(0), Just(to8), 0usize..=9]
}

/// One conv layer test case.
#[derive(Clone, Debug)]
pub struct ConvCase {
    /// The layer.
    pub conv: Conv,
    /// Input geometry.
    pub xs: Act4,
    /// Output geometry.
    pub ys: Act4,
    /// Whether a fused residual is added.
    pub residual: bool,
    /// Row at which the split-rows check cuts `0..rows`.
    pub split: usize,
    /// Data seed.
    pub seed: u64,
}

/// Builds a conv case from its parts; `h`/`w` grow from the smallest input the window fits.
#[allow(clippy::too_many_arguments)]
fn make_conv_case(
    (groups, in_c, out_c): (u32, u32, u32),
    kernel: [u32; 2],
    stride: [u32; 2],
    dilation: [u32; 2],
    pads: [u32; 4],
    (n, extra_h, extra_w): (u32, u32, u32),
    (xcs, ycs): (usize, usize),
    (bias, residual, act): (bool, bool, Activation),
    (split, seed): (f64, u64),
) -> ConvCase {
    let eff = |k: u32, d: u32| (k - 1) * d + 1;
    let h = eff(kernel[0], dilation[0])
        .saturating_sub(pads[0] + pads[2])
        .max(1)
        + extra_h;
    let w = eff(kernel[1], dilation[1])
        .saturating_sub(pads[1] + pads[3])
        .max(1)
        + extra_w;
    let conv = Conv {
        in_c,
        out_c,
        groups,
        kernel,
        stride,
        dilation,
        pads,
        weight: 0,
        bias: bias.then_some(1),
        act,
    };
    let (oh, ow) = conv.output_hw(h, w).expect("window fits by construction");
    let ys = geom(Shape4::new(n, oh, ow, out_c), ycs);
    let rows = ys.rows();
    ConvCase {
        conv,
        xs: geom(Shape4::new(n, h, w, in_c), xcs),
        ys,
        residual,
        split: ((rows as f64 * split) as usize).min(rows),
        seed,
    }
}

/// `(groups, in_c, out_c)`: dense, depthwise, grouped, or depthwise with a multiplier.
fn grouping() -> impl Strategy<Value = (u32, u32, u32)> {
    prop_oneof![
        3 => (channels(), channels()).prop_map(|(i, o)| (1, i, o)),
        2 => (2u32..=20).prop_map(|c| (c, c, c)),
        1 => (2u32..=4, 1u32..=5, 1u32..=5).prop_map(|(g, i, o)| (g, g * i, g * o)),
        1 => (2u32..=9, 2u32..=3).prop_map(|(c, m)| (c, c, c * m)),
    ]
}

/// Random conv layers: half of them typical CNN layers (1x1, 3x3, 5x5, 7x7 with the usual
/// strides and "same" padding, dense or depthwise), half anything: kernels 1..7 (square ones
/// more often), strides 1..3, dilation 1..2, asymmetric pads 0..3, every grouping. Channel
/// strides are random.
pub fn conv_case() -> impl Strategy<Value = ConvCase> {
    let typical = (
        prop_oneof![
            3 => (channels(), channels()).prop_map(|(i, o)| (1, i, o)),
            2 => (2u32..=20).prop_map(|c| (c, c, c)),
        ],
        prop::sample::select(vec![
            (1u32, 1u32),
            (1, 2),
            (3, 1),
            (3, 2),
            (5, 1),
            (5, 2),
            (7, 2),
            (7, 1),
        ]),
    )
        .prop_map(|(grp, (k, s))| (grp, [k, k], [s, s], [1, 1], [k / 2; 4]));
    let kernel = prop_oneof![
        prop::sample::select(vec![1u32, 3, 5, 7]).prop_map(|k| [k, k]),
        (1u32..=7, 1u32..=7).prop_map(|(a, b)| [a, b]),
    ];
    let stride = prop_oneof![
        Just([1, 1]),
        Just([2, 2]),
        (1u32..=3, 1u32..=3).prop_map(|(a, b)| [a, b])
    ];
    let dilation =
        prop_oneof![3 => Just([1, 1]), 1 => (1u32..=2, 1u32..=2).prop_map(|(a, b)| [a, b])];
    let pads = prop_oneof![
        Just([0u32; 4]),
        (0u32..=3).prop_map(|p| [p; 4]),
        [0u32..=3, 0u32..=3, 0u32..=3, 0u32..=3],
    ];
    let any_layer = (grouping(), kernel, stride, dilation, pads);
    let layer = prop_oneof![typical, any_layer];
    let sizes = (1u32..=2, 0u32..=6, 0u32..=12);
    (layer, sizes)
        .prop_flat_map(|((grp, kernel, stride, dilation, pads), sizes)| {
            (
                Just((grp, kernel, stride, dilation, pads, sizes)),
                (cs_extra(grp.1), cs_extra(grp.2)),
                (any::<bool>(), any::<bool>(), activation()),
                (0.0f64..=1.0, any::<u64>()),
            )
        })
        .prop_map(
            |((grp, kernel, stride, dilation, pads, sizes), cs, act, seed)| {
                make_conv_case(grp, kernel, stride, dilation, pads, sizes, cs, act, seed)
            },
        )
}

/// Runs `table`'s kernel for `case` over `rows` into `y` (canonical weights `w` are packed
/// into the layout the kernel asks for).
fn run_conv(
    run: fn(&mut ConvArgs),
    case: &ConvCase,
    data: &ConvData,
    w: &[f32],
    scratch_len: usize,
    y: &mut [f32],
    rows: std::ops::Range<usize>,
) {
    let mut scratch = vec![f32::NAN; scratch_len];
    run(&mut ConvArgs {
        conv: &case.conv,
        x: &data.x,
        xs: case.xs,
        w,
        bias: data.bias.as_deref(),
        residual: data.residual.as_deref(),
        y,
        ys: case.ys,
        scratch: &mut scratch,
        rows,
        parts: &[],
    });
}

/// The random tensors of a conv case.
struct ConvData {
    x: Vec<f32>,
    w: Vec<f32>,
    dims: [u32; 4],
    bias: Option<Vec<f32>>,
    residual: Option<Vec<f32>>,
}

impl ConvData {
    fn new(case: &ConvCase) -> Self {
        let c = &case.conv;
        let mut rng = Rng(case.seed);
        let dims = [c.out_c, c.in_c / c.groups, c.kernel[0], c.kernel[1]];
        let fan_in = dims[1] * dims[2] * dims[3];
        let count = dims.iter().map(|&d| d as usize).product();
        ConvData {
            x: rng.act(case.xs, 1.0),
            w: rng.vec(count, 1.0 / (fan_in as f32).sqrt()),
            dims,
            bias: c.bias.map(|_| rng.vec(c.out_c as usize, 1.0)),
            residual: case.residual.then(|| rng.act(case.ys, 1.0)),
        }
    }
}

/// Checks `table`'s conv kernel for `case` against the reference: the whole output, its pad
/// lanes, and that two calls over a split row range compute exactly their own rows.
pub fn check_conv(table: &KernelTable, case: &ConvCase) -> Result<(), TestCaseError> {
    let plan = table.choice.conv_plan(&case.conv, case.xs.shape);
    let kernel =
        (table.conv)(&case.conv, plan).expect("a table has a kernel for each of its own plans");
    check_conv_kernel(table.name, kernel, case)?;
    // The table's dense kernels for the other channel blocks too (files packed elsewhere
    // run them), whichever block the plan picked.
    if let ConvPlan::Dense { nb } = plan {
        for other in [4, 8, 16, 32] {
            let plan = ConvPlan::Dense { nb: other };
            if let Some(k) = (other != nb)
                .then(|| (table.conv)(&case.conv, plan))
                .flatten()
            {
                check_conv_kernel(table.name, k, case)?;
            }
        }
    }
    Ok(())
}

/// Checks one conv `kernel` of the table called `table` as [`check_conv`] does.
pub fn check_conv_kernel(
    table: &str,
    kernel: ConvKernel,
    case: &ConvCase,
) -> Result<(), TestCaseError> {
    let data = ConvData::new(case);
    let what = format!("{table}/{}", kernel.name);
    let w = pack::pack(&data.w, &data.dims, kernel.layout);
    let scratch = (kernel.scratch_len)(&case.conv, case.xs, case.ys);
    let (len, rows) = (case.ys.len(), case.ys.rows());

    let mut expect = vec![f32::NAN; len];
    run_conv(
        reference::conv,
        case,
        &data,
        &data.w,
        0,
        &mut expect,
        0..rows,
    );
    let mut got = vec![f32::NAN; len];
    run_conv(kernel.run, case, &data, &w, scratch, &mut got, 0..rows);
    compare(&got, &expect, case.ys, &what)?;

    let mut split = vec![f32::NAN; len];
    let row_len = len / rows.max(1);
    run_conv(
        kernel.run,
        case,
        &data,
        &w,
        scratch,
        &mut split,
        0..case.split,
    );
    prop_assert!(
        split[case.split * row_len..].iter().all(|v| v.is_nan()),
        "{what}: rows 0..{} wrote past its rows",
        case.split
    );
    run_conv(
        kernel.run,
        case,
        &data,
        &w,
        scratch,
        &mut split,
        case.split..rows,
    );
    compare(
        &split,
        &expect,
        case.ys,
        &format!("{what} split at row {}", case.split),
    )?;
    check_parts(kernel, case, &data, &w, scratch, &expect, &what)
}

/// For a kernel that [`ConvKernel::reads_parts`] and a 1x1 conv: the input cut into two or
/// three channel ranges (at seed-chosen places), each in its own buffer with its own
/// channel stride, read as `x` plus [`ConvArgs::parts`], gives the reference's output.
fn check_parts(
    kernel: ConvKernel,
    case: &ConvCase,
    data: &ConvData,
    w: &[f32],
    scratch_len: usize,
    expect: &[f32],
    what: &str,
) -> Result<(), TestCaseError> {
    let c = &case.conv;
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    if !kernel.reads_parts || !pointwise || c.groups != 1 || c.in_c < 2 {
        return Ok(());
    }
    let ic = c.in_c as usize;
    let cut = 1 + case.seed as usize % (ic - 1);
    let mut bounds = vec![0, cut];
    if ic - cut >= 2 && case.seed & (1 << 40) != 0 {
        bounds.push(cut + 1 + (case.seed >> 20) as usize % (ic - cut - 1));
    }
    bounds.push(ic);
    let buffers: Vec<(Vec<f32>, Act4)> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, r)| {
            let k = r[1] - r[0];
            let shape = Shape4 {
                c: k as u32,
                ..case.xs.shape
            };
            // Strides: tight, or rounded up to 8 or 16.
            let ps = Act4::new(shape, [1, 8, 16][(case.seed as usize >> (4 * i)) % 3]);
            let mut b = vec![0.0f32; ps.len()];
            for (p, dst) in b.chunks_exact_mut(ps.cs).enumerate() {
                let src = &data.x[p * case.xs.cs + r[0]..][..k];
                dst[..k].copy_from_slice(src);
            }
            (b, ps)
        })
        .collect();
    let parts: Vec<(&[f32], Act4)> = buffers[1..].iter().map(|(b, s)| (&b[..], *s)).collect();
    let mut got = vec![f32::NAN; case.ys.len()];
    let mut scratch = vec![f32::NAN; scratch_len];
    (kernel.run)(&mut ConvArgs {
        conv: c,
        x: &buffers[0].0,
        xs: buffers[0].1,
        w,
        bias: data.bias.as_deref(),
        residual: data.residual.as_deref(),
        y: &mut got,
        ys: case.ys,
        scratch: &mut scratch,
        rows: 0..case.ys.rows(),
        parts: &parts,
    });
    compare(
        &got,
        expect,
        case.ys,
        &format!("{what} reading {} parts cut at {bounds:?}", parts.len() + 1),
    )
}

/// One fully connected test case.
#[derive(Clone, Debug)]
pub struct FcCase {
    /// The layer.
    pub fc: Fc,
    /// Input geometry.
    pub xs: Act4,
    /// Output geometry.
    pub ys: Act4,
    /// Data seed.
    pub seed: u64,
}

/// Random fully connected layers over `(N, H, W, C)` inputs with random channel strides.
pub fn fc_case() -> impl Strategy<Value = FcCase> {
    (
        1u32..=5,
        1u32..=3,
        1u32..=3,
        channels(),
        prop_oneof![channels(), 1u32..=40],
    )
        .prop_flat_map(|(n, h, w, c, of)| {
            (
                Just((n, h, w, c, of)),
                cs_extra(c),
                cs_extra(of),
                any::<bool>(),
                activation(),
                any::<u64>(),
            )
        })
        .prop_map(|((n, h, w, c, of), xcs, ycs, bias, act, seed)| FcCase {
            fc: Fc {
                in_features: h * w * c,
                out_features: of,
                weight: 0,
                bias: bias.then_some(1),
                act,
            },
            xs: geom(Shape4::new(n, h, w, c), xcs),
            ys: geom(Shape4::new(n, 1, 1, of), ycs),
            seed,
        })
}

/// Checks `table`'s fully connected kernel for `case` against the reference.
pub fn check_fc(table: &KernelTable, case: &FcCase) -> Result<(), TestCaseError> {
    let mut rng = Rng(case.seed);
    let dims = [case.fc.out_features, case.fc.in_features];
    let x = rng.act(case.xs, 1.0);
    let w = rng.vec((dims[0] * dims[1]) as usize, 1.0 / (dims[1] as f32).sqrt());
    let bias = case.fc.bias.map(|_| rng.vec(dims[0] as usize, 1.0));
    // The output in `n` shares, one call each (as `n` threads run it).
    let run = |kernel: fn(&mut FcArgs), w: &[f32], n: usize| {
        let mut y = vec![f32::NAN; case.ys.len()];
        for t in 0..n {
            kernel(&mut FcArgs {
                fc: &case.fc,
                x: &x,
                xs: case.xs,
                w,
                bias: bias.as_deref(),
                y: &mut y,
                ys: case.ys,
                share: (t, n),
            });
        }
        y
    };
    let expect = run(reference::fc, &w, 1);
    let packed = pack::pack(&w, &dims, table.fc.layout);
    for n in [1, 2, 3] {
        let got = run(table.fc.run, &packed, n);
        let what = format!("{}/{} in {n} shares", table.name, table.fc.name);
        compare(&got, &expect, case.ys, &what)?;
    }
    Ok(())
}

/// One pooling test case.
#[derive(Clone, Debug)]
pub struct PoolCase {
    /// The layer.
    pub pool: Pool,
    /// Input geometry.
    pub xs: Act4,
    /// Output geometry.
    pub ys: Act4,
    /// Data seed.
    pub seed: u64,
}

/// Random max/average pools: windows 1..4, strides 1..3, dilation (max only), pads (some as
/// large as the window, so whole windows can fall in padding), ceil-mode padding.
pub fn pool_case() -> impl Strategy<Value = PoolCase> {
    let kind = prop_oneof![
        Just(PoolKind::Max),
        Just(PoolKind::Avg {
            count_include_pad: true
        }),
        Just(PoolKind::Avg {
            count_include_pad: false
        }),
    ];
    let window = (
        [1u32..=4, 1u32..=4],
        [1u32..=3, 1u32..=3],
        [1u32..=2, 1u32..=2],
    );
    let pads = (
        [0u32..=3, 0u32..=3, 0u32..=3, 0u32..=3],
        [0u32..=2, 0u32..=2],
    );
    let sizes = (1u32..=2, 0u32..=6, 0u32..=9, wide_channels());
    (kind, window, pads, sizes)
        .prop_flat_map(|(kind, window, pads, sizes)| {
            (
                Just((kind, window, pads, sizes)),
                cs_extra(sizes.3),
                cs_extra(sizes.3),
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                (kind, (kernel, stride, dilation), (pads, ceil_pads), (n, eh, ew, c)),
                xcs,
                ycs,
                seed,
            )| {
                let dilation = if kind == PoolKind::Max {
                    dilation
                } else {
                    [1, 1]
                };
                let eff = |i: usize| (kernel[i] - 1) * dilation[i] + 1;
                let h = eff(0).saturating_sub(pads[0] + pads[2]).max(1) + eh;
                let w = eff(1).saturating_sub(pads[1] + pads[3]).max(1) + ew;
                let pool = Pool {
                    kind,
                    kernel,
                    stride,
                    dilation,
                    pads,
                    ceil_pads,
                };
                let oh = window_out(
                    h,
                    kernel[0],
                    stride[0],
                    dilation[0],
                    pads[0],
                    pads[2] + ceil_pads[0],
                );
                let ow = window_out(
                    w,
                    kernel[1],
                    stride[1],
                    dilation[1],
                    pads[1],
                    pads[3] + ceil_pads[1],
                );
                let (oh, ow) = oh.zip(ow).expect("window fits by construction");
                PoolCase {
                    pool,
                    xs: geom(Shape4::new(n, h, w, c), xcs),
                    ys: geom(Shape4::new(n, oh, ow, c), ycs),
                    seed,
                }
            },
        )
}

/// Checks `table`'s pooling for `case` against the reference.
pub fn check_pool(table: &KernelTable, case: &PoolCase) -> Result<(), TestCaseError> {
    let x = Rng(case.seed).act(case.xs, 1.0);
    let mut expect = vec![f32::NAN; case.ys.len()];
    reference::pool(&case.pool, &x, case.xs, &mut expect, case.ys, 0);
    let mut got = vec![f32::NAN; case.ys.len()];
    (table.pool)(&case.pool, &x, case.xs, &mut got, case.ys, 0);
    compare(&got, &expect, case.ys, &format!("{}/pool", table.name))?;
    // The same input as two parts of a concatenation (channels `..c1` and `c1..`, each with
    // a channel stride of its own), pooled into their channels of one output.
    let c = case.xs.shape.c as usize;
    if c < 2 {
        return Ok(());
    }
    let c1 = 1 + (case.seed % (c as u64 - 1)) as usize;
    let pixels = case.xs.shape.pixels() as usize;
    let part = |from: usize, to: usize, extra: usize| {
        let mut shape = case.xs.shape;
        shape.c = (to - from) as u32;
        let g = Act4 {
            shape,
            cs: to - from + extra,
        };
        let mut v = vec![0.0; g.len()];
        for p in 0..pixels {
            v[p * g.cs..p * g.cs + to - from]
                .copy_from_slice(&x[p * case.xs.cs + from..p * case.xs.cs + to]);
        }
        (v, g)
    };
    let (a, ags) = part(0, c1, (case.seed % 3) as usize);
    let (b, bgs) = part(c1, c, (case.seed / 3 % 3) as usize);
    let mut got = vec![f32::NAN; case.ys.len()];
    (table.pool)(&case.pool, &a, ags, &mut got, case.ys, 0);
    (table.pool)(&case.pool, &b, bgs, &mut got, case.ys, c1);
    compare(
        &got,
        &expect,
        case.ys,
        &format!("{}/pool in two parts", table.name),
    )
}

/// A random tensor shape with two random channel strides, plus an activation and a seed:
/// the input of the elementwise checks.
#[derive(Clone, Debug)]
pub struct EltCase {
    /// Geometry of the first operand / output.
    pub a: Act4,
    /// The same shape with another channel stride.
    pub b: Act4,
    /// Activation, where the entry takes one.
    pub act: Activation,
    /// Data seed.
    pub seed: u64,
}

/// Random shapes `(1..2, 1..5, 1..5, C)`.
pub fn elt_case() -> impl Strategy<Value = EltCase> {
    (1u32..=2, 1u32..=5, 1u32..=5, wide_channels())
        .prop_flat_map(|(n, h, w, c)| {
            (
                Just(Shape4::new(n, h, w, c)),
                cs_extra(c),
                cs_extra(c),
                activation(),
                any::<u64>(),
            )
        })
        .prop_map(|(s, ea, eb, act, seed)| EltCase {
            a: geom(s, ea),
            b: geom(s, eb),
            act,
            seed,
        })
}

/// Checks add, mul (both broadcasts), act, channel_affine, concat_part, softmax, layer_norm,
/// flatten and global_avg_pool of `table` for `case` against the reference.
pub fn check_elementwise(table: &KernelTable, case: &EltCase) -> Result<(), TestCaseError> {
    let r = &reference::TABLE;
    let mut rng = Rng(case.seed);
    let (ys, act) = (case.a, case.act);
    let s = ys.shape;
    let a = rng.act(ys, 2.0);
    let b = rng.act(ys, 2.0);
    let nan = |g: Act4| vec![f32::NAN; g.len()];
    let name = |op: &str| format!("{}/{op}", table.name);

    let both = |f: &dyn Fn(&KernelTable, &mut [f32]), g: Act4, op: &str| {
        let (mut expect, mut got) = (nan(g), nan(g));
        f(r, &mut expect);
        f(table, &mut got);
        compare(&got, &expect, g, &name(op))
    };
    both(&|t, y| (t.add)(&a, &b, y, ys, act), ys, "add")?;
    both(&|t, y| (t.act)(&a, y, ys, act), ys, "act")?;
    both(&|t, y| (t.mul)(&a, &b, ys, y, ys), ys, "mul")?;
    let per_channel = Act4 {
        shape: Shape4::new(s.n, 1, 1, s.c),
        cs: case.b.cs,
    };
    let scale = rng.act(per_channel, 2.0);
    both(
        &|t, y| (t.mul)(&a, &scale, per_channel, y, ys),
        ys,
        "mul per channel",
    )?;
    let (sc, sh) = (rng.vec(s.c as usize, 2.0), rng.vec(s.c as usize, 1.0));
    both(
        &|t, y| (t.channel_affine)(&a, &sc, &sh, y, ys, act),
        ys,
        "channel_affine",
    )?;

    // Unary kernels whose output has another channel stride than the input.
    let xs = case.b;
    let x = rng.act(xs, 4.0);
    both(&|t, y| (t.softmax)(&x, xs, y, ys), ys, "softmax")?;
    let (sc, sh) = (rng.vec(s.c as usize, 2.0), rng.vec(s.c as usize, 1.0));
    both(
        &|t, y| (t.layer_norm)(&x, xs, &sc, &sh, 1e-5, y, ys),
        ys,
        "layer_norm",
    )?;
    // Far from zero: 40, plus 2 or -2 by channel parity, plus a quarter of the random
    // values (deviations of 1 to 3, never two values closer than f32 can normalise near
    // 40), so that the variance must be taken around the mean, without cancellation. The
    // pad lanes of the input stay zero.
    let c = s.c as usize;
    let shifted: Vec<f32> = (x.iter().enumerate())
        .map(|(i, &v)| match i % xs.cs {
            k if k < c => 40.0 + if k % 2 == 0 { 2.0 } else { -2.0 } + v / 4.0,
            _ => v,
        })
        .collect();
    both(
        &|t, y| (t.layer_norm)(&shifted, xs, &sc, &sh, 1e-5, y, ys),
        ys,
        "layer_norm of values near 40",
    )?;
    let flat = geom(
        Shape4::new(s.n, 1, 1, s.c * s.h * s.w),
        ys.cs - s.c as usize,
    );
    both(&|t, y| (t.flatten)(&x, xs, y, flat), flat, "flatten")?;
    let gap = geom(Shape4::new(s.n, 1, 1, s.c), ys.cs - s.c as usize);
    both(
        &|t, y| (t.global_avg_pool)(&x, xs, y, gap),
        gap,
        "global_avg_pool",
    )?;
    // A window of channels of the wider buffer (how a session splits the mean over threads)
    // gets the means, to the bit, that the whole call gives those channels.
    let c = s.c as usize;
    let mut whole = nan(gap);
    (table.global_avg_pool)(&x, xs, &mut whole, gap);
    let c0 = (rng.next() as usize) % c;
    let c1 = c0 + 1 + (rng.next() as usize) % (c - c0);
    let win = Act4 {
        shape: Shape4 {
            c: (c1 - c0) as u32,
            ..xs.shape
        },
        cs: xs.cs,
    };
    let out = geom(Shape4::new(s.n, 1, 1, (c1 - c0) as u32), 0);
    let mut part = nan(out);
    (table.global_avg_pool)(&x[c0..xs.len()], win, &mut part, out);
    for b in 0..s.n as usize {
        for k in 0..c1 - c0 {
            let (got, want) = (part[b * out.cs + k], whole[b * gap.cs + c0 + k]);
            prop_assert!(
                got.to_bits() == want.to_bits(),
                "{}: mean of channel {} in window {c0}..{c1}: {got} != {want} (whole)",
                name("global_avg_pool"),
                c0 + k
            );
        }
    }

    // Concat: `y`'s channels split into up to three parts of random sizes, in order.
    let c = s.c as usize;
    let cut1 = (rng.next() as usize) % (c + 1);
    let cut2 = cut1 + (rng.next() as usize) % (c - cut1 + 1);
    let parts: Vec<(usize, Act4, Vec<f32>)> = [(0, cut1), (cut1, cut2), (cut2, c)]
        .into_iter()
        .filter(|(lo, hi)| hi > lo)
        .map(|(lo, hi)| {
            let g = geom(
                Shape4 {
                    c: (hi - lo) as u32,
                    ..s
                },
                (rng.next() % 10) as usize,
            );
            (lo, g, rng.act(g, 1.0))
        })
        .collect();
    both(
        &|t, y| {
            for (c0, g, part) in &parts {
                (t.concat_part)(part, *g, y, ys, *c0);
            }
        },
        ys,
        "concat_part",
    )
}

/// Convs that must select each named portable kernel, with the name they must get.
fn named_portable_convs() -> Vec<(&'static str, ConvCase)> {
    let base = |grp, k: u32, stride: u32, pad: u32| {
        make_conv_case(
            grp,
            [k, k],
            [stride; 2],
            [1, 1],
            [pad; 4],
            (2, 9, 17),
            (3, 5),
            (true, true, Activation::Relu),
            (0.5, 7),
        )
    };
    let nonsquare = make_conv_case(
        (1, 9, 17),
        [1, 7],
        [1, 1],
        [1, 1],
        [0, 3, 0, 3],
        (1, 4, 12),
        (0, 7),
        (false, false, Activation::None),
        (0.3, 1),
    );
    vec![
        ("dw3x3_portable", base((17, 17, 17), 3, 1, 1)),
        ("dw3x3_portable", base((20, 20, 20), 3, 2, 1)),
        ("dw5x5_portable", base((9, 9, 9), 5, 2, 2)),
        ("dw_generic_portable", base((9, 9, 9), 7, 1, 3)),
        ("conv1x1_portable", base((1, 17, 20), 1, 1, 0)),
        ("conv1x1_strided_portable", base((1, 17, 20), 1, 2, 0)),
        ("conv3x3_portable", base((1, 9, 17), 3, 1, 1)),
        ("conv3x3_portable", base((1, 16, 16), 3, 2, 1)),
        ("conv5x5_portable", base((1, 3, 9), 5, 1, 2)),
        ("conv7x7_portable", base((1, 3, 16), 7, 2, 3)),
        ("conv_kxk_portable", base((1, 9, 17), 1, 1, 1)),
        ("conv_kxk_portable", base((1, 5, 8), 4, 3, 2)),
        ("conv_kxk_portable", nonsquare),
        ("conv_generic_portable", base((4, 8, 12), 3, 1, 1)),
        ("conv_generic_portable", base((6, 6, 12), 3, 2, 1)),
    ]
}

#[test]
fn every_portable_conv_kernel_is_selected_and_correct() {
    let cases = named_portable_convs();
    for (name, case) in &cases {
        let kernel = portable::TABLE.conv_kernel(&case.conv, case.xs.shape);
        assert_eq!(kernel.name, *name, "{:?}", case.conv);
        check_conv(&portable::TABLE, case).unwrap();
    }
    let names: std::collections::BTreeSet<_> = cases.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 10, "one case per portable conv kernel");
}

/// Layers whose weights and inputs are too large for the random cases: the x86 dense kernels
/// prefetch the next channel block's weights from 256 KiB of weights on and cut inputs of
/// more than 256 KiB (1 MiB under 1 MiB of weights or more) into several chunks of pixels,
/// and the rule runs F(2x2, 3x3) on wide layers of small maps. Ragged channel counts, with
/// rows split as the threads split them.
#[test]
fn large_layers_match_reference() {
    let case = |(ic, oc): (u32, u32), k: u32, s: u32, p: u32, (h, w): (u32, u32), seed: u64| {
        let extra = |e: u32| (e + 2 * p).saturating_sub(k);
        let xcs = (ic as usize).next_multiple_of(16);
        let ycs = (oc as usize).next_multiple_of(16);
        make_conv_case(
            (1, ic, oc),
            [k, k],
            [s, s],
            [1, 1],
            [p; 4],
            (1, extra(h), extra(w)),
            (xcs - ic as usize, ycs - oc as usize),
            (true, seed.is_multiple_of(2), Activation::Relu),
            (0.4, seed),
        )
    };
    let cases = [
        // 3x3 stride 2, dense: 276 KiB of weights, 406 KiB of input (two chunks).
        case((96, 80), 3, 2, 1, (33, 33), 1),
        // 1x1 (with its parts check): 312 KiB of weights, 2 chunks.
        case((300, 260), 1, 1, 0, (16, 16), 2),
        // F(2x2, 3x3) on a 7x7 map, ragged output channels.
        case((256, 272), 3, 1, 1, (7, 7), 3),
        // F(4x4, 3x3) on a 30x30 map.
        case((64, 48), 3, 1, 1, (30, 30), 4),
        // 5x5: 307 KiB of weights.
        case((64, 48), 5, 1, 2, (20, 20), 5),
        // 1x1 with 1.2 MB of weights, which take chunks of up to 1 MiB of input: 1.3 MB of
        // input, two chunks.
        case((576, 520), 1, 1, 0, (24, 24), 7),
        // The im2col path (3 input channels): 7x7 stride 2, 276 KiB of weights.
        case((3, 352), 7, 2, 3, (40, 40), 6),
    ];
    for c in &cases {
        for t in tables() {
            check_conv(t, c).unwrap();
        }
    }
}

/// RGB stems as sessions run them: 3 input channels at channel stride 4 (the layout of an
/// image input), which the x86 im2col path gathers a kernel row at a time with vector copies
/// when the dilation is 1. Odd sizes mix interior pixels with pixels at the edges; batch 2;
/// a dilated case takes the tap-by-tap path. The x86 tables run the gathered rows on the
/// pointwise tile under a clamp (or none), with or without a residual, and on the general
/// tile under other activations; output channel counts that fill their last block, end in
/// its first vector, or end in its second.
pub fn rgb_stem_cases() -> Vec<ConvCase> {
    let clip = Activation::Clip { min: 0.0, max: 6.0 };
    let case = |oc: u32,
                k: u32,
                (s, d, p): (u32, u32, u32),
                (n, h, w): (u32, u32, u32),
                (residual, act): (bool, Activation),
                seed: u64| {
        make_conv_case(
            (1, 3, oc),
            [k, k],
            [s, s],
            [d, d],
            [p; 4],
            (n, h, w),
            (1, (oc as usize).next_multiple_of(16) - oc as usize),
            (true, residual, act),
            (0.4, seed),
        )
    };
    vec![
        case(32, 3, (2, 1, 1), (1, 30, 33), (false, clip), 1),
        case(64, 7, (2, 1, 3), (1, 27, 26), (false, clip), 2),
        case(24, 3, (1, 1, 1), (2, 9, 14), (false, clip), 3),
        case(16, 5, (2, 1, 2), (1, 11, 20), (false, clip), 4),
        case(32, 3, (1, 2, 2), (1, 10, 13), (false, clip), 5),
        case(40, 3, (2, 1, 1), (1, 17, 19), (true, Activation::Relu), 6),
        case(56, 3, (1, 1, 1), (1, 8, 21), (true, Activation::None), 7),
        case(48, 3, (2, 1, 0), (2, 9, 15), (false, Activation::None), 8),
        case(32, 3, (2, 1, 1), (1, 13, 12), (true, Activation::Silu), 9),
    ]
}

/// Depthwise 3x3 layers at strides 1 and 2, whose sliding path runs output rows in pairs on the x86
/// tables, and 5x5 and 7x7 ones (ConvNeXt's, down to its 7x7 maps), which run the same path a row
/// at a time (at stride 1 over a zero-padded copy of the input where it fits in scratch, and one
/// map too wide for that): odd and even row counts, two images (a pair never spans them), a channel
/// tail, residual and clamp, and a row split at an odd row (pairs form differently in each half,
/// and the halves must still match the whole bit for bit).
pub fn depthwise_row_pair_cases() -> Vec<ConvCase> {
    let case = |c: u32, k: u32, s: u32, p: [u32; 4], (n, h, w): (u32, u32, u32), seed: u64| {
        make_conv_case(
            (c, c, c),
            [k, k],
            [s, s],
            [1, 1],
            p,
            (n, h, w),
            (3, 5),
            (
                true,
                seed.is_multiple_of(2),
                Activation::Clip { min: 0.0, max: 6.0 },
            ),
            (0.37, seed),
        )
    };
    vec![
        case(40, 3, 1, [1; 4], (2, 8, 11), 1),
        case(40, 3, 1, [1; 4], (1, 7, 14), 2),
        case(24, 3, 2, [1; 4], (2, 10, 17), 3),
        case(48, 3, 2, [0, 1, 1, 0], (1, 9, 12), 4),
        case(33, 3, 1, [0; 4], (2, 5, 9), 5),
        case(40, 5, 1, [2; 4], (2, 6, 11), 6),
        case(17, 5, 2, [2; 4], (1, 11, 13), 7),
        case(40, 7, 1, [3; 4], (2, 9, 13), 8),
        case(19, 7, 2, [3; 4], (1, 12, 15), 9),
        case(24, 7, 1, [3; 4], (1, 7, 7), 10),
        // Too wide for the padded plane: the edge pixels go one at a time.
        case(16, 7, 1, [3; 4], (1, 30, 40), 11),
    ]
}

/// 1x1 convs for the x86 tables' pointwise tile (`x86/dense.rs`, `PwTile`): output channels
/// that fill whole blocks of every table (16, 32, 64, 96), and ones that do not, with channel
/// strides that give the last block's stores pad lanes to land in (whole blocks, or the
/// one-vector tile) or not (the general tile): 24 in a stride of 32, 24, 25 or 26; 144 (9
/// vectors of 16); 40 in 48 or 41; 16 on its own. Each of its store variants (no activation,
/// ReLU, Clip, a Clip whose lower bound is above zero so that the pad lanes' clamped zeros
/// must be cleared, each without and with a residual), with and without bias, tile tails
/// (pixel counts that are not multiples of the tile), two images, padded input strides and a
/// row split; plus an activation it leaves to the general tile.
pub fn pointwise_block_cases() -> Vec<ConvCase> {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Clip {
            min: 0.25,
            max: 2.0,
        },
        Activation::Silu,
        Activation::Gelu,
    ];
    let mut v = Vec::new();
    for (i, &(ic, oc, (n, h, w), y_extra)) in [
        (16u32, 32u32, (1u32, 5u32, 7u32), None),
        (3, 64, (2, 3, 5), None),
        (24, 96, (1, 4, 9), None),
        (40, 16, (2, 2, 7), None),
        (16, 24, (1, 4, 7), Some(8)),
        (96, 24, (2, 3, 5), Some(0)),
        (24, 24, (1, 5, 5), Some(1)),
        (8, 24, (1, 2, 9), Some(2)),
        (24, 144, (1, 3, 7), Some(0)),
        (12, 40, (2, 3, 4), Some(8)),
        (40, 40, (1, 4, 4), Some(1)),
        (32, 16, (1, 6, 5), Some(0)),
    ]
    .iter()
    .enumerate()
    {
        for (j, &act) in acts.iter().enumerate() {
            for residual in [false, true] {
                let seed = (i * 10 + j * 2 + residual as usize) as u64;
                v.push(make_conv_case(
                    (1, ic, oc),
                    [1, 1],
                    [1, 1],
                    [1, 1],
                    [0; 4],
                    (n, h - 1, w - 1),
                    (seed as usize % 3, y_extra.unwrap_or(seed as usize % 2)),
                    (!seed.is_multiple_of(3), residual, act),
                    (0.41, seed),
                ));
            }
        }
    }
    v
}

#[test]
fn shares_cover_the_items_once_and_past_the_last_are_empty() {
    use crate::kernels::{is_last_share, share};
    for count in [0, 1, 2, 7, 30, 1000] {
        for n in 1..=5 {
            let mut next = 0;
            for t in 0..n {
                let r = share(count, (t, n));
                assert_eq!(r.start, next, "share {t} of {n} of {count}");
                assert!(r.len() <= count.div_ceil(n) && r.len() >= count / n);
                assert_eq!(is_last_share((t, n)), t + 1 == n);
                next = r.end;
            }
            assert_eq!(next, count, "{n} shares of {count}");
            for t in n..n + 3 {
                assert!(share(count, (t, n)).is_empty());
                assert!(!is_last_share((t, n)));
            }
        }
        assert_eq!(share(count, (0, 0)), 0..count);
        assert!(is_last_share((0, 0)));
    }
}

#[test]
fn pointwise_blocks_match_reference() {
    for c in &pointwise_block_cases() {
        for t in tables() {
            check_conv(t, c).unwrap();
        }
    }
}

#[test]
fn depthwise_row_pairs_match_reference() {
    for c in &depthwise_row_pair_cases() {
        for t in tables() {
            check_conv(t, c).unwrap();
        }
    }
}

#[test]
fn rgb_stems_match_reference() {
    for c in &rgb_stem_cases() {
        assert_eq!(c.xs.cs, 4);
        for t in tables() {
            check_conv(t, c).unwrap();
        }
    }
}

#[test]
fn conv_cases_reach_every_portable_kernel() {
    // The random conv layers exercise every portable conv kernel, not just the generic ones.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..CASES {
        let case = conv_case().new_tree(&mut runner).unwrap().current();
        *seen
            .entry(portable::TABLE.conv_kernel(&case.conv, case.xs.shape).name)
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 4), "{seen:?}");
}

#[test]
fn reference_table_agrees_with_itself() {
    // The checks are sound: the reference passes them against itself.
    let rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config(), rng);
    runner
        .run(&conv_case(), |case| check_conv(&reference::TABLE, &case))
        .unwrap();
}

/// Proptest settings of the suite: [`CASES`] cases, no regression files written into `src/`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Random 3x3 stride-1 dense layers for the Winograd kernels: ragged channel counts and
/// sizes (tiles cut by the image edge), asymmetric padding, batch 1 or 2, channel strides
/// padded to 16 (the runtime pads them to the table's vector width).
pub fn winograd_case() -> impl Strategy<Value = ConvCase> {
    (
        (1u32..=40, 1u32..=40),
        [0u32..=2, 0u32..=2, 0u32..=2, 0u32..=2],
        (1u32..=2, 0u32..=14, 0u32..=14),
        (0usize..=1, 0usize..=1),
        (any::<bool>(), any::<bool>(), activation()),
        (0.0f64..=1.0, any::<u64>()),
    )
        .prop_map(|((ic, oc), pads, sizes, (xe, ye), act, seed)| {
            let pad16 = |c: u32, e: usize| (c as usize).next_multiple_of(16) - c as usize + 16 * e;
            make_conv_case(
                (1, ic, oc),
                [3, 3],
                [1, 1],
                [1, 1],
                pads,
                sizes,
                (pad16(ic, xe), pad16(oc, ye)),
                act,
                seed,
            )
        })
}

/// Checks every Winograd kernel (F(4,3) and F(2,3)) of `table` on `case`; returns how many
/// there were.
pub fn check_winograd(table: &KernelTable, case: &ConvCase) -> Result<usize, TestCaseError> {
    let mut n = 0;
    for nb in [4, 8, 16, 32] {
        for plan in [ConvPlan::Winograd { nb }, ConvPlan::Winograd23 { nb }] {
            if let Some(k) = (table.conv)(&case.conv, plan) {
                check_conv_kernel(table.name, k, case)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn winograd_matches_reference(case in winograd_case()) {
        for t in tables() {
            let n = check_winograd(t, &case)?;
            // The x86 tables have F(4,3) and F(2,3), each for two channel blocks.
            if matches!(t.choice, KernelChoice::X86Avx2 | KernelChoice::X86Avx512) {
                prop_assert_eq!(n, 4, "{}", t.name);
            }
        }
    }

    #[test]
    fn conv_matches_reference(case in conv_case()) {
        for t in tables() {
            check_conv(t, &case)?;
        }
    }

    #[test]
    fn fc_matches_reference(case in fc_case()) {
        for t in tables() {
            check_fc(t, &case)?;
        }
    }

    #[test]
    fn pool_matches_reference(case in pool_case()) {
        for t in tables() {
            check_pool(t, &case)?;
        }
    }

    #[test]
    fn elementwise_matches_reference(case in elt_case()) {
        for t in tables() {
            check_elementwise(t, &case)?;
        }
    }
}

/// Measures the portable 3x3 and 1x1 convs of ResNet-18 size. Run with
/// `cargo test -p smof --release --lib -- --ignored --nocapture portable_conv_speed`.
#[test]
#[ignore]
fn portable_conv_speed() {
    let shapes = [
        ("3x3 56x56x64->64", 56, 64, 64, 3),
        ("1x1 28x28x128->128", 28, 128, 128, 1),
        ("3x3 14x14x256->256", 14, 256, 256, 3),
        ("1x1 56x56x64->256", 56, 64, 256, 1),
        ("3x3 7x7x512->512", 7, 512, 512, 3),
        ("1x1 7x7x160->960", 7, 160, 960, 1),
        ("7x7s2 224x224x3->64", 224, 3, 64, 7),
        ("dw3x3 112x112x32", 112, 32, 32, 3),
        ("dw3x3 56x56x144", 56, 144, 144, 3),
    ];
    for (label, hw, ic, oc, k) in shapes {
        let stride = if label.contains("s2") { 2 } else { 1 };
        let groups = if label.starts_with("dw") { ic } else { 1 };
        let case = make_conv_case(
            (groups, ic, oc),
            [k, k],
            [stride; 2],
            [1, 1],
            [k / 2; 4],
            (1, hw - 1, hw - 1),
            (0, 0),
            (true, false, Activation::Relu),
            (0.0, 1),
        );
        assert_eq!(case.xs.shape.h, hw);
        let data = ConvData::new(&case);
        let kernel = portable::TABLE.conv_kernel(&case.conv, case.xs.shape);
        let w = pack::pack(&data.w, &data.dims, kernel.layout);
        let mut y = vec![0.0; case.ys.len()];
        let flops = 2.0 * case.ys.shape.elems() as f64 * (ic / groups) as f64 * (k * k) as f64;
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            run_conv(kernel.run, &case, &data, &w, 0, &mut y, 0..case.ys.rows());
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{label:24} {:28} {:7.3} ms {:6.2} GFLOP/s",
            kernel.name,
            best * 1e3,
            flops / best / 1e9
        );
    }
}

/// Measures the conv kernels of every supported table at ResNet-18 / MobileNetV2 shapes. Run
/// with `cargo test -p smof --release --lib -- --ignored --nocapture table_conv_speed`.
#[test]
#[ignore]
fn table_conv_speed() {
    let shapes = [
        ("3x3 56x56x64->64", 56, 64, 64, 3),
        ("3x3 28x28x128->128", 28, 128, 128, 3),
        ("3x3 14x14x256->256", 14, 256, 256, 3),
        ("3x3 7x7x512->512", 7, 512, 512, 3),
        ("1x1 28x28x128->128", 28, 128, 128, 1),
        ("1x1 56x56x64->256", 56, 64, 256, 1),
        ("1x1 7x7x160->960", 7, 160, 960, 1),
        ("1x1 56x56x24->144", 56, 24, 144, 1),
        ("7x7s2 224x224x3->64", 224, 3, 64, 7),
        ("dw3x3 112x112x32", 112, 32, 32, 3),
        ("dw3x3 56x56x144", 56, 144, 144, 3),
    ];
    for t in tables() {
        for (label, hw, ic, oc, k) in shapes {
            let stride = if label.contains("s2") { 2 } else { 1 };
            let groups = if label.starts_with("dw") { ic } else { 1 };
            let case = make_conv_case(
                (groups, ic, oc),
                [k, k],
                [stride; 2],
                [1, 1],
                [k / 2; 4],
                (1, hw - 1, hw - 1),
                (0, 0),
                (true, false, Activation::Relu),
                (0.0, 1),
            );
            let data = ConvData::new(&case);
            let kernel = t.conv_kernel(&case.conv, case.xs.shape);
            let w = pack::pack(&data.w, &data.dims, kernel.layout);
            let scratch = (kernel.scratch_len)(&case.conv, case.xs, case.ys);
            let mut y = vec![0.0; case.ys.len()];
            let flops = 2.0 * case.ys.shape.elems() as f64 * (ic / groups) as f64 * (k * k) as f64;
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = std::time::Instant::now();
                run_conv(
                    kernel.run,
                    &case,
                    &data,
                    &w,
                    scratch,
                    &mut y,
                    0..case.ys.rows(),
                );
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{:14} {label:22} {:24} {:8.3} ms {:6.1} GFLOP/s",
                t.name,
                kernel.name,
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}

/// Times dense and Winograd kernels of every supported table on the 3x3 stride-1 layers of
/// ResNet-18 (best of 20, in dense-equivalent GFLOP/s): the measurement behind the Winograd
/// rule of `docs/decisions.md`. Run with
/// `cargo test -p smof --release --lib -- --ignored --nocapture winograd_speed`.
#[test]
#[ignore]
fn winograd_speed() {
    for t in tables() {
        let shapes = [
            (56u32, 64u32),
            (28, 128),
            (14, 256),
            (7, 512),
            (7, 256),
            (7, 128),
            (7, 64),
            (10, 256),
            (10, 64),
            (14, 64),
            (14, 128),
        ];
        for (hw, c) in shapes {
            let case = make_conv_case(
                (1, c, c),
                [3, 3],
                [1, 1],
                [1, 1],
                [1; 4],
                (1, hw - 1, hw - 1),
                (0, 0),
                (true, false, Activation::Relu),
                (0.0, 1),
            );
            let data = ConvData::new(&case);
            let flops = 2.0 * case.ys.shape.elems() as f64 * c as f64 * 9.0;
            for nb in [8u16, 16, 32] {
                let plans = [
                    ConvPlan::Dense { nb },
                    ConvPlan::Winograd { nb },
                    ConvPlan::Winograd23 { nb },
                ];
                for plan in plans {
                    let Some(kernel) = (t.conv)(&case.conv, plan) else {
                        continue;
                    };
                    let w = pack::pack(&data.w, &data.dims, kernel.layout);
                    let scratch = (kernel.scratch_len)(&case.conv, case.xs, case.ys);
                    let mut y = vec![0.0; case.ys.len()];
                    let mut best = f64::MAX;
                    for _ in 0..20 {
                        let t0 = std::time::Instant::now();
                        run_conv(
                            kernel.run,
                            &case,
                            &data,
                            &w,
                            scratch,
                            &mut y,
                            0..case.ys.rows(),
                        );
                        best = best.min(t0.elapsed().as_secs_f64());
                    }
                    println!(
                        "{:14} {hw:3}x{hw:<3}x{c:<4} {:24} {:8.3} ms {:6.1} GFLOP/s",
                        t.name,
                        kernel.name,
                        best * 1e3,
                        flops / best / 1e9
                    );
                }
            }
        }
    }
}
