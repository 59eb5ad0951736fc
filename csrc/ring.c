/*
 * ring.c - single-producer single-consumer rings of fixed-size items in native
 * memory, with a shared memory budget.
 *
 * Theory of operation
 * -------------------
 * A ring holds `capacity` items of `item_size` bytes. Two monotonic 64-bit
 * positions count items since creation: write_pos (published by the producer)
 * and read_pos (published by the consumer); the slot of position p is
 * p % capacity. Positions never wrap in practice (2^64 items).
 *
 * Contiguity across the wrap: the ring's memory is a window of 2 * capacity
 * items in which item i and item i + capacity always hold the same bytes, so
 * any run of up to `capacity` items starting at any slot is contiguous.
 *   - double-mapped (Linux): one memfd of capacity bytes is mapped twice, back
 *     to back, into a reserved address range; the MMU keeps both halves equal
 *     and the pages cost capacity bytes once. The capacity is rounded up to a
 *     whole number of pages (and items). The descriptor is closed at once; each
 *     ring costs two memory mappings (vm.max_map_count, 65530 by default, caps
 *     a process near 30000 such rings; past it creation falls back).
 *   - mirrored (portable fallback, or forced by RTMS_RING_FLAG_MIRRORED): a
 *     plain 2 * capacity allocation; the producer copies every published run
 *     into the other half before publishing it. Capacity is not rounded.
 * Everything else (positions, policies, readers) is identical in both layouts.
 *
 * Ordering: the producer writes the items, then stores write_pos with release;
 * the consumer loads write_pos with acquire before touching the items. The
 * consumer stores read_pos with release after it is done with the items; a
 * producer that must not overwrite unread items (drop-newest, backpressure)
 * loads read_pos with acquire before reusing their slots.
 *
 * Drop-oldest: the producer never waits and never reads read_pos; it may lap
 * the consumer and overwrite items the consumer is looking at. Detection works
 * like a seqlock. Before touching any slot the producer stores write_claim
 * (the position its write will reach) and issues a release fence. The consumer
 *   1. at peek, skips items already overwritten (write_pos - read_pos >
 *      capacity): they are counted as lost (overrun);
 *   2. after using the items [p, p + n), issues an acquire fence and loads
 *      write_claim = c: the first clamp(c - capacity - p, 0, n) items may have
 *      been overwritten while in use and must be discarded; consume() reports
 *      and counts them, rtms_ring_read() never returns them. The claim is
 *      conservative: a reservation committed short (or abandoned) still counts
 *      as having touched every slot it handed out.
 * Only the consumer decides what is lost, so at rest, exactly,
 *   written == read + dropped_oldest + fill
 * where dropped_oldest = items the consumer found overwritten + items already
 * overwritten that it has not reached yet. The bytes copied while racing with
 * the producer are never trusted: this formal data race is confined to
 * drop-oldest mode and validated after the fact.
 *
 * Refusals: drop-newest and backpressure accept the prefix of a write that
 * fits and refuse the rest, counted in dropped_newest (the newest items are
 * lost) or refused (handed back to the producer, who may retry: a retried item
 * is counted once per refusal). A reservation is all or nothing.
 *
 * No global mutable state; no allocation after rtms_ring_new.
 */
#define _GNU_SOURCE
#include "rtms_native.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#define RING_HAVE_DOUBLE_MAP 1
#else
#define RING_HAVE_DOUBLE_MAP 0
#endif

#define RING_CACHE_LINE 64

struct rtms_budget {
    _Atomic uint64_t used_bytes;
    uint64_t limit_bytes;
    atomic_size_t refs; /* the owner's reference plus one per ring charged to it */
};

struct rtms_ring {
    /* immutable after creation */
    unsigned char *window; /* 2 * capacity items; item i aliases item i + capacity */
    size_t capacity;       /* items */
    size_t item_size;      /* bytes */
    size_t capacity_bytes;
    size_t footprint_bytes; /* charged to the budget */
    rtms_budget *budget;
    int policy;
    int double_mapped;
    atomic_size_t refs;
    char pad0[RING_CACHE_LINE];

    /* producer-written */
    _Atomic uint64_t write_pos;   /* items published */
    _Atomic uint64_t write_claim; /* drop-oldest: position a write in progress reaches */
    _Atomic uint64_t dropped_newest;
    _Atomic uint64_t refused;
    uint64_t cached_read_pos; /* producer-private copy of read_pos */
    size_t reserved;          /* items of the open reservation */
    char pad1[RING_CACHE_LINE];

    /* consumer-written */
    _Atomic uint64_t read_pos;      /* items consumed or found lost */
    _Atomic uint64_t read_items;    /* items consumed intact */
    _Atomic uint64_t overruns;      /* times the consumer found items overwritten */
    _Atomic uint64_t overrun_items; /* items it found overwritten */
    char pad2[RING_CACHE_LINE];
};

/* ---- budget ------------------------------------------------------------ */

rtms_budget *rtms_budget_new(uint64_t limit_bytes)
{
    rtms_budget *b = malloc(sizeof *b);
    if (b == NULL)
        return NULL;
    atomic_init(&b->used_bytes, 0);
    b->limit_bytes = limit_bytes;
    atomic_init(&b->refs, 1);
    return b;
}

static void budget_release(rtms_budget *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

void rtms_budget_free(rtms_budget *b)
{
    if (b != NULL)
        budget_release(b); /* rings still charged to it keep it alive */
}

uint64_t rtms_budget_used(const rtms_budget *b)
{
    return atomic_load_explicit(&((rtms_budget *)b)->used_bytes, memory_order_relaxed);
}

uint64_t rtms_budget_limit(const rtms_budget *b) { return b->limit_bytes; }

/* Charge n bytes if they fit under the limit; 0 on success. */
static int budget_charge(rtms_budget *b, uint64_t n)
{
    uint64_t used = atomic_load_explicit(&b->used_bytes, memory_order_relaxed);
    do {
        if (n > b->limit_bytes || used > b->limit_bytes - n)
            return -1;
    } while (!atomic_compare_exchange_weak_explicit(&b->used_bytes, &used, used + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 0;
}

static void budget_refund(rtms_budget *b, uint64_t n)
{
    atomic_fetch_sub_explicit(&b->used_bytes, n, memory_order_relaxed);
}

/* ---- creation ---------------------------------------------------------- */

static size_t page_size(void)
{
#if RING_HAVE_DOUBLE_MAP
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
#else
    return 4096;
#endif
}

static size_t gcd_size(size_t a, size_t b)
{
    while (b != 0) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Capacity in items after rounding; 0 when the request cannot be represented. */
static size_t ring_capacity_for(size_t capacity_items, size_t item_size, unsigned flags)
{
    /* 2 * capacity bytes plus rounding and the header must stay far from SIZE_MAX */
    if (capacity_items == 0 || item_size == 0 || capacity_items > SIZE_MAX / 4 / item_size)
        return 0;
    if (flags & RTMS_RING_FLAG_MIRRORED)
        return capacity_items;
    /* the mapped layout needs capacity_bytes to be a multiple of both the page and the item */
    size_t page = page_size();
    size_t unit = page / gcd_size(page, item_size) * item_size; /* lcm */
    size_t bytes = capacity_items * item_size;
    if (bytes > SIZE_MAX / 4 - unit)
        return 0;
    bytes = (bytes + unit - 1) / unit * unit;
    return bytes / item_size;
}

size_t rtms_ring_footprint_for(size_t capacity_items, size_t item_size, unsigned flags)
{
    size_t cap = ring_capacity_for(capacity_items, item_size, flags);
    if (cap == 0)
        return 0;
    int mapped = RING_HAVE_DOUBLE_MAP && !(flags & RTMS_RING_FLAG_MIRRORED);
    size_t data = mapped ? cap * item_size : 2 * cap * item_size;
    return data + sizeof(rtms_ring);
}

#if RING_HAVE_DOUBLE_MAP
/* Map `bytes` of one memfd twice, back to back. NULL on any failure. */
static unsigned char *map_double(size_t bytes)
{
    int fd = memfd_create("rtms-ring", MFD_CLOEXEC);
    if (fd < 0)
        return NULL;
    unsigned char *base = NULL;
    if (ftruncate(fd, (off_t)bytes) == 0) {
        void *span = mmap(NULL, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (span != MAP_FAILED) {
            unsigned char *s = span;
            void *lo = mmap(s, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
            void *hi = mmap(s + bytes, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
            if (lo == (void *)s && hi == (void *)(s + bytes))
                base = s;
            else
                munmap(span, 2 * bytes);
        }
    }
    close(fd); /* the mappings keep the pages; no descriptor per ring */
    return base;
}
#endif

rtms_ring *rtms_ring_new_ex(size_t capacity_items, size_t item_size, int policy,
                            rtms_budget *budget, unsigned flags, int *error)
{
    int err_storage;
    int *err = error != NULL ? error : &err_storage;
    *err = RTMS_RING_EARG;
    if (policy != RTMS_RING_DROP_OLDEST && policy != RTMS_RING_DROP_NEWEST &&
        policy != RTMS_RING_BACKPRESSURE)
        return NULL;
    if ((flags & ~(unsigned)RTMS_RING_FLAG_MIRRORED) != 0)
        return NULL;
    size_t cap = ring_capacity_for(capacity_items, item_size, flags);
    if (cap == 0)
        return NULL;
    size_t cap_bytes = cap * item_size;

    /* The budget is charged what the pages cost: cap_bytes once when double-mapped, twice
       when mirrored (also after a failed mapping, which then needs the difference). */
    int try_map = RING_HAVE_DOUBLE_MAP && !(flags & RTMS_RING_FLAG_MIRRORED);
    size_t footprint = (try_map ? cap_bytes : 2 * cap_bytes) + sizeof(rtms_ring);
    if (budget != NULL && budget_charge(budget, footprint) != 0) {
        *err = RTMS_RING_EBUDGET;
        return NULL;
    }
    rtms_ring *r = calloc(1, sizeof *r);
    if (r == NULL)
        goto nomem;
#if RING_HAVE_DOUBLE_MAP
    if (try_map) {
        r->window = map_double(cap_bytes);
        r->double_mapped = r->window != NULL;
    }
#endif
    if (r->window == NULL) {
        if (try_map) {
            if (budget != NULL && budget_charge(budget, cap_bytes) != 0) {
                free(r);
                budget_refund(budget, footprint);
                *err = RTMS_RING_EBUDGET;
                return NULL;
            }
            footprint += cap_bytes;
        }
        r->window = malloc(2 * cap_bytes);
        if (r->window == NULL) {
            free(r);
            goto nomem;
        }
    }
    r->capacity = cap;
    r->item_size = item_size;
    r->capacity_bytes = cap_bytes;
    r->footprint_bytes = footprint;
    r->policy = policy;
    r->budget = budget;
    if (budget != NULL)
        atomic_fetch_add_explicit(&budget->refs, 1, memory_order_relaxed);
    atomic_init(&r->refs, 1);
    atomic_init(&r->write_pos, 0);
    atomic_init(&r->write_claim, 0);
    atomic_init(&r->dropped_newest, 0);
    atomic_init(&r->refused, 0);
    atomic_init(&r->read_pos, 0);
    atomic_init(&r->read_items, 0);
    atomic_init(&r->overruns, 0);
    atomic_init(&r->overrun_items, 0);
    *err = RTMS_RING_OK;
    return r;

nomem:
    if (budget != NULL)
        budget_refund(budget, footprint);
    *err = RTMS_RING_ENOMEM;
    return NULL;
}

rtms_ring *rtms_ring_new(size_t capacity_items, size_t item_size, int policy, rtms_budget *budget)
{
    return rtms_ring_new_ex(capacity_items, item_size, policy, budget, 0, NULL);
}

void rtms_ring_retain(rtms_ring *r) { atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); }

void rtms_ring_release(rtms_ring *r)
{
    if (r == NULL || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
#if RING_HAVE_DOUBLE_MAP
    if (r->double_mapped)
        munmap(r->window, 2 * r->capacity_bytes);
    else
        free(r->window);
#else
    free(r->window);
#endif
    if (r->budget != NULL) {
        budget_refund(r->budget, r->footprint_bytes);
        budget_release(r->budget);
    }
    free(r);
}

/* ---- accessors --------------------------------------------------------- */

size_t rtms_ring_capacity(const rtms_ring *r) { return r->capacity; }
size_t rtms_ring_item_size(const rtms_ring *r) { return r->item_size; }
int rtms_ring_policy(const rtms_ring *r) { return r->policy; }
int rtms_ring_is_double_mapped(const rtms_ring *r) { return r->double_mapped; }
size_t rtms_ring_footprint(const rtms_ring *r) { return r->footprint_bytes; }
void *rtms_ring_window(const rtms_ring *r) { return r->window; }

/* ---- producer ---------------------------------------------------------- */

static inline size_t slot_of(const rtms_ring *r, uint64_t pos) { return (size_t)(pos % r->capacity); }

static inline unsigned char *slot_ptr(const rtms_ring *r, uint64_t pos)
{
    return r->window + slot_of(r, pos) * r->item_size;
}

/* Free slots for drop-newest/backpressure; reloads read_pos only when the cache says < need. */
static size_t free_items(rtms_ring *r, uint64_t w, size_t need)
{
    size_t free_now = r->capacity - (size_t)(w - r->cached_read_pos);
    if (free_now < need) {
        r->cached_read_pos = atomic_load_explicit(&r->read_pos, memory_order_acquire);
        free_now = r->capacity - (size_t)(w - r->cached_read_pos);
    }
    return free_now;
}

/* Mirrored layout: copy the run of n items at slot s (in the window) to its twin half. */
static void mirror_sync(rtms_ring *r, size_t s, size_t n)
{
    if (r->double_mapped || n == 0)
        return;
    size_t isz = r->item_size, cap = r->capacity;
    size_t low_end = s + n < cap ? s + n : cap; /* part in the lower half: [s, low_end) */
    memcpy(r->window + (s + cap) * isz, r->window + s * isz, (low_end - s) * isz);
    if (s + n > cap) /* part that ran into the upper half: [cap, s + n) */
        memcpy(r->window, r->window + cap * isz, (s + n - cap) * isz);
}

/* Drop-oldest: announce the position this write will reach before touching slots. */
static inline void claim_to(rtms_ring *r, uint64_t end)
{
    if (end > atomic_load_explicit(&r->write_claim, memory_order_relaxed))
        atomic_store_explicit(&r->write_claim, end, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void count_refusal(rtms_ring *r, size_t n)
{
    _Atomic uint64_t *counter = r->policy == RTMS_RING_BACKPRESSURE ? &r->refused : &r->dropped_newest;
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Shared body of write and write_silence: items == NULL writes zero items. */
static size_t ring_put(rtms_ring *r, const void *items, size_t n)
{
    if (n == 0)
        return 0;
    r->reserved = 0; /* a write abandons any open reservation */
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    size_t isz = r->item_size;
    const unsigned char *src = items;
    size_t accept = n, skip = 0;
    if (r->policy == RTMS_RING_DROP_OLDEST) {
        /* more than a ringful: only the last `capacity` items can survive; the rest are
           published as positions the consumer will find overwritten (counted by it) */
        if (n > r->capacity) {
            skip = n - r->capacity;
            if (src != NULL)
                src += skip * isz;
        }
        claim_to(r, w + n);
    } else {
        size_t room = free_items(r, w, n);
        if (accept > room) {
            count_refusal(r, accept - room);
            accept = room;
            if (accept == 0)
                return 0;
        }
    }
    uint64_t start = w + skip;
    size_t run = accept - skip;
    size_t s = slot_of(r, start);
    if (src != NULL)
        memcpy(r->window + s * isz, src, run * isz);
    else
        memset(r->window + s * isz, 0, run * isz);
    mirror_sync(r, s, run);
    atomic_store_explicit(&r->write_pos, w + accept, memory_order_release);
    return accept;
}

size_t rtms_ring_write(rtms_ring *r, const void *items, size_t n)
{
    if (items == NULL)
        return 0;
    return ring_put(r, items, n);
}

size_t rtms_ring_write_silence(rtms_ring *r, size_t n) { return ring_put(r, NULL, n); }

void *rtms_ring_reserve(rtms_ring *r, size_t n)
{
    r->reserved = 0;
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    if (n > r->capacity) {
        /* no policy can hold more than a ringful in one contiguous run */
        count_refusal(r, n);
        return NULL;
    }
    if (r->policy == RTMS_RING_DROP_OLDEST) {
        claim_to(r, w + n);
    } else if (free_items(r, w, n) < n) {
        count_refusal(r, n);
        return NULL;
    }
    r->reserved = n;
    return slot_ptr(r, w);
}

const void *rtms_ring_next_write(const rtms_ring *r)
{
    return slot_ptr(r, atomic_load_explicit(&r->write_pos, memory_order_relaxed));
}

void rtms_ring_prefetch_producer(const rtms_ring *r)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(r, 0, 3);               /* window, capacity, item size, policy */
    __builtin_prefetch(&r->write_pos, 1, 3);   /* the producer's line */
#else
    (void)r;
#endif
}

void rtms_ring_commit(rtms_ring *r, size_t n)
{
    if (n > r->reserved)
        n = r->reserved;
    r->reserved = 0;
    if (n == 0)
        return;
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    mirror_sync(r, slot_of(r, w), n);
    atomic_store_explicit(&r->write_pos, w + n, memory_order_release);
}

/* ---- consumer ---------------------------------------------------------- */

static void count_overrun(rtms_ring *r, uint64_t lost)
{
    atomic_store_explicit(&r->overruns, atomic_load_explicit(&r->overruns, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&r->overrun_items,
                          atomic_load_explicit(&r->overrun_items, memory_order_relaxed) + lost,
                          memory_order_relaxed);
}

size_t rtms_ring_readable(const rtms_ring *r)
{
    uint64_t rp = atomic_load_explicit(&((rtms_ring *)r)->read_pos, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&((rtms_ring *)r)->write_pos, memory_order_acquire);
    uint64_t n = w - rp;
    return n > r->capacity ? r->capacity : (size_t)n;
}

size_t rtms_ring_peek_at(rtms_ring *r, size_t max_items, size_t *offset_items)
{
    uint64_t rp = atomic_load_explicit(&r->read_pos, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_acquire);
    if (w - rp > r->capacity) { /* only in drop-oldest: the producer lapped us */
        uint64_t lost = w - rp - r->capacity;
        count_overrun(r, lost);
        rp = w - r->capacity;
        atomic_store_explicit(&r->read_pos, rp, memory_order_release);
    }
    uint64_t n = w - rp;
    *offset_items = slot_of(r, rp);
    return n < max_items ? (size_t)n : max_items;
}

size_t rtms_ring_peek(rtms_ring *r, size_t max_items, const void **ptr)
{
    size_t offset;
    size_t n = rtms_ring_peek_at(r, max_items, &offset);
    *ptr = r->window + offset * r->item_size;
    return n;
}

/* Drop-oldest: how many of the n items from position rp the producer has claimed since. */
static size_t overwritten_since(rtms_ring *r, uint64_t rp, size_t n)
{
    if (r->policy != RTMS_RING_DROP_OLDEST)
        return 0;
    atomic_thread_fence(memory_order_acquire); /* order the caller's reads before the check */
    uint64_t c = atomic_load_explicit(&r->write_claim, memory_order_relaxed);
    if (c <= rp + r->capacity)
        return 0;
    uint64_t bad = c - r->capacity - rp;
    return bad < n ? (size_t)bad : n;
}

size_t rtms_ring_overwritten(rtms_ring *r, size_t n)
{
    return overwritten_since(r, atomic_load_explicit(&r->read_pos, memory_order_relaxed), n);
}

size_t rtms_ring_consume(rtms_ring *r, size_t n, size_t *overwritten)
{
    uint64_t rp = atomic_load_explicit(&r->read_pos, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&r->write_pos, memory_order_acquire);
    if (n > w - rp) { /* a caller bug: change nothing, let it report the error */
        if (overwritten != NULL)
            *overwritten = 0;
        return 0;
    }
    size_t bad = overwritten_since(r, rp, n);
    if (bad != 0)
        count_overrun(r, bad);
    atomic_store_explicit(&r->read_items,
                          atomic_load_explicit(&r->read_items, memory_order_relaxed) + (n - bad),
                          memory_order_relaxed);
    atomic_store_explicit(&r->read_pos, rp + n, memory_order_release);
    if (overwritten != NULL)
        *overwritten = bad;
    return n;
}

size_t rtms_ring_read(rtms_ring *r, void *dst, size_t max_items)
{
    size_t offset;
    size_t n = rtms_ring_peek_at(r, max_items, &offset);
    if (n == 0)
        return 0;
    size_t isz = r->item_size;
    memcpy(dst, r->window + offset * isz, n * isz);
    size_t bad;
    rtms_ring_consume(r, n, &bad); /* checks the claim after the copy */
    if (bad != 0)
        memmove(dst, (unsigned char *)dst + bad * isz, (n - bad) * isz);
    return n - bad;
}

size_t rtms_ring_readable_many(rtms_ring *const *rings, size_t n, size_t *counts)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        counts[i] = rtms_ring_readable(rings[i]);
        total += counts[i];
    }
    return total;
}

size_t rtms_ring_read_many(rtms_ring *const *rings, size_t n, size_t item_size, void *dst,
                           size_t *counts)
{
    unsigned char *out = dst;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        if (counts[i] != 0 && rings[i]->item_size == item_size)
            got = rtms_ring_read(rings[i], out + total * item_size, counts[i]);
        counts[i] = got;
        total += got;
    }
    return total;
}

/* ---- stats ------------------------------------------------------------- */

void rtms_ring_get_stats(const rtms_ring *r, rtms_ring_stats *out)
{
    rtms_ring *m = (rtms_ring *)r; /* atomics are read-only here */
    /* read_pos first: write_pos only grows, so fill is never negative */
    uint64_t rp = atomic_load_explicit(&m->read_pos, memory_order_acquire);
    uint64_t w = atomic_load_explicit(&m->write_pos, memory_order_acquire);
    uint64_t unread = w - rp;
    uint64_t pending_lost = unread > r->capacity ? unread - r->capacity : 0;
    uint64_t overrun_items = atomic_load_explicit(&m->overrun_items, memory_order_relaxed);
    out->capacity = r->capacity;
    out->item_size = r->item_size;
    out->fill = unread - pending_lost;
    out->written = w;
    out->read = atomic_load_explicit(&m->read_items, memory_order_relaxed);
    out->dropped_oldest = overrun_items + pending_lost;
    out->dropped_newest = atomic_load_explicit(&m->dropped_newest, memory_order_relaxed);
    out->refused = atomic_load_explicit(&m->refused, memory_order_relaxed);
    out->overruns = atomic_load_explicit(&m->overruns, memory_order_relaxed);
    out->overrun_items = overrun_items;
    out->policy = r->policy;
    out->double_mapped = r->double_mapped;
}
