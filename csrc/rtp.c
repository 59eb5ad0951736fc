/*
 * rtp.c - RFC 3550 RTP: header parse and per-stream sequence accounting.
 *
 * The parser checks version 2, the CSRC list and header extension lengths,
 * and the padding count (last octet, at least 1 and within the payload) and
 * the payload type against the negotiated codec. The sequence tracker keeps
 * the highest sequence number seen (16-bit wrap-aware) and a 64-packet
 * window of what arrived, so a packet that comes after its slot was filled
 * with silence is told apart from a true duplicate; a jump beyond max_gap is
 * treated as a sender restart (resync) rather than as a burst of loss.
 */
#include "rtms_native.h"

#include <string.h>

int rtms_rtp_parse(const uint8_t *buf, size_t len, int expected_pt, rtms_rtp_header *out)
{
    memset(out, 0, sizeof *out);
    if (len < 12)
        return -RTMS_ERR_RTP_SHORT;
    if ((buf[0] >> 6) != 2)
        return -RTMS_ERR_RTP_VERSION;
    out->padding = (buf[0] >> 5) & 1;
    out->extension = (buf[0] >> 4) & 1;
    out->csrc_count = buf[0] & 0x0F;
    out->marker = buf[1] >> 7;
    out->payload_type = buf[1] & 0x7F;
    out->sequence = (uint16_t)((buf[2] << 8) | buf[3]);
    out->timestamp = ((uint32_t)buf[4] << 24) | ((uint32_t)buf[5] << 16) |
                     ((uint32_t)buf[6] << 8) | buf[7];
    out->ssrc = ((uint32_t)buf[8] << 24) | ((uint32_t)buf[9] << 16) |
                ((uint32_t)buf[10] << 8) | buf[11];
    size_t pos = 12 + 4u * out->csrc_count;
    if (len < pos)
        return -RTMS_ERR_RTP_SHORT;
    if (out->extension) {
        if (len - pos < 4)
            return -RTMS_ERR_RTP_SHORT;
        out->extension_profile = (uint16_t)((buf[pos] << 8) | buf[pos + 1]);
        size_t words = ((size_t)buf[pos + 2] << 8) | buf[pos + 3];
        pos += 4;
        if (len - pos < 4 * words)
            return -RTMS_ERR_RTP_SHORT;
        pos += 4 * words;
    }
    size_t end = len;
    if (out->padding) {
        uint8_t count = buf[len - 1];
        if (len == pos || count == 0 || count > len - pos)
            return -RTMS_ERR_RTP_PADDING;
        end = len - count;
    }
    if (expected_pt >= 0 && out->payload_type != expected_pt)
        return -RTMS_ERR_RTP_PAYLOAD_TYPE;
    if (len > UINT32_MAX)
        return -RTMS_ERR_RTP_SHORT;
    out->payload_off = (uint32_t)pos;
    out->payload_len = (uint32_t)(end - pos);
    return 0;
}

void rtms_rtp_seq_init(rtms_rtp_seq *s) { memset(s, 0, sizeof *s); }

#define RTP_MAX_MISORDER 100

int64_t rtms_rtp_seq_update(rtms_rtp_seq *s, uint16_t seq, uint32_t max_gap)
{
    if (!s->started) {
        s->started = 1;
        s->max_seq = seq;
        s->window = 1;
        s->accepted++;
        return 0;
    }
    int32_t delta = (int16_t)(uint16_t)(seq - (uint16_t)s->max_seq);
    if (delta == 0) {
        s->duplicate++;
        return -RTMS_ERR_RTP_DUPLICATE;
    }
    if (delta < 0) {
        uint32_t back = (uint32_t)(-delta);
        if (back < 64) {
            if (s->window & (UINT64_C(1) << back)) {
                s->duplicate++;
                return -RTMS_ERR_RTP_DUPLICATE;
            }
            s->late++;
            s->window |= UINT64_C(1) << back;
            return -RTMS_ERR_RTP_LATE;
        }
        if (back <= RTP_MAX_MISORDER) {
            s->late++;
            return -RTMS_ERR_RTP_LATE;
        }
        /* far behind: the sender restarted its sequence */
        s->resync++;
        s->max_seq = seq;
        s->window = 1;
        s->accepted++;
        return 0;
    }
    uint32_t lost = (uint32_t)delta - 1;
    s->max_seq = seq;
    s->window = (uint32_t)delta < 64 ? (s->window << delta) | 1 : 1;
    s->accepted++;
    if (lost > max_gap) {
        s->resync++;
        return 0;
    }
    s->lost += lost;
    return lost;
}
