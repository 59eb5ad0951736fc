/*
 * sim_sender.c - the simulator's paced audio sender: every due audio frame of
 * every registered stream, formatted and sent in one call.
 *
 * The simulator sends one small message per session every 20 ms. Built in
 * Python, each message costs attribute lookups, bytes formatting and list
 * appends (about as much CPU as the kernel's send() itself). Here a stream is a
 * struct: the socket, the constant JSON prefix of each voice, a reference to a
 * shared table of base64 payloads by loop position, and the frame clock. One
 * sweep walks the streams of the due phases, works out which frames are due
 * (the same float arithmetic as the Python sweep, so frame counts, misses and
 * lags agree exactly), formats them into one scratch buffer and send()s them
 * without blocking. Anything but a complete send (a partial write, a would-
 * block, an error) and anything that does not fit the scratch buffer becomes
 * an event for the caller, and the stream is paused: the caller queues the rest
 * in its own buffer and takes the stream over until it is clean again.
 *
 * Memory: slots, tables and the scratch buffer are allocated at registration;
 * the sweep allocates nothing.
 */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* send(), ssize_t; must precede every system header */
#endif
#include "rtms_native.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
/* Not supported: rtms_sim_sender_new returns NULL and callers keep their own path. */
#define SENDER_SUPPORTED 0
static int64_t send_nonblocking(int fd, const uint8_t *data, size_t len)
{
    (void)fd; (void)data; (void)len;
    return -ENOSYS;
}
#else
#include <sys/socket.h>
#include <sys/types.h>
#define SENDER_SUPPORTED 1
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SIGPIPE is ignored by Python anyway */
#endif

/* Bytes the socket took (0 when it would block) or -errno. */
static int64_t send_nonblocking(int fd, const uint8_t *data, size_t len)
{
    ssize_t sent;
    do {
        sent = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent >= 0)
        return (int64_t)sent;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(int64_t)errno;
}
#endif

_Static_assert(RTMS_SIM_MAX_VOICES == 3, "rtms_sim_stream_params.voices has 3 entries");

/* between the base64 payload and the number; then "}}" closes content and message */
static const char TS_KEY[] = "\",\"timestamp\":";
#define TS_KEY_LEN (sizeof TS_KEY - 1)
#define MAX_DIGITS 20 /* an int64 with its sign */
#define MIN_SCRATCH 65536

typedef struct {
    uint8_t *data;
    uint32_t entry_len, n_entries;
    uint64_t step, loop_samples;
} sim_table;

typedef struct {
    uint32_t table;
    uint32_t prefix_len;
    uint64_t frame_offset;
    uint8_t prefix[RTMS_SIM_MAX_PREFIX];
} sim_voice;

typedef struct {
    int fd;
    uint8_t used, paused, first_byte, n_voices;
    uint32_t phase;
    double t0_s, period_s;
    int64_t period_ms, base_ms, next_index, total;
    uint64_t samples_per_frame;
    size_t max_frame_bytes; /* one frame of every voice, with the longest timestamp */
    sim_voice voices[RTMS_SIM_MAX_VOICES];
} sim_stream;

struct rtms_sim_sender {
    sim_stream *slots;
    uint32_t n_slots;     /* high-water mark: slots [0, n_slots) have been used */
    uint32_t cap_slots;
    uint32_t *free_slots; /* stack of unused slots below n_slots */
    uint32_t n_free;
    size_t n_used;
    sim_table *tables;
    uint32_t n_tables, cap_tables;
    rtms_sim_event *events; /* cap_slots entries: at most one per stream per sweep */
    uint8_t *scratch;
    size_t scratch_cap;
};

rtms_sim_sender *rtms_sim_sender_new(size_t scratch_bytes)
{
    if (!SENDER_SUPPORTED)
        return NULL;
    rtms_sim_sender *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->scratch_cap = scratch_bytes < MIN_SCRATCH ? MIN_SCRATCH : scratch_bytes;
    s->scratch = malloc(s->scratch_cap);
    if (s->scratch == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void rtms_sim_sender_free(rtms_sim_sender *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n_tables; i++)
        free(s->tables[i].data);
    free(s->tables);
    free(s->slots);
    free(s->free_slots);
    free(s->events);
    free(s->scratch);
    free(s);
}

int32_t rtms_sim_sender_add_table(rtms_sim_sender *s, const uint8_t *entries,
                                  uint32_t entry_len, uint32_t n_entries, uint64_t step,
                                  uint64_t loop_samples)
{
    if (s == NULL || entries == NULL || entry_len == 0 || n_entries == 0 || step == 0
        || loop_samples % step != 0 || loop_samples / step != n_entries
        || s->n_tables >= INT32_MAX)
        return RTMS_SIM_EARG;
    if (s->n_tables == s->cap_tables) {
        uint32_t cap = s->cap_tables ? 2 * s->cap_tables : 16;
        sim_table *t = realloc(s->tables, cap * sizeof *t);
        if (t == NULL)
            return RTMS_SIM_ENOMEM;
        s->tables = t;
        s->cap_tables = cap;
    }
    size_t bytes = (size_t)entry_len * n_entries;
    uint8_t *copy = malloc(bytes);
    if (copy == NULL)
        return RTMS_SIM_ENOMEM;
    memcpy(copy, entries, bytes);
    s->tables[s->n_tables] = (sim_table){copy, entry_len, n_entries, step, loop_samples};
    return (int32_t)s->n_tables++;
}

static int grow_slots(rtms_sim_sender *s)
{
    uint32_t cap = s->cap_slots ? 2 * s->cap_slots : 64;
    if (cap <= s->cap_slots)
        return RTMS_SIM_ENOMEM;
    sim_stream *slots = realloc(s->slots, cap * sizeof *slots);
    if (slots == NULL)
        return RTMS_SIM_ENOMEM;
    s->slots = slots;
    uint32_t *free_slots = realloc(s->free_slots, cap * sizeof *free_slots);
    if (free_slots == NULL)
        return RTMS_SIM_ENOMEM;
    s->free_slots = free_slots;
    rtms_sim_event *events = realloc(s->events, cap * sizeof *events);
    if (events == NULL)
        return RTMS_SIM_ENOMEM;
    s->events = events;
    s->cap_slots = cap;
    return 0;
}

static size_t ws_header_len(size_t body)
{
    return body < 126 ? 2 : body < 65536 ? 4 : 10;
}

int64_t rtms_sim_sender_add(rtms_sim_sender *s, const rtms_sim_stream_params *p)
{
    if (s == NULL || p == NULL || p->fd < 0 || p->phase >= 32 || p->opcode > 0xF
        || p->n_voices == 0 || p->n_voices > RTMS_SIM_MAX_VOICES || !(p->period_s > 0.0)
        || p->period_ms <= 0 || p->next_index < 0 || p->total < 0
        || p->samples_per_frame == 0)
        return RTMS_SIM_EARG;
    size_t frame_bytes = 0;
    for (uint32_t v = 0; v < p->n_voices; v++) {
        const rtms_sim_voice *voice = &p->voices[v];
        if (voice->table < 0 || (uint32_t)voice->table >= s->n_tables
            || voice->prefix_len > RTMS_SIM_MAX_PREFIX
            || (voice->prefix == NULL && voice->prefix_len > 0))
            return RTMS_SIM_EARG;
        const sim_table *t = &s->tables[voice->table];
        /* every frame must start on a table entry */
        if (p->samples_per_frame % t->step || voice->frame_offset % t->step)
            return RTMS_SIM_EARG;
        size_t body = voice->prefix_len + t->entry_len + TS_KEY_LEN + MAX_DIGITS + 2;
        frame_bytes += ws_header_len(body) + body;
    }
    if (s->n_free == 0 && s->n_slots == s->cap_slots && grow_slots(s) != 0)
        return RTMS_SIM_ENOMEM;
    uint32_t slot = s->n_free ? s->free_slots[--s->n_free] : s->n_slots++;
    sim_stream *st = &s->slots[slot];
    memset(st, 0, sizeof *st);
    st->fd = p->fd;
    st->used = 1;
    st->first_byte = (uint8_t)(0x80 | p->opcode);
    st->n_voices = (uint8_t)p->n_voices;
    st->phase = p->phase;
    st->t0_s = p->t0_s;
    st->period_s = p->period_s;
    st->period_ms = p->period_ms;
    st->base_ms = p->base_ms;
    st->next_index = p->next_index;
    st->total = p->total;
    st->samples_per_frame = p->samples_per_frame;
    st->max_frame_bytes = frame_bytes;
    for (uint32_t v = 0; v < p->n_voices; v++) {
        const rtms_sim_voice *voice = &p->voices[v];
        st->voices[v].table = (uint32_t)voice->table;
        st->voices[v].prefix_len = voice->prefix_len;
        st->voices[v].frame_offset = voice->frame_offset;
        if (voice->prefix_len)
            memcpy(st->voices[v].prefix, voice->prefix, voice->prefix_len);
    }
    s->n_used++;
    return slot;
}

static sim_stream *slot_at(const rtms_sim_sender *s, uint32_t slot)
{
    if (s == NULL || slot >= s->n_slots || !s->slots[slot].used)
        return NULL;
    return &s->slots[slot];
}

int64_t rtms_sim_sender_remove(rtms_sim_sender *s, uint32_t slot)
{
    sim_stream *st = slot_at(s, slot);
    if (st == NULL)
        return RTMS_SIM_EARG;
    st->used = 0;
    s->free_slots[s->n_free++] = slot;
    s->n_used--;
    return st->next_index;
}

int64_t rtms_sim_sender_next_index(const rtms_sim_sender *s, uint32_t slot)
{
    const sim_stream *st = slot_at(s, slot);
    return st == NULL ? RTMS_SIM_EARG : st->next_index;
}

size_t rtms_sim_sender_count(const rtms_sim_sender *s)
{
    return s == NULL ? 0 : s->n_used;
}

const rtms_sim_event *rtms_sim_sender_events(const rtms_sim_sender *s)
{
    return s == NULL ? NULL : s->events;
}

/* Decimal digits of v into buf (no terminator); returns the count. */
static size_t format_int64(int64_t v, uint8_t *buf)
{
    uint8_t tmp[MAX_DIGITS];
    size_t n = 0, out = 0;
    /* negate in unsigned arithmetic: INT64_MIN has no positive int64 */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (uint8_t)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[out++] = '-';
    while (n)
        buf[out++] = tmp[--n];
    return out;
}

/* Frames first..last of st into out, which has room for them (at most
   (last - first + 1) * max_frame_bytes). Returns the bytes written. */
static size_t format_frames(const rtms_sim_sender *s, const sim_stream *st, int64_t first,
                            int64_t last, uint8_t *out)
{
    uint8_t *p = out;
    for (int64_t k = first; k <= last; k++) {
        uint8_t digits[MAX_DIGITS];
        size_t n_digits = format_int64(st->base_ms + k * st->period_ms, digits);
        for (uint32_t v = 0; v < st->n_voices; v++) {
            const sim_voice *voice = &st->voices[v];
            const sim_table *t = &s->tables[voice->table];
            uint64_t pos = ((uint64_t)k * st->samples_per_frame + voice->frame_offset)
                           % t->loop_samples;
            const uint8_t *b64 = t->data + (size_t)(pos / t->step) * t->entry_len;
            size_t body = voice->prefix_len + t->entry_len + TS_KEY_LEN + n_digits + 2;
            *p++ = st->first_byte;
            if (body < 126) {
                *p++ = (uint8_t)body;
            } else if (body < 65536) {
                *p++ = 126;
                *p++ = (uint8_t)(body >> 8);
                *p++ = (uint8_t)body;
            } else {
                *p++ = 127;
                for (int shift = 56; shift >= 0; shift -= 8)
                    *p++ = (uint8_t)((uint64_t)body >> shift);
            }
            memcpy(p, voice->prefix, voice->prefix_len);
            p += voice->prefix_len;
            memcpy(p, b64, t->entry_len);
            p += t->entry_len;
            memcpy(p, TS_KEY, TS_KEY_LEN);
            p += TS_KEY_LEN;
            memcpy(p, digits, n_digits);
            p += n_digits;
            *p++ = '}';
            *p++ = '}';
        }
    }
    return (size_t)(p - out);
}

/* Exact bytes of frames first..last of st. */
static uint64_t frames_len(const rtms_sim_sender *s, const sim_stream *st, int64_t first,
                           int64_t last)
{
    uint64_t total = 0;
    for (int64_t k = first; k <= last; k++) {
        uint8_t digits[MAX_DIGITS];
        size_t n_digits = format_int64(st->base_ms + k * st->period_ms, digits);
        for (uint32_t v = 0; v < st->n_voices; v++) {
            const sim_voice *voice = &st->voices[v];
            size_t body = voice->prefix_len + s->tables[voice->table].entry_len + TS_KEY_LEN
                          + n_digits + 2;
            total += ws_header_len(body) + body;
        }
    }
    return total;
}

int64_t rtms_sim_sender_format(const rtms_sim_sender *s, uint32_t slot, int64_t first,
                               int64_t last, uint8_t *out, size_t cap)
{
    const sim_stream *st = slot_at(s, slot);
    if (st == NULL || out == NULL || first < 0 || last < first || last >= st->total)
        return RTMS_SIM_EARG;
    if (frames_len(s, st, first, last) > cap)
        return RTMS_SIM_ESPACE;
    return (int64_t)format_frames(s, st, first, last, out);
}

size_t rtms_sim_sender_sweep(rtms_sim_sender *s, double now_s, uint32_t phase_mask,
                             rtms_sim_sweep_result *out)
{
    size_t n_events = 0;
    double max_lag_s = out->max_lag_s;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        sim_stream *st = &s->slots[i];
        if (!st->used || st->paused || !((phase_mask >> st->phase) & 1u))
            continue;
        int64_t k = st->next_index;
        if (k >= st->total)
            continue;
        double period_s = st->period_s;
        /* the Python sweep's arithmetic, operation for operation (int() truncates) */
        int64_t due = (int64_t)((now_s - st->t0_s + 1e-9) / period_s);
        if (due > st->total - 1)
            due = st->total - 1;
        if (due < k)
            continue;
        uint64_t frames = (uint64_t)(due - k) + 1;
        if (frames > s->scratch_cap / st->max_frame_bytes) {
            st->paused = 1;
            s->events[n_events++] = (rtms_sim_event){i, RTMS_SIM_EV_TOO_BIG, k, due, 0, 0};
            continue;
        }
        size_t len = format_frames(s, st, k, due, s->scratch);
        int64_t sent = send_nonblocking(st->fd, s->scratch, len);
        out->sends++;
        if (sent < 0) {
            st->paused = 1;
            s->events[n_events++] = (rtms_sim_event){i, RTMS_SIM_EV_ERROR, k, due, sent, len};
        } else {
            out->bytes += (uint64_t)sent;
            if ((size_t)sent < len) {
                st->paused = 1;
                s->events[n_events++] = (rtms_sim_event){i, RTMS_SIM_EV_PARTIAL, k, due, sent,
                                                         len};
            }
        }
        /* frame j is late when now - (t0 + j * period) > period; the oldest frame of
           this batch is the latest */
        double lag = now_s - (st->t0_s + (double)k * period_s);
        if (lag > max_lag_s)
            max_lag_s = lag;
        if (lag > period_s + 1e-6) {
            int64_t last_late =
                (int64_t)ceil((now_s - st->t0_s - period_s - 1e-6) / period_s) - 1;
            int64_t late = (last_late < due ? last_late : due) - k + 1;
            if (late > 0)
                out->misses += (uint64_t)late;
        }
        out->frames += frames;
        out->messages += frames * st->n_voices;
        st->next_index = due + 1;
    }
    out->max_lag_s = max_lag_s;
    return n_events;
}
