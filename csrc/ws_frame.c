/*
 * ws_frame.c - RFC 6455 WebSocket frame headers: parse (server -> client) and
 * encode (client -> server, masked).
 *
 * The parser looks only at the header; it never reads past `len` and never
 * allocates. It enforces what a client must check on server frames: no RSV
 * bits (we negotiate no extension), no reserved opcodes, minimal length
 * encodings, no mask, control frames short and unfragmented, and a size cap.
 */
#include "rtms_native.h"

#include <string.h>

int rtms_ws_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload, int allow_masked,
                         rtms_ws_frame *out)
{
    if (len < 2)
        return 0;
    uint8_t b0 = buf[0], b1 = buf[1];
    if (b0 & 0x70)
        return -RTMS_ERR_WS_RSV;
    uint8_t opcode = b0 & 0x0F;
    int control = (opcode & 0x08) != 0;
    if (!(opcode <= 2 || (opcode >= 8 && opcode <= 10)))
        return -RTMS_ERR_WS_OPCODE;
    uint8_t fin = (b0 >> 7) & 1;
    if (control && !fin)
        return -RTMS_ERR_WS_CONTROL_FRAGMENTED;
    uint8_t masked = (b1 >> 7) & 1;
    if (masked && !allow_masked)
        return -RTMS_ERR_WS_MASKED;
    uint64_t plen = b1 & 0x7F;
    size_t pos = 2;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        if (plen < 126)
            return -RTMS_ERR_WS_LENGTH_NOT_MINIMAL;
        pos = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        if (buf[2] & 0x80)
            return -RTMS_ERR_WS_LENGTH_MSB;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if (plen <= 0xFFFF)
            return -RTMS_ERR_WS_LENGTH_NOT_MINIMAL;
        pos = 10;
    }
    if (control && plen > 125)
        return -RTMS_ERR_WS_CONTROL_TOO_BIG;
    if (plen > max_payload)
        return -RTMS_ERR_WS_TOO_BIG;
    if (masked) {
        if (len < pos + 4)
            return 0;
        memcpy(out->mask_key, buf + pos, 4);
        pos += 4;
    } else {
        memset(out->mask_key, 0, 4);
    }
    out->fin = fin;
    out->opcode = opcode;
    out->masked = masked;
    out->header_len = (uint32_t)pos;
    out->payload_len = plen;
    return (int)pos;
}

void rtms_ws_unmask(uint8_t *data, size_t n, const uint8_t *mask_key, size_t phase)
{
    for (size_t i = 0; i < n; i++)
        data[i] ^= mask_key[(i + phase) & 3];
}

int64_t rtms_ws_encode(int opcode, int fin, const uint8_t *payload, size_t n,
                       const uint8_t *mask_key, uint8_t *out, size_t out_cap)
{
    if (!(opcode >= 0 && (opcode <= 2 || (opcode >= 8 && opcode <= 10))))
        return -RTMS_ERR_WS_OPCODE;
    if (opcode >= 8) {
        if (n > 125)
            return -RTMS_ERR_WS_CONTROL_TOO_BIG;
        if (!fin)
            return -RTMS_ERR_WS_CONTROL_FRAGMENTED;
    }
    size_t hdr = 2 + (n >= 126 ? (n > 0xFFFF ? 8 : 2) : 0) + (mask_key ? 4 : 0);
    if (out_cap < hdr || out_cap - hdr < n)
        return -RTMS_ERR_SPACE;
    uint8_t mbit = mask_key ? 0x80 : 0;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    size_t pos = 2;
    if (n < 126) {
        out[1] = (uint8_t)(mbit | n);
    } else if (n <= 0xFFFF) {
        out[1] = (uint8_t)(mbit | 126);
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        pos = 4;
    } else {
        out[1] = (uint8_t)(mbit | 127);
        uint64_t v = n;
        for (int i = 7; i >= 0; i--) {
            out[2 + i] = (uint8_t)v;
            v >>= 8;
        }
        pos = 10;
    }
    if (mask_key) {
        memcpy(out + pos, mask_key, 4);
        pos += 4;
    }
    if (n)
        memcpy(out + pos, payload, n);
    if (mask_key)
        rtms_ws_unmask(out + pos, n, mask_key, 0);
    return (int64_t)(pos + n);
}
