/*
 * plait/_core/_ring.c - the shared-memory ring buffer under plait's process queues.
 *
 * Theory of operation
 * -------------------
 * A ring is a memfd mapped MAP_SHARED by every process using the queue: a header page
 * (struct ring_header) and `capacity` bytes of data (a power of two). Entries follow
 * each other in the data; positions are byte counters that only grow, an entry's place
 * is counter & (capacity - 1), and an entry may wrap around the end of the data.
 *
 *     entry = struct entry (kind|flags, size, seq, pid: 24 bytes), body, padding to 8
 *
 *   PLAIN    body is a pickle.
 *   PARTS    body is a pickle with out-of-band buffers: count:u64, count x length:u64,
 *            then the parts back to back (the consumer gets one bytearray and slices it).
 *   SEGMENT  body is the lengths table of a sealed memfd (see segment.py) that travels
 *            beside the ring, over the queue's Unix socket, with SCM_RIGHTS. `seq`
 *            numbers it; the socket message carries the same seq (see below).
 *   SKIP     the place of an entry whose putter died before finishing it.
 *
 * Four counters cut the data into stretches, head <= claimed <= tail <= reserved:
 *
 *     [head, claimed)     entries handed to getters, some still being copied out
 *     [claimed, tail)     entries ready to be taken (the queue's contents)
 *     [tail, reserved)    entries being written by putters, some already READY
 *     [reserved, head+capacity)  free
 *
 * One lock (the owner mutex of _futex.h, in the header) guards the counters and the
 * entry headers. A putter reserves its entry under the lock; a small body is written at
 * once (still under the lock), a large one (BIG_COPY and up) after dropping it and the
 * GIL, so that getters copy earlier entries out at the same time: with one producer and
 * one consumer, the two copies of a large item overlap instead of taking turns. The
 * putter then marks its entry READY and moves `tail` over every READY entry in a row
 * (entries are published in the order they were reserved). Getters mirror this: claim
 * the entry at `claimed` under the lock, copy (a large body without the lock), mark it
 * DONE and move `head` over the DONE entries in a row, which frees their space.
 *
 * Sleepers do not hold the lock: a getter reads `puts` under the lock, counts itself in
 * `getters`, drops the lock and sleeps on `puts` until it changes; publishing bumps
 * `puts` and, if `getters` is non-zero, wakes one after unlocking. Putters sleep on `gets`
 * (ring full, or `maxsize` entries in it) the same way. The counters are sequentially
 * consistent atomics, so a sleeper and a waker cannot both miss each other.
 *
 * Processes that die (kill -9) in the middle:
 *   - holding the lock: the next process that wants it finds the holder's pid dead (see
 *     _futex.h), frees the lock and goes on; `deaths` counts it. A put writes its entry
 *     in the free space first and then moves `reserved`, and a get writes its pid into
 *     the entry before it moves `claimed`, so each is one store from absent to present:
 *     a small put that died before it is absent, after it a READY entry that the next
 *     put or a sleeping getter publishes; a get that died before its claim left its
 *     item, after it the entry carries its pid (below). (Putting the counter first, as
 *     this ring once did, left a hole that no `pid` could explain when the store
 *     after it never came: killing manager clients at random wedged the inbox.)
 *   - a putter in the middle of a large copy: its entry, never READY, holds back `tail`.
 *     Sleepers wake every PLAIT_SLICE; one that finds the entry at `tail` unfinished
 *     and its putter (the entry's pid) dead turns it into SKIP (counted in `lost`: that
 *     put never returned). A getter in the middle of a large copy: its claimed entry
 *     holds back `head` until a sleeping putter finds the getter dead and marks it DONE
 *     (the item is lost with the getter, counted in `lost`).
 *   - between sending a segment's fd and publishing its entry (a producer), or between
 *     receiving the fd and marking the entry DONE (a consumer): the socket and the ring
 *     disagree. The seq numbers settle it: a consumer peeks at the seq of the next socket
 *     message; smaller than its entry's: an orphan of a dead producer (closed, counted
 *     in `lost`); larger, or none: a dead consumer took this entry's fd (the entry is
 *     skipped and counted in `lost`).
 *
 * JoinableQueue: `unfinished` counts puts not yet matched by task_done (only when the
 * ring was made joinable); join sleeps on it until it is 0.
 *
 * The doorbell: an eventfd beside the ring, for code that waits on a queue with poll(),
 * select() or multiprocessing.connection.wait() instead of sleeping in get (the
 * standard library's `queue._reader`). Nobody pays for it until a process arms it
 * (`pollers`, set once under the lock, never cleared): from then on, under the lock,
 * publishing entries writes it (readable) and a claim that leaves no published entry
 * reads it (not readable), so it is readable exactly while an entry is published and
 * unclaimed. Unarmed, a put costs one more load of `pollers`.
 */
#include "_futex.h"

#include <sys/socket.h>

#define RING_MAGIC 0x504c5452u /* "PLTR" */
#define RING_HEADER_SIZE 4096
#define ENTRY_HEADER 24
#define BIG_COPY (256 * 1024) /* copies this large run without the lock and the GIL */

enum { KIND_PLAIN = 0, KIND_PARTS = 1, KIND_SEGMENT = 2, KIND_SKIP = 3 };
#define KIND_MASK 0xffu
#define F_READY 0x100u /* the body is written: the entry may be claimed */
#define F_DONE 0x200u  /* the body was read: the space may be reused */

struct entry {
    uint32_t kind;  /* KIND_* | F_* */
    uint32_t size;  /* of the body */
    uint64_t seq;   /* SEGMENT: the number of its socket message */
    uint32_t pid;   /* the putter until READY, then the getter that claimed it */
    uint32_t pad;
};

struct ring_header {
    uint32_t lock;
    uint32_t magic;
    uint32_t puts;       /* futex: bumped by each put */
    uint32_t gets;       /* futex: bumped by each get */
    uint32_t getters;    /* processes asleep on puts */
    uint32_t putters;    /* processes asleep on gets */
    uint32_t unfinished; /* futex: tasks not yet done (joinable rings) */
    uint32_t joiners;    /* processes asleep on unfinished */
    uint32_t joinable;
    uint32_t pollers;    /* non-zero: someone waits on the doorbell (see below) */
    uint64_t capacity;
    uint64_t head;       /* space before it is free: entries consumed (DONE) */
    uint64_t claimed;    /* entries before it were handed to getters */
    uint64_t tail;       /* entries before it are published (READY) */
    uint64_t reserved;   /* space before it is taken by putters */
    uint64_t items;      /* entries reserved and not yet claimed */
    uint64_t maxsize;    /* 0: no bound on items */
    uint64_t seq;        /* segments sent so far */
    uint64_t lost;
    uint64_t deaths;
};

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    struct ring_header *h;
    char *data;
    uint64_t mask;
    int send_sock; /* this process's fds of the queue's segment socket pair */
    int recv_sock;
    int doorbell;  /* this process's fd of the queue's doorbell eventfd, or -1 */
} RingObject;

static inline uint64_t
round8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Copy n bytes into / out of the ring at counter pos, wrapping at the end. */
static void
ring_write(RingObject *r, uint64_t pos, const void *src, size_t n)
{
    uint64_t off = pos & r->mask, first = r->mask + 1 - off;
    if (n <= first)
        memcpy(r->data + off, src, n);
    else {
        memcpy(r->data + off, src, first);
        memcpy(r->data, (const char *)src + first, n - first);
    }
}

static void
ring_read(RingObject *r, uint64_t pos, void *dst, size_t n)
{
    uint64_t off = pos & r->mask, first = r->mask + 1 - off;
    if (n <= first)
        memcpy(dst, r->data + off, n);
    else {
        memcpy(dst, r->data + off, first);
        memcpy((char *)dst + first, r->data, n - first);
    }
}

static inline uint64_t
entry_span(uint32_t size)
{
    return round8(ENTRY_HEADER + (uint64_t)size);
}

static inline void
read_entry(RingObject *r, uint64_t pos, struct entry *e)
{
    ring_read(r, pos, e, sizeof *e);
}

static inline void
write_entry(RingObject *r, uint64_t pos, const struct entry *e)
{
    ring_write(r, pos, e, sizeof *e);
}

/* Under the lock: move tail over the entries that are READY; wake a getter if any. */
static void
publish(RingObject *r, int *wake)
{
    struct ring_header *h = r->h;
    struct entry e;
    int n = 0;
    while (h->tail < h->reserved) {
        read_entry(r, h->tail, &e);
        if (!(e.kind & F_READY))
            break;
        __atomic_store_n(&h->tail, h->tail + entry_span(e.size), __ATOMIC_RELEASE);
        n++;
    }
    if (n) {
        __atomic_fetch_add(&h->puts, 1, __ATOMIC_SEQ_CST);
        *wake |= __atomic_load_n(&h->getters, __ATOMIC_SEQ_CST) != 0;
        if (h->pollers && r->doorbell >= 0) {
            uint64_t one = 1;
            (void)!write(r->doorbell, &one, sizeof one);
        }
    }
}

/* Under the lock, after a claim: the doorbell goes quiet with the last published entry. */
static inline void
quiet_doorbell(RingObject *r)
{
    if (r->h->pollers && r->doorbell >= 0 && r->h->claimed == r->h->tail) {
        uint64_t count;
        (void)!read(r->doorbell, &count, sizeof count); /* EAGAIN when already quiet */
    }
}

/* Under the lock: move head over the entries that are DONE; wake putters if any. */
static void
release_space(RingObject *r, int *wake)
{
    struct ring_header *h = r->h;
    struct entry e;
    int n = 0;
    while (h->head < h->claimed) {
        read_entry(r, h->head, &e);
        if (!(e.kind & F_DONE))
            break;
        __atomic_store_n(&h->head, h->head + entry_span(e.size), __ATOMIC_RELEASE);
        n++;
    }
    if (n) {
        __atomic_fetch_add(&h->gets, 1, __ATOMIC_SEQ_CST);
        *wake |= __atomic_load_n(&h->putters, __ATOMIC_SEQ_CST) != 0;
    }
}

/* Under the lock, after a sleep: a putter that died between reserving an entry and
 * publishing it holds back every later entry; a getter that died between claiming
 * one and finishing its copy holds back the space. Turn such an entry into a lost one
 * (SKIP and READY, or DONE) so the ring moves on. */
static void
reap_dead(RingObject *r, int *wake_getters, int *wake_putters)
{
    struct ring_header *h = r->h;
    struct entry e;
    publish(r, wake_getters);  /* READY entries whose putter died before publishing */
    if (h->tail < h->reserved) {
        read_entry(r, h->tail, &e);
        if (!(e.kind & F_READY) && e.pid != plait_cached_pid && !process_alive(e.pid)) {
            e.kind = KIND_SKIP | F_READY;
            write_entry(r, h->tail, &e);
            h->lost++;
            h->deaths++;
            if (h->joinable && __atomic_sub_fetch(&h->unfinished, 1, __ATOMIC_SEQ_CST) == 0)
                futex_wake(&h->unfinished, INT_MAX);
            publish(r, wake_getters);
        }
    }
    if (h->head < h->claimed) {
        read_entry(r, h->head, &e);
        if (!(e.kind & F_DONE) && e.pid != plait_cached_pid && !process_alive(e.pid)) {
            e.kind |= F_DONE;
            write_entry(r, h->head, &e);
            h->lost++;
            h->deaths++;
            release_space(r, wake_putters);
        }
    }
}

static void
wake_after_unlock(RingObject *r, int wake_getters, int wake_putters)
{
    if (wake_getters)
        futex_wake(&r->h->puts, 1);
    if (wake_putters)
        futex_wake(&r->h->gets, INT_MAX); /* putters wait for different amounts of room */
}

/* Take the ring's lock: waits as long as a live process holds it (they hold it for
 * one copy). Returns -1 with an exception set if a signal handler raised. */
static int
ring_lock(RingObject *r)
{
    uint32_t dead;
    for (;;) {
        int rc = plait_mutex_lock(&r->h->lock, 1, -1, &dead);
        if (rc == MUTEX_ACQUIRED)
            return 0;
        if (rc == MUTEX_ERROR)
            return -1;
        if (rc == MUTEX_OWNER_DIED) {
            if (plait_mutex_lock(&r->h->lock, 1, -1, &dead) == MUTEX_ACQUIRED) {
                r->h->deaths++;
                return 0;
            }
            if (PyErr_Occurred())
                return -1;
        }
    }
}

/* Take the lock without running signal handlers: for the end of a copy that must be
 * finished (they run at the interpreter's next check). */
static void
ring_lock_uninterrupted(RingObject *r)
{
    uint32_t dead;
    while (plait_mutex_lock_ex(&r->h->lock, 1, -1, &dead, 0) != MUTEX_ACQUIRED)
        r->h->deaths++;
}

static inline void
ring_unlock(RingObject *r)
{
    plait_mutex_unlock(&r->h->lock);
}

/* Sleep on *word while it equals seq, counting ourselves in *sleepers, without the
 * lock and without the GIL. Returns 0 (woken, spurious or slice over), 1 (deadline
 * passed), -1 (a signal handler raised). Called without the ring lock. */
static int
sleep_on(uint32_t *word, uint32_t seq, uint32_t *sleepers, double deadline)
{
    struct timespec rel;
    if (!next_slice(deadline, PLAIT_SLICE, &rel)) {
        __atomic_fetch_sub(sleepers, 1, __ATOMIC_SEQ_CST);
        return 1;
    }
    long rc;
    int err;
    Py_BEGIN_ALLOW_THREADS
    rc = futex_wait(word, seq, &rel);
    err = errno;
    Py_END_ALLOW_THREADS
    __atomic_fetch_sub(sleepers, 1, __ATOMIC_SEQ_CST);
    if (rc == -1 && err == EINTR && PyErr_CheckSignals() < 0)
        return -1;
    return 0;
}

static int
parse_timeout(int block, PyObject *timeout_obj, double *deadline)
{
    *deadline = -1;
    if (!block)
        *deadline = 0;
    else if (timeout_obj != Py_None) {
        double t = PyFloat_AsDouble(timeout_obj);
        if (t == -1 && PyErr_Occurred())
            return -1;
        if (t != t) {
            PyErr_SetString(PyExc_ValueError, "'timeout' must not be NaN");
            return -1;
        }
        *deadline = t <= 0 ? 0 : monotonic_now() + t;  /* as multiprocessing: < 0 polls */
    }
    return 0;
}

static int
check_ready(RingObject *self)
{
    if (self->h == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached to shared memory");
        return -1;
    }
    return 0;
}

static int
send_segment(RingObject *self, uint64_t seq, int fd)
{
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&seq, sizeof seq};
    struct msghdr msg = {0};
    memset(control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(self->send_sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof seq ? 0 : -1;
}

/* The fd of segment `seq` from the socket, or -1 if it is lost (see the essay).
 * Called under the ring lock. */
static int
recv_segment(RingObject *self, uint64_t seq)
{
    for (;;) {
        uint64_t got;
        ssize_t n = recv(self->recv_sock, &got, sizeof got, MSG_PEEK | MSG_DONTWAIT);
        if (n != (ssize_t)sizeof got || got > seq)
            return -1;  /* a dead consumer took it */
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {&got, sizeof got};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        n = recvmsg(self->recv_sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n != (ssize_t)sizeof got)
            return -1;
        int fd = -1;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        if (cmsg != NULL && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
            memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
        if (got == seq)
            return fd;
        if (fd >= 0)
            close(fd);  /* the orphan of a producer that died before publishing it */
        self->h->lost++;
    }
}

static int
as_int(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value out of range for a C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* put(kind, parts, block=True, timeout=None, fd=-1) -> bool
 * parts: a tuple of buffers (PLAIN: one pickle; PARTS: the pickle and its buffers;
 * SEGMENT: one buffer, the lengths table). Returns False when the queue stayed full. */
static PyObject *
Ring_put(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int kind, block = 1, fd = -1;
    PyObject *parts, *timeout_obj = Py_None;
    if (nargs < 2 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "put(kind, parts, block=True, timeout=None, fd=-1)");
        return NULL;
    }
    if (as_int(args[0], &kind) < 0)
        return NULL;
    parts = args[1];
    if (!PyTuple_Check(parts)) {
        PyErr_SetString(PyExc_TypeError, "put() needs the parts as a tuple");
        return NULL;
    }
    if (nargs > 2 && (block = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    if (nargs > 3)
        timeout_obj = args[3];
    if (nargs > 4 && as_int(args[4], &fd) < 0)
        return NULL;
    if (check_ready(self) < 0)
        return NULL;
    Py_ssize_t nparts = PyTuple_GET_SIZE(parts);
    if (kind < KIND_PLAIN || kind > KIND_SEGMENT || nparts < 1 || nparts > 4096 ||
        (kind != KIND_PARTS && nparts != 1) || (kind == KIND_SEGMENT) != (fd >= 0)) {
        PyErr_SetString(PyExc_ValueError, "bad ring entry");
        return NULL;
    }
    double deadline;
    if (parse_timeout(block, timeout_obj, &deadline) < 0)
        return NULL;
    Py_buffer views[8];
    Py_buffer *bufs = nparts <= 8 ? views : PyMem_Calloc(nparts, sizeof(Py_buffer));
    if (bufs == NULL)
        return PyErr_NoMemory();
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    uint64_t body = kind == KIND_PARTS ? 8 + 8 * (uint64_t)nparts : 0;
    for (; got < nparts; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(parts, got), &bufs[got], PyBUF_SIMPLE) < 0)
            goto done;
        body += bufs[got].len;
    }
    uint64_t need = round8(ENTRY_HEADER + body);
    struct ring_header *h = self->h;
    if (body > UINT32_MAX || need > h->capacity - h->capacity / 8) {
        PyErr_Format(PyExc_ValueError, "an entry of %llu bytes does not fit a ring of %llu",
                     (unsigned long long)need, (unsigned long long)h->capacity);
        goto done;
    }
    /* An eighth of the ring is kept for the small entries of segments, so that an
     * unbounded queue whose ring is full of items can still spill (see queues.py). */
    uint64_t reserve = kind == KIND_SEGMENT ? 0 : h->capacity / 8;
    int wake_getters = 0, wake_putters = 0;
    if (ring_lock(self) < 0)
        goto done;
    for (;;) {
        int full = (h->maxsize && h->items >= h->maxsize) ||
                   h->capacity - (h->reserved - h->head) < need + reserve;
        if (!full)
            break;
        if (deadline == 0 && h->head < h->claimed) {
            /* A put that does not sleep reaps for itself: an entry whose getter died
             * copying it holds its space (and the space after it) for good. */
            uint64_t head = h->head;
            reap_dead(self, &wake_getters, &wake_putters);
            if (h->head != head)
                continue;
        }
        uint32_t seq = h->gets;
        __atomic_fetch_add(&h->putters, 1, __ATOMIC_SEQ_CST);
        ring_unlock(self);
        wake_after_unlock(self, wake_getters, wake_putters);
        wake_getters = wake_putters = 0;
        int rc = deadline == 0 ? 1 : 0;
        if (rc == 0)
            rc = sleep_on(&h->gets, seq, &h->putters, deadline);
        else
            __atomic_fetch_sub(&h->putters, 1, __ATOMIC_SEQ_CST);
        if (rc < 0)
            goto done;
        if (rc == 1) {
            result = Py_NewRef(Py_False);
            goto done;
        }
        if (ring_lock(self) < 0)
            goto done;
        reap_dead(self, &wake_getters, &wake_putters);
    }
    struct entry e = {(uint32_t)kind, (uint32_t)body, 0, plait_cached_pid, 0};
    if (kind == KIND_SEGMENT) {
        e.seq = ++h->seq;
        if (send_segment(self, e.seq, fd) < 0) {
            int err = errno;
            ring_unlock(self);
            wake_after_unlock(self, wake_getters, wake_putters);
            if (err == EAGAIN || err == EWOULDBLOCK)
                result = Py_NewRef(Py_None);  /* the socket is full: the caller waits */
            else {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            goto done;
        }
    }
    /* Write the entry where the free space starts, then reserve it: moving `reserved`
     * is what makes it exist, so a putter killed before that store leaves no trace. A
     * small entry is whole and READY by then (killed after the store, it is published
     * by the next put, or by a sleeping getter's reap_dead). A large one is reserved
     * with its header only (its putter's pid, not READY: reap_dead skips it if the
     * putter dies) and copied without the lock (and the GIL), so that getters copy out
     * earlier entries meanwhile; it is published in order. */
    uint64_t start = h->reserved;
    int big = body >= BIG_COPY;
    uint64_t pos = start + ENTRY_HEADER;
    if (kind == KIND_PARTS) {
        uint64_t count = (uint64_t)nparts;
        ring_write(self, pos, &count, 8);
        pos += 8;
        for (Py_ssize_t i = 0; i < nparts; i++, pos += 8) {
            uint64_t len = (uint64_t)bufs[i].len;
            ring_write(self, pos, &len, 8);
        }
    }
    if (!big) {
        for (Py_ssize_t i = 0; i < nparts; i++) {
            ring_write(self, pos, bufs[i].buf, bufs[i].len);
            pos += bufs[i].len;
        }
        e.kind |= F_READY;
    }
    write_entry(self, start, &e);
    h->items++;  /* before the entry exists: a death in between over-counts, never under */
    if (h->joinable)
        __atomic_fetch_add(&h->unfinished, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&h->reserved, start + need, __ATOMIC_RELEASE);
    if (big) {
        ring_unlock(self);
        wake_after_unlock(self, wake_getters, wake_putters);
        wake_getters = wake_putters = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < nparts; i++) {
            ring_write(self, pos, bufs[i].buf, bufs[i].len);
            pos += bufs[i].len;
        }
        Py_END_ALLOW_THREADS
        /* The entry is written: publish it whatever happens (signals wait). */
        ring_lock_uninterrupted(self);
        e.kind |= F_READY;
        write_entry(self, start, &e);
    }
    publish(self, &wake_getters);
    if (h->tail <= start)  /* behind an earlier entry, unpublished: is its putter alive? */
        reap_dead(self, &wake_getters, &wake_putters);
    ring_unlock(self);
    wake_after_unlock(self, wake_getters, wake_putters);
    result = Py_NewRef(Py_True);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    if (bufs != views)
        PyMem_Free(bufs);
    return result;
}

/* get(block=True, timeout=None) -> bytes (PLAIN) | (kind, data, fd) | None (lost) | False
 * False: nothing arrived in time. None: the entry's segment was lost (see the essay);
 * the caller asks again. */
static PyObject *
Ring_get(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int block = 1;
    PyObject *timeout_obj = Py_None;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get() takes at most 2 arguments");
        return NULL;
    }
    if (nargs >= 1 && (block = PyObject_IsTrue(args[0])) < 0)
        return NULL;
    if (nargs == 2)
        timeout_obj = args[1];
    if (check_ready(self) < 0)
        return NULL;
    struct ring_header *h = self->h;
    double deadline;
    if (parse_timeout(block, timeout_obj, &deadline) < 0)
        return NULL;
    /* A producer on the other core usually delivers within a microsecond: look a few
     * times before taking the slow road. */
    for (int i = 0; i < PLAIT_SPIN * 4 && __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE) ==
                                              __atomic_load_n(&h->claimed, __ATOMIC_RELAXED);
         i++)
        cpu_relax();
    int wake_getters = 0, wake_putters = 0;
    if (ring_lock(self) < 0)
        return NULL;
    for (;;) {
        while (h->claimed == h->tail) {
            if (deadline == 0 && h->tail < h->reserved) {
                /* A get that does not sleep reaps for itself: an entry whose putter
                 * died unpublished would hide every later one from it. */
                uint64_t tail = h->tail;
                reap_dead(self, &wake_getters, &wake_putters);
                if (h->tail != tail)
                    continue;
            }
            uint32_t seq = h->puts;
            __atomic_fetch_add(&h->getters, 1, __ATOMIC_SEQ_CST);
            ring_unlock(self);
            wake_after_unlock(self, wake_getters, wake_putters);
            wake_getters = wake_putters = 0;
            int rc = deadline == 0 ? 1 : 0;
            if (rc == 0)
                rc = sleep_on(&h->puts, seq, &h->getters, deadline);
            else
                __atomic_fetch_sub(&h->getters, 1, __ATOMIC_SEQ_CST);
            if (rc < 0)
                return NULL;
            if (rc == 1)
                Py_RETURN_FALSE;
            if (ring_lock(self) < 0)
                return NULL;
            reap_dead(self, &wake_getters, &wake_putters);
        }
        struct entry e;
        uint64_t start = h->claimed;
        read_entry(self, start, &e);
        uint32_t kind = e.kind & KIND_MASK;
        if (kind != KIND_SKIP)
            break;
        /* the place of an item whose putter died: step over it */
        h->claimed += entry_span(e.size);
        h->items--;
        quiet_doorbell(self);
        e.kind |= F_DONE;
        write_entry(self, start, &e);
        release_space(self, &wake_putters);
    }
    struct entry e;
    uint64_t start = h->claimed;
    read_entry(self, start, &e);
    uint32_t kind = e.kind & KIND_MASK, size = e.size;
    PyObject *data, *result = NULL;
    if (kind == KIND_PARTS)
        data = PyByteArray_FromStringAndSize(NULL, size);
    else
        data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        ring_unlock(self);
        wake_after_unlock(self, wake_getters, wake_putters);
        return NULL;
    }
    /* Claim the entry, our pid in it first (a getter killed after the claim is then
     * known by it: reap_dead); copy a large body out without the lock (and the GIL). */
    e.pid = plait_cached_pid;
    write_entry(self, start, &e);
    h->claimed += entry_span(size);
    h->items--;
    quiet_doorbell(self);
    char *dst = kind == KIND_PARTS ? PyByteArray_AS_STRING(data) : PyBytes_AS_STRING(data);
    int fd = -1;
    if (size >= BIG_COPY) {
        ring_unlock(self);
        wake_after_unlock(self, wake_getters, wake_putters);
        wake_getters = wake_putters = 0;
        Py_BEGIN_ALLOW_THREADS
        ring_read(self, start + ENTRY_HEADER, dst, size);
        Py_END_ALLOW_THREADS
        ring_lock_uninterrupted(self);  /* the copy is done: release the entry */
    }
    else {
        ring_read(self, start + ENTRY_HEADER, dst, size);
        if (kind == KIND_SEGMENT) {
            fd = recv_segment(self, e.seq);
            if (fd < 0)
                h->lost++;
        }
    }
    e.kind |= F_DONE;
    write_entry(self, start, &e);
    release_space(self, &wake_putters);
    ring_unlock(self);
    wake_after_unlock(self, wake_getters, wake_putters);
    if (kind == KIND_PLAIN)
        return data;
    if (kind == KIND_SEGMENT && fd < 0) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    result = Py_BuildValue("(INi)", kind, data, fd);
    if (result == NULL && fd >= 0)
        close(fd);
    return result;
}

static PyObject *
Ring_task_done(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    struct ring_header *h = self->h;
    uint32_t v = __atomic_load_n(&h->unfinished, __ATOMIC_SEQ_CST);
    do {
        if (v == 0) {
            PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
            return NULL;
        }
    } while (!__atomic_compare_exchange_n(&h->unfinished, &v, v - 1, 0, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    if (v == 1 && __atomic_load_n(&h->joiners, __ATOMIC_SEQ_CST) != 0)
        futex_wake(&h->unfinished, INT_MAX);
    Py_RETURN_NONE;
}

/* join(timeout=None) -> bool: True once every task is done, False at the timeout. */
static PyObject *
Ring_join(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_ready(self) < 0)
        return NULL;
    double deadline;
    if (parse_timeout(1, nargs ? args[0] : Py_None, &deadline) < 0)
        return NULL;
    struct ring_header *h = self->h;
    for (;;) {
        __atomic_fetch_add(&h->joiners, 1, __ATOMIC_SEQ_CST);
        uint32_t v = __atomic_load_n(&h->unfinished, __ATOMIC_SEQ_CST);
        if (v == 0) {
            __atomic_fetch_sub(&h->joiners, 1, __ATOMIC_SEQ_CST);
            Py_RETURN_TRUE;
        }
        int rc = sleep_on(&h->unfinished, v, &h->joiners, deadline);
        if (rc < 0)
            return NULL;
        if (rc == 1)
            Py_RETURN_FALSE;
    }
}

static PyObject *
Ring_attach(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "send_sock", "recv_sock", "create", "maxsize",
                             "joinable", "doorbell", NULL};
    Py_buffer view;
    int send_sock, recv_sock, create = 0, joinable = 0, doorbell = -1;
    unsigned long long maxsize = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "w*ii|pKpi:_attach", kwlist, &view, &send_sock,
                                     &recv_sock, &create, &maxsize, &joinable, &doorbell))
        return NULL;
    if (self->h != NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the ring is already attached");
        return NULL;
    }
    uint64_t capacity = view.len > RING_HEADER_SIZE ? (uint64_t)view.len - RING_HEADER_SIZE : 0;
    if (capacity < 4096 || (capacity & (capacity - 1)) != 0) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a ring needs a header page and a power of two of "
                     "at least 4096 bytes, not %zd bytes", view.len);
        return NULL;
    }
    struct ring_header *h = (struct ring_header *)view.buf;
    if (create) {
        memset(h, 0, sizeof *h);
        h->capacity = capacity;
        h->maxsize = maxsize;
        h->joinable = (uint32_t)joinable;
        __atomic_store_n(&h->magic, RING_MAGIC, __ATOMIC_RELEASE);
    }
    else if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != RING_MAGIC ||
             h->capacity != capacity) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the memory is not a ring of this size");
        return NULL;
    }
    self->view = view;
    self->h = h;
    self->data = (char *)view.buf + RING_HEADER_SIZE;
    self->mask = capacity - 1;
    self->send_sock = send_sock;
    self->recv_sock = recv_sock;
    self->doorbell = doorbell;
    Py_RETURN_NONE;
}

/* _arm_doorbell(): from now on the doorbell tells whether an entry is published (see
 * the essay); rings it now if one is. */
static PyObject *
Ring_arm_doorbell(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    if (self->doorbell < 0) {
        PyErr_SetString(PyExc_ValueError, "this ring was attached without a doorbell");
        return NULL;
    }
    struct ring_header *h = self->h;
    if (ring_lock(self) < 0)
        return NULL;
    if (!h->pollers) {
        h->pollers = 1;
        if (h->claimed < h->tail) {
            uint64_t one = 1;
            (void)!write(self->doorbell, &one, sizeof one);
        }
    }
    ring_unlock(self);
    Py_RETURN_NONE;
}

/* _reap(): free what dead processes hold (see reap_dead), for a caller about to wait
 * on the doorbell, which only a publish rings. */
static PyObject *
Ring_reap(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    struct ring_header *h = self->h;
    if (__atomic_load_n(&h->tail, __ATOMIC_ACQUIRE) == __atomic_load_n(&h->reserved, __ATOMIC_ACQUIRE) &&
        __atomic_load_n(&h->head, __ATOMIC_ACQUIRE) == __atomic_load_n(&h->claimed, __ATOMIC_ACQUIRE))
        Py_RETURN_NONE;  /* nothing in flight */
    int wake_getters = 0, wake_putters = 0;
    if (ring_lock(self) < 0)
        return NULL;
    reap_dead(self, &wake_getters, &wake_putters);
    ring_unlock(self);
    wake_after_unlock(self, wake_getters, wake_putters);
    Py_RETURN_NONE;
}

static PyObject *
Ring_statistics(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    struct ring_header *h = self->h;
    return Py_BuildValue(
        "{sKsKsKsKsKsKsIsIsI}", "items", (unsigned long long)h->items, "bytes_used",
        (unsigned long long)(h->reserved - h->head), "capacity", (unsigned long long)h->capacity,
        "maxsize", (unsigned long long)h->maxsize, "lost", (unsigned long long)h->lost,
        "owner_deaths", (unsigned long long)h->deaths, "unfinished_tasks", h->unfinished,
        "getters_waiting", h->getters, "putters_waiting", h->putters);
}

static PyObject *
Ring_qsize(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&self->h->items, __ATOMIC_ACQUIRE));
}

static void
Ring_dealloc(RingObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->h != NULL) {
        self->h = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Ring_traverse(RingObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (self->h != NULL)
        Py_VISIT(self->view.obj);
    return 0;
}

static PyMethodDef Ring_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Ring_put, METH_FASTCALL,
     "put(kind, parts, block=True, timeout=None, fd=-1) -> True, False (full) or None "
     "(the segment socket is full)."},
    {"get", (PyCFunction)(void (*)(void))Ring_get, METH_FASTCALL,
     "get(block=True, timeout=None) -> bytes | (kind, data, fd) | None (lost) | False."},
    {"task_done", (PyCFunction)Ring_task_done, METH_NOARGS, "One task is done."},
    {"join", (PyCFunction)(void (*)(void))Ring_join, METH_FASTCALL,
     "join(timeout=None) -> bool: wait until every task is done."},
    {"qsize", (PyCFunction)Ring_qsize, METH_NOARGS, "Entries in the ring."},
    {"statistics", (PyCFunction)Ring_statistics, METH_NOARGS, "A dict of counters."},
    {"_attach", (PyCFunction)(void (*)(void))Ring_attach, METH_VARARGS | METH_KEYWORDS,
     "_attach(buffer, send_sock, recv_sock, create=False, maxsize=0, joinable=False, "
     "doorbell=-1)"},
    {"_reap", (PyCFunction)Ring_reap, METH_NOARGS,
     "Free the entries of processes that died putting or getting them."},
    {"_arm_doorbell", (PyCFunction)Ring_arm_doorbell, METH_NOARGS,
     "Make the doorbell fd readable exactly while an entry is published (see the source)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plait._core._ring.Ring",
    .tp_doc = "A ring buffer of entries in shared memory; see plait.ipc.queues.",
    .tp_basicsize = sizeof(RingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_traverse = (traverseproc)Ring_traverse,
    .tp_methods = Ring_methods,
};

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "plait._core._ring",
    .m_doc = "A ring buffer in shared memory with futex waits (see the source's essay).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__ring(void)
{
    plait_pid_init();
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ring_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", RING_HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "ENTRY_HEADER", ENTRY_HEADER) < 0 ||
        PyModule_AddIntConstant(m, "PLAIN", KIND_PLAIN) < 0 ||
        PyModule_AddIntConstant(m, "PARTS", KIND_PARTS) < 0 ||
        PyModule_AddIntConstant(m, "SEGMENT", KIND_SEGMENT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
