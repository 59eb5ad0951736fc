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
 * (rtms_tls_take_output): the sockets stay in the caller's hands.
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

struct rtms_tls_ctx {
    SSL_CTX *ssl_ctx;
    int verify;
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

int rtms_tls_handshake(rtms_tls_conn *c)
{
    int r;
    if (c->state == FAILED)
        return c->fail_code;
    if (SSL_is_init_finished(c->ssl))
        return RTMS_TLS_OK;
    clear_errors();
    r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return RTMS_TLS_OK;
    return classify(c, r, "handshake failed");
}

int rtms_tls_handshake_done(const rtms_tls_conn *c) { return SSL_is_init_finished(c->ssl); }

int64_t rtms_tls_feed(rtms_tls_conn *c, const uint8_t *data, size_t len)
{
    size_t done = 0;
    if (c->input_eof)
        return RTMS_TLS_ERROR;
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
    if (c->state != LIVE)
        return sticky(c);
    if (cap == 0)
        return 0;
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
    if (SSL_write_ex(c->ssl, data, len, &put) == 1)
        return (int64_t)put;
    return classify(c, 0, "write failed");
}

int rtms_tls_shutdown(rtms_tls_conn *c)
{
    int r;
    if (c->state == FAILED)
        return c->fail_code;
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

size_t rtms_tls_input_pending(const rtms_tls_conn *c) { return BIO_ctrl_pending(c->in); }

int64_t rtms_tls_take_input(rtms_tls_conn *c, uint8_t *out, size_t cap)
{
    return drain_bio(c->in, out, cap);
}

size_t rtms_tls_plain_pending(const rtms_tls_conn *c)
{
    int n = SSL_pending(c->ssl);
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
        /* After a close or a failure, nothing more is decrypted: drop the input. */
        if (c->state == LIVE && in_lens[i] > 0 && rtms_tls_feed(c, in[i], in_lens[i]) < 0) {
            c->state = FAILED;
            c->fail_code = RTMS_TLS_ERROR;
            snprintf(c->err, sizeof c->err, "%s",
                     c->input_eof ? "input after the end of the stream (rtms_tls_feed_eof)"
                                  : "cannot buffer the input (out of memory)");
        }
        if (c->state == LIVE) {
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
        st |= c->state == LIVE     ? RTMS_TLS_STATUS_OK
              : c->state == CLOSED ? RTMS_TLS_STATUS_CLOSED
                                   : RTMS_TLS_STATUS_ERROR;
        if (BIO_ctrl_pending(c->out) > 0)
            st |= RTMS_TLS_STATUS_OUTPUT_PENDING;
        out_lens[i] = pos - out_offsets[i];
        status[i] = st;
    }
    return (int64_t)pos;
}

#endif /* RTMS_NO_OPENSSL */
