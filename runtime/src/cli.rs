//! Support for the command-line tools built with SMOF (`smof`, `smof-bench`); not part of
//! the library's API.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once standard output has failed with an error other than a closed pipe: the warning
/// is given once, and [`output_failed`] tells the tool to exit with an error.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes one line to standard output, like `println!`, without its panic when the write
/// fails. A reader that has gone away (`smof inspect M.smof | head`) ends the output quietly,
/// and the command still finishes its work (a conversion still writes its file); any other
/// failure is reported once on standard error.
pub fn line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        if e.kind() != ErrorKind::BrokenPipe && !FAILED.swap(true, Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr(), "warning: standard output: {e}");
        }
    }
}

/// Whether a line of output was lost to an error other than a closed pipe (for the exit
/// status).
pub fn output_failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// The value of `--input-shape`: dims such as `1,3,320,320`, each a positive integer.
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    format!(
                        "--input-shape: '{s}' is not a shape such as 1,3,320,320 ('{d}' is not a \
                     positive integer)"
                    )
                })
        })
        .collect()
}

/// `println!` through [`line`]: output that a closed pipe or a full disk cannot turn into a
/// panic.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::line(format_args!($($arg)*))
    };
}
