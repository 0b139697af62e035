/*
 * plait/_core/_queue.c - the engine of plait's thread queues.
 *
 * Theory of operation
 * -------------------
 * queue.Queue spends its time in Python: a lock and three Conditions, each wait and
 * notify a handful of Python calls. Worse, with two busy threads the lock convoys: the
 * GIL can switch while one thread holds the queue's lock, the other thread blocks on it
 * and from then on the lock keeps being handed to a thread that does not hold the GIL.
 * Measured here (1 producer, 1 consumer thread): queue.Queue 0.3M items/s, the best
 * pure-Python design with one lock and waiter handoff 0.4M items/s (the convoy again),
 * a lock-free pure-Python design relying on the GIL 4.8M items/s without maxsize or
 * task counting, queue.SimpleQueue (C) 13M items/s.
 *
 * So the queue lives here, in C, and takes no lock of its own on the fast path:
 *
 *   The GIL is the queue's mutex. Every operation on a queue in "atomic" mode runs from
 *   start to end while holding the GIL and without running Python code: the storage is
 *   a deque (FIFO) or a list (LIFO) whose append/pop we call through pre-bound builtin
 *   methods, which neither run Python code nor release the GIL. No other thread can
 *   observe a half-done operation. (A free-threaded build re-enables the GIL when it
 *   imports this module, because it does not declare Py_mod_gil_not_used.)
 *
 *   A subclass that overrides _put/_get/_qsize/_init (the standard library's hooks),
 *   and PriorityQueue (heappush compares items, which may run Python code), run in
 *   "hooked" mode: the hooks are called as Python methods, the GIL may switch inside
 *   them, so each operation also holds `mutex`, a plain OS lock. That is the standard
 *   library's cost, no worse.
 *
 *   The standard queue hands its lock out as `q.mutex` (`with q.mutex: q.queue.clear()`
 *   is a known idiom). The first time a program reads `q.mutex`, the queue starts taking
 *   the mutex on every operation too ("locked"), so what the program does while holding
 *   it is as safe as with queue.Queue. Switching is safe at any moment: in atomic mode no
 *   operation is between a (skipped) lock and its unlock except inside sleep_on, which
 *   pairs its own unlock and lock.
 *
 *   Blocking uses waiters: a struct on the sleeping thread's C stack holding a fresh OS
 *   lock, taken once before it is linked into one of three lists (getters, putters,
 *   joiners). The thread then releases the GIL (and the mutex) and takes the lock a
 *   second time, which sleeps until a waker releases it or the timeout passes. A waker
 *   unlinks the first waiter, marks it woken and releases its lock, all under the GIL,
 *   so a waiter that timed out can tell, once it has the GIL back, whether it was woken
 *   (then it is already unlinked) or must unlink itself. A woken thread re-checks the
 *   queue: another thread may have taken the item first (barging is allowed, as with
 *   Condition), in which case it sleeps again.
 *
 * Invariants (under the GIL, plus the mutex in locked mode)
 *   - a waiter is linked iff it has not been woken and its owner is still asleep or
 *     about to unlink itself;
 *   - a put that adds an item wakes one getter; a get that removes one wakes one putter;
 *     task_done reaching zero, and shutdown, wake every joiner (shutdown also wakes every
 *     getter and putter, which then see is_shutdown);
 *   - a waiter that was woken but leaves because of an exception (Ctrl-C) passes the
 *     wakeup on, so no item is left behind with a getter still asleep.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <structmember.h>
#include <time.h>

typedef struct waiter {
    struct waiter *prev, *next;
    PyThread_type_lock lock; /* held from birth; released once by the waker */
    int woken;
} waiter;

typedef struct {
    PyObject_HEAD
    PyObject *queue;     /* the storage: self.queue, set by _init */
    PyObject *put_fn;    /* atomic mode: bound queue.append; NULL in hooked mode */
    PyObject *get_fn;    /* atomic mode: bound queue.popleft / queue.pop */
    PyThread_type_lock mutex; /* taken by every operation when `locked` */
    Py_ssize_t maxsize;
    Py_ssize_t unfinished_tasks;
    char is_shutdown;
    char hooked; /* storage through the Python hooks (implies locked) */
    char locked; /* hooked, or q.mutex was handed out */
    char mutex_out; /* q.mutex was handed out */
    waiter getters, putters, joiners; /* list heads (sentinels) */
} QueueObject;

static PyObject *Empty, *Full, *ShutDown, *deque_type;
static PyObject *str_qsize, *str_put, *str_get, *str_init; /* hook names, interned */

/* ---- waiter lists ------------------------------------------------------------ */

static void list_init(waiter *head) { head->prev = head->next = head; }

static void list_append(waiter *head, waiter *w)
{
    w->prev = head->prev;
    w->next = head;
    head->prev->next = w;
    head->prev = w;
}

static void list_unlink(waiter *w)
{
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->prev = w->next = w;
}

/* Wake the oldest waiter of a list, if any. */
static void wake_one(waiter *head)
{
    waiter *w = head->next;
    if (w == head)
        return;
    list_unlink(w);
    w->woken = 1;
    PyThread_release_lock(w->lock);
}

static void wake_all(waiter *head)
{
    while (head->next != head)
        wake_one(head);
}

/* ---- the mutex (locked mode) -------------------------------------------------- */

static void mutex_lock(QueueObject *q)
{
    if (!q->locked || PyThread_acquire_lock(q->mutex, NOWAIT_LOCK))
        return;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(q->mutex, WAIT_LOCK);
    Py_END_ALLOW_THREADS
}

static void mutex_unlock(QueueObject *q)
{
    if (q->locked)
        PyThread_release_lock(q->mutex);
}

/* ---- time ---------------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parse a timeout argument: -1.0 for None, else a non-negative number of seconds.
 * Returns -2.0 with ValueError/TypeError set on bad input. */
static double parse_timeout(PyObject *self, const char *method, PyObject *arg)
{
    if (arg == NULL || arg == Py_None)
        return -1.0;
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred())
        return -2.0;
    if (t < 0 || isnan(t)) {
        PyErr_Format(PyExc_ValueError,
                     "'timeout' must be a non-negative number, got %R (%s.%s)", arg,
                     Py_TYPE(self)->tp_name, method);
        return -2.0;
    }
    return t;
}

/*
 * Sleep on a waiter list until woken or the deadline (-1: none) passes.
 * Called and returns with the GIL and (locked mode) the mutex held. Returns 0 when woken
 * or timed out (the caller re-checks its condition and the clock), -1 with an exception
 * set when a signal handler raised.
 */
static int sleep_on(QueueObject *q, waiter *head, double deadline)
{
    waiter w;
    int rc = 0;
    w.lock = PyThread_allocate_lock();
    if (w.lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyThread_acquire_lock(w.lock, WAIT_LOCK);
    w.woken = 0;
    list_append(head, &w);
    mutex_unlock(q);
    for (;;) {
        PY_TIMEOUT_T us = -1;
        if (deadline >= 0) {
            double left = deadline - now();
            if (left <= 0)
                us = 0;
            else if (left * 1e6 >= (double)PY_TIMEOUT_MAX)
                us = PY_TIMEOUT_MAX; /* a later round sleeps the rest */
            else
                us = (PY_TIMEOUT_T)(left * 1e6);
        }
        PyLockStatus st;
        Py_BEGIN_ALLOW_THREADS
        st = PyThread_acquire_lock_timed(w.lock, us, 1);
        Py_END_ALLOW_THREADS
        if (st == PY_LOCK_INTR) {
            /* A signal arrived: run the Python handlers; Ctrl-C ends the wait. */
            if (Py_MakePendingCalls() < 0) {
                rc = -1;
                break;
            }
            continue;
        }
        break;
    }
    mutex_lock(q);
    if (!w.woken)
        list_unlink(&w);
    else if (rc < 0)
        wake_one(head); /* leaving with an exception: hand the wakeup on */
    PyThread_free_lock(w.lock);
    return rc;
}

/* Deadline for a timeout parsed by parse_timeout (-1: none). */
static double deadline_of(double timeout) { return timeout < 0 ? -1.0 : now() + timeout; }

static int expired(double deadline) { return deadline >= 0 && now() >= deadline; }

/* ---- storage access ------------------------------------------------------------ */

static Py_ssize_t storage_size(QueueObject *q)
{
    if (!q->hooked)
        return PyObject_Size(q->queue);
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)q, str_qsize);
    if (r == NULL)
        return -1;
    Py_ssize_t n = PyNumber_AsSsize_t(r, PyExc_OverflowError);
    Py_DECREF(r);
    return n;
}

static int storage_put(QueueObject *q, PyObject *item)
{
    PyObject *r = q->hooked ? PyObject_CallMethodOneArg((PyObject *)q, str_put, item)
                            : PyObject_Vectorcall(q->put_fn, &item, 1, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *storage_get(QueueObject *q)
{
    return q->hooked ? PyObject_CallMethodNoArgs((PyObject *)q, str_get)
                     : PyObject_Vectorcall(q->get_fn, NULL, 0, NULL);
}

/* ---- argument parsing: (item,) block=True, timeout=None ------------------------- */

static int parse_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int nitem,
                      PyObject **item, int *block, PyObject **timeout)
{
    PyObject *slots[3] = {NULL, NULL, NULL}; /* item, block, timeout */
    static const char *names[3] = {"item", "block", "timeout"};
    int first = nitem ? 0 : 1;
    if (nargs > 3 - first) {
        PyErr_SetString(PyExc_TypeError, "too many positional arguments");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        slots[first + i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        int j = first;
        while (j < 3 && (name == NULL || strcmp(name, names[j]) != 0))
            j++;
        if (j == 3 || slots[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "unexpected or repeated keyword argument %R",
                         PyTuple_GET_ITEM(kwnames, k));
            return -1;
        }
        slots[j] = args[nargs + k];
    }
    if (nitem && slots[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "missing required argument 'item'");
        return -1;
    }
    *item = slots[0];
    *block = 1;
    if (slots[1] != NULL && (*block = PyObject_IsTrue(slots[1])) < 0)
        return -1;
    *timeout = slots[2];
    return 0;
}

/* ---- put and get ------------------------------------------------------------------ */

static PyObject *do_put(QueueObject *q, PyObject *item, int block, PyObject *timeout_arg)
{
    double deadline = -1.0;
    mutex_lock(q);
    if (q->is_shutdown)
        goto shut;
    if (q->maxsize > 0) {
        double timeout = -1.0;
        if (block && (timeout = parse_timeout((PyObject *)q, "put", timeout_arg)) == -2.0)
            goto error;
        deadline = deadline_of(timeout);
        for (;;) {
            Py_ssize_t n = storage_size(q);
            if (n < 0)
                goto error;
            if (n < q->maxsize)
                break;
            if (!block || expired(deadline)) {
                PyErr_SetNone(Full);
                goto error;
            }
            if (sleep_on(q, &q->putters, deadline) < 0)
                goto error;
            if (q->is_shutdown)
                goto shut;
        }
    }
    if (storage_put(q, item) < 0)
        goto error;
    q->unfinished_tasks++;
    wake_one(&q->getters);
    mutex_unlock(q);
    Py_RETURN_NONE;
shut:
    PyErr_SetNone(ShutDown);
error:
    mutex_unlock(q);
    return NULL;
}

static PyObject *do_get(QueueObject *q, int block, PyObject *timeout_arg)
{
    double timeout = -1.0, deadline;
    if (block && (timeout = parse_timeout((PyObject *)q, "get", timeout_arg)) == -2.0)
        return NULL;
    deadline = deadline_of(timeout);
    mutex_lock(q);
    for (;;) {
        Py_ssize_t n = storage_size(q);
        if (n < 0)
            break;
        if (n > 0) {
            PyObject *item = storage_get(q);
            if (item != NULL)
                wake_one(&q->putters);
            mutex_unlock(q);
            return item;
        }
        if (q->is_shutdown) {
            PyErr_SetNone(ShutDown);
            break;
        }
        if (!block || expired(deadline)) {
            PyErr_SetNone(Empty);
            break;
        }
        if (sleep_on(q, &q->getters, deadline) < 0)
            break;
    }
    mutex_unlock(q);
    return NULL;
}

static PyObject *Queue_put(QueueObject *q, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *item, *timeout;
    int block;
    if (parse_args(args, nargs, kwnames, 1, &item, &block, &timeout) < 0)
        return NULL;
    return do_put(q, item, block, timeout);
}

static PyObject *Queue_get(QueueObject *q, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *item, *timeout;
    int block;
    if (parse_args(args, nargs, kwnames, 0, &item, &block, &timeout) < 0)
        return NULL;
    return do_get(q, block, timeout);
}

static PyObject *Queue_put_nowait(QueueObject *q, PyObject *item)
{
    return do_put(q, item, 0, NULL);
}

static PyObject *Queue_get_nowait(QueueObject *q, PyObject *unused)
{
    return do_get(q, 0, NULL);
}

/* ---- size, tasks, shutdown --------------------------------------------------------- */

static PyObject *Queue_qsize(QueueObject *q, PyObject *unused)
{
    mutex_lock(q);
    Py_ssize_t n = storage_size(q);
    mutex_unlock(q);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *Queue_empty(QueueObject *q, PyObject *unused)
{
    mutex_lock(q);
    Py_ssize_t n = storage_size(q);
    mutex_unlock(q);
    return n < 0 ? NULL : PyBool_FromLong(n == 0);
}

static PyObject *Queue_full(QueueObject *q, PyObject *unused)
{
    mutex_lock(q);
    Py_ssize_t n = storage_size(q);
    mutex_unlock(q);
    return n < 0 ? NULL : PyBool_FromLong(q->maxsize > 0 && n >= q->maxsize);
}

static PyObject *Queue_task_done(QueueObject *q, PyObject *unused)
{
    mutex_lock(q);
    if (q->unfinished_tasks <= 0) {
        mutex_unlock(q);
        return PyErr_Format(PyExc_ValueError, "task_done() called too many times on %R",
                            (PyObject *)q);
    }
    if (--q->unfinished_tasks == 0)
        wake_all(&q->joiners);
    mutex_unlock(q);
    Py_RETURN_NONE;
}

static PyObject *Queue_join(QueueObject *q, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout_arg = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:join", kwlist, &timeout_arg))
        return NULL;
    double timeout = parse_timeout((PyObject *)q, "join", timeout_arg);
    if (timeout == -2.0)
        return NULL;
    double deadline = deadline_of(timeout);
    mutex_lock(q);
    while (q->unfinished_tasks > 0) {
        if (expired(deadline)) {
            mutex_unlock(q);
            Py_RETURN_FALSE;
        }
        if (sleep_on(q, &q->joiners, deadline) < 0) {
            mutex_unlock(q);
            return NULL;
        }
    }
    mutex_unlock(q);
    Py_RETURN_TRUE;
}

static PyObject *Queue_shutdown(QueueObject *q, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"immediate", NULL};
    int immediate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:shutdown", kwlist, &immediate))
        return NULL;
    /* Items dropped by an immediate shutdown are released after the state is settled:
     * releasing one may run a __del__, i.e. Python code that could switch threads. */
    PyObject *dropped = PyList_New(0);
    if (dropped == NULL)
        return NULL;
    mutex_lock(q);
    q->is_shutdown = 1;
    while (immediate) {
        Py_ssize_t n = storage_size(q);
        if (n <= 0) {
            if (n < 0)
                goto error;
            break;
        }
        PyObject *item = storage_get(q);
        if (item == NULL)
            goto error;
        int rc = PyList_Append(dropped, item);
        Py_DECREF(item);
        if (rc < 0)
            goto error;
        if (q->unfinished_tasks > 0)
            q->unfinished_tasks--;
    }
    if (q->unfinished_tasks == 0)
        wake_all(&q->joiners);
    wake_all(&q->getters);
    wake_all(&q->putters);
    mutex_unlock(q);
    Py_DECREF(dropped);
    Py_RETURN_NONE;
error:
    mutex_unlock(q);
    Py_DECREF(dropped);
    return NULL;
}

static Py_ssize_t list_length(waiter *head)
{
    Py_ssize_t n = 0;
    for (waiter *w = head->next; w != head; w = w->next)
        n++;
    return n;
}

/* A snapshot of the queue's state, for monitoring and tests. */
static PyObject *Queue_statistics(QueueObject *q, PyObject *unused)
{
    mutex_lock(q);
    Py_ssize_t n = storage_size(q);
    Py_ssize_t getters = list_length(&q->getters), putters = list_length(&q->putters);
    Py_ssize_t joiners = list_length(&q->joiners), unfinished = q->unfinished_tasks;
    int shut = q->is_shutdown;
    mutex_unlock(q);
    if (n < 0)
        return NULL;
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:O}", "qsize", n, "maxsize", q->maxsize,
                         "unfinished_tasks", unfinished, "getters_waiting", getters,
                         "putters_waiting", putters, "joiners_waiting", joiners,
                         "is_shutdown", shut ? Py_True : Py_False);
}

/* ---- life cycle ------------------------------------------------------------------- */

static PyObject *Queue_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    QueueObject *q = (QueueObject *)type->tp_alloc(type, 0);
    if (q == NULL)
        return NULL;
    q->mutex = PyThread_allocate_lock();
    if (q->mutex == NULL) {
        Py_DECREF(q);
        return PyErr_NoMemory();
    }
    list_init(&q->getters);
    list_init(&q->putters);
    list_init(&q->joiners);
    q->hooked = q->locked = 1; /* until __init__ has chosen the storage */
    return (PyObject *)q;
}

/* Bind the storage's own methods when the class uses the stock hooks: the class
 * attribute _hook_mode is "fifo" (deque) or "lifo" (list), else hooks are called. */
static int choose_mode(QueueObject *q)
{
    Py_CLEAR(q->put_fn);
    Py_CLEAR(q->get_fn);
    q->hooked = q->locked = 1;
    PyObject *mode = PyObject_GetAttrString((PyObject *)Py_TYPE(q), "_hook_mode");
    if (mode == NULL)
        return -1;
    int fifo = PyUnicode_Check(mode) && PyUnicode_CompareWithASCIIString(mode, "fifo") == 0;
    int lifo = PyUnicode_Check(mode) && PyUnicode_CompareWithASCIIString(mode, "lifo") == 0;
    Py_DECREF(mode);
    if (!fifo && !lifo)
        return 0;
    if (q->queue == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_init() did not set self.queue");
        return -1;
    }
    q->put_fn = PyObject_GetAttrString(q->queue, "append");
    q->get_fn = PyObject_GetAttrString(q->queue, fifo ? "popleft" : "pop");
    if (q->put_fn == NULL || q->get_fn == NULL)
        return -1;
    q->hooked = 0;
    q->locked = q->mutex_out;
    return 0;
}

static int Queue_init(QueueObject *q, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"maxsize", NULL};
    Py_ssize_t maxsize = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:Queue", kwlist, &maxsize))
        return -1;
    q->maxsize = maxsize;
    PyObject *arg = PyLong_FromSsize_t(maxsize);
    if (arg == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)q, str_init, arg);
    Py_DECREF(arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return choose_mode(q);
}

static int SimpleQueue_init(QueueObject *q, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) > 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        PyErr_SetString(PyExc_TypeError, "SimpleQueue() takes no arguments");
        return -1;
    }
    Py_XSETREF(q->queue, PyObject_CallNoArgs(deque_type));
    if (q->queue == NULL)
        return -1;
    Py_XSETREF(q->put_fn, PyObject_GetAttrString(q->queue, "append"));
    Py_XSETREF(q->get_fn, PyObject_GetAttrString(q->queue, "popleft"));
    if (q->put_fn == NULL || q->get_fn == NULL)
        return -1;
    q->hooked = q->locked = 0;
    return 0;
}

static int Queue_traverse(QueueObject *q, visitproc visit, void *arg)
{
    /* A Python subclass's traverse visits the heap type itself; we must not. */
    Py_VISIT(q->queue);
    Py_VISIT(q->put_fn);
    Py_VISIT(q->get_fn);
    return 0;
}

static int Queue_clear(QueueObject *q)
{
    Py_CLEAR(q->queue);
    Py_CLEAR(q->put_fn);
    Py_CLEAR(q->get_fn);
    return 0;
}

static void Queue_dealloc(QueueObject *q)
{
    /* For a Python subclass, subtype_dealloc calls us and then drops its type. */
    PyObject_GC_UnTrack(q);
    Queue_clear(q);
    if (q->mutex != NULL)
        PyThread_free_lock(q->mutex);
    Py_TYPE(q)->tp_free((PyObject *)q);
}

/* ---- q.mutex: the queue's lock, as a lock object -------------------------------- */

typedef struct {
    PyObject_HEAD
    QueueObject *queue; /* strong; the queue does not point back, so no cycle */
} MutexObject;

static PyTypeObject Mutex_Type;

static PyObject *Queue_get_mutex(QueueObject *q, void *closure)
{
    MutexObject *m = PyObject_New(MutexObject, &Mutex_Type);
    if (m == NULL)
        return NULL;
    m->queue = (QueueObject *)Py_NewRef(q);
    q->mutex_out = q->locked = 1;
    return (PyObject *)m;
}

/* acquire(blocking=True, timeout=-1), with the checks and results of _thread.lock. */
static PyObject *Mutex_acquire(MutexObject *m, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pd:acquire", kwlist, &blocking, &timeout))
        return NULL;
    if (!blocking && timeout != -1)
        return PyErr_Format(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
    if (timeout < 0 && timeout != -1)
        return PyErr_Format(PyExc_ValueError, "timeout value must be a non-negative number");
    PyThread_type_lock lock = m->queue->mutex;
    if (PyThread_acquire_lock(lock, NOWAIT_LOCK))
        Py_RETURN_TRUE;
    if (!blocking)
        Py_RETURN_FALSE;
    PY_TIMEOUT_T us = timeout < 0 ? -1
                      : timeout * 1e6 >= (double)PY_TIMEOUT_MAX ? PY_TIMEOUT_MAX
                                                                 : (PY_TIMEOUT_T)(timeout * 1e6);
    PyLockStatus st;
    Py_BEGIN_ALLOW_THREADS
    st = PyThread_acquire_lock_timed(lock, us, 0);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(st == PY_LOCK_ACQUIRED);
}

static PyObject *Mutex_release(MutexObject *m, PyObject *unused)
{
    if (PyThread_acquire_lock(m->queue->mutex, NOWAIT_LOCK)) {
        PyThread_release_lock(m->queue->mutex);
        return PyErr_Format(PyExc_RuntimeError, "release of the unlocked mutex of %R",
                            (PyObject *)m->queue);
    }
    PyThread_release_lock(m->queue->mutex);
    Py_RETURN_NONE;
}

static PyObject *Mutex_locked(MutexObject *m, PyObject *unused)
{
    if (!PyThread_acquire_lock(m->queue->mutex, NOWAIT_LOCK))
        Py_RETURN_TRUE;
    PyThread_release_lock(m->queue->mutex);
    Py_RETURN_FALSE;
}

static PyObject *Mutex_exit(MutexObject *m, PyObject *args)
{
    return Mutex_release(m, NULL);
}

static void Mutex_dealloc(MutexObject *m)
{
    Py_DECREF(m->queue);
    PyObject_Free(m);
}

static PyMethodDef Mutex_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Mutex_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1): take the queue's lock; True if taken."},
    {"__enter__", (PyCFunction)(void (*)(void))Mutex_acquire, METH_VARARGS | METH_KEYWORDS,
     "Take the queue's lock."},
    {"release", (PyCFunction)Mutex_release, METH_NOARGS,
     "Release the queue's lock; RuntimeError if it is not held."},
    {"__exit__", (PyCFunction)Mutex_exit, METH_VARARGS, "Release the queue's lock."},
    {"locked", (PyCFunction)Mutex_locked, METH_NOARGS, "Whether the lock is held."},
    {NULL},
};

static PyTypeObject Mutex_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "plait._core._queue.QueueMutex",
    .tp_basicsize = sizeof(MutexObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The lock of a plait queue (q.mutex): every operation of the queue takes it.",
    .tp_dealloc = (destructor)Mutex_dealloc,
    .tp_methods = Mutex_methods,
};

/* ---- type objects -------------------------------------------------------------------- */

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Queue_put, FASTKW,
     "put(item, block=True, timeout=None): see plait.queue.Queue.put"},
    {"get", (PyCFunction)(void (*)(void))Queue_get, FASTKW,
     "get(block=True, timeout=None): see plait.queue.Queue.get"},
    {"put_nowait", (PyCFunction)Queue_put_nowait, METH_O, "put(item, block=False)"},
    {"get_nowait", (PyCFunction)Queue_get_nowait, METH_NOARGS, "get(block=False)"},
    {"qsize", (PyCFunction)Queue_qsize, METH_NOARGS, "The number of items (a snapshot)."},
    {"empty", (PyCFunction)Queue_empty, METH_NOARGS, "Whether qsize() == 0 (a snapshot)."},
    {"full", (PyCFunction)Queue_full, METH_NOARGS, "Whether the queue is at maxsize."},
    {"task_done", (PyCFunction)Queue_task_done, METH_NOARGS,
     "Mark one got item as processed; ValueError if called more often than put()."},
    {"join", (PyCFunction)(void (*)(void))Queue_join, METH_VARARGS | METH_KEYWORDS,
     "join(timeout=None): wait until every item put has been marked task_done()."},
    {"shutdown", (PyCFunction)(void (*)(void))Queue_shutdown, METH_VARARGS | METH_KEYWORDS,
     "shutdown(immediate=False): make put() raise ShutDown, and get() once empty."},
    {"statistics", (PyCFunction)Queue_statistics, METH_NOARGS,
     "A dict: qsize, maxsize, unfinished_tasks, getters/putters/joiners_waiting, is_shutdown."},
    {NULL},
};

/* self.queue: replacing the storage re-binds the fast methods to the new one. */
static PyObject *Queue_get_queue(QueueObject *q, void *closure)
{
    if (q->queue == NULL)
        return PyErr_Format(PyExc_AttributeError, "%s has no storage yet", Py_TYPE(q)->tp_name);
    return Py_NewRef(q->queue);
}

static int Queue_set_queue(QueueObject *q, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot delete the queue's storage");
        return -1;
    }
    Py_XSETREF(q->queue, Py_NewRef(value));
    return q->put_fn != NULL ? choose_mode(q) : 0;
}

/* unfinished_tasks is writable, as in queue.Queue; setting it to zero releases join(). */
static PyObject *Queue_get_unfinished(QueueObject *q, void *closure)
{
    return PyLong_FromSsize_t(q->unfinished_tasks);
}

static int Queue_set_unfinished(QueueObject *q, PyObject *value, void *closure)
{
    Py_ssize_t n = value == NULL ? -1 : PyNumber_AsSsize_t(value, PyExc_OverflowError);
    if (n == -1 && (value == NULL || PyErr_Occurred())) {
        if (value == NULL)
            PyErr_SetString(PyExc_TypeError, "cannot delete unfinished_tasks");
        return -1;
    }
    q->unfinished_tasks = n;
    if (n <= 0)
        wake_all(&q->joiners);
    return 0;
}

static PyGetSetDef Queue_getset[] = {
    {"unfinished_tasks", (getter)Queue_get_unfinished, (setter)Queue_set_unfinished,
     "Items put and not yet marked task_done().", NULL},
    {"queue", (getter)Queue_get_queue, (setter)Queue_set_queue, "The storage (set by _init).",
     NULL},
    {"mutex", (getter)Queue_get_mutex, NULL, "The queue's lock (see the top of _queue.c).", NULL},
    {NULL},
};

static PyMemberDef Queue_members[] = {
    {"maxsize", T_PYSSIZET, offsetof(QueueObject, maxsize), 0, "Bound; <= 0: none."},
    {"is_shutdown", T_BOOL, offsetof(QueueObject, is_shutdown), READONLY,
     "Whether shutdown() was called."},
    {NULL},
};

static PyMethodDef SimpleQueue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Queue_put, FASTKW,
     "put(item, block=True, timeout=None): never blocks."},
    {"get", (PyCFunction)(void (*)(void))Queue_get, FASTKW,
     "get(block=True, timeout=None): see plait.queue.SimpleQueue.get"},
    {"put_nowait", (PyCFunction)Queue_put_nowait, METH_O, "put(item, block=False)"},
    {"get_nowait", (PyCFunction)Queue_get_nowait, METH_NOARGS, "get(block=False)"},
    {"qsize", (PyCFunction)Queue_qsize, METH_NOARGS, "The number of items (a snapshot)."},
    {"empty", (PyCFunction)Queue_empty, METH_NOARGS, "Whether qsize() == 0 (a snapshot)."},
    {"statistics", (PyCFunction)Queue_statistics, METH_NOARGS,
     "A dict: qsize, getters_waiting (and fields that are constant for a SimpleQueue)."},
    {NULL},
};

#define TYPE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC)

static PyTypeObject QueueCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "plait._core._queue.QueueCore",
    .tp_basicsize = sizeof(QueueObject),
    .tp_flags = TYPE_FLAGS,
    .tp_doc = "The C engine of plait.queue.Queue; use that class.",
    .tp_new = Queue_new,
    .tp_init = (initproc)Queue_init,
    .tp_dealloc = (destructor)Queue_dealloc,
    .tp_traverse = (traverseproc)Queue_traverse,
    .tp_clear = (inquiry)Queue_clear,
    .tp_methods = Queue_methods,
    .tp_members = Queue_members,
    .tp_getset = Queue_getset,
};

static PyTypeObject SimpleQueueCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "plait._core._queue.SimpleQueueCore",
    .tp_basicsize = sizeof(QueueObject),
    .tp_flags = TYPE_FLAGS,
    .tp_doc = "The C engine of plait.queue.SimpleQueue; use that class.",
    .tp_new = Queue_new,
    .tp_init = (initproc)SimpleQueue_init,
    .tp_dealloc = (destructor)Queue_dealloc,
    .tp_traverse = (traverseproc)Queue_traverse,
    .tp_clear = (inquiry)Queue_clear,
    .tp_methods = SimpleQueue_methods,
};

/* ---- module ----------------------------------------------------------------------- */

static struct PyModuleDef queue_module = {
    PyModuleDef_HEAD_INIT, "plait._core._queue",
    "The C engine of plait's thread queues (see the comment at the top of _queue.c).", -1,
};

PyMODINIT_FUNC PyInit__queue(void)
{
    PyObject *stdqueue = NULL, *collections = NULL, *m = NULL;
    if (PyType_Ready(&QueueCore_Type) < 0 || PyType_Ready(&SimpleQueueCore_Type) < 0 ||
        PyType_Ready(&Mutex_Type) < 0)
        return NULL;
    str_qsize = PyUnicode_InternFromString("_qsize");
    str_put = PyUnicode_InternFromString("_put");
    str_get = PyUnicode_InternFromString("_get");
    str_init = PyUnicode_InternFromString("_init");
    if (str_qsize == NULL || str_put == NULL || str_get == NULL || str_init == NULL)
        goto error;
    if ((stdqueue = PyImport_ImportModule("queue")) == NULL)
        goto error;
    if ((collections = PyImport_ImportModule("collections")) == NULL)
        goto error;
    /* Empty and Full are the standard classes, so `except queue.Empty` keeps working;
     * ShutDown is the standard one where it exists (3.13+), ours before that. */
    Empty = PyObject_GetAttrString(stdqueue, "Empty");
    Full = PyObject_GetAttrString(stdqueue, "Full");
    deque_type = PyObject_GetAttrString(collections, "deque");
    if (Empty == NULL || Full == NULL || deque_type == NULL)
        goto error;
    ShutDown = PyObject_GetAttrString(stdqueue, "ShutDown");
    if (ShutDown == NULL) {
        PyErr_Clear();
        ShutDown = PyErr_NewExceptionWithDoc(
            "plait.queue.ShutDown", "Raised by put() or get() on a queue that was shut down.",
            NULL, NULL);
        if (ShutDown == NULL)
            goto error;
    }
    if ((m = PyModule_Create(&queue_module)) == NULL)
        goto error;
    Py_INCREF(&QueueCore_Type);
    Py_INCREF(&SimpleQueueCore_Type);
    if (PyModule_AddObject(m, "QueueCore", (PyObject *)&QueueCore_Type) < 0 ||
        PyModule_AddObject(m, "SimpleQueueCore", (PyObject *)&SimpleQueueCore_Type) < 0 ||
        PyModule_AddObjectRef(m, "ShutDown", ShutDown) < 0 ||
        PyModule_AddObjectRef(m, "Empty", Empty) < 0 ||
        PyModule_AddObjectRef(m, "Full", Full) < 0)
        goto error;
    Py_DECREF(stdqueue);
    Py_DECREF(collections);
    return m;
error:
    Py_XDECREF(stdqueue);
    Py_XDECREF(collections);
    Py_XDECREF(m);
    return NULL;
}
