/*
 * ingest.c - the batched ingest kernel: raw WebSocket bytes from many
 * connections in, decoded audio in per-participant rings out, in one call.
 *
 * Per frame: parse the header (ws_frame.c); control frames and non-audio
 * messages become records for Python; data frames are reassembled when
 * fragmented (a per-connection buffer); audio messages (msg_type 14) are
 * scanned (media_msg.c), their data base64-decoded (base64.c) into a
 * per-connection buffer, stripped of RTP (rtp.c) where negotiated, decoded
 * (L16, G.711) and written to the participant's ring (ring.c), straight into
 * the ring's memory when the reservation allows. After creation, memory is
 * allocated only for a participant's first message (its slot and ring) and
 * when a message is larger than any before it on the connection (scratch
 * grows, at least doubling, up to max_message_bytes): never per message.
 *
 * Nothing here reads outside the caller's buffers or its own, allocates per
 * message, or stops for bad input: a malformed message becomes an error
 * record and a counter; a framing error fails that connection only.
 */
#include "rtms_native.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define INGEST_CHUNK 512    /* samples per pass through the stack buffers */
#define INGEST_KEY_MAX 64
#define INGEST_CONTROL_MAX 125

typedef struct ingest_slot {
    uint32_t key_kind;
    uint32_t key_len;
    int64_t user_id;
    uint64_t key_hash;
    uint8_t key[INGEST_KEY_MAX];
    rtms_ring *ring;
    rtms_rtp_seq seq;
    int64_t last_timestamp_ms;
    uint64_t position_at_last_timestamp;
    uint64_t last_frame_ms;
    uint64_t items_produced;
    uint64_t silence_items;
    uint64_t messages;
    rtms_resampler resampler[2];    /* one per channel, used when the rates differ */
    rtms_g722_decoder g722;
} ingest_slot;

struct rtms_ingest_conn {
    /* Hot first: the lines a message touches come first, so a batch can prefetch a
       connection's state as one run while it works on the one before (see
       rtms_ingest_batch); the control frame copy and stats.errors[] come last. */
    rtms_ingest_config cfg;
    /* G.711 expansion of every code: the shared constant table (one per process, so a
       sweep over many connections keeps it in cache instead of a copy per connection) */
    const int16_t *g711_table;
    int expected_pt;
    size_t item_size;
    /* framing */
    int failed;                  /* RTMS_ERR_* once the byte stream is unusable */
    int in_message;
    int message_opcode;
    uint8_t *reassembly;         /* grown on demand (see grow), up to max_message_bytes */
    size_t reassembly_cap;
    size_t reassembly_len;
    /* decoded base64 */
    uint8_t *raw;
    size_t raw_cap;
    /* resampling (rates differ): one shared filter; scratch grown with the messages */
    rtms_resample_filter *filter;
    size_t max_samples;          /* decoded samples the scratch holds now */
    size_t out_cap;              /* resampled items one channel of a message can make */
    int16_t *pcm;                /* decoded samples, channels split */
    float *pcm_f;                /* the same as float, for float output */
    uint8_t *out;                /* resampled items per channel, then interleaved */
    /* participants */
    ingest_slot **slots;
    uint32_t slot_count;
    int32_t *table;
    uint32_t table_mask;
    /* The last audio message's participant (most messages on a connection come from
       the same one: checked before the table) and where the next message will most
       likely touch memory: its ring's next items and the decoded-base64 bytes. */
    ingest_slot *last_slot;
    rtms_ring *last_ring;        /* last_slot->ring, to fetch without loading last_slot */
    int32_t last_slot_index;
    uint32_t last_raw_bytes;
    const uint8_t *next_write;
    size_t next_write_bytes;
    rtms_ingest_stats stats;
    uint8_t control[INGEST_CONTROL_MAX];
};

/* ---- scratch growth ---------------------------------------------------- */

/* Message scratch (reassembly, decoded base64, resampler areas) starts empty and grows
   to the largest message seen, at least doubling, so an idle connection holds none of
   it and a stream of equal messages allocates once. A buffer reserved at its maximum
   (max_message_bytes, 16 MiB by default) would cost every connection resident pages
   for the allocator's headers and a mapping each. */
#define SCRATCH_MIN 4096u

static int grow(void **buf, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    size_t want = *cap * 2;
    if (want < need)
        want = need;
    if (want < SCRATCH_MIN / item)
        want = SCRATCH_MIN / item;
    if (want > SIZE_MAX / item)
        return -RTMS_ERR_NO_MEMORY;
    void *p = realloc(*buf, want * item);
    if (p == NULL)
        return -RTMS_ERR_NO_MEMORY;
    *buf = p;
    *cap = want;
    return 0;
}

/* Resampler scratch for a message of n decoded samples. */
static int grow_resample_scratch(rtms_ingest_conn *c, size_t n)
{
    if (n <= c->max_samples)
        return 0;
    size_t want = c->max_samples * 2 > n ? c->max_samples * 2 : n;
    size_t ch = (size_t)c->cfg.channels;
    size_t out_cap = rtms_resample_max_output(c->filter, want / ch + 1) + 1;
    size_t pcm_cap = c->max_samples, pcm_f_cap = c->max_samples;
    size_t out_items = 2 * ch * c->out_cap;
    int r = grow((void **)&c->pcm, &pcm_cap, want, sizeof *c->pcm);
    if (r == 0)
        r = grow((void **)&c->pcm_f, &pcm_f_cap, want, sizeof *c->pcm_f);
    if (r == 0)
        r = grow((void **)&c->out, &out_items, 2 * ch * out_cap, c->item_size);
    if (r < 0)
        return r;
    /* every area holds at least want samples now (grow may have given more) */
    c->max_samples = want;
    c->out_cap = out_cap;
    return 0;
}

/* ---- connection lifetime ---------------------------------------------- */

static int codec_supported(const rtms_ingest_config *cfg)
{
    switch (cfg->codec) {
    case RTMS_CODEC_L16:
    case RTMS_CODEC_PCMA:
    case RTMS_CODEC_PCMU:
        return 1;
    case RTMS_CODEC_G722:
        return cfg->channels == 1 && cfg->input_rate_hz == 16000;
    default:
        return 0;
    }
}

static int static_payload_type(int codec)
{
    switch (codec) {
    case RTMS_CODEC_PCMA: return 8;
    case RTMS_CODEC_PCMU: return 0;
    case RTMS_CODEC_G722: return 9;
    default: return -1;
    }
}

rtms_ingest_conn *rtms_ingest_conn_new(const rtms_ingest_config *cfg, int *error)
{
    int dummy;
    if (error == NULL)
        error = &dummy;
    *error = -1;
    if (cfg == NULL || cfg->channels < 1 || cfg->channels > 2 || cfg->input_rate_hz < 1000 ||
        cfg->input_rate_hz > 192000 || cfg->output_rate_hz < 1000 ||
        cfg->output_rate_hz > 192000 || cfg->max_message_bytes < 16 ||
        cfg->max_message_bytes > (UINT64_C(1) << 30) || cfg->ring_capacity_items == 0 ||
        (cfg->sample_format != RTMS_SAMPLE_INT16 && cfg->sample_format != RTMS_SAMPLE_FLOAT32) ||
        (cfg->content_type != RTMS_CONTENT_RTP && cfg->content_type != RTMS_CONTENT_RAW) ||
        cfg->ring_policy < 0 || cfg->ring_policy > 2 || cfg->rtp_payload_type > 127 ||
        (!cfg->mixed && (cfg->max_participants < 1 || cfg->max_participants > (1 << 20))))
        return NULL;
    if (!codec_supported(cfg)) {
        *error = -RTMS_ERR_INGEST_CODEC;
        return NULL;
    }
    *error = -2;
    rtms_ingest_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->cfg = *cfg;
    if (c->cfg.mixed)
        c->cfg.max_participants = 1;
    c->expected_pt = cfg->rtp_payload_type >= 0 ? cfg->rtp_payload_type
                                                 : static_payload_type(cfg->codec);
    c->item_size = cfg->sample_format == RTMS_SAMPLE_FLOAT32 ? 4 : 2;
    c->g711_table = rtms_g711_decode_table(cfg->codec == RTMS_CODEC_PCMU);
    uint32_t table_size = 4;
    while (table_size < 2u * (uint32_t)c->cfg.max_participants)
        table_size <<= 1;
    c->table_mask = table_size - 1;
    c->slots = calloc((size_t)c->cfg.max_participants, sizeof *c->slots);
    c->table = malloc(table_size * sizeof *c->table);
    if (c->slots == NULL || c->table == NULL) {
        rtms_ingest_conn_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < table_size; i++)
        c->table[i] = -1;
    if (cfg->input_rate_hz != cfg->output_rate_hz) {
        c->filter = rtms_resample_filter_new((uint32_t)cfg->input_rate_hz,
                                             (uint32_t)cfg->output_rate_hz);
        if (c->filter == NULL) {
            rtms_ingest_conn_free(c);
            *error = -RTMS_ERR_INGEST_CODEC;
            return NULL;
        }
    }
    *error = 0;
    return c;
}

void rtms_ingest_conn_free(rtms_ingest_conn *c)
{
    if (c == NULL)
        return;
    if (c->slots) {
        for (uint32_t i = 0; i < c->slot_count; i++) {
            if (c->slots[i]) {
                rtms_ring_release(c->slots[i]->ring);
                free(c->slots[i]);
            }
        }
    }
    free(c->slots);
    free(c->table);
    free(c->pcm);
    free(c->pcm_f);
    free(c->out);
    rtms_resample_filter_free(c->filter);
    free(c->raw);
    free(c->reassembly);
    free(c);
}

void rtms_ingest_conn_reset(rtms_ingest_conn *c)
{
    c->failed = 0;
    c->in_message = 0;
    c->reassembly_len = 0;
}

const uint8_t *rtms_ingest_conn_reassembly(const rtms_ingest_conn *c) { return c->reassembly; }
const uint8_t *rtms_ingest_conn_control(const rtms_ingest_conn *c) { return c->control; }

void rtms_ingest_conn_stats(const rtms_ingest_conn *c, rtms_ingest_stats *out) { *out = c->stats; }

uint32_t rtms_ingest_conn_slot_count(const rtms_ingest_conn *c) { return c->slot_count; }

int rtms_ingest_slot_get_info(const rtms_ingest_conn *c, uint32_t slot, rtms_ingest_slot_info *out)
{
    if (slot >= c->slot_count)
        return -1;
    const ingest_slot *s = c->slots[slot];
    memset(out, 0, sizeof *out);
    out->key_kind = s->key_kind;
    out->key_len = s->key_len;
    out->user_id = s->user_id;
    memcpy(out->key, s->key, sizeof out->key);
    out->last_timestamp_ms = s->last_timestamp_ms;
    out->position_at_last_timestamp = s->position_at_last_timestamp;
    out->items_produced = s->items_produced;
    out->silence_items = s->silence_items;
    out->messages = s->messages;
    out->rtp_lost = s->seq.lost;
    out->rtp_late = s->seq.late;
    out->rtp_duplicate = s->seq.duplicate;
    return 0;
}

rtms_ring *rtms_ingest_slot_ring(const rtms_ingest_conn *c, uint32_t slot)
{
    return slot < c->slot_count ? c->slots[slot]->ring : NULL;
}

/* ---- records ------------------------------------------------------------ */

typedef struct batch_out {
    rtms_ingest_record *records;
    size_t max_records;
    size_t count;
    uint32_t conn_index;
    int stop_conn;               /* a record points into a connection buffer */
} batch_out;

static rtms_ingest_record *new_record(batch_out *b, int kind, int flags)
{
    rtms_ingest_record *r = &b->records[b->count++];
    memset(r, 0, sizeof *r);
    r->conn = b->conn_index;
    r->kind = (uint16_t)kind;
    r->flags = (uint16_t)flags;
    r->msg_type = -1;
    r->slot = -1;
    if (flags & (RTMS_REC_IN_REASSEMBLY | RTMS_REC_IN_CONTROL))
        b->stop_conn = 1;
    return r;
}

static void count_error(rtms_ingest_conn *c, int code)
{
    c->stats.errors_total++;
    if (code > 0 && code < RTMS_ERR_COUNT)
        c->stats.errors[code]++;
}

/* ---- participants --------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return mix64(h);
}

/* Find the slot for the message's key, creating it (and its ring) when new.
   Returns the slot index or -RTMS_ERR_*. */
static int32_t find_slot(rtms_ingest_conn *c, const uint8_t *msg, const rtms_media_msg *m,
                         uint64_t base_off, int flags, batch_out *b)
{
    uint32_t key_kind = c->cfg.mixed ? 0 : m->key_kind;
    uint8_t key[INGEST_KEY_MAX];
    size_t key_len = 0;
    uint64_t h;
    const ingest_slot *last = c->last_slot;
    if (key_kind == 1 && last != NULL && last->key_kind == 1 && last->user_id == m->user_id)
        return c->last_slot_index; /* the same speaker as the last message */
    if (key_kind == 2) {
        if (m->channel_escaped) {
            int64_t r = rtms_json_unescape(msg + m->channel_off, m->channel_len, key, sizeof key);
            if (r < 0)
                return r == -RTMS_ERR_SPACE ? -RTMS_ERR_MSG_KEY_TOO_LONG : (int32_t)r;
            key_len = (size_t)r;
        } else {
            if (m->channel_len > sizeof key)
                return -RTMS_ERR_MSG_KEY_TOO_LONG;
            key_len = m->channel_len;
            memcpy(key, msg + m->channel_off, key_len);
        }
        if (last != NULL && last->key_kind == 2 && last->key_len == key_len &&
            memcmp(last->key, key, key_len) == 0)
            return c->last_slot_index;
        h = hash_bytes(key, key_len);
    } else if (key_kind == 1) {
        h = mix64((uint64_t)m->user_id);
    } else {
        h = 0;
    }
    uint32_t i = (uint32_t)h & c->table_mask;
    for (;;) {
        int32_t idx = c->table[i];
        if (idx < 0)
            break;
        const ingest_slot *s = c->slots[idx];
        if (s->key_hash == h && s->key_kind == key_kind &&
            (key_kind == 1 ? s->user_id == m->user_id
                           : (s->key_len == key_len && memcmp(s->key, key, key_len) == 0)))
            return idx;
        i = (i + 1) & c->table_mask;
    }
    /* a new participant */
    if (c->slot_count >= (uint32_t)c->cfg.max_participants) {
        c->stats.slots_refused++;
        return -RTMS_ERR_INGEST_SLOTS_FULL;
    }
    rtms_ring *ring = rtms_ring_new(c->cfg.ring_capacity_items, c->item_size, c->cfg.ring_policy,
                                    c->cfg.budget);
    if (ring == NULL) {
        c->stats.slots_refused++;
        return -RTMS_ERR_INGEST_BUDGET;
    }
    ingest_slot *s = calloc(1, sizeof *s);
    if (s == NULL) {
        rtms_ring_release(ring);
        c->stats.slots_refused++;
        return -RTMS_ERR_INGEST_BUDGET;
    }
    s->key_kind = key_kind;
    s->key_len = (uint32_t)key_len;
    s->user_id = key_kind == 1 ? m->user_id : 0;
    s->key_hash = h;
    memcpy(s->key, key, key_len);
    s->ring = ring;
    s->last_timestamp_ms = -1;
    rtms_rtp_seq_init(&s->seq);
    if (c->filter) {
        rtms_resampler_init(&s->resampler[0], c->filter);
        rtms_resampler_init(&s->resampler[1], c->filter);
    }
    if (c->cfg.codec == RTMS_CODEC_G722)
        rtms_g722_decoder_init(&s->g722, 1);
    int32_t idx = (int32_t)c->slot_count++;
    c->slots[idx] = s;
    c->table[i] = idx;
    c->stats.slots_created++;
    rtms_ingest_record *r = new_record(b, RTMS_REC_NEW_PARTICIPANT, flags);
    r->msg_type = m->msg_type;
    r->slot = idx;
    r->key_kind = key_kind;
    r->user_id = s->user_id;
    r->timestamp_ms = m->timestamp_ms;
    if (m->has_name) {
        r->name_offset = base_off + m->name_off;
        r->name_length = m->name_len;
        if (m->name_escaped)
            r->flags |= RTMS_REC_NAME_ESCAPED;
    }
    if (key_kind == 2) {
        /* the channel_id travels in offset/length (still escaped if it was) */
        r->offset = base_off + m->channel_off;
        r->length = m->channel_len;
    }
    return idx;
}

/* ---- audio ------------------------------------------------------------------ */

/* Decode n samples (n even for G.722: one octet holds two) from src. */
static void decode_samples(const rtms_ingest_conn *c, ingest_slot *s, const uint8_t *src,
                           size_t n, int16_t *dst)
{
    switch (c->cfg.codec) {
    case RTMS_CODEC_PCMA:
    case RTMS_CODEC_PCMU:
        /* the connection's table holds rtms_alaw_decode / rtms_ulaw_decode of every code */
        for (size_t i = 0; i < n; i++)
            dst[i] = c->g711_table[src[i]];
        break;
    case RTMS_CODEC_G722:
        rtms_g722_decode(&s->g722, src, n / 2, dst);
        break;
    default: /* L16: little-endian on the wire */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(dst, src, n * 2);
#else
        for (size_t i = 0; i < n; i++)
            dst[i] = (int16_t)(uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
#endif
        break;
    }
}

/* Payload bytes that hold `samples` samples. */
static size_t payload_bytes(int codec, size_t samples)
{
    switch (codec) {
    case RTMS_CODEC_L16: return samples * 2;
    case RTMS_CODEC_G722: return samples / 2;
    default: return samples;
    }
}

/* Samples in a payload of `bytes` bytes, or SIZE_MAX when it is not whole frames. */
static size_t payload_samples(int codec, size_t bytes, size_t channels)
{
    switch (codec) {
    case RTMS_CODEC_L16:
        return bytes % (2 * channels) ? SIZE_MAX : bytes / 2;
    case RTMS_CODEC_G722:
        return bytes * 2;
    default:
        return bytes % channels ? SIZE_MAX : bytes;
    }
}

static void to_float(const int16_t *src, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i] * (1.0f / 32768.0f);
}

/* Space for n items in the ring, or NULL when the policy could refuse some. */
static void *reserve_all(rtms_ingest_conn *c, ingest_slot *s, size_t n)
{
    size_t capacity = rtms_ring_capacity(s->ring);
    if (n <= capacity && (c->cfg.ring_policy == RTMS_RING_DROP_OLDEST ||
                          n <= capacity - rtms_ring_readable(s->ring)))
        return rtms_ring_reserve(s->ring, n);
    return NULL;
}

/* Decode n samples from payload and offer them to the slot's ring. */
static void write_audio(rtms_ingest_conn *c, ingest_slot *s, const uint8_t *payload, size_t n)
{
    int codec = c->cfg.codec;
    /* Reserve only when it cannot be refused: a refused reservation is
       counted by the ring, and the chunked path below would count again. */
    void *dst = reserve_all(c, s, n);
    size_t accepted = 0;
    if (dst != NULL) {
        if (c->cfg.sample_format == RTMS_SAMPLE_INT16) {
            decode_samples(c, s, payload, n, dst);
        } else {
            int16_t tmp[INGEST_CHUNK];
            float *f = dst;
            for (size_t done = 0; done < n;) {
                size_t k = n - done < INGEST_CHUNK ? n - done : INGEST_CHUNK;
                decode_samples(c, s, payload + payload_bytes(codec, done), k, tmp);
                to_float(tmp, k, f + done);
                done += k;
            }
        }
        rtms_ring_commit(s->ring, n);
        accepted = n;
    } else {
        /* refused as one run: write in chunks so the ring keeps what its policy allows */
        int16_t tmp[INGEST_CHUNK];
        float ftmp[INGEST_CHUNK];
        for (size_t done = 0; done < n;) {
            size_t k = n - done < INGEST_CHUNK ? n - done : INGEST_CHUNK;
            decode_samples(c, s, payload + payload_bytes(codec, done), k, tmp);
            size_t got;
            if (c->cfg.sample_format == RTMS_SAMPLE_INT16) {
                got = rtms_ring_write(s->ring, tmp, k);
            } else {
                to_float(tmp, k, ftmp);
                got = rtms_ring_write(s->ring, ftmp, k);
            }
            /* keep going when refused: the ring counts every refused item, and a
               G.722 decoder must see every octet to stay in step */
            accepted += got;
            done += k;
        }
    }
    c->stats.samples_out += n;
    c->stats.ring_dropped += n - accepted;
    s->items_produced += n;
}

/* The rates differ: decode all n samples, resample each channel, write. */
static void write_resampled(rtms_ingest_conn *c, ingest_slot *s, const uint8_t *payload, size_t n)
{
    size_t ch = (size_t)c->cfg.channels;
    size_t frames = n / ch;
    size_t isz = c->item_size;
    int is_float = c->cfg.sample_format == RTMS_SAMPLE_FLOAT32;
    int16_t *pcm = c->pcm;
    if (ch == 1) {
        decode_samples(c, s, payload, n, pcm);
    } else {
        /* split the channels: channel k at pcm + k * frames (pcm_f is free scratch here) */
        int16_t *tmp = (int16_t *)(void *)c->pcm_f;
        decode_samples(c, s, payload, n, tmp);
        for (size_t i = 0; i < frames; i++) {
            pcm[i] = tmp[2 * i];
            pcm[frames + i] = tmp[2 * i + 1];
        }
    }
    if (is_float)
        to_float(pcm, n, c->pcm_f);
    /* Resampled output goes through scratch sized for any state (max_output), then
       one ring write: the copy is small next to the filter, and the count the
       resampler returns is the only one trusted. */
    size_t made = SIZE_MAX;
    for (size_t k = 0; k < ch; k++) {
        uint8_t *o = c->out + k * c->out_cap * isz;
        ptrdiff_t got = is_float
            ? rtms_resampler_process_f32(&s->resampler[k], c->pcm_f + k * frames, frames,
                                         (float *)(void *)o, c->out_cap)
            : rtms_resampler_process_i16(&s->resampler[k], pcm + k * frames, frames,
                                         (int16_t *)(void *)o, c->out_cap);
        size_t g = got < 0 ? 0 : (size_t)got;
        made = g < made ? g : made;
    }
    uint8_t *inter = c->out;
    if (ch > 1) {
        /* interleave the two channel areas into the area after them */
        inter = c->out + 2 * c->out_cap * isz;
        for (size_t i = 0; i < made; i++) {
            memcpy(inter + (2 * i) * isz, c->out + i * isz, isz);
            memcpy(inter + (2 * i + 1) * isz, c->out + (c->out_cap + i) * isz, isz);
        }
    }
    size_t total = made * ch;
    size_t accepted = total ? rtms_ring_write(s->ring, inter, total) : 0;
    c->stats.samples_out += total;
    c->stats.ring_dropped += total - accepted;
    s->items_produced += total;
}

static void write_silence(rtms_ingest_conn *c, ingest_slot *s, size_t n)
{
    size_t got = rtms_ring_write_silence(s->ring, n);
    c->stats.samples_out += n;
    c->stats.silence_samples += n;
    c->stats.ring_dropped += n - got;
    c->stats.gaps_filled++;
    s->items_produced += n;
    s->silence_items += n;
}

/* One complete data message at msg[0..len); base_off locates it for records. */
static void handle_message(rtms_ingest_conn *c, const uint8_t *msg, size_t len, uint64_t base_off,
                           int opcode, int flags, batch_out *b)
{
    rtms_media_msg m;
    c->stats.messages++;
    int r = rtms_media_msg_scan(msg, len, c->cfg.mixed ? 3 : 2, &m);
    if (m.msg_type != 14) {
        rtms_ingest_record *rec = new_record(b, RTMS_REC_MESSAGE, flags);
        rec->msg_type = m.msg_type;
        rec->opcode = opcode;
        rec->offset = base_off;
        rec->length = len;
        rec->error = r < 0 ? -r : 0;
        c->stats.other_messages++;
        return;
    }
    c->stats.audio_messages++;
    int32_t slot_idx = -1;
    ingest_slot *s = NULL;
    if (r == 0) {
        slot_idx = find_slot(c, msg, &m, base_off, flags, b);
        if (slot_idx < 0)
            r = slot_idx;
        else {
            s = c->slots[slot_idx];
            c->last_slot = s;
            c->last_ring = s->ring;
            c->last_slot_index = slot_idx;
        }
    }
    size_t raw_len = 0;
    if (r == 0) {
        r = grow((void **)&c->raw, &c->raw_cap, rtms_b64_decoded_max(m.data_len), 1);
        int64_t d = r < 0 ? r : rtms_b64_decode(msg + m.data_off, m.data_len, c->raw,
                                                c->raw_cap);
        if (d < 0)
            r = (int)d;
        else
            raw_len = (size_t)d;
        c->last_raw_bytes = (uint32_t)raw_len;
    }
    const uint8_t *payload = c->raw;
    size_t payload_len = raw_len;
    int64_t lost = 0;
    if (r == 0 && c->cfg.content_type == RTMS_CONTENT_RTP) {
        rtms_rtp_header h;
        r = rtms_rtp_parse(c->raw, raw_len, c->expected_pt, &h);
        if (r == 0) {
            payload = c->raw + h.payload_off;
            payload_len = h.payload_len;
            uint64_t resync_before = s->seq.resync;
            lost = rtms_rtp_seq_update(&s->seq, h.sequence, 0xFFFFFFFFu);
            c->stats.rtp_resync += s->seq.resync - resync_before;
            if (lost == -RTMS_ERR_RTP_LATE) {
                c->stats.rtp_late++;
                return; /* counted drop, not a malformed message */
            }
            if (lost == -RTMS_ERR_RTP_DUPLICATE) {
                c->stats.rtp_duplicate++;
                return;
            }
        }
    }
    size_t n = 0;
    if (r == 0) {
        n = payload_samples(c->cfg.codec, payload_len, (size_t)c->cfg.channels);
        if (n == SIZE_MAX)
            r = -RTMS_ERR_INGEST_AUDIO_LENGTH;
        else if (c->filter != NULL)
            r = grow_resample_scratch(c, n);
    }
    if (r < 0) {
        int code = -r;
        count_error(c, code);
        c->stats.message_errors++;
        rtms_ingest_record *rec = new_record(b, RTMS_REC_ERROR, flags);
        rec->msg_type = 14;
        rec->opcode = opcode;
        rec->error = code;
        rec->slot = slot_idx;
        rec->offset = base_off;
        rec->length = len;
        rec->user_id = m.user_id;
        rec->timestamp_ms = m.timestamp_ms;
        return;
    }
    uint64_t in_rate = (uint64_t)c->cfg.input_rate_hz * (uint64_t)c->cfg.channels;
    uint64_t out_rate = (uint64_t)c->cfg.output_rate_hz * (uint64_t)c->cfg.channels;
    uint64_t frame_ms = (uint64_t)n * 1000 / in_rate;
    uint64_t frame_items_out = (uint64_t)n * out_rate / in_rate;
    uint64_t cap = c->cfg.ring_capacity_items;
    uint64_t max_gap_items = (uint64_t)c->cfg.max_gap_ms * out_rate / 1000;
    if (max_gap_items > cap)
        max_gap_items = cap;
    if (c->cfg.fill_gaps) {
        uint64_t fill = 0;
        if (c->cfg.content_type == RTMS_CONTENT_RTP) {
            if (lost > 0) {
                fill = (uint64_t)lost * frame_items_out;
                c->stats.rtp_lost += (uint64_t)lost;
            }
        } else if (s->last_timestamp_ms >= 0 && s->last_frame_ms > 0 &&
                   m.timestamp_ms > s->last_timestamp_ms) {
            /* whole frames missing between the last message's end and this one;
               a shorter difference is sender jitter, not a gap */
            uint64_t expected = (uint64_t)s->last_timestamp_ms + s->last_frame_ms;
            uint64_t ts = (uint64_t)m.timestamp_ms;
            if (ts > expected && ts - expected >= s->last_frame_ms) {
                uint64_t gap_ms = ts - expected;
                if (gap_ms > c->cfg.max_gap_ms) {
                    fill = UINT64_MAX; /* counted below, never written */
                } else {
                    uint64_t frames = (gap_ms + s->last_frame_ms / 2) / s->last_frame_ms;
                    fill = frames * s->last_frame_ms * out_rate / 1000;
                }
            }
        }
        if (fill > max_gap_items) {
            c->stats.gaps_too_long++;
            fill = 0;
        }
        if (fill)
            write_silence(c, s, (size_t)fill);
    } else if (lost > 0) {
        c->stats.rtp_lost += (uint64_t)lost;
    }
    s->position_at_last_timestamp = s->items_produced;
    s->last_timestamp_ms = m.timestamp_ms;
    s->last_frame_ms = frame_ms;
    s->messages++;
    if (n && c->filter)
        write_resampled(c, s, payload, n);
    else if (n)
        write_audio(c, s, payload, n);
    c->next_write = rtms_ring_next_write(s->ring);
    c->next_write_bytes = (size_t)frame_items_out * c->item_size;
    c->stats.audio_ingested++;
}

/* ---- framing ------------------------------------------------------------------ */

static void fail_conn(rtms_ingest_conn *c, int code, uint64_t off, uint64_t len, batch_out *b)
{
    c->failed = code;
    count_error(c, code);
    rtms_ingest_record *rec = new_record(b, RTMS_REC_ERROR, RTMS_REC_FATAL);
    rec->error = code;
    rec->offset = off;
    rec->length = len;
}

/* Returns the bytes consumed; *full = 1 when it stopped for lack of records,
   2 when it stopped after a record that points into a connection buffer. */
static size_t ingest_conn(rtms_ingest_conn *c, const uint8_t *buf, size_t len, batch_out *b,
                          int *full)
{
    size_t pos = 0;
    b->stop_conn = 0;
    if (c->failed) {
        if (len == 0)
            return 0;
        if (b->max_records - b->count < 1) {
            *full = 1;
            return 0;
        }
        fail_conn(c, RTMS_ERR_WS_CONNECTION_FAILED, 0, len, b);
        c->failed = RTMS_ERR_WS_CONNECTION_FAILED;
        c->stats.bytes_consumed += len;
        return len;
    }
    while (pos < len && !b->stop_conn) {
        if (b->max_records - b->count < 2) {
            *full = 1;
            break;
        }
        rtms_ws_frame f;
        int hl = rtms_ws_parse_header(buf + pos, len - pos, c->cfg.max_message_bytes,
                                      c->cfg.allow_masked, &f);
        if (hl == 0)
            break;
        if (hl < 0) {
            fail_conn(c, -hl, pos, len - pos, b);
            pos = len;
            break;
        }
        if (f.payload_len > len - pos - (size_t)hl)
            break; /* the payload has not all arrived */
        size_t plen = (size_t)f.payload_len;
        size_t poff = pos + (size_t)hl;
        const uint8_t *payload = buf + poff;
        c->stats.frames++;
        if (f.opcode >= 8) {
            c->stats.control_frames++;
            int flags = 0;
            uint64_t off = poff;
            if (f.masked) {
                memcpy(c->control, payload, plen);
                rtms_ws_unmask(c->control, plen, f.mask_key, 0);
                flags = RTMS_REC_IN_CONTROL;
                off = 0;
            }
            rtms_ingest_record *rec = new_record(b, RTMS_REC_CONTROL, flags);
            rec->opcode = f.opcode;
            rec->offset = off;
            rec->length = plen;
        } else if (f.opcode != 0) {
            if (c->in_message) {
                fail_conn(c, RTMS_ERR_WS_EXPECTED_CONTINUATION, pos, len - pos, b);
                pos = len;
                break;
            }
            if (f.fin && !f.masked) {
                handle_message(c, payload, plen, poff, f.opcode, 0, b);
            } else {
                if (grow((void **)&c->reassembly, &c->reassembly_cap, plen, 1) < 0) {
                    fail_conn(c, RTMS_ERR_NO_MEMORY, pos, len - pos, b);
                    pos = len;
                    break;
                }
                memcpy(c->reassembly, payload, plen);
                if (f.masked)
                    rtms_ws_unmask(c->reassembly, plen, f.mask_key, 0);
                c->reassembly_len = plen;
                c->message_opcode = f.opcode;
                if (f.fin) {
                    handle_message(c, c->reassembly, plen, 0, f.opcode, RTMS_REC_IN_REASSEMBLY, b);
                    c->reassembly_len = 0;
                } else {
                    c->in_message = 1;
                }
            }
        } else {
            if (!c->in_message) {
                fail_conn(c, RTMS_ERR_WS_UNEXPECTED_CONTINUATION, pos, len - pos, b);
                pos = len;
                break;
            }
            if (plen > c->cfg.max_message_bytes - c->reassembly_len) {
                fail_conn(c, RTMS_ERR_WS_TOO_BIG, pos, len - pos, b);
                pos = len;
                break;
            }
            if (grow((void **)&c->reassembly, &c->reassembly_cap, c->reassembly_len + plen,
                     1) < 0) {
                fail_conn(c, RTMS_ERR_NO_MEMORY, pos, len - pos, b);
                pos = len;
                break;
            }
            memcpy(c->reassembly + c->reassembly_len, payload, plen);
            if (f.masked)
                rtms_ws_unmask(c->reassembly + c->reassembly_len, plen, f.mask_key, 0);
            c->reassembly_len += plen;
            if (f.fin) {
                c->in_message = 0;
                handle_message(c, c->reassembly, c->reassembly_len, 0, c->message_opcode,
                               RTMS_REC_IN_REASSEMBLY, b);
                c->reassembly_len = 0;
            }
        }
        pos = poff + plen;
    }
    if (b->stop_conn && pos < len)
        *full = 2; /* more complete frames may follow: call again */
    c->stats.bytes_consumed += pos;
    return pos;
}

/* ---- the batch ------------------------------------------------------------------ */

/* A sweep hands the batch one input per socket, and between two sweeps the rest of
   the process (and the kernel's copies into the arena) evicts each connection's
   state: every input would start with a run of cache misses, one after another as
   each pointer is followed. Instead the batch fetches ahead, in two stages, so the
   misses of the next inputs overlap the work on this one: two inputs ahead the
   connection's hot lines, one input ahead what they point at (its last participant,
   that participant's ring and next ring items, the decoded-base64 buffer, the input
   bytes). Hints only: a wrong guess costs a wasted fetch, never a wrong result. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p, write) __builtin_prefetch((p), (write), 3)
#else
#define PREFETCH(p, write) ((void)(p))
#endif
#define PREFETCH_LINE 64
#define PREFETCH_MAX_BYTES 1024 /* beyond it the hardware's stream prefetcher takes over */

static void prefetch_bytes(const void *p, size_t bytes, int write)
{
    if (p == NULL || bytes == 0)
        return;
    if (bytes > PREFETCH_MAX_BYTES)
        bytes = PREFETCH_MAX_BYTES;
    uintptr_t at = (uintptr_t)p & ~(uintptr_t)(PREFETCH_LINE - 1);
    uintptr_t end = (uintptr_t)p + bytes;
    for (; at < end; at += PREFETCH_LINE) {
        if (write)
            PREFETCH((const void *)at, 1);
        else
            PREFETCH((const void *)at, 0);
    }
}

static void prefetch_conn(const rtms_ingest_conn *c)
{
    prefetch_bytes(c, offsetof(rtms_ingest_conn, stats) + offsetof(rtms_ingest_stats, errors), 1);
}

static void prefetch_targets(const rtms_ingest_conn *c, const uint8_t *buf, size_t len)
{
    prefetch_bytes(buf, len < 4 * PREFETCH_LINE ? len : 4 * PREFETCH_LINE, 0);
    if (c->failed || c->last_slot == NULL)
        return;
    prefetch_bytes(c->last_slot, offsetof(ingest_slot, resampler), 1);
    rtms_ring_prefetch_producer(c->last_ring);
    prefetch_bytes(c->next_write, c->next_write_bytes, 1);
    prefetch_bytes(c->raw, c->last_raw_bytes, 1);
}

size_t rtms_ingest_batch(rtms_ingest_conn *const *conns, const uint8_t *const *bufs,
                         const size_t *lens, size_t n_conns, size_t *consumed,
                         rtms_ingest_record *records, size_t max_records, uint32_t *status)
{
    batch_out b = {records, max_records, 0, 0, 0};
    int full = 0;
    size_t i = 0;
    uint32_t st = 0;
    for (; i < n_conns && !full; i++) {
        if (i + 2 < n_conns && conns[i + 2] != NULL)
            prefetch_conn(conns[i + 2]);
        if (i + 1 < n_conns && conns[i + 1] != NULL)
            prefetch_targets(conns[i + 1], bufs[i + 1], lens[i + 1]);
        b.conn_index = (uint32_t)i;
        int again = 0;
        consumed[i] = conns[i] ? ingest_conn(conns[i], bufs[i], lens[i], &b, &again) : 0;
        if (again == 1) {
            full = 1;
            st |= RTMS_BATCH_RECORDS_FULL | RTMS_BATCH_CALL_AGAIN;
        } else if (again == 2) {
            st |= RTMS_BATCH_CALL_AGAIN;
        }
    }
    for (; i < n_conns; i++)
        consumed[i] = 0;
    if (status)
        *status = st;
    return b.count;
}
