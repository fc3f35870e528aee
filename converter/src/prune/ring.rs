//! Kernel rings: taking the outer ring off a KxK conv, which makes it a dense (K-2)x(K-2)
//! conv with padding `p - d` and the same output shape.

use crate::ir::ConvOp;

/// Why a conv's ring cannot be removed, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingBlock {
    /// The kernel is smaller than 3 on some axis or has an even size.
    TooSmall,
    /// The kernel is not square (rings are taken from both axes at once).
    NotSquare,
    /// Some padding is below the dilation, so the smaller kernel would change the output
    /// size; such layers are left out.
    PadBelowDilation,
}

impl RingBlock {
    /// A short reason for reports.
    pub fn reason(self) -> &'static str {
        match self {
            RingBlock::TooSmall => "kernel already 1x1 or even",
            RingBlock::NotSquare => "kernel not square",
            RingBlock::PadBelowDilation => "padding below dilation (output size would change)",
        }
    }
}

/// Whether the outer ring of `conv` can be removed without changing its output shape.
pub fn ring_removable(conv: &ConvOp) -> Result<(), RingBlock> {
    let [kh, kw] = conv.kernel();
    if kh != kw {
        return Err(RingBlock::NotSquare);
    }
    if kh < 3 || kh % 2 == 0 {
        return Err(RingBlock::TooSmall);
    }
    let [dh, dw] = conv.dilation;
    let [t, l, b, r] = conv.pads;
    if t < dh || b < dh || l < dw || r < dw {
        return Err(RingBlock::PadBelowDilation);
    }
    Ok(())
}

/// Sum of squares of the outer-ring weights, and of all weights.
pub fn ring_energy(conv: &ConvOp) -> (f64, f64) {
    let [k, _] = conv.kernel();
    let (mut ring, mut all) = (0.0f64, 0.0f64);
    for (i, &w) in conv.weight.data.iter().enumerate() {
        let e = w as f64 * w as f64;
        all += e;
        let (y, x) = ((i / k) % k, i % k);
        if y == 0 || x == 0 || y == k - 1 || x == k - 1 {
            ring += e;
        }
    }
    (ring, all)
}

/// True when every weight of the outer ring is exactly zero.
pub fn ring_is_zero(conv: &ConvOp) -> bool {
    ring_energy(conv).0 == 0.0
}

/// Removes the outer ring: the kernel goes from K to K-2 on both axes and each padding
/// shrinks by the dilation. The caller checked [`ring_removable`].
pub fn remove_ring(conv: &mut ConvOp) {
    let [k, _] = conv.kernel();
    let (oc, icg) = (conv.weight.dims[0], conv.weight.dims[1]);
    let nk = k - 2;
    let mut data = Vec::with_capacity(oc * icg * nk * nk);
    for plane in conv.weight.data.chunks_exact(k * k) {
        for y in 1..k - 1 {
            data.extend_from_slice(&plane[y * k + 1..y * k + k - 1]);
        }
    }
    conv.weight.dims = vec![oc, icg, nk, nk];
    conv.weight.data = data;
    let [dh, dw] = conv.dilation;
    conv.pads = [
        conv.pads[0] - dh,
        conv.pads[1] - dw,
        conv.pads[2] - dh,
        conv.pads[3] - dw,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Weight};

    fn conv(k: usize, pad: usize, dil: usize) -> ConvOp {
        ConvOp {
            weight: Weight {
                dims: vec![2, 3, k, k],
                data: (0..2 * 3 * k * k).map(|i| i as f32).collect(),
            },
            bias: None,
            group: 1,
            stride: [1, 1],
            dilation: [dil, dil],
            pads: [pad; 4],
            act: Activation::None,
        }
    }

    #[test]
    fn removing_a_ring_keeps_the_inner_taps_and_shrinks_padding() {
        let mut c = conv(5, 4, 2);
        ring_removable(&c).unwrap();
        remove_ring(&mut c);
        assert_eq!(c.weight.dims, vec![2, 3, 3, 3]);
        assert_eq!(c.pads, [2; 4]);
        // The first plane's inner 3x3 of a 5x5 numbered 0..25.
        assert_eq!(
            &c.weight.data[..9],
            &[6.0, 7.0, 8.0, 11.0, 12.0, 13.0, 16.0, 17.0, 18.0]
        );
        // The second plane starts at 25.
        assert_eq!(c.weight.data[9], 31.0);
    }

    #[test]
    fn blocked_cases_say_why() {
        assert_eq!(ring_removable(&conv(1, 0, 1)), Err(RingBlock::TooSmall));
        assert_eq!(
            ring_removable(&conv(3, 1, 2)),
            Err(RingBlock::PadBelowDilation)
        );
        assert_eq!(
            ring_removable(&conv(3, 0, 1)),
            Err(RingBlock::PadBelowDilation)
        );
        let mut c = conv(3, 1, 1);
        c.weight.dims = vec![2, 3, 3, 1];
        assert_eq!(ring_removable(&c), Err(RingBlock::NotSquare));
    }

    #[test]
    fn ring_energy_counts_only_the_border() {
        let mut c = conv(3, 1, 1);
        c.weight.data.iter_mut().for_each(|w| *w = 0.0);
        c.weight.data[4] = 2.0; // centre of the first plane
        assert_eq!(ring_energy(&c), (0.0, 4.0));
        assert!(ring_is_zero(&c));
        c.weight.data[9] = 1.0; // corner of the second plane
        assert_eq!(ring_energy(&c), (1.0, 5.0));
    }
}
