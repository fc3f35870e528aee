//! The input side shared by the reduced-precision pointwise kernels (bf16 on x86 and aarch64,
//! f16 on aarch64): the checks of a 1x1 conv's arguments, its inputs (the conv's input, then
//! the further parts of a concatenation read in place), and the conversion of a chunk of
//! their pixels into rows of scratch, each input at its channel offset in the row.

use super::{ConvArgs, MAX_CONV_PARTS};

/// One input of the conv: pixels `cs` floats apart from `x`, `k` channels each.
#[derive(Clone, Copy)]
pub(crate) struct Input {
    pub x: *const f32,
    pub cs: usize,
    pub k: usize,
}

/// The checked inputs of a pointwise conv, in channel order.
pub(crate) struct Inputs {
    list: [Input; MAX_CONV_PARTS],
    n: usize,
}

impl Inputs {
    /// The inputs of `a`, after checking what every reduced-precision pointwise kernel relies
    /// on: an ungrouped 1x1 conv of stride 1 without padding, an output of `out_c` channels
    /// within its buffer, bias, residual and rows within bounds, and inputs (at most
    /// [`MAX_CONV_PARTS`]) of the output's pixels whose channels add up to `in_c`, each
    /// readable up to its last pixel's channels, every part but the last of a channel count
    /// that is a multiple of `multiple` (2 for the bf16 kernels, which round channels in
    /// pairs; 4 for the int8 ones).
    pub(crate) fn of(a: &ConvArgs, multiple: usize) -> Inputs {
        let c = a.conv;
        let (ic, oc) = (c.in_c as usize, c.out_c as usize);
        assert!(c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] && c.groups == 1);
        assert!(a.ys.shape.c as usize == oc && a.ys.cs >= oc);
        assert!(a.y.len() >= a.ys.len());
        assert!(a.bias.is_none_or(|b| b.len() >= oc));
        assert!(a.residual.is_none_or(|r| r.len() >= a.ys.len()));
        assert!(a.rows.end <= a.ys.rows());
        let empty = Input {
            x: std::ptr::null(),
            cs: 0,
            k: 0,
        };
        let mut list = [empty; MAX_CONV_PARTS];
        let n = 1 + a.parts.len();
        assert!(n <= MAX_CONV_PARTS);
        let mut c0 = 0;
        for (j, (x, xs)) in std::iter::once((a.x, a.xs))
            .chain(a.parts.iter().copied())
            .enumerate()
        {
            let k = xs.shape.c as usize;
            // Floats the reads reach: the last pixel's channels, not its pad lanes (a part
            // may be a channel range of a wider tensor, ending before its stride does).
            let reach = xs.len() - (xs.cs - k.min(xs.cs)).min(xs.len());
            assert!(x.len() >= reach && xs.cs >= k);
            assert!(j + 1 == n || k.is_multiple_of(multiple));
            assert!(xs.shape.n == a.ys.shape.n && xs.shape.h == a.ys.shape.h);
            assert!(xs.shape.w == a.ys.shape.w);
            list[j] = Input {
                x: x.as_ptr(),
                cs: xs.cs,
                k,
            };
            c0 += k;
        }
        assert!(c0 == ic);
        Inputs { list, n }
    }

    /// Calls `f(x, k, c0)` for pixel `p` of every input, as [`Inputs::pixel`] gives them; with
    /// one input (no concatenation), straight from it (the loop over the parts otherwise
    /// costs more than a small pixel's work).
    ///
    /// # Safety
    /// `p` is a pixel of the inputs.
    #[inline(always)]
    pub(crate) unsafe fn for_each_part(
        &self,
        p: usize,
        mut f: impl FnMut(*const f32, usize, usize),
    ) {
        if self.n == 1 {
            let one = &self.list[0];
            f(one.x.add(p * one.cs), one.k, 0);
        } else {
            for (x, k, c0) in self.pixel(p) {
                f(x, k, c0);
            }
        }
    }

    /// Pixel `p` of every input, in channel order: its first channel's address, its channel
    /// count, and the channel of the conv's input it starts at.
    ///
    /// # Safety
    /// `p` is a pixel of the inputs.
    #[inline(always)]
    pub(crate) unsafe fn pixel(
        &self,
        p: usize,
    ) -> impl Iterator<Item = (*const f32, usize, usize)> + '_ {
        let mut c0 = 0;
        self.list[..self.n].iter().map(move |i| {
            let at = c0;
            c0 += i.k;
            (i.x.add(p * i.cs), i.k, at)
        })
    }

    /// Converts pixels `pixels` of every input into the rows at `rows` (`stride` elements
    /// apart, the first for `pixels.start`): `convert(x, k, at)` writes the `k` channels at `x`
    /// from `at` on, where an input whose first channel is `c0` starts at element
    /// `c0 / per_element` of its row (`per_element` channels per element: 2 for words of bf16
    /// pairs, 1 for halves). An input may write past its channels; the next one overwrites
    /// that, and the row's stride leaves room for the last one's.
    ///
    /// # Safety
    /// Every pixel of `pixels` is a pixel of the inputs; `rows` is valid for
    /// `pixels.len() * stride` elements, and `convert` writes within `stride` elements of a
    /// row from the offset of any input.
    #[inline(always)]
    pub(crate) unsafe fn convert<T>(
        &self,
        pixels: std::ops::Range<usize>,
        (rows, stride, per_element): (*mut T, usize, usize),
        convert: impl Fn(*const f32, usize, *mut T),
    ) {
        for p in pixels.clone() {
            let row = rows.add((p - pixels.start) * stride);
            for (x, k, c0) in self.pixel(p) {
                convert(x, k, row.add(c0 / per_element));
            }
        }
    }
}
