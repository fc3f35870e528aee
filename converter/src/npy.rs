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

/// Parses `.npy` bytes as f32.
///
/// The header is read by a strict, linear-time parser of the one dict numpy writes
/// (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, keys in any order): a
/// general Python-literal parser takes time exponential in the bracket nesting, which
/// fuzzing turned into timeouts with headers of about a hundred bytes.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    let data_len = remaining_after_header(bytes)?;
    let header_len = bytes.len() - data_len as usize;
    if header_len as u64 > MAX_HEADER_LEN {
        bail!("the .npy header is {header_len} bytes, more than numpy's limit of {MAX_HEADER_LEN}");
    }
    let text_start = if bytes[6] == 1 { 10 } else { 12 };
    let h = Header::parse(&bytes[text_start..header_len])?;
    if h.fortran_order {
        bail!("Fortran-order arrays are not supported; save with numpy.ascontiguousarray");
    }
    let count = h
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .context("element count overflows")?;
    let (elem, decode): (usize, fn(&[u8]) -> f32) = match h.descr.as_str() {
        "<f4" | "=f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" | "=f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<i8" | "=i8" => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<i4" | "=i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "|u1" | "<u1" | "=u1" => (1, |b| b[0] as f32),
        other => bail!("unsupported dtype '{other}'; use float32 (little-endian '<f4')"),
    };
    // The data follows the header; refuse counts the file cannot hold before allocating.
    if count.saturating_mul(elem as u64) > data_len {
        bail!("header claims {count} elements, the file holds fewer");
    }
    let data = bytes[header_len..]
        .chunks_exact(elem)
        .take(count as usize)
        .map(decode)
        .collect();
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// The fields of a `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the header dict (the text after the length field, padding included).
    fn parse(text: &[u8]) -> Result<Header> {
        let mut p = Cursor { s: text, i: 0 };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        p.expect(b'{')?;
        while !p.eat(b'}') {
            let key = p.string()?;
            p.expect(b':')?;
            let repeated = match key.as_str() {
                "descr" => descr.replace(p.string()?).is_some(),
                "fortran_order" => fortran.replace(p.boolean()?).is_some(),
                "shape" => shape.replace(p.tuple()?).is_some(),
                other => bail!("the .npy header has an unknown key '{other}'"),
            };
            if repeated {
                bail!("the .npy header repeats the key '{key}'");
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        p.skip_ws();
        if p.i != text.len() {
            bail!("the .npy header has text after its dict (offset {})", p.i);
        }
        Ok(Header {
            descr: descr.context("the .npy header has no 'descr'")?,
            fortran_order: fortran.context("the .npy header has no 'fortran_order'")?,
            shape: shape.context("the .npy header has no 'shape'")?,
        })
    }
}

/// A position in the header text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.i += 1;
        }
    }

    /// Skips white space, then consumes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        let hit = self.s.get(self.i) == Some(&b);
        self.i += hit as usize;
        hit
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if !self.eat(b) {
            bail!(
                "the .npy header is malformed: expected '{}' at offset {}",
                b as char,
                self.i
            );
        }
        Ok(())
    }

    /// A quoted string of printable ASCII without escapes.
    fn string(&mut self) -> Result<String> {
        self.skip_ws();
        let q = match self.s.get(self.i) {
            Some(&q) if q == b'\'' || q == b'"' => q,
            _ => bail!(
                "the .npy header is malformed: expected a string at offset {}",
                self.i
            ),
        };
        let body = &self.s[self.i + 1..];
        let len = body
            .iter()
            .position(|&b| b == q)
            .context("the .npy header has an unterminated string")?;
        let body = &body[..len];
        if body
            .iter()
            .any(|&b| b == b'\\' || !(b.is_ascii_graphic() || b == b' '))
        {
            bail!("the .npy header has a string with escapes or non-printable bytes");
        }
        self.i += len + 2;
        Ok(String::from_utf8_lossy(body).into_owned())
    }

    fn boolean(&mut self) -> Result<bool> {
        self.skip_ws();
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        bail!(
            "the .npy header is malformed: expected True or False at offset {}",
            self.i
        )
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(2, 3)`.
    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut v = Vec::new();
        while !self.eat(b')') {
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            if start == self.i {
                bail!("the .npy header is malformed: expected a dimension at offset {start}");
            }
            let digits = String::from_utf8_lossy(&self.s[start..self.i]);
            v.push(digits.parse::<usize>().context("dimension too large")?);
            self.eat(b'L'); // Python 2 numpy wrote long integers as `3L`.
            if v.len() > 32 {
                bail!("the .npy shape has more than 32 dimensions");
            }
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(v)
    }
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
