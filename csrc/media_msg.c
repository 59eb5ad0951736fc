/*
 * media_msg.c - find the few fields of an RTMS media message without a
 * general JSON parser.
 *
 *   {"msg_type":14,"content":{"user_id":N,"user_name":"..","data":"<b64>","timestamp":N}}
 *
 * One forward pass, O(n), no allocation, bounded nesting (a fixed stack of
 * container kinds). Keys may come in any order, among unknown keys whose
 * values (strings, numbers, literals, nested objects and arrays) are skipped
 * with their syntax checked; whitespace anywhere JSON allows it; keys and
 * strings with escapes. Whatever it cannot prove (a duplicate field, a float
 * where an integer belongs, an integer beyond int64, trailing bytes) is a
 * typed error, never a guess. Strings are returned as byte ranges, still
 * escaped; rtms_json_unescape decodes one when the caller needs it.
 */
#include "rtms_native.h"

#include <string.h>

#define MSG_DEPTH_MAX 64

enum { KEY_OTHER, KEY_MSG_TYPE, KEY_CONTENT, KEY_USER_ID, KEY_CHANNEL_ID, KEY_USER_NAME,
       KEY_TIMESTAMP, KEY_DATA };

static size_t skip_ws(const uint8_t *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* p[start - 1] is an opening quote: find the closing one. */
static int scan_string(const uint8_t *p, size_t n, size_t start, size_t *end, int *escaped)
{
    size_t pos = start;
    int esc = 0;
    for (;;) {
        if (pos >= n)
            return -RTMS_ERR_MSG_SYNTAX;
        const uint8_t *q = memchr(p + pos, '"', n - pos);
        if (q == NULL)
            return -RTMS_ERR_MSG_SYNTAX;
        size_t k = (size_t)(q - p);
        size_t bs = 0;
        while (k - bs > start && p[k - bs - 1] == '\\')
            bs++;
        if (bs)
            esc = 1;
        if (bs & 1) {
            pos = k + 1;
            continue;
        }
        if (!esc && memchr(p + start, '\\', k - start) != NULL)
            esc = 1;
        *end = k;
        *escaped = esc;
        return 0;
    }
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Syntax-check a number at i; returns the index after it or 0 on error. */
static size_t skip_number(const uint8_t *p, size_t n, size_t i)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || !is_digit(p[i]))
        return 0;
    if (p[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    return i;
}

/* An integer at *pos: 0 and *pos advanced; 1 when the value is not an integer
   (not a number, or a fraction/exponent: *pos untouched); -error for range. */
static int parse_int(const uint8_t *p, size_t n, size_t *pos, int64_t *out)
{
    size_t i = *pos;
    int neg = 0;
    if (i < n && p[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || !is_digit(p[i]))
        return 1;
    size_t digits_start = i;
    uint64_t v = 0;
    int overflow = 0;
    while (i < n && is_digit(p[i])) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_C(0xFFFFFFFFFFFFFFFF) - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
        i++;
    }
    if (p[digits_start] == '0' && i - digits_start > 1)
        return -RTMS_ERR_MSG_SYNTAX; /* leading zero */
    if (i < n && (p[i] == '.' || p[i] == 'e' || p[i] == 'E'))
        return 1;
    if (overflow || v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -RTMS_ERR_MSG_NUMBER_RANGE;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    *pos = i;
    return 0;
}

static int match_literal(const uint8_t *p, size_t n, size_t i, const char *lit, size_t len)
{
    return n - i >= len && memcmp(p + i, lit, len) == 0;
}

/* Skip one JSON value at *pos, checking its syntax. */
static int skip_value(const uint8_t *p, size_t n, size_t *pos)
{
    uint8_t stack[MSG_DEPTH_MAX];
    int depth = 0;
    size_t i = *pos;
    size_t end;
    int esc;
value:
    i = skip_ws(p, n, i);
    if (i >= n)
        return -RTMS_ERR_MSG_SYNTAX;
    switch (p[i]) {
    case '{':
        i = skip_ws(p, n, i + 1);
        if (i < n && p[i] == '}') {
            i++;
            goto after_value;
        }
        if (depth == MSG_DEPTH_MAX)
            return -RTMS_ERR_MSG_DEPTH;
        stack[depth++] = '{';
        goto key;
    case '[':
        i = skip_ws(p, n, i + 1);
        if (i < n && p[i] == ']') {
            i++;
            goto after_value;
        }
        if (depth == MSG_DEPTH_MAX)
            return -RTMS_ERR_MSG_DEPTH;
        stack[depth++] = '[';
        goto value;
    case '"':
        if (scan_string(p, n, i + 1, &end, &esc) < 0)
            return -RTMS_ERR_MSG_SYNTAX;
        i = end + 1;
        goto after_value;
    case 't':
        if (!match_literal(p, n, i, "true", 4))
            return -RTMS_ERR_MSG_SYNTAX;
        i += 4;
        goto after_value;
    case 'f':
        if (!match_literal(p, n, i, "false", 5))
            return -RTMS_ERR_MSG_SYNTAX;
        i += 5;
        goto after_value;
    case 'n':
        if (!match_literal(p, n, i, "null", 4))
            return -RTMS_ERR_MSG_SYNTAX;
        i += 4;
        goto after_value;
    default: {
        size_t j = skip_number(p, n, i);
        if (j == 0)
            return -RTMS_ERR_MSG_SYNTAX;
        i = j;
        goto after_value;
    }
    }
key:
    i = skip_ws(p, n, i);
    if (i >= n || p[i] != '"')
        return -RTMS_ERR_MSG_SYNTAX;
    if (scan_string(p, n, i + 1, &end, &esc) < 0)
        return -RTMS_ERR_MSG_SYNTAX;
    i = skip_ws(p, n, end + 1);
    if (i >= n || p[i] != ':')
        return -RTMS_ERR_MSG_SYNTAX;
    i++;
    goto value;
after_value:
    if (depth == 0) {
        *pos = i;
        return 0;
    }
    i = skip_ws(p, n, i);
    if (i >= n)
        return -RTMS_ERR_MSG_SYNTAX;
    if (p[i] == ',') {
        i++;
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    }
    if ((p[i] == '}' && stack[depth - 1] == '{') || (p[i] == ']' && stack[depth - 1] == '[')) {
        depth--;
        i++;
        goto after_value;
    }
    return -RTMS_ERR_MSG_SYNTAX;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(const uint8_t *src, size_t n, size_t i, uint32_t *out)
{
    if (n - i < 4)
        return -1;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(src[i + (size_t)k]);
        if (h < 0)
            return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 0;
}

int64_t rtms_json_unescape(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t c = src[i];
        if (c < 0x20 || c == '"')
            return -RTMS_ERR_MSG_SYNTAX;
        if (c != '\\') {
            if (o >= dst_cap)
                return -RTMS_ERR_SPACE;
            dst[o++] = c;
            i++;
            continue;
        }
        if (i + 1 >= n)
            return -RTMS_ERR_MSG_SYNTAX;
        uint8_t e = src[i + 1];
        uint32_t cp;
        i += 2;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'u':
            if (read_hex4(src, n, i, &cp) < 0)
                return -RTMS_ERR_MSG_SYNTAX;
            i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return -RTMS_ERR_MSG_SYNTAX; /* lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (n - i < 6 || src[i] != '\\' || src[i + 1] != 'u' ||
                    read_hex4(src, n, i + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return -RTMS_ERR_MSG_SYNTAX;
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            break;
        default:
            return -RTMS_ERR_MSG_SYNTAX;
        }
        size_t need = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (dst_cap - o < need)
            return -RTMS_ERR_SPACE;
        if (need == 1) {
            dst[o++] = (uint8_t)cp;
        } else if (need == 2) {
            dst[o++] = (uint8_t)(0xC0 | (cp >> 6));
            dst[o++] = (uint8_t)(0x80 | (cp & 0x3F));
        } else if (need == 3) {
            dst[o++] = (uint8_t)(0xE0 | (cp >> 12));
            dst[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            dst[o++] = (uint8_t)(0x80 | (cp & 0x3F));
        } else {
            dst[o++] = (uint8_t)(0xF0 | (cp >> 18));
            dst[o++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            dst[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            dst[o++] = (uint8_t)(0x80 | (cp & 0x3F));
        }
    }
    return (int64_t)o;
}

/* Read a key at *pos (on its opening quote) and the ':' after it; classify. */
static int read_key(const uint8_t *p, size_t n, size_t *pos, int content, int *kind)
{
    size_t i = *pos, end;
    int esc;
    if (i >= n || p[i] != '"')
        return -RTMS_ERR_MSG_SYNTAX;
    if (scan_string(p, n, i + 1, &end, &esc) < 0)
        return -RTMS_ERR_MSG_SYNTAX;
    const uint8_t *k = p + i + 1;
    size_t klen = end - i - 1;
    uint8_t buf[16];
    if (esc) {
        int64_t r = rtms_json_unescape(k, klen, buf, sizeof buf);
        if (r == -RTMS_ERR_MSG_SYNTAX)
            return -RTMS_ERR_MSG_SYNTAX;
        if (r < 0) {
            klen = 0; /* too long to be one of ours */
            k = buf;
        } else {
            k = buf;
            klen = (size_t)r;
        }
    }
#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(k, s, sizeof(s) - 1) == 0)
    *kind = KEY_OTHER;
    if (!content) {
        if (KEY_IS("msg_type"))
            *kind = KEY_MSG_TYPE;
        else if (KEY_IS("content"))
            *kind = KEY_CONTENT;
    } else {
        if (KEY_IS("user_id"))
            *kind = KEY_USER_ID;
        else if (KEY_IS("channel_id"))
            *kind = KEY_CHANNEL_ID;
        else if (KEY_IS("user_name"))
            *kind = KEY_USER_NAME;
        else if (KEY_IS("timestamp"))
            *kind = KEY_TIMESTAMP;
        else if (KEY_IS("data"))
            *kind = KEY_DATA;
    }
#undef KEY_IS
    i = skip_ws(p, n, end + 1);
    if (i >= n || p[i] != ':')
        return -RTMS_ERR_MSG_SYNTAX;
    *pos = skip_ws(p, n, i + 1);
    return 0;
}

/* After an object member's value: 1 and *pos at the next key after a ',', 0 and *pos
 * past the closing '}', or a syntax error. */
static int next_member(const uint8_t *p, size_t n, size_t *pos)
{
    size_t i = skip_ws(p, n, *pos);
    if (i >= n)
        return -RTMS_ERR_MSG_SYNTAX;
    if (p[i] == ',') {
        *pos = skip_ws(p, n, i + 1);
        return 1;
    }
    if (p[i] == '}') {
        *pos = i + 1;
        return 0;
    }
    return -RTMS_ERR_MSG_SYNTAX;
}

/* A string value at *pos: its body range. 1 when the value is not a string. */
static int read_string_value(const uint8_t *p, size_t n, size_t *pos, uint64_t *off,
                             uint64_t *len, uint32_t *escaped)
{
    size_t i = *pos, end;
    int esc;
    if (i >= n || p[i] != '"')
        return 1;
    if (scan_string(p, n, i + 1, &end, &esc) < 0)
        return -RTMS_ERR_MSG_SYNTAX;
    *off = i + 1;
    *len = end - i - 1;
    *escaped = (uint32_t)esc;
    *pos = end + 1;
    return 0;
}

static void defer(int *first, int code)
{
    if (*first == 0)
        *first = code;
}

/* The content object, *pos on its '{'. Field problems are deferred into
   *field_err (they only matter for audio); syntax errors return at once. */
static int scan_content(const uint8_t *p, size_t n, size_t *pos, rtms_media_msg *out,
                        int *field_err)
{
    size_t i = skip_ws(p, n, *pos + 1);
    uint32_t seen = 0;
    if (i < n && p[i] == '}') {
        *pos = i + 1;
        return 0;
    }
    for (;;) {
        int kind, r;
        r = read_key(p, n, &i, 1, &kind);
        if (r < 0)
            return r;
        if (kind != KEY_OTHER) {
            if (seen & (1u << kind)) {
                defer(field_err, RTMS_ERR_MSG_DUPLICATE_KEY);
                kind = KEY_OTHER;
            }
            seen |= 1u << kind;
        }
        r = 1;
        switch (kind) {
        case KEY_USER_ID:
            r = parse_int(p, n, &i, &out->user_id);
            if (r == 0) {
                out->key_kind = out->key_kind ? 3 : 1;
            } else {
                defer(field_err, r < 0 ? -r : RTMS_ERR_MSG_USER_TYPE);
                if (r < 0 && r != -RTMS_ERR_MSG_NUMBER_RANGE)
                    return r;
            }
            break;
        case KEY_CHANNEL_ID:
            r = read_string_value(p, n, &i, &out->channel_off, &out->channel_len,
                                  &out->channel_escaped);
            if (r < 0)
                return r;
            if (r == 0)
                out->key_kind = out->key_kind ? 3 : 2;
            else
                defer(field_err, RTMS_ERR_MSG_USER_TYPE);
            break;
        case KEY_USER_NAME:
            r = read_string_value(p, n, &i, &out->name_off, &out->name_len, &out->name_escaped);
            if (r < 0)
                return r;
            if (r == 0)
                out->has_name = 1;
            else
                defer(field_err, RTMS_ERR_MSG_NAME);
            break;
        case KEY_TIMESTAMP:
            r = parse_int(p, n, &i, &out->timestamp_ms);
            if (r == 0)
                out->has_timestamp = 1;
            else
                defer(field_err, r < 0 ? -r : RTMS_ERR_MSG_TIMESTAMP);
            if (r < 0 && r != -RTMS_ERR_MSG_NUMBER_RANGE)
                return r;
            break;
        case KEY_DATA:
            r = read_string_value(p, n, &i, &out->data_off, &out->data_len, &out->data_escaped);
            if (r < 0)
                return r;
            if (r == 0)
                out->has_data = 1;
            else
                defer(field_err, RTMS_ERR_MSG_DATA);
            break;
        default:
            break;
        }
        if (r != 0) {
            /* not the expected type (or out of range): skip it, checking syntax */
            r = skip_value(p, n, &i);
            if (r < 0)
                return r;
        }
        r = next_member(p, n, &i);
        if (r < 0)
            return r;
        if (r == 0) {
            *pos = i;
            return 0;
        }
    }
}

int rtms_media_msg_scan(const uint8_t *buf, size_t len, int mode, rtms_media_msg *out)
{
    memset(out, 0, sizeof *out);
    out->msg_type = -1;
    const uint8_t *p = buf;
    size_t n = len;
    size_t i = skip_ws(p, n, 0);
    if (i >= n || p[i] != '{')
        return -RTMS_ERR_MSG_NOT_OBJECT;
    i = skip_ws(p, n, i + 1);
    int type_ok = 0, type_err = 0, content_seen = 0, content_obj = 0, field_err = 0;
    if (i < n && p[i] == '}') {
        i++;
    } else {
        for (;;) {
            int kind, r;
            r = read_key(p, n, &i, 0, &kind);
            if (r < 0)
                return r;
            if (kind == KEY_MSG_TYPE) {
                if (type_ok || type_err)
                    return -RTMS_ERR_MSG_DUPLICATE_KEY;
                int64_t v = -1;
                r = parse_int(p, n, &i, &v);
                if (r == 0) {
                    type_ok = 1;
                    out->msg_type = v;
                } else {
                    type_err = 1;
                    if (r < 0 && r != -RTMS_ERR_MSG_NUMBER_RANGE)
                        return r;
                    r = skip_value(p, n, &i);
                    if (r < 0)
                        return r;
                }
            } else if (kind == KEY_CONTENT) {
                if (content_seen)
                    return -RTMS_ERR_MSG_DUPLICATE_KEY;
                content_seen = 1;
                if (i < n && p[i] == '{') {
                    content_obj = 1;
                    r = scan_content(p, n, &i, out, &field_err);
                } else {
                    r = skip_value(p, n, &i);
                }
                if (r < 0)
                    return r;
            } else {
                r = skip_value(p, n, &i);
                if (r < 0)
                    return r;
            }
            r = next_member(p, n, &i);
            if (r < 0)
                return r;
            if (r == 0)
                break;
        }
    }
    if (skip_ws(p, n, i) != n)
        return -RTMS_ERR_MSG_SYNTAX; /* bytes after the object */
    if (!type_ok)
        return -RTMS_ERR_MSG_TYPE;
    int audio = mode == 1 || (mode >= 2 && out->msg_type == 14);
    if (!audio)
        return 0;
    if (!content_obj)
        return -RTMS_ERR_MSG_CONTENT;
    if (field_err)
        return -field_err;
    if (mode != 3) {
        if (out->key_kind == 0)
            return -RTMS_ERR_MSG_USER;
        if (out->key_kind == 3)
            return -RTMS_ERR_MSG_KEY_AMBIGUOUS;
        if (!out->has_name)
            return -RTMS_ERR_MSG_NAME;
    }
    if (!out->has_timestamp)
        return -RTMS_ERR_MSG_TIMESTAMP;
    if (!out->has_data)
        return -RTMS_ERR_MSG_DATA;
    return 0;
}
