/*
 * base64.c - standard base64 (RFC 4648 section 4), both directions.
 *
 * The decoder is table-driven: four lookups OR-ed together tell in one test
 * whether a quad is plain alphabet; anything else (padding, the JSON escape
 * "\/", garbage) goes to a careful one-quad path, after which the fast loop
 * resumes. It never reads past n or writes past dst_cap and is O(n).
 * Strict: the character count must be a multiple of 4, '=' only at the end.
 *
 * On x86-64 CPUs with AVX2 (checked at run time) runs of 32 plain alphabet
 * characters go through a vector path first: classify every byte by range,
 * add the range's offset to get its sextet, merge sextet pairs and then 12-bit
 * pairs with two multiply-adds, and gather the three bytes of every 24-bit
 * group with one byte shuffle. A block with any other byte is left to the
 * scalar loops, which decide what it is; results are identical either way.
 */
#include "rtms_native.h"

#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define B64_HAVE_AVX2 1
#else
#define B64_HAVE_AVX2 0
#endif

/* Sextet value of each byte; 0x80 marks a byte outside the alphabet. */
static const uint8_t B64_VALUE[256] = {
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,  62, 128, 128, 128,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 128, 128, 128, 128, 128, 128,
    128,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 128, 128, 128, 128, 128,
    128,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
};

static const uint8_t B64_ALPHABET[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t rtms_b64_decoded_max(size_t n_chars) { return n_chars / 4 * 3 + 3; }

/* Read one quad starting at *pos, allowing "\/" and trailing '='. Returns the
   number of output bytes (0..3; 0 with *pos == n at the end), or -error. */
static int slow_quad(const uint8_t *src, size_t n, size_t *pos, uint32_t *bits, int *last)
{
    size_t i = *pos;
    uint32_t acc = 0;
    int got = 0, pad = 0;
    while (got < 4) {
        if (i >= n) {
            if (got == 0) {
                *pos = i;
                *last = 1;
                return 0;
            }
            return -RTMS_ERR_B64_LENGTH;
        }
        uint8_t c = src[i];
        uint8_t v;
        if (c == '\\') {
            if (i + 1 >= n || src[i + 1] != '/')
                return -RTMS_ERR_B64_CHAR;
            i += 2;
            v = 63;
        } else if (c == '=') {
            if (got < 2)
                return -RTMS_ERR_B64_PADDING;
            i++;
            pad++;
            acc <<= 6;
            got++;
            continue;
        } else {
            v = B64_VALUE[c];
            if (v & 0x80)
                return -RTMS_ERR_B64_CHAR;
            i++;
        }
        if (pad)
            return -RTMS_ERR_B64_PADDING; /* data after '=' inside the quad */
        acc = (acc << 6) | v;
        got++;
    }
    if (pad && i != n)
        return -RTMS_ERR_B64_PADDING; /* padding must end the input */
    *pos = i;
    *bits = acc;
    *last = pad != 0;
    return 3 - pad;
}

#if B64_HAVE_AVX2
/* Whole blocks of 32 alphabet characters from *pos while the output has room for the
   two 16-byte stores of a block (at o and o + 12); stops at a block with anything else. */
__attribute__((target("avx2"))) static void decode_avx2(const uint8_t *src, size_t n,
                                                        size_t *pos, uint8_t *dst,
                                                        size_t dst_cap, size_t *out)
{
    size_t i = *pos, o = *out;
    const __m256i upper_lo = _mm256_set1_epi8('A' - 1), upper_hi = _mm256_set1_epi8('Z' + 1);
    const __m256i lower_lo = _mm256_set1_epi8('a' - 1), lower_hi = _mm256_set1_epi8('z' + 1);
    const __m256i digit_lo = _mm256_set1_epi8('0' - 1), digit_hi = _mm256_set1_epi8('9' + 1);
    const __m256i plus = _mm256_set1_epi8('+'), slash = _mm256_set1_epi8('/');
    /* sextet = byte + offset of its range: 'A' -> 0, 'a' -> 26, '0' -> 52, '+' 62, '/' 63 */
    const __m256i upper_off = _mm256_set1_epi8(-'A'), lower_off = _mm256_set1_epi8(26 - 'a');
    const __m256i digit_off = _mm256_set1_epi8(52 - '0');
    const __m256i plus_off = _mm256_set1_epi8(62 - '+'), slash_off = _mm256_set1_epi8(63 - '/');
    /* (a, b) -> a * 64 + b in 16 bits, then (ab, cd) -> ab * 4096 + cd in 32 bits */
    const __m256i merge6 = _mm256_set1_epi16(0x0140);
    const __m256i merge12 = _mm256_set1_epi32(0x00011000);
    /* the 24-bit group of each 32-bit lane, most significant byte first */
    const __m256i gather = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
                                            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1,
                                            -1);
    while (n - i >= 32 && dst_cap - o >= 28) {
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        /* signed compares: bytes >= 0x80 are negative and fall in no range */
        __m256i upper = _mm256_and_si256(_mm256_cmpgt_epi8(c, upper_lo),
                                         _mm256_cmpgt_epi8(upper_hi, c));
        __m256i lower = _mm256_and_si256(_mm256_cmpgt_epi8(c, lower_lo),
                                         _mm256_cmpgt_epi8(lower_hi, c));
        __m256i digit = _mm256_and_si256(_mm256_cmpgt_epi8(c, digit_lo),
                                         _mm256_cmpgt_epi8(digit_hi, c));
        __m256i is_plus = _mm256_cmpeq_epi8(c, plus), is_slash = _mm256_cmpeq_epi8(c, slash);
        __m256i valid = _mm256_or_si256(_mm256_or_si256(upper, lower),
                                        _mm256_or_si256(digit, _mm256_or_si256(is_plus,
                                                                                is_slash)));
        if ((uint32_t)_mm256_movemask_epi8(valid) != 0xFFFFFFFFu)
            break;
        __m256i off = _mm256_or_si256(
            _mm256_or_si256(_mm256_and_si256(upper, upper_off), _mm256_and_si256(lower, lower_off)),
            _mm256_or_si256(_mm256_and_si256(digit, digit_off),
                            _mm256_or_si256(_mm256_and_si256(is_plus, plus_off),
                                            _mm256_and_si256(is_slash, slash_off))));
        __m256i sextets = _mm256_add_epi8(c, off);
        __m256i pairs = _mm256_maddubs_epi16(sextets, merge6);
        __m256i groups = _mm256_madd_epi16(pairs, merge12);
        __m256i bytes = _mm256_shuffle_epi8(groups, gather);
        _mm_storeu_si128((__m128i *)(void *)(dst + o), _mm256_castsi256_si128(bytes));
        _mm_storeu_si128((__m128i *)(void *)(dst + o + 12), _mm256_extracti128_si256(bytes, 1));
        i += 32;
        o += 24;
    }
    *pos = i;
    *out = o;
}
#endif

int64_t rtms_b64_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap)
{
    size_t i = 0, o = 0;
#if B64_HAVE_AVX2
    int avx2 = n >= 32 && __builtin_cpu_supports("avx2");
#endif
    for (;;) {
#if B64_HAVE_AVX2
        if (avx2)
            decode_avx2(src, n, &i, dst, dst_cap, &o);
#endif
        /* fast path: whole quads of plain alphabet */
        while (n - i >= 8 && dst_cap - o >= 6) {
            uint32_t a = B64_VALUE[src[i]], b = B64_VALUE[src[i + 1]];
            uint32_t c = B64_VALUE[src[i + 2]], d = B64_VALUE[src[i + 3]];
            uint32_t e = B64_VALUE[src[i + 4]], f = B64_VALUE[src[i + 5]];
            uint32_t g = B64_VALUE[src[i + 6]], h = B64_VALUE[src[i + 7]];
            if ((a | b | c | d | e | f | g | h) & 0x80)
                break;
            uint32_t w1 = (a << 18) | (b << 12) | (c << 6) | d;
            uint32_t w2 = (e << 18) | (f << 12) | (g << 6) | h;
            dst[o] = (uint8_t)(w1 >> 16);
            dst[o + 1] = (uint8_t)(w1 >> 8);
            dst[o + 2] = (uint8_t)w1;
            dst[o + 3] = (uint8_t)(w2 >> 16);
            dst[o + 4] = (uint8_t)(w2 >> 8);
            dst[o + 5] = (uint8_t)w2;
            i += 8;
            o += 6;
        }
        while (n - i >= 4 && dst_cap - o >= 3) {
            uint32_t a = B64_VALUE[src[i]], b = B64_VALUE[src[i + 1]];
            uint32_t c = B64_VALUE[src[i + 2]], d = B64_VALUE[src[i + 3]];
            if ((a | b | c | d) & 0x80)
                break;
            uint32_t w = (a << 18) | (b << 12) | (c << 6) | d;
            dst[o] = (uint8_t)(w >> 16);
            dst[o + 1] = (uint8_t)(w >> 8);
            dst[o + 2] = (uint8_t)w;
            i += 4;
            o += 3;
        }
        if (i == n)
            return (int64_t)o;
        uint32_t bits = 0;
        int last = 0;
        int got = slow_quad(src, n, &i, &bits, &last);
        if (got < 0)
            return got;
        if (dst_cap - o < (size_t)got)
            return -RTMS_ERR_SPACE;
        if (got > 0)
            dst[o++] = (uint8_t)(bits >> 16);
        if (got > 1)
            dst[o++] = (uint8_t)(bits >> 8);
        if (got > 2)
            dst[o++] = (uint8_t)bits;
        if (last)
            return (int64_t)o;
    }
}

size_t rtms_b64_encode(const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t i = 0, o = 0;
    for (; n - i >= 3; i += 3, o += 4) {
        uint32_t w = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
        dst[o] = B64_ALPHABET[w >> 18];
        dst[o + 1] = B64_ALPHABET[(w >> 12) & 63];
        dst[o + 2] = B64_ALPHABET[(w >> 6) & 63];
        dst[o + 3] = B64_ALPHABET[w & 63];
    }
    if (n - i == 1) {
        uint32_t w = (uint32_t)src[i] << 16;
        dst[o] = B64_ALPHABET[w >> 18];
        dst[o + 1] = B64_ALPHABET[(w >> 12) & 63];
        dst[o + 2] = '=';
        dst[o + 3] = '=';
        o += 4;
    } else if (n - i == 2) {
        uint32_t w = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8);
        dst[o] = B64_ALPHABET[w >> 18];
        dst[o + 1] = B64_ALPHABET[(w >> 12) & 63];
        dst[o + 2] = B64_ALPHABET[(w >> 6) & 63];
        dst[o + 3] = '=';
        o += 4;
    }
    return o;
}
