/*
 * g711.c - ITU-T G.711 A-law and mu-law, both directions.
 *
 * Decoding expands each code with the G.711 formulas; for large blocks a
 * 256-entry table is filled on the stack first and used for lookups. There
 * is no mutable global state, so every kernel is thread-safe.
 * Encoding follows the G.711 segment quantisation: magnitude -> segment by the
 * position of its highest set bit, then 4 mantissa bits, then the code's
 * characteristic bit inversion (0x55 for A-law, 0xFF for mu-law).
 */
#include "rtms_native.h"

/* Expand one A-law code (G.711 table 1a). */
static int16_t alaw_expand(uint8_t code)
{
    int v = code ^ 0x55;
    int seg = (v >> 4) & 7;
    int mag = (v & 0x0F) << 4;
    mag += 8; /* middle of the quantisation interval */
    if (seg != 0)
        mag = (mag + 0x100) << (seg - 1);
    return (int16_t)((v & 0x80) ? mag : -mag);
}

/* Expand one mu-law code (G.711 table 2a), bias 0x84. */
static int16_t ulaw_expand(uint8_t code)
{
    int v = ~code & 0xFF;
    int seg = (v >> 4) & 7;
    int mag = (((v & 0x0F) << 3) + 0x84) << seg;
    mag -= 0x84;
    return (int16_t)((v & 0x80) ? -mag : mag);
}

/* Filling a table costs 256 expansions, so it only pays on larger blocks. */
#define G711_TABLE_THRESHOLD 512

static void decode_with(int16_t (*expand)(uint8_t), const uint8_t *src, size_t n, int16_t *dst)
{
    if (n >= G711_TABLE_THRESHOLD) {
        int16_t table[256];
        for (int i = 0; i < 256; i++)
            table[i] = expand((uint8_t)i);
        for (size_t i = 0; i < n; i++)
            dst[i] = table[src[i]];
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = expand(src[i]);
    }
}

void rtms_alaw_decode(const uint8_t *src, size_t n, int16_t *dst) { decode_with(alaw_expand, src, n, dst); }
void rtms_ulaw_decode(const uint8_t *src, size_t n, int16_t *dst) { decode_with(ulaw_expand, src, n, dst); }

/* Index of the highest set bit of v (v > 0). */
static inline int top_bit(unsigned v)
{
#if defined(__GNUC__) || defined(__clang__)
    return 31 - __builtin_clz(v);
#else
    int b = 0;
    while (v >>= 1)
        b++;
    return b;
#endif
}

static uint8_t alaw_compress(int16_t sample)
{
    /* A-law works on 13-bit magnitudes: drop the 3 low bits of 16-bit PCM. */
    int pcm = sample >> 3;
    int mask;
    if (pcm >= 0) {
        mask = 0xD5; /* sign bit set, then even-bit inversion */
    } else {
        mask = 0x55;
        pcm = -pcm - 1;
    }
    uint8_t code;
    if (pcm < 32) {
        code = (uint8_t)(pcm >> 1);
    } else {
        if (pcm > 0xFFF)
            pcm = 0xFFF;
        int seg = top_bit((unsigned)pcm) - 4; /* 1..7 */
        code = (uint8_t)((seg << 4) | ((pcm >> seg) & 0x0F));
    }
    return (uint8_t)(code ^ mask);
}

static uint8_t ulaw_compress(int16_t sample)
{
    /* mu-law works on 14-bit magnitudes with a bias of 33 (0x84 >> 2). */
    int pcm = sample >> 2;
    int mask;
    if (pcm < 0) {
        pcm = -pcm;
        mask = 0x7F;
    } else {
        mask = 0xFF;
    }
    if (pcm > 8159)
        pcm = 8159;
    pcm += 33;
    int seg = top_bit((unsigned)pcm) - 5; /* 0..8 */
    /* The clipped maximum (8159 + 33 = 8192) lands past segment 7: the
     * largest code, segment 7 with mantissa 15. */
    uint8_t code = seg > 7 ? 0x7F : (uint8_t)((seg << 4) | ((pcm >> (seg + 1)) & 0x0F));
    return (uint8_t)(code ^ mask);
}

void rtms_alaw_encode(const int16_t *src, size_t n, uint8_t *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = alaw_compress(src[i]);
}

void rtms_ulaw_encode(const int16_t *src, size_t n, uint8_t *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ulaw_compress(src[i]);
}
