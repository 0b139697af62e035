/*
 * plait/_core/_sync.c - locks and semaphores whose state lives in shared memory.
 *
 * Theory of operation
 * -------------------
 * A SemLock is a 32-byte record (struct shared_sem) inside a buffer the caller maps
 * with MAP_SHARED (a memfd, see plait.ipc.synchronize); every process that maps the
 * same memfd operates on the same record, with atomic instructions and futex waits
 * (see _futex.h). The Python object holds a buffer export of the mapping, so the pages
 * cannot be unmapped under it, and a pointer to its record. There is no state in the
 * object that other processes need: the record is the whole truth.
 *
 * Three kinds share the record:
 *
 *   LOCK       word is the owner mutex of _futex.h (0, or the holder's pid | WAITERS);
 *              `thread` notes the holding thread for _is_mine (Condition checks it).
 *              Any thread of any process may release it, as with multiprocessing.Lock;
 *              releasing a free lock raises ValueError.
 *   RLOCK      the same word; `thread` and `depth` belong to the holder (only the
 *              holder writes them, after taking the word and before giving it back).
 *              Release by anyone else raises AssertionError, as multiprocessing does.
 *   SEMAPHORE  word is the count; `sleepers` counts processes asleep on it, so that a
 *              release only makes a system call when someone sleeps. The waiter's
 *              increment of `sleepers` and the releaser's increment of `word` are both
 *              sequentially consistent, so at least one of them sees the other: either
 *              the releaser wakes, or the sleeper's FUTEX_WAIT finds word != 0.
 *              `maxvalue` bounds the count (BoundedSemaphore: ValueError past it).
 *
 *   EVENT      word is the flag (0 or 1); `sleepers` counts processes in wait(), so set()
 *              only makes a system call (FUTEX_WAKE of all) when someone waits. Only the
 *              _event_* methods apply to it.
 *
 * Owner death: a blocking acquire of a LOCK or RLOCK whose holder died frees the lock
 * and raises OwnerDiedError (pid in .pid) in exactly one waiter; see _futex.h for the
 * detection. Semaphores have no owner and no such rule.
 *
 * Waiting releases the GIL and handles EINTR by running the signal handlers, so Ctrl-C
 * interrupts an acquire. The fast paths (uncontended acquire and release) do not touch
 * the GIL or make system calls.
 */
#include "_futex.h"

#include <structmember.h>

enum { KIND_LOCK = 0, KIND_RLOCK = 1, KIND_SEMAPHORE = 2, KIND_EVENT = 3 };
#define SEM_MAGIC 0x504c5453u /* "PLTS" */
#define PLAIT_SEM_MAX 0x7fffffff

struct shared_sem {
    uint32_t word;      /* LOCK/RLOCK: owner mutex; SEMAPHORE: the count */
    uint32_t sleepers;  /* SEMAPHORE: processes asleep on word */
    uint32_t kind;
    uint32_t maxvalue;
    uint64_t thread;    /* LOCK/RLOCK: pthread_self() of the holder, in its process */
    uint32_t depth;     /* RLOCK: recursion depth of the holder */
    uint32_t magic;     /* SEM_MAGIC once initialized */
};

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    struct shared_sem *s;
} SemLockObject;

static PyObject *OwnerDiedError;

static int
raise_owner_died(uint32_t pid)
{
    PyObject *exc = PyObject_CallFunction(
        OwnerDiedError, "N",
        PyUnicode_FromFormat("process %u died holding the lock; the lock was freed and is "
                             "not held by the caller", pid));
    if (exc == NULL)
        return -1;
    PyObject *p = PyLong_FromUnsignedLong(pid);
    if (p == NULL || PyObject_SetAttrString(exc, "pid", p) < 0) {
        Py_XDECREF(p);
        Py_DECREF(exc);
        return -1;
    }
    Py_DECREF(p);
    PyErr_SetObject(OwnerDiedError, exc);
    Py_DECREF(exc);
    return -1;
}

static inline uint64_t
this_thread(void)
{
    return (uint64_t)pthread_self();
}

static inline int
held_by_me(struct shared_sem *s)
{
    uint32_t w = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    return (w & PLAIT_PID_MASK) == plait_cached_pid &&
           __atomic_load_n(&s->thread, __ATOMIC_RELAXED) == this_thread();
}

static int
check_ready(SemLockObject *self)
{
    if (self->s == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SemLock is not attached to shared memory");
        return -1;
    }
    return 0;
}

/* For acquire and release: an event record is not a lock. */
static int
check_lock(SemLockObject *self)
{
    if (check_ready(self) < 0)
        return -1;
    if (self->s->kind == KIND_EVENT) {
        PyErr_SetString(PyExc_TypeError, "an event record cannot be acquired or released");
        return -1;
    }
    return 0;
}

static int
check_event(SemLockObject *self)
{
    if (check_ready(self) < 0)
        return -1;
    if (self->s->kind != KIND_EVENT) {
        PyErr_SetString(PyExc_TypeError, "not an event record");
        return -1;
    }
    return 0;
}

static PyObject *
SemLock_event_set(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_event(self) < 0)
        return NULL;
    struct shared_sem *s = self->s;
    __atomic_store_n(&s->word, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) != 0)
        futex_wake(&s->word, INT_MAX);
    Py_RETURN_NONE;
}

static PyObject *
SemLock_event_clear(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_event(self) < 0)
        return NULL;
    __atomic_store_n(&self->s->word, 0, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *
SemLock_event_is_set(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_event(self) < 0)
        return NULL;
    return PyBool_FromLong(__atomic_load_n(&self->s->word, __ATOMIC_SEQ_CST) != 0);
}

/* _event_wait(timeout=None) -> bool: block until the flag is set or timeout passes. */
static PyObject *
SemLock_event_wait(SemLockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_event(self) < 0)
        return NULL;
    struct shared_sem *s = self->s;
    if (__atomic_load_n(&s->word, __ATOMIC_SEQ_CST))
        Py_RETURN_TRUE;
    double deadline = -1;
    if (nargs > 0 && args[0] != Py_None) {
        double t = PyFloat_AsDouble(args[0]);
        if (t == -1 && PyErr_Occurred())
            return NULL;
        if (t != t) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
            return NULL;
        }
        deadline = monotonic_now() + (t < 0 ? 0 : t);
    }
    for (;;) {
        struct timespec rel;
        if (!next_slice(deadline, 3600.0, &rel))
            Py_RETURN_FALSE;
        __atomic_fetch_add(&s->sleepers, 1, __ATOMIC_SEQ_CST);
        long r = 0;
        int err = 0;
        if (__atomic_load_n(&s->word, __ATOMIC_SEQ_CST) == 0) {
            Py_BEGIN_ALLOW_THREADS
            r = futex_wait(&s->word, 0, &rel);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        __atomic_fetch_sub(&s->sleepers, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&s->word, __ATOMIC_SEQ_CST))
            Py_RETURN_TRUE;
        if (r == -1 && err == EINTR && PyErr_CheckSignals() < 0)
            return NULL;
    }
}

/* Parse (block=True, timeout=None), vectorcall style, into blocking and seconds
 * (< 0: forever). The common call, acquire(), parses nothing. */
static int
parse_acquire(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int *blocking,
              double *timeout)
{
    PyObject *block_obj = NULL, *timeout_obj = Py_None;
    *blocking = 1;
    *timeout = -1;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs == 0 && nkw == 0)
        return 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", nargs);
        return -1;
    }
    if (nargs >= 1)
        block_obj = args[0];
    if (nargs == 2)
        timeout_obj = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(key, "block") == 0 && nargs < 1)
            block_obj = value;
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 && nargs < 2)
            timeout_obj = value;
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected or repeated argument %R",
                         key);
            return -1;
        }
    }
    if (block_obj != NULL) {
        *blocking = PyObject_IsTrue(block_obj);
        if (*blocking < 0)
            return -1;
    }
    if (*blocking && timeout_obj != Py_None) {
        double t = PyFloat_AsDouble(timeout_obj);
        if (t == -1 && PyErr_Occurred())
            return -1;
        if (t != t) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
            return -1;
        }
        *timeout = t < 0 ? 0 : t;  /* as multiprocessing: a negative timeout polls */
    }
    return 0;
}

static int
semaphore_acquire(struct shared_sem *s, int blocking, double timeout)
{
    uint32_t v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    while (v > 0) {
        if (__atomic_compare_exchange_n(&s->word, &v, v - 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return 1;
    }
    if (!blocking || timeout == 0)
        return 0;
    for (int i = 0; i < PLAIT_SPIN; i++) {
        cpu_relax();
        v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
        while (v > 0) {
            if (__atomic_compare_exchange_n(&s->word, &v, v - 1, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 1;
        }
    }
    double deadline = timeout < 0 ? -1 : monotonic_now() + timeout;
    for (;;) {
        struct timespec rel;
        /* Semaphores have no owner to check, so sleep in slices only to re-read the
         * clock; a wakeup arrives at once. */
        if (!next_slice(deadline, 3600.0, &rel))
            return 0;
        __atomic_fetch_add(&s->sleepers, 1, __ATOMIC_SEQ_CST);
        long r = 0;
        int err = 0;
        if (__atomic_load_n(&s->word, __ATOMIC_SEQ_CST) == 0) {
            Py_BEGIN_ALLOW_THREADS
            r = futex_wait(&s->word, 0, &rel);
            err = errno;
            Py_END_ALLOW_THREADS
        }
        __atomic_fetch_sub(&s->sleepers, 1, __ATOMIC_SEQ_CST);
        v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
        while (v > 0) {
            if (__atomic_compare_exchange_n(&s->word, &v, v - 1, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 1;
        }
        if (r == -1 && err == EINTR && PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* Returns 1 acquired, 0 not (timeout or would block), -1 with an exception set. */
static int
semlock_acquire_impl(SemLockObject *self, int blocking, double timeout)
{
    struct shared_sem *s = self->s;
    uint32_t dead = 0;
    int r;
    switch (s->kind) {
    case KIND_SEMAPHORE:
        return semaphore_acquire(s, blocking, timeout);
    case KIND_RLOCK:
        if (held_by_me(s)) {
            s->depth++;
            return 1;
        }
        /* fall through */
    default:
        r = plait_mutex_lock(&s->word, blocking, timeout, &dead);
        if (r == MUTEX_ACQUIRED) {
            __atomic_store_n(&s->thread, this_thread(), __ATOMIC_RELAXED);
            s->depth = 1;
            return 1;
        }
        if (r == MUTEX_OWNER_DIED)
            return raise_owner_died(dead);
        return r == MUTEX_TIMEOUT ? 0 : -1;
    }
}

static int
semlock_release_impl(SemLockObject *self)
{
    struct shared_sem *s = self->s;
    uint32_t v;
    switch (s->kind) {
    case KIND_SEMAPHORE:
        v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
        do {
            if (v >= s->maxvalue) {
                PyErr_SetString(PyExc_ValueError,
                                s->maxvalue == PLAIT_SEM_MAX
                                    ? "semaphore value would overflow"
                                    : "semaphore or lock released too many times");
                return -1;
            }
        } while (!__atomic_compare_exchange_n(&s->word, &v, v + 1, 0, __ATOMIC_SEQ_CST,
                                              __ATOMIC_RELAXED));
        if (__atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) != 0)
            futex_wake(&s->word, 1);
        return 0;
    case KIND_RLOCK:
        if (!held_by_me(s)) {
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
            return -1;
        }
        if (--s->depth > 0)
            return 0;
        /* fall through */
    default:
        __atomic_store_n(&s->thread, 0, __ATOMIC_RELAXED);
        s->depth = 0;
        if (plait_mutex_unlock(&s->word) == 0) {
            PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
            return -1;
        }
        return 0;
    }
}

static PyObject *
SemLock_acquire(SemLockObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    int blocking;
    double timeout;
    if (check_lock(self) < 0 || parse_acquire(args, nargs, kwnames, &blocking, &timeout) < 0)
        return NULL;
    int r = semlock_acquire_impl(self, blocking, timeout);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
SemLock_release(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_lock(self) < 0 || semlock_release_impl(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
SemLock_enter(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_lock(self) < 0)
        return NULL;
    int r = semlock_acquire_impl(self, 1, -1);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
SemLock_exit(SemLockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_lock(self) < 0 || semlock_release_impl(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
SemLock_attach(SemLockObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "offset", "kind", "value", "maxvalue", NULL};
    Py_buffer view;
    Py_ssize_t offset;
    int kind = -1;
    long long value = 0, maxvalue = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "w*n|iLL:_attach", kwlist, &view, &offset,
                                     &kind, &value, &maxvalue))
        return NULL;
    if (self->s != NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the SemLock is already attached");
        return NULL;
    }
    if (offset < 0 || offset % 8 != 0 ||
        offset > view.len - (Py_ssize_t)sizeof(struct shared_sem)) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "no aligned SemLock record at offset %zd of %zd bytes",
                     offset, view.len);
        return NULL;
    }
    struct shared_sem *s = (struct shared_sem *)((char *)view.buf + offset);
    if (kind >= 0) {
        if (kind > KIND_EVENT || value < 0 || value > PLAIT_SEM_MAX || maxvalue < 0 ||
            maxvalue > PLAIT_SEM_MAX || value > maxvalue) {
            PyBuffer_Release(&view);
            PyErr_Format(PyExc_ValueError,
                         "bad SemLock: kind %d, value %lld, maxvalue %lld", kind, value,
                         maxvalue);
            return NULL;
        }
        memset(s, 0, sizeof *s);
        s->kind = (uint32_t)kind;
        s->maxvalue = (uint32_t)maxvalue;
        s->word = kind >= KIND_SEMAPHORE ? (uint32_t)value : 0;
        __atomic_store_n(&s->magic, SEM_MAGIC, __ATOMIC_RELEASE);
    }
    else if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != SEM_MAGIC ||
             s->kind > KIND_EVENT) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "no SemLock record at offset %zd", offset);
        return NULL;
    }
    self->view = view;
    self->s = s;
    Py_RETURN_NONE;
}

static PyObject *
SemLock_count(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    struct shared_sem *s = self->s;
    if (s->kind >= KIND_SEMAPHORE)
        return PyLong_FromLong(0);
    return PyLong_FromUnsignedLong(held_by_me(s) ? s->depth : 0);
}

static PyObject *
SemLock_is_mine(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    return PyBool_FromLong(self->s->kind < KIND_SEMAPHORE && held_by_me(self->s));
}

static PyObject *
SemLock_get_value(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    uint32_t w = __atomic_load_n(&self->s->word, __ATOMIC_RELAXED);
    if (self->s->kind >= KIND_SEMAPHORE)
        return PyLong_FromUnsignedLong(w);
    return PyLong_FromLong(w == 0);
}

static PyObject *
SemLock_owner(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0)
        return NULL;
    if (self->s->kind >= KIND_SEMAPHORE)
        Py_RETURN_NONE;
    uint32_t w = __atomic_load_n(&self->s->word, __ATOMIC_RELAXED) & PLAIT_PID_MASK;
    if (w == 0)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(w);
}

static PyObject *
SemLock_get_kind(SemLockObject *self, void *closure)
{
    if (check_ready(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(self->s->kind);
}

static PyObject *
SemLock_get_maxvalue(SemLockObject *self, void *closure)
{
    if (check_ready(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(self->s->maxvalue);
}

static void
SemLock_dealloc(SemLockObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->s != NULL) {
        self->s = NULL;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
SemLock_traverse(SemLockObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (self->s != NULL)
        Py_VISIT(self->view.obj);
    return 0;
}

static PyMethodDef SemLock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))SemLock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool\n\nBlocks until acquired, or `timeout` "
     "seconds (False). Raises OwnerDiedError when the holder of a lock died."},
    {"release", (PyCFunction)SemLock_release, METH_NOARGS,
     "Release; ValueError if released too many times, AssertionError for an RLock "
     "held by someone else."},
    {"__enter__", (PyCFunction)SemLock_enter, METH_NOARGS, "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))SemLock_exit, METH_FASTCALL, "release()"},
    {"_attach", (PyCFunction)(void (*)(void))SemLock_attach, METH_VARARGS | METH_KEYWORDS,
     "_attach(buffer, offset, kind=-1, value=0, maxvalue=0): use the record at `offset` "
     "of the writable shared `buffer`; a kind >= 0 initializes it."},
    {"_count", (PyCFunction)SemLock_count, METH_NOARGS,
     "Recursion depth held by the calling thread (0 if it does not hold it)."},
    {"_is_mine", (PyCFunction)SemLock_is_mine, METH_NOARGS,
     "Whether the calling thread holds the lock."},
    {"_get_value", (PyCFunction)SemLock_get_value, METH_NOARGS,
     "A semaphore's count; for a lock 1 if free, else 0."},
    {"_owner", (PyCFunction)SemLock_owner, METH_NOARGS,
     "The pid holding a lock, or None."},
    {"_event_set", (PyCFunction)SemLock_event_set, METH_NOARGS,
     "Set an event's flag and wake every waiter."},
    {"_event_clear", (PyCFunction)SemLock_event_clear, METH_NOARGS, "Reset the flag."},
    {"_event_is_set", (PyCFunction)SemLock_event_is_set, METH_NOARGS, "The flag."},
    {"_event_wait", (PyCFunction)(void (*)(void))SemLock_event_wait, METH_FASTCALL,
     "_event_wait(timeout=None) -> bool: block until the flag is set or timeout."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SemLock_getset[] = {
    {"kind", (getter)SemLock_get_kind, NULL, "0 lock, 1 recursive lock, 2 semaphore, 3 event",
     NULL},
    {"maxvalue", (getter)SemLock_get_maxvalue, NULL, "the bound of the count", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SemLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plait._core._sync.SemLock",
    .tp_doc = "A lock or semaphore record in shared memory; see plait.ipc.synchronize.",
    .tp_basicsize = sizeof(SemLockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)SemLock_dealloc,
    .tp_traverse = (traverseproc)SemLock_traverse,
    .tp_methods = SemLock_methods,
    .tp_getset = SemLock_getset,
};

static struct PyModuleDef sync_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "plait._core._sync",
    .m_doc = "Futex locks and semaphores in shared memory (see the source's essay).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__sync(void)
{
    plait_pid_init();
    if (PyType_Ready(&SemLockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&sync_module);
    if (m == NULL)
        return NULL;
    PyObject *errors = PyImport_ImportModule("plait._core.errors");
    if (errors == NULL)
        goto fail;
    PyObject *base = PyObject_GetAttrString(errors, "ProcessError");
    Py_DECREF(errors);
    if (base == NULL)
        goto fail;
    OwnerDiedError = PyErr_NewExceptionWithDoc(
        "plait._core._sync.OwnerDiedError",
        "The process holding a lock died without releasing it.\n\n"
        "Raised by a blocking acquire in the one waiter that found the holder dead; that "
        "waiter freed the lock and does not hold it. `pid` is the dead holder.",
        base, NULL);
    Py_DECREF(base);
    if (OwnerDiedError == NULL)
        goto fail;
    Py_INCREF(OwnerDiedError);
    if (PyModule_AddObject(m, "OwnerDiedError", OwnerDiedError) < 0)
        goto fail;
    Py_INCREF(&SemLockType);
    if (PyModule_AddObject(m, "SemLock", (PyObject *)&SemLockType) < 0)
        goto fail;
    if (PyModule_AddIntConstant(m, "RECORD_SIZE", sizeof(struct shared_sem)) < 0 ||
        PyModule_AddIntConstant(m, "LOCK", KIND_LOCK) < 0 ||
        PyModule_AddIntConstant(m, "RLOCK", KIND_RLOCK) < 0 ||
        PyModule_AddIntConstant(m, "SEMAPHORE", KIND_SEMAPHORE) < 0 ||
        PyModule_AddIntConstant(m, "EVENT", KIND_EVENT) < 0 ||
        PyModule_AddIntConstant(m, "SEM_VALUE_MAX", PLAIT_SEM_MAX) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
