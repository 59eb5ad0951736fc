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
/* Decode n code bytes into n int16 samples. Bit-exact with the G.711 tables.
   src and dst must not overlap (the loop is written for restrict pointers). */
void rtms_alaw_decode(const uint8_t *src, size_t n, int16_t *dst);
void rtms_ulaw_decode(const uint8_t *src, size_t n, int16_t *dst);
/* Encode n int16 samples into n code bytes (G.711 segment quantisation). */
void rtms_alaw_encode(const int16_t *src, size_t n, uint8_t *dst);
void rtms_ulaw_encode(const int16_t *src, size_t n, uint8_t *dst);

/* ---- G.722 (ITU-T G.722 SB-ADPCM), g722.c ------------------------------ */
/* 16 kHz audio, one octet per two samples: bits 7-6 the higher-band code IH,
 * bits 5-0 the lower-band code IL. Modes 1, 2, 3 = 64, 56, 48 kbit/s: in
 * modes 2 and 3 the lower-band decoder ignores the 1 or 2 LSBs of IL. The
 * encoder always produces 64 kbit/s octets (any mode can decode them).
 * Bit-exact with the ITU-T test sequences (Appendix II) and with G.191.
 * The states are complete types for C (struct layouts at the end of this
 * header), so other kernels embed them without allocation; Python sees them
 * as opaque and uses the _new/_free pairs (ffi.gc). */
typedef struct rtms_g722_encoder rtms_g722_encoder;
typedef struct rtms_g722_decoder rtms_g722_decoder;
enum { RTMS_G722_E_MODE = -1 }; /* mode is not 1, 2 or 3 */
/* Put a state into the Recommendation's reset state. decoder_init returns 0,
 * or RTMS_G722_E_MODE (state untouched); decoder_reset keeps the mode. */
void rtms_g722_encoder_init(rtms_g722_encoder *e);
int rtms_g722_decoder_init(rtms_g722_decoder *d, int mode);
void rtms_g722_decoder_reset(rtms_g722_decoder *d);
int rtms_g722_decoder_mode(const rtms_g722_decoder *d);
/* Heap states: NULL when out of memory (or, for the decoder, a bad mode).
 * The _free functions accept NULL. */
rtms_g722_encoder *rtms_g722_encoder_new(void);
void rtms_g722_encoder_free(rtms_g722_encoder *e);
rtms_g722_decoder *rtms_g722_decoder_new(int mode);
void rtms_g722_decoder_free(rtms_g722_decoder *d);
/* Decode n octets into dst[0 .. 2n); returns 2n. State carries across calls,
 * so 20 ms blocks decode exactly like one long block. */
size_t rtms_g722_decode(rtms_g722_decoder *d, const uint8_t *src, size_t n, int16_t *dst);
/* Encode n_samples samples into dst[0 .. n_samples / 2); returns that count.
 * An odd last sample is neither coded nor consumed: a streaming caller keeps
 * it and passes it again in front of the next block. */
size_t rtms_g722_encode(rtms_g722_encoder *e, const int16_t *src, size_t n_samples,
                        uint8_t *dst);
/* The sub-band ADPCM coders alone, QMF bypassed (for the Appendix II test
 * sequences): one 15-bit sub-band sample (-16384..16383) in, its code out;
 * one code in, the reconstructed sub-band sample out. decode_low uses the
 * given mode (1..3; anything else acts as 1), not the state's. They update
 * the same band states the full codec uses. */
int rtms_g722_encode_low(rtms_g722_encoder *e, int xl);
int rtms_g722_encode_high(rtms_g722_encoder *e, int xh);
int rtms_g722_decode_low(rtms_g722_decoder *d, int il, int mode);
int rtms_g722_decode_high(rtms_g722_decoder *d, int ih);

/* ---- Resampler (streaming polyphase FIR), resample.c ------------------- */
/* Rates 8000, 16000, 24000, 32000 and 48000 Hz, every pair; equal rates copy exactly.
 * A filter holds the coefficients of one rate pair: immutable once built, shareable by
 * any number of streams and threads, and it must outlive every resampler that uses it.
 * A resampler is one stream's state (input history and phase), carried across chunks so
 * that chunked output equals one-shot output exactly; embed it (struct below, outside the
 * cdef) or get one from rtms_resampler_new. Output = minimum-phase FIR: `delay` output
 * samples of latency, no look-ahead: an output is written as soon as its input arrived. */
typedef struct rtms_resample_filter rtms_resample_filter;
typedef struct rtms_resampler rtms_resampler;
enum {
    RTMS_RESAMPLE_KERNEL_AUTO = 0,   /* best the CPU supports */
    RTMS_RESAMPLE_KERNEL_SCALAR = 1, /* plain C, any CPU */
    RTMS_RESAMPLE_KERNEL_SSE2 = 2,   /* x86-64 baseline */
    RTMS_RESAMPLE_KERNEL_AVX2 = 3,   /* runtime-detected; same results as SSE2 and scalar */
    RTMS_RESAMPLE_E_CAPACITY = -1,   /* dst_capacity < rtms_resampler_output_count(n) */
    RTMS_RESAMPLE_E_ARGUMENT = -2    /* NULL state or buffer */
};
/* NULL for an unsupported rate, an unavailable kernel or no memory. Designs the filter
 * (FFTs in double precision): ~2-20 ms, so build one per rate pair and share it. */
rtms_resample_filter *rtms_resample_filter_new(uint32_t in_rate, uint32_t out_rate);
rtms_resample_filter *rtms_resample_filter_new_kernel(uint32_t in_rate, uint32_t out_rate,
                                                      int kernel);
void rtms_resample_filter_free(rtms_resample_filter *filter);
int rtms_resample_filter_kernel(const rtms_resample_filter *filter);
/* Latency in output samples (mean passband group delay, rounded), and unrounded. */
size_t rtms_resample_filter_delay(const rtms_resample_filter *filter);
double rtms_resample_filter_group_delay(const rtms_resample_filter *filter);
/* Taps per output sample (per polyphase branch, padded) and number of branches. */
size_t rtms_resample_filter_taps(const rtms_resample_filter *filter);
size_t rtms_resample_filter_phases(const rtms_resample_filter *filter);
/* Most output samples that n input samples can yield in one call, from any state. */
size_t rtms_resample_max_output(const rtms_resample_filter *filter, size_t n);
size_t rtms_resampler_state_size(void);
void rtms_resampler_init(rtms_resampler *state, const rtms_resample_filter *filter);
void rtms_resampler_reset(rtms_resampler *state);
/* Exactly how many samples the next call with n input samples will write. */
size_t rtms_resampler_output_count(const rtms_resampler *state, size_t n);
/* Consume all n samples, write the outputs to dst; returns the count written, or a
 * negative RTMS_RESAMPLE_E_* code with nothing consumed. int16 output saturates and
 * rounds to nearest (ties to even). */
ptrdiff_t rtms_resampler_process_i16(rtms_resampler *state, const int16_t *src, size_t n,
                                     int16_t *dst, size_t dst_capacity);
ptrdiff_t rtms_resampler_process_f32(rtms_resampler *state, const float *src, size_t n,
                                     float *dst, size_t dst_capacity);
/* Benchmark aid: process the same chunk `repeats` times, each output over the last;
 * returns the total written (or an error code). */
ptrdiff_t rtms_resampler_process_repeat_i16(rtms_resampler *state, const int16_t *src,
                                            size_t n, size_t repeats, int16_t *dst,
                                            size_t dst_capacity);
/* Heap state for Python (ffi.gc); rtms_resampler_free(NULL) is a no-op. */
rtms_resampler *rtms_resampler_new(const rtms_resample_filter *filter);
void rtms_resampler_free(rtms_resampler *state);

/* ---- Parsers: WebSocket frames, media envelope, base64, RTP ------------ */
/* (section owned by the parsers: ws_frame.c, media_msg.c, base64.c, rtp.c) */
/* Error codes of the parsers and the ingest kernel. Functions return them
   negated (-RTMS_ERR_...); ingest records and counters carry them positive.
   Counters are indexed by code, so every code is below RTMS_ERR_COUNT. */
enum {
    RTMS_ERR_NONE = 0,
    /* WebSocket framing (RFC 6455): the connection cannot continue */
    RTMS_ERR_WS_RSV = 1,                /* RSV1-3 set without a negotiated extension */
    RTMS_ERR_WS_OPCODE = 2,             /* reserved opcode */
    RTMS_ERR_WS_LENGTH_NOT_MINIMAL = 3, /* 16/64-bit length where a shorter form fits */
    RTMS_ERR_WS_LENGTH_MSB = 4,         /* 64-bit length with the top bit set */
    RTMS_ERR_WS_TOO_BIG = 5,            /* frame or message above the configured maximum */
    RTMS_ERR_WS_MASKED = 6,             /* a server frame carries a mask */
    RTMS_ERR_WS_CONTROL_TOO_BIG = 7,    /* control frame payload above 125 bytes */
    RTMS_ERR_WS_CONTROL_FRAGMENTED = 8, /* control frame without FIN */
    RTMS_ERR_WS_UNEXPECTED_CONTINUATION = 9,
    RTMS_ERR_WS_EXPECTED_CONTINUATION = 10,
    RTMS_ERR_WS_CONNECTION_FAILED = 11, /* bytes after an earlier framing error */
    RTMS_ERR_SPACE = 12,                /* an output buffer is too small */
    RTMS_ERR_NO_MEMORY = 13,            /* message scratch could not grow (malloc failed) */
    /* base64 */
    RTMS_ERR_B64_CHAR = 20,             /* a byte outside the alphabet (or a bad escape) */
    RTMS_ERR_B64_PADDING = 21,          /* '=' misplaced */
    RTMS_ERR_B64_LENGTH = 22,           /* not a multiple of 4 characters */
    /* media envelope (JSON) */
    RTMS_ERR_MSG_SYNTAX = 30,           /* not well-formed JSON where we had to look */
    RTMS_ERR_MSG_NOT_OBJECT = 31,       /* the message is not a JSON object */
    RTMS_ERR_MSG_TYPE = 32,             /* msg_type missing or not an integer */
    RTMS_ERR_MSG_CONTENT = 33,          /* content missing or not an object */
    RTMS_ERR_MSG_USER = 34,             /* neither user_id (int) nor channel_id (string) */
    RTMS_ERR_MSG_USER_TYPE = 35,        /* user_id not an integer / channel_id not a string */
    RTMS_ERR_MSG_KEY_AMBIGUOUS = 36,    /* both user_id and channel_id */
    RTMS_ERR_MSG_NAME = 37,             /* user_name missing or not a string */
    RTMS_ERR_MSG_TIMESTAMP = 38,        /* timestamp missing or not an integer */
    RTMS_ERR_MSG_DATA = 39,             /* data missing or not a string */
    RTMS_ERR_MSG_DUPLICATE_KEY = 40,    /* a field we read appears twice */
    RTMS_ERR_MSG_DEPTH = 41,            /* nesting deeper than the scanner follows */
    RTMS_ERR_MSG_NUMBER_RANGE = 42,     /* integer outside int64 */
    RTMS_ERR_MSG_KEY_TOO_LONG = 43,     /* channel_id longer than a slot key holds */
    /* RTP (RFC 3550) */
    RTMS_ERR_RTP_SHORT = 50,            /* shorter than its header says */
    RTMS_ERR_RTP_VERSION = 51,
    RTMS_ERR_RTP_PADDING = 52,          /* padding count 0 or beyond the payload */
    RTMS_ERR_RTP_PAYLOAD_TYPE = 53,     /* not the negotiated codec */
    RTMS_ERR_RTP_LATE = 54,             /* arrived after its slot was filled (dropped) */
    RTMS_ERR_RTP_DUPLICATE = 55,        /* seen already (dropped) */
    /* ingest */
    RTMS_ERR_INGEST_SLOTS_FULL = 60,    /* a new participant past max_participants */
    RTMS_ERR_INGEST_BUDGET = 61,        /* the ring for a new participant was refused */
    RTMS_ERR_INGEST_AUDIO_LENGTH = 62,  /* payload not a whole number of sample frames */
    RTMS_ERR_INGEST_CODEC = 63,         /* codec unsupported by this build */
    RTMS_ERR_COUNT = 64
};

/* One WebSocket frame header. */
typedef struct rtms_ws_frame {
    uint8_t fin;
    uint8_t opcode;        /* 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong */
    uint8_t masked;
    uint8_t mask_key[4];
    uint32_t header_len;   /* bytes before the payload (2..14) */
    uint64_t payload_len;
} rtms_ws_frame;

/* Parse the frame header at buf[0..len). Returns the header length (> 0) once
   the header is complete (the payload may still be short), 0 when more bytes
   are needed, or -RTMS_ERR_WS_*. A masked frame is an error unless allow_masked. */
int rtms_ws_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload, int allow_masked,
                         rtms_ws_frame *out);
/* Write one frame (header + payload, masked with mask_key when it is not NULL,
   as a client must) into out[0..out_cap). Returns the bytes written, or
   -RTMS_ERR_SPACE when out_cap is too small, -RTMS_ERR_WS_OPCODE /
   -RTMS_ERR_WS_CONTROL_TOO_BIG / -RTMS_ERR_WS_CONTROL_FRAGMENTED for a frame
   a peer would reject. */
int64_t rtms_ws_encode(int opcode, int fin, const uint8_t *payload, size_t n,
                       const uint8_t *mask_key, uint8_t *out, size_t out_cap);
/* XOR data with the 4-byte key, starting at key position `phase` (0..3). */
void rtms_ws_unmask(uint8_t *data, size_t n, const uint8_t *mask_key, size_t phase);

/* Standard base64 (RFC 4648 section 4), padded. The decoder accepts the JSON
   escape "\/" for '/' and nothing else outside the alphabet. Returns the bytes
   written or -RTMS_ERR_B64_*. rtms_b64_decoded_max bounds the output size. */
size_t rtms_b64_decoded_max(size_t n_chars);
int64_t rtms_b64_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap);
/* Encode n bytes into 4*ceil(n/3) characters at dst (no terminator). */
size_t rtms_b64_encode(const uint8_t *src, size_t n, uint8_t *dst);

/* What the envelope scanner found. Byte ranges are offsets into the scanned
   buffer, inside the quotes, still JSON-escaped when *_escaped is 1. */
typedef struct rtms_media_msg {
    int64_t msg_type;          /* -1 when absent */
    int64_t user_id;
    int64_t timestamp_ms;
    uint32_t key_kind;         /* 0 none, 1 user_id, 2 channel_id, 3 both */
    uint32_t has_name;
    uint32_t has_timestamp;
    uint32_t has_data;
    uint32_t name_escaped;
    uint32_t channel_escaped;
    uint32_t data_escaped;
    uint32_t reserved;
    uint64_t channel_off, channel_len;
    uint64_t name_off, name_len;
    uint64_t data_off, data_len;
} rtms_media_msg;

/* Scan a JSON media message at buf[0..len). Always finds msg_type (an
   integer, required). mode 0 only classifies; mode 1 also insists on the
   audio fields (user key, user_name, timestamp, data); mode 2 does so when
   msg_type is 14; mode 3 likewise but the user key and name are optional
   (mixed audio). key_kind 3 means both user_id and channel_id were present.
   Returns 0 or -RTMS_ERR_MSG_*; out->msg_type is filled whenever it was seen. */
int rtms_media_msg_scan(const uint8_t *buf, size_t len, int mode, rtms_media_msg *out);
/* Decode the JSON string body src[0..n) (escapes included, no quotes) into
   UTF-8 at dst. Returns bytes written or -RTMS_ERR_MSG_SYNTAX / -RTMS_ERR_SPACE. */
int64_t rtms_json_unescape(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap);

/* One RTP header (RFC 3550 section 5.1). */
typedef struct rtms_rtp_header {
    uint8_t padding;
    uint8_t extension;
    uint8_t csrc_count;
    uint8_t marker;
    uint8_t payload_type;
    uint8_t reserved[3];
    uint16_t sequence;
    uint16_t extension_profile;
    uint32_t timestamp;
    uint32_t ssrc;
    uint32_t payload_off;      /* after CSRCs and extension */
    uint32_t payload_len;      /* without padding */
} rtms_rtp_header;
/* Returns 0 or -RTMS_ERR_RTP_*. expected_pt < 0 accepts any payload type. */
int rtms_rtp_parse(const uint8_t *buf, size_t len, int expected_pt, rtms_rtp_header *out);

/* Per-stream sequence state: loss, reordering and duplicates (16-bit wrap). */
typedef struct rtms_rtp_seq {
    uint32_t started;
    uint32_t max_seq;          /* highest sequence accepted */
    uint64_t window;           /* bit i: max_seq - i was received */
    uint64_t accepted, lost, late, duplicate, resync;
} rtms_rtp_seq;
void rtms_rtp_seq_init(rtms_rtp_seq *s);
/* Account for one packet. Returns the number of packets lost just before it
   (>= 0, the packet is accepted), or -RTMS_ERR_RTP_LATE / -RTMS_ERR_RTP_DUPLICATE
   (drop it). A jump larger than max_gap packets resynchronises (counted, no loss). */
int64_t rtms_rtp_seq_update(rtms_rtp_seq *s, uint16_t seq, uint32_t max_gap);

/* ---- Rings and the batched ingest kernel, ring.c / ingest.c ------------ */
/* (section owned by the rings and the ingest kernel) */

/* -- rings (ring.c): single-producer single-consumer rings of fixed-size items.
 * One producer thread and one consumer thread (may differ). The memory is a
 * window of 2 * capacity items where item i and i + capacity hold the same bytes
 * (double-mapped pages on Linux, else a mirrored copy), so any run of up to
 * `capacity` items is contiguous. Positions count items since creation. */
enum { RTMS_RING_DROP_OLDEST = 0, RTMS_RING_DROP_NEWEST = 1, RTMS_RING_BACKPRESSURE = 2 };
/* rtms_ring_new_ex flags: force the portable mirrored layout (no double mapping). */
enum { RTMS_RING_FLAG_MIRRORED = 1 };
/* rtms_ring_new_ex error codes */
enum { RTMS_RING_OK = 0, RTMS_RING_EARG = -1, RTMS_RING_EBUDGET = -2, RTMS_RING_ENOMEM = -3 };

/* A ceiling on the bytes of many rings (atomic accounting). Rings charged to it
   keep it alive: rtms_budget_free drops the creator's reference only. */
typedef struct rtms_budget rtms_budget;
rtms_budget *rtms_budget_new(uint64_t limit_bytes);
void rtms_budget_free(rtms_budget *b);
uint64_t rtms_budget_used(const rtms_budget *b);
uint64_t rtms_budget_limit(const rtms_budget *b);

typedef struct rtms_ring rtms_ring;
/* capacity in items, rounded up to whole pages unless mirrored; item_size in
   bytes; budget may be NULL. NULL if the budget would be exceeded or memory
   cannot be had (rtms_ring_new_ex says which in *error, which may be NULL). */
rtms_ring *rtms_ring_new(size_t capacity_items, size_t item_size, int policy, rtms_budget *budget);
rtms_ring *rtms_ring_new_ex(size_t capacity_items, size_t item_size, int policy,
                            rtms_budget *budget, unsigned flags, int *error);
/* Bytes a ring of these parameters charges to a budget (0: invalid request). */
size_t rtms_ring_footprint_for(size_t capacity_items, size_t item_size, unsigned flags);
void rtms_ring_retain(rtms_ring *r);   /* reference count: the ingest kernel and the */
void rtms_ring_release(rtms_ring *r);  /* Python reader each hold one; freed at zero */

size_t rtms_ring_capacity(const rtms_ring *r);     /* items, after rounding */
size_t rtms_ring_item_size(const rtms_ring *r);    /* bytes */
int rtms_ring_policy(const rtms_ring *r);
int rtms_ring_is_double_mapped(const rtms_ring *r);
size_t rtms_ring_footprint(const rtms_ring *r);    /* bytes charged to the budget */
void *rtms_ring_window(const rtms_ring *r);        /* the 2 * capacity item window */

/* Producer side (one thread). Drop-newest and backpressure accept the prefix
   that fits and count the rest (dropped_newest / refused); drop-oldest accepts
   everything and overwrites the oldest items. */
size_t rtms_ring_write(rtms_ring *r, const void *items, size_t n);  /* items accepted */
size_t rtms_ring_write_silence(rtms_ring *r, size_t n);            /* zero items (gap filling) */
/* Contiguous space for n items at the write position, or NULL when refused
   (no room under drop-newest/backpressure, or n > capacity; counted). A new
   reserve or write abandons an uncommitted reservation. */
void *rtms_ring_reserve(rtms_ring *r, size_t n);
void rtms_ring_commit(rtms_ring *r, size_t n);  /* publish the first n reserved items */
/* Where the next item will go (the producer's view), and a prefetch of the ring's
   producer state: cache hints for a batch that will write to the ring soon. */
const void *rtms_ring_next_write(const rtms_ring *r);
void rtms_ring_prefetch_producer(const rtms_ring *r);

/* Consumer side (one thread). */
size_t rtms_ring_readable(const rtms_ring *r);  /* items readable now (<= capacity) */
/* Point at the oldest unread item: returns how many (<= max_items) are readable
   and contiguous there. Does not consume. Drop-oldest: first skips items the
   producer has overwritten (counted as an overrun). */
size_t rtms_ring_peek(rtms_ring *r, size_t max_items, const void **ptr);
size_t rtms_ring_peek_at(rtms_ring *r, size_t max_items, size_t *offset_items);
/* Drop-oldest only (0 otherwise): how many of the first n peeked items the
   producer may have overwritten since the peek; call after using them. */
size_t rtms_ring_overwritten(rtms_ring *r, size_t n);
/* Release the n oldest unread items; returns n, or 0 (releasing nothing) if
   fewer than n are unread. Stores in *overwritten (may be NULL) how many of them
   were overwritten while in use (drop-oldest only: discard their contents;
   counted as an overrun). */
size_t rtms_ring_consume(rtms_ring *r, size_t n, size_t *overwritten);
/* Copy up to max_items intact items to dst and consume them; returns the count. */
size_t rtms_ring_read(rtms_ring *r, void *dst, size_t max_items);
/* Many rings of one consumer at once (an ASR worker draining every stream):
   counts[i] = items readable in rings[i] now; returns their sum. */
size_t rtms_ring_readable_many(rtms_ring *const *rings, size_t n, size_t *counts);
/* Copy up to counts[i] intact items of rings[i] (each of item_size bytes) to dst,
   ring after ring with no gaps, and consume them; counts[i] becomes what ring i
   gave. Returns the total. A ring of another item size gives nothing. */
size_t rtms_ring_read_many(rtms_ring *const *rings, size_t n, size_t item_size, void *dst,
                           size_t *counts);

typedef struct {
    uint64_t capacity;        /* items */
    uint64_t item_size;       /* bytes */
    uint64_t fill;            /* items readable now */
    uint64_t written;         /* items accepted by the producer (silence included) */
    uint64_t read;            /* items consumed intact */
    uint64_t dropped_oldest;  /* overwritten before being read (found or pending) */
    uint64_t dropped_newest;  /* refused by drop-newest, or larger than the ring */
    uint64_t refused;         /* refused by backpressure (a retried item counts again) */
    uint64_t overruns;        /* times the consumer found items overwritten */
    uint64_t overrun_items;   /* items it found overwritten */
    int policy;
    int double_mapped;
} rtms_ring_stats;
/* A snapshot; exact when the ring is quiet: written == read + dropped_oldest + fill. */
void rtms_ring_get_stats(const rtms_ring *r, rtms_ring_stats *out);

/* -- the batched ingest kernel (ingest.c): WebSocket bytes in, audio in rings out.
 * One call takes, for many connections at once, the bytes a socket read
 * returned (after TLS): whole frames, possibly a trailing partial one. Audio
 * messages are decoded into the participant's ring inside the call; control
 * frames, other messages, new participants and errors come back as records.
 * Per connection it reports how many bytes it consumed; the caller keeps the
 * rest for the next call. No allocation per message: a connection owns its
 * buffers from creation, and a ring is created per NEW participant only. */
enum { RTMS_CODEC_L16 = 1, RTMS_CODEC_PCMA = 2, RTMS_CODEC_G722 = 3, RTMS_CODEC_PCMU = 100 };
enum { RTMS_CONTENT_RTP = 1, RTMS_CONTENT_RAW = 2 };
enum { RTMS_SAMPLE_INT16 = 0, RTMS_SAMPLE_FLOAT32 = 1 };
enum { RTMS_REC_CONTROL = 1, RTMS_REC_MESSAGE = 2, RTMS_REC_NEW_PARTICIPANT = 3,
       RTMS_REC_ERROR = 4 };
/* record flags */
enum { RTMS_REC_IN_REASSEMBLY = 1,  /* offsets are into rtms_ingest_conn_reassembly() */
       RTMS_REC_IN_CONTROL = 2,     /* offsets are into rtms_ingest_conn_control() */
       RTMS_REC_NAME_ESCAPED = 4,   /* the user_name range holds JSON escapes */
       RTMS_REC_FATAL = 8 };        /* a framing error: the connection cannot go on */
/* batch status bits: CALL_AGAIN when some connection stopped before the end of
   its complete frames (RECORDS_FULL: the record array filled up; otherwise a
   record points into a connection buffer, valid until that connection's next
   call). The caller handles the records, then calls again with the remainders. */
enum { RTMS_BATCH_RECORDS_FULL = 1, RTMS_BATCH_CALL_AGAIN = 2 };

typedef struct rtms_ingest_config {
    int32_t codec;               /* RTMS_CODEC_* */
    int32_t content_type;        /* RTMS_CONTENT_RTP or RTMS_CONTENT_RAW */
    int32_t input_rate_hz;       /* 8000, 16000, 32000, 48000 */
    int32_t channels;            /* 1 or 2 (interleaved) */
    int32_t output_rate_hz;      /* the consumer's rate */
    int32_t sample_format;       /* RTMS_SAMPLE_INT16 or RTMS_SAMPLE_FLOAT32 */
    int32_t ring_policy;         /* RTMS_RING_* */
    int32_t max_participants;    /* slots; forced to 1 in mixed mode */
    int32_t mixed;               /* 1: one slot for all audio (AUDIO_MIXED_STREAM) */
    int32_t fill_gaps;           /* 1: RTP loss and timestamp gaps become silence */
    int32_t allow_masked;        /* 1: accept masked frames (simulator tests only) */
    int32_t rtp_payload_type;    /* -1: the codec's static RTP payload type */
    uint64_t ring_capacity_items;
    uint64_t max_message_bytes;  /* frame and reassembled message ceiling */
    uint32_t max_gap_ms;         /* longer gaps resynchronise instead of filling */
    uint32_t reserved;
    rtms_budget *budget;         /* may be NULL */
} rtms_ingest_config;

typedef struct rtms_ingest_conn rtms_ingest_conn;
/* NULL on a bad config or no memory; *error (may be NULL) gets -RTMS_ERR_INGEST_CODEC
   for an unsupported codec/rate, -1 for another bad field, -2 for no memory. */
rtms_ingest_conn *rtms_ingest_conn_new(const rtms_ingest_config *cfg, int *error);
void rtms_ingest_conn_free(rtms_ingest_conn *c);
/* A new socket for the same stream: framing and reassembly state cleared,
   participants, rings and counters kept. */
void rtms_ingest_conn_reset(rtms_ingest_conn *c);
const uint8_t *rtms_ingest_conn_reassembly(const rtms_ingest_conn *c);
const uint8_t *rtms_ingest_conn_control(const rtms_ingest_conn *c);

typedef struct rtms_ingest_record {
    uint32_t conn;               /* index into the batch arrays */
    uint16_t kind;               /* RTMS_REC_* */
    uint16_t flags;              /* RTMS_REC_IN_* ... */
    int32_t error;               /* RTMS_ERR_* (positive) or 0 */
    int32_t opcode;              /* WebSocket opcode of the frame/message */
    int64_t msg_type;            /* -1 when unknown */
    int32_t slot;                /* participant slot or -1 */
    uint32_t key_kind;           /* NEW_PARTICIPANT: 1 user_id, 2 channel_id, 0 none */
    int64_t user_id;
    int64_t timestamp_ms;
    uint64_t offset, length;     /* CONTROL: frame payload; MESSAGE, ERROR: the whole message;
                                    NEW_PARTICIPANT: the channel_id (JSON-escaped), if any.
                                    In the input buffer unless flags say otherwise. */
    uint64_t name_offset, name_length;  /* NEW_PARTICIPANT: user_name, same buffer */
} rtms_ingest_record;

typedef struct rtms_ingest_stats {
    uint64_t bytes_consumed;
    uint64_t frames;
    uint64_t control_frames;
    uint64_t messages;           /* complete data messages */
    uint64_t audio_messages;     /* msg_type 14 */
    uint64_t audio_ingested;     /* audio messages decoded into a ring */
    uint64_t other_messages;     /* returned as RTMS_REC_MESSAGE */
    uint64_t message_errors;     /* audio messages returned as RTMS_REC_ERROR */
    uint64_t samples_out;        /* items offered to rings, silence included */
    uint64_t silence_samples;
    uint64_t ring_dropped;       /* items a ring refused (drop-newest / backpressure) */
    uint64_t rtp_lost, rtp_late, rtp_duplicate, rtp_resync;
    uint64_t gaps_filled;
    uint64_t gaps_too_long;      /* gaps above max_gap_ms, left unfilled */
    uint64_t slots_created, slots_refused;
    uint64_t errors_total;
    uint64_t errors[64];         /* by RTMS_ERR_* code */
} rtms_ingest_stats;
void rtms_ingest_conn_stats(const rtms_ingest_conn *c, rtms_ingest_stats *out);

typedef struct rtms_ingest_slot_info {
    uint32_t key_kind;           /* 1 user_id, 2 channel_id, 0 none (mixed) */
    uint32_t key_len;
    int64_t user_id;
    uint8_t key[64];             /* channel_id, unescaped UTF-8 */
    int64_t last_timestamp_ms;   /* of the last audio message, -1 before any */
    uint64_t position_at_last_timestamp;  /* items produced before that message */
    uint64_t items_produced;     /* items offered to the ring, silence included */
    uint64_t silence_items;
    uint64_t messages;
    uint64_t rtp_lost, rtp_late, rtp_duplicate;
} rtms_ingest_slot_info;
uint32_t rtms_ingest_conn_slot_count(const rtms_ingest_conn *c);
int rtms_ingest_slot_get_info(const rtms_ingest_conn *c, uint32_t slot, rtms_ingest_slot_info *out);
/* The slot's ring, borrowed (rtms_ring_retain it to keep it); NULL if no such slot. */
rtms_ring *rtms_ingest_slot_ring(const rtms_ingest_conn *c, uint32_t slot);

/* Consume bufs[i][0..lens[i]) for conns[i], i < n_conns. consumed[i] gets the
   bytes used (complete frames); records get at most max_records entries.
   Returns the record count; *status gets RTMS_BATCH_* bits when it stopped
   early (consumed[] says how far it got; nothing is lost). */
size_t rtms_ingest_batch(rtms_ingest_conn *const *conns, const uint8_t *const *bufs,
                         const size_t *lens, size_t n_conns, size_t *consumed,
                         rtms_ingest_record *records, size_t max_records, uint32_t *status);

/* ---- Batched socket sends, send_batch.c -------------------------------- */
/* Send n buffers, laid end to end in data (lens[i] bytes each), to n sockets,
   each with one non-blocking send(). results[i] = bytes sent (0 when the socket
   would block, possibly fewer than lens[i]) or -errno. Returns how many were
   sent completely. Not available on Windows (every result is -ENOSYS). */
size_t rtms_send_batch(const int *fds, const uint8_t *data, const size_t *lens, size_t n,
                       int64_t *results);

/* ---- Paced audio sender (the simulator's media sweep), sim_sender.c ----- */
/* Holds, per registered stream, a socket, the constant JSON pieces of its audio
   messages and the frame clock; one sweep call formats and sends every due frame
   of every stream (header + prefix + cached base64 + timestamp) with one
   non-blocking send() per socket. What a socket did not take, and every socket
   error, comes back as an event; the stream is then paused (skipped by sweeps)
   until removed. No allocation per message: one scratch buffer per sender.
   Message j of frame k for voice v is the WebSocket frame (final, unmasked,
   `opcode`) around
     prefix_v + table_v[((k * samples_per_frame + frame_offset_v) % loop) / step]
       + "\",\"timestamp\":" + decimal(base_ms + k * period_ms) + "}}". */
enum { RTMS_SIM_MAX_VOICES = 3, RTMS_SIM_MAX_PREFIX = 240 };
enum { RTMS_SIM_EV_PARTIAL = 1,  /* the socket took sent_bytes of total_bytes (0: would block) */
       RTMS_SIM_EV_ERROR = 2,    /* send() failed: sent_bytes = -errno */
       RTMS_SIM_EV_TOO_BIG = 3 };/* the due frames do not fit the scratch buffer: not sent,
                                    not counted, next_index unchanged */
/* rtms_sim_sender_add / _add_table errors */
enum { RTMS_SIM_EARG = -1, RTMS_SIM_ENOMEM = -2, RTMS_SIM_ESPACE = -3 };

typedef struct rtms_sim_sender rtms_sim_sender;

typedef struct rtms_sim_voice {
    const uint8_t *prefix;       /* copied at registration */
    uint32_t prefix_len;         /* <= RTMS_SIM_MAX_PREFIX */
    int32_t table;               /* from rtms_sim_sender_add_table */
    uint64_t frame_offset;       /* loop position of frame 0's first sample */
} rtms_sim_voice;

typedef struct rtms_sim_stream_params {
    int32_t fd;
    uint32_t phase;              /* swept when bit `phase` of the sweep's mask is set (< 32) */
    uint32_t opcode;             /* WebSocket opcode of every message (1 text, 2 binary) */
    uint32_t n_voices;           /* 1..RTMS_SIM_MAX_VOICES messages per frame, in send order */
    double t0_s;                 /* frame k is due at t0_s + k * period_s (sweep clock) */
    double period_s;
    int64_t period_ms;           /* timestamp of frame k: base_ms + k * period_ms */
    int64_t base_ms;
    int64_t next_index;          /* first frame not sent yet */
    int64_t total;               /* frames 0..total-1 */
    uint64_t samples_per_frame;
    rtms_sim_voice voices[3];    /* RTMS_SIM_MAX_VOICES */
} rtms_sim_stream_params;

typedef struct rtms_sim_event {
    uint32_t slot;
    int32_t kind;                /* RTMS_SIM_EV_* */
    int64_t first_index, last_index;  /* the frames of the send (inclusive) */
    int64_t sent_bytes;          /* PARTIAL: bytes taken; ERROR: -errno */
    uint64_t total_bytes;        /* bytes of those frames */
} rtms_sim_event;

typedef struct rtms_sim_sweep_result {
    uint64_t frames;             /* frames sent (or queued: PARTIAL, ERROR count as sent) */
    uint64_t messages;           /* frames x voices */
    uint64_t misses;             /* frames sent more than one period after they were due */
    uint64_t sends;              /* send() calls */
    uint64_t bytes;              /* bytes the sockets took */
    double max_lag_s;            /* in: the largest lag so far; out: updated */
} rtms_sim_sweep_result;

/* scratch_bytes bounds what one stream may send in one sweep (TOO_BIG beyond).
   NULL on no memory or where sockets are not supported (Windows). */
rtms_sim_sender *rtms_sim_sender_new(size_t scratch_bytes);
void rtms_sim_sender_free(rtms_sim_sender *s);
/* Copy a base64 payload table: n_entries entries of entry_len bytes, entry i for
   loop position i * step; loop_samples = n_entries * step. Returns its id (>= 0)
   or RTMS_SIM_E*. */
int32_t rtms_sim_sender_add_table(rtms_sim_sender *s, const uint8_t *entries,
                                  uint32_t entry_len, uint32_t n_entries, uint64_t step,
                                  uint64_t loop_samples);
/* Register a stream; returns its slot (>= 0) or RTMS_SIM_E*. */
int64_t rtms_sim_sender_add(rtms_sim_sender *s, const rtms_sim_stream_params *p);
/* Unregister; returns the stream's next_index (or RTMS_SIM_EARG for a bad slot). */
int64_t rtms_sim_sender_remove(rtms_sim_sender *s, uint32_t slot);
int64_t rtms_sim_sender_next_index(const rtms_sim_sender *s, uint32_t slot);
size_t rtms_sim_sender_count(const rtms_sim_sender *s);  /* registered streams */
/* Send every due frame of every unpaused stream whose phase bit is in phase_mask.
   Adds to *out (max_lag_s is read and updated). Returns the event count; the
   events are at rtms_sim_sender_events(s), valid until the next call. */
size_t rtms_sim_sender_sweep(rtms_sim_sender *s, double now_s, uint32_t phase_mask,
                             rtms_sim_sweep_result *out);
const rtms_sim_event *rtms_sim_sender_events(const rtms_sim_sender *s);
/* The exact bytes the sweep sends for frames first..last of a slot, without sending.
   Returns the length, RTMS_SIM_EARG, or RTMS_SIM_ESPACE when cap is too small. */
int64_t rtms_sim_sender_format(const rtms_sim_sender *s, uint32_t slot, int64_t first,
                               int64_t last, uint8_t *out, size_t cap);

/* ---- Batched socket receives and readiness, recv_batch.c ---------------- */
/* A read that found the end of the stream (see rtms_recv_sweep). */
enum { RTMS_RECV_EOF = -1000001 };
/* flags RTMS_RECV_DELAY_ACK (Linux TCP): switch a socket to delayed ACKs (TCP_QUICKACK
   off) before reading it, so a read of a small segment does not send an ACK of its own
   (on loopback that ACK costs the reader ~4 us); ACKs then go out every second segment
   or on Linux's delayed-ACK timer (~40 ms). The mode lasts until that timer fires, so a
   socket is switched again whenever the timer may have fired since the last time (a gap
   in its traffic) and now and then in any case. */
enum { RTMS_RECV_DELAY_ACK = 1 };
/* The media pump's tables, indexed by socket descriptor (size entries each; the
   caller owns them and grows them with its descriptors). */
enum { RTMS_FD_PYTHON = 0,   /* read by Python: new, leftovers, TLS not settled, no ingest */
       RTMS_FD_ARENA = 1,    /* plain socket with native ingest: read into the arena */
       RTMS_FD_TLS = 2 };    /* TLS socket with native ingest: read, then decrypted */
typedef struct rtms_fd_tables {
    uint8_t *kind;           /* RTMS_FD_* */
    uint64_t *conn;          /* rtms_ingest_conn * (0: none) */
    double *activity_s;      /* the caller's clock when the socket last gave bytes */
    double *ack_armed_s;     /* when delayed ACKs were last set on it */
    uint8_t *wake;           /* 1: its owner asked to hear of the next audio */
    size_t size;
} rtms_fd_tables;
/* Split fds by read path: those not RTMS_FD_PYTHON to arena_fds (the count is
   returned), the rest to python_fds (*python_count), only those with an ingest
   connection when python_need_conn. Unknown descriptors count as Python's. */
size_t rtms_sweep_split(const int32_t *fds, size_t n, const rtms_fd_tables *t,
                        int python_need_conn, int32_t *arena_fds, int32_t *python_fds,
                        size_t *python_count);
/* The ingest inputs a sweep's receive makes: one per socket that gave bytes, in
   order (arrays of at least n entries). */
typedef struct rtms_sweep_inputs {
    int32_t *fds;
    uint64_t *conns;         /* rtms_ingest_conn * */
    uint64_t *bufs;          /* const uint8_t *: the socket's bytes in the arena */
    uint64_t *lens;
} rtms_sweep_inputs;
typedef struct rtms_recv_sweep_result {
    uint64_t bytes;          /* arena bytes used */
    uint64_t inputs;         /* sockets that gave bytes */
    uint64_t tls_inputs;     /* of them, RTMS_FD_TLS */
    uint64_t failures;       /* reads that ended (RTMS_RECV_EOF) or failed (-errno) */
    uint64_t ack_rearms;     /* sockets switched to delayed ACKs before the read */
    uint64_t skipped;        /* not read: the arena was full */
} rtms_recv_sweep_result;
/* One recv(MSG_DONTWAIT) on each of n sockets, into one caller-owned arena of cap
   bytes, laid end to end, at most max_per_fd bytes each; a socket that finds the
   arena full is not read (counted in skipped: read it next time). A socket that
   gave bytes becomes the next input (in) and gets activity_s = now; one that ended
   (RTMS_RECV_EOF), failed (-errno) or is not in the tables (-EBADF) goes to
   fail_fds / fail_codes. With RTMS_RECV_DELAY_ACK a socket is switched to delayed
   ACKs before its read when it was silent for ack_gap_s and not switched since,
   or last switched ack_rearm_s ago (ack_armed_s = now then). Returns 0 (-ENOSYS
   on Windows). */
int64_t rtms_recv_sweep(const int32_t *fds, size_t n, rtms_fd_tables *t, double now,
                        double ack_gap_s, double ack_rearm_s, uint32_t flags, uint8_t *arena,
                        size_t cap, size_t max_per_fd, rtms_sweep_inputs *in,
                        int32_t *fail_fds, int64_t *fail_codes, rtms_recv_sweep_result *out);
/* After an rtms_ingest_batch round over n inputs (input_fds[i] is input i's
   socket): the descriptors of inputs that consumed bytes and whose owner asked to
   be woken go to asked_fds (their wake flag cleared; the count is returned); the
   indexes of inputs with bytes left (consumed < lens) go to rest (*rest_count). */
size_t rtms_sweep_settle(const size_t *consumed, const size_t *lens, size_t n,
                         const int32_t *input_fds, rtms_fd_tables *t, int32_t *rest,
                         size_t *rest_count, int32_t *asked_fds);
/* One non-blocking epoll_wait on epfd: the ready descriptors (registered with
   their fd as data) go to fds. scratch holds the kernel's events: at least
   rtms_epoll_event_bytes() per descriptor, up to max_fds of them. Returns the
   count or -errno (-ENOSYS off Linux). */
size_t rtms_epoll_event_bytes(void);
int64_t rtms_epoll_ready(int32_t epfd, void *scratch, size_t scratch_bytes, int32_t *fds,
                         size_t max_fds);

/* ---- TLS client (OpenSSL, memory BIOs), tls.c ---- */
/* A TLS client that never touches a socket: ciphertext read from the network is
   fed in, ciphertext to send is taken out (one memory BIO each way), plaintext is
   read and written in between. rtms_tls_decrypt_batch decrypts what a whole sweep
   read, for every connection, in one call. A ctx is shared by any number of conns
   and threads; one conn is used by one thread at a time. Calls that run TLS clear
   the calling thread's OpenSSL error queue first and leave it empty (Python's ssl
   module shares it).
   Built without OpenSSL (RTMS_NO_OPENSSL), every function exists: available() is
   0, the constructors return NULL with an error text, the rest report errors. */
typedef struct rtms_tls_ctx rtms_tls_ctx;   /* an SSL_CTX for clients */
typedef struct rtms_tls_conn rtms_tls_conn; /* one SSL with an input and an output BIO */
/* Return codes of handshake / read / write / shutdown (read and write return a
   byte count >= 0 on success). CLOSED: the peer's close_notify arrived. EOF: the
   input ended (rtms_tls_feed_eof) without one, a truncation the peer did not
   sign. ERROR: anything else (rtms_tls_conn_error says what). CLOSED, EOF and
   ERROR are sticky: later reads return them again. */
enum { RTMS_TLS_OK = 0, RTMS_TLS_WANT_READ = -1, RTMS_TLS_CLOSED = -2, RTMS_TLS_ERROR = -3,
       RTMS_TLS_EOF = -4 };
/* rtms_tls_decrypt_batch status bits, per connection. Exactly one of OK, CLOSED
   and ERROR (EOF included) is set; OUTPUT_PENDING and MORE may be added. */
enum { RTMS_TLS_STATUS_OK = 1,             /* live (not closed, not failed) */
       RTMS_TLS_STATUS_CLOSED = 2,         /* close_notify received (now or earlier) */
       RTMS_TLS_STATUS_ERROR = 4,          /* failed (now or earlier); see conn_error */
       RTMS_TLS_STATUS_OUTPUT_PENDING = 8, /* TLS bytes to send: alerts, key updates... */
       RTMS_TLS_STATUS_MORE = 16 };        /* out ran full with input left: read it later */
/* Error text buffers of this size hold any message in full. */
enum { RTMS_TLS_ERR_CAP = 512 };
/* 1 when built with OpenSSL, else 0. */
int rtms_tls_available(void);
/* The OpenSSL version text of the library in use ("unavailable" without). */
const char *rtms_tls_library_version(void);
/* A client context: TLS 1.2 minimum, OpenSSL's default ciphers. verify != 0
   checks the peer's chain against ca_file (PEM), or the system's default CA
   paths when ca_file is NULL, and its name (rtms_tls_conn_new). NULL on failure,
   with the reason in err[0..err_cap) (err may be NULL). */
rtms_tls_ctx *rtms_tls_ctx_new(const char *ca_file, int verify, char *err, size_t err_cap);
/* Drop the creator's reference; conns made from ctx keep it alive. NULL is a no-op. */
void rtms_tls_ctx_free(rtms_tls_ctx *ctx);
/* Whether connections made from ctx from now on receive TLS 1.3 with the own record
   layer (on != 0, the default) or through OpenSSL's SSL_read. The own layer takes the
   server's traffic secret when the handshake completes (AES-128-GCM, AES-256-GCM and
   ChaCha20-Poly1305 suites) and then parses and decrypts records itself: one AEAD
   call per record, no per-record SSL machinery. Sending stays with OpenSSL. */
void rtms_tls_ctx_set_own_records(rtms_tls_ctx *ctx, int on);
/* 1 when conn's received records are decrypted by the own record layer. */
int rtms_tls_own_records(const rtms_tls_conn *c);
/* The TLS 1.3 cipher suites offered, in order (OpenSSL's syntax, e.g.
   "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"): RTMS_TLS_OK, or
   RTMS_TLS_ERROR with the reason in err when none of them is known. */
int rtms_tls_ctx_set_ciphersuites(rtms_tls_ctx *ctx, const char *suites, char *err,
                                  size_t err_cap);
/* A connection to server_hostname: a DNS name (sent as SNI, checked against the
   certificate) or an IP address (checked, no SNI). May be NULL only when the ctx
   does not verify. NULL on failure, with the reason in err. */
rtms_tls_conn *rtms_tls_conn_new(rtms_tls_ctx *ctx, const char *server_hostname, char *err,
                                 size_t err_cap);
void rtms_tls_conn_free(rtms_tls_conn *c);  /* NULL is a no-op */
/* Advance the handshake: RTMS_TLS_OK when done, RTMS_TLS_WANT_READ when it needs
   input (first send the output), RTMS_TLS_ERROR (or EOF) when it failed. */
int rtms_tls_handshake(rtms_tls_conn *c);
int rtms_tls_handshake_done(const rtms_tls_conn *c);  /* 1 once complete */
/* Append ciphertext from the network; returns len, or RTMS_TLS_ERROR after
   rtms_tls_feed_eof or when memory runs out. */
int64_t rtms_tls_feed(rtms_tls_conn *c, const uint8_t *data, size_t len);
/* The network stream ended: once the fed bytes are used up, reads report
   RTMS_TLS_EOF (unless a close_notify came first). */
void rtms_tls_feed_eof(rtms_tls_conn *c);
int rtms_tls_input_eof(const rtms_tls_conn *c);  /* 1 after rtms_tls_feed_eof */
/* Decrypt up to cap plaintext bytes: the count (> 0; 0 only when cap is 0), or
   RTMS_TLS_WANT_READ (no complete record), RTMS_TLS_CLOSED, RTMS_TLS_EOF or
   RTMS_TLS_ERROR. Drives the handshake first if it is not complete. */
int64_t rtms_tls_read(rtms_tls_conn *c, uint8_t *out, size_t cap);
/* Encrypt all len bytes into the output; returns len, or RTMS_TLS_WANT_READ
   (handshake not complete: nothing taken), RTMS_TLS_ERROR. */
int64_t rtms_tls_write(rtms_tls_conn *c, const uint8_t *data, size_t len);
/* Queue our close_notify: RTMS_TLS_OK once the peer's arrived too, else
   RTMS_TLS_WANT_READ (send the output, feed input, call again), RTMS_TLS_ERROR. */
int rtms_tls_shutdown(rtms_tls_conn *c);
/* TLS 1.3: queue a KeyUpdate (request_peer != 0: ask the peer to update too).
   RTMS_TLS_OK or RTMS_TLS_ERROR (TLS 1.2, handshake not complete). */
int rtms_tls_key_update(rtms_tls_conn *c, int request_peer);
size_t rtms_tls_output_pending(const rtms_tls_conn *c);  /* ciphertext bytes to send */
/* Move up to cap bytes of ciphertext to send into out; returns the count. */
int64_t rtms_tls_take_output(rtms_tls_conn *c, uint8_t *out, size_t cap);
size_t rtms_tls_input_pending(const rtms_tls_conn *c);   /* fed, not yet decrypted */
/* Withdraw up to cap fed bytes that TLS has not consumed (after a shutdown, what
   follows the close_notify); returns the count. */
int64_t rtms_tls_take_input(rtms_tls_conn *c, uint8_t *out, size_t cap);
size_t rtms_tls_plain_pending(const rtms_tls_conn *c);   /* decrypted, not yet read */
/* "TLSv1.3" / "TLSv1.2" once the handshake is complete, else NULL. */
const char *rtms_tls_version(const rtms_tls_conn *c);
/* The last error ("" if none): OpenSSL's error strings, plus, after a failed
   certificate check, why (e.g. hostname mismatch, unable to get local issuer). */
const char *rtms_tls_conn_error(const rtms_tls_conn *c);
/* After a handshake that failed verifying the peer: the X509_V_ERR_* code and its
   text; 0 and "" otherwise. */
int rtms_tls_verify_error(const rtms_tls_conn *c);
const char *rtms_tls_verify_message(const rtms_tls_conn *c);
/* One call for a whole sweep. For each i < n: feed in[i][0..in_lens[i]) to
   conns[i] (in[i] may be NULL when the length is 0), then decrypt every complete
   record into out, appended: plaintext at out[out_offsets[i] .. + out_lens[i])
   (offsets contiguous), RTMS_TLS_STATUS_* bits in status[i]. A failure of one
   connection does not touch the others; a NULL conns[i] gets STATUS_ERROR.
   Returns the plaintext bytes written in total (<= cap). */
int64_t rtms_tls_decrypt_batch(rtms_tls_conn *const *conns, const uint8_t *const *in,
                               const size_t *in_lens, size_t n, uint8_t *out, size_t cap,
                               size_t *out_offsets, size_t *out_lens, int32_t *status);

/* RTMS_CDEF_END */

/* ---- G.711: the decode tables, for embedding (C only; g711.c) ---------- */
/* The 256 reconstruction levels of A-law (mulaw == 0) or mu-law codes: one shared
 * constant table that many connections' decoders keep hot in cache. */
const int16_t *rtms_g711_decode_table(int mulaw);

/* ---- Resampler: the per-stream state, for embedding (C only) ------------ */
/* Most taps per output sample over all supported rate pairs (48 kHz -> 8 kHz needs 264);
 * rtms_resample_filter_new refuses a design that would exceed it. */
#define RTMS_RESAMPLER_MAX_TAPS 288
/* Input samples converted to float per inner block. */
#define RTMS_RESAMPLER_BLOCK 256
struct rtms_resampler {
    const struct rtms_resample_filter *filter;
    uint32_t phase; /* (k * M) mod L of the next output k */
    uint32_t pos;   /* input index of the next output, relative to the next input sample */
    /* taps - 1 samples of history, then one block of new input */
    float buf[RTMS_RESAMPLER_MAX_TAPS - 1 + RTMS_RESAMPLER_BLOCK];
};

/* ---- G.722: the codec states, for embedding (C only; g722.c) ----------- */
/* One ADPCM sub-band coder: scale factor and the block 4 predictor (2 poles,
 * 6 zeros). Every value fits 16 bits. Initialise with rtms_g722_*_init. */
typedef struct rtms_g722_band {
    int16_t s;      /* predictor output SL / SH for the next sample */
    int16_t sz;     /* its zero-section part SZL / SZH */
    int16_t r1, r2; /* sat16(2 * reconstructed signal), delayed 1 and 2 */
    int16_t p1, p2; /* partially reconstructed signal PLT / PH, delayed 1 and 2 */
    int16_t a1, a2; /* pole section coefficients */
    int16_t b[6];   /* zero section coefficients */
    int16_t d[6];   /* quantised difference signal, delayed 1..6 */
    int16_t nb;     /* log-domain scale factor NBL / NBH */
    int16_t det;    /* linear scale factor DETL / DETH */
} rtms_g722_band;

struct rtms_g722_encoder {
    rtms_g722_band low, high;
    int16_t qmf_x[22]; /* the last 22 input samples, oldest first */
};

struct rtms_g722_decoder {
    rtms_g722_band low, high;
    int16_t qmf_sum[11];  /* rl + rh of the last 11 octets, oldest first */
    int16_t qmf_diff[11]; /* rl - rh likewise */
    int16_t mode;         /* 1, 2 or 3 */
};

#ifdef __cplusplus
}
#endif

#endif /* RTMS_NATIVE_H */
