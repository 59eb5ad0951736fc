/*
 * g722.c - ITU-T G.722 sub-band ADPCM at 64/56/48 kbit/s (modes 1-3).
 *
 * Bit-exact with the Recommendation's fixed-point description: the output
 * equals the ITU-T test sequences (Appendix II, QMF bypassed) and the G.191
 * reference codec (QMF included) sample for sample.
 *
 * Structure: the 16 kHz signal is split by a 24-tap quadrature mirror filter
 * (QMF) into two 8 kHz sub-bands; the lower band is coded with a 6-bit
 * adaptive quantiser, the higher band with a 2-bit one. Both sub-band coders
 * share block 4 of the Recommendation: a predictor with 2 poles and 6 zeros
 * adapted by sign-sign rules, and a log-domain scale factor.
 *
 * Speed: the two sub-band predictors run side by side in SSE2 lanes (see
 * "Block 4" below; a portable scalar twin serves other targets), all state
 * stays in registers across a block, the scale factor comes from one table
 * lookup, the encoder compares against all 29 lower-band decision levels at
 * once (its feedback loop is latency-bound), and the QMF runs as a separate
 * multiply-add pass over each chunk of up to CHUNK octets, which the
 * compiler vectorises. No division, no allocation, no mutable globals.
 *
 * Odd sample counts: rtms_g722_encode codes whole pairs only; a trailing odd
 * sample is neither coded nor consumed (the caller keeps it for the next
 * block, as rtms_fast.codecs.G722Encoder does).
 */
#include "rtms_native.h"

#include <stdlib.h>
#include <string.h>

/* Samples per QMF side: 12 taps per polyphase branch, so 11 of history. */
#define QMF_TAPS 12
#define QMF_HIST (QMF_TAPS - 1)
/* Octets per inner chunk: the per-chunk scratch lives on the stack. */
#define CHUNK 256

/* ---- Tables of the Recommendation ------------------------------------- */

/* QMF coefficients h(0), h(2), ..., h(22); the odd ones are these reversed
 * (the filter is symmetric: h(23 - i) = h(i)). */
static const int32_t qmf_even[QMF_TAPS] = {
    3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11,
};

/* Lower-band quantiser decision levels (6-bit), index mil = 1..29. */
static const int32_t q6[30] = {
    0,    35,   72,   110,  150,  190,  233,  276,  323,  370,
    422,  473,  530,  587,  650,  714,  786,  858,  940,  1023,
    1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
};
/* Code for interval mil, negative and positive difference. */
static const uint8_t iln[31] = {
    0,  63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
    18, 17, 16, 15, 14, 13, 12, 11, 10, 9,  8,  7,  6,  5,  4,
};
static const uint8_t ilp[31] = {
    0,  61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47,
    46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
};

/* Inverse quantiser outputs, scaled by 8 relative to q6, per mode: mode 1
 * uses all 6 bits of IL (QM6), mode 2 the upper 5 (QM5), mode 3 the upper 4
 * (QM4). Written out per 6-bit code so decoding is one lookup in any mode. */
static const int16_t qm_mode[3][64] = {
    { /* QM6 */
        -136,   -136,   -136,   -136,   -24808, -21904, -19008, -16704,
        -14984, -13512, -12280, -11192, -10232, -9360,  -8576,  -7856,
        -7192,  -6576,  -6000,  -5456,  -4944,  -4464,  -4008,  -3576,
        -3168,  -2776,  -2400,  -2032,  -1688,  -1360,  -1040,  -728,
        24808,  21904,  19008,  16704,  14984,  13512,  12280,  11192,
        10232,  9360,   8576,   7856,   7192,   6576,   6000,   5456,
        4944,   4464,   4008,   3576,   3168,   2776,   2400,   2032,
        1688,   1360,   1040,   728,    432,    136,    -432,   -136,
    },
    { /* QM5 indexed by IL >> 1 */
        -280,   -280,   -280,   -280,   -23352, -23352, -17560, -17560,
        -14120, -14120, -11664, -11664, -9752,  -9752,  -8184,  -8184,
        -6864,  -6864,  -5712,  -5712,  -4696,  -4696,  -3784,  -3784,
        -2960,  -2960,  -2208,  -2208,  -1520,  -1520,  -880,   -880,
        23352,  23352,  17560,  17560,  14120,  14120,  11664,  11664,
        9752,   9752,   8184,   8184,   6864,   6864,   5712,   5712,
        4696,   4696,   3784,   3784,   2960,   2960,   2208,   2208,
        1520,   1520,   880,    880,    280,    280,    -280,   -280,
    },
    { /* QM4 indexed by IL >> 2 */
        0,      0,      0,      0,      -20456, -20456, -20456, -20456,
        -12896, -12896, -12896, -12896, -8968,  -8968,  -8968,  -8968,
        -6288,  -6288,  -6288,  -6288,  -4240,  -4240,  -4240,  -4240,
        -2584,  -2584,  -2584,  -2584,  -1200,  -1200,  -1200,  -1200,
        20456,  20456,  20456,  20456,  12896,  12896,  12896,  12896,
        8968,   8968,   8968,   8968,   6288,   6288,   6288,   6288,
        4240,   4240,   4240,   4240,   2584,   2584,   2584,   2584,
        1200,   1200,   1200,   1200,   0,      0,      0,      0,
    },
};

/* QM4 by the 4-bit code IL >> 2: the quantised difference that drives
 * the lower-band predictor and scale factor in every mode. */
static const int16_t qm4[16] = {
    0,     -20456, -12896, -8968, -6288, -4240, -2584, -1200,
    20456, 12896,  8968,   6288,  4240,  2584,  1200,  0,
};
/* Log scale factor increment by IL >> 2 (W_L through the RL42 map). */
static const int16_t wl_by_ril[16] = {
    -60, 3042, 1198, 538, 334, 172, 58, -30,
    3042, 1198, 538, 334, 172, 58, -30, -60,
};

/* Higher band: 2-bit code IH. */
static const int16_t qm2[4] = { -7408, -1616, 7408, 1616 };
static const int16_t wh_by_ih[4] = { 798, -214, 798, -214 };

/* SCALEL / SCALEH tabulated: the linear scale factor for k = nb >> 6 is
 * (ILB[k & 31] >> (10 - (k >> 5))) << 2 (a left shift when negative), with
 * ILB[i] = 2048 * 2^(i/32) rounded as the Recommendation lists it. The
 * higher band reads det_by_nb[nbh >> 6]; the lower band, whose exponent
 * bias is 8 instead of 10, reads det_by_nb[(nbl >> 6) + 64]. */
static const int16_t det_by_nb[353] = {
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20, 20,
    20, 20, 20, 24, 24, 24, 24, 24, 24, 24, 28, 28,
    28, 28, 28, 28, 32, 32, 32, 32, 32, 32, 36, 36,
    36, 36, 36, 40, 40, 40, 40, 44, 44, 44, 44, 48,
    48, 48, 48, 52, 52, 52, 56, 56, 56, 56, 60, 60,
    64, 64, 64, 68, 68, 68, 72, 72, 76, 76, 76, 80,
    80, 84, 84, 88, 88, 92, 92, 96, 96, 100, 100, 104,
    104, 108, 112, 112, 116, 116, 120, 124, 128, 128, 132, 136,
    136, 140, 144, 148, 152, 152, 156, 160, 164, 168, 172, 176,
    180, 184, 188, 192, 196, 200, 204, 208, 212, 220, 224, 228,
    232, 236, 244, 248, 256, 260, 264, 272, 276, 284, 288, 296,
    304, 308, 316, 324, 332, 336, 344, 352, 360, 368, 376, 384,
    392, 400, 412, 420, 428, 440, 448, 456, 468, 476, 488, 500,
    512, 520, 532, 544, 556, 568, 580, 592, 608, 620, 632, 648,
    664, 676, 692, 708, 724, 740, 756, 772, 788, 804, 824, 840,
    860, 880, 896, 916, 936, 956, 980, 1000, 1024, 1044, 1068, 1092,
    1116, 1140, 1164, 1188, 1216, 1244, 1268, 1296, 1328, 1356, 1384, 1416,
    1448, 1480, 1512, 1544, 1576, 1612, 1648, 1684, 1720, 1760, 1796, 1836,
    1876, 1916, 1960, 2004, 2048, 2092, 2136, 2184, 2232, 2280, 2332, 2380,
    2432, 2488, 2540, 2596, 2656, 2712, 2772, 2832, 2896, 2960, 3024, 3088,
    3156, 3228, 3296, 3368, 3444, 3520, 3596, 3676, 3756, 3836, 3920, 4008,
    4096, 4184, 4276, 4372, 4464, 4564, 4664, 4764, 4868, 4976, 5084, 5196,
    5312, 5428, 5548, 5668, 5792, 5920, 6048, 6180, 6316, 6456, 6596, 6740,
    6888, 7040, 7192, 7352, 7512, 7676, 7844, 8016, 8192, 8372, 8556, 8744,
    8932, 9128, 9328, 9532, 9740, 9956, 10172, 10396, 10624, 10856, 11096, 11336,
    11584, 11840, 12100, 12364, 12632, 12912, 13192, 13484, 13776, 14080, 14388, 14704,
    15024, 15352, 15688, 16032, 16384,
};

/* ---- Fixed-point helpers --------------------------------------------- */

static inline int32_t sat16(int32_t x)
{
    return x > 32767 ? 32767 : (x < -32768 ? -32768 : x);
}

static inline int32_t clamp32(int32_t x, int32_t lo, int32_t hi)
{
    return x > hi ? hi : (x < lo ? lo : x);
}

/* Arithmetic right shift, spelled out so it is defined for negative x
 * (compilers emit a single shift for it). */
static inline int32_t asr(int32_t x, int n)
{
    return x >= 0 ? x >> n : ~(~x >> n);
}

/* The 16-bit two's complement value held in the low half of v. */
static inline int32_t low16(uint32_t v)
{
    return (int32_t)((v & 0xFFFFu) ^ 0x8000u) - 0x8000;
}

/* LOGSCL / LOGSCH: nb leaks by 1/128 (nb * 127 >> 7) and steps by the
 * code's weight; then SCALEL / SCALEH by table. */
static inline int32_t next_nb(int32_t nb, int32_t weight, int32_t ceiling)
{
    return clamp32(nb + asr(-nb, 7) + weight, 0, ceiling);
}

/* Lower-band quantiser (QUANTL): the 6-bit code for difference el at scale
 * factor det. Interval mil is the first of 1..29 with
 * |el| < (q6[mil] * det) >> 12, else 30; |el| is taken in one's complement
 * (-1 -> 0) as the Recommendation does. Branchless binary search. */
static inline int32_t quantl(int32_t el, int32_t det)
{
    const int32_t mag = el < 0 ? ~el : el;
    int32_t mil = (mag >= (q6[16] * det) >> 12) ? 16 : 0;
    mil += (mag >= (q6[mil + 8] * det) >> 12) ? 8 : 0;
    mil += (mil + 4 < 30 && mag >= (q6[mil + 4] * det) >> 12) ? 4 : 0;
    mil += (mil + 2 < 30 && mag >= (q6[mil + 2] * det) >> 12) ? 2 : 0;
    mil += (mil + 1 < 30 && mag >= (q6[mil + 1] * det) >> 12) ? 1 : 0;
    mil += 1;
    return el < 0 ? iln[mil] : ilp[mil];
}

/* Higher-band quantiser (QUANTH): the 2-bit code. */
static inline int32_t quanth(int32_t eh, int32_t det)
{
    const int32_t mag = eh < 0 ? ~eh : eh;
    const int big = mag >= ((564 * det) >> 12);
    return eh < 0 ? (big ? 0 : 1) : (big ? 2 : 3);
}

static const int16_t *qm_for_mode(int mode)
{
    return qm_mode[(mode == 2 || mode == 3) ? mode - 1 : 0];
}

/*
 * Block 4 (the adaptive predictor) exists twice below, with identical
 * arithmetic: an SSE2 version that runs the lower and the higher band side
 * by side in the 16-bit lanes of one register (lane 0 lower, lane 1 higher;
 * the Recommendation's 16-bit saturating adds are exactly SSE2's), and a
 * portable scalar version for other targets (or with RTMS_G722_SCALAR
 * defined). The stored state is the same for both:
 *   r1, r2 hold the reconstructed signal already doubled and saturated,
 *   sat16(2 * RLT), which is all that FILTEP needs of it.
 */
#if (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)) \
    && !defined(RTMS_G722_SCALAR)
#define G722_SSE2 1
#include <emmintrin.h>
#endif

#ifdef G722_SSE2

/* Both sub-band predictors, one register per Recommendation variable. */
typedef struct vstate {
    __m128i s, sz;   /* SL|SH, SZL|SZH */
    __m128i rr1, rr2; /* sat16(2 RLT)|sat16(2 RH), delayed 1 and 2 */
    __m128i p1, p2;  /* PLT|PH delayed 1 and 2 */
    __m128i a1, a2;  /* pole coefficients */
    __m128i bl, bh;  /* zero coefficients, lanes 0..5 (6, 7 unused) */
    __m128i dl, dh;  /* DLT / DH delayed 1..6 in lanes 0..5 */
    int32_t nbl, nbh, detl, deth;
} vstate;

static inline __m128i pair16(int32_t lo, int32_t hi)
{
    return _mm_cvtsi32_si128((int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16)));
}

static inline __m128i clamp_v(__m128i x, int16_t lo, int16_t hi)
{
    return _mm_min_epi16(_mm_max_epi16(x, _mm_set1_epi16(lo)), _mm_set1_epi16(hi));
}

/* (a * b) >> 15 per lane, exact (floor) for |a * b| < 2^30. */
static inline __m128i mul_q15(__m128i a, __m128i b)
{
    const __m128i hi = _mm_mulhi_epi16(a, b);
    return _mm_or_si128(_mm_add_epi16(hi, hi), _mm_srli_epi16(_mm_mullo_epi16(a, b), 15));
}

/* (a * b) >> 14 per lane, exact for |a * b| < 2^29. */
static inline __m128i mul_q14(__m128i a, __m128i b)
{
    const __m128i hi = _mm_mulhi_epi16(a, b);
    return _mm_or_si128(_mm_slli_epi16(hi, 2), _mm_srli_epi16(_mm_mullo_epi16(a, b), 14));
}

/* UPZERO for one band's six taps: b * 32640 >> 15, then +-128 toward
 * agreement of the signs of dq (broadcast in q) and each delayed value
 * (no step when dq is zero). */
static inline __m128i upzero_v(__m128i b, __m128i d, __m128i q)
{
    const __m128i differ = _mm_srai_epi16(_mm_xor_si128(d, q), 15);
    const __m128i step = _mm_andnot_si128(_mm_cmpeq_epi16(q, _mm_setzero_si128()),
                                          _mm_set1_epi16(128));
    return _mm_add_epi16(mul_q15(b, _mm_set1_epi16(32640)),
                         _mm_sub_epi16(_mm_xor_si128(step, differ), differ));
}

/* Everything after the quantisers for one octet: PARREC, RECONS, UPPOL2,
 * UPPOL1, UPZERO, DELAYA, FILTEP, FILTEZ, PREDIC, both bands at once.
 * dq holds DLT in lane 0 and DH in lane 1 (other lanes zero). */
static inline void vadapt(vstate *v, __m128i dq)
{
    const __m128i zero = _mm_setzero_si128();
    const __m128i p = _mm_adds_epi16(dq, v->sz);
    __m128i rr = _mm_adds_epi16(v->s, dq);
    rr = _mm_adds_epi16(rr, rr);

    /* UPPOL2: a1 * 4 (saturated), negated when p and p1 agree in sign,
     * then >> 7; with the saturations folded in this is a clamp of
     * (+-a1) >> 5 to [-256, 255]. */
    const __m128i differ01 = _mm_srai_epi16(_mm_xor_si128(p, v->p1), 15);
    const __m128i differ02 = _mm_srai_epi16(_mm_xor_si128(p, v->p2), 15);
    const __m128i same01 = _mm_xor_si128(differ01, _mm_set1_epi16(-1));
    __m128i t = _mm_sub_epi16(_mm_xor_si128(v->a1, same01), same01);
    t = clamp_v(_mm_srai_epi16(t, 5), -256, 255);
    __m128i a2 = _mm_sub_epi16(_mm_xor_si128(_mm_set1_epi16(128), differ02), differ02);
    a2 = _mm_add_epi16(_mm_add_epi16(a2, t),
                       _mm_add_epi16(v->a2, _mm_srai_epi16(_mm_sub_epi16(zero, v->a2), 7)));
    a2 = clamp_v(a2, -12288, 12288);

    /* UPPOL1 */
    __m128i a1 = _mm_sub_epi16(_mm_xor_si128(_mm_set1_epi16(192), differ01), differ01);
    a1 = _mm_add_epi16(a1, _mm_add_epi16(v->a1, _mm_srai_epi16(_mm_sub_epi16(zero, v->a1), 8)));
    const __m128i lim = _mm_sub_epi16(_mm_set1_epi16(15360), a2);
    a1 = _mm_min_epi16(_mm_max_epi16(a1, _mm_sub_epi16(zero, lim)), lim);

    /* UPZERO and DELAYA of the zero section: new value in lane 0. */
    const __m128i ql = _mm_shuffle_epi32(_mm_shufflelo_epi16(dq, 0x00), 0x00);
    const __m128i qh = _mm_shuffle_epi32(_mm_shufflelo_epi16(dq, 0x55), 0x00);
    const __m128i lane0 = _mm_cvtsi32_si128(0xFFFF);
    v->bl = upzero_v(v->bl, v->dl, ql);
    v->bh = upzero_v(v->bh, v->dh, qh);
    v->dl = _mm_or_si128(_mm_slli_si128(v->dl, 2), _mm_and_si128(ql, lane0));
    v->dh = _mm_or_si128(_mm_slli_si128(v->dh, 2), _mm_and_si128(qh, lane0));

    /* FILTEZ: sum of (b * 2d) >> 15 over taps 1..6, saturated once. */
    const __m128i six = _mm_setr_epi16(1, 1, 1, 1, 1, 1, 0, 0);
    const __m128i zl = _mm_madd_epi16(mul_q14(v->bl, v->dl), six);
    const __m128i zh = _mm_madd_epi16(mul_q14(v->bh, v->dh), six);
    __m128i z = _mm_add_epi32(_mm_unpacklo_epi32(zl, zh), _mm_unpackhi_epi32(zl, zh));
    z = _mm_add_epi32(z, _mm_srli_si128(z, 8));
    const __m128i sz = _mm_packs_epi32(z, z);

    /* FILTEP (with the new a1, a2 and the delayed rr), then PREDIC. */
    const __m128i sp = _mm_adds_epi16(mul_q15(a1, rr), mul_q15(a2, v->rr1));
    v->s = _mm_adds_epi16(sp, sz);
    v->sz = sz;
    v->p2 = v->p1;
    v->p1 = p;
    v->rr2 = v->rr1;
    v->rr1 = rr;
    v->a1 = a1;
    v->a2 = a2;
}

static inline void vload(vstate *v, const rtms_g722_band *lo, const rtms_g722_band *hi)
{
    v->s = pair16(lo->s, hi->s);
    v->sz = pair16(lo->sz, hi->sz);
    v->rr1 = pair16(lo->r1, hi->r1);
    v->rr2 = pair16(lo->r2, hi->r2);
    v->p1 = pair16(lo->p1, hi->p1);
    v->p2 = pair16(lo->p2, hi->p2);
    v->a1 = pair16(lo->a1, hi->a1);
    v->a2 = pair16(lo->a2, hi->a2);
    v->bl = _mm_setr_epi16(lo->b[0], lo->b[1], lo->b[2], lo->b[3], lo->b[4], lo->b[5], 0, 0);
    v->bh = _mm_setr_epi16(hi->b[0], hi->b[1], hi->b[2], hi->b[3], hi->b[4], hi->b[5], 0, 0);
    v->dl = _mm_setr_epi16(lo->d[0], lo->d[1], lo->d[2], lo->d[3], lo->d[4], lo->d[5], 0, 0);
    v->dh = _mm_setr_epi16(hi->d[0], hi->d[1], hi->d[2], hi->d[3], hi->d[4], hi->d[5], 0, 0);
    v->nbl = lo->nb;
    v->nbh = hi->nb;
    v->detl = lo->det;
    v->deth = hi->det;
}

static inline void lanes2(__m128i x, int16_t *lo, int16_t *hi)
{
    const uint32_t u = (uint32_t)_mm_cvtsi128_si32(x);
    *lo = (int16_t)low16(u);
    *hi = (int16_t)low16(u >> 16);
}

static inline void vstore(const vstate *v, rtms_g722_band *lo, rtms_g722_band *hi)
{
    int16_t tl[8], th[8];
    lanes2(v->s, &lo->s, &hi->s);
    lanes2(v->sz, &lo->sz, &hi->sz);
    lanes2(v->rr1, &lo->r1, &hi->r1);
    lanes2(v->rr2, &lo->r2, &hi->r2);
    lanes2(v->p1, &lo->p1, &hi->p1);
    lanes2(v->p2, &lo->p2, &hi->p2);
    lanes2(v->a1, &lo->a1, &hi->a1);
    lanes2(v->a2, &lo->a2, &hi->a2);
    _mm_storeu_si128((__m128i *)tl, v->bl);
    _mm_storeu_si128((__m128i *)th, v->bh);
    memcpy(lo->b, tl, sizeof lo->b);
    memcpy(hi->b, th, sizeof hi->b);
    _mm_storeu_si128((__m128i *)tl, v->dl);
    _mm_storeu_si128((__m128i *)th, v->dh);
    memcpy(lo->d, tl, sizeof lo->d);
    memcpy(hi->d, th, sizeof hi->d);
    lo->nb = (int16_t)v->nbl;
    hi->nb = (int16_t)v->nbh;
    lo->det = (int16_t)v->detl;
    hi->det = (int16_t)v->deth;
}

/* Decode one octet: returns RL in the low and RH in the high 16 bits. */
static inline uint32_t vdecode(vstate *v, uint32_t code, const int16_t *qm)
{
    const int32_t il = (int32_t)(code & 63), ril = il >> 2, ih = (int32_t)(code >> 6);
    const int32_t dlt = asr(v->detl * qm4[ril], 15);
    const int32_t dl = asr(v->detl * qm[il], 15);
    const int32_t dh = asr(v->deth * qm2[ih], 15);
    /* RECONS + LIMIT for the output, from the prediction made last time. */
    const __m128i out = clamp_v(_mm_adds_epi16(v->s, pair16(dl, dh)), -16384, 16383);
    v->nbl = next_nb(v->nbl, wl_by_ril[ril], 18432);
    v->nbh = next_nb(v->nbh, wh_by_ih[ih], 22528);
    v->detl = det_by_nb[(v->nbl >> 6) + 64];
    v->deth = det_by_nb[v->nbh >> 6];
    vadapt(v, pair16(dlt, dh));
    return (uint32_t)_mm_cvtsi128_si32(out);
}

/* q6[1..29] in lanes, then 0 for the three spare lanes (never above |el|). */
static const int16_t q6_lanes[32] = {
    35,   72,   110,  150,  190,  233,  276,  323,  370,  422,  473,
    530,  587,  650,  714,  786,  858,  940,  1023, 1121, 1219, 1339,
    1458, 1612, 1765, 1980, 2195, 2557, 2919, 0,    0,    0,
};

/* QUANTL as in quantl(), with all 29 decision levels compared at once:
 * mil = 30 - #{i : (q6[i] * det) >> 12 > |el|}. No load depends on an
 * earlier comparison, which keeps the encoder's feedback loop short. */
static inline int32_t quantl_v(__m128i mag, int32_t el, int32_t det)
{
    const __m128i d = _mm_set1_epi16((int16_t)det);
    const __m128i m = _mm_shuffle_epi32(_mm_shufflelo_epi16(mag, 0x00), 0x00);
    __m128i above[4];
    for (int k = 0; k < 4; k++) {
        const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(q6_lanes + 8 * k));
        /* (q * det) >> 12, exact: the product is below 2^26 */
        const __m128i thr = _mm_or_si128(_mm_slli_epi16(_mm_mulhi_epi16(q, d), 4),
                                         _mm_srli_epi16(_mm_mullo_epi16(q, d), 12));
        above[k] = _mm_cmpgt_epi16(thr, m);
    }
    /* Each mask lane is 0 or -1: negate the sum to count, then add the lanes. */
    __m128i n = _mm_sub_epi16(_mm_setzero_si128(),
                              _mm_add_epi16(_mm_add_epi16(above[0], above[1]),
                                            _mm_add_epi16(above[2], above[3])));
    n = _mm_sad_epu8(n, _mm_setzero_si128());
    n = _mm_add_epi32(n, _mm_srli_si128(n, 8));
    const int32_t mil = 30 - _mm_cvtsi128_si32(n);
    return el < 0 ? iln[mil] : ilp[mil];
}

/* Encode one sub-band sample pair: returns IL | IH << 6. */
static inline uint32_t vencode(vstate *v, int32_t xl, int32_t xh)
{
    /* SUBTRA for both bands (saturating, as the Recommendation), and the
     * one's-complement magnitudes the quantisers compare. */
    const __m128i e = _mm_subs_epi16(pair16(xl, xh), v->s);
    const __m128i mag = _mm_xor_si128(e, _mm_srai_epi16(e, 15));
    const uint32_t eu = (uint32_t)_mm_cvtsi128_si32(e);
    const int32_t il = quantl_v(mag, low16(eu), v->detl);
    const int32_t ih = quanth(low16(eu >> 16), v->deth);
    const int32_t ril = il >> 2;
    const int32_t dlt = asr(v->detl * qm4[ril], 15);
    const int32_t dh = asr(v->deth * qm2[ih], 15);
    v->nbl = next_nb(v->nbl, wl_by_ril[ril], 18432);
    v->nbh = next_nb(v->nbh, wh_by_ih[ih], 22528);
    v->detl = det_by_nb[(v->nbl >> 6) + 64];
    v->deth = det_by_nb[v->nbh >> 6];
    vadapt(v, pair16(dlt, dh));
    return (uint32_t)(il | ih << 6);
}

/* The kernel's view of a codec: both bands in one vstate. */
typedef vstate codec_w;
#define CODEC_LOAD(w, lo, hi) vload((w), (lo), (hi))
#define CODEC_STORE(w, lo, hi) vstore((w), (lo), (hi))
#define CODEC_DECODE(w, code, qm) vdecode((w), (code), (qm))
#define CODEC_ENCODE(w, xl, xh) vencode((w), (xl), (xh))

#else /* portable scalar block 4 */

typedef struct band_w {
    int32_t s, sz, rr1, rr2, p1, p2, a1, a2;
    int32_t b0, b1, b2, b3, b4, b5;
    int32_t d0, d1, d2, d3, d4, d5;
    int32_t nb, det;
} band_w;

static inline void band_load(band_w *w, const rtms_g722_band *b)
{
    w->s = b->s; w->sz = b->sz; w->rr1 = b->r1; w->rr2 = b->r2;
    w->p1 = b->p1; w->p2 = b->p2; w->a1 = b->a1; w->a2 = b->a2;
    w->b0 = b->b[0]; w->b1 = b->b[1]; w->b2 = b->b[2];
    w->b3 = b->b[3]; w->b4 = b->b[4]; w->b5 = b->b[5];
    w->d0 = b->d[0]; w->d1 = b->d[1]; w->d2 = b->d[2];
    w->d3 = b->d[3]; w->d4 = b->d[4]; w->d5 = b->d[5];
    w->nb = b->nb; w->det = b->det;
}

static inline void band_store(rtms_g722_band *b, const band_w *w)
{
    b->s = (int16_t)w->s; b->sz = (int16_t)w->sz;
    b->r1 = (int16_t)w->rr1; b->r2 = (int16_t)w->rr2;
    b->p1 = (int16_t)w->p1; b->p2 = (int16_t)w->p2;
    b->a1 = (int16_t)w->a1; b->a2 = (int16_t)w->a2;
    b->b[0] = (int16_t)w->b0; b->b[1] = (int16_t)w->b1; b->b[2] = (int16_t)w->b2;
    b->b[3] = (int16_t)w->b3; b->b[4] = (int16_t)w->b4; b->b[5] = (int16_t)w->b5;
    b->d[0] = (int16_t)w->d0; b->d[1] = (int16_t)w->d1; b->d[2] = (int16_t)w->d2;
    b->d[3] = (int16_t)w->d3; b->d[4] = (int16_t)w->d4; b->d[5] = (int16_t)w->d5;
    b->nb = (int16_t)w->nb; b->det = (int16_t)w->det;
}

/* -1 when a and b (16-bit values held in int32) differ in sign, else 0. */
static inline int32_t sign_differs(int32_t a, int32_t b)
{
    return -(int32_t)((uint32_t)(a ^ b) >> 31);
}

/* UPZERO for one tap: bi * 32640 >> 15 (= bi + (-bi >> 8)), then +-step. */
static inline int32_t upzero(int32_t bi, int32_t di, int32_t dq, int32_t step)
{
    const int32_t m = sign_differs(dq, di);
    return bi + asr(-bi, 8) + ((step ^ m) - m);
}

/* Block 4 for one band; see vadapt for the step-by-step comments. */
static inline void adapt(band_w *w, int32_t dq)
{
    const int32_t p = sat16(dq + w->sz);
    const int32_t rr = sat16(2 * (w->s + dq)); /* = sat16(2 sat16(s + dq)) */
    const int32_t m01 = sign_differs(p, w->p1);
    const int32_t m02 = sign_differs(p, w->p2);
    const int32_t t = clamp32(asr((w->a1 ^ ~m01) - ~m01, 5), -256, 255);
    int32_t a2 = t + ((128 ^ m02) - m02) + w->a2 + asr(-w->a2, 7);
    a2 = clamp32(a2, -12288, 12288);
    int32_t a1 = ((192 ^ m01) - m01) + w->a1 + asr(-w->a1, 8);
    const int32_t lim = 15360 - a2;
    a1 = clamp32(a1, -lim, lim);

    const int32_t step = dq ? 128 : 0;
    w->b0 = upzero(w->b0, w->d0, dq, step);
    w->b1 = upzero(w->b1, w->d1, dq, step);
    w->b2 = upzero(w->b2, w->d2, dq, step);
    w->b3 = upzero(w->b3, w->d3, dq, step);
    w->b4 = upzero(w->b4, w->d4, dq, step);
    w->b5 = upzero(w->b5, w->d5, dq, step);
    w->d5 = w->d4; w->d4 = w->d3; w->d3 = w->d2;
    w->d2 = w->d1; w->d1 = w->d0; w->d0 = dq;

    /* |dq| <= 10228, so 2 dq fits 16 bits. */
    int32_t sz = asr(w->b0 * (w->d0 * 2), 15);
    sz += asr(w->b1 * (w->d1 * 2), 15);
    sz += asr(w->b2 * (w->d2 * 2), 15);
    sz += asr(w->b3 * (w->d3 * 2), 15);
    sz += asr(w->b4 * (w->d4 * 2), 15);
    sz += asr(w->b5 * (w->d5 * 2), 15);
    w->sz = sat16(sz);

    const int32_t sp = sat16(asr(a1 * rr, 15) + asr(a2 * w->rr1, 15));
    w->s = sat16(sp + w->sz);
    w->p2 = w->p1; w->p1 = p;
    w->rr2 = w->rr1; w->rr1 = rr;
    w->a1 = a1; w->a2 = a2;
}

typedef struct codec_w {
    band_w lo, hi;
} codec_w;

static inline void sload(codec_w *w, const rtms_g722_band *lo, const rtms_g722_band *hi)
{
    band_load(&w->lo, lo);
    band_load(&w->hi, hi);
}

static inline void sstore(const codec_w *w, rtms_g722_band *lo, rtms_g722_band *hi)
{
    band_store(lo, &w->lo);
    band_store(hi, &w->hi);
}

static inline uint32_t sdecode(codec_w *w, uint32_t code, const int16_t *qm)
{
    const int32_t il = (int32_t)(code & 63), ril = il >> 2, ih = (int32_t)(code >> 6);
    const int32_t dlt = asr(w->lo.det * qm4[ril], 15);
    const int32_t dl = asr(w->lo.det * qm[il], 15);
    const int32_t dh = asr(w->hi.det * qm2[ih], 15);
    const int32_t rl = clamp32(w->lo.s + dl, -16384, 16383);
    const int32_t rh = clamp32(w->hi.s + dh, -16384, 16383);
    w->lo.nb = next_nb(w->lo.nb, wl_by_ril[ril], 18432);
    w->hi.nb = next_nb(w->hi.nb, wh_by_ih[ih], 22528);
    w->lo.det = det_by_nb[(w->lo.nb >> 6) + 64];
    w->hi.det = det_by_nb[w->hi.nb >> 6];
    adapt(&w->lo, dlt);
    adapt(&w->hi, dh);
    return ((uint32_t)rl & 0xFFFFu) | ((uint32_t)rh << 16);
}

static inline uint32_t sencode(codec_w *w, int32_t xl, int32_t xh)
{
    const int32_t il = quantl(sat16(xl - w->lo.s), w->lo.det);
    const int32_t ih = quanth(sat16(xh - w->hi.s), w->hi.det);
    const int32_t ril = il >> 2;
    const int32_t dlt = asr(w->lo.det * qm4[ril], 15);
    const int32_t dh = asr(w->hi.det * qm2[ih], 15);
    w->lo.nb = next_nb(w->lo.nb, wl_by_ril[ril], 18432);
    w->hi.nb = next_nb(w->hi.nb, wh_by_ih[ih], 22528);
    w->lo.det = det_by_nb[(w->lo.nb >> 6) + 64];
    w->hi.det = det_by_nb[w->hi.nb >> 6];
    adapt(&w->lo, dlt);
    adapt(&w->hi, dh);
    return (uint32_t)(il | ih << 6);
}

#define CODEC_LOAD(w, lo, hi) sload((w), (lo), (hi))
#define CODEC_STORE(w, lo, hi) sstore((w), (lo), (hi))
#define CODEC_DECODE(w, code, qm) sdecode((w), (code), (qm))
#define CODEC_ENCODE(w, xl, xh) sencode((w), (xl), (xh))

#endif /* G722_SSE2 */

/* ---- State management ------------------------------------------------- */

static void band_reset(rtms_g722_band *b, int16_t det)
{
    memset(b, 0, sizeof *b);
    b->det = det;
}

void rtms_g722_encoder_init(rtms_g722_encoder *e)
{
    band_reset(&e->low, 32);
    band_reset(&e->high, 8);
    memset(e->qmf_x, 0, sizeof e->qmf_x);
}

int rtms_g722_decoder_init(rtms_g722_decoder *d, int mode)
{
    if (mode < 1 || mode > 3)
        return RTMS_G722_E_MODE;
    band_reset(&d->low, 32);
    band_reset(&d->high, 8);
    memset(d->qmf_sum, 0, sizeof d->qmf_sum);
    memset(d->qmf_diff, 0, sizeof d->qmf_diff);
    d->mode = (int16_t)mode;
    return 0;
}

void rtms_g722_decoder_reset(rtms_g722_decoder *d)
{
    rtms_g722_decoder_init(d, d->mode);
}

rtms_g722_encoder *rtms_g722_encoder_new(void)
{
    rtms_g722_encoder *e = malloc(sizeof *e);
    if (e != NULL)
        rtms_g722_encoder_init(e);
    return e;
}

void rtms_g722_encoder_free(rtms_g722_encoder *e)
{
    free(e);
}

rtms_g722_decoder *rtms_g722_decoder_new(int mode)
{
    if (mode < 1 || mode > 3)
        return NULL;
    rtms_g722_decoder *d = malloc(sizeof *d);
    if (d != NULL)
        rtms_g722_decoder_init(d, mode);
    return d;
}

void rtms_g722_decoder_free(rtms_g722_decoder *d)
{
    free(d);
}

int rtms_g722_decoder_mode(const rtms_g722_decoder *d)
{
    return d->mode;
}

/* ---- Sub-band entry points (QMF bypassed) ----------------------------- */
/* Each runs the shared two-band step with a stand-in for the other band and
 * keeps only the band asked for, so the test sequences exercise the very
 * kernel the full codec uses. */

int rtms_g722_encode_low(rtms_g722_encoder *e, int xl)
{
    codec_w w;
    rtms_g722_band spare = e->high;
    CODEC_LOAD(&w, &e->low, &spare);
    uint32_t codes = CODEC_ENCODE(&w, sat16(xl), 0);
    CODEC_STORE(&w, &e->low, &spare);
    return (int)(codes & 63);
}

int rtms_g722_encode_high(rtms_g722_encoder *e, int xh)
{
    codec_w w;
    rtms_g722_band spare = e->low;
    CODEC_LOAD(&w, &spare, &e->high);
    uint32_t codes = CODEC_ENCODE(&w, 0, sat16(xh));
    CODEC_STORE(&w, &spare, &e->high);
    return (int)(codes >> 6);
}

int rtms_g722_decode_low(rtms_g722_decoder *d, int il, int mode)
{
    codec_w w;
    rtms_g722_band spare = d->high;
    CODEC_LOAD(&w, &d->low, &spare);
    uint32_t out = CODEC_DECODE(&w, (uint32_t)il & 63, qm_for_mode(mode));
    CODEC_STORE(&w, &d->low, &spare);
    return low16(out);
}

int rtms_g722_decode_high(rtms_g722_decoder *d, int ih)
{
    codec_w w;
    rtms_g722_band spare = d->low;
    CODEC_LOAD(&w, &spare, &d->high);
    uint32_t out = CODEC_DECODE(&w, ((uint32_t)ih & 3) << 6, qm_mode[0]);
    CODEC_STORE(&w, &spare, &d->high);
    return low16(out >> 16);
}

/* ---- Full codec ------------------------------------------------------- */

size_t rtms_g722_decode(rtms_g722_decoder *d, const uint8_t *src, size_t n, int16_t *dst)
{
    /* sum[] / diff[] hold QMF_HIST octets of history, then the chunk. */
    int32_t sum[QMF_HIST + CHUNK], diff[QMF_HIST + CHUNK];
    uint32_t bands[CHUNK];
    const int16_t *qm = qm_for_mode(d->mode);
    codec_w w;
    CODEC_LOAD(&w, &d->low, &d->high);
    for (int i = 0; i < QMF_HIST; i++) {
        sum[i] = d->qmf_sum[i];
        diff[i] = d->qmf_diff[i];
    }

    for (size_t done = 0; done < n;) {
        const size_t m = (n - done < CHUNK) ? n - done : CHUNK;
        const uint8_t *in = src + done;
        for (size_t j = 0; j < m; j++)
            bands[j] = CODEC_DECODE(&w, in[j], qm);
        for (size_t j = 0; j < m; j++) {
            const int32_t rl = low16(bands[j]), rh = low16(bands[j] >> 16);
            sum[QMF_HIST + j] = rl + rh;
            diff[QMF_HIST + j] = rl - rh;
        }
        /* Receive QMF: the first output of each pair from the difference
         * branch (even-indexed taps, newest first), the second from the sum
         * branch (odd-indexed taps). */
        int16_t *out = dst + 2 * done;
        for (size_t j = 0; j < m; j++) {
            int32_t acc1 = 0, acc2 = 0;
            for (int k = 0; k < QMF_TAPS; k++) {
                acc1 += diff[j + k] * qmf_even[QMF_TAPS - 1 - k];
                acc2 += sum[j + k] * qmf_even[k];
            }
            out[2 * j] = (int16_t)sat16(asr(acc1, 11));
            out[2 * j + 1] = (int16_t)sat16(asr(acc2, 11));
        }
        for (int i = 0; i < QMF_HIST; i++) {
            sum[i] = sum[m + i];
            diff[i] = diff[m + i];
        }
        done += m;
    }

    for (int i = 0; i < QMF_HIST; i++) {
        d->qmf_sum[i] = (int16_t)sum[i];
        d->qmf_diff[i] = (int16_t)diff[i];
    }
    CODEC_STORE(&w, &d->low, &d->high);
    return 2 * n;
}

size_t rtms_g722_encode(rtms_g722_encoder *e, const int16_t *src, size_t n_samples, uint8_t *dst)
{
    /* The input split by parity: older[] gets the first sample of each
     * pair, newer[] the second; QMF_HIST pairs of history, then the chunk. */
    int32_t older[QMF_HIST + CHUNK], newer[QMF_HIST + CHUNK];
    int32_t xl[CHUNK], xh[CHUNK];
    const size_t n = n_samples / 2;
    codec_w w;
    CODEC_LOAD(&w, &e->low, &e->high);
    for (int i = 0; i < QMF_HIST; i++) {
        older[i] = e->qmf_x[2 * i];
        newer[i] = e->qmf_x[2 * i + 1];
    }

    for (size_t done = 0; done < n;) {
        const size_t m = (n - done < CHUNK) ? n - done : CHUNK;
        const int16_t *in = src + 2 * done;
        for (size_t j = 0; j < m; j++) {
            older[QMF_HIST + j] = in[2 * j];
            newer[QMF_HIST + j] = in[2 * j + 1];
        }
        /* Transmit QMF: the newer samples meet h(0), h(2), ... from newest
         * to oldest, the older ones h(1), h(3), ...; then LIMIT to the
         * 15-bit sub-band range. */
        for (size_t j = 0; j < m; j++) {
            int32_t xa = 0, xb = 0;
            for (int k = 0; k < QMF_TAPS; k++) {
                xa += newer[j + k] * qmf_even[QMF_TAPS - 1 - k];
                xb += older[j + k] * qmf_even[k];
            }
            xl[j] = clamp32(asr(xa + xb, 14), -16384, 16383);
            xh[j] = clamp32(asr(xa - xb, 14), -16384, 16383);
        }
        for (size_t j = 0; j < m; j++)
            dst[done + j] = (uint8_t)CODEC_ENCODE(&w, xl[j], xh[j]);
        for (int i = 0; i < QMF_HIST; i++) {
            older[i] = older[m + i];
            newer[i] = newer[m + i];
        }
        done += m;
    }

    for (int i = 0; i < QMF_HIST; i++) {
        e->qmf_x[2 * i] = (int16_t)older[i];
        e->qmf_x[2 * i + 1] = (int16_t)newer[i];
    }
    CODEC_STORE(&w, &e->low, &e->high);
    return n;
}
