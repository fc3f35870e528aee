//! Conv chains: consecutive convs whose intermediate activations are computed a band of rows
//! at a time into small sliding windows instead of whole tensors in the arena.
//!
//! The inverted residual blocks of MobileNet-style models (1x1 expand, depthwise, 1x1
//! project) widen the activations six-fold between two narrow ones. Run layer by layer, the
//! wide tensors (4.8 MB for MobileNetV2's first expand) leave the caches between the
//! layers, and the convs wait on memory. Run as a chain, each band of the final output rows
//! pulls just the rows it needs through the chain, and the wide rows live in windows of a
//! few hundred KiB that stay in L2 (`docs/decisions.md`, "Conv chains").
//!
//! A max pool may be a member too, after the first conv (the stem conv and max pool of
//! ResNet and SqueezeNet: a 3 MB activation between them that the pool reads once).
//!
//! Every member runs its usual kernel on a band: the window is handed to the kernel as a
//! tensor of a few rows with the top padding adjusted, so the results are bit-identical to
//! the unchained run. Rows are never computed twice: the rows a band still needs stay in the
//! window, and slide to its front when it fills.

use crate::graph::{Conv, Layout, Pool, PoolKind};
use crate::kernels::{Act4, ConvArgs, ConvKernel};
use std::ops::Range;

/// Window bytes the band size aims at (all windows of a chain together).
const WINDOW_BUDGET_BYTES: usize = 512 << 10;

/// Window rows per row a band needs: rows slide to the front of a window only when it is
/// full, so the copying is spread over `SLACK - 1` bands.
const SLACK: usize = 2;

/// Largest member weight (floats) a chain takes: every band reads all of its weights again.
/// ConvNeXt-Tiny's first-stage 96 <-> 384 pointwise pair (36,864 each) is in; its second
/// stage's 192 <-> 768 pair, chained, was no faster (`docs/decisions.md`, session 29).
const MAX_MEMBER_WEIGHTS: usize = 40 << 10;

/// What a member computes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    /// A conv, its weights' stored layout and their length in floats.
    Conv {
        /// The conv's parameters.
        conv: Conv,
        /// Its weights' stored layout.
        layout: Layout,
        /// Floats in its weights.
        weight_len: usize,
    },
    /// A max pool. (An average pool's divisor may count the padding at the tensor's
    /// bottom, which a band of rows does not see: average pools are not members.)
    MaxPool(Pool),
}

impl Stage {
    /// The stage of pool `p`: `None` unless it is a max pool.
    pub(crate) fn pool(p: &Pool) -> Option<Stage> {
        matches!(p.kind, PoolKind::Max).then_some(Stage::MaxPool(*p))
    }

    /// Its window along the height.
    fn vertical(&self) -> Vertical {
        match self {
            Stage::Conv { conv, .. } => Vertical::of_conv(conv),
            Stage::MaxPool(p) => Vertical::of_pool(p),
        }
    }
}

/// One member of a chain as the planner sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    /// What it computes.
    pub stage: Stage,
    /// Its input geometry.
    pub xs: Act4,
    /// Its output geometry.
    pub ys: Act4,
    /// Its input tensor.
    pub input: usize,
    /// Its output tensor.
    pub output: usize,
    /// Whether it adds a residual input.
    pub residual: bool,
}

/// Whether `m` may be a member of a chain at all.
fn eligible(m: &Member) -> bool {
    let Vertical { ext, s, pt } = m.stage.vertical();
    let (ih, oh) = (m.xs.shape.h as usize, m.ys.shape.h as usize);
    // Every output row reads at least one input row (a band never starts in the padding).
    let sane = pt < ext && oh >= 1 && (oh - 1) * s < ih + pt;
    let runs_on_bands = match m.stage {
        Stage::Conv {
            layout, weight_len, ..
        } => {
            !matches!(layout, Layout::WinogradF43(_) | Layout::WinogradF23(_))
                && weight_len <= MAX_MEMBER_WEIGHTS
        }
        Stage::MaxPool(_) => true,
    };
    sane && runs_on_bands && m.xs.shape.n == m.ys.shape.n
}

/// Groups `nodes` (every node of the graph in order: `Some` for convs and max pools) into
/// chains of at least two consecutive members, the first a conv, each feeding the next
/// through a tensor that nothing else reads (`readers[t]` counts the readers of tensor `t`,
/// graph outputs included) and that holds at least `min_bytes`. Returns each chain's node range.
pub(crate) fn find(
    nodes: &[Option<Member>],
    readers: &[usize],
    min_bytes: usize,
) -> Vec<Range<usize>> {
    let mut chains = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let mut end = i + 1;
        let head =
            |m: &&Member| eligible(m) && !m.residual && matches!(m.stage, Stage::Conv { .. });
        if let Some(first) = nodes[i].as_ref().filter(head) {
            let mut prev = first;
            while let Some(next) = nodes
                .get(end)
                .and_then(|n| n.as_ref())
                .filter(|_| end - i < MAX_LINKS)
            {
                let joins = eligible(next)
                    && next.input == prev.output
                    && readers[prev.output] == 1
                    && prev.ys.len() * 4 >= min_bytes
                    && next.xs.shape.n == prev.ys.shape.n;
                if !joins {
                    break;
                }
                prev = next;
                end += 1;
                // A residual is read at the final output's rows only: it ends the chain.
                if next.residual {
                    break;
                }
            }
        }
        if end - i >= 2 {
            chains.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    chains
}

/// A member's window along the height: its dilated extent, its stride and the padding
/// above the input.
#[derive(Clone, Copy)]
struct Vertical {
    ext: usize,
    s: usize,
    pt: usize,
}

impl Vertical {
    /// A window of `k` rows `dilation` apart, moving by `stride`, `pad` rows above the input.
    fn new(k: u32, stride: u32, dilation: u32, pad: u32) -> Vertical {
        Vertical {
            ext: (k.max(1) as usize - 1) * dilation as usize + 1,
            s: stride as usize,
            pt: pad as usize,
        }
    }

    /// The window of `conv`.
    fn of_conv(c: &Conv) -> Vertical {
        Vertical::new(c.kernel[0], c.stride[0], c.dilation[0], c.pads[0])
    }

    /// The window of pool `p`.
    fn of_pool(p: &Pool) -> Vertical {
        Vertical::new(p.kernel[0], p.stride[0], p.dilation[0], p.pads[0])
    }

    /// Input rows (of one image of height `ih`) that output rows `o` read.
    fn input_rows(self, ih: usize, o: &Range<usize>) -> Range<usize> {
        if o.is_empty() {
            return 0..0;
        }
        let start = (o.start * self.s).saturating_sub(self.pt).min(ih);
        let end = ((o.end - 1) * self.s + self.ext)
            .saturating_sub(self.pt)
            .min(ih);
        start..end.max(start)
    }

    /// The most input rows `rows` output rows can read (unclipped).
    fn input_rows_max(self, ih: usize, rows: usize) -> usize {
        ((rows.max(1) - 1) * self.s + self.ext).min(ih)
    }
}

/// A sliding window over one intermediate tensor: up to `cap` consecutive rows of one image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Offset in the chain's scratch, in floats.
    pub offset: usize,
    /// Rows it holds at most (`SLACK` times the most one band needs).
    pub cap: usize,
    /// Floats per row (`w * cs`).
    pub row_len: usize,
}

/// A planned chain: its members and windows.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    /// Members.
    pub members: usize,
    /// Final output rows computed per band.
    pub band: usize,
    /// One window per intermediate tensor (the output of every member but the last).
    pub windows: Vec<Window>,
    /// Floats of all windows: the chain's share of a participant's scratch.
    pub windows_len: usize,
}

impl Chain {
    /// Plans the windows of the chain `members` (each feeding the next).
    pub(crate) fn plan(members: &[Member]) -> Chain {
        let m = members.len();
        let last = &members[m - 1];
        let oh = last.ys.shape.h as usize;
        // Window rows for a band of `b` final rows, last intermediate first.
        let caps = |b: usize| {
            let mut caps = vec![0usize; m - 1];
            let mut rows = b;
            for j in (0..m - 1).rev() {
                let consumer = &members[j + 1];
                let ih = consumer.xs.shape.h as usize;
                rows = consumer.stage.vertical().input_rows_max(ih, rows);
                caps[j] = rows;
            }
            caps
        };
        let bytes = |caps: &[usize]| -> usize {
            caps.iter()
                .zip(members)
                .map(|(&c, mb)| c * SLACK * mb.ys.shape.w as usize * mb.ys.cs * 4)
                .sum()
        };
        let mut band = 1;
        while band < oh && bytes(&caps(band + 1)) <= WINDOW_BUDGET_BYTES {
            band += 1;
        }
        let mut windows = Vec::with_capacity(m - 1);
        let mut offset = 0;
        for (j, cap) in caps(band).into_iter().enumerate() {
            let cap = cap * SLACK;
            let mb = &members[j];
            let row_len = mb.ys.shape.w as usize * mb.ys.cs;
            windows.push(Window {
                offset,
                cap,
                row_len,
            });
            // Every window, and the members' scratch after them, on a 64-byte boundary of
            // the (aligned) scratch area.
            offset += (cap * row_len).next_multiple_of(crate::plan::ALIGN_FLOATS);
        }
        Chain {
            members: m,
            band,
            windows,
            windows_len: offset,
        }
    }
}

/// What a member runs: a conv kernel with what [`ConvArgs`] needs besides the activations,
/// or a max pool with its table's kernel.
pub(crate) enum LinkOp<'a> {
    /// A conv.
    Conv {
        /// The conv.
        conv: &'a Conv,
        /// Its kernel.
        k: &'a ConvKernel,
        /// Its weights.
        w: &'a [f32],
        /// Its bias.
        bias: Option<&'a [f32]>,
    },
    /// A max pool.
    MaxPool {
        /// The pool.
        pool: &'a Pool,
        /// The kernel table's pool.
        run: crate::kernels::PoolFn,
        /// The output channel it writes from (a part of a concatenation read in place);
        /// 0 in a chain.
        c0: usize,
    },
}

/// One member, ready to run.
pub(crate) struct Link<'a> {
    /// What it runs.
    pub op: LinkOp<'a>,
    /// Its input geometry (of the whole tensor).
    pub xs: Act4,
    /// Its output geometry (of the whole tensor).
    pub ys: Act4,
}

impl Link<'_> {
    /// Its window along the height.
    fn vertical(&self) -> Vertical {
        match self.op {
            LinkOp::Conv { conv, .. } => Vertical::of_conv(conv),
            LinkOp::MaxPool { pool, .. } => Vertical::of_pool(pool),
        }
    }
}

/// Rows `rows` (of one image) of a tensor with geometry `g`, as a one-image geometry.
fn band_geom(g: Act4, rows: usize) -> Act4 {
    let mut shape = g.shape;
    shape.n = 1;
    shape.h = rows as u32;
    Act4 { shape, cs: g.cs }
}

/// Runs `link` for output rows `o` of one image. `x` holds input rows `x_rows` of that image
/// (a window, or the image itself), `y` output rows from `y0` on; `residual` (rows from `y0`)
/// is added at the store.
#[allow(clippy::too_many_arguments)]
fn run_band(
    link: &Link,
    x: &[f32],
    x_rows: Range<usize>,
    y: &mut [f32],
    y0: usize,
    residual: Option<&[f32]>,
    o: Range<usize>,
    scratch: &mut [f32],
) {
    let ih = link.xs.shape.h as usize;
    let v = link.vertical();
    let need = v.input_rows(ih, &o);
    debug_assert!(x_rows.start <= need.start && need.end <= x_rows.end);
    let xrow = link.xs.shape.w as usize * link.xs.cs;
    let yrow = link.ys.shape.w as usize * link.ys.cs;
    let x = &x[(need.start - x_rows.start) * xrow..(need.end - x_rows.start) * xrow];
    let y = &mut y[(o.start - y0) * yrow..(o.end - y0) * yrow];
    let residual = residual.map(|r| &r[(o.start - y0) * yrow..(o.end - y0) * yrow]);
    // The band's first output row reads input row `o.start * s - pt + ky`: relative to the
    // band's first input row, the top padding is what remains of `pt` above it.
    let top = (v.pt + need.start - o.start * v.s) as u32;
    let (xs, ys) = (band_geom(link.xs, need.len()), band_geom(link.ys, o.len()));
    match link.op {
        LinkOp::Conv { conv, k, w, bias } => {
            let mut conv = *conv;
            conv.pads[0] = top;
            (k.run)(&mut ConvArgs {
                conv: &conv,
                x,
                xs,
                w,
                bias,
                residual,
                y,
                ys,
                scratch,
                rows: 0..o.len(),
                parts: &[],
            });
        }
        LinkOp::MaxPool { pool, run, c0 } => {
            debug_assert!(residual.is_none());
            let mut pool = *pool;
            pool.pads[0] = top;
            run(&pool, x, xs, y, ys, c0);
        }
    }
}

/// Output rows `o` of a max pool outside a chain, on one image: `link`'s `x` and `y` are the
/// whole input and output. How a standalone max pool is split over threads.
pub(crate) fn run_rows(link: &Link, x: &[f32], y: &mut [f32], o: Range<usize>) {
    debug_assert!(link.xs.shape.n == 1 && matches!(link.op, LinkOp::MaxPool { .. }));
    run_band(link, x, 0..link.xs.shape.h as usize, y, 0, None, o, &mut []);
}

/// Runs the chain whose member `j` is `link(j)` for the final output rows `rows` (over
/// `n * oh`): `x` is the first
/// member's whole input, `y` the last member's whole output (plus `residual`, the same
/// geometry). `scratch` holds the windows (`chain.windows_len` floats) and then the
/// members' own scratch.
pub(crate) fn run<'a>(
    chain: &Chain,
    link: impl Fn(usize) -> Link<'a>,
    x: &[f32],
    y: &mut [f32],
    residual: Option<&[f32]>,
    rows: Range<usize>,
    scratch: &mut [f32],
) {
    let m = chain.members;
    let (windows, kscratch) = scratch.split_at_mut(chain.windows_len);
    let (first, last) = (link(0), link(m - 1));
    let (ih, oh) = (first.xs.shape.h as usize, last.ys.shape.h as usize);
    let ximage = ih * first.xs.shape.w as usize * first.xs.cs;
    let yimage = oh * last.ys.shape.w as usize * last.ys.cs;
    let mut r = rows.start;
    while r < rows.end {
        let n = r / oh;
        let local = r % oh..(rows.end - n * oh).min(oh);
        r = n * oh + local.end;
        let x = &x[n * ximage..(n + 1) * ximage];
        let y = &mut y[n * yimage..(n + 1) * yimage];
        let residual = residual.map(|res| &res[n * yimage..(n + 1) * yimage]);
        // Rows each window holds.
        let mut have: [Range<usize>; MAX_LINKS] = std::array::from_fn(|_| 0..0);
        let mut o0 = local.start;
        while o0 < local.end {
            let o = o0..(o0 + chain.band).min(local.end);
            o0 = o.end;
            // Rows of every intermediate this band needs, last first.
            let mut need: [Range<usize>; MAX_LINKS] = std::array::from_fn(|_| 0..0);
            let mut want = o.clone();
            for j in (0..m - 1).rev() {
                let consumer = link(j + 1);
                need[j] = consumer
                    .vertical()
                    .input_rows(consumer.xs.shape.h as usize, &want);
                // Only rows the window lacks are computed.
                want = need[j].start.max(have[j].end)..need[j].end;
            }
            for j in 0..m - 1 {
                let win = chain.windows[j];
                if need[j].start >= have[j].end {
                    // Nothing to keep: the window starts again at the first row needed.
                    have[j] = need[j].start..need[j].start;
                } else if need[j].end - have[j].start > win.cap {
                    // Full: the rows still needed slide to the front.
                    let from = (need[j].start - have[j].start) * win.row_len;
                    let keep = (have[j].end - need[j].start) * win.row_len;
                    windows[win.offset..win.offset + win.cap * win.row_len]
                        .copy_within(from..from + keep, 0);
                    have[j].start = need[j].start;
                }
                let new = have[j].end..need[j].end;
                if !new.is_empty() {
                    // The window of the previous member (or the image) is read while this
                    // one is written: split the windows apart.
                    let (before, after) = windows.split_at_mut(win.offset);
                    let out = &mut after[..win.cap * win.row_len];
                    if j == 0 {
                        run_band(&first, x, 0..ih, out, have[j].start, None, new, kscratch);
                    } else {
                        let pw = chain.windows[j - 1];
                        let prev = &before[pw.offset..pw.offset + pw.cap * pw.row_len];
                        run_band(
                            &link(j),
                            prev,
                            have[j - 1].clone(),
                            out,
                            have[j].start,
                            None,
                            new,
                            kscratch,
                        );
                    }
                }
                have[j].end = need[j].end;
            }
            let pw = chain.windows[m - 2];
            let prev = &windows[pw.offset..pw.offset + pw.cap * pw.row_len];
            run_band(
                &last,
                prev,
                have[m - 2].clone(),
                y,
                0,
                residual,
                o,
                kscratch,
            );
        }
    }
}

/// Most members of one chain.
pub(crate) const MAX_LINKS: usize = 8;
