/*
 * End-to-end and misuse test of the SMOF C API (runtime/include/smof.h).
 *
 * usage: smof_test MODEL.smof INPUT.f32 EXPECTED.f32 WORKDIR
 *   INPUT.f32 / EXPECTED.f32: raw little-endian float32 (the input image and the output of
 *   `smof run` on it). WORKDIR: a writable directory for derived files.
 * Exit status 0 when every check passes; every failed check is printed.
 */
#include "smof.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, " (last error: \"%s\")\n", smof_last_error());                 \
        }                                                                                  \
    } while (0)

/* Checks that `call` returns `want` and that the last error contains `needle`. */
#define EXPECT_STATUS(call, want, needle)                                                  \
    do {                                                                                   \
        int32_t st_ = (call);                                                              \
        CHECK(st_ == (want), "%s returned %s, want %s", #call, smof_status_name(st_),      \
              smof_status_name(want));                                                     \
        if ((want) != SMOF_OK) {                                                           \
            CHECK(strstr(smof_last_error(), (needle)) != NULL,                             \
                  "last error of %s lacks \"%s\"", #call, (needle));                       \
        } else {                                                                           \
            CHECK(smof_last_error()[0] == '\0', "last error not cleared after success");   \
        }                                                                                  \
    } while (0)

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *prefix, size_t prefix_len, const void *data,
                       size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (prefix_len) fwrite(prefix, 1, prefix_len, f);
    fwrite(data, 1, len, f);
    fwrite("trailer", 1, 7, f);
    fclose(f);
}

static float *expected;
static size_t expected_len;
static float *input;
static size_t input_len;

/* Relative comparison against the reference, with a floor tied to the output's scale. */
static int compare(const float *got, size_t n, const char *what) {
    if (n != expected_len) {
        fprintf(stderr, "FAIL %s: %zu outputs, reference has %zu\n", what, n, expected_len);
        return 0;
    }
    float maxabs = 0;
    for (size_t i = 0; i < n; i++) maxabs = fmaxf(maxabs, fabsf(expected[i]));
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - expected[i]);
        double scale = fmax(fabs(expected[i]), 1e-3 * maxabs);
        double r = scale > 0 ? d / scale : d;
        if (r > worst) worst = r;
    }
    if (worst > 1e-5) {
        fprintf(stderr, "FAIL %s: max relative error %.3g > 1e-5\n", what, worst);
        return 0;
    }
    printf("ok   %s: max relative error %.3g\n", what, worst);
    return 1;
}

/* Runs `model` once on the reference input and compares. */
/* The cosine similarity of `got` to the expected output. */
static double cosine_to_expected(const float *got) {
    double dot = 0, ne = 0, ng = 0;
    for (size_t i = 0; i < expected_len; i++) {
        dot += (double)got[i] * expected[i];
        ne += (double)expected[i] * expected[i];
        ng += (double)got[i] * got[i];
    }
    return dot / sqrt(ne * ng);
}

static void run_and_compare(smof_model model, const char *what) {
    smof_session s = {0};
    EXPECT_STATUS(smof_session_new(model, 1, &s), SMOF_OK, "");
    EXPECT_STATUS(smof_session_run1(s, input, input_len), SMOF_OK, "");
    size_t n = 0;
    EXPECT_STATUS(smof_session_output_len(s, 0, &n), SMOF_OK, "");
    float *out = calloc(n ? n : 1, sizeof(float));
    EXPECT_STATUS(smof_session_output(s, 0, out, n), SMOF_OK, "");
    CHECK(compare(out, n, what), "%s output differs", what);
    free(out);
    EXPECT_STATUS(smof_session_free(s), SMOF_OK, "");
}

struct thread_arg {
    smof_model model;
    int ok;
};

static void *thread_main(void *p) {
    struct thread_arg *a = p;
    smof_session s = {0};
    a->ok = 0;
    if (smof_session_new(a->model, 1, &s) != SMOF_OK) return NULL;
    float *out = calloc(expected_len, sizeof(float));
    int good = 1;
    for (int k = 0; k < 2; k++) {
        if (smof_session_run1(s, input, input_len) != SMOF_OK ||
            smof_session_output(s, 0, out, expected_len) != SMOF_OK)
            good = 0;
        for (size_t i = 0; i < expected_len && good; i++)
            if (fabsf(out[i] - expected[i]) > 1e-5f * fmaxf(fabsf(expected[i]), 1e-3f)) good = 0;
    }
    free(out);
    a->ok = good && smof_session_free(s) == SMOF_OK;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.smof INPUT.f32 EXPECTED.f32 WORKDIR\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    const char *workdir = argv[4];
    size_t bytes;
    input = read_file(argv[2], &bytes);
    input_len = bytes / sizeof(float);
    expected = read_file(argv[3], &bytes);
    expected_len = bytes / sizeof(float);
    size_t model_len;
    uint8_t *model_bytes = read_file(model_path, &model_len);
    char path[4096];

    printf("smof %s\n", smof_version());
    CHECK(strlen(smof_version()) > 0, "empty version");
    CHECK(strcmp(smof_status_name(SMOF_ERR_IO), "SMOF_ERR_IO") == 0, "status name");

    /* ---- the happy path ---- */
    smof_model model = {0};
    EXPECT_STATUS(smof_model_open(model_path, &model), SMOF_OK, "");
    CHECK(model.id != 0, "zero model id");
    size_t n_in = 0, n_out = 0, rank = 0;
    int64_t dims[8] = {0};
    EXPECT_STATUS(smof_model_input_count(model, &n_in), SMOF_OK, "");
    EXPECT_STATUS(smof_model_output_count(model, &n_out), SMOF_OK, "");
    CHECK(n_in == 1 && n_out == 1, "counts %zu %zu", n_in, n_out);
    EXPECT_STATUS(smof_model_input_shape(model, 0, dims, 8, &rank), SMOF_OK, "");
    int64_t elems = 1;
    for (size_t i = 0; i < rank; i++) elems *= dims[i];
    CHECK(rank == 4 && (size_t)elems == input_len, "input rank %zu elems %lld vs %zu", rank,
          (long long)elems, input_len);
    printf("ok   input shape [%lld, %lld, %lld, %lld]\n", (long long)dims[0], (long long)dims[1],
           (long long)dims[2], (long long)dims[3]);
    EXPECT_STATUS(smof_model_output_shape(model, 0, dims, 8, &rank), SMOF_OK, "");
    elems = 1;
    for (size_t i = 0; i < rank; i++) elems *= dims[i];
    CHECK((size_t)elems == expected_len, "output elems %lld vs %zu", (long long)elems,
          expected_len);

    run_and_compare(model, "smof_model_open + run1");

    {   /* bf16 sessions: close to f32 where the CPU has bf16 kernels, the same elsewhere. */
        smof_session b = {0};
        EXPECT_STATUS(smof_session_new_ex(model, 1, SMOF_SESSION_BF16, &b), SMOF_OK, "");
        size_t convs = 0;
        EXPECT_STATUS(smof_session_bf16_convs(b, &convs), SMOF_OK, "");
        EXPECT_STATUS(smof_session_run1(b, input, input_len), SMOF_OK, "");
        float *out = calloc(expected_len, sizeof(float));
        EXPECT_STATUS(smof_session_output(b, 0, out, expected_len), SMOF_OK, "");
        double cosine = cosine_to_expected(out);
        if (convs > 0) {
            CHECK(convs == 34, "bf16 convs %zu, the backbone has 34 pointwise convs", convs);
            CHECK(cosine >= 0.99, "bf16 embedding cosine to f32 %f", cosine);
        } else {
            CHECK(compare(out, expected_len, "bf16 without bf16 kernels"), "f32 fallback");
        }
        free(out);
        EXPECT_STATUS(smof_session_free(b), SMOF_OK, "");
        EXPECT_STATUS(smof_session_bf16_convs(b, &convs), SMOF_ERR_INVALID_HANDLE, "");
        EXPECT_STATUS(smof_session_new_ex(model, 1, 8, &b), SMOF_ERR_INVALID_ARGUMENT, "flags");
        EXPECT_STATUS(smof_session_new_ex(model, 1, SMOF_SESSION_BF16 | SMOF_SESSION_F16, &b),
                      SMOF_ERR_INVALID_ARGUMENT, "exclude each other");
        EXPECT_STATUS(smof_session_new_ex(model, 1, SMOF_SESSION_INT8 | SMOF_SESSION_F16, &b),
                      SMOF_ERR_INVALID_ARGUMENT, "exclude each other");
        EXPECT_STATUS(smof_session_new_ex(model, 1, 0, NULL), SMOF_ERR_NULL_POINTER, "out");
        smof_session f = {0};
        EXPECT_STATUS(smof_session_new_ex(model, 1, 0, &f), SMOF_OK, "");
        EXPECT_STATUS(smof_session_bf16_convs(f, &convs), SMOF_OK, "");
        CHECK(convs == 0, "an f32 session has %zu bf16 convs", convs);
        EXPECT_STATUS(smof_session_f16_convs(f, &convs), SMOF_OK, "");
        CHECK(convs == 0, "an f32 session has %zu f16 convs", convs);
        EXPECT_STATUS(smof_session_free(f), SMOF_OK, "");
    }

    {   /* f16 sessions: FEAT_FP16 is an aarch64 feature; on this host they compute in f32. */
        smof_session h = {0};
        EXPECT_STATUS(smof_session_new_ex(model, 1, SMOF_SESSION_F16, &h), SMOF_OK, "");
        size_t convs = 0;
        EXPECT_STATUS(smof_session_f16_convs(h, &convs), SMOF_OK, "");
        EXPECT_STATUS(smof_session_run1(h, input, input_len), SMOF_OK, "");
        float *out = calloc(expected_len, sizeof(float));
        EXPECT_STATUS(smof_session_output(h, 0, out, expected_len), SMOF_OK, "");
        if (convs > 0) {
            CHECK(convs == 34, "f16 convs %zu, the backbone has 34 pointwise convs", convs);
            CHECK(cosine_to_expected(out) >= 0.99, "f16 embedding cosine to f32");
        } else {
            CHECK(compare(out, expected_len, "f16 without f16 kernels"), "f32 fallback");
        }
        free(out);
        EXPECT_STATUS(smof_session_bf16_convs(h, &convs), SMOF_OK, "");
        CHECK(convs == 0, "an f16 session has %zu bf16 convs", convs);
        EXPECT_STATUS(smof_session_free(h), SMOF_OK, "");
        EXPECT_STATUS(smof_session_f16_convs(h, &convs), SMOF_ERR_INVALID_HANDLE, "");
    }

    {   /* int8 sessions: close to f32 where the CPU has AVX512-VNNI (or, on aarch64, the dot
         * product instructions), the same as f32 elsewhere. */
        smof_session q = {0};
        EXPECT_STATUS(smof_session_new_ex(model, 1, SMOF_SESSION_INT8, &q), SMOF_OK, "");
        size_t convs = 0;
        EXPECT_STATUS(smof_session_int8_convs(q, &convs), SMOF_OK, "");
        EXPECT_STATUS(smof_session_run1(q, input, input_len), SMOF_OK, "");
        float *out = calloc(expected_len, sizeof(float));
        EXPECT_STATUS(smof_session_output(q, 0, out, expected_len), SMOF_OK, "");
        if (convs > 0) {
            CHECK(convs == 34, "int8 convs %zu, the backbone has 34 pointwise convs", convs);
            double cosine = cosine_to_expected(out);
            CHECK(cosine >= 0.99, "int8 embedding cosine to f32 %f", cosine);
        } else {
            CHECK(compare(out, expected_len, "int8 without int8 kernels"), "f32 fallback");
        }
        free(out);
        EXPECT_STATUS(smof_session_bf16_convs(q, &convs), SMOF_OK, "");
        CHECK(convs == 0, "an int8 session has %zu bf16 convs", convs);
        EXPECT_STATUS(smof_session_free(q), SMOF_OK, "");
        EXPECT_STATUS(smof_session_int8_convs(q, &convs), SMOF_ERR_INVALID_HANDLE, "");
    }

    {   /* A session planned for another input size; bad shapes are errors. */
        smof_session r = {0};
        const int64_t small[4] = {1, 3, 160, 160};
        EXPECT_STATUS(smof_session_new_with_shape(model, 1, small, 4, &r), SMOF_OK, "");
        size_t n = 0;
        EXPECT_STATUS(smof_session_input_len(r, 0, &n), SMOF_OK, "");
        CHECK(n == 3 * 160 * 160, "reshaped input len %zu", n);
        float *x = calloc(n, sizeof(float));
        EXPECT_STATUS(smof_session_run1(r, x, n), SMOF_OK, "");
        EXPECT_STATUS(smof_session_output_len(r, 0, &n), SMOF_OK, "");
        CHECK(n == expected_len, "reshaped output len %zu", n);
        free(x);
        EXPECT_STATUS(smof_session_free(r), SMOF_OK, "");
        const int64_t four_channels[4] = {1, 4, 160, 160};
        EXPECT_STATUS(smof_session_new_with_shape(model, 1, four_channels, 4, &r),
                      SMOF_ERR_INVALID_ARGUMENT, "channels");
        EXPECT_STATUS(smof_session_new_with_shape(model, 1, NULL, 4, &r), SMOF_ERR_NULL_POINTER,
                      "dims");
        const int64_t zero[4] = {1, 3, 0, 160};
        EXPECT_STATUS(smof_session_new_with_shape(model, 1, zero, 4, &r),
                      SMOF_ERR_INVALID_ARGUMENT, "below 1");
    }

    smof_session s = {0};
    EXPECT_STATUS(smof_session_new(model, 0, &s), SMOF_OK, "");
    size_t in_len = 0;
    EXPECT_STATUS(smof_session_input_len(s, 0, &in_len), SMOF_OK, "");
    CHECK(in_len == input_len, "input len %zu", in_len);
    const float *ins[1] = {input};
    size_t lens[1] = {input_len};
    EXPECT_STATUS(smof_session_run(s, ins, lens, 1), SMOF_OK, "");
    float *out = calloc(expected_len + 16, sizeof(float));
    EXPECT_STATUS(smof_session_output(s, 0, out, expected_len + 16), SMOF_OK, "");
    CHECK(compare(out, expected_len, "smof_session_run"), "run output");

    /* Other ways to load the same model. */
    smof_model m2 = {0};
    EXPECT_STATUS(smof_model_open_copied(model_path, &m2), SMOF_OK, "");
    run_and_compare(m2, "smof_model_open_copied");
    EXPECT_STATUS(smof_model_free(m2), SMOF_OK, "");
    EXPECT_STATUS(smof_model_from_bytes(model_bytes, model_len, &m2), SMOF_OK, "");
    run_and_compare(m2, "smof_model_from_bytes");
    EXPECT_STATUS(smof_model_free(m2), SMOF_OK, "");

    /* From a descriptor, the model embedded after a prefix (aligned: mapped; unaligned: read). */
    size_t prefixes[] = {0, 64, 4096, 65536 + 128, 100, 3};
    char *junk = malloc(65536 + 128);
    memset(junk, 0x5a, 65536 + 128);
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        snprintf(path, sizeof path, "%s/embedded_%zu.bin", workdir, prefixes[k]);
        write_file(path, junk, prefixes[k], model_bytes, model_len);
        int fd = open(path, O_RDONLY);
        CHECK(fd >= 0, "open %s", path);
        EXPECT_STATUS(smof_model_from_fd(fd, prefixes[k], model_len, &m2), SMOF_OK, "");
        close(fd); /* the model must not depend on the caller's descriptor */
        char what[64];
        snprintf(what, sizeof what, "smof_model_from_fd offset %zu", prefixes[k]);
        run_and_compare(m2, what);
        EXPECT_STATUS(smof_model_free(m2), SMOF_OK, "");
    }
    /* len 0 = to the end of the file (only valid without the trailer: plain model file). */
    {
        int fd = open(model_path, O_RDONLY);
        EXPECT_STATUS(smof_model_from_fd(fd, 0, 0, &m2), SMOF_OK, "");
        close(fd);
        run_and_compare(m2, "smof_model_from_fd whole file");
        EXPECT_STATUS(smof_model_free(m2), SMOF_OK, "");
    }

    /* Two threads, one session each, sharing one model. */
    {
        pthread_t t[2];
        struct thread_arg a[2] = {{model, 0}, {model, 0}};
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, thread_main, &a[i]);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        CHECK(a[0].ok && a[1].ok, "threaded sessions");
        printf("ok   two threads, two sessions, one model\n");
    }

    /* ---- misuse ---- */
    smof_model bad = {0};
    EXPECT_STATUS(smof_model_open(NULL, &bad), SMOF_ERR_NULL_POINTER, "path");
    EXPECT_STATUS(smof_model_open(model_path, NULL), SMOF_ERR_NULL_POINTER, "out");
    EXPECT_STATUS(smof_model_open_copied(NULL, &bad), SMOF_ERR_NULL_POINTER, "path");
    EXPECT_STATUS(smof_model_open("/nonexistent/x.smof", &bad), SMOF_ERR_IO,
                  "/nonexistent/x.smof");
    EXPECT_STATUS(smof_model_open("\xff\xfe", &bad), SMOF_ERR_INVALID_ARGUMENT, "UTF-8");
    snprintf(path, sizeof path, "%s/corrupt.smof", workdir);
    write_file(path, NULL, 0, "this is not a smof model at all, just text", 40);
    EXPECT_STATUS(smof_model_open(path, &bad), SMOF_ERR_CORRUPT, "corrupt");
    EXPECT_STATUS(smof_model_from_bytes(NULL, 10, &bad), SMOF_ERR_NULL_POINTER, "data");
    EXPECT_STATUS(smof_model_from_bytes(model_bytes, model_len / 2, &bad), SMOF_ERR_CORRUPT, "");
    EXPECT_STATUS(smof_model_from_bytes(model_bytes, 0, &bad), SMOF_ERR_CORRUPT, "");
    EXPECT_STATUS(smof_model_from_bytes(model_bytes, model_len, NULL), SMOF_ERR_NULL_POINTER,
                  "out");
    /* A damaged byte in the middle of the weights is caught by the checksum. */
    {
        uint8_t *copy = malloc(model_len);
        memcpy(copy, model_bytes, model_len);
        copy[model_len - 1000] ^= 0xff;
        EXPECT_STATUS(smof_model_from_bytes(copy, model_len, &bad), SMOF_ERR_CORRUPT, "");
        free(copy);
    }
    EXPECT_STATUS(smof_model_from_fd(-1, 0, 0, &bad), SMOF_ERR_INVALID_ARGUMENT, "-1");
    EXPECT_STATUS(smof_model_from_fd(987654, 0, 0, &bad), SMOF_ERR_IO, "987654");
    {
        int fd = open(model_path, O_RDONLY);
        EXPECT_STATUS(smof_model_from_fd(fd, (uint64_t)model_len + 10, 0, &bad), SMOF_ERR_IO,
                      "past the end");
        EXPECT_STATUS(smof_model_from_fd(fd, 64, model_len, &bad), SMOF_ERR_IO, "outside");
        EXPECT_STATUS(smof_model_from_fd(fd, UINT64_MAX - 1, 16, &bad), SMOF_ERR_IO, "outside");
        EXPECT_STATUS(smof_model_from_fd(fd, 0, model_len, NULL), SMOF_ERR_NULL_POINTER, "out");
        close(fd);
    }
    CHECK(bad.id == 0, "failed opens must not write a handle");

    EXPECT_STATUS(smof_model_input_count(model, NULL), SMOF_ERR_NULL_POINTER, "out");
    EXPECT_STATUS(smof_model_input_shape(model, 5, dims, 8, &rank), SMOF_ERR_INVALID_ARGUMENT,
                  "out of range");
    rank = 0;
    EXPECT_STATUS(smof_model_input_shape(model, 0, dims, 2, &rank), SMOF_ERR_INVALID_ARGUMENT,
                  "capacity");
    CHECK(rank == 4, "rank reported even when capacity is short: %zu", rank);
    EXPECT_STATUS(smof_model_input_shape(model, 0, NULL, 8, &rank), SMOF_ERR_NULL_POINTER,
                  "dims");
    EXPECT_STATUS(smof_model_output_shape(model, 0, dims, 8, NULL), SMOF_ERR_NULL_POINTER,
                  "rank");

    EXPECT_STATUS(smof_session_run1(s, input, input_len - 1), SMOF_ERR_INVALID_ARGUMENT,
                  "values");
    EXPECT_STATUS(smof_session_run1(s, input, input_len + 1), SMOF_ERR_INVALID_ARGUMENT,
                  "values");
    EXPECT_STATUS(smof_session_run1(s, NULL, input_len), SMOF_ERR_NULL_POINTER, "input");
    EXPECT_STATUS(smof_session_run1(s, (const float *)((const char *)input + 1), 10),
                  SMOF_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_STATUS(smof_session_run1(s, input, SIZE_MAX), SMOF_ERR_INVALID_ARGUMENT,
                  "too large");
    EXPECT_STATUS(smof_session_run(s, NULL, lens, 1), SMOF_ERR_NULL_POINTER, "inputs");
    EXPECT_STATUS(smof_session_run(s, ins, NULL, 1), SMOF_ERR_NULL_POINTER, "lengths");
    {
        const float *two[2] = {input, input};
        size_t two_lens[2] = {input_len, input_len};
        EXPECT_STATUS(smof_session_run(s, two, two_lens, 2), SMOF_ERR_INVALID_ARGUMENT,
                      "1 input(s), 2 given");
        const float *null_in[1] = {NULL};
        EXPECT_STATUS(smof_session_run(s, null_in, lens, 1), SMOF_ERR_NULL_POINTER,
                      "inputs[0]");
    }
    EXPECT_STATUS(smof_session_output(s, 0, out, expected_len - 1), SMOF_ERR_INVALID_ARGUMENT,
                  "holds");
    EXPECT_STATUS(smof_session_output(s, 1, out, expected_len), SMOF_ERR_INVALID_ARGUMENT,
                  "out of range");
    EXPECT_STATUS(smof_session_output(s, 0, NULL, expected_len), SMOF_ERR_NULL_POINTER, "out");
    EXPECT_STATUS(smof_session_output_len(s, 3, &in_len), SMOF_ERR_INVALID_ARGUMENT,
                  "out of range");
    EXPECT_STATUS(smof_session_new(model, 1, NULL), SMOF_ERR_NULL_POINTER, "out");
    /* A failed run leaves the session usable. */
    EXPECT_STATUS(smof_session_run1(s, input, input_len), SMOF_OK, "");
    memset(out, 0, expected_len * sizeof(float));
    EXPECT_STATUS(smof_session_output(s, 0, out, expected_len), SMOF_OK, "");
    CHECK(compare(out, expected_len, "run after failed runs"), "run after failures");

    /* Handles: zero, wrong kind, freed, double free. */
    smof_model zero_model = {0};
    smof_session zero_session = {0};
    EXPECT_STATUS(smof_model_free(zero_model), SMOF_ERR_INVALID_HANDLE, "not live");
    EXPECT_STATUS(smof_session_free(zero_session), SMOF_ERR_INVALID_HANDLE, "not live");
    smof_model as_model = {s.id};
    EXPECT_STATUS(smof_model_input_count(as_model, &n_in), SMOF_ERR_INVALID_HANDLE, "not live");
    smof_session as_session = {model.id};
    EXPECT_STATUS(smof_session_run1(as_session, input, input_len), SMOF_ERR_INVALID_HANDLE,
                  "not live");

    /* Freeing the model first: the session keeps it alive. */
    EXPECT_STATUS(smof_model_free(model), SMOF_OK, "");
    EXPECT_STATUS(smof_model_free(model), SMOF_ERR_INVALID_HANDLE, "already freed");
    EXPECT_STATUS(smof_model_input_count(model, &n_in), SMOF_ERR_INVALID_HANDLE, "not live");
    smof_session s2 = {0};
    EXPECT_STATUS(smof_session_new(model, 1, &s2), SMOF_ERR_INVALID_HANDLE, "not live");
    EXPECT_STATUS(smof_session_run1(s, input, input_len), SMOF_OK, "");
    EXPECT_STATUS(smof_session_output(s, 0, out, expected_len), SMOF_OK, "");
    CHECK(compare(out, expected_len, "run after smof_model_free"), "session outlives model");
    EXPECT_STATUS(smof_session_free(s), SMOF_OK, "");
    EXPECT_STATUS(smof_session_free(s), SMOF_ERR_INVALID_HANDLE, "already freed");
    EXPECT_STATUS(smof_session_run1(s, input, input_len), SMOF_ERR_INVALID_HANDLE, "not live");
    EXPECT_STATUS(smof_session_output(s, 0, out, expected_len), SMOF_ERR_INVALID_HANDLE,
                  "not live");
    EXPECT_STATUS(smof_session_input_len(s, 0, &in_len), SMOF_ERR_INVALID_HANDLE, "not live");

    free(out);
    free(junk);
    free(model_bytes);
    free(input);
    free(expected);
    printf("%d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
