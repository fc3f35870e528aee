//! Conv geometry unpacked once per call into `usize`s, with the input-coordinate helpers:
//! one definition for every kernel table.

use crate::graph::Conv;
use crate::kernels::Act4;

/// Everything about a conv's shape a kernel loop needs, as `usize`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub ih: usize,
    pub iw: usize,
    pub ic: usize,
    pub xcs: usize,
    pub oh: usize,
    pub ow: usize,
    pub oc: usize,
    pub ycs: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
}

impl Geom {
    /// Unpacks `conv` with input geometry `xs` and output geometry `ys`.
    pub fn new(conv: &Conv, xs: Act4, ys: Act4) -> Self {
        let u = |v: u32| v as usize;
        Geom {
            ih: u(xs.shape.h),
            iw: u(xs.shape.w),
            ic: u(xs.shape.c),
            xcs: xs.cs,
            oh: u(ys.shape.h),
            ow: u(ys.shape.w),
            oc: u(ys.shape.c),
            ycs: ys.cs,
            kh: u(conv.kernel[0]),
            kw: u(conv.kernel[1]),
            sh: u(conv.stride[0]),
            sw: u(conv.stride[1]),
            dh: u(conv.dilation[0]),
            dw: u(conv.dilation[1]),
            pt: u(conv.pads[0]),
            pl: u(conv.pads[1]),
        }
    }

    /// Input row read by output row `oy` at tap row `ky`, or `None` when it is padding.
    #[inline(always)]
    pub fn in_y(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&v| v < self.ih)
    }

    /// Input column read by output column `ox` at tap column `kx`, or `None` when it is padding.
    #[inline(always)]
    pub fn in_x(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx * self.dw)
            .checked_sub(self.pl)
            .filter(|&v| v < self.iw)
    }

    /// The output columns whose every tap column is inside the input (no left or right
    /// padding): a contiguous range, possibly empty, within `0..ow`.
    #[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
    #[inline(always)]
    pub fn interior_x(&self) -> std::ops::Range<usize> {
        let lo = self.pl.div_ceil(self.sw).min(self.ow);
        // Last tap of column ox: ox*sw + (kw-1)*dw - pl <= iw - 1.
        let reach = (self.kw - 1) * self.dw;
        let hi = match (self.iw + self.pl).checked_sub(reach + 1) {
            Some(v) => (v / self.sw + 1).min(self.ow),
            None => 0,
        };
        lo..hi.max(lo)
    }

    /// Splits an output row index (over `n * oh`) into `(n, oy)`.
    #[inline(always)]
    pub fn row(&self, r: usize) -> (usize, usize) {
        (r / self.oh, r % self.oh)
    }
}

/// The `m x m` output tiles of a Winograd conv, numbered in raster order over the images
/// (tile rows of every image in turn): the tiling shared by the x86 and NEON kernels.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) struct WinogradTiles {
    m: usize,
    oh: usize,
    th: usize,
    tw: usize,
    pt: usize,
    pl: usize,
}

/// Where one Winograd tile sits.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) struct TileAt {
    /// Image.
    pub n: usize,
    /// Tile row and column in the image.
    pub ty: usize,
    pub tx: usize,
    /// Input row and column of the patch's top-left corner (negative in the padding).
    pub iy0: isize,
    pub ix0: isize,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl WinogradTiles {
    /// The `m x m` tiles of the output of `g`.
    pub fn new(m: usize, g: &Geom) -> Self {
        WinogradTiles {
            m,
            oh: g.oh,
            th: g.oh.div_ceil(m),
            tw: g.ow.div_ceil(m),
            pt: g.pt,
            pl: g.pl,
        }
    }

    /// The tiles that hold the output rows `rows` (rows over all images, non-empty), as one
    /// flat range of tile numbers: whole tile rows.
    pub fn covering(&self, rows: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let tile_row = |r: usize| (r / self.oh) * self.th + (r % self.oh) / self.m;
        tile_row(rows.start) * self.tw..(tile_row(rows.end - 1) + 1) * self.tw
    }

    /// Where tile `f` sits.
    pub fn at(&self, f: usize) -> TileAt {
        let (tr, tx) = (f / self.tw, f % self.tw);
        let (n, ty) = (tr / self.th, tr % self.th);
        TileAt {
            n,
            ty,
            tx,
            iy0: (ty * self.m) as isize - self.pt as isize,
            ix0: (tx * self.m) as isize - self.pl as isize,
        }
    }
}

/// Writes zeros into the pad lanes `c..cs` of `pixels` consecutive pixels starting at
/// element `at` (a pixel boundary).
#[inline]
pub(crate) fn zero_pad_lanes(y: &mut [f32], at: usize, pixels: usize, c: usize, cs: usize) {
    if cs > c {
        for px in y[at..at + pixels * cs].chunks_exact_mut(cs) {
            px[c..].fill(0.0);
        }
    }
}
