//! Generic scalar convolution with canonical weights, for grouped convs.
//!
//! Weights are `[OC][IC/g][KH][KW]`; any groups (grouped, depthwise with a channel
//! multiplier), kernel, stride, dilation and padding.

use super::geom::Geom;
use crate::kernels::ConvArgs;

/// Computes `a.rows` of any conv from canonical weights.
pub(crate) fn conv_generic(a: &mut ConvArgs) {
    let g = Geom::new(a.conv, a.xs, a.ys);
    let groups = (a.conv.groups as usize).max(1);
    let (icg, ocg) = (g.ic / groups, (g.oc / groups).max(1));
    let taps = g.kh * g.kw;
    debug_assert!(a.w.len() >= g.oc * icg * taps);
    debug_assert!(a.x.len() >= a.xs.len() && a.y.len() >= a.ys.len());
    let act = a.conv.act;
    for row in a.rows.clone() {
        let (n, oy) = g.row(row);
        for ox in 0..g.ow {
            let yp = (row * g.ow + ox) * g.ycs;
            for o in 0..g.oc {
                let c0 = (o / ocg) * icg;
                let mut s = a.bias.map_or(0.0, |b| b[o]);
                for ky in 0..g.kh {
                    let Some(iy) = g.in_y(oy, ky) else { continue };
                    for kx in 0..g.kw {
                        let Some(ix) = g.in_x(ox, kx) else { continue };
                        let xp = ((n * g.ih + iy) * g.iw + ix) * g.xcs + c0;
                        let wp = o * icg * taps + ky * g.kw + kx;
                        for i in 0..icg {
                            s += a.x[xp + i] * a.w[wp + i * taps];
                        }
                    }
                }
                if let Some(r) = a.residual {
                    s += r[yp + o];
                }
                a.y[yp + o] = act.apply(s);
            }
            a.y[yp + g.oc..yp + g.ycs].fill(0.0);
        }
    }
}
