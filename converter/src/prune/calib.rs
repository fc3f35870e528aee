//! Calibration inputs: an `.npy` array of N samples, or a folder of images preprocessed
//! as for ImageNet (shorter side resized to 256/224 of the input size, centre crop,
//! `(x/255 - mean) / std`, NCHW).

use crate::error::{Error, Result};
use crate::ir::Graph;
use std::path::Path;

/// Folds of the cross-validations over calibration samples (the refit's ridge, the
/// allocation's held-out removal costs): sample `s` is held out in fold `s % FOLDS`.
pub const FOLDS: usize = 3;

/// Calibration samples for a model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Per-sample dims without the batch (`[C, H, W]` or `[F]`).
    pub shape: Vec<usize>,
    /// One flat sample each.
    pub samples: Vec<Vec<f32>>,
}

impl Calibration {
    /// Checks that these samples can feed `g`: there are some, `g` has one input, and
    /// each sample has its shape without the batch. `what` names the set in the errors
    /// ("calibration", "--holdout").
    pub fn check_input(&self, g: &Graph, what: &str) -> Result<()> {
        if self.samples.is_empty() {
            return Err(Error::Options(format!("the {what} set is empty")));
        }
        let [input] = &g.inputs[..] else {
            return Err(Error::Options(format!(
                "{what} feeds one input; the model has {}",
                g.inputs.len()
            )));
        };
        let want = g.shape(input.value);
        let want = want.get(1..).unwrap_or_default();
        if self.shape[..] != *want {
            return Err(Error::Options(format!(
                "{what} samples have shape {:?}, the model input is {want:?} (batch excluded)",
                self.shape
            )));
        }
        Ok(())
    }

    /// Splits an array of shape `(N, ...)` into N samples.
    pub fn from_array(shape: &[usize], data: &[f32]) -> Result<Calibration> {
        if shape.len() < 2 {
            return Err(Error::Options(format!(
                "calibration data must have shape (N, C, H, W) or (N, F), not {shape:?}"
            )));
        }
        let per: usize = shape[1..].iter().product();
        if per == 0 || data.len() != per * shape[0] {
            return Err(Error::Options(format!(
                "calibration array of shape {shape:?} holds {} values",
                data.len()
            )));
        }
        Ok(Calibration {
            shape: shape[1..].to_vec(),
            samples: data.chunks(per).map(<[f32]>::to_vec).collect(),
        })
    }

    /// Reads an `.npy` file of shape `(N, ...)`.
    pub fn from_npy(path: &Path) -> Result<Calibration> {
        let a = crate::npy::read(path)
            .map_err(|e| Error::Options(format!("calibration data: {e:#}")))?;
        Calibration::from_array(&a.shape, &a.data)
    }

    /// Decodes every image (jpeg, png) of `dir` in name order, preprocessed to `c x h x w`
    /// (`c` = 1 gives grey, 3 RGB) with per-channel `mean` and `std` (on 0..1 values).
    pub fn from_images(
        dir: &Path,
        [c, h, w]: [usize; 3],
        mean: &[f32],
        std: &[f32],
    ) -> Result<Calibration> {
        if c != 1 && c != 3 {
            return Err(Error::Options(format!(
                "images give 1 or 3 channels; the model input has {c}"
            )));
        }
        if mean.len() != c || std.len() != c || std.contains(&0.0) {
            return Err(Error::Options(format!(
                "--mean and --std need {c} values each (std non-zero)"
            )));
        }
        let io = |e: std::io::Error| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    let e = e.to_string_lossy().to_ascii_lowercase();
                    e == "jpg" || e == "jpeg" || e == "png"
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Options(format!(
                "{} holds no .jpg or .png images",
                dir.display()
            )));
        }
        let mut samples = Vec::with_capacity(files.len());
        for f in &files {
            let img = image::open(f)
                .map_err(|e| Error::Options(format!("cannot decode {}: {e}", f.display())))?;
            let img = img.to_rgb8();
            let (iw, ih) = (img.width() as f64, img.height() as f64);
            // Shorter side to 256/224 of the crop, as ImageNet evaluation does.
            let short = (h.min(w) as f64 * 256.0 / 224.0).round();
            let s = short / iw.min(ih);
            let (rw, rh) = (
                ((iw * s).round() as u32).max(w as u32),
                ((ih * s).round() as u32).max(h as u32),
            );
            let r = image::imageops::resize(&img, rw, rh, image::imageops::FilterType::Triangle);
            let (x0, y0) = ((rw as usize - w) / 2, (rh as usize - h) / 2);
            let mut x = vec![0.0f32; c * h * w];
            for yy in 0..h {
                for xx in 0..w {
                    let p = r.get_pixel((x0 + xx) as u32, (y0 + yy) as u32).0;
                    if c == 1 {
                        let v = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
                            / 255.0;
                        x[yy * w + xx] = (v - mean[0]) / std[0];
                    } else {
                        for ch in 0..3 {
                            x[(ch * h + yy) * w + xx] = (p[ch] as f32 / 255.0 - mean[ch]) / std[ch];
                        }
                    }
                }
            }
            samples.push(x);
        }
        Ok(Calibration {
            shape: vec![c, h, w],
            samples,
        })
    }
}
