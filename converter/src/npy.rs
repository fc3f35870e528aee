//! Reading and writing the `.npy` arrays the CLI takes and gives: f32 (f64 and integer
//! arrays are converted), checked against the file size before anything is allocated.

use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;
use std::io::Read;
use std::path::Path;

/// An array read from a `.npy` file.
pub struct Array {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements in C order.
    pub data: Vec<f32>,
}

/// Reads a `.npy` file as f32.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a usable .npy array", path.display()))
}

/// Longest header accepted, in bytes: numpy's own limit (`max_header_size` of `numpy.load`).
const MAX_HEADER_LEN: u64 = 10_000;

/// Deepest bracket nesting accepted in the header. A header numpy writes for a plain array
/// nests 2 deep (the dict and the shape tuple); the header parser takes time exponential in
/// the nesting, so a hostile header must not reach it.
const MAX_HEADER_NESTING: usize = 4;

/// Parses `.npy` bytes as f32.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    let header_len = bytes.len() as u64 - remaining_after_header(bytes)?;
    check_header_text(&bytes[..header_len as usize])?;
    let npy = npyz::NpyFile::new(bytes).context("bad .npy header")?;
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).context("dimension too large"))
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .context("element count overflows")?;
    let elem = npy.dtype().num_bytes().unwrap_or(0) as u64;
    if elem == 0 {
        bail!("unsupported dtype {:?}", npy.dtype().descr());
    }
    if npy.order() != npyz::Order::C {
        bail!("Fortran-order arrays are not supported; save with numpy.ascontiguousarray");
    }
    // The data follows the header; refuse counts the file cannot hold before allocating.
    if count.saturating_mul(elem) > bytes.len() as u64 - header_len {
        bail!("header claims {count} elements, the file holds fewer");
    }
    let descr = npy.dtype().descr();
    let data: Vec<f32> = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => npy.into_vec::<f32>()?,
        "f8" => npy
            .into_vec::<f64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "i8" => npy
            .into_vec::<i64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "i4" => npy
            .into_vec::<i32>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "u1" => npy.into_vec::<u8>()?.into_iter().map(f32::from).collect(),
        other => bail!("unsupported dtype {other}; use float32"),
    };
    Ok(Array { shape, data })
}

/// Checks the size, characters and bracket nesting of the header (`header` is the file up
/// to the data, magic and length field included), so that the header parser only sees what a
/// numpy header of a plain array can be. Non-ASCII text slows that parser down badly (a
/// 136-byte header found by fuzzing took 44 ms), and numpy writes the header of a plain
/// array in ASCII.
fn check_header_text(header: &[u8]) -> Result<()> {
    if header.len() as u64 > MAX_HEADER_LEN {
        bail!(
            "the .npy header is {} bytes, more than numpy's limit of {MAX_HEADER_LEN}",
            header.len()
        );
    }
    let text = &header[if header.get(6) == Some(&1) { 10 } else { 12 }.min(header.len())..];
    if let Some(at) = text
        .iter()
        .position(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\n'))
    {
        bail!(
            "the .npy header has a byte 0x{:02x} that is not printable ASCII (at offset {}); \
             plain arrays have ASCII headers",
            text[at],
            header.len() - text.len() + at
        );
    }
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    bail!("the .npy header nests brackets more than {MAX_HEADER_NESTING} deep");
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Bytes after the `.npy` header (the data size), from the header-length field.
fn remaining_after_header(bytes: &[u8]) -> Result<u64> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("missing .npy magic");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as u64, 10u64),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as u64,
            12u64,
        ),
        v => bail!("unsupported .npy version {v}"),
    };
    let data_start = start + hlen;
    if data_start > bytes.len() as u64 {
        bail!("truncated .npy header");
    }
    Ok(bytes.len() as u64 - data_start)
}

/// Writes an f32 array as `.npy`.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(())
}

/// Arrays `X` (float) and `y` (labels) of an `.npz` data set.
pub fn read_npz_xy(path: &Path) -> Result<(Array, Vec<i64>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut zip = npyz::npz::NpzArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not an .npz archive", path.display()))?;
    let mut take = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip
            .zip_archive()
            .by_name(&npyz::npz::file_name_from_array_name(name))
            .with_context(|| format!("{} has no array '{name}'", path.display()))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    };
    let x = parse(&take("X")?).context("array X")?;
    let y = parse(&take("y")?).context("array y")?;
    Ok((x, y.data.into_iter().map(|v| v as i64).collect()))
}
