//! `--plot`: an SVG bar chart of every conv layer's FLOPs before and after pruning.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use smof_converter::prune::PruneReport;
use std::path::Path;

/// Writes the chart: grey bars are the dense layer's MFLOPs, blue bars the pruned ones;
/// the x axis is the layer's position in the model.
pub fn write_svg(path: &Path, r: &PruneReport) -> Result<()> {
    let n = r.layers.len().max(1);
    let top = r
        .layers
        .iter()
        .map(|l| l.flops_before as f64 / 1e6)
        .fold(1e-3, f64::max)
        * 1.05;
    let width = (160 + 14 * n).clamp(640, 2400) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let title = format!(
        "MFLOPs per conv layer: dense (grey) and pruned (blue), {:.3} of the FLOPs kept",
        r.flops_after as f64 / r.flops_before.max(1) as f64
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("layer")
        .y_desc("MFLOPs")
        .disable_x_mesh()
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let bars = |before: bool| {
        r.layers.iter().enumerate().map(move |(i, l)| {
            let (x0, f, style) = if before {
                (
                    i as f64 + 0.1,
                    l.flops_before,
                    RGBColor(180, 180, 180).filled(),
                )
            } else {
                (
                    i as f64 + 0.45,
                    l.flops_after,
                    RGBColor(40, 90, 200).filled(),
                )
            };
            Rectangle::new([(x0, 0.0), (x0 + 0.4, f as f64 / 1e6)], style)
        })
    };
    chart.draw_series(bars(true)).map_err(|e| anyhow!("{e}"))?;
    chart.draw_series(bars(false)).map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
