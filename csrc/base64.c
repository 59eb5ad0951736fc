/*
 * base64.c - standard base64 (RFC 4648 section 4), both directions.
 *
 * The decoder is table-driven: four lookups OR-ed together tell in one test
 * whether a quad is plain alphabet; anything else (padding, the JSON escape
 * "\/", garbage) goes to a careful one-quad path, after which the fast loop
 * resumes. It never reads past n or writes past dst_cap and is O(n).
 * Strict: the character count must be a multiple of 4, '=' only at the end.
 */
#include "rtms_native.h"

#include <string.h>

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

int64_t rtms_b64_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap)
{
    size_t i = 0, o = 0;
    for (;;) {
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
