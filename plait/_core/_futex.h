/*
 * plait/_core/_futex.h - futex words in shared memory, for _sync.c and _ring.c.
 *
 * Theory of operation
 * -------------------
 * A futex is a 32-bit word in memory plus a kernel wait queue keyed by the word's
 * physical page. Two processes that map the same memfd with MAP_SHARED see one word
 * and one wait queue: FUTEX_WAIT(addr, v) sleeps only if *addr still equals v (checked
 * atomically by the kernel, so a wakeup between our load and the sleep is never lost),
 * FUTEX_WAKE(addr, n) wakes up to n sleepers. Everything else is ordinary atomic
 * instructions on the word, done without a system call: an uncontended lock is one
 * compare-and-swap, an uncontended unlock one exchange.
 *
 * The owner mutex (plait_mutex_*) is Drepper's "mutex 3" with the owner's pid in the
 * word instead of the constant 1:
 *
 *     word = 0                 free
 *     word = pid               held by process pid, nobody sleeps
 *     word = pid | WAITERS     held, and someone may sleep on the word
 *
 * Lock: CAS 0 -> pid. Failing that, set WAITERS and sleep on the word; a thread that
 * ever slept takes the lock with WAITERS set (it cannot know whether it was the last
 * sleeper), which costs at most one spurious FUTEX_WAKE. Unlock: exchange with 0, and
 * FUTEX_WAKE one sleeper if WAITERS was set.
 *
 * Owner death (the robust part). A process killed while holding the lock leaves its pid
 * in the word. A sleeper never sleeps longer than SLICE at once; each time a slice
 * passes it reads the pid from the word and asks /proc whether that process still runs
 * (a zombie counts as dead: it runs no more code). If not, it CASes that exact word
 * value to 0 (so only one sleeper wins, and a word that changed meanwhile is left
 * alone), wakes every sleeper, and reports MUTEX_OWNER_DIED with the pid; the caller
 * then does NOT hold the lock. The cost is one /proc read per sleeper per SLICE, only
 * while the lock is held for that long. Pid reuse within one slice after a death would
 * hide the death: the lock then waits for the new process, as it would for any holder.
 *
 * Pids are cached (getpid() is a system call in modern glibc) and refreshed in the
 * child of every fork by a pthread_atfork handler.
 */
#ifndef PLAIT_FUTEX_H
#define PLAIT_FUTEX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PLAIT_WAITERS 0x80000000u
#define PLAIT_PID_MASK 0x3fffffffu
#define PLAIT_SLICE 0.1  /* seconds a sleeper waits before it checks the owner */
#define PLAIT_SPIN 64    /* busy polls before sleeping: a holder on the other core
                            usually releases within a few hundred nanoseconds */

enum { MUTEX_OWNER_DIED = -2, MUTEX_ERROR = -1, MUTEX_TIMEOUT = 0, MUTEX_ACQUIRED = 1 };

static inline long
futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *rel)
{
    return syscall(SYS_futex, addr, FUTEX_WAIT, expected, rel, NULL, 0);
}

static inline long
futex_wake(uint32_t *addr, int n)
{
    return syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The next sleep before `deadline` (< 0: none), at most `slice` seconds, into *rel.
 * Returns 0 when the deadline has passed. */
static inline int
next_slice(double deadline, double slice, struct timespec *rel)
{
    double left = slice;
    if (deadline >= 0) {
        double rest = deadline - monotonic_now();
        if (rest <= 0)
            return 0;
        if (rest < left)
            left = rest;
    }
    rel->tv_sec = (time_t)left;
    rel->tv_nsec = (long)((left - (double)rel->tv_sec) * 1e9);
    return 1;
}

/* Whether process `pid` still runs: not gone, not a zombie. Errs towards "alive". */
static int
process_alive(uint32_t pid)
{
    char path[48], buf[512];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return !(kill((pid_t)pid, 0) == -1 && errno == ESRCH);
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;  /* the process went away while we read */
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');  /* comm may hold ')' itself: take the last */
    if (paren == NULL || paren[1] == '\0' || paren[2] == '\0')
        return 1;
    return !(paren[2] == 'Z' || paren[2] == 'X' || paren[2] == 'x');
}

static uint32_t plait_cached_pid;

static void
plait_refresh_pid(void)
{
    plait_cached_pid = (uint32_t)getpid();
}

/* Call once from the module's init. */
static void
plait_pid_init(void)
{
    static int done;
    plait_refresh_pid();
    if (!done) {
        pthread_atfork(NULL, NULL, plait_refresh_pid);
        done = 1;
    }
}

static inline int
mutex_try(uint32_t *word, uint32_t value)
{
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(word, &expected, value, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

/* Lock the owner mutex at `word` for this process. Called with the GIL held; releases
 * it only while sleeping. `timeout` < 0 waits forever; `blocking` 0 never sleeps.
 * Returns a MUTEX_* code: MUTEX_ERROR with a Python exception set (a signal handler
 * raised; only if `interruptible`, else signals wait for the caller's next check),
 * MUTEX_OWNER_DIED with the dead holder in *dead_pid and the lock NOT held. */
static int
plait_mutex_lock_ex(uint32_t *word, int blocking, double timeout, uint32_t *dead_pid,
                    int interruptible)
{
    uint32_t me = plait_cached_pid;
    if (mutex_try(word, me))
        return MUTEX_ACQUIRED;
    if (!blocking || timeout == 0)
        return MUTEX_TIMEOUT;
    for (int i = 0; i < PLAIT_SPIN; i++) {
        cpu_relax();
        if (__atomic_load_n(word, __ATOMIC_RELAXED) == 0 && mutex_try(word, me))
            return MUTEX_ACQUIRED;
    }
    double deadline = timeout < 0 ? -1 : monotonic_now() + timeout;
    uint32_t take = me | PLAIT_WAITERS;
    for (;;) {
        uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
        if (v == 0) {
            if (mutex_try(word, take))
                return MUTEX_ACQUIRED;
            continue;
        }
        if (!(v & PLAIT_WAITERS)) {
            if (!__atomic_compare_exchange_n(word, &v, v | PLAIT_WAITERS, 0, __ATOMIC_RELAXED,
                                             __ATOMIC_RELAXED))
                continue;
            v |= PLAIT_WAITERS;
        }
        struct timespec rel;
        int more = next_slice(deadline, PLAIT_SLICE, &rel);
        long r = 0;
        int err = ETIMEDOUT;
        if (more) {
            Py_BEGIN_ALLOW_THREADS
            r = futex_wait(word, v, &rel);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        if (r == -1 && err == EINTR) {
            if (interruptible && PyErr_CheckSignals() < 0)
                return MUTEX_ERROR;
        }
        else if (!more || (r == -1 && err == ETIMEDOUT)) {
            uint32_t now = __atomic_load_n(word, __ATOMIC_RELAXED);
            uint32_t pid = now & PLAIT_PID_MASK;
            if (pid != 0 && pid != me && !process_alive(pid)) {
                if (__atomic_compare_exchange_n(word, &now, 0, 0, __ATOMIC_RELEASE,
                                                __ATOMIC_RELAXED)) {
                    futex_wake(word, INT_MAX);
                    *dead_pid = pid;
                    return MUTEX_OWNER_DIED;
                }
                continue;
            }
            if (!more)
                return MUTEX_TIMEOUT;
        }
    }
}

static inline int
plait_mutex_lock(uint32_t *word, int blocking, double timeout, uint32_t *dead_pid)
{
    return plait_mutex_lock_ex(word, blocking, timeout, dead_pid, 1);
}

/* Unlock; returns the word it held (0: it was not locked, nothing changed). */
static inline uint32_t
plait_mutex_unlock(uint32_t *word)
{
    uint32_t old = __atomic_exchange_n(word, 0, __ATOMIC_RELEASE);
    if (old & PLAIT_WAITERS)
        futex_wake(word, 1);
    return old;
}

#endif /* PLAIT_FUTEX_H */
