/*
 * send_batch.c - many non-blocking socket sends in one call.
 *
 * A paced sender (the simulator's media sweep) writes one small frame to each
 * of hundreds of sockets every tick. Done from Python that is one method call,
 * one exception check and one result object per socket; here the whole sweep
 * is one call with the GIL released. The kernel cost of each send() remains.
 */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* send(), ssize_t; must precede every system header */
#endif
#include "rtms_native.h"

#include <errno.h>

#if defined(_WIN32)

size_t rtms_send_batch(const int *fds, const uint8_t *data, const size_t *lens, size_t n,
                       int64_t *results)
{
    for (size_t i = 0; i < n; i++)
        results[i] = -ENOSYS;
    (void)fds; (void)data; (void)lens;
    return 0;
}
#else
#include <sys/socket.h>
#include <sys/types.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SIGPIPE is ignored by Python anyway */
#endif

size_t rtms_send_batch(const int *fds, const uint8_t *data, const size_t *lens, size_t n,
                       int64_t *results)
{
    size_t complete = 0;
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        ssize_t sent;
        do {
            sent = send(fds[i], p, lens[i], MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0)
            results[i] = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(int64_t)errno;
        else
            results[i] = (int64_t)sent;
        complete += sent >= 0 && (size_t)sent == lens[i];
        p += lens[i];
    }
    return complete;
}
#endif
