//! Calibration inputs: an `.npy` array of N samples, or a folder of images preprocessed
//! as for ImageNet (shorter side resized to 256/224 of the input size, centre crop,
//! `(x/255 - mean) / std`, NCHW).

use crate::error::{Error, Result};
use crate::ir::Graph;
use std::path::Path;

/// Folds of the cross-validations over calibration samples (the refit's ridge, the
/// allocation's held-out removal costs): sample `s` is held out in fold
/// [`Calibration::fold`], `origin % FOLDS` of the input it was made from.
pub const FOLDS: usize = 3;

/// Calibration samples for a model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Per-sample dims without the batch (`[C, H, W]` or `[F]`).
    pub shape: Vec<usize>,
    /// One flat sample each.
    pub samples: Vec<Vec<f32>>,
    /// Per sample, the index of the input it was made from: its own index, or for a mirror
    /// image ([`Calibration::with_mirrors`]) the original's. A sample and its mirror image
    /// are nearly the same input, so they fall in the same cross-validation fold: otherwise
    /// a fit on one would look as if it predicted the other, a new input.
    origin: Vec<usize>,
}

impl Calibration {
    /// Samples of the given per-sample shape, each its own origin.
    pub fn new(shape: Vec<usize>, samples: Vec<Vec<f32>>) -> Calibration {
        let origin = (0..samples.len()).collect();
        Calibration {
            shape,
            samples,
            origin,
        }
    }

    /// Appends each image's mirror image (left to right) after the samples, so the
    /// statistics see twice the inputs; each mirror shares its original's fold. An error for
    /// samples that are not images (`[C, H, W]`).
    pub fn with_mirrors(mut self) -> Result<Calibration> {
        if self.shape.len() != 3 {
            return Err(Error::Options(format!(
                "mirror images need image samples (C, H, W), not shape {:?}",
                self.shape
            )));
        }
        let n = self.samples.len();
        for s in 0..n {
            let m = mirrored(&self.samples[s], &self.shape);
            self.samples.push(m);
            self.origin.push(self.origin[s]);
        }
        Ok(self)
    }

    /// The cross-validation fold (of `folds`) that holds sample `s` out.
    pub fn fold(&self, s: usize, folds: usize) -> usize {
        self.origin.get(s).copied().unwrap_or(s) % folds.max(1)
    }

    /// How many distinct inputs the samples were made from (mirror images not counted).
    pub fn originals(&self) -> usize {
        self.origin.iter().max().map_or(0, |m| m + 1)
    }

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
        Ok(Calibration::new(
            shape[1..].to_vec(),
            data.chunks(per).map(<[f32]>::to_vec).collect(),
        ))
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
            error: e,
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
        Ok(Calibration::new(vec![c, h, w], samples))
    }
}

/// `x` (an image sample of `shape`, `[.., H, W]`) mirrored left to right; other samples
/// unchanged.
pub(crate) fn mirrored(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let w = *shape.last().unwrap_or(&1);
    if shape.len() < 3 || w < 2 {
        return x.to_vec();
    }
    x.chunks_exact(w)
        .flat_map(|r| r.iter().rev().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_images_follow_the_samples_in_their_originals_folds() {
        // 4 samples of 2 channels x 2 rows x 3 columns: value = 100 s + 10 c + 3 y + x.
        let shape = vec![2, 2, 3];
        let samples: Vec<Vec<f32>> = (0..4)
            .map(|s| {
                (0..12)
                    .map(|i| (100 * s + 10 * (i / 6) + 3 * (i / 3 % 2) + i % 3) as f32)
                    .collect()
            })
            .collect();
        let c = Calibration::new(shape.clone(), samples.clone())
            .with_mirrors()
            .unwrap();
        assert_eq!(c.samples.len(), 8);
        assert_eq!(c.originals(), 4);
        for (s, x) in samples.iter().enumerate() {
            assert_eq!(c.samples[s], *x);
            for r in 0..4 {
                let row = &x[3 * r..3 * r + 3];
                let m = &c.samples[4 + s][3 * r..3 * r + 3];
                assert_eq!(m, [row[2], row[1], row[0]]);
            }
            // With 4 originals and 3 folds, index `s + 4` alone would put the mirror in
            // another fold than its original.
            assert_eq!(c.fold(s + 4, FOLDS), c.fold(s, FOLDS));
            assert_eq!(c.fold(s, FOLDS), s % FOLDS);
        }
        assert_eq!(c.fold(5, 1), 0);
        // Samples that are not images have no mirror image.
        let e = Calibration::new(vec![12], samples)
            .with_mirrors()
            .unwrap_err();
        assert!(
            e.to_string().contains("mirror images need image samples"),
            "{e}"
        );
    }
}
