/*
 * tls.c - a TLS client over memory BIOs, with a batched decrypt.
 *
 * The media pump reads every socket of a sweep into one arena; on wss:// each
 * input is then ciphertext. Decrypting it with Python's ssl.SSLObject costs a
 * method call, a MemoryBIO write and an exception per socket; here one call
 * feeds and decrypts every connection of the sweep with the GIL released.
 *
 * Each connection is an OpenSSL SSL whose read side is a memory BIO we fill
 * (rtms_tls_feed) and whose write side is a memory BIO we drain
 * (rtms_tls_take_output): the sockets stay in the caller's hands. Once a TLS 1.3
 * handshake is complete, received records skip OpenSSL: the own record layer below
 * ("The own record layer") decrypts them with the server's traffic secret, which
 * OpenSSL hands over through its key log callback; OpenSSL keeps sending.
 *
 * The OpenSSL error queue is per thread and shared with Python's ssl module
 * (same libssl), so every entry point clears it before an operation whose
 * SSL_get_error it inspects and leaves it empty on return.
 *
 * Built with RTMS_NO_OPENSSL, every function is a stub reporting "unavailable".
 */
#include "rtms_native.h"

#include <stdio.h>
#include <string.h>

#define UNAVAILABLE "TLS is unavailable: rtms-fast was built without OpenSSL"

/* Copy a message into a caller's buffer (err may be NULL or err_cap 0). */
static void copy_text(char *err, size_t err_cap, const char *text)
{
    if (err == NULL || err_cap == 0)
        return;
    snprintf(err, err_cap, "%s", text);
}

#if defined(RTMS_NO_OPENSSL)

struct rtms_tls_ctx { int unused; };
struct rtms_tls_conn { int unused; };

int rtms_tls_available(void) { return 0; }
const char *rtms_tls_library_version(void) { return "unavailable"; }

rtms_tls_ctx *rtms_tls_ctx_new(const char *ca_file, int verify, char *err, size_t err_cap)
{
    copy_text(err, err_cap, UNAVAILABLE);
    return NULL;
}

void rtms_tls_ctx_free(rtms_tls_ctx *ctx) {}
void rtms_tls_ctx_set_own_records(rtms_tls_ctx *ctx, int on) {}
int rtms_tls_ctx_set_ciphersuites(rtms_tls_ctx *ctx, const char *suites, char *err,
                                  size_t err_cap)
{
    copy_text(err, err_cap, UNAVAILABLE);
    return RTMS_TLS_ERROR;
}
int rtms_tls_own_records(const rtms_tls_conn *c) { return 0; }

rtms_tls_conn *rtms_tls_conn_new(rtms_tls_ctx *ctx, const char *server_hostname, char *err,
                                 size_t err_cap)
{
    copy_text(err, err_cap, UNAVAILABLE);
    return NULL;
}

void rtms_tls_conn_free(rtms_tls_conn *c) {}
int rtms_tls_handshake(rtms_tls_conn *c) { return RTMS_TLS_ERROR; }
int rtms_tls_handshake_done(const rtms_tls_conn *c) { return 0; }
int64_t rtms_tls_feed(rtms_tls_conn *c, const uint8_t *data, size_t len) { return RTMS_TLS_ERROR; }
void rtms_tls_feed_eof(rtms_tls_conn *c) {}
int rtms_tls_input_eof(const rtms_tls_conn *c) { return 0; }
int64_t rtms_tls_read(rtms_tls_conn *c, uint8_t *out, size_t cap) { return RTMS_TLS_ERROR; }
int64_t rtms_tls_write(rtms_tls_conn *c, const uint8_t *data, size_t len) { return RTMS_TLS_ERROR; }
int rtms_tls_shutdown(rtms_tls_conn *c) { return RTMS_TLS_ERROR; }
int rtms_tls_key_update(rtms_tls_conn *c, int request_peer) { return RTMS_TLS_ERROR; }
size_t rtms_tls_output_pending(const rtms_tls_conn *c) { return 0; }
int64_t rtms_tls_take_output(rtms_tls_conn *c, uint8_t *out, size_t cap) { return 0; }
size_t rtms_tls_input_pending(const rtms_tls_conn *c) { return 0; }
int64_t rtms_tls_take_input(rtms_tls_conn *c, uint8_t *out, size_t cap) { return 0; }
size_t rtms_tls_plain_pending(const rtms_tls_conn *c) { return 0; }
const char *rtms_tls_version(const rtms_tls_conn *c) { return NULL; }
const char *rtms_tls_conn_error(const rtms_tls_conn *c) { return UNAVAILABLE; }
int rtms_tls_verify_error(const rtms_tls_conn *c) { return 0; }
const char *rtms_tls_verify_message(const rtms_tls_conn *c) { return ""; }

int64_t rtms_tls_decrypt_batch(rtms_tls_conn *const *conns, const uint8_t *const *in,
                               const size_t *in_lens, size_t n, uint8_t *out, size_t cap,
                               size_t *out_offsets, size_t *out_lens, int32_t *status)
{
    for (size_t i = 0; i < n; i++) {
        out_offsets[i] = 0;
        out_lens[i] = 0;
        status[i] = RTMS_TLS_STATUS_ERROR;
    }
    return 0;
}

#else /* OpenSSL */

#include <limits.h>
#include <stdlib.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "rtms-fast TLS needs OpenSSL 1.1.1 or later (build with RTMS_NO_OPENSSL)"
#endif

/* Longest DNS name is 253 characters; IPv6 text is shorter still. */
#define HOST_CAP 256

enum conn_state { LIVE = 0, CLOSED = 1, FAILED = 2 };

/* The own TLS 1.3 record layer (RFC 8446 section 5), receive side. After the
   handshake every record is  23 | 0x0303 | length(2) | AEAD(content | type | zeros)
   with the 5-byte header as additional data and nonce = iv XOR the record's
   64-bit sequence number. */
#define RX_HEADER 5
#define RX_TAG 16
#define RX_IV_LEN 12
#define RX_MAX_CONTENT 16384                /* 2^14 */
#define RX_MAX_BODY (RX_MAX_CONTENT + 256)  /* largest ciphertext a peer may send */
#define RX_HS_CAP 65536                     /* longest post-handshake message buffered */

struct rtms_tls_ctx {
    SSL_CTX *ssl_ctx;
    int verify;
    int own_records;
};

struct rtms_tls_conn {
    SSL *ssl;       /* owns both BIOs */
    BIO *in;        /* network -> TLS: ciphertext we feed */
    BIO *out;       /* TLS -> network: ciphertext to send */
    int state;      /* enum conn_state */
    int fail_code;  /* RTMS_TLS_ERROR or RTMS_TLS_EOF once FAILED */
    int input_eof;  /* rtms_tls_feed_eof was called */
    int verify_error;
    char host[HOST_CAP];
    char err[RTMS_TLS_ERR_CAP];
    char verify_msg[RTMS_TLS_ERR_CAP / 2];
    /* The own record layer: chosen or declined once, when the handshake completes. */
    int rx_allowed;  /* the ctx's setting when the conn was made */
    int rx_decided;
    int rx_own;
    EVP_CIPHER_CTX *rx_aead;
    const EVP_MD *rx_md;
    size_t rx_key_len;
    uint64_t rx_seq;
    uint8_t rx_iv[RX_IV_LEN];
    uint8_t rx_secret[EVP_MAX_MD_SIZE]; /* the server's current traffic secret */
    size_t rx_secret_len;
    uint8_t *rx_buf; /* ciphertext not yet decrypted (a partial record, mostly); */
    size_t rx_len;   /* allocated only while non-empty */
    size_t rx_cap;
    uint8_t *rx_plain; /* decrypted, not yet read (single reads only) */
    size_t rx_plain_off, rx_plain_len;
    uint8_t *rx_hs; /* a post-handshake message split across records */
    size_t rx_hs_len;
    const uint8_t *rx_record; /* the record being handled, for rx_fail's alert */
    size_t rx_record_len;
    int rx_wrote; /* OpenSSL may have written while the own layer read (alert, KeyUpdate) */
};

/* Empty the thread's OpenSSL error queue. ERR_clear_error walks every slot of the
   queue (~0.2 us a call); checking first makes the usual case, already empty, cheap. */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

int rtms_tls_available(void) { return 1; }

const char *rtms_tls_library_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

/* Append s to the NUL-terminated text in buf[0..cap), truncating. */
static void append(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    if (n + 1 < cap)
        snprintf(buf + n, cap - n, "%s", s);
}

/* Drain the thread's error queue into buf (after prefix), "; "-separated.
   Returns 1 when one of the entries says the peer's certificate failed to verify. */
static int drain_errors(char *buf, size_t cap, const char *prefix)
{
    char one[256];
    unsigned long e;
    int verify_failed = 0, any = 0;
    buf[0] = '\0';
    append(buf, cap, prefix);
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
            verify_failed = 1;
        ERR_error_string_n(e, one, sizeof one);
        append(buf, cap, any ? "; " : ": ");
        append(buf, cap, one);
        any = 1;
    }
    return verify_failed;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* OpenSSL reports each secret of a handshake as an NSS key log line; the own record
   layer needs one: "SERVER_TRAFFIC_SECRET_0 <client random> <secret>", hex. */
static void keylog_line(const SSL *ssl, const char *line)
{
    static const char label[] = "SERVER_TRAFFIC_SECRET_0 ";
    rtms_tls_conn *c = SSL_get_app_data(ssl);
    const char *p;
    size_t n = 0;
    if (c == NULL || !c->rx_allowed || strncmp(line, label, sizeof label - 1) != 0)
        return;
    p = strchr(line + sizeof label - 1, ' ');
    if (p == NULL)
        return;
    for (p++; p[0] != '\0' && p[1] != '\0' && n < sizeof c->rx_secret; p += 2) {
        int hi = hex_digit(p[0]), lo = hex_digit(p[1]);
        if (hi < 0 || lo < 0)
            break;
        c->rx_secret[n++] = (uint8_t)(hi << 4 | lo);
    }
    c->rx_secret_len = *p == '\0' ? n : 0;
}

rtms_tls_ctx *rtms_tls_ctx_new(const char *ca_file, int verify, char *err, size_t err_cap)
{
    char text[RTMS_TLS_ERR_CAP];
    rtms_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        copy_text(err, err_cap, "out of memory");
        return NULL;
    }
    clear_errors();
    ctx->verify = verify != 0;
    ctx->own_records = 1;
    ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ctx->ssl_ctx == NULL) {
        drain_errors(text, sizeof text, "cannot create an SSL_CTX");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
    /* Known-harmless interoperability workarounds, no TLS compression (CRIME).
       SSL_OP_IGNORE_UNEXPECTED_EOF stays off: a truncation must show as an error. */
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_ALL | SSL_OP_NO_COMPRESSION);
    /* OpenSSL 1.1.1 puts this one in SSL_OP_ALL: peers must support secure renegotiation. */
    SSL_CTX_clear_options(ctx->ssl_ctx, SSL_OP_LEGACY_SERVER_CONNECT);
    /* Memory BIOs never refuse a write, so SSL_write always completes whole;
       the moving-buffer mode only spares a retry from having to pass the same pointer.
       RELEASE_BUFFERS returns a connection's ~17 KB record buffers to malloc while they
       are empty, i.e. between messages: a sweep over 1000 connections then reuses one
       cache-hot buffer instead of touching 1000 cold ones (measured ~15 % faster per
       message at 1000 connections, and ~34 MB less memory). */
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_AUTO_RETRY
                                       | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx->ssl_ctx, ctx->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_keylog_callback(ctx->ssl_ctx, keylog_line);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL) != 1) {
            char prefix[RTMS_TLS_ERR_CAP / 2];
            snprintf(prefix, sizeof prefix, "cannot load CA file '%s'", ca_file);
            drain_errors(text, sizeof text, prefix);
            goto fail;
        }
    } else if (ctx->verify && SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1) {
        drain_errors(text, sizeof text, "cannot load the default CA paths");
        goto fail;
    }
    clear_errors();
    return ctx;
fail:
    copy_text(err, err_cap, text);
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
    clear_errors();
    return NULL;
}

void rtms_tls_ctx_free(rtms_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx); /* every SSL made from it holds its own reference */
    free(ctx);
}

void rtms_tls_ctx_set_own_records(rtms_tls_ctx *ctx, int on)
{
    if (ctx != NULL)
        ctx->own_records = on != 0;
}

int rtms_tls_ctx_set_ciphersuites(rtms_tls_ctx *ctx, const char *suites, char *err,
                                  size_t err_cap)
{
    char text[RTMS_TLS_ERR_CAP];
    if (ctx == NULL || suites == NULL) {
        copy_text(err, err_cap, "no TLS context or no suites");
        return RTMS_TLS_ERROR;
    }
    clear_errors();
    if (SSL_CTX_set_ciphersuites(ctx->ssl_ctx, suites) == 1)
        return RTMS_TLS_OK;
    drain_errors(text, sizeof text, "no usable TLS 1.3 cipher suite");
    copy_text(err, err_cap, text);
    clear_errors();
    return RTMS_TLS_ERROR;
}

int rtms_tls_own_records(const rtms_tls_conn *c) { return c->rx_own; }

rtms_tls_conn *rtms_tls_conn_new(rtms_tls_ctx *ctx, const char *server_hostname, char *err,
                                 size_t err_cap)
{
    char text[RTMS_TLS_ERR_CAP];
    rtms_tls_conn *c;
    if (ctx == NULL) {
        copy_text(err, err_cap, "no TLS context");
        return NULL;
    }
    if (server_hostname == NULL && ctx->verify) {
        copy_text(err, err_cap, "server_hostname is required when the certificate is verified");
        return NULL;
    }
    if (server_hostname != NULL && (server_hostname[0] == '\0' || server_hostname[0] == '.'
                                    || strlen(server_hostname) >= HOST_CAP)) {
        copy_text(err, err_cap, "server_hostname is empty, starts with a dot or is too long");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        copy_text(err, err_cap, "out of memory");
        return NULL;
    }
    clear_errors();
    c->ssl = SSL_new(ctx->ssl_ctx); /* takes a reference on the SSL_CTX */
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->in == NULL || c->out == NULL) {
        drain_errors(text, sizeof text, "cannot create a TLS connection");
        BIO_free(c->in);
        BIO_free(c->out);
        goto fail;
    }
    /* An empty BIO means "wait for more", not end of stream (see rtms_tls_feed_eof). */
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out); /* the SSL owns them from here */
    SSL_set_connect_state(c->ssl);
    SSL_set_app_data(c->ssl, c); /* for keylog_line */
    c->rx_allowed = ctx->own_records;
    if (server_hostname != NULL) {
        snprintf(c->host, sizeof c->host, "%s", server_hostname);
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        /* An IP literal is checked against the iPAddress SANs and never sent as SNI
           (RFC 6066 allows host names only); anything else is a DNS name. */
        if (X509_VERIFY_PARAM_set1_ip_asc(param, server_hostname) == 1) {
            if (!ctx->verify)
                X509_VERIFY_PARAM_set1_ip(param, NULL, 0);
        } else {
            clear_errors();
            if (SSL_set_tlsext_host_name(c->ssl, server_hostname) != 1) {
                drain_errors(text, sizeof text, "cannot set the server name (SNI)");
                goto fail;
            }
            if (ctx->verify) {
                SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (SSL_set1_host(c->ssl, server_hostname) != 1) {
                    drain_errors(text, sizeof text, "cannot set the host name to verify");
                    goto fail;
                }
            }
        }
    }
    clear_errors();
    return c;
fail:
    copy_text(err, err_cap, text);
    SSL_free(c->ssl);
    free(c);
    clear_errors();
    return NULL;
}

void rtms_tls_conn_free(rtms_tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl); /* frees both BIOs and drops the SSL_CTX reference */
    EVP_CIPHER_CTX_free(c->rx_aead);
    OPENSSL_cleanse(c->rx_secret, sizeof c->rx_secret);
    OPENSSL_cleanse(c->rx_iv, sizeof c->rx_iv);
    free(c->rx_buf);
    free(c->rx_plain);
    free(c->rx_hs);
    free(c);
}

/* Turn the outcome of a failed SSL call (ERR queue filled since our clear_errors)
   into a return code, updating the sticky state and the error texts. */
static int classify(rtms_tls_conn *c, int ret, const char *what)
{
    int e = SSL_get_error(c->ssl, ret);
    int eof = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* memory BIOs never refuse a write; treat alike */
        clear_errors();
        return RTMS_TLS_WANT_READ;
    case SSL_ERROR_ZERO_RETURN:
        clear_errors();
        c->state = CLOSED;
        snprintf(c->err, sizeof c->err, "the peer closed the TLS session (close_notify)");
        return RTMS_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* No socket below us: an empty queue here is the input's end (OpenSSL 1.1.1). */
        eof = ERR_peek_error() == 0;
        break;
    case SSL_ERROR_SSL: {
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
        unsigned long first = ERR_peek_error();
        eof = ERR_GET_LIB(first) == ERR_LIB_SSL
              && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#endif
        break;
    }
    default:
        break;
    }
    c->state = FAILED;
    c->fail_code = eof ? RTMS_TLS_EOF : RTMS_TLS_ERROR;
    if (eof) {
        clear_errors();
        snprintf(c->err, sizeof c->err,
                 "%s: unexpected EOF: the input ended without a close_notify", what);
        return RTMS_TLS_EOF;
    }
    if (drain_errors(c->err, sizeof c->err, what)) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            c->verify_error = (int)v;
            snprintf(c->verify_msg, sizeof c->verify_msg, "%s",
                     X509_verify_cert_error_string(v));
            if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
                append(c->verify_msg, sizeof c->verify_msg,
                       ", certificate is not valid for '");
                append(c->verify_msg, sizeof c->verify_msg, c->host);
                append(c->verify_msg, sizeof c->verify_msg, "'");
            }
            append(c->err, sizeof c->err, ": ");
            append(c->err, sizeof c->err, c->verify_msg);
        }
    } else if (c->err[strlen(what)] == '\0') {
        /* nothing queued: say at least which SSL_get_error it was */
        char code[48];
        snprintf(code, sizeof code, ": SSL_get_error %d", e);
        append(c->err, sizeof c->err, code);
    }
    return RTMS_TLS_ERROR;
}

/* What a read returns once the connection is closed or failed. */
static int sticky(const rtms_tls_conn *c)
{
    return c->state == CLOSED ? RTMS_TLS_CLOSED : c->fail_code;
}

/* ---- The own record layer --------------------------------------------------------------
   OpenSSL's SSL_read costs 2-4 us per small record over a thousand connections (its
   record machinery, per-SSL buffers, locks); the AEAD itself ~0.5 us. Once a TLS 1.3
   handshake is complete the receive side is simple enough to run here: the server's
   traffic secret comes from OpenSSL's key log callback, the rest is RFC 8446 section
   5 (records), 7.1/7.2 (keys, KeyUpdate) and 4.6 (post-handshake messages). OpenSSL
   keeps the sending side. TLS 1.2, other suites, or a ctx with own records off: SSL_read
   as before. */

/* HKDF-Expand-Label(secret, label, "", out_len) for out_len <= the hash length: one
   HMAC block (RFC 8446 section 7.1, RFC 5869). */
static int expand_label(const EVP_MD *md, const uint8_t *secret, size_t secret_len,
                        const char *label, uint8_t *out, size_t out_len)
{
    uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
    uint8_t block[EVP_MAX_MD_SIZE];
    unsigned int block_len = 0;
    size_t label_len = strlen(label), n = 0;
    if (label_len > 32 || out_len > (size_t)EVP_MD_size(md))
        return 0;
    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(6 + label_len);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0; /* empty context */
    info[n++] = 1; /* the block counter of HKDF-Expand's only block */
    if (HMAC(md, secret, (int)secret_len, info, n, block, &block_len) == NULL
        || block_len < out_len)
        return 0;
    memcpy(out, block, out_len);
    OPENSSL_cleanse(block, sizeof block);
    return 1;
}

/* Key and IV from the current secret; the sequence restarts (section 7.2). */
static int rx_install_keys(rtms_tls_conn *c)
{
    uint8_t key[32];
    int ok = expand_label(c->rx_md, c->rx_secret, c->rx_secret_len, "key", key, c->rx_key_len)
             && expand_label(c->rx_md, c->rx_secret, c->rx_secret_len, "iv", c->rx_iv,
                             RX_IV_LEN)
             && EVP_DecryptInit_ex(c->rx_aead, NULL, NULL, key, NULL) == 1;
    OPENSSL_cleanse(key, sizeof key);
    c->rx_seq = 0;
    return ok;
}

/* Room for extra more bytes in rx_buf. */
static int rx_reserve(rtms_tls_conn *c, size_t extra)
{
    size_t need = c->rx_len + extra, cap = c->rx_cap;
    uint8_t *grown;
    if (need <= cap)
        return 1;
    if (cap < 2048)
        cap = 2048;
    while (cap < need)
        cap *= 2;
    grown = realloc(c->rx_buf, cap);
    if (grown == NULL)
        return 0;
    c->rx_buf = grown;
    c->rx_cap = cap;
    return 1;
}

static int rx_append(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    if (len == 0)
        return 1;
    if (!rx_reserve(c, len))
        return 0;
    memcpy(c->rx_buf + c->rx_len, data, len);
    c->rx_len += len;
    return 1;
}

/* Drop the first used bytes of rx_buf; an empty buffer is freed (idle connections
   hold none). */
static void rx_consume(rtms_tls_conn *c, size_t used)
{
    if (used == 0)
        return;
    if (used >= c->rx_len) {
        free(c->rx_buf);
        c->rx_buf = NULL;
        c->rx_len = c->rx_cap = 0;
        return;
    }
    memmove(c->rx_buf, c->rx_buf + used, c->rx_len - used);
    c->rx_len -= used;
}

/* Switch to the own record layer if the handshake just completed and everything
   needed is at hand; decided once per connection. What OpenSSL was fed and has not
   read (the records after the server's Finished) moves to rx_buf. */
static void rx_take_over(rtms_tls_conn *c)
{
    const SSL_CIPHER *suite;
    const EVP_CIPHER *cipher;
    size_t pending, got = 0;
    if (c->rx_decided || c->state != LIVE || !SSL_is_init_finished(c->ssl))
        return;
    c->rx_decided = 1;
    if (!c->rx_allowed || c->rx_secret_len == 0 || SSL_version(c->ssl) != TLS1_3_VERSION
        || SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl))
        goto decline;
    suite = SSL_get_current_cipher(c->ssl);
    switch (suite != NULL ? SSL_CIPHER_get_protocol_id(suite) : 0) {
    case 0x1301: /* TLS_AES_128_GCM_SHA256 */
        cipher = EVP_aes_128_gcm();
        c->rx_md = EVP_sha256();
        c->rx_key_len = 16;
        break;
    case 0x1302: /* TLS_AES_256_GCM_SHA384 */
        cipher = EVP_aes_256_gcm();
        c->rx_md = EVP_sha384();
        c->rx_key_len = 32;
        break;
#if !defined(OPENSSL_NO_CHACHA) && !defined(OPENSSL_NO_POLY1305)
    case 0x1303: /* TLS_CHACHA20_POLY1305_SHA256 */
        cipher = EVP_chacha20_poly1305();
        c->rx_md = EVP_sha256();
        c->rx_key_len = 32;
        break;
#endif
    default:
        goto decline;
    }
    if (c->rx_secret_len != (size_t)EVP_MD_size(c->rx_md))
        goto decline;
    c->rx_aead = EVP_CIPHER_CTX_new();
    if (c->rx_aead == NULL || EVP_DecryptInit_ex(c->rx_aead, cipher, NULL, NULL, NULL) != 1
        || !rx_install_keys(c))
        goto decline;
    pending = BIO_ctrl_pending(c->in);
    if (pending > 0 && !rx_reserve(c, pending))
        goto decline; /* nothing was moved yet: OpenSSL goes on */
    if (pending > 0 && (BIO_read_ex(c->in, c->rx_buf, pending, &got) != 1 || got != pending)) {
        c->state = FAILED; /* bytes left OpenSSL's input: neither side can go on */
        c->fail_code = RTMS_TLS_ERROR;
        snprintf(c->err, sizeof c->err, "cannot take over the received records");
    }
    c->rx_len = got;
    c->rx_own = 1;
    clear_errors();
    return;
decline:
    EVP_CIPHER_CTX_free(c->rx_aead);
    c->rx_aead = NULL;
    OPENSSL_cleanse(c->rx_secret, sizeof c->rx_secret);
    c->rx_secret_len = 0;
    clear_errors();
}

/* Complete the handshake if it is not (SSL_do_handshake, never SSL_read, so that no
   application record reaches OpenSSL before the choice), then choose. */
static void rx_settle(rtms_tls_conn *c)
{
    if (!SSL_is_init_finished(c->ssl)) {
        int r;
        clear_errors();
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            classify(c, r, "handshake failed");
            return;
        }
    }
    rx_take_over(c);
}

/* Fail the connection over a record we refuse (record NULL: the one being handled).
   OpenSSL holds the sending side, so it sends the fatal alert: it is handed the record
   and fails on it too (its receive keys are behind ours, so the record does not
   authenticate for it: bad_record_mac), exactly as for a corrupt record on its own
   path. why: our reason, when OpenSSL's would say less. */
static void rx_fail(rtms_tls_conn *c, const uint8_t *record, size_t len, const char *why)
{
    uint8_t scratch[64];
    size_t got = 0;
    int openssl_failed = 0;
    if (record == NULL) {
        record = c->rx_record;
        len = c->rx_record_len;
    }
    c->rx_wrote = 1;
    clear_errors();
    if (record != NULL && len > 0 && len <= INT_MAX
        && BIO_write(c->in, record, (int)len) == (int)len
        && SSL_read_ex(c->ssl, scratch, sizeof scratch, &got) != 1) {
        classify(c, 0, "read failed");
        openssl_failed = c->state == FAILED;
    }
    c->state = FAILED;
    c->fail_code = RTMS_TLS_ERROR;
    if (why != NULL || !openssl_failed)
        snprintf(c->err, sizeof c->err, "read failed: %s",
                 why != NULL ? why : "decryption failed or bad record mac");
    clear_errors();
}

static void rx_eof(rtms_tls_conn *c)
{
    rx_consume(c, c->rx_len); /* a cut record: never to be completed */
    c->state = FAILED;
    c->fail_code = RTMS_TLS_EOF;
    snprintf(c->err, sizeof c->err,
             "read failed: unexpected EOF: the input ended without a close_notify");
}

/* A KeyUpdate from the server: next secret, new keys; answer one that asks (4.6.3). */
static void rx_key_update(rtms_tls_conn *c, int requested)
{
    uint8_t next[EVP_MAX_MD_SIZE];
    int ok = expand_label(c->rx_md, c->rx_secret, c->rx_secret_len, "traffic upd", next,
                          c->rx_secret_len);
    if (ok) {
        memcpy(c->rx_secret, next, c->rx_secret_len);
        ok = rx_install_keys(c);
    }
    OPENSSL_cleanse(next, sizeof next);
    if (!ok) {
        rx_fail(c, NULL, 0, "cannot derive the updated keys");
        return;
    }
    if (requested) {
        int r;
        c->rx_wrote = 1;
        clear_errors();
        r = SSL_key_update(c->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1 ? SSL_do_handshake(c->ssl)
                                                                     : 0;
        if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
            drain_errors(c->err, sizeof c->err, "cannot answer the peer's KeyUpdate");
            c->state = FAILED;
            c->fail_code = RTMS_TLS_ERROR;
        }
        clear_errors();
    }
}

/* Handshake messages after the handshake (4.6): NewSessionTicket (ignored: no
   resumption here) and KeyUpdate; a message may span records. */
static void rx_handshake(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    const uint8_t *p = data;
    size_t avail = len, off = 0, rest;
    if (c->rx_hs_len > 0) {
        if (len > RX_HS_CAP - c->rx_hs_len) {
            rx_fail(c, NULL, 0, "post-handshake message too long");
            return;
        }
        memcpy(c->rx_hs + c->rx_hs_len, data, len);
        c->rx_hs_len += len;
        p = c->rx_hs;
        avail = c->rx_hs_len;
    }
    while (avail - off >= 4) {
        size_t body = (size_t)p[off + 1] << 16 | (size_t)p[off + 2] << 8 | p[off + 3];
        if (body > RX_HS_CAP - 4) {
            rx_fail(c, NULL, 0, "post-handshake message too long");
            return;
        }
        if (avail - off < 4 + body)
            break;
        if (p[off] == 24) { /* KeyUpdate: must end its record (keys change after it) */
            if (body != 1 || p[off + 4] > 1 || off + 5 != avail) {
                rx_fail(c, NULL, 0, "malformed KeyUpdate");
                return;
            }
            rx_key_update(c, p[off + 4]);
            if (c->state != LIVE)
                return;
        } else if (p[off] != 4) {
            rx_fail(c, NULL, 0, "unexpected post-handshake message");
            return;
        }
        off += 4 + body;
    }
    rest = avail - off;
    if (rest == 0) {
        free(c->rx_hs);
        c->rx_hs = NULL;
        c->rx_hs_len = 0;
        return;
    }
    if (p == c->rx_hs) {
        memmove(c->rx_hs, c->rx_hs + off, rest);
    } else {
        if (c->rx_hs == NULL && (c->rx_hs = malloc(RX_HS_CAP)) == NULL) {
            rx_fail(c, NULL, 0, "out of memory");
            return;
        }
        memcpy(c->rx_hs, p + off, rest);
    }
    c->rx_hs_len = rest;
}

static void rx_alert(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    if (len != 2) {
        rx_fail(c, NULL, 0, "malformed alert");
        return;
    }
    if (data[1] == SSL_AD_CLOSE_NOTIFY) {
        c->state = CLOSED;
        snprintf(c->err, sizeof c->err, "the peer closed the TLS session (close_notify)");
        /* so that SSL_shutdown completes without reading */
        SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_RECEIVED_SHUTDOWN);
        return;
    }
    if (data[1] == SSL_AD_USER_CANCELLED) /* a close_notify follows */
        return;
    c->state = FAILED; /* every other alert is fatal in TLS 1.3; nothing is sent back */
    c->fail_code = RTMS_TLS_ERROR;
    snprintf(c->err, sizeof c->err, "read failed: the peer sent a fatal alert: %s (%d)",
             SSL_alert_desc_string_long(data[1]), data[1]);
}

/* Decrypt one record body (header at rec) into plain; 1 when it authenticates. */
static int rx_open(rtms_tls_conn *c, const uint8_t *rec, size_t body, uint8_t *plain)
{
    uint8_t nonce[RX_IV_LEN];
    int n1 = 0, n2 = 0;
    size_t n = body - RX_TAG;
    memcpy(nonce, c->rx_iv, RX_IV_LEN);
    for (int i = 0; i < 8; i++)
        nonce[RX_IV_LEN - 1 - i] ^= (uint8_t)(c->rx_seq >> (8 * i));
    if (EVP_DecryptInit_ex(c->rx_aead, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(c->rx_aead, NULL, &n1, rec, RX_HEADER) != 1
        || EVP_DecryptUpdate(c->rx_aead, plain, &n1, rec + RX_HEADER, (int)n) != 1
        || EVP_CIPHER_CTX_ctrl(c->rx_aead, EVP_CTRL_AEAD_SET_TAG, RX_TAG,
                               (void *)(rec + RX_HEADER + n)) != 1
        || EVP_DecryptFinal_ex(c->rx_aead, plain + n1, &n2) != 1)
        return 0;
    c->rx_seq++;
    return (size_t)n1 + (size_t)n2 == n;
}

/* Decrypt the complete records at the start of src[0..len) into out[*pos..cap),
   application data appended at *pos. Returns the bytes of src used. Stops at a
   partial record, when out has no room for the next record (*full = 1), at the
   peer's close_notify and on failure (c->state tells). */
static size_t rx_records(rtms_tls_conn *c, const uint8_t *src, size_t len, uint8_t *out,
                         size_t cap, size_t *pos, int *full)
{
    size_t used = 0;
    while (c->state == LIVE && len - used >= RX_HEADER) {
        const uint8_t *rec = src + used;
        size_t body = (size_t)rec[3] << 8 | rec[4];
        size_t inner;
        uint8_t *plain;
        int spill;
        if (rec[0] != 23 || rec[1] != 3 || rec[2] != 3) {
            rx_fail(c, rec, len - used, "unexpected record type or version after the handshake");
            break;
        }
        if (body <= RX_TAG || body > RX_MAX_BODY) {
            rx_fail(c, rec, len - used, "record length out of range");
            break;
        }
        if (len - used < RX_HEADER + body)
            break; /* partial */
        spill = cap - *pos < body - RX_TAG;
        if (spill) { /* decrypt aside: it may be a ticket, or data to deliver in part */
            if (out == c->rx_plain || c->rx_plain_len > 0) {
                *full = 1;
                break;
            }
            if (c->rx_plain == NULL && (c->rx_plain = malloc(RX_MAX_BODY)) == NULL) {
                rx_fail(c, NULL, 0, "out of memory");
                break;
            }
        }
        plain = spill ? c->rx_plain : out + *pos;
        if (!rx_open(c, rec, body, plain)) {
            rx_fail(c, rec, RX_HEADER + body, NULL);
            break;
        }
        used += RX_HEADER + body;
        c->rx_record = rec;
        c->rx_record_len = RX_HEADER + body;
        inner = body - RX_TAG; /* content | type | zero padding */
        while (inner > 0 && plain[inner - 1] == 0)
            inner--;
        if (inner == 0) {
            rx_fail(c, NULL, 0, "record without a content type");
            break;
        }
        inner--;
        if (inner > RX_MAX_CONTENT) {
            rx_fail(c, NULL, 0, "record overflow");
            break;
        }
        if (plain[inner] != 22 && c->rx_hs_len > 0) {
            rx_fail(c, NULL, 0, "a handshake message interrupted by another record type");
            break;
        }
        switch (plain[inner]) {
        case 23: /* application data */
            if (spill) { /* what fits now, the rest stays buffered */
                size_t n = cap - *pos < inner ? cap - *pos : inner;
                memcpy(out + *pos, plain, n);
                c->rx_plain_off = n;
                c->rx_plain_len = inner - n;
                inner = n;
            }
            *pos += inner;
            break;
        case 22:
            rx_handshake(c, plain, inner);
            break;
        case 21:
            rx_alert(c, plain, inner);
            break;
        default:
            rx_fail(c, NULL, 0, "unexpected record content type after the handshake");
            break;
        }
        if (spill && c->rx_plain_len > 0) {
            *full = 1;
            break;
        }
        if (spill) {
            free(c->rx_plain);
            c->rx_plain = NULL;
            c->rx_plain_off = 0;
        }
        c->rx_record = NULL;
    }
    c->rx_record = NULL;
    return used;
}

/* Decrypt what rx_buf holds into rx_plain (allocated while it holds something). */
static void rx_fill_plain(rtms_tls_conn *c)
{
    int full = 0;
    size_t pos = 0, used;
    if (c->rx_plain == NULL && (c->rx_plain = malloc(RX_MAX_BODY)) == NULL) {
        rx_fail(c, NULL, 0, "out of memory");
        return;
    }
    used = rx_records(c, c->rx_buf, c->rx_len, c->rx_plain, RX_MAX_BODY, &pos, &full);
    rx_consume(c, used);
    c->rx_plain_off = 0;
    c->rx_plain_len = pos;
    if (pos == 0) {
        free(c->rx_plain);
        c->rx_plain = NULL;
    }
}

/* Move buffered plaintext to out; returns the count. */
static size_t rx_take_plain(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    size_t n = c->rx_plain_len < cap ? c->rx_plain_len : cap;
    memcpy(out, c->rx_plain + c->rx_plain_off, n);
    c->rx_plain_off += n;
    c->rx_plain_len -= n;
    if (c->rx_plain_len == 0) {
        free(c->rx_plain);
        c->rx_plain = NULL;
        c->rx_plain_off = 0;
    }
    return n;
}

/* rtms_tls_read on the own record layer. */
static int64_t rx_read(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    if (cap == 0 && (c->state == LIVE || c->rx_plain_len > 0))
        return 0;
    for (;;) {
        size_t before;
        if (c->rx_plain_len > 0)
            return (int64_t)rx_take_plain(c, out, cap);
        if (c->state != LIVE)
            return sticky(c);
        before = c->rx_len;
        rx_fill_plain(c);
        if (c->rx_plain_len == 0 && c->state == LIVE && c->rx_len == before) {
            if (!c->input_eof) /* no complete record */
                return RTMS_TLS_WANT_READ;
            rx_eof(c);
        }
    }
}

/* One connection of rtms_tls_decrypt_batch on the own record layer: in[0..in_len)
   decrypted in place when nothing is buffered (the usual case), else appended first. */
static void rx_batch_one(rtms_tls_conn *c, const uint8_t *in, size_t in_len, uint8_t *out,
                         size_t cap, size_t *pos, int *more)
{
    int full = 0;
    if (c->rx_plain_len > 0) { /* left by a single read */
        *pos += rx_take_plain(c, out + *pos, cap - *pos);
        full = c->rx_plain_len > 0;
    }
    if (c->state != LIVE) { /* closed or failed earlier: nothing more is read */
        *more = c->rx_plain_len > 0;
        return;
    }
    if (full || c->rx_len > 0) {
        if (!rx_append(c, in, in_len)) {
            rx_fail(c, NULL, 0, "cannot buffer the input (out of memory)");
            return;
        }
        if (!full)
            rx_consume(c, rx_records(c, c->rx_buf, c->rx_len, out, cap, pos, &full));
    } else {
        size_t used = rx_records(c, in, in_len, out, cap, pos, &full);
        if (c->state != FAILED && !rx_append(c, in + used, in_len - used))
            rx_fail(c, NULL, 0, "cannot buffer the input (out of memory)");
    }
    if (c->state == LIVE && !full && c->input_eof)
        rx_eof(c);
    *more = full && c->state == LIVE;
}

int rtms_tls_handshake(rtms_tls_conn *c)
{
    int r;
    if (c->state == FAILED)
        return c->fail_code;
    if (SSL_is_init_finished(c->ssl)) {
        rx_take_over(c); /* after a write completed it */
        return RTMS_TLS_OK;
    }
    clear_errors();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        rx_take_over(c);
        return c->state == LIVE ? RTMS_TLS_OK : c->fail_code;
    }
    return classify(c, r, "handshake failed");
}

int rtms_tls_handshake_done(const rtms_tls_conn *c) { return SSL_is_init_finished(c->ssl); }

int64_t rtms_tls_feed(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    size_t done = 0;
    if (c->input_eof)
        return RTMS_TLS_ERROR;
    if (c->rx_own)
        return rx_append(c, data, len) ? (int64_t)len : RTMS_TLS_ERROR;
    while (done < len) { /* BIO_write takes an int */
        int chunk = len - done > INT_MAX ? INT_MAX : (int)(len - done);
        if (BIO_write(c->in, data + done, chunk) != chunk) {
            clear_errors();
            return RTMS_TLS_ERROR; /* out of memory; what was written stays */
        }
        done += (size_t)chunk;
    }
    return (int64_t)len;
}

void rtms_tls_feed_eof(rtms_tls_conn *c)
{
    c->input_eof = 1;
    BIO_set_mem_eof_return(c->in, 0); /* an empty input now reads as end of stream */
}

int rtms_tls_input_eof(const rtms_tls_conn *c) { return c->input_eof; }

int64_t rtms_tls_read(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    size_t got = 0;
    if (c->rx_own)
        return rx_read(c, out, cap);
    if (c->state != LIVE)
        return sticky(c);
    if (cap == 0)
        return 0;
    if (!c->rx_decided) {
        rx_settle(c);
        if (c->state != LIVE)
            return sticky(c);
        if (!SSL_is_init_finished(c->ssl))
            return RTMS_TLS_WANT_READ;
        if (c->rx_own)
            return rx_read(c, out, cap);
    }
    clear_errors();
    if (SSL_read_ex(c->ssl, out, cap, &got) == 1)
        return (int64_t)got;
    return classify(c, 0, "read failed");
}

int64_t rtms_tls_write(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    size_t put = 0;
    if (c->state == FAILED)
        return c->fail_code;
    if (len == 0)
        return 0;
    clear_errors();
    if (SSL_write_ex(c->ssl, data, len, &put) == 1) {
        rx_take_over(c); /* the write may have completed the handshake */
        return (int64_t)put;
    }
    return classify(c, 0, "write failed");
}

int rtms_tls_shutdown(rtms_tls_conn *c)
{
    int r;
    if (c->state == FAILED)
        return c->fail_code;
    if (c->rx_own && c->state == LIVE && (SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN)) {
        /* ours went out: read on for the peer's, dropping data as OpenSSL does */
        while (c->state == LIVE && c->rx_len > 0) {
            size_t before = c->rx_len;
            rx_fill_plain(c);
            free(c->rx_plain);
            c->rx_plain = NULL;
            c->rx_plain_len = c->rx_plain_off = 0;
            if (c->rx_len == before)
                break;
        }
        if (c->state == LIVE && c->input_eof)
            rx_eof(c);
        if (c->state == FAILED)
            return c->fail_code;
        if (c->state == LIVE)
            return RTMS_TLS_WANT_READ;
    }
    clear_errors();
    r = SSL_shutdown(c->ssl);
    if (r == 1)
        return RTMS_TLS_OK;
    if (r == 0) { /* ours is queued, the peer's has not come yet */
        clear_errors();
        return RTMS_TLS_WANT_READ;
    }
    r = classify(c, r, "shutdown failed");
    return r == RTMS_TLS_CLOSED ? RTMS_TLS_WANT_READ : r;
}

int rtms_tls_key_update(rtms_tls_conn *c, int request_peer)
{
    int r;
    if (c->state != LIVE)
        return RTMS_TLS_ERROR;
    clear_errors();
    if (SSL_key_update(c->ssl, request_peer ? SSL_KEY_UPDATE_REQUESTED
                                            : SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
        /* not a failure of the connection: leave the state alone */
        drain_errors(c->err, sizeof c->err, "key update refused");
        return RTMS_TLS_ERROR;
    }
    /* The message is written on the next SSL_write or SSL_do_handshake: write it now. */
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        clear_errors();
        return RTMS_TLS_OK;
    }
    return classify(c, r, "key update failed") == RTMS_TLS_WANT_READ ? RTMS_TLS_OK
                                                                       : RTMS_TLS_ERROR;
}

size_t rtms_tls_output_pending(const rtms_tls_conn *c) { return BIO_ctrl_pending(c->out); }

/* Move up to cap bytes out of a memory BIO. */
static int64_t drain_bio(BIO *bio, uint8_t *out, size_t cap)
{
    size_t got = 0;
    if (cap == 0 || BIO_ctrl_pending(bio) == 0)
        return 0;
    if (BIO_read_ex(bio, out, cap, &got) != 1)
        got = 0;
    clear_errors();
    return (int64_t)got;
}

int64_t rtms_tls_take_output(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    return drain_bio(c->out, out, cap);
}

size_t rtms_tls_input_pending(const rtms_tls_conn *c)
{
    return c->rx_own ? c->rx_len : BIO_ctrl_pending(c->in);
}

int64_t rtms_tls_take_input(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    size_t n;
    if (!c->rx_own)
        return drain_bio(c->in, out, cap);
    n = c->rx_len < cap ? c->rx_len : cap;
    if (n > 0)
        memcpy(out, c->rx_buf, n);
    rx_consume(c, n);
    return (int64_t)n;
}

size_t rtms_tls_plain_pending(const rtms_tls_conn *c)
{
    int n;
    if (c->rx_own)
        return c->rx_plain_len;
    n = SSL_pending(c->ssl);
    return n > 0 ? (size_t)n : 0;
}

const char *rtms_tls_version(const rtms_tls_conn *c)
{
    return SSL_is_init_finished(c->ssl) ? SSL_get_version(c->ssl) : NULL;
}

const char *rtms_tls_conn_error(const rtms_tls_conn *c) { return c->err; }
int rtms_tls_verify_error(const rtms_tls_conn *c) { return c->verify_error; }
const char *rtms_tls_verify_message(const rtms_tls_conn *c) { return c->verify_msg; }

/* Whether a read could make progress: decrypted bytes, a buffered (partial) record,
   fed ciphertext, or an input end still to be reported. */
static int readable(const rtms_tls_conn *c)
{
    return SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl) || BIO_ctrl_pending(c->in) > 0
           || c->input_eof;
}

int64_t rtms_tls_decrypt_batch(rtms_tls_conn *const *conns, const uint8_t *const *in,
                               const size_t *in_lens, size_t n, uint8_t *out, size_t cap,
                               size_t *out_offsets, size_t *out_lens, int32_t *status)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        rtms_tls_conn *c = conns[i];
        int32_t st = 0;
        out_offsets[i] = pos;
        out_lens[i] = 0;
        if (c == NULL) {
            status[i] = RTMS_TLS_STATUS_ERROR;
            continue;
        }
        if (c->rx_own) {
            int more = 0;
            rx_batch_one(c, in[i], in_lens[i], out, cap, &pos, &more);
            st |= more ? RTMS_TLS_STATUS_MORE : 0;
            goto done;
        }
        /* After a close or a failure, nothing more is decrypted: drop the input. */
        if (c->state == LIVE && in_lens[i] > 0 && rtms_tls_feed(c, in[i], in_lens[i]) < 0) {
            c->state = FAILED;
            c->fail_code = RTMS_TLS_ERROR;
            snprintf(c->err, sizeof c->err, "%s",
                     c->input_eof ? "input after the end of the stream (rtms_tls_feed_eof)"
                                  : "cannot buffer the input (out of memory)");
        }
        if (c->state == LIVE && !c->rx_decided) {
            rx_settle(c); /* the fed bytes moved to rx_buf if it took over */
            if (c->rx_own) {
                int more = 0;
                rx_batch_one(c, NULL, 0, out, cap, &pos, &more);
                st |= more ? RTMS_TLS_STATUS_MORE : 0;
                goto done;
            }
        }
        if (c->state == LIVE && SSL_is_init_finished(c->ssl)) {
            /* Reading until OpenSSL says WANT_READ would cost one more call per socket;
               read while a read could use something (just fed: surely). */
            int more = in_lens[i] > 0 || readable(c);
            while (more && pos < cap) {
                size_t got = 0;
                clear_errors();
                if (SSL_read_ex(c->ssl, out + pos, cap - pos, &got) != 1) {
                    classify(c, 0, "read failed");
                    more = 0;
                    break;
                }
                pos += got;
                more = readable(c);
            }
            if (more && c->state == LIVE)
                st |= RTMS_TLS_STATUS_MORE;
        }
    done:
        st |= c->state == LIVE     ? RTMS_TLS_STATUS_OK
              : c->state == CLOSED ? RTMS_TLS_STATUS_CLOSED
                                   : RTMS_TLS_STATUS_ERROR;
        /* On the own record layer only rx_fail and rx_key_update make OpenSSL write while
           reading: the output BIO (a cold cache line per connection) is looked at only then. */
        if ((!c->rx_own || c->rx_wrote) && BIO_ctrl_pending(c->out) > 0)
            st |= RTMS_TLS_STATUS_OUTPUT_PENDING;
        else
            c->rx_wrote = 0;
        out_lens[i] = pos - out_offsets[i];
        status[i] = st;
    }
    return (int64_t)pos;
}

#endif /* RTMS_NO_OPENSSL */
