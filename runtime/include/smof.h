/*
 * smof.h — C API of the SMOF CNN inference runtime.
 *
 * Link against libsmof.a (static; also link -lpthread -ldl -lm) or libsmof.so, both built by
 * `cargo build --release -p smof-capi` into target/release/.
 *
 * Conventions
 *  - Every function except smof_version, smof_status_name and smof_last_error returns an
 *    int32_t status: SMOF_OK (0) or one of SMOF_ERR_*.
 *  - On failure, smof_last_error() returns a message for the calling thread; on success it is
 *    "". The pointer is valid until the next smof_* call on the same thread.
 *  - Models and sessions are handles (a struct holding a 64-bit id). Ids are never reused, so a
 *    freed or zero handle gives SMOF_ERR_INVALID_HANDLE rather than undefined behaviour, and
 *    freeing twice is an error, not a double free.
 *  - A model is immutable and thread-safe; create one session per thread. A session keeps its
 *    model alive, so the model may be freed before its sessions.
 *  - Tensors are float32 in ONNX element order (NCHW for images).
 *  - No Rust panic crosses this boundary: an internal bug returns SMOF_ERR_PANIC.
 */
#ifndef SMOF_H
#define SMOF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
#define SMOF_OK 0
/** A required pointer argument was NULL. */
#define SMOF_ERR_NULL_POINTER 1
/** An argument is out of range: wrong buffer length, index, non-UTF-8 path, misaligned pointer. */
#define SMOF_ERR_INVALID_ARGUMENT 2
/** The handle is not live: never created, already freed, or of the wrong kind. */
#define SMOF_ERR_INVALID_HANDLE 3
/** The model file could not be opened, read or mapped. */
#define SMOF_ERR_IO 4
/** The bytes are not a valid .smof model. */
#define SMOF_ERR_CORRUPT 5
/** The model needs something this build does not support (newer format version, kernels). */
#define SMOF_ERR_UNSUPPORTED 6
/** An allocation the model needs is larger than the runtime's limit. */
#define SMOF_ERR_TOO_LARGE 7
/** Internal error (a caught panic); see smof_last_error(). */
#define SMOF_ERR_PANIC 8
/** Any other failure. */
#define SMOF_ERR_INTERNAL 9

/** A loaded model. id 0 is never valid: zero-initialise handles you have not opened yet. */
typedef struct smof_model {
    uint64_t id;
} smof_model;

/** A session: one thread's planned buffers over a model. id 0 is never valid. */
typedef struct smof_session {
    uint64_t id;
} smof_session;

/** Library version, e.g. "0.1.0". Static storage. */
const char *smof_version(void);

/** Symbolic name of a status code, e.g. "SMOF_ERR_IO". Static storage. */
const char *smof_status_name(int32_t status);

/** Message of the last failed call on this thread, or "" after a success. Never NULL. */
const char *smof_last_error(void);

/** Memory-maps and validates the .smof file at `path` (UTF-8). The file must not be modified
 *  in place while the model is alive. */
int32_t smof_model_open(const char *path, smof_model *out);

/** Like smof_model_open, but reads the file into memory instead of mapping it. */
int32_t smof_model_open_copied(const char *path, smof_model *out);

/** Validates a model held in memory; the `len` bytes at `data` are copied. */
int32_t smof_model_from_bytes(const uint8_t *data, size_t len, smof_model *out);

/** Opens the model stored in the `len` bytes at `offset` of the open descriptor `fd`
 *  (`len` 0: up to the end of the file), e.g. an uncompressed Android asset from
 *  AAsset_openFileDescriptor64. Mapped without a copy when `offset` is a multiple of 64.
 *  `fd` is not consumed and may be closed as soon as this returns. */
int32_t smof_model_from_fd(int32_t fd, uint64_t offset, uint64_t len, smof_model *out);

/** Releases a model handle. Sessions created from it stay valid. */
int32_t smof_model_free(smof_model model);

/** Number of model inputs. */
int32_t smof_model_input_count(smof_model model, size_t *out);

/** Number of model outputs. */
int32_t smof_model_output_count(smof_model model, size_t *out);

/** Shape of input `index`: `*rank` receives the rank, `dims[0..rank]` the dims (ONNX order).
 *  If `capacity` < rank, `*rank` is still set and SMOF_ERR_INVALID_ARGUMENT is returned. */
int32_t smof_model_input_shape(smof_model model, size_t index, int64_t *dims, size_t capacity,
                               size_t *rank);

/** Shape of output `index`; as smof_model_input_shape. */
int32_t smof_model_output_shape(smof_model model, size_t index, int64_t *dims, size_t capacity,
                                size_t *rank);

/** Creates a session over `model` with `threads` worker threads (0 or 1: calling thread only).
 *  All buffers are allocated here; runs allocate nothing. */
int32_t smof_session_new(smof_model model, uint32_t threads, smof_session *out);

/** A flag of smof_session_new_ex: bf16 products in the session's 1x1 convs where the CPU has
 *  AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and Sapphire Rapids and later) or, on aarch64,
 *  FEAT_BF16 (Armv8.6: Cortex-A510, A710, X2 and later); about twice the multiply-adds per
 *  instruction; MobileNetV2's ImageNet embedding keeps a cosine of 0.998 to
 *  its f32 value); elsewhere the session computes in f32. */
#define SMOF_SESSION_BF16 1u

/** A flag of smof_session_new_ex: f16 arithmetic in the session's 1x1 convs where the CPU has
 *  FEAT_FP16 (aarch64, Armv8.2 half precision: Cortex-A55, A75, A76 and later; twice the
 *  multiply-adds per instruction; inputs and weights rounded to f16, 32 products at a time
 *  summed in f16, then in f32); elsewhere the session computes in f32. Excludes
 *  SMOF_SESSION_BF16. */
#define SMOF_SESSION_F16 2u

/** A flag of smof_session_new_ex: int8 arithmetic in the session's 1x1 convs where the CPU
 *  has AVX512-VNNI (AMD Zen 4, Intel Ice Lake and Sapphire Rapids and later) or, on aarch64,
 *  FEAT_DotProd (Armv8.2: Cortex-A55, A75, A76 and later): four times the multiply-adds of
 *  f32 per instruction, weights quantized per output channel at session creation, inputs per
 *  pixel as the session runs; elsewhere the session computes in f32. Excludes
 *  SMOF_SESSION_BF16 and SMOF_SESSION_F16. */
#define SMOF_SESSION_INT8 4u

/** As smof_session_new, with `flags` a bitwise or of SMOF_SESSION_* values (0: as
 *  smof_session_new). Unknown bits give SMOF_ERR_INVALID_ARGUMENT. */
int32_t smof_session_new_ex(smof_model model, uint32_t threads, uint32_t flags, smof_session *out);

/** The number of convs (and, on AVX512-BF16, fully connected layers) `session` runs in
 *  bf16, in `*out` (0 unless created with SMOF_SESSION_BF16 on a CPU with AVX512-BF16 or
 *  FEAT_BF16). */
int32_t smof_session_bf16_convs(smof_session session, size_t *out);

/** The number of convs (on a CPU with FEAT_FP16) and fully connected layers (on any
 *  aarch64 CPU: f16 weights) `session` runs in f16, in `*out` (0 unless created with
 *  SMOF_SESSION_F16 on aarch64). */
int32_t smof_session_f16_convs(smof_session session, size_t *out);

/** The number of convs `session` runs in int8, in `*out` (0 unless created with
 *  SMOF_SESSION_INT8 on a CPU with AVX512-VNNI or FEAT_DotProd). */
int32_t smof_session_int8_convs(smof_session session, size_t *out);

/** As smof_session_new, planned for another shape of input 0: `dims[0..rank]` in ONNX order
 *  (e.g. N, C, H, W). A shape the layers cannot take gives SMOF_ERR_INVALID_ARGUMENT. */
int32_t smof_session_new_with_shape(smof_model model, uint32_t threads, const int64_t *dims,
                                    size_t rank, smof_session *out);

/** Releases a session handle. */
int32_t smof_session_free(smof_session session);

/** Runs the model: `inputs[i]` holds `lengths[i]` floats for model input i; `count` must be the
 *  number of model inputs and each length the input's element count. Concurrent runs of one
 *  session are serialised. */
int32_t smof_session_run(smof_session session, const float *const *inputs, const size_t *lengths,
                         size_t count);

/** Runs a single-input model on the `length` floats at `input`. */
int32_t smof_session_run1(smof_session session, const float *input, size_t length);

/** Element count of input `index`. */
int32_t smof_session_input_len(smof_session session, size_t index, size_t *out);

/** Element count of output `index`. */
int32_t smof_session_output_len(smof_session session, size_t index, size_t *out);

/** Copies output `index` of the last run into `out` (room for `capacity` floats, at least the
 *  output's element count). */
int32_t smof_session_output(smof_session session, size_t index, float *out, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif /* SMOF_H */
