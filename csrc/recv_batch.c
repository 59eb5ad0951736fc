/*
 * recv_batch.c - many non-blocking socket receives in one call.
 *
 * The media pump sweeps hundreds of sockets every tick and each has one small
 * audio frame waiting. Done from Python that is one method call, one
 * exception check and one bytes object per socket; here the readiness check
 * (one epoll_wait) and every recv() are one call each with the GIL released,
 * straight into one caller-owned arena that the ingest kernel then reads.
 * The kernel cost of each recv() remains.
 *
 * The pump's sweep functions work on its tables indexed by descriptor (how
 * to read each socket, its ingest connection, when it last gave bytes...):
 * what would otherwise be a dozen array operations per sweep, each a pass
 * over every socket from Python, is one pass here.
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

#if !defined(_WIN32)
/* Linux leaves delayed-ACK mode whenever its delayed-ACK timer fires; from then on
   every read sends an ACK of its own until the mode is set again. The caller knows
   when the timer may have fired; each setsockopt is a system call, about 0.7 us per
   message when done on every read. */
static void delay_acks(int32_t fd)
{
#if defined(TCP_QUICKACK)
    int off = 0;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
#else
    (void)fd;
#endif
}

/* One recv(MSG_DONTWAIT): bytes read, 0 (nothing waiting), RTMS_RECV_EOF or -errno. */
static int64_t recv_once(int32_t fd, uint8_t *dst, size_t room)
{
    ssize_t got;
    do {
        got = recv(fd, dst, room, MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    if (got > 0)
        return (int64_t)got;
    if (got == 0)
        return RTMS_RECV_EOF;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -(int64_t)errno;
}
#endif

/* ---- the pump's sweep over its descriptor tables -------------------------------- */

static int fd_known(const rtms_fd_tables *t, int32_t fd)
{
    return fd >= 0 && (size_t)fd < t->size;
}

size_t rtms_sweep_split(const int32_t *fds, size_t n, const rtms_fd_tables *t,
                        int python_need_conn, int32_t *arena_fds, int32_t *python_fds,
                        size_t *python_count)
{
    size_t arena = 0, python = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t fd = fds[i];
        if (fd_known(t, fd) && t->kind[fd] != RTMS_FD_PYTHON) {
            arena_fds[arena++] = fd;
        } else if (!python_need_conn || (fd_known(t, fd) && t->conn[fd] != 0)) {
            python_fds[python++] = fd;
        }
    }
    *python_count = python;
    return arena;
}

int64_t rtms_recv_sweep(const int32_t *fds, size_t n, rtms_fd_tables *t, double now,
                        double ack_gap_s, double ack_rearm_s, uint32_t flags, uint8_t *arena,
                        size_t cap, size_t max_per_fd, rtms_sweep_inputs *in,
                        int32_t *fail_fds, int64_t *fail_codes, rtms_recv_sweep_result *out)
{
    rtms_recv_sweep_result r = {0, 0, 0, 0, 0, 0};
#if defined(_WIN32)
    (void)fds; (void)n; (void)t; (void)now; (void)ack_gap_s; (void)ack_rearm_s; (void)flags;
    (void)arena; (void)cap; (void)max_per_fd; (void)in; (void)fail_fds; (void)fail_codes;
    *out = r;
    return -ENOSYS;
#else
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t fd = fds[i];
        if (!fd_known(t, fd)) {
            fail_fds[r.failures] = fd;
            fail_codes[r.failures++] = -EBADF;
            continue;
        }
        size_t room = cap - pos;
        if (room > max_per_fd)
            room = max_per_fd;
        if (room == 0) {
            r.skipped++; /* the arena is full: read next sweep */
            continue;
        }
        if (flags & RTMS_RECV_DELAY_ACK) {
            /* after a gap (the timer may have fired), once, and periodically anyway */
            double activity = t->activity_s[fd], armed = t->ack_armed_s[fd];
            if ((now - activity >= ack_gap_s && armed <= activity) ||
                now - armed >= ack_rearm_s) {
                delay_acks(fd);
                t->ack_armed_s[fd] = now;
                r.ack_rearms++;
            }
        }
        int64_t got = recv_once(fd, arena + pos, room);
        if (got > 0) {
            size_t k = r.inputs++;
            in->fds[k] = fd;
            in->conns[k] = t->conn[fd];
            in->bufs[k] = (uint64_t)(uintptr_t)(arena + pos);
            in->lens[k] = (uint64_t)got;
            if (t->kind[fd] == RTMS_FD_TLS)
                r.tls_inputs++;
            t->activity_s[fd] = now;
            pos += (size_t)got;
        } else if (got < 0) {
            fail_fds[r.failures] = fd;
            fail_codes[r.failures++] = got;
        }
    }
    r.bytes = pos;
    *out = r;
    return 0;
#endif
}

size_t rtms_sweep_settle(const size_t *consumed, const size_t *lens, size_t n,
                         const int32_t *input_fds, rtms_fd_tables *t, int32_t *rest,
                         size_t *rest_count, int32_t *asked_fds)
{
    size_t asked = 0, left = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t fd = input_fds[i];
        if (consumed[i] > 0 && fd_known(t, fd) && t->wake[fd]) {
            t->wake[fd] = 0; /* cleared before the owner hears: a waiter arriving now asks again */
            asked_fds[asked++] = fd;
        }
        if (consumed[i] < lens[i])
            rest[left++] = (int32_t)i;
    }
    *rest_count = left;
    return asked;
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
