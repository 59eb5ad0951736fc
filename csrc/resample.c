/*
 * resample.c - streaming polyphase FIR resampler for 8/16/24/32/48 kHz.
 *
 * Design (done once per rate pair, in rtms_resample_filter_new):
 *   in_rate -> out_rate is L/M in lowest terms; the filter runs at F = L * in_rate.
 *   Passband edge fp: 3400 Hz when 8 kHz is a rate, 7000 Hz when the lower rate is
 *   16 kHz, else 0.43 * lower rate. Stopband edge fs = lower rate - fp, so every image
 *   (upsampling) and alias (downsampling) that would land in [0, fp] is >= 90 dB down,
 *   while the transition band folds onto itself, above fp.
 *   1. Kaiser-windowed sinc, 100 dB stopband (10 dB of margin over the 90 dB target),
 *      length from Kaiser's formula; DC gain normalised to exactly 1.
 *   2. Minimum-phase version with the same magnitude, by the real-cepstrum
 *      (homomorphic) method on a long FFT, truncated to the prototype length. This is
 *      what keeps the delay below 1 ms: a linear-phase filter of the same sharpness
 *      would delay by half its length (up to ~2.7 ms).
 *   3. Split into L polyphase branches, scaled by L, each padded to a multiple of 8
 *      taps with leading zeros and stored reversed, 64-byte aligned.
 *
 * Streaming: output k needs input floor(k*M/L) and the taps-1 samples before it, and
 * is written as soon as that input arrives (no look-ahead beyond the filter's own
 * delay). Input is converted to float one block at a time into the state buffer behind
 * taps-1 samples of history, so int16 and float32 share one inner loop and chunking
 * never changes a single output bit.
 *
 * Inner loops, chosen by ratio (the same loop shape for every kernel of a pair):
 *   - M = 1 (pure upsampling) and L = 1 (pure downsampling, after splitting the block
 *     into M residue streams): vectorised across outputs. A broadcast tap times 8
 *     consecutive inputs per vector, 32-64 outputs side by side, no horizontal sums. Each
 *     output is the plain sequential sum over its taps.
 *   - other ratios (2:3, 3:4, ...): an 8-lane dot product per output, four outputs at a
 *     time (independent add chains hide the add latency; one transpose reduces all four).
 * The scalar, SSE2 and AVX2 kernels do the same float multiplies and adds in the same
 * order, without fused multiply-add, so they give bit-identical results; AVX2 is picked
 * at run time when the CPU has it. Vector groups may run past the end of a block: those
 * outputs go to scratch slack and are dropped, and the inputs they read lie inside the
 * state buffer (cleared on reset), so nothing outside it is ever touched.
 *
 * No mutable globals, no allocation after rtms_resample_filter_new / rtms_resampler_new.
 */
#include "rtms_native.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define RESAMPLE_HAVE_SSE2 1
#endif
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define RESAMPLE_HAVE_AVX2 1
#endif

#define LANES 8
#define GROUP 4
#define STOPBAND_DB 100.0
#define PI 3.14159265358979323846

struct rtms_resample_filter;
typedef size_t (*block_fn)(const struct rtms_resample_filter *f, const float *buf, size_t b,
                           size_t *pos_io, uint32_t *phase_io, float *y);

struct rtms_resample_filter {
    uint32_t in_rate, out_rate;
    uint32_t L, M;      /* out/in = L/M in lowest terms */
    uint32_t taps;      /* per branch, multiple of LANES; 0 for the equal-rate copy */
    uint32_t first;     /* leading taps of every branch that are padding (zero) */
    int kernel;
    size_t delay;       /* output samples, rounded */
    double group_delay; /* output samples, mean over the passband */
    block_fn run_block;
    uint32_t step[6];       /* input samples to advance after an output of this phase */
    uint32_t next_phase[6]; /* phase of the following output */
    float *coef;            /* L branches x taps, reversed, 64-byte aligned */
    void *coef_mem;
};

/* ---- dot products: identical arithmetic in every kernel -------------------------- */
/*
 * GROUP outputs at a time. Output o accumulates lane l (0..7) as
 * acc[l] += h[t+l] * x[t+l] for t = 0, 8, 16, ... (a product rounded, then added), then
 * q[j] = acc[j] + acc[4+j] and y = (q[0] + q[2]) + (q[1] + q[3]). Every kernel does
 * exactly these float operations in this order, so their outputs are bit-identical.
 */

/* Walk the next (up to) GROUP outputs of the block: the caller fills the rest with
 * copies of the first, whose results it ignores. */
#define BLOCK_LOOP(DOT4)                                                                 \
    const size_t taps = f->taps;                                                       \
    const float *coef = f->coef;                                                       \
    size_t pos = *pos_io, w = 0;                                                       \
    uint32_t p = *phase_io;                                                            \
    while (pos < b) {                                                                  \
        const float *h[GROUP], *x[GROUP];                                              \
        h[0] = coef + (size_t)p * taps;                                                \
        x[0] = buf + pos;                                                              \
        pos += f->step[p];                                                             \
        p = f->next_phase[p];                                                          \
        size_t count = 1;                                                              \
        while (count < GROUP && pos < b) {                                             \
            h[count] = coef + (size_t)p * taps;                                        \
            x[count] = buf + pos;                                                      \
            pos += f->step[p];                                                         \
            p = f->next_phase[p];                                                      \
            count++;                                                                   \
        }                                                                              \
        for (size_t i = count; i < GROUP; i++) {                                       \
            h[i] = h[0];                                                               \
            x[i] = x[0];                                                               \
        }                                                                              \
        DOT4(h, x, taps, y + w);                                                       \
        w += count;                                                                    \
    }                                                                                  \
    *pos_io = pos;                                                                     \
    *phase_io = p;                                                                     \
    return w

static inline void dot4_scalar(const float *const h[GROUP], const float *const x[GROUP],
                               size_t taps, float *y)
{
    for (int o = 0; o < GROUP; o++) {
        float acc[LANES] = {0};
        for (size_t t = 0; t < taps; t += LANES) {
            for (int l = 0; l < LANES; l++) {
                /* separate statements: never contracted into a fused multiply-add */
                float prod = h[o][t + l] * x[o][t + l];
                acc[l] += prod;
            }
        }
        float q[4];
        for (int j = 0; j < 4; j++)
            q[j] = acc[j] + acc[4 + j];
        y[o] = (q[0] + q[2]) + (q[1] + q[3]);
    }
}

static size_t block_scalar(const struct rtms_resample_filter *f, const float *buf, size_t b,
                           size_t *pos_io, uint32_t *phase_io, float *y)
{
    BLOCK_LOOP(dot4_scalar);
}

#ifdef RESAMPLE_HAVE_SSE2
/* q0..q3 hold q[0..3] of outputs 0..3; store (q0+q2)+(q1+q3) of each. */
static inline void finish4_sse2(__m128 q0, __m128 q1, __m128 q2, __m128 q3, float *y)
{
    _MM_TRANSPOSE4_PS(q0, q1, q2, q3); /* now qj holds q[j] of outputs 0..3 */
    _mm_storeu_ps(y, _mm_add_ps(_mm_add_ps(q0, q2), _mm_add_ps(q1, q3)));
}

static inline void dot4_sse2(const float *const h[GROUP], const float *const x[GROUP],
                             size_t taps, float *y)
{
    __m128 a0 = _mm_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    __m128 c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    for (size_t t = 0; t < taps; t += LANES) {
        a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_load_ps(h[0] + t), _mm_loadu_ps(x[0] + t)));
        a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_load_ps(h[0] + t + 4), _mm_loadu_ps(x[0] + t + 4)));
        b0 = _mm_add_ps(b0, _mm_mul_ps(_mm_load_ps(h[1] + t), _mm_loadu_ps(x[1] + t)));
        b1 = _mm_add_ps(b1, _mm_mul_ps(_mm_load_ps(h[1] + t + 4), _mm_loadu_ps(x[1] + t + 4)));
        c0 = _mm_add_ps(c0, _mm_mul_ps(_mm_load_ps(h[2] + t), _mm_loadu_ps(x[2] + t)));
        c1 = _mm_add_ps(c1, _mm_mul_ps(_mm_load_ps(h[2] + t + 4), _mm_loadu_ps(x[2] + t + 4)));
        d0 = _mm_add_ps(d0, _mm_mul_ps(_mm_load_ps(h[3] + t), _mm_loadu_ps(x[3] + t)));
        d1 = _mm_add_ps(d1, _mm_mul_ps(_mm_load_ps(h[3] + t + 4), _mm_loadu_ps(x[3] + t + 4)));
    }
    finish4_sse2(_mm_add_ps(a0, a1), _mm_add_ps(b0, b1), _mm_add_ps(c0, c1), _mm_add_ps(d0, d1),
                 y);
}

static size_t block_sse2(const struct rtms_resample_filter *f, const float *buf, size_t b,
                         size_t *pos_io, uint32_t *phase_io, float *y)
{
    BLOCK_LOOP(dot4_sse2);
}
#endif

#ifdef RESAMPLE_HAVE_AVX2
#define AVX2 __attribute__((target("avx2")))
AVX2 static inline __m128 fold_avx2(__m256 acc) /* q[j] = acc[j] + acc[4+j] */
{
    return _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
}

AVX2 static inline void dot4_avx2(const float *const h[GROUP], const float *const x[GROUP],
                                  size_t taps, float *y)
{
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    for (size_t t = 0; t < taps; t += LANES) {
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_load_ps(h[0] + t), _mm256_loadu_ps(x[0] + t)));
        b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_load_ps(h[1] + t), _mm256_loadu_ps(x[1] + t)));
        c = _mm256_add_ps(c, _mm256_mul_ps(_mm256_load_ps(h[2] + t), _mm256_loadu_ps(x[2] + t)));
        d = _mm256_add_ps(d, _mm256_mul_ps(_mm256_load_ps(h[3] + t), _mm256_loadu_ps(x[3] + t)));
    }
    __m128 q0 = fold_avx2(a), q1 = fold_avx2(b), q2 = fold_avx2(c), q3 = fold_avx2(d);
    _MM_TRANSPOSE4_PS(q0, q1, q2, q3);
    _mm_storeu_ps(y, _mm_add_ps(_mm_add_ps(q0, q2), _mm_add_ps(q1, q3)));
}

AVX2 static size_t block_avx2(const struct rtms_resample_filter *f, const float *buf, size_t b,
                              size_t *pos_io, uint32_t *phase_io, float *y)
{
    BLOCK_LOOP(dot4_avx2);
}
#endif

/* ---- pure upsampling (M = 1): vectorised across outputs ---------------------------- */
/*
 * With M = 1 every input sample yields L outputs, one per branch, and the outputs of one
 * branch for consecutive inputs use consecutive windows. So eight (AVX2) or four (SSE2)
 * outputs of a branch are computed side by side: a broadcast tap times eight consecutive
 * inputs, no horizontal sums, and each coefficient load serves many outputs. Each output
 * is the plain sequential sum over its taps (products rounded, then added, tap order),
 * exactly what up_one computes, so every kernel gives bit-identical results.
 */

static inline float up_one(const float *c, const float *x, size_t first, size_t taps)
{
    float acc = 0.0f;
    for (size_t t = first; t < taps; t++) {
        float prod = c[t] * x[t];
        acc += prod;
    }
    return acc;
}

/* Outputs for inputs [from, b) of every branch, interleaved into y. */
static void up_tail(const struct rtms_resample_filter *f, const float *buf, size_t from,
                    size_t b, float *y)
{
    for (size_t i = from; i < b; i++)
        for (uint32_t p = 0; p < f->L; p++)
            y[i * f->L + p] = up_one(f->coef + (size_t)p * f->taps, buf + i, f->first, f->taps);
}

static size_t up_block_scalar(const struct rtms_resample_filter *f, const float *buf, size_t b,
                              size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io; /* stays 0: every input's outputs are written with it */
    *pos_io = b;
    up_tail(f, buf, 0, b, y);
    return b * f->L;
}

#ifdef RESAMPLE_HAVE_SSE2
static size_t up_block_sse2(const struct rtms_resample_filter *f, const float *buf, size_t b,
                            size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io;
    *pos_io = b;
    const size_t taps = f->taps, first = f->first, L = f->L;
    /* the last group may run past b: those outputs land in y's slack and are dropped */
    for (size_t i = 0; i < b; i += 16) {
        for (size_t p = 0; p < L; p++) {
            const float *c = f->coef + p * taps;
            __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t t = first; t < taps; t++) {
                __m128 cv = _mm_set1_ps(c[t]);
                const float *x = buf + i + t;
                a0 = _mm_add_ps(a0, _mm_mul_ps(cv, _mm_loadu_ps(x)));
                a1 = _mm_add_ps(a1, _mm_mul_ps(cv, _mm_loadu_ps(x + 4)));
                a2 = _mm_add_ps(a2, _mm_mul_ps(cv, _mm_loadu_ps(x + 8)));
                a3 = _mm_add_ps(a3, _mm_mul_ps(cv, _mm_loadu_ps(x + 12)));
            }
            float out[16];
            _mm_storeu_ps(out, a0);
            _mm_storeu_ps(out + 4, a1);
            _mm_storeu_ps(out + 8, a2);
            _mm_storeu_ps(out + 12, a3);
            for (size_t j = 0; j < 16; j++)
                y[(i + j) * L + p] = out[j];
        }
    }
    return b * L;
}
#endif

#ifdef RESAMPLE_HAVE_AVX2
AVX2 static size_t up_block_avx2(const struct rtms_resample_filter *f, const float *buf,
                                 size_t b, size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io;
    *pos_io = b;
    const size_t taps = f->taps, first = f->first, L = f->L;
    /* the last group may run past b: those outputs land in y's slack and are dropped */
    for (size_t i = 0; i < b; i += 32) {
        size_t p = 0;
        /* two branches per pass: each input load serves 16 outputs */
        for (; p + 2 <= L; p += 2) {
            const float *c = f->coef + p * taps, *d = c + taps;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (size_t t = first; t < taps; t++) {
                __m256 cv = _mm256_broadcast_ss(c + t), dv = _mm256_broadcast_ss(d + t);
                const float *x = buf + i + t;
                __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
                __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(cv, x0));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(cv, x1));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(cv, x2));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(cv, x3));
                b0 = _mm256_add_ps(b0, _mm256_mul_ps(dv, x0));
                b1 = _mm256_add_ps(b1, _mm256_mul_ps(dv, x1));
                b2 = _mm256_add_ps(b2, _mm256_mul_ps(dv, x2));
                b3 = _mm256_add_ps(b3, _mm256_mul_ps(dv, x3));
            }
            float out[64];
            _mm256_storeu_ps(out, a0);
            _mm256_storeu_ps(out + 8, a1);
            _mm256_storeu_ps(out + 16, a2);
            _mm256_storeu_ps(out + 24, a3);
            _mm256_storeu_ps(out + 32, b0);
            _mm256_storeu_ps(out + 40, b1);
            _mm256_storeu_ps(out + 48, b2);
            _mm256_storeu_ps(out + 56, b3);
            for (size_t j = 0; j < 32; j++) {
                y[(i + j) * L + p] = out[j];
                y[(i + j) * L + p + 1] = out[32 + j];
            }
        }
        for (; p < L; p++) {
            const float *c = f->coef + p * taps;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t t = first; t < taps; t++) {
                __m256 cv = _mm256_broadcast_ss(c + t);
                const float *x = buf + i + t;
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(cv, _mm256_loadu_ps(x)));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 8)));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 16)));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 24)));
            }
            float out[32];
            _mm256_storeu_ps(out, a0);
            _mm256_storeu_ps(out + 8, a1);
            _mm256_storeu_ps(out + 16, a2);
            _mm256_storeu_ps(out + 24, a3);
            for (size_t j = 0; j < 32; j++)
                y[(i + j) * L + p] = out[j];
        }
    }
    return b * L;
}
#endif

/* ---- pure downsampling (L = 1): vectorised across outputs -------------------------- */
/*
 * With L = 1 consecutive outputs use windows M inputs apart. The block is split into M
 * residue streams (e_r[j] = buf[pos + j*M + r]), after which tap t of output j is
 * e_{t mod M}[j + t div M]: consecutive outputs read consecutive floats again, and the
 * loop is the upsampling one. Each output is still the sequential sum over its taps in
 * tap order, exactly as down_one computes it, so all kernels agree bit for bit.
 */

#define DOWN_GROUP 64 /* scratch is sized for whole groups of this many outputs */
#define DOWN_SCRATCH (RTMS_RESAMPLER_BLOCK + RTMS_RESAMPLER_MAX_TAPS + 6 * (DOWN_GROUP + 1))

/* Split the block into residue streams of length *stride each; returns the output count. */
static size_t down_split(const struct rtms_resample_filter *f, const float *buf, size_t b,
                         size_t pos, float *e, size_t *stride)
{
    const size_t M = f->M, avail = f->taps - 1 + b;
    size_t outputs = pos < b ? (b - pos + M - 1) / M : 0;
    /* room for whole groups of DOWN_GROUP outputs; what lies past the block reads as 0 */
    size_t len = (outputs + DOWN_GROUP - 1) / DOWN_GROUP * DOWN_GROUP + (f->taps - 1) / M + 1;
    for (size_t r = 0; r < M; r++) {
        const float *src = buf + pos + r;
        float *dst = e + r * len;
        size_t valid = pos + r < avail ? (avail - pos - r + M - 1) / M : 0;
        if (valid > len)
            valid = len;
        for (size_t j = 0; j < valid; j++)
            dst[j] = src[j * M];
        for (size_t j = valid; j < len; j++)
            dst[j] = 0.0f;
    }
    *stride = len;
    return outputs;
}

static size_t down_block_scalar(const struct rtms_resample_filter *f, const float *buf,
                                size_t b, size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io; /* always 0 when L = 1 */
    size_t pos = *pos_io, w = 0;
    for (; pos < b; pos += f->M)
        y[w++] = up_one(f->coef, buf + pos, f->first, f->taps);
    *pos_io = pos;
    return w;
}

#ifdef RESAMPLE_HAVE_SSE2
static size_t down_block_sse2(const struct rtms_resample_filter *f, const float *buf, size_t b,
                              size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io;
    float e[DOWN_SCRATCH];
    size_t stride, pos = *pos_io;
    const size_t outputs = down_split(f, buf, b, pos, e, &stride);
    const size_t taps = f->taps, first = f->first, M = f->M;
    const float *c = f->coef;
    for (size_t j = 0; j < outputs; j += 16) {
        __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t r = first % M, q = first / M;
        for (size_t t = first; t < taps; t++) {
            const float *x = e + r * stride + q + j;
            __m128 cv = _mm_set1_ps(c[t]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(cv, _mm_loadu_ps(x)));
            a1 = _mm_add_ps(a1, _mm_mul_ps(cv, _mm_loadu_ps(x + 4)));
            a2 = _mm_add_ps(a2, _mm_mul_ps(cv, _mm_loadu_ps(x + 8)));
            a3 = _mm_add_ps(a3, _mm_mul_ps(cv, _mm_loadu_ps(x + 12)));
            if (++r == M) {
                r = 0;
                q++;
            }
        }
        _mm_storeu_ps(y + j, a0);
        _mm_storeu_ps(y + j + 4, a1);
        _mm_storeu_ps(y + j + 8, a2);
        _mm_storeu_ps(y + j + 12, a3);
    }
    *pos_io = pos + outputs * M;
    return outputs;
}
#endif

#ifdef RESAMPLE_HAVE_AVX2
AVX2 static size_t down_block_avx2(const struct rtms_resample_filter *f, const float *buf,
                                   size_t b, size_t *pos_io, uint32_t *phase_io, float *y)
{
    (void)phase_io;
    float e[DOWN_SCRATCH];
    size_t stride, pos = *pos_io;
    const size_t outputs = down_split(f, buf, b, pos, e, &stride);
    const size_t taps = f->taps, first = f->first, M = f->M;
    const float *c = f->coef;
    size_t j = 0;
    /* 64 outputs (eight add chains) while more than 32 remain, then one group of 32 */
    for (; j + 32 < outputs; j += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m256 a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        size_t r = first % M, q = first / M;
        for (size_t t = first; t < taps; t++) {
            const float *x = e + r * stride + q + j;
            __m256 cv = _mm256_broadcast_ss(c + t);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(cv, _mm256_loadu_ps(x)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 24)));
            a4 = _mm256_add_ps(a4, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 32)));
            a5 = _mm256_add_ps(a5, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 40)));
            a6 = _mm256_add_ps(a6, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 48)));
            a7 = _mm256_add_ps(a7, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 56)));
            if (++r == M) {
                r = 0;
                q++;
            }
        }
        _mm256_storeu_ps(y + j, a0);
        _mm256_storeu_ps(y + j + 8, a1);
        _mm256_storeu_ps(y + j + 16, a2);
        _mm256_storeu_ps(y + j + 24, a3);
        _mm256_storeu_ps(y + j + 32, a4);
        _mm256_storeu_ps(y + j + 40, a5);
        _mm256_storeu_ps(y + j + 48, a6);
        _mm256_storeu_ps(y + j + 56, a7);
    }
    if (j < outputs) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t r = first % M, q = first / M;
        for (size_t t = first; t < taps; t++) {
            const float *x = e + r * stride + q + j;
            __m256 cv = _mm256_broadcast_ss(c + t);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(cv, _mm256_loadu_ps(x)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(cv, _mm256_loadu_ps(x + 24)));
            if (++r == M) {
                r = 0;
                q++;
            }
        }
        _mm256_storeu_ps(y + j, a0);
        _mm256_storeu_ps(y + j + 8, a1);
        _mm256_storeu_ps(y + j + 16, a2);
        _mm256_storeu_ps(y + j + 24, a3);
    }
    *pos_io = pos + outputs * M;
    return outputs;
}
#endif

/* ---- filter design --------------------------------------------------------------- */

static int supported_rate(uint32_t rate)
{
    return rate == 8000 || rate == 16000 || rate == 24000 || rate == 32000 || rate == 48000;
}

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Zeroth-order modified Bessel function of the first kind (power series). */
static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 200; k++) {
        term *= q / ((double)k * (double)k);
        sum += term;
        if (term < sum * 1e-17)
            break;
    }
    return sum;
}

/* In-place iterative radix-2 complex FFT; sign -1 forward, +1 inverse (unscaled). */
static void fft(double *re, double *im, size_t n, int sign)
{
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        size_t half = len / 2;
        for (size_t k = 0; k < half; k++) {
            /* each twiddle computed directly: no error build-up over long transforms */
            double ang = sign * 2.0 * PI * (double)k / (double)len;
            double wr = cos(ang), wi = sin(ang);
            for (size_t i = k; i < n; i += len) {
                size_t j = i + half;
                double tr = re[j] * wr - im[j] * wi;
                double ti = re[j] * wi + im[j] * wr;
                re[j] = re[i] - tr;
                im[j] = im[i] - ti;
                re[i] += tr;
                im[i] += ti;
            }
        }
    }
}

/* Minimum-phase filter with the magnitude response of h (length n), in place. */
static int make_minimum_phase(double *h, size_t n)
{
    size_t nfft = 1;
    while (nfft < 64 * n) /* cepstral aliasing is negligible past ~32 n */
        nfft <<= 1;
    double *re = calloc(2 * nfft, sizeof(double));
    if (!re)
        return -1;
    double *im = re + nfft;
    memcpy(re, h, n * sizeof(double));
    fft(re, im, nfft, -1);
    for (size_t i = 0; i < nfft; i++) {
        double mag = sqrt(re[i] * re[i] + im[i] * im[i]);
        re[i] = log(mag > 1e-15 ? mag : 1e-15);
        im[i] = 0.0;
    }
    fft(re, im, nfft, +1); /* real cepstrum (times nfft) */
    /* fold the anti-causal half onto the causal one: log of a minimum-phase spectrum */
    for (size_t i = 0; i < nfft; i++) {
        double w = (i == 0 || i == nfft / 2) ? 1.0 : (i < nfft / 2 ? 2.0 : 0.0);
        re[i] *= w / (double)nfft;
        im[i] = 0.0;
    }
    fft(re, im, nfft, -1);
    for (size_t i = 0; i < nfft; i++) {
        double m = exp(re[i]);
        double a = im[i];
        re[i] = m * cos(a);
        im[i] = m * sin(a);
    }
    fft(re, im, nfft, +1);
    for (size_t i = 0; i < n; i++)
        h[i] = re[i] / (double)nfft;
    free(re);
    return 0;
}

/* Mean group delay of h (length n, rate F) over (0, fp], in filter samples. */
static double mean_group_delay(const double *h, size_t n, double fp_over_f)
{
    const int points = 64;
    double total = 0.0;
    for (int p = 0; p < points; p++) {
        double w = 2.0 * PI * fp_over_f * (p + 0.5) / points;
        double hr = 0, hi = 0, dr = 0, di = 0; /* H(w) and sum n h[n] e^{-jwn} */
        for (size_t i = 0; i < n; i++) {
            double c = cos(w * (double)i), s = -sin(w * (double)i);
            hr += h[i] * c;
            hi += h[i] * s;
            dr += (double)i * h[i] * c;
            di += (double)i * h[i] * s;
        }
        total += (dr * hr + di * hi) / (hr * hr + hi * hi); /* Re(D / H) */
    }
    return total / points;
}

/* M = 1 and L = 1 have loops of their own; other ratios share the 4-output dot product. */
static int pick_kernel(int kernel, uint32_t L, uint32_t M, block_fn *fn)
{
    if (kernel == RTMS_RESAMPLE_KERNEL_AUTO) {
#ifdef RESAMPLE_HAVE_AVX2
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2"))
            kernel = RTMS_RESAMPLE_KERNEL_AVX2;
        else
#endif
#ifdef RESAMPLE_HAVE_SSE2
            kernel = RTMS_RESAMPLE_KERNEL_SSE2;
#else
            kernel = RTMS_RESAMPLE_KERNEL_SCALAR;
#endif
    }
    switch (kernel) {
    case RTMS_RESAMPLE_KERNEL_SCALAR:
        *fn = M == 1 ? up_block_scalar : L == 1 ? down_block_scalar : block_scalar;
        return kernel;
#ifdef RESAMPLE_HAVE_SSE2
    case RTMS_RESAMPLE_KERNEL_SSE2:
        *fn = M == 1 ? up_block_sse2 : L == 1 ? down_block_sse2 : block_sse2;
        return kernel;
#endif
#ifdef RESAMPLE_HAVE_AVX2
    case RTMS_RESAMPLE_KERNEL_AVX2:
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2"))
            return -1;
        *fn = M == 1 ? up_block_avx2 : L == 1 ? down_block_avx2 : block_avx2;
        return kernel;
#endif
    default:
        return -1;
    }
}

static int design(rtms_resample_filter *f)
{
    uint32_t lower = f->in_rate < f->out_rate ? f->in_rate : f->out_rate;
    double fp = lower == 8000 ? 3400.0 : lower == 16000 ? 7000.0 : 0.43 * lower;
    double fs = lower - fp;
    double rate = (double)f->in_rate * f->L;
    double dw = 2.0 * PI * (fs - fp) / rate;
    size_t n = (size_t)ceil((STOPBAND_DB - 8.0) / (2.285 * dw)) + 1;
    size_t branch = (n + f->L - 1) / f->L;
    size_t taps = (branch + LANES - 1) / LANES * LANES;
    if (taps > RTMS_RESAMPLER_MAX_TAPS)
        return -1;

    double *h = malloc(n * sizeof(double));
    if (!h)
        return -1;
    double beta = 0.1102 * (STOPBAND_DB - 8.7);
    double fc = 0.5 * lower / rate; /* cutoff, cycles per filter sample */
    double i0beta = bessel_i0(beta), sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)i - (double)(n - 1) / 2.0;
        double x = 2.0 * fc * t;
        double sinc = t == 0.0 ? 1.0 : sin(PI * x) / (PI * x);
        double r = 2.0 * (double)i / (double)(n - 1) - 1.0;
        double win = bessel_i0(beta * sqrt(1.0 - r * r)) / i0beta;
        h[i] = 2.0 * fc * sinc * win;
        sum += h[i];
    }
    for (size_t i = 0; i < n; i++)
        h[i] /= sum;
    if (make_minimum_phase(h, n) != 0) {
        free(h);
        return -1;
    }
    sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += h[i];
    for (size_t i = 0; i < n; i++)
        h[i] /= sum; /* exact unit DC gain after truncation */
    f->group_delay = mean_group_delay(h, n, fp / rate) / f->M;
    f->delay = (size_t)floor(f->group_delay + 0.5);

    f->coef_mem = calloc(f->L * taps + 16, sizeof(float));
    if (!f->coef_mem) {
        free(h);
        return -1;
    }
    f->coef = (float *)(((uintptr_t)f->coef_mem + 63) & ~(uintptr_t)63);
    for (uint32_t p = 0; p < f->L; p++)
        for (size_t m = 0; p + m * f->L < n; m++)
            f->coef[p * taps + (taps - 1 - m)] = (float)(h[p + m * f->L] * f->L);
    f->taps = (uint32_t)taps;
    f->first = (uint32_t)(taps - branch);
    for (uint32_t p = 0; p < f->L; p++) {
        f->step[p] = (p + f->M) / f->L;
        f->next_phase[p] = (p + f->M) % f->L;
    }
    free(h);
    return 0;
}

rtms_resample_filter *rtms_resample_filter_new_kernel(uint32_t in_rate, uint32_t out_rate,
                                                      int kernel)
{
    if (!supported_rate(in_rate) || !supported_rate(out_rate))
        return NULL;
    rtms_resample_filter *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    uint32_t g = gcd_u32(in_rate, out_rate);
    f->in_rate = in_rate;
    f->out_rate = out_rate;
    f->L = out_rate / g;
    f->M = in_rate / g;
    f->kernel = pick_kernel(kernel, f->L, f->M, &f->run_block);
    if (f->kernel < 0 || (f->L != f->M && design(f) != 0)) {
        rtms_resample_filter_free(f);
        return NULL;
    }
    return f;
}

rtms_resample_filter *rtms_resample_filter_new(uint32_t in_rate, uint32_t out_rate)
{
    return rtms_resample_filter_new_kernel(in_rate, out_rate, RTMS_RESAMPLE_KERNEL_AUTO);
}

void rtms_resample_filter_free(rtms_resample_filter *filter)
{
    if (filter) {
        free(filter->coef_mem);
        free(filter);
    }
}

int rtms_resample_filter_kernel(const rtms_resample_filter *filter) { return filter->kernel; }
size_t rtms_resample_filter_delay(const rtms_resample_filter *filter) { return filter->delay; }
double rtms_resample_filter_group_delay(const rtms_resample_filter *filter)
{
    return filter->group_delay;
}
size_t rtms_resample_filter_taps(const rtms_resample_filter *filter) { return filter->taps; }
size_t rtms_resample_filter_phases(const rtms_resample_filter *filter) { return filter->L; }

size_t rtms_resample_max_output(const rtms_resample_filter *filter, size_t n)
{
    return (n * filter->L + filter->M - 1) / filter->M;
}

/* ---- streaming ------------------------------------------------------------------- */

size_t rtms_resampler_state_size(void) { return sizeof(rtms_resampler); }

void rtms_resampler_init(rtms_resampler *state, const rtms_resample_filter *filter)
{
    state->filter = filter;
    rtms_resampler_reset(state);
}

void rtms_resampler_reset(rtms_resampler *state)
{
    state->phase = 0;
    state->pos = 0;
    /* the stream starts from silence; the rest is cleared too because the vector loops
     * read (and discard) up to a group past the end of a block */
    memset(state->buf, 0, sizeof(state->buf));
}

size_t rtms_resampler_output_count(const rtms_resampler *state, size_t n)
{
    const rtms_resample_filter *f = state->filter;
    if (f->taps == 0)
        return n;
    if (n <= state->pos)
        return 0;
    size_t num = (n - state->pos) * f->L - state->phase;
    return (num + f->M - 1) / f->M;
}

static inline int16_t float_to_i16(float v)
{
    if (v > 32767.0f)
        v = 32767.0f;
    else if (v < -32768.0f)
        v = -32768.0f;
    /* adding and removing 1.5 * 2^23 rounds to nearest, ties to even, for |v| < 2^22 */
    v = (v + 12582912.0f) - 12582912.0f;
    return (int16_t)v;
}

/* float_to_i16 over a block; the SSE2 loop rounds the same way (nearest, ties to even). */
static void floats_to_i16(const float *y, size_t n, int16_t *dst)
{
    size_t i = 0;
#ifdef RESAMPLE_HAVE_SSE2
    const __m128 hi = _mm_set1_ps(32767.0f), lo = _mm_set1_ps(-32768.0f);
    for (; i + 8 <= n; i += 8) {
        __m128 a = _mm_min_ps(_mm_max_ps(_mm_loadu_ps(y + i), lo), hi);
        __m128 b = _mm_min_ps(_mm_max_ps(_mm_loadu_ps(y + i + 4), lo), hi);
        __m128i packed = _mm_packs_epi32(_mm_cvtps_epi32(a), _mm_cvtps_epi32(b));
        _mm_storeu_si128((__m128i *)(dst + i), packed);
    }
#endif
    for (; i < n; i++)
        dst[i] = float_to_i16(y[i]);
}

static ptrdiff_t process(rtms_resampler *state, const void *src, size_t n, void *dst,
                         size_t dst_capacity, int is_i16)
{
    if (!state || (n && (!src || !dst)))
        return RTMS_RESAMPLE_E_ARGUMENT;
    const rtms_resample_filter *f = state->filter;
    size_t total = rtms_resampler_output_count(state, n);
    if (total > dst_capacity)
        return RTMS_RESAMPLE_E_CAPACITY;
    size_t elem = is_i16 ? sizeof(int16_t) : sizeof(float);
    if (f->taps == 0) {
        if (n)
            memcpy(dst, src, n * elem);
        return (ptrdiff_t)n;
    }
    const size_t hist = f->taps - 1;
    float *buf = state->buf;
    size_t pos = state->pos;
    uint32_t p = state->phase;
    size_t written = 0;
    const int16_t *src16 = src;
    const float *src32 = src;
    int16_t *dst16 = dst;
    float *dst32 = dst;
    /* one block's outputs (at most 6 per input sample), plus slack for the last group */
    float y[(RTMS_RESAMPLER_BLOCK + 64) * 6 + GROUP];

    while (n > 0) {
        size_t b = n < RTMS_RESAMPLER_BLOCK ? n : RTMS_RESAMPLER_BLOCK;
        float *in = buf + hist;
        if (is_i16) {
            for (size_t i = 0; i < b; i++)
                in[i] = (float)src16[i];
            src16 += b;
        } else {
            memcpy(in, src32, b * sizeof(float));
            src32 += b;
        }
        size_t w = f->run_block(f, buf, b, &pos, &p, y);
        if (is_i16) {
            floats_to_i16(y, w, dst16 + written);
        } else {
            memcpy(dst32 + written, y, w * sizeof(float));
        }
        written += w;
        memmove(buf, buf + b, hist * sizeof(float));
        pos -= b;
        n -= b;
    }
    state->pos = (uint32_t)pos;
    state->phase = p;
    return (ptrdiff_t)written;
}

ptrdiff_t rtms_resampler_process_i16(rtms_resampler *state, const int16_t *src, size_t n,
                                     int16_t *dst, size_t dst_capacity)
{
    return process(state, src, n, dst, dst_capacity, 1);
}

ptrdiff_t rtms_resampler_process_f32(rtms_resampler *state, const float *src, size_t n,
                                     float *dst, size_t dst_capacity)
{
    return process(state, src, n, dst, dst_capacity, 0);
}

ptrdiff_t rtms_resampler_process_repeat_i16(rtms_resampler *state, const int16_t *src,
                                            size_t n, size_t repeats, int16_t *dst,
                                            size_t dst_capacity)
{
    ptrdiff_t total = 0;
    for (size_t r = 0; r < repeats; r++) {
        ptrdiff_t w = process(state, src, n, dst, dst_capacity, 1);
        if (w < 0)
            return w;
        total += w;
    }
    return total;
}

rtms_resampler *rtms_resampler_new(const rtms_resample_filter *filter)
{
    if (!filter)
        return NULL;
    rtms_resampler *state = malloc(sizeof(*state));
    if (state)
        rtms_resampler_init(state, filter);
    return state;
}

void rtms_resampler_free(rtms_resampler *state) { free(state); }
