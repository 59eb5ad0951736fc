/*
 * g711.c - ITU-T G.711 A-law and mu-law, both directions.
 *
 * Decoding is one lookup per sample in a constant 256-entry table of the
 * G.711 reconstruction levels (A-law: sign, 3-bit segment, 4-bit step plus a
 * half step, even bits inverted; mu-law: ((2m + 33) << e) - 33 in 14-bit
 * units, all bits inverted). There is no mutable state: every kernel is
 * thread-safe.
 * Encoding follows the G.711 segment quantisation: magnitude -> segment by the
 * position of its highest set bit, then 4 mantissa bits, then the code's
 * characteristic bit inversion (0x55 for A-law, 0xFF for mu-law).
 */
#include "rtms_native.h"

/* Decode tables: the reconstruction level of every code. tests/test_g711.py
 * checks them against the formulas and against stdlib audioop. */
static const int16_t ALAW_TO_PCM[256] = {
     -5504,  -5248,  -6016,  -5760,  -4480,  -4224,  -4992,  -4736,
     -7552,  -7296,  -8064,  -7808,  -6528,  -6272,  -7040,  -6784,
     -2752,  -2624,  -3008,  -2880,  -2240,  -2112,  -2496,  -2368,
     -3776,  -3648,  -4032,  -3904,  -3264,  -3136,  -3520,  -3392,
    -22016, -20992, -24064, -23040, -17920, -16896, -19968, -18944,
    -30208, -29184, -32256, -31232, -26112, -25088, -28160, -27136,
    -11008, -10496, -12032, -11520,  -8960,  -8448,  -9984,  -9472,
    -15104, -14592, -16128, -15616, -13056, -12544, -14080, -13568,
      -344,   -328,   -376,   -360,   -280,   -264,   -312,   -296,
      -472,   -456,   -504,   -488,   -408,   -392,   -440,   -424,
       -88,    -72,   -120,   -104,    -24,     -8,    -56,    -40,
      -216,   -200,   -248,   -232,   -152,   -136,   -184,   -168,
     -1376,  -1312,  -1504,  -1440,  -1120,  -1056,  -1248,  -1184,
     -1888,  -1824,  -2016,  -1952,  -1632,  -1568,  -1760,  -1696,
      -688,   -656,   -752,   -720,   -560,   -528,   -624,   -592,
      -944,   -912,  -1008,   -976,   -816,   -784,   -880,   -848,
      5504,   5248,   6016,   5760,   4480,   4224,   4992,   4736,
      7552,   7296,   8064,   7808,   6528,   6272,   7040,   6784,
      2752,   2624,   3008,   2880,   2240,   2112,   2496,   2368,
      3776,   3648,   4032,   3904,   3264,   3136,   3520,   3392,
     22016,  20992,  24064,  23040,  17920,  16896,  19968,  18944,
     30208,  29184,  32256,  31232,  26112,  25088,  28160,  27136,
     11008,  10496,  12032,  11520,   8960,   8448,   9984,   9472,
     15104,  14592,  16128,  15616,  13056,  12544,  14080,  13568,
       344,    328,    376,    360,    280,    264,    312,    296,
       472,    456,    504,    488,    408,    392,    440,    424,
        88,     72,    120,    104,     24,      8,     56,     40,
       216,    200,    248,    232,    152,    136,    184,    168,
      1376,   1312,   1504,   1440,   1120,   1056,   1248,   1184,
      1888,   1824,   2016,   1952,   1632,   1568,   1760,   1696,
       688,    656,    752,    720,    560,    528,    624,    592,
       944,    912,   1008,    976,    816,    784,    880,    848,
};

static const int16_t ULAW_TO_PCM[256] = {
    -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956,
    -23932, -22908, -21884, -20860, -19836, -18812, -17788, -16764,
    -15996, -15484, -14972, -14460, -13948, -13436, -12924, -12412,
    -11900, -11388, -10876, -10364,  -9852,  -9340,  -8828,  -8316,
     -7932,  -7676,  -7420,  -7164,  -6908,  -6652,  -6396,  -6140,
     -5884,  -5628,  -5372,  -5116,  -4860,  -4604,  -4348,  -4092,
     -3900,  -3772,  -3644,  -3516,  -3388,  -3260,  -3132,  -3004,
     -2876,  -2748,  -2620,  -2492,  -2364,  -2236,  -2108,  -1980,
     -1884,  -1820,  -1756,  -1692,  -1628,  -1564,  -1500,  -1436,
     -1372,  -1308,  -1244,  -1180,  -1116,  -1052,   -988,   -924,
      -876,   -844,   -812,   -780,   -748,   -716,   -684,   -652,
      -620,   -588,   -556,   -524,   -492,   -460,   -428,   -396,
      -372,   -356,   -340,   -324,   -308,   -292,   -276,   -260,
      -244,   -228,   -212,   -196,   -180,   -164,   -148,   -132,
      -120,   -112,   -104,    -96,    -88,    -80,    -72,    -64,
       -56,    -48,    -40,    -32,    -24,    -16,     -8,      0,
     32124,  31100,  30076,  29052,  28028,  27004,  25980,  24956,
     23932,  22908,  21884,  20860,  19836,  18812,  17788,  16764,
     15996,  15484,  14972,  14460,  13948,  13436,  12924,  12412,
     11900,  11388,  10876,  10364,   9852,   9340,   8828,   8316,
      7932,   7676,   7420,   7164,   6908,   6652,   6396,   6140,
      5884,   5628,   5372,   5116,   4860,   4604,   4348,   4092,
      3900,   3772,   3644,   3516,   3388,   3260,   3132,   3004,
      2876,   2748,   2620,   2492,   2364,   2236,   2108,   1980,
      1884,   1820,   1756,   1692,   1628,   1564,   1500,   1436,
      1372,   1308,   1244,   1180,   1116,   1052,    988,    924,
       876,    844,    812,    780,    748,    716,    684,    652,
       620,    588,    556,    524,    492,    460,    428,    396,
       372,    356,    340,    324,    308,    292,    276,    260,
       244,    228,    212,    196,    180,    164,    148,    132,
       120,    112,    104,     96,     88,     80,     72,     64,
        56,     48,     40,     32,     24,     16,      8,      0,
};

static void decode_with(const int16_t *restrict table, const uint8_t *restrict src, size_t n,
                        int16_t *restrict dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = table[src[i]];
}

const int16_t *rtms_g711_decode_table(int mulaw) { return mulaw ? ULAW_TO_PCM : ALAW_TO_PCM; }

void rtms_alaw_decode(const uint8_t *src, size_t n, int16_t *dst) { decode_with(ALAW_TO_PCM, src, n, dst); }
void rtms_ulaw_decode(const uint8_t *src, size_t n, int16_t *dst) { decode_with(ULAW_TO_PCM, src, n, dst); }

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
