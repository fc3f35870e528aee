//! Test: the hand-written header `runtime/include/smof.h` must declare exactly the crate's
//! `extern "C"` functions (same names, same parameter counts) and the same status codes.

use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Collapses whitespace so declarations spanning lines parse as one.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Strips `/* */` and `//` comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 2..];
        rest = &rest[rest.find("*/").map_or(rest.len(), |j| j + 2)..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Number of parameters in a parenthesised list (`void` and empty count as 0).
fn arity(params: &str) -> usize {
    let p = params.trim();
    if p.is_empty() || p == "void" {
        0
    } else {
        p.split(',').filter(|a| !a.trim().is_empty()).count()
    }
}

/// `name -> arity` of every `smof_*(...)` function declared in C or Rust text, found after
/// `marker` (for Rust, `extern "C" fn `; for C, any identifier followed by `(`).
fn functions(text: &str, rust: bool) -> BTreeMap<String, usize> {
    let text = squash(&strip_comments(text));
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    let needle = if rust {
        "extern \"C\" fn smof_"
    } else {
        "smof_"
    };
    while let Some(i) = rest.find(needle) {
        let start = i + needle.len() - "smof_".len();
        let tail = &rest[start..];
        let name_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..name_len];
        let after = tail[name_len..].trim_start();
        rest = &tail[name_len..];
        // In C, only declarations: `name(` at top level followed by `);`.
        if let Some(params) = after.strip_prefix('(') {
            let close = params.find(')').expect("unclosed parameter list");
            let tail2 = params[close + 1..].trim_start();
            if !rust && !tail2.starts_with(';') {
                continue;
            }
            out.insert(name.to_string(), arity(&params[..close]));
        }
    }
    out
}

#[test]
fn header_declares_every_exported_function() {
    let rust = std::fs::read_to_string(format!("{ROOT}/src/lib.rs")).unwrap();
    let header = std::fs::read_to_string(format!("{ROOT}/../include/smof.h")).unwrap();
    let rf = functions(&rust, true);
    let cf = functions(&header, false);
    assert!(rf.len() >= 15, "parsed too few Rust functions: {rf:?}");
    assert_eq!(
        rf, cf,
        "extern \"C\" functions (left) and smof.h declarations (right) differ"
    );
}

#[test]
fn header_status_codes_match() {
    let rust = std::fs::read_to_string(format!("{ROOT}/src/lib.rs")).unwrap();
    let header = std::fs::read_to_string(format!("{ROOT}/../include/smof.h")).unwrap();
    let rc: BTreeMap<String, String> = rust
        .lines()
        .filter_map(|l| l.strip_prefix("pub const SMOF_"))
        .map(|l| {
            // Status codes are i32; flags are u32, written with a `u` suffix in the header.
            let (name, val, suffix) = match l.split_once(": i32 = ") {
                Some((name, val)) => (name, val, ""),
                None => {
                    let (name, val) = l.split_once(": u32 = ").expect("const i32 or u32");
                    (name, val, "u")
                }
            };
            (
                format!("SMOF_{name}"),
                format!("{}{suffix}", val.trim_end_matches(';')),
            )
        })
        .collect();
    let cc: BTreeMap<String, String> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define SMOF_"))
        .filter(|l| !l.starts_with("H"))
        .map(|l| {
            let (name, val) = l.split_once(' ').expect("#define NAME VALUE");
            (format!("SMOF_{name}"), val.trim().to_string())
        })
        .collect();
    assert!(rc.len() >= 10);
    assert_eq!(rc, cc);
    // And smof_status_name knows every status code (the flags aside).
    for (name, val) in rc.iter().filter(|(_, v)| !v.ends_with('u')) {
        let code: i32 = val.parse().unwrap();
        let got = unsafe { std::ffi::CStr::from_ptr(crate::smof_status_name(code)) };
        assert_eq!(got.to_str().unwrap(), name);
    }
}
