/*
 * rtms_native.h - the one public header of the rtms-fast native core.
 *
 * Everything between the RTMS_CDEF_BEGIN and RTMS_CDEF_END markers is read by
 * build.py and handed to cffi's cdef(), so it must stay plain declarations that
 * cffi can parse: no macros, no inline code, no #if inside the block (lines
 * that start with '#' are dropped from the cdef but kept for the C compiler).
 *
 * Conventions for every kernel here:
 *   - pure C11, no global mutable state, no allocation on the hot path: state
 *     objects are created once (rtms_*_new) and freed by Python via ffi.gc;
 *   - sizes are size_t, samples are int16_t (native endian) unless stated;
 *   - a function that can fail returns a negative RTMS_E* code, never aborts;
 *   - callers pass output capacity; kernels never write past it.
 * The GIL is released around every call (cffi's default in API mode).
 */
#ifndef RTMS_NATIVE_H
#define RTMS_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* RTMS_CDEF_BEGIN */

/* ---- G.711 (ITU-T G.711 A-law and mu-law), g711.c ---------------------- */
/* Decode n code bytes into n int16 samples. Bit-exact with the G.711 tables. */
void rtms_alaw_decode(const uint8_t *src, size_t n, int16_t *dst);
void rtms_ulaw_decode(const uint8_t *src, size_t n, int16_t *dst);
/* Encode n int16 samples into n code bytes (G.711 segment quantisation). */
void rtms_alaw_encode(const int16_t *src, size_t n, uint8_t *dst);
void rtms_ulaw_encode(const int16_t *src, size_t n, uint8_t *dst);

/* ---- G.722 (ITU-T G.722 SB-ADPCM), g722.c ------------------------------ */
/* (section owned by the G.722 codec) */

/* ---- Resampler (streaming polyphase FIR), resample.c ------------------- */
/* (section owned by the resampler) */

/* ---- Parsers: WebSocket frames, media envelope, base64, RTP ------------ */
/* (section owned by the parsers: ws_frame.c, media_msg.c, base64.c, rtp.c) */

/* ---- Rings and the batched ingest kernel, ring.c / ingest.c ------------ */
/* (section owned by the rings and the ingest kernel) */

/* RTMS_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* RTMS_NATIVE_H */
