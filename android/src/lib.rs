//! JNI bindings of the SMOF runtime for the Java classes `dev.smof.SmofModel` and
//! `dev.smof.SmofSession` (sources in `android/smof/src/main/java/dev/smof/`).
//!
//! Handles are `Box`ed native objects passed to Java as `long`. The Java classes own them: they
//! zero the handle on `close()` under their own lock, check it before every native call (use
//! after close is an `IllegalStateException` there) and only pass live handles here, so a
//! handle reaching this code is always valid; a zero handle is still rejected here as a second
//! line of defence.
//!
//! Every entry point runs under `catch_unwind`: a Rust panic becomes a
//! `java.lang.RuntimeException`, never an abort of the VM. Errors map to Java exceptions:
//! invalid arguments (null, wrong sizes, bad descriptors) to `IllegalArgumentException`,
//! unreadable or corrupt model files to `java.io.IOException`, closed handles to
//! `IllegalStateException`.
#![warn(missing_docs)]

use jni::objects::{JByteArray, JByteBuffer, JClass, JFloatArray, JObject, JString};
use jni::sys::{jfloatArray, jint, jintArray, jlong, jstring};
use jni::JNIEnv;
use smof::{Error, Model, ModelOptions, Precision, Session, SessionOptions};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Why a call failed, i.e. which Java exception to throw.
#[derive(Debug)]
pub enum Throw {
    /// `java.lang.IllegalArgumentException`.
    Arg(String),
    /// `java.io.IOException`.
    Io(String),
    /// `java.lang.IllegalStateException`.
    State(String),
    /// `java.lang.RuntimeException`.
    Runtime(String),
    /// A Java exception is already pending; throw nothing more.
    Pending,
}

impl From<jni::errors::Error> for Throw {
    fn from(e: jni::errors::Error) -> Self {
        match e {
            jni::errors::Error::JavaException => Throw::Pending,
            other => Throw::Runtime(format!("JNI error: {other}")),
        }
    }
}

/// Maps a runtime error from opening a model: all are `IOException`s.
fn open_error(e: Error) -> Throw {
    Throw::Io(e.to_string())
}

/// Maps a runtime error from running: wrong inputs are `IllegalArgumentException`s.
fn run_error(e: Error) -> Throw {
    if matches!(e, Error::BadInput { .. } | Error::InputCount { .. }) {
        Throw::Arg(e.to_string())
    } else {
        Throw::Runtime(e.to_string())
    }
}

/// Runs `f` under `catch_unwind` and turns its failure (or panic) into a pending Java
/// exception, returning `default` in that case.
fn guard<'l, T>(
    env: &mut JNIEnv<'l>,
    default: T,
    f: impl FnOnce(&mut JNIEnv<'l>) -> Result<T, Throw>,
) -> T {
    let throw = match catch_unwind(AssertUnwindSafe(|| f(env))) {
        Ok(Ok(v)) => return v,
        Ok(Err(t)) => t,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Throw::Runtime(format!("smof internal error (panic): {what}"))
        }
    };
    if env.exception_check().unwrap_or(true) {
        // Keep the exception the JVM already has; it describes the first failure.
        return default;
    }
    let (class, msg) = match throw {
        Throw::Arg(m) => ("java/lang/IllegalArgumentException", m),
        Throw::Io(m) => ("java/io/IOException", m),
        Throw::State(m) => ("java/lang/IllegalStateException", m),
        Throw::Runtime(m) => ("java/lang/RuntimeException", m),
        Throw::Pending => ("java/lang/RuntimeException", "JNI call failed".into()),
    };
    let _ = env.throw_new(class, msg);
    default
}

/// A session that owns a reference to its model, plus a reusable input buffer.
///
/// `Session<'m>` borrows its model; here the model lives in an `Arc` stored in the same struct
/// and the borrow is given the `'static` lifetime. Sound because the `Model` sits on the heap
/// inside the `Arc` and never moves, `model` keeps it alive as long as this struct exists,
/// fields drop in declaration order (`session` before `model`), and `session` is private and
/// only used through `&mut self`, so no `&'static Model` escapes.
pub struct NativeSession {
    session: Session<'static>,
    model: Arc<Model>,
    input: Vec<f32>,
}

impl NativeSession {
    /// Plans a session over `model` at `precision`.
    pub fn new(model: Arc<Model>, threads: usize, precision: Precision) -> smof::Result<Self> {
        // SAFETY: see the type's documentation.
        let m: &'static Model = unsafe { &*Arc::as_ptr(&model) };
        let opts = SessionOptions::default()
            .threads(threads)
            .precision(precision);
        let session = Session::new(m, &opts)?;
        Ok(NativeSession {
            session,
            model,
            input: Vec::new(),
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }
}

fn model_ref<'a>(handle: jlong) -> Result<&'a Arc<Model>, Throw> {
    if handle == 0 {
        return Err(Throw::State("SmofModel is closed".into()));
    }
    // SAFETY: non-zero handles come from `into_handle` and are live: the Java class frees
    // them only once, under its lock, after which it never passes them again.
    Ok(unsafe { &*(handle as *const Arc<Model>) })
}

fn session_mut<'a>(handle: jlong) -> Result<&'a mut NativeSession, Throw> {
    if handle == 0 {
        return Err(Throw::State("SmofSession is closed".into()));
    }
    // SAFETY: as in `model_ref`; `SmofSession` methods are `synchronized`, so no two native
    // calls use one session at the same time.
    Ok(unsafe { &mut *(handle as *mut NativeSession) })
}

fn model_handle(model: Model) -> jlong {
    Box::into_raw(Box::new(Arc::new(model))) as jlong
}

fn jstr(env: &mut JNIEnv, s: &JString, what: &str) -> Result<String, Throw> {
    if s.is_null() {
        return Err(Throw::Arg(format!("{what} is null")));
    }
    Ok(env.get_string(s)?.into())
}

/// Validates `position`/`remaining` of a direct buffer of `T`s and returns its address.
fn direct_buffer<T>(
    env: &mut JNIEnv,
    buf: &JObject,
    position: jint,
    remaining: jint,
    what: &str,
) -> Result<(*mut T, usize), Throw> {
    if buf.is_null() {
        return Err(Throw::Arg(format!("{what} is null")));
    }
    // SAFETY: `buf` is a live local reference; wrapping it as a `JByteBuffer` only changes its
    // static type, and the JNI direct-buffer functions accept any `java.nio.Buffer`.
    let bb = unsafe { JByteBuffer::from_raw(buf.as_raw()) };
    let addr = env
        .get_direct_buffer_address(&bb)
        .map_err(|_| Throw::Arg(format!("{what} is not a direct buffer")))?;
    let cap = env
        .get_direct_buffer_capacity(&bb)
        .map_err(|_| Throw::Arg(format!("{what} is not a direct buffer")))?;
    if position < 0 || remaining < 0 || position as usize + remaining as usize > cap {
        return Err(Throw::Arg(format!(
            "{what}: position {position} + remaining {remaining} exceeds capacity {cap}"
        )));
    }
    // SAFETY: `position <= cap`, so the result stays inside the buffer's memory.
    let p = unsafe { addr.cast::<T>().add(position as usize) };
    Ok((p, remaining as usize))
}

/// Opens a model file by path (memory-mapped).
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeOpenFile<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    path: JString<'l>,
) -> jlong {
    guard(&mut env, 0, |env| {
        let p = jstr(env, &path, "path")?;
        Ok(model_handle(Model::open(&p).map_err(open_error)?))
    })
}

/// Opens a model from `length` bytes at `offset` of an int file descriptor (`length < 0`: to
/// the end of the file). The descriptor is duplicated, not consumed.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeFromIntFd<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    fd: jint,
    offset: jlong,
    length: jlong,
) -> jlong {
    guard(&mut env, 0, |_| from_fd(fd, offset, length))
}

/// Opens a model from a `java.io.FileDescriptor` (field `fd` on OpenJDK, `descriptor` on
/// Android); as `nativeFromIntFd`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeFromFd<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    fd: JObject<'l>,
    offset: jlong,
    length: jlong,
) -> jlong {
    guard(&mut env, 0, |env| {
        if fd.is_null() {
            return Err(Throw::Arg("file descriptor is null".into()));
        }
        let mut raw = None;
        for field in ["fd", "descriptor"] {
            match env.get_field(&fd, field, "I").and_then(|v| v.i()) {
                Ok(v) => {
                    raw = Some(v);
                    break;
                }
                Err(_) => {
                    // NoSuchFieldError is pending when the field does not exist.
                    env.exception_clear()?;
                }
            }
        }
        let raw = raw.ok_or_else(|| {
            Throw::Runtime("cannot read the int descriptor of java.io.FileDescriptor".into())
        })?;
        from_fd(raw, offset, length)
    })
}

fn from_fd(fd: jint, offset: jlong, length: jlong) -> Result<jlong, Throw> {
    if fd < 0 {
        return Err(Throw::Arg(format!(
            "file descriptor {fd} is not valid (closed?)"
        )));
    }
    if offset < 0 {
        return Err(Throw::Arg(format!("offset {offset} is negative")));
    }
    #[cfg(unix)]
    {
        use std::os::fd::BorrowedFd;
        // SAFETY: the borrow lasts only for the duplication below; if `fd` is not open,
        // `fcntl(F_DUPFD_CLOEXEC)` fails with EBADF and that is reported as an error.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| Throw::Io(format!("file descriptor {fd}: {e}")))?;
        let file = std::fs::File::from(owned);
        let offset = offset as u64;
        let len = if length < 0 {
            let total = file
                .metadata()
                .map_err(|e| Throw::Io(format!("file descriptor {fd}: {e}")))?
                .len();
            total.checked_sub(offset).ok_or_else(|| {
                Throw::Io(format!(
                    "offset {offset} is past the end of the file ({total} bytes)"
                ))
            })?
        } else {
            length as u64
        };
        let model =
            Model::open_range(&file, offset, len, &ModelOptions::default()).map_err(open_error)?;
        Ok(model_handle(model))
    }
    #[cfg(not(unix))]
    {
        let _ = length;
        Err(Throw::Runtime("file descriptors need a Unix system".into()))
    }
}

/// Copies a model from `remaining` bytes at `position` of a direct `ByteBuffer`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeFromDirectBuffer<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    buf: JObject<'l>,
    position: jint,
    remaining: jint,
) -> jlong {
    guard(&mut env, 0, |env| {
        let (p, n) = direct_buffer::<u8>(env, &buf, position, remaining, "buffer")?;
        // SAFETY: `direct_buffer` checked the range lies inside the buffer, which the Java
        // caller keeps reachable for the duration of this call.
        let bytes = unsafe { std::slice::from_raw_parts(p.cast_const(), n) };
        Ok(model_handle(Model::from_bytes(bytes).map_err(open_error)?))
    })
}

/// Copies a model from a `byte[]`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeFromBytes<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    bytes: JByteArray<'l>,
) -> jlong {
    guard(&mut env, 0, |env| {
        if bytes.is_null() {
            return Err(Throw::Arg("bytes is null".into()));
        }
        let v = env.convert_byte_array(&bytes)?;
        Ok(model_handle(Model::from_bytes(&v).map_err(open_error)?))
    })
}

/// Frees a model handle (sessions keep their own reference).
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeFree<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        if handle != 0 {
            // SAFETY: a live handle from `model_handle`, freed exactly once by the Java class.
            drop(unsafe { Box::from_raw(handle as *mut Arc<Model>) });
        }
        Ok(())
    })
}

/// Number of inputs (`output == false`) or outputs of a model.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeIoCount<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    output: bool,
) -> jint {
    guard(&mut env, 0, |_| {
        let g = model_ref(handle)?.graph();
        Ok(if output {
            g.outputs.len()
        } else {
            g.inputs.len()
        } as jint)
    })
}

fn io_desc(handle: jlong, output: bool, index: jint) -> Result<smof::graph::IoDesc, Throw> {
    let g = model_ref(handle)?.graph();
    let list = if output { &g.outputs } else { &g.inputs };
    usize::try_from(index)
        .ok()
        .and_then(|i| list.get(i))
        .cloned()
        .ok_or_else(|| {
            Throw::Arg(format!(
                "{} index {index} out of range (model has {})",
                if output { "output" } else { "input" },
                list.len()
            ))
        })
}

/// Shape (ONNX dims) of input or output `index` of a model.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeIoShape<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    output: bool,
    index: jint,
) -> jintArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let io = io_desc(handle, output, index)?;
        let dims: Vec<jint> = io
            .dims
            .iter()
            .map(|&d| jint::try_from(d).unwrap_or(jint::MAX))
            .collect();
        let arr = env.new_int_array(dims.len() as jint)?;
        env.set_int_array_region(&arr, 0, &dims)?;
        Ok(arr.into_raw())
    })
}

/// Name of input or output `index` of a model.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofModel_nativeIoName<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    output: bool,
    index: jint,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let io = io_desc(handle, output, index)?;
        Ok(env.new_string(io.name)?.into_raw())
    })
}

/// Creates a session over a model.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeNew<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    model: jlong,
    threads: jint,
    precision: jint,
) -> jlong {
    guard(&mut env, 0, |_| {
        if threads < 0 {
            return Err(Throw::Arg(format!("threads {threads} is negative")));
        }
        let m = Arc::clone(model_ref(model)?);
        // The ordinal of `SmofSession.Precision`.
        let precision = match precision {
            0 => Precision::F32,
            1 => Precision::Bf16,
            2 => Precision::F16,
            3 => Precision::Int8,
            p => return Err(Throw::Arg(format!("unknown precision {p}"))),
        };
        let s = NativeSession::new(m, threads as usize, precision).map_err(run_error)?;
        Ok(Box::into_raw(Box::new(s)) as jlong)
    })
}

/// The number of convs a session runs in bf16.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeBf16Convs<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
) -> jint {
    guard(&mut env, 0, |_| {
        let n = session_mut(handle)?.session.bf16_convs();
        Ok(n.min(jint::MAX as usize) as jint)
    })
}

/// The number of convs a session runs in f16.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeF16Convs<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
) -> jint {
    guard(&mut env, 0, |_| {
        let n = session_mut(handle)?.session.f16_convs();
        Ok(n.min(jint::MAX as usize) as jint)
    })
}

/// The number of convs a session runs in int8.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeInt8Convs<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
) -> jint {
    guard(&mut env, 0, |_| {
        let n = session_mut(handle)?.session.int8_convs();
        Ok(n.min(jint::MAX as usize) as jint)
    })
}

/// Frees a session handle.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeFree<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        if handle != 0 {
            // SAFETY: a live handle from `nativeNew`, freed exactly once by the Java class.
            drop(unsafe { Box::from_raw(handle as *mut NativeSession) });
        }
        Ok(())
    })
}

/// Runs a single-input model on a `float[]`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeRunArray<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    input: JFloatArray<'l>,
) {
    guard(&mut env, (), |env| {
        if input.is_null() {
            return Err(Throw::Arg("input is null".into()));
        }
        let s = session_mut(handle)?;
        let n = env.get_array_length(&input)? as usize;
        let mut buf = std::mem::take(&mut s.input);
        buf.resize(n, 0.0);
        let r = env
            .get_float_array_region(&input, 0, &mut buf)
            .map_err(Throw::from)
            .and_then(|()| s.session.run(&[&buf]).map_err(run_error));
        s.input = buf;
        r
    })
}

/// Runs a single-input model on `remaining` floats at `position` of a direct `FloatBuffer`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeRunDirect<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    input: JObject<'l>,
    position: jint,
    remaining: jint,
) {
    guard(&mut env, (), |env| {
        let (p, n) = direct_buffer::<f32>(env, &input, position, remaining, "input")?;
        let s = session_mut(handle)?;
        if (p as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            // SAFETY: the range was checked against the buffer's capacity and is aligned; the
            // Java caller keeps the buffer reachable for the duration of the call.
            let x = unsafe { std::slice::from_raw_parts(p.cast_const(), n) };
            s.session.run(&[x]).map_err(run_error)
        } else {
            let mut buf = std::mem::take(&mut s.input);
            buf.clear();
            // SAFETY: as above, read byte-wise because the address is not float-aligned.
            let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>().cast_const(), n * 4) };
            buf.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
            let r = s.session.run(&[&buf]).map_err(run_error);
            s.input = buf;
            r
        }
    })
}

fn output_of(s: &NativeSession, index: jint) -> Result<&[f32], Throw> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < s.session.output_count())
        .map(|i| s.session.output(i))
        .ok_or_else(|| {
            Throw::Arg(format!(
                "output index {index} out of range (model has {})",
                s.session.output_count()
            ))
        })
}

/// Output `index` of the last run as a new `float[]`.
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeOutput<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    index: jint,
) -> jfloatArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let s = session_mut(handle)?;
        let y = output_of(s, index)?;
        let arr = env.new_float_array(y.len() as jint)?;
        env.set_float_array_region(&arr, 0, y)?;
        Ok(arr.into_raw())
    })
}

/// Copies output `index` into a `float[]` at `offset` (no allocation).
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeOutputIntoArray<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    index: jint,
    out: JFloatArray<'l>,
    offset: jint,
) {
    guard(&mut env, (), |env| {
        if out.is_null() {
            return Err(Throw::Arg("output array is null".into()));
        }
        let s = session_mut(handle)?;
        let y = output_of(s, index)?;
        let n = env.get_array_length(&out)?;
        if offset < 0 || (n as i64 - offset as i64) < y.len() as i64 {
            return Err(Throw::Arg(format!(
                "output array of {n} floats from offset {offset} cannot hold {} floats",
                y.len()
            )));
        }
        env.set_float_array_region(&out, offset, y)?;
        Ok(())
    })
}

/// Copies output `index` into a direct `FloatBuffer` at `position` (no allocation).
#[no_mangle]
pub extern "system" fn Java_dev_smof_SmofSession_nativeOutputDirect<'l>(
    mut env: JNIEnv<'l>,
    _cls: JClass<'l>,
    handle: jlong,
    index: jint,
    out: JObject<'l>,
    position: jint,
    remaining: jint,
) {
    guard(&mut env, (), |env| {
        let (p, n) = direct_buffer::<f32>(env, &out, position, remaining, "output")?;
        let s = session_mut(handle)?;
        let y = output_of(s, index)?;
        if n < y.len() {
            return Err(Throw::Arg(format!(
                "output buffer has {n} floats remaining, output {index} has {}",
                y.len()
            )));
        }
        // SAFETY: `n >= y.len()` floats from `p` lie inside the buffer (checked against its
        // capacity); copied byte-wise so alignment does not matter; the session's output is
        // Rust-owned memory and cannot overlap a Java buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(y.as_ptr().cast::<u8>(), p.cast::<u8>(), y.len() * 4)
        };
        Ok(())
    })
}
