/*
 * recv_batch.c - many non-blocking socket receives in one call.
 *
 * The media pump sweeps hundreds of sockets every tick and each has one small
 * audio frame waiting. Done from Python that is one method call, one
 * exception check and one bytes object per socket; here the readiness check
 * (one epoll_wait) and every recv() are one call each with the GIL released,
 * straight into one caller-owned arena that the ingest kernel then reads.
 * The kernel cost of each recv() remains.
 */
#if !defined(_WIN32)
#define _DEFAULT_SOURCE /* recv(), ssize_t, TCP_QUICKACK; must precede every system header */
#endif
#include "rtms_native.h"

#include <errno.h>

#if defined(__linux__)
#include <sys/epoll.h>
#endif
#if !defined(_WIN32)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

int64_t rtms_recv_batch(const int32_t *fds, size_t n, uint8_t *buf, size_t cap,
                        size_t max_per_fd, uint32_t flags, const uint8_t *rearm_ack,
                        size_t *offsets, size_t *lens, int64_t *results)
{
    size_t pos = 0;
#if defined(_WIN32)
    for (size_t i = 0; i < n; i++) {
        offsets[i] = 0;
        lens[i] = 0;
        results[i] = -ENOSYS;
    }
    (void)fds; (void)buf; (void)cap; (void)max_per_fd; (void)flags; (void)rearm_ack;
    (void)pos;
    return 0;
#else
    for (size_t i = 0; i < n; i++) {
        size_t room = cap - pos;
        offsets[i] = pos;
        lens[i] = 0;
        if (room > max_per_fd)
            room = max_per_fd;
        if (room == 0) {
            results[i] = RTMS_RECV_SKIPPED;
            continue;
        }
#if defined(TCP_QUICKACK)
        if ((flags & RTMS_RECV_DELAY_ACK) && (rearm_ack == NULL || rearm_ack[i])) {
            /* Linux leaves this mode whenever its delayed-ACK timer fires; from then on
               every read sends an ACK of its own until the mode is set again. The
               caller knows when the timer may have fired (rearm_ack); each setsockopt
               is a system call, about 0.7 us per message when done on every read. */
            int off = 0;
            (void)setsockopt(fds[i], IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
        }
#else
        (void)flags; (void)rearm_ack;
#endif
        ssize_t got;
        do {
            got = recv(fds[i], buf + pos, room, MSG_DONTWAIT);
        } while (got < 0 && errno == EINTR);
        if (got > 0) {
            lens[i] = (size_t)got;
            results[i] = (int64_t)got;
            pos += (size_t)got;
        } else if (got == 0) {
            results[i] = RTMS_RECV_EOF;
        } else {
            results[i] = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(int64_t)errno;
        }
    }
    return (int64_t)pos;
#endif
}

size_t rtms_epoll_event_bytes(void)
{
#if defined(__linux__)
    return sizeof(struct epoll_event);
#else
    return 1;
#endif
}

int64_t rtms_epoll_ready(int32_t epfd, void *scratch, size_t scratch_bytes, int32_t *fds,
                         size_t max_fds)
{
#if defined(__linux__)
    size_t max_events = scratch_bytes / sizeof(struct epoll_event);
    if (max_events > max_fds)
        max_events = max_fds;
    if (max_events > 0x7fffffff)
        max_events = 0x7fffffff;
    if (max_events == 0)
        return -EINVAL;
    struct epoll_event *events = scratch;
    int got;
    do {
        got = epoll_wait(epfd, events, (int)max_events, 0);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -(int64_t)errno;
    for (int i = 0; i < got; i++)
        fds[i] = events[i].data.fd;
    return got;
#else
    (void)epfd; (void)scratch; (void)scratch_bytes; (void)fds; (void)max_fds;
    return -ENOSYS;
#endif
}
