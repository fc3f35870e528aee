//! C API of the SMOF runtime. The header is `runtime/include/smof.h`.
//!
//! Every function returns an `int32_t` status (`SMOF_OK` = 0) and reports failures through
//! [`smof_last_error`], a per-thread message. Models and sessions are handles: small structs
//! holding a 64-bit id that is never reused, looked up in a process-wide registry. A freed,
//! never-created or otherwise stale handle therefore yields `SMOF_ERR_INVALID_HANDLE` instead of
//! touching freed memory, and freeing a handle twice is an error, not a double free.
//!
//! No Rust panic crosses the FFI boundary: each entry point runs under `catch_unwind` and turns
//! a panic into `SMOF_ERR_PANIC`.
//!
//! The crate also builds as an `rlib`, which exposes the same functions to Rust callers (the
//! tests use it).
#![warn(missing_docs)]

use smof::{Error, Model, ModelOptions, Session, SessionOptions};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Success.
pub const SMOF_OK: i32 = 0;
/// A required pointer argument was null.
pub const SMOF_ERR_NULL_POINTER: i32 = 1;
/// An argument is out of range: wrong buffer length, index, UTF-8 path, misaligned pointer.
pub const SMOF_ERR_INVALID_ARGUMENT: i32 = 2;
/// The handle is not live: never created, already freed, or of the wrong kind.
pub const SMOF_ERR_INVALID_HANDLE: i32 = 3;
/// The model file could not be opened, read or mapped.
pub const SMOF_ERR_IO: i32 = 4;
/// The bytes are not a valid `.smof` model (damaged, inconsistent graph).
pub const SMOF_ERR_CORRUPT: i32 = 5;
/// The model needs something this build does not support (newer format, kernel table).
pub const SMOF_ERR_UNSUPPORTED: i32 = 6;
/// An allocation the model needs is larger than the runtime's limit.
pub const SMOF_ERR_TOO_LARGE: i32 = 7;
/// The runtime panicked (a bug); the message has details. The handle stays usable.
pub const SMOF_ERR_PANIC: i32 = 8;
/// Any other failure.
pub const SMOF_ERR_INTERNAL: i32 = 9;

/// A loaded model. `id == 0` is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmofModel {
    /// Registry id.
    pub id: u64,
}

/// A session (planned buffers for one thread) over a model. `id == 0` is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmofSession {
    /// Registry id.
    pub id: u64,
}

/// A failed call: status code and message.
#[derive(Debug)]
pub struct Failure {
    /// One of the `SMOF_ERR_*` codes.
    pub code: i32,
    /// Human-readable message.
    pub msg: String,
}

impl Failure {
    fn new(code: i32, msg: impl Into<String>) -> Self {
        Failure {
            code,
            msg: msg.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = if matches!(e, Error::Io { .. }) {
            SMOF_ERR_IO
        } else if matches!(e, Error::Corrupt { .. } | Error::InvalidGraph { .. }) {
            SMOF_ERR_CORRUPT
        } else if matches!(
            e,
            Error::UnsupportedVersion { .. } | Error::InvalidOption(_)
        ) {
            SMOF_ERR_UNSUPPORTED
        } else if matches!(e, Error::BadInput { .. } | Error::InputCount { .. }) {
            SMOF_ERR_INVALID_ARGUMENT
        } else if matches!(e, Error::TooLarge { .. }) {
            SMOF_ERR_TOO_LARGE
        } else {
            SMOF_ERR_INTERNAL
        };
        Failure::new(code, e.to_string())
    }
}

type CallResult = Result<(), Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f` under `catch_unwind`, records its error (or clears the last error on success) and
/// returns its status.
fn guard(f: impl FnOnce() -> CallResult) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            SMOF_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            SMOF_ERR_PANIC
        }
    }
}

/// A session that owns a reference to its model.
///
/// `Session<'m>` borrows its model; here the model lives in an `Arc` stored in the same struct,
/// so the borrow is given the `'static` lifetime. This is sound because:
/// * the `Model` is on the heap inside the `Arc` and never moves, and it is immutable;
/// * `model` keeps that allocation alive for as long as this struct exists, and fields drop in
///   declaration order, so `session` (declared first) is dropped before `model`;
/// * `session` is private and never handed out with its `'static` lifetime: callers only use
///   it through `&mut self`, so no `&'static Model` can escape.
pub struct OwnedSession {
    session: Session<'static>,
    model: Arc<Model>,
}

impl OwnedSession {
    /// Plans a session over `model`, keeping a reference to it.
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> smof::Result<Self> {
        // SAFETY: see the type's documentation: the `Arc` stored next to the session keeps the
        // model alive and in place for the session's whole life.
        let m: &'static Model = unsafe { &*Arc::as_ptr(&model) };
        let session = Session::new(m, opts)?;
        Ok(OwnedSession { session, model })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The number of convs and fully connected layers that run in bf16; see
    /// [`Session::bf16_convs`].
    pub fn bf16_convs(&self) -> usize {
        self.session.bf16_convs()
    }

    /// The number of convs and fully connected layers that run in f16; see
    /// [`Session::f16_convs`].
    pub fn f16_convs(&self) -> usize {
        self.session.f16_convs()
    }

    /// The number of convs that run in int8; see [`Session::int8_convs`].
    pub fn int8_convs(&self) -> usize {
        self.session.int8_convs()
    }

    /// Runs the model; see [`Session::run`].
    pub fn run(&mut self, inputs: &[&[f32]]) -> smof::Result<()> {
        self.session.run(inputs)
    }

    /// Number of model inputs.
    pub fn input_count(&self) -> usize {
        self.session.input_count()
    }

    /// Number of model outputs.
    pub fn output_count(&self) -> usize {
        self.session.output_count()
    }

    /// Dims of input `i`, or `None` when out of range.
    pub fn input_dims(&self, i: usize) -> Option<&[usize]> {
        (i < self.input_count()).then(|| self.session.input_dims(i))
    }

    /// Dims of output `i`, or `None` when out of range.
    pub fn output_dims(&self, i: usize) -> Option<&[usize]> {
        (i < self.output_count()).then(|| self.session.output_dims(i))
    }

    /// Output `i` of the last run, or `None` when out of range.
    pub fn output(&self, i: usize) -> Option<&[f32]> {
        (i < self.output_count()).then(|| self.session.output(i))
    }
}

/// Ids are shared by models and sessions and never reused, so a stale or mistyped handle is
/// never confused with a live one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static MODELS: LazyLock<Mutex<HashMap<u64, Arc<Model>>>> = LazyLock::new(Default::default);
#[allow(clippy::type_complexity)]
static SESSIONS: LazyLock<Mutex<HashMap<u64, Arc<Mutex<OwnedSession>>>>> =
    LazyLock::new(Default::default);

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent
/// (a panic inside a run leaves a session whose next run overwrites all state).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn register_model(model: Model) -> SmofModel {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock(&MODELS).insert(id, Arc::new(model));
    SmofModel { id }
}

fn get_model(h: SmofModel) -> Result<Arc<Model>, Failure> {
    lock(&MODELS).get(&h.id).cloned().ok_or_else(|| {
        Failure::new(
            SMOF_ERR_INVALID_HANDLE,
            format!("model handle {} is not live (freed or never created)", h.id),
        )
    })
}

fn get_session(h: SmofSession) -> Result<Arc<Mutex<OwnedSession>>, Failure> {
    lock(&SESSIONS).get(&h.id).cloned().ok_or_else(|| {
        Failure::new(
            SMOF_ERR_INVALID_HANDLE,
            format!(
                "session handle {} is not live (freed or never created)",
                h.id
            ),
        )
    })
}

fn null(what: &str) -> Failure {
    Failure::new(SMOF_ERR_NULL_POINTER, format!("{what} is NULL"))
}

fn invalid(msg: impl Into<String>) -> Failure {
    Failure::new(SMOF_ERR_INVALID_ARGUMENT, msg)
}

/// Writes `v` through `out` after checking it is non-null.
///
/// # Safety
/// `out` is null or valid for a write of `T`.
unsafe fn write_out<T>(out: *mut T, v: T) {
    // SAFETY: checked non-null by every caller beforehand; validity is the caller's contract.
    unsafe { out.write(v) }
}

/// Borrows a C string as a UTF-8 `&str`.
///
/// # Safety
/// `p` is a non-null pointer to a NUL-terminated string.
unsafe fn utf8<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// Borrows `len` elements at `p` as a slice, checking null, alignment and size.
///
/// # Safety
/// Unless null, `p` points to `len` readable, initialised `T`s.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(invalid(format!(
            "{what} is not aligned for its element type"
        )));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(invalid(format!("{what}: length {len} is too large")));
    }
    // SAFETY: non-null, aligned, size checked; readability is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Version of the library, e.g. `"0.1.0"`. Static storage; never null.
#[no_mangle]
pub extern "C" fn smof_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Symbolic name of a status code (`"SMOF_OK"`, `"SMOF_ERR_IO"`, ...). Static storage.
#[no_mangle]
pub extern "C" fn smof_status_name(status: i32) -> *const c_char {
    let s: &'static str = match status {
        SMOF_OK => "SMOF_OK\0",
        SMOF_ERR_NULL_POINTER => "SMOF_ERR_NULL_POINTER\0",
        SMOF_ERR_INVALID_ARGUMENT => "SMOF_ERR_INVALID_ARGUMENT\0",
        SMOF_ERR_INVALID_HANDLE => "SMOF_ERR_INVALID_HANDLE\0",
        SMOF_ERR_IO => "SMOF_ERR_IO\0",
        SMOF_ERR_CORRUPT => "SMOF_ERR_CORRUPT\0",
        SMOF_ERR_UNSUPPORTED => "SMOF_ERR_UNSUPPORTED\0",
        SMOF_ERR_TOO_LARGE => "SMOF_ERR_TOO_LARGE\0",
        SMOF_ERR_PANIC => "SMOF_ERR_PANIC\0",
        SMOF_ERR_INTERNAL => "SMOF_ERR_INTERNAL\0",
        _ => "SMOF_UNKNOWN_STATUS\0",
    };
    s.as_ptr().cast()
}

/// The message of the last failed call on this thread, or `""` if the last call succeeded.
/// The pointer stays valid until the next `smof_*` call on the same thread.
#[no_mangle]
pub extern "C" fn smof_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn open_common(
    path: *const c_char,
    out: *mut SmofModel,
    open: impl FnOnce(&str) -> smof::Result<Model>,
) -> i32 {
    guard(|| {
        if path.is_null() {
            return Err(null("path"));
        }
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-null; the caller passes a NUL-terminated string.
        let path = unsafe { utf8(path, "path") }?;
        let h = register_model(open(path)?);
        // SAFETY: checked non-null above.
        unsafe { write_out(out, h) };
        Ok(())
    })
}

/// Memory-maps and validates the `.smof` file at `path` and stores its handle in `*out`.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_model_open(path: *const c_char, out: *mut SmofModel) -> i32 {
    open_common(path, out, |p| Model::open(p))
}

/// Like `smof_model_open`, but reads the file into memory instead of mapping it.
///
/// # Safety
/// As `smof_model_open`.
#[no_mangle]
pub unsafe extern "C" fn smof_model_open_copied(path: *const c_char, out: *mut SmofModel) -> i32 {
    open_common(path, out, |p| {
        Model::open_copied(p, &ModelOptions::default())
    })
}

/// Validates a model held in memory (`len` bytes at `data`); the bytes are copied, so the
/// buffer may be freed when this returns.
///
/// # Safety
/// `data` is null or points to `len` readable bytes; `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_model_from_bytes(
    data: *const u8,
    len: usize,
    out: *mut SmofModel,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: the caller's contract.
        let bytes = unsafe { slice(data, len, "data") }?;
        let h = register_model(Model::from_bytes(bytes)?);
        // SAFETY: checked non-null above.
        unsafe { write_out(out, h) };
        Ok(())
    })
}

/// Opens the model stored in the `len` bytes at `offset` of the open file descriptor `fd`
/// (`len == 0`: up to the end of the file). For models embedded in a larger file, such as an
/// uncompressed Android asset (`AAsset_openFileDescriptor64`). The range is mapped without a
/// copy when `offset` is a multiple of 64, and read into memory otherwise. `fd` is not
/// consumed: the caller may close it as soon as this returns.
///
/// # Safety
/// `out` is null or valid for writing. `fd` should be an open descriptor; an invalid one is
/// reported as `SMOF_ERR_IO`.
#[no_mangle]
pub unsafe extern "C" fn smof_model_from_fd(
    fd: i32,
    offset: u64,
    len: u64,
    out: *mut SmofModel,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let model = model_from_fd(fd, offset, len)?;
        let h = register_model(model);
        // SAFETY: checked non-null above.
        unsafe { write_out(out, h) };
        Ok(())
    })
}

/// Opens the model in `len` bytes at `offset` of descriptor `fd` (`len == 0`: to the end). The
/// descriptor is duplicated, not consumed. Shared with the JNI crate.
pub fn model_from_fd(fd: i32, offset: u64, len: u64) -> Result<Model, Failure> {
    #[cfg(unix)]
    {
        use std::os::fd::BorrowedFd;
        if fd < 0 {
            return Err(invalid(format!("file descriptor {fd} is negative")));
        }
        // SAFETY: the borrow lasts only for the duplication below. If `fd` is not open, the
        // `fcntl(F_DUPFD_CLOEXEC)` behind `try_clone_to_owned` fails with EBADF, which is
        // reported as an error; no memory is touched through the descriptor.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| Failure::new(SMOF_ERR_IO, format!("file descriptor {fd}: {e}")))?;
        let file = std::fs::File::from(owned);
        let len = if len == 0 {
            let total = file
                .metadata()
                .map_err(|e| Failure::new(SMOF_ERR_IO, format!("file descriptor {fd}: {e}")))?
                .len();
            total.checked_sub(offset).ok_or_else(|| {
                Failure::new(
                    SMOF_ERR_IO,
                    format!("offset {offset} is past the end of the file ({total} bytes)"),
                )
            })?
        } else {
            len
        };
        Ok(Model::open_range(
            &file,
            offset,
            len,
            &ModelOptions::default(),
        )?)
    }
    #[cfg(not(unix))]
    {
        let _ = (fd, offset, len);
        Err(Failure::new(
            SMOF_ERR_UNSUPPORTED,
            "file descriptors are only supported on Unix",
        ))
    }
}

/// Releases a model. Sessions created from it keep it alive until they are freed.
/// Freeing an already freed handle returns `SMOF_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn smof_model_free(model: SmofModel) -> i32 {
    guard(|| {
        // Drop outside the registry lock.
        let removed = lock(&MODELS).remove(&model.id);
        match removed {
            Some(m) => {
                drop(m);
                Ok(())
            }
            None => Err(Failure::new(
                SMOF_ERR_INVALID_HANDLE,
                format!(
                    "model handle {} is not live (already freed or never created)",
                    model.id
                ),
            )),
        }
    })
}

fn count_common(out: *mut usize, f: impl FnOnce() -> Result<usize, Failure>) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let n = f()?;
        // SAFETY: checked non-null above.
        unsafe { write_out(out, n) };
        Ok(())
    })
}

/// Number of model inputs, in `*out`.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_model_input_count(model: SmofModel, out: *mut usize) -> i32 {
    count_common(out, || Ok(get_model(model)?.graph().inputs.len()))
}

/// Number of model outputs, in `*out`.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_model_output_count(model: SmofModel, out: *mut usize) -> i32 {
    count_common(out, || Ok(get_model(model)?.graph().outputs.len()))
}

fn shape_common(
    model: SmofModel,
    index: usize,
    output: bool,
    dims: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> i32 {
    guard(|| {
        if rank.is_null() {
            return Err(null("rank"));
        }
        let m = get_model(model)?;
        let list = if output {
            &m.graph().outputs
        } else {
            &m.graph().inputs
        };
        let kind = if output { "output" } else { "input" };
        let io = list.get(index).ok_or_else(|| {
            invalid(format!(
                "{kind} index {index} out of range (model has {})",
                list.len()
            ))
        })?;
        // SAFETY: checked non-null above.
        unsafe { write_out(rank, io.dims.len()) };
        if capacity < io.dims.len() {
            return Err(invalid(format!(
                "dims capacity {capacity} is smaller than the rank {} of {kind} {index}",
                io.dims.len()
            )));
        }
        if dims.is_null() {
            return Err(null("dims"));
        }
        for (k, &d) in io.dims.iter().enumerate() {
            // SAFETY: `dims` is non-null and, by the caller's contract, has `capacity >= rank`
            // writable elements.
            unsafe { dims.add(k).write(i64::from(d)) };
        }
        Ok(())
    })
}

/// Shape of input `index`: writes its rank to `*rank` and its dims (ONNX order, e.g.
/// `[N, C, H, W]`) to `dims[0..rank]`. If `capacity` is smaller than the rank, `*rank` is
/// still set and `SMOF_ERR_INVALID_ARGUMENT` is returned.
///
/// # Safety
/// `rank` is null or valid for writing; `dims` is null or valid for `capacity` writes.
#[no_mangle]
pub unsafe extern "C" fn smof_model_input_shape(
    model: SmofModel,
    index: usize,
    dims: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> i32 {
    shape_common(model, index, false, dims, capacity, rank)
}

/// Shape of output `index`; as `smof_model_input_shape`.
///
/// # Safety
/// As `smof_model_input_shape`.
#[no_mangle]
pub unsafe extern "C" fn smof_model_output_shape(
    model: SmofModel,
    index: usize,
    dims: *mut i64,
    capacity: usize,
    rank: *mut usize,
) -> i32 {
    shape_common(model, index, true, dims, capacity, rank)
}

/// Creates a session over `model` with `threads` worker threads (0 or 1: the calling thread)
/// and stores its handle in `*out`. The session keeps the model alive.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_new(
    model: SmofModel,
    threads: u32,
    out: *mut SmofSession,
) -> i32 {
    // SAFETY: the caller's contract, which is `smof_session_new_ex`'s.
    unsafe { smof_session_new_ex(model, threads, 0, out) }
}

/// A flag of [`smof_session_new_ex`]: bf16 products in the session's 1x1 convs where the CPU
/// has AVX512-BF16 or (aarch64) FEAT_BF16 (`smof::Precision::Bf16`; elsewhere the session
/// computes in f32).
pub const SMOF_SESSION_BF16: u32 = 1;

/// A flag of [`smof_session_new_ex`]: f16 arithmetic in the session's 1x1 convs where the CPU
/// has FEAT_FP16 (aarch64; `smof::Precision::F16`; elsewhere the session computes in f32).
/// Excludes `SMOF_SESSION_BF16`.
pub const SMOF_SESSION_F16: u32 = 2;

/// A flag of [`smof_session_new_ex`]: int8 arithmetic in the session's 1x1 convs where the
/// CPU has AVX512-VNNI or (aarch64) FEAT_DotProd (`smof::Precision::Int8`; elsewhere the
/// session computes in f32).
/// Excludes the other precision flags.
pub const SMOF_SESSION_INT8: u32 = 4;

/// Creates a session like [`smof_session_new`] with the options of `flags`, a bitwise or of
/// `SMOF_SESSION_*` values (0: as `smof_session_new`). Unknown bits give
/// `SMOF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_new_ex(
    model: SmofModel,
    threads: u32,
    flags: u32,
    out: *mut SmofSession,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let precisions = SMOF_SESSION_BF16 | SMOF_SESSION_F16 | SMOF_SESSION_INT8;
        if flags & !precisions != 0 {
            return Err(invalid(format!("unknown session flags {flags:#x}")));
        }
        let precision =
            match flags & precisions {
                0 => smof::Precision::F32,
                SMOF_SESSION_BF16 => smof::Precision::Bf16,
                SMOF_SESSION_F16 => smof::Precision::F16,
                SMOF_SESSION_INT8 => smof::Precision::Int8,
                _ => return Err(invalid(
                    "SMOF_SESSION_BF16, SMOF_SESSION_F16 and SMOF_SESSION_INT8 exclude each other",
                )),
            };
        let m = get_model(model)?;
        let opts = (SessionOptions::default().threads(threads as usize)).precision(precision);
        let s = OwnedSession::new(m, &opts)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock(&SESSIONS).insert(id, Arc::new(Mutex::new(s)));
        // SAFETY: checked non-null above.
        unsafe { write_out(out, SmofSession { id }) };
        Ok(())
    })
}

/// The number of convs (and, on AVX512-BF16, fully connected layers) the session runs in
/// bf16, in `*out`: 0 unless it was created with `SMOF_SESSION_BF16` on a CPU with
/// AVX512-BF16 or FEAT_BF16.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_bf16_convs(session: SmofSession, out: *mut usize) -> i32 {
    count_common(out, || {
        let s = get_session(session)?;
        let n = lock(&s).bf16_convs();
        Ok(n)
    })
}

/// The number of convs (on a CPU with FEAT_FP16) and fully connected layers (on any aarch64
/// CPU: f16 weights) the session runs in f16, in `*out`: 0 unless it was created with
/// `SMOF_SESSION_F16` on aarch64.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_f16_convs(session: SmofSession, out: *mut usize) -> i32 {
    count_common(out, || {
        let s = get_session(session)?;
        let n = lock(&s).f16_convs();
        Ok(n)
    })
}

/// The number of convs the session runs in int8, in `*out`: 0 unless it was created with
/// `SMOF_SESSION_INT8` on a CPU with AVX512-VNNI or FEAT_DotProd.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_int8_convs(session: SmofSession, out: *mut usize) -> i32 {
    count_common(out, || {
        let s = get_session(session)?;
        let n = lock(&s).int8_convs();
        Ok(n)
    })
}

/// Creates a session like [`smof_session_new`] that plans for another shape of input 0
/// (`dims[0..rank]`, ONNX order, e.g. `[N, C, H, W]`) than the model was converted with.
/// A shape the model's layers cannot take (other channels, or a fully connected layer fed a
/// different spatial size) gives `SMOF_ERR_INVALID_ARGUMENT` with the layer named.
///
/// # Safety
/// `dims` is null or valid for `rank` reads; `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_new_with_shape(
    model: SmofModel,
    threads: u32,
    dims: *const i64,
    rank: usize,
    out: *mut SmofSession,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        if dims.is_null() {
            return Err(null("dims"));
        }
        if rank == 0 || rank > 8 {
            return Err(invalid(format!("rank {rank} is not between 1 and 8")));
        }
        // SAFETY: non-null, and the caller guarantees `rank` readable values.
        let dims = unsafe { std::slice::from_raw_parts(dims, rank) };
        let shape: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(format!("shape {dims:?} has a dim below 1")))?;
        let m = get_model(model)?;
        let opts = SessionOptions {
            threads: threads as usize,
            input_shapes: vec![shape],
            ..SessionOptions::default()
        };
        let s = OwnedSession::new(m, &opts).map_err(|e| match e {
            // The model is fine; the requested shape is what its layers cannot take.
            e @ smof::Error::InvalidGraph { .. } => invalid(e.to_string()),
            e => Failure::from(e),
        })?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock(&SESSIONS).insert(id, Arc::new(Mutex::new(s)));
        // SAFETY: checked non-null above.
        unsafe { write_out(out, SmofSession { id }) };
        Ok(())
    })
}

/// Releases a session. Freeing an already freed handle returns `SMOF_ERR_INVALID_HANDLE`.
/// A run in progress on another thread finishes first.
#[no_mangle]
pub extern "C" fn smof_session_free(session: SmofSession) -> i32 {
    guard(|| {
        let removed = lock(&SESSIONS).remove(&session.id);
        match removed {
            Some(s) => {
                drop(s);
                Ok(())
            }
            None => Err(Failure::new(
                SMOF_ERR_INVALID_HANDLE,
                format!(
                    "session handle {} is not live (already freed or never created)",
                    session.id
                ),
            )),
        }
    })
}

/// Runs the model. `inputs[i]` points to `lengths[i]` floats for model input `i` (ONNX/NCHW
/// element order); `count` must equal the number of model inputs and each length the input's
/// element count. Sessions are not re-entrant: concurrent runs of one session are serialised.
///
/// # Safety
/// `inputs` and `lengths` are null or point to `count` elements; each `inputs[i]` is null or
/// points to `lengths[i]` readable floats.
#[no_mangle]
pub unsafe extern "C" fn smof_session_run(
    session: SmofSession,
    inputs: *const *const f32,
    lengths: *const usize,
    count: usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let ptrs = unsafe { slice(inputs, count, "inputs") }?;
        // SAFETY: the caller's contract.
        let lens = unsafe { slice(lengths, count, "lengths") }?;
        let s = get_session(session)?;
        let mut s = lock(&s);
        if count != s.input_count() {
            return Err(invalid(format!(
                "model has {} input(s), {count} given",
                s.input_count()
            )));
        }
        let mut views: Vec<&[f32]> = Vec::with_capacity(count);
        for (i, (&p, &n)) in ptrs.iter().zip(lens).enumerate() {
            // SAFETY: the caller's contract.
            views.push(unsafe { slice(p, n, &format!("inputs[{i}]")) }?);
        }
        s.run(&views)?;
        Ok(())
    })
}

/// Runs a single-input model on `length` floats at `input`; as `smof_session_run`.
///
/// # Safety
/// `input` is null or points to `length` readable floats.
#[no_mangle]
pub unsafe extern "C" fn smof_session_run1(
    session: SmofSession,
    input: *const f32,
    length: usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let x = unsafe { slice(input, length, "input") }?;
        let s = get_session(session)?;
        let mut s = lock(&s);
        s.run(&[x])?;
        Ok(())
    })
}

fn len_common(session: SmofSession, index: usize, output: bool, out: *mut usize) -> i32 {
    count_common(out, || {
        let s = get_session(session)?;
        let s = lock(&s);
        let dims = if output {
            s.output_dims(index)
        } else {
            s.input_dims(index)
        };
        let kind = if output { "output" } else { "input" };
        dims.map(|d| d.iter().product())
            .ok_or_else(|| invalid(format!("{kind} index {index} out of range")))
    })
}

/// Element count of input `index`, in `*out`.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_input_len(
    session: SmofSession,
    index: usize,
    out: *mut usize,
) -> i32 {
    len_common(session, index, false, out)
}

/// Element count of output `index`, in `*out`.
///
/// # Safety
/// `out` is null or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn smof_session_output_len(
    session: SmofSession,
    index: usize,
    out: *mut usize,
) -> i32 {
    len_common(session, index, true, out)
}

/// Copies output `index` of the last run (ONNX/NCHW order) into `out`, which holds `capacity`
/// floats; `capacity` must be at least the output's element count (see
/// `smof_session_output_len`). Before any run the output is all zeros.
///
/// # Safety
/// `out` is null or valid for `capacity` float writes.
#[no_mangle]
pub unsafe extern "C" fn smof_session_output(
    session: SmofSession,
    index: usize,
    out: *mut f32,
    capacity: usize,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        if !(out as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            return Err(invalid("out is not aligned for float"));
        }
        let s = get_session(session)?;
        let s = lock(&s);
        let y = s
            .output(index)
            .ok_or_else(|| invalid(format!("output index {index} out of range")))?;
        if capacity < y.len() {
            return Err(invalid(format!(
                "output buffer holds {capacity} floats, output {index} has {}",
                y.len()
            )));
        }
        // SAFETY: `out` is non-null, aligned and, by the caller's contract, has room for
        // `capacity >= y.len()` floats; it cannot overlap the session's own buffer.
        unsafe { std::ptr::copy_nonoverlapping(y.as_ptr(), out, y.len()) };
        Ok(())
    })
}

#[cfg(test)]
mod header_check;
