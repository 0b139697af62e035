/*
 * plait/_core/_coro.c - the hot path of plait.coro in C: a socket's receive and send,
 * a stream's read and write, and the readiness and run steps of the kernel's loop.
 *
 * Theory of operation
 * -------------------
 * SocketCore is the base class of plait.coro.Socket. It holds the fields the hot path
 * reads (_io, _fileno, _drained, _plain) and implements recv, recv_into and sendall.
 * Each returns an *operation*: a small awaitable object that is its own iterator, so
 * that `await sock.recv(n)` runs no Python frame. Driven by the task's coroutine
 * through am_send (the SEND opcode's fast path), an operation
 *
 *   1. makes the system call on the fd itself (the socket is non-blocking);
 *   2. if it would block, yields the kernel's trap tuple (READ_WAIT or WRITE_WAIT, fd,
 *      socket), exactly the tuple plait.coro.traps.read_wait yields, and makes the call
 *      again when the kernel sends it back into the task;
 *   3. returns the result (the bytes, the count, None) as the value of the await.
 *
 * So the kernel cannot tell a C operation from the Python coroutines it replaces: the
 * traps, the "drained" rule (a short read makes the next read wait first), cancellation
 * (the kernel throws into the task; the operation re-raises and is done) and
 * ClosedResourceError (the kernel throws it into a waiter of a closed fd) are theirs.
 *
 * StreamCore, the base class of plait.coro.SocketStream, holds its _sock and _buffer;
 * with an empty buffer its read(n) is the socket's recv(n) and its write(data) always
 * the socket's sendall(data), without a Python frame in between.
 *
 * Anything off the plain path goes to the Python implementation, which module setup
 * hands over (set_fallbacks): TLS sockets, a socket.socket subclass, flags, a closed
 * socket, a recv_into with a count, data or a buffer that is not exactly bytes or
 * bytearray, a Socket subclass with an instance __dict__ (see op_dealloc); and a
 * sendall whose first send was short hands the rest to the Python send_rest
 * coroutine, which the operation then drives.
 * set_enabled(False) sends every call there and makes the kernel run its Python loop,
 * so one test suite runs both paths.
 *
 * A trap must not reach a foreign event loop: like traps.read_wait, an operation that
 * would wait outside a plait kernel raises NoKernelError. The kernel marks the thread
 * it runs in with set_running(); a thread-local flag, read without any dictionary.
 *
 * poll(epoll, timeout_ms, fds, wake_fd, append) is step 1 of the kernel's loop
 * (plait/coro/kernel.py): one epoll_wait (the GIL released while it may block), and
 * for each event the same bookkeeping as the Python loop: the waiting reader and
 * writer of the fd go to the ready queue (`append`) with _wait_kind RUNNING, and an
 * interest nobody waits for is dropped from the epoll set. It returns whether the
 * wake-up fd was among the events. EINTR: the signal handlers run (their exception
 * propagates) and poll returns with no events, for the kernel to recompute its timeout.
 *
 * run_ready(kernel, popleft, count, fds, epoll, finish, crash, trap) is step 3: each of
 * the first `count` ready tasks becomes kernel.current and gets its _value sent (or its
 * _exc thrown) until it waits or ends, as in the Python loop. A READ_WAIT on a fd whose
 * registration is current is filed here; any other trap goes to the kernel's _trap
 * (which answers (suspended, value, exc)), an ending to _finish, an error to _crash, so
 * these rules exist once, in Python. A cancellation pending when the task yields is
 * thrown back at once, as in Python. Neither function reads the clock: the kernel's
 * timers, and whatever clock it is given, stay in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* the trap codes of plait/coro/traps.py and the wait kinds of plait/coro/task.py */
enum { TRAP_READ_WAIT = 0, TRAP_WRITE_WAIT = 1 };
enum { KIND_RUNNING = 0, KIND_WAIT_READ = 1 };
/* the fd table's slots of plait/coro/kernel.py: fd -> [mask, reader, writer, owner] */
enum { SLOT_MASK = 0, SLOT_READER = 1, SLOT_WRITER = 2, SLOT_OWNER = 3 };

#define READABLE (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)
#define WRITABLE (EPOLLOUT | EPOLLERR | EPOLLHUP)
#define MAX_EVENTS 1024

static _Thread_local int kernel_running;
static int enabled = 1;
static PyObject *fallback_recv;      /* the Python implementations, set by set_fallbacks */
static PyObject *fallback_recv_into;
static PyObject *fallback_sendall;
static PyObject *fallback_send_rest;
static PyObject *outside_kernel;     /* traps._outside: builds the NoKernelError */
static PyObject *read_wait_code, *write_wait_code, *running_kind, *wait_read_kind, *minus_one;
static PyObject *str_wait_kind, *str_recv, *str_recv_into, *str_send, *str_sendall,
    *str_read_buffered;
static PyObject *str_wait_obj, *str_current, *str_value, *str_exc, *str_coro, *str_throw,
    *str_cancel_pending;

/* -- fd numbers as ints ------------------------------------------------------------ */

/* One int object per fd number, kept for the life of the process: CPython caches only
 * the ints up to 256, and a fresh int per event costs an allocation, and a dict lookup
 * with it must compare values, reading the table's own key object (a cache miss per
 * event with a thousand connections). With these, the fd table's keys (made from a
 * socket's `fd`) and the readiness step's lookups are the same objects: the lookup
 * ends at the identity test. Fds past FD_INTS_MAX get plain ints. */
#define FD_INTS_MAX 65536
static PyObject **fd_ints;
static int fd_ints_size;

static PyObject *
fd_int(int fd)
{
    if (fd < 0 || fd >= FD_INTS_MAX)
        return PyLong_FromLong(fd);
    if (fd >= fd_ints_size) {
        int size = fd_ints_size ? fd_ints_size : 1024;
        while (size <= fd)
            size *= 2;
        PyObject **grown = PyMem_Realloc(fd_ints, (size_t)size * sizeof(PyObject *));
        if (grown == NULL)
            return PyErr_NoMemory();
        memset(grown + fd_ints_size, 0, (size_t)(size - fd_ints_size) * sizeof(PyObject *));
        fd_ints = grown;
        fd_ints_size = size;
    }
    if (fd_ints[fd] == NULL && (fd_ints[fd] = PyLong_FromLong(fd)) == NULL)
        return NULL;
    Py_INCREF(fd_ints[fd]);
    return fd_ints[fd];
}

/* -- SocketCore -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *io;      /* the socket, or the _Closed stand-in once closed */
    int fileno;        /* -1 once closed */
    char drained;      /* the last read was short: the next one waits first */
    char plain;        /* a plain socket.socket: C may call recv/send on the fd */
    int big_read;      /* the last read's size if it was large, else 0 (see op_recv) */
    int fd_of;         /* the fileno `fd` was made for: checked without reading the int */
    char *last_big;    /* where that read's bytes object was: an address, never read */
    PyObject *fd;      /* fileno as an int (fd_int), made at the first wait */
    PyObject *registration; /* the fd table's owner of fd: a weak reference to this */
} SocketCore;

static PyTypeObject SocketCoreType;

static int
core_traverse(SocketCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->io);
    Py_VISIT(self->registration);
    return 0;
}

static int
core_clear(SocketCore *self)
{
    Py_CLEAR(self->io);
    Py_CLEAR(self->fd);
    Py_CLEAR(self->registration);
    return 0;
}

static void
core_dealloc(SocketCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    SocketCore *self = (SocketCore *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fileno = -1; /* closed until __init__ gives it a socket */
    return (PyObject *)self;
}

static PyMemberDef core_members[] = {
    {"_io", T_OBJECT, offsetof(SocketCore, io), 0, "what recv and send are called on"},
    {"_fileno", T_INT, offsetof(SocketCore, fileno), 0, "the fd, -1 once closed"},
    {"_drained", T_BOOL, offsetof(SocketCore, drained), 0, "the next read waits first"},
    {"_plain", T_BOOL, offsetof(SocketCore, plain), 0, "a plain socket.socket"},
    {"_registration", T_OBJECT, offsetof(SocketCore, registration), 0,
     "the kernel's weak reference to this socket, the owner of its fd's registration"},
    {NULL}
};

/* -- operations -------------------------------------------------------------------- */

enum { OP_RECV, OP_RECV_INTO, OP_SENDALL };

typedef struct {
    PyObject_HEAD
    SocketCore *sock;
    PyObject *data;     /* sendall: the data; recv_into: the buffer */
    PyObject *rest;     /* sendall: the send_rest coroutine it drives after a short send */
    Py_ssize_t size;    /* recv: maxsize; recv_into: nbytes */
    char kind;
    char started;
    char done;
} Op;

static PyTypeObject OpType;

/* Not tracked by the cyclic GC (tracking was ~1/20 of a request): an operation holds
 * only its socket (of a class without a __dict__, whose slots lead to no other
 * object), an exact bytes or bytearray (which hold none), and the send_rest coroutine
 * over those two, so it can be in no cycle. Anything else takes the Python coroutines
 * (fast_path). */
static void
op_dealloc(Op *self)
{
    Py_CLEAR(self->sock);
    Py_CLEAR(self->data);
    Py_CLEAR(self->rest);
    PyObject_Free(self);
}

static PyObject *
new_op(SocketCore *sock, int kind, PyObject *data, Py_ssize_t size)
{
    Op *op = PyObject_New(Op, &OpType);
    if (op == NULL)
        return NULL;
    Py_INCREF(sock);
    op->sock = sock;
    Py_XINCREF(data);
    op->data = data;
    op->rest = NULL;
    op->size = size;
    op->kind = (char)kind;
    op->started = 0;
    op->done = 0;
    return (PyObject *)op;
}

/* The trap that makes the task wait for the socket, or NoKernelError outside a kernel. */
static PySendResult
op_wait(Op *op, int writing, PyObject **result)
{
    if (!kernel_running) {
        PyObject *exc = PyObject_CallFunction(
            outside_kernel, "s", writing ? "write_wait" : "read_wait");
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        op->done = 1;
        *result = NULL;
        return PYGEN_ERROR;
    }
    SocketCore *sock = op->sock;
    if (sock->fd == NULL || sock->fd_of != sock->fileno) {
        Py_XSETREF(sock->fd, fd_int(sock->fileno));
        sock->fd_of = sock->fileno;
        if (sock->fd == NULL) {
            *result = NULL;
            return PYGEN_ERROR;
        }
    }
    PyObject *trap = PyTuple_New(3);
    if (trap == NULL) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    PyObject *fd = sock->fd;
    Py_INCREF(fd);
    PyObject *code = writing ? write_wait_code : read_wait_code;
    Py_INCREF(code);
    PyTuple_SET_ITEM(trap, 0, code);
    PyTuple_SET_ITEM(trap, 1, fd);
    Py_INCREF(op->sock);
    PyTuple_SET_ITEM(trap, 2, (PyObject *)op->sock);
    *result = trap;
    return PYGEN_NEXT;
}

static PySendResult
op_finish(Op *op, PyObject *value, PyObject **result)
{
    op->done = 1;
    *result = value;
    return value == NULL ? PYGEN_ERROR : PYGEN_RETURN;
}

/* The socket was closed since the operation began: its stand-in raises the error. */
static PySendResult
op_closed(Op *op, PyObject **result)
{
    PyObject *name = op->kind == OP_SENDALL ? str_send
                     : op->kind == OP_RECV  ? str_recv
                                            : str_recv_into;
    if (op->sock->io == NULL) {
        PyErr_SetString(PyExc_OSError, "the socket was closed");
        return op_finish(op, NULL, result);
    }
    PyObject *value = PyObject_CallMethodObjArgs(op->sock->io, name, Py_None, NULL);
    return op_finish(op, value, result);
}

/* A small read lands here first, then is copied into a bytes object of its exact
 * size. A large read (more than BIG_READ bytes) goes straight into a bytes object,
 * where the copy would cost more, of the size the last large read of this socket had,
 * plus one byte: a stream of equal messages then fills it to one byte short, which
 * tells that the socket is drained, and the shrink by one byte is free (the allocator's
 * chunk keeps its size). A bytes object of the size asked for (64 KiB, say) shrunk to
 * what came would leave a free remainder beside each message kept alive by its
 * handler, and freeing such a message later must merge with it: cold memory, with a
 * thousand connections, at each request. A read that fills its guess takes the rest of
 * what is there into a bytes object of the size asked for, so that a read returns what
 * one system call of that size would. The GIL guards the scratch buffer: no system
 * call here releases it, and a single-phase module cannot be loaded by an interpreter
 * with a GIL of its own. */
#define SCRATCH_SIZE 65536
#define BIG_READ 4096
static char scratch[SCRATCH_SIZE];

/* After a large read filled its guess of `n` bytes: the rest of what the socket has, up
 * to `size` in all, in a new bytes object that replaces `*bytes`. -1 on error. */
static Py_ssize_t
recv_rest(SocketCore *sock, PyObject **bytes, Py_ssize_t n, Py_ssize_t size)
{
    PyObject *all = PyBytes_FromStringAndSize(NULL, size);
    if (all == NULL) {
        /* no memory for the rest (a huge size asked for): what came is the read, as a
         * short one; the rest stays in the socket for the next */
        if (!PyErr_ExceptionMatches(PyExc_MemoryError))
            return -1;
        PyErr_Clear();
        return n;
    }
    memcpy(PyBytes_AS_STRING(all), PyBytes_AS_STRING(*bytes), (size_t)n);
    Py_SETREF(*bytes, all);
    ssize_t more;
    do
        more = recv(sock->fileno, PyBytes_AS_STRING(all) + n, (size_t)(size - n), 0);
    while (more < 0 && errno == EINTR);
    /* an error after data came shows at the next call, as a short read would */
    return more > 0 ? n + more : n;
}

/* A function whose only effect is a prefetch is "const" to gcc, which then drops its
 * calls (gcc 12: at -O2 every one, at -O3 those it did not inline): inlined by force,
 * the prefetches stay in the caller. */
#if defined(__GNUC__)
#define PREFETCHER __attribute__((always_inline))
#else
#define PREFETCHER
#endif

/* The handler that got a socket's last large read usually frees it when the next read
 * returns (its variable takes the new message). glibc's free then reads the size word
 * of the chunk after the next one, to know whether the next one is in use: with a
 * thousand connections, a message of another connection, out of the cache, and the
 * one stall of the free. Its address is a guess (the neighbours of a message are
 * messages of its size) fetched while the read's system call runs; a wrong guess, or
 * another allocator, costs a prefetch. `last` is the object's address (the chunk's
 * memory), never read: the object may be gone. */
static inline PREFETCHER void
prefetch_free_of(const char *last, Py_ssize_t n)
{
    if (last == NULL)
        return;
    /* a bytes object of n + 1 bytes, as op_recv allocates them (its header, the bytes
     * and a NUL), in a chunk that adds glibc's size word and rounds up to 16; a chunk
     * begins 16 bytes before the memory it gives, its size word 8 bytes before */
    Py_ssize_t object = (Py_ssize_t)offsetof(PyBytesObject, ob_sval) + n + 2;
    Py_ssize_t chunk = (object + 8 + 15) & ~15;
    __builtin_prefetch(last + chunk - 8, 0, 3);     /* the next chunk's size word */
    __builtin_prefetch(last + 2 * chunk - 8, 0, 3); /* and the one after it */
}

static PySendResult
op_recv(Op *op, PyObject **result)
{
    SocketCore *sock = op->sock;
    Py_ssize_t size = op->size, want = size;
    PyObject *bytes = NULL;
    char *into = scratch;
    if (size > SCRATCH_SIZE || (sock->big_read && size > BIG_READ)) {
        if (sock->big_read) {
            prefetch_free_of(sock->last_big, sock->big_read);
            if (sock->big_read < size)
                want = (Py_ssize_t)sock->big_read + 1;
        }
        bytes = PyBytes_FromStringAndSize(NULL, want);
        if (bytes == NULL)
            return op_finish(op, NULL, result);
        into = PyBytes_AS_STRING(bytes);
    }
    for (;;) {
        ssize_t n = recv(sock->fileno, into, (size_t)want, 0);
        if (n >= 0) {
            if (n == want && want < size) {
                n = recv_rest(sock, &bytes, n, size);
                if (n < 0) {
                    Py_DECREF(bytes);
                    return op_finish(op, NULL, result);
                }
                want = size;
            }
            if (n < want)
                sock->drained = 1;
            sock->big_read = n > BIG_READ && n <= INT_MAX ? (int)n : 0;
            if (bytes == NULL)
                bytes = PyBytes_FromStringAndSize(scratch, n);
            else if (n < want && _PyBytes_Resize(&bytes, n) < 0)
                bytes = NULL;
            sock->last_big = (char *)bytes;
            return op_finish(op, bytes, result);
        }
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                break;
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            Py_XDECREF(bytes);
            return op_wait(op, 0, result);
        }
        PyErr_SetFromErrno(PyExc_OSError);
        break;
    }
    Py_XDECREF(bytes);
    return op_finish(op, NULL, result);
}

static PySendResult
op_recv_into(Op *op, PyObject **result)
{
    SocketCore *sock = op->sock;
    Py_buffer view;
    if (PyObject_GetBuffer(op->data, &view, PyBUF_WRITABLE) < 0)
        return op_finish(op, NULL, result);
    for (;;) {
        ssize_t n = recv(sock->fileno, view.buf, (size_t)view.len, 0);
        if (n >= 0) {
            PyBuffer_Release(&view);
            if (n < view.len)
                sock->drained = 1;
            return op_finish(op, PyLong_FromSsize_t(n), result);
        }
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                break;
            continue;
        }
        PyBuffer_Release(&view);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return op_wait(op, 0, result);
        PyErr_SetFromErrno(PyExc_OSError);
        return op_finish(op, NULL, result);
    }
    PyBuffer_Release(&view);
    return op_finish(op, NULL, result);
}

/* Drive the send_rest coroutine of a sendall whose first send was short. */
static PySendResult
op_drive_rest(Op *op, PyObject *arg, PyObject **result)
{
    PySendResult r = PyIter_Send(op->rest, arg, result);
    if (r != PYGEN_NEXT)
        op->done = 1;
    return r;
}

static PySendResult
op_sendall(Op *op, PyObject **result)
{
    SocketCore *sock = op->sock;
    Py_buffer view;
    if (PyBytes_CheckExact(op->data)) { /* what a server echoes: no buffer export needed */
        view.obj = NULL;
        view.buf = PyBytes_AS_STRING(op->data);
        view.len = PyBytes_GET_SIZE(op->data);
    }
    else if (PyObject_GetBuffer(op->data, &view, PyBUF_SIMPLE) < 0)
        return op_finish(op, NULL, result);
    ssize_t n;
    for (;;) {
        n = send(sock->fileno, view.buf, (size_t)view.len, MSG_NOSIGNAL);
        if (n >= 0)
            break;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return op_finish(op, NULL, result);
            }
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            n = 0;
            break;
        }
        PyBuffer_Release(&view);
        PyErr_SetFromErrno(PyExc_OSError);
        return op_finish(op, NULL, result);
    }
    Py_ssize_t total = view.len;
    PyBuffer_Release(&view);
    if (n == total) {
        Py_INCREF(Py_None);
        return op_finish(op, Py_None, result);
    }
    op->rest = PyObject_CallFunction(fallback_send_rest, "OOni", sock, op->data,
                                     (Py_ssize_t)n, 0);
    if (op->rest == NULL)
        return op_finish(op, NULL, result);
    return op_drive_rest(op, Py_None, result);
}

static PySendResult
op_am_send(Op *op, PyObject *arg, PyObject **result)
{
    if (op->done) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited socket operation");
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (op->rest != NULL)
        return op_drive_rest(op, arg, result);
    if (!op->started) {
        op->started = 1;
        if (op->kind != OP_SENDALL && op->sock->drained) {
            op->sock->drained = 0;
            return op_wait(op, 0, result);
        }
    }
    if (op->sock->fileno < 0)
        return op_closed(op, result);
    switch (op->kind) {
    case OP_RECV:
        return op_recv(op, result);
    case OP_RECV_INTO:
        return op_recv_into(op, result);
    default:
        return op_sendall(op, result);
    }
}

static PyObject *
op_result(PySendResult r, PyObject *value)
{
    if (r == PYGEN_RETURN) {
        /* the iterator protocol: the value travels in StopIteration */
        if (value == Py_None)
            PyErr_SetNone(PyExc_StopIteration);
        else {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

static PyObject *
op_iternext(Op *op)
{
    PyObject *value;
    PySendResult r = op_am_send(op, Py_None, &value);
    return op_result(r, value);
}

static PyObject *
op_send(Op *op, PyObject *arg)
{
    PyObject *value;
    PySendResult r = op_am_send(op, arg, &value);
    return op_result(r, value);
}

static PyObject *
op_throw(Op *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    if (op->rest != NULL && !op->done) {
        PyObject *meth = PyObject_GetAttrString(op->rest, "throw");
        if (meth == NULL)
            return NULL;
        PyObject *value = PyObject_Vectorcall(meth, args, nargs, NULL);
        Py_DECREF(meth);
        if (value == NULL)
            op->done = 1;
        return value;
    }
    op->done = 1;
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : NULL;
    PyObject *tb = nargs > 2 && args[2] != Py_None ? args[2] : NULL;
    if (PyExceptionInstance_Check(typ)) {
        val = typ;
        typ = (PyObject *)Py_TYPE(val);
    }
    else if (!PyExceptionClass_Check(typ)) {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
        return NULL;
    }
    Py_INCREF(typ);
    Py_XINCREF(val);
    Py_XINCREF(tb);
    PyErr_Restore(typ, val, tb);
    if (val == NULL || !PyExceptionInstance_Check(val)) {
        PyObject *t, *v, *b;
        PyErr_Fetch(&t, &v, &b);
        PyErr_NormalizeException(&t, &v, &b);
        if (b != NULL)
            PyException_SetTraceback(v, b);
        PyErr_Restore(t, v, b);
    }
    return NULL;
}

static PyObject *
op_close(Op *op, PyObject *unused)
{
    op->done = 1;
    if (op->rest != NULL) {
        PyObject *rest = op->rest;
        op->rest = NULL;
        PyObject *r = PyObject_CallMethod(rest, "close", NULL);
        Py_DECREF(rest);
        return r;
    }
    Py_RETURN_NONE;
}

static PyObject *
op_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *
op_repr(Op *op)
{
    static const char *names[] = {"recv", "recv_into", "sendall"};
    return PyUnicode_FromFormat("<plait socket %s of fd %d>", names[(int)op->kind],
                                op->sock->fileno);
}

static PyMethodDef op_methods[] = {
    {"send", (PyCFunction)op_send, METH_O,
     "Resume the operation; the kernel's answer is ignored."},
    {"throw", (PyCFunction)(void (*)(void))op_throw, METH_FASTCALL,
     "Raise the exception at the operation's wait (it is then over)."},
    {"close", (PyCFunction)op_close, METH_NOARGS, "Abandon the operation."},
    {NULL}
};

static PyAsyncMethods op_async = {
    .am_await = op_await,
    .am_send = (sendfunc)op_am_send,
};

static PyTypeObject OpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plait._core._coro.SocketOperation",
    .tp_basicsize = sizeof(Op),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One recv, recv_into or sendall of a SocketCore, awaited.",
    .tp_dealloc = (destructor)op_dealloc,
    .tp_as_async = &op_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)op_iternext,
    .tp_methods = op_methods,
    .tp_repr = (reprfunc)op_repr,
};

/* -- SocketCore methods ------------------------------------------------------------ */

static PyObject *
call_fallback(PyObject *fn, SocketCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *stack[4];
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < nargs; i++)
        stack[i + 1] = args[i];
    return PyObject_Vectorcall(fn, stack, nargs + 1, NULL);
}

/* The C path: on, a plain open socket, and a class without an instance __dict__ (an
 * operation, outside the cyclic GC, must not reach objects that could lead back to it). */
static inline int
fast_path(SocketCore *self)
{
    return enabled && self->plain && self->fileno >= 0 && Py_TYPE(self)->tp_dictoffset == 0;
}

static PyObject *
core_recv(SocketCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 && nargs != 2)
        return call_fallback(fallback_recv, self, args, nargs);
    Py_ssize_t size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    long flags = 0;
    if (nargs == 2) {
        flags = PyLong_AsLong(args[1]);
        if (flags == -1 && PyErr_Occurred())
            return NULL;
    }
    if (!fast_path(self) || flags != 0 || size <= 0)
        return call_fallback(fallback_recv, self, args, nargs);
    return new_op(self, OP_RECV, NULL, size);
}

static PyObject *
core_recv_into(SocketCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* an empty buffer goes to Python too, which returns 0 at once as recv(0) does */
    if (!fast_path(self) || nargs != 1 || !PyByteArray_CheckExact(args[0])
        || PyByteArray_GET_SIZE(args[0]) == 0)
        return call_fallback(fallback_recv_into, self, args, nargs);
    return new_op(self, OP_RECV_INTO, args[0], 0);
}

static PyObject *
core_sendall(SocketCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!fast_path(self) || nargs != 1
        || !(PyBytes_CheckExact(args[0]) || PyByteArray_CheckExact(args[0])))
        return call_fallback(fallback_sendall, self, args, nargs);
    return new_op(self, OP_SENDALL, args[0], 0);
}

static PyMethodDef core_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))core_recv, METH_FASTCALL,
     "recv(maxsize, flags=0): receive up to maxsize bytes; b'' at end of stream. Awaitable."},
    {"recv_into", (PyCFunction)(void (*)(void))core_recv_into, METH_FASTCALL,
     "recv_into(buffer, nbytes=0, flags=0): receive into buffer; the count. Awaitable."},
    {"sendall", (PyCFunction)(void (*)(void))core_sendall, METH_FASTCALL,
     "sendall(data, flags=0): send all of data. Awaitable."},
    {NULL}
};

static PyTypeObject SocketCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plait._core._coro.SocketCore",
    .tp_basicsize = sizeof(SocketCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields and hot methods of plait.coro.Socket (its base class).",
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_members = core_members,
    .tp_methods = core_methods,
    .tp_new = core_new,
};

/* -- StreamCore -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *sock;    /* the Socket */
    PyObject *buffer;  /* a bytearray: what was received and not yet read */
} StreamCore;

static int
stream_traverse(StreamCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sock);
    Py_VISIT(self->buffer);
    return 0;
}

static int
stream_clear(StreamCore *self)
{
    Py_CLEAR(self->sock);
    Py_CLEAR(self->buffer);
    return 0;
}

static void
stream_dealloc(StreamCore *self)
{
    PyObject_GC_UnTrack(self);
    stream_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef stream_members[] = {
    {"_sock", T_OBJECT, offsetof(StreamCore, sock), 0, "the Socket under the stream"},
    {"_buffer", T_OBJECT, offsetof(StreamCore, buffer), 0, "received, not yet read"},
    {NULL}
};

static inline int
is_socket_core(PyObject *sock)
{
    return sock != NULL
           && (Py_TYPE(sock)->tp_base == &SocketCoreType
               || PyObject_TypeCheck(sock, &SocketCoreType));
}

/* read(maxbytes=-1): with an empty buffer and a count, the socket's recv itself. */
static PyObject *
stream_read(StreamCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "read(maxbytes=-1)");
        return NULL;
    }
    if (nargs == 1 && self->buffer != NULL && PyByteArray_CheckExact(self->buffer)
        && PyByteArray_GET_SIZE(self->buffer) == 0 && PyLong_CheckExact(args[0])
        && self->sock != NULL && is_socket_core(self->sock)) {
        int overflow;
        long maxbytes = PyLong_AsLongAndOverflow(args[0], &overflow);
        SocketCore *sock = (SocketCore *)self->sock;
        if (maxbytes > 0 && !overflow && fast_path(sock))
            return new_op(sock, OP_RECV, NULL, maxbytes);
        if (maxbytes >= 0 && !overflow)
            return core_recv(sock, args, 1);
    }
    PyObject *stack[2] = {(PyObject *)self, nargs > 0 ? args[0] : minus_one};
    return PyObject_VectorcallMethod(str_read_buffered, stack, 2, NULL);
}

/* write(data): the socket's sendall. */
static PyObject *
stream_write(StreamCore *self, PyObject *data)
{
    if (self->sock != NULL && is_socket_core(self->sock))
        return core_sendall((SocketCore *)self->sock, &data, 1);
    if (self->sock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "the stream has no socket");
        return NULL;
    }
    return PyObject_CallMethodOneArg(self->sock, str_sendall, data);
}

static PyMethodDef stream_methods[] = {
    {"read", (PyCFunction)(void (*)(void))stream_read, METH_FASTCALL,
     "read(maxbytes=-1): up to maxbytes bytes (all until end of stream if negative); b'' at "
     "end. Awaitable; blocks until at least one byte (or end of stream) is there."},
    {"write", (PyCFunction)stream_write, METH_O,
     "write(data): send all of data; blocks while the peer does not keep up. Awaitable; if "
     "cancelled midway, the exception carries bytes_sent."},
    {NULL}
};

static PyTypeObject StreamCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plait._core._coro.StreamCore",
    .tp_basicsize = sizeof(StreamCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields and hot methods of plait.coro.SocketStream (its base class).",
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_clear = (inquiry)stream_clear,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_members = stream_members,
    .tp_methods = stream_methods,
    .tp_new = PyType_GenericNew,
};

/* The fields of plait.coro.task.Task (a class with __slots__) the loop reads and
 * writes per step: straight at their offsets when the task is exactly a Task (the
 * offsets come from its member descriptors, set_task_type), through getattr/setattr
 * otherwise. */
static PyTypeObject *task_type;
static Py_ssize_t off_wait_kind = -1, off_wait_obj = -1, off_value = -1, off_exc = -1,
                  off_coro = -1, off_cancel_pending = -1;

static PyObject *
task_get(PyObject *task, Py_ssize_t offset, PyObject *name)
{
    if (Py_TYPE(task) == task_type && offset >= 0) {
        PyObject *value = *(PyObject **)((char *)task + offset);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(task, name);
}

static int
task_set(PyObject *task, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (Py_TYPE(task) == task_type && offset >= 0) {
        PyObject **slot = (PyObject **)((char *)task + offset);
        Py_INCREF(value);
        Py_XSETREF(*slot, value);
        return 0;
    }
    return PyObject_SetAttr(task, name, value);
}

static Py_ssize_t
slot_offset(PyObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString(type, name);
    if (descr == NULL)
        return -2;
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            offset = member->offset;
    }
    Py_DECREF(descr);
    return offset;
}

static PyObject *
coro_set_task_type(PyObject *module, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "set_task_type wants the Task class");
        return NULL;
    }
    Py_ssize_t offsets[6];
    const char *names[6] = {"_wait_kind", "_wait_obj", "_value", "_exc", "coro",
                            "_cancel_pending"};
    for (int i = 0; i < 6; i++) {
        offsets[i] = slot_offset(type, names[i]);
        if (offsets[i] == -2)
            return NULL;
    }
    off_wait_kind = offsets[0];
    off_wait_obj = offsets[1];
    off_value = offsets[2];
    off_exc = offsets[3];
    off_coro = offsets[4];
    off_cancel_pending = offsets[5];
    Py_INCREF(type);
    Py_XSETREF(task_type, (PyTypeObject *)type);
    Py_RETURN_NONE;
}

/* -- the kernel's readiness step --------------------------------------------------- */

/* Make `task` ready: _wait_kind RUNNING, appended to the ready deque. */
static int
make_ready(PyObject *task, PyObject *append)
{
    if (task_set(task, off_wait_kind, str_wait_kind, running_kind) < 0)
        return -1;
    PyObject *r = PyObject_CallOneArg(append, task);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
coro_poll(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "poll(epoll_fd, timeout_ms, fds, wake_fd, append)");
        return NULL;
    }
    int epfd = (int)PyLong_AsLong(args[0]);
    int timeout = (int)PyLong_AsLong(args[1]);
    PyObject *fds = args[2];
    int wake_fd = (int)PyLong_AsLong(args[3]);
    PyObject *append = args[4];
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_CheckExact(fds)) {
        PyErr_SetString(PyExc_TypeError, "poll: fds must be a dict");
        return NULL;
    }
    struct epoll_event events[MAX_EVENTS];
    int n;
    if (timeout == 0)
        n = epoll_wait(epfd, events, MAX_EVENTS, 0);
    else {
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
            Py_RETURN_FALSE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int woken = 0;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        uint32_t ev = events[i].events;
        /* the interned int, borrowed: a reference would write to its cold line */
        PyObject *key = fd >= 0 && fd < fd_ints_size ? fd_ints[fd] : NULL;
        PyObject *made = NULL;
        if (key == NULL && (key = made = fd_int(fd)) == NULL)
            return NULL;
        /* an int's hash is its value: the lookup need not read the key object */
        PyObject *entry = _PyDict_GetItem_KnownHash(fds, key, (Py_hash_t)fd); /* borrowed */
        if (entry == NULL) {
            Py_XDECREF(made);
            if (PyErr_Occurred())
                return NULL;
            if (fd == wake_fd)
                woken = 1;
            continue;
        }
        if (!PyList_CheckExact(entry) || PyList_GET_SIZE(entry) < 3) {
            Py_XDECREF(made);
            PyErr_Format(PyExc_TypeError, "poll: the fd table's entry of fd %d is not a list",
                         fd);
            return NULL;
        }
        Py_INCREF(entry);
        long mask = PyLong_AsLong(PyList_GET_ITEM(entry, SLOT_MASK));
        long drop = 0;
        int failed = mask == -1 && PyErr_Occurred();
        if (!failed && (ev & READABLE)) {
            PyObject *task = PyList_GET_ITEM(entry, SLOT_READER);
            if (task != Py_None) {
                Py_INCREF(task);
                Py_INCREF(Py_None);
                PyList_SetItem(entry, SLOT_READER, Py_None);
                failed = make_ready(task, append) < 0;
                Py_DECREF(task);
            }
            else if (mask & EPOLLIN)
                drop = EPOLLIN;
        }
        if (!failed && (ev & WRITABLE)) {
            PyObject *task = PyList_GET_ITEM(entry, SLOT_WRITER);
            if (task != Py_None) {
                Py_INCREF(task);
                Py_INCREF(Py_None);
                PyList_SetItem(entry, SLOT_WRITER, Py_None);
                failed = make_ready(task, append) < 0;
                Py_DECREF(task);
            }
            else if (mask & EPOLLOUT)
                drop |= EPOLLOUT;
        }
        if (!failed && drop) {
            /* No task waits for these events: stop watching them. A fd closed behind
             * plait's back (its file kept open by a copy) refuses the change: the entry
             * goes, since nothing can manage that registration any more. */
            mask &= ~drop;
            struct epoll_event change = {.events = (uint32_t)mask, .data.fd = fd};
            if (mask && epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &change) == 0) {
                PyObject *m = PyLong_FromLong(mask);
                if (m == NULL)
                    failed = 1;
                else
                    PyList_SetItem(entry, SLOT_MASK, m);
            }
            else {
                if (!mask)
                    (void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                failed = PyDict_DelItem(fds, key) < 0;
            }
        }
        Py_DECREF(entry);
        Py_XDECREF(made);
        if (failed)
            return NULL;
    }
    return PyBool_FromLong(woken);
}

/* -- the kernel's run step --------------------------------------------------------- */

/* The exception just raised, normalized and with its traceback, as `except` gives it. */
static PyObject *
fetch_error(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_XDECREF(type);
    return value;
}

static PyObject *
call2(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

/* The socket each task last waited to read, for the run step's prefetch (see
 * prefetch_ahead): the socket's object is the one per-connection object a task's step
 * reads that its frame does not lead to without reading it. A table of addresses
 * (never read as objects: a task or socket may be gone, and an entry overwritten by
 * another task's), indexed by a hash of the task's. */
#define READ_SOCKETS 4096
static struct read_socket {
    const void *task;
    const char *sock;
} read_sockets[READ_SOCKETS];

static inline size_t
read_socket_slot(const void *task)
{
    return (size_t)(((uint64_t)(uintptr_t)task * UINT64_C(0x9E3779B97F4A7C15)) >> 52);
}

/* File `task` as the reader of the READ_WAIT trap's fd if its registration is current:
 * 1 if done, 0 if the kernel's _trap must handle the trap, -1 on error. */
static int
inline_read_wait(PyObject *task, PyObject *trap, PyObject *fds, int epfd)
{
    if (!PyTuple_CheckExact(trap) || PyTuple_GET_SIZE(trap) != 3)
        return 0;
    PyObject *code = PyTuple_GET_ITEM(trap, 0);
    if (code != read_wait_code
        && !(PyLong_CheckExact(code) && PyLong_AsLong(code) == TRAP_READ_WAIT))
        return 0;
    PyObject *fd = PyTuple_GET_ITEM(trap, 1), *owner = PyTuple_GET_ITEM(trap, 2);
    /* what the fd table keeps as the owner: a socket's registration, else the owner */
    PyObject *key = owner;
    Py_hash_t hash;
    if (is_socket_core(owner)) {
        SocketCore *sock = (SocketCore *)owner;
        key = sock->registration; /* NULL before its first wait: matches no entry */
        /* a socket's own fd int: its hash is the number the socket keeps (see fd_int) */
        hash = sock->fd == fd ? (Py_hash_t)sock->fd_of : PyObject_Hash(fd);
    }
    else
        hash = PyObject_Hash(fd);
    if (hash == -1)
        return -1;
    PyObject *entry = _PyDict_GetItem_KnownHash(fds, fd, hash); /* borrowed */
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyList_CheckExact(entry) || PyList_GET_SIZE(entry) != 4
        || PyList_GET_ITEM(entry, SLOT_OWNER) != key
        || PyList_GET_ITEM(entry, SLOT_READER) != Py_None)
        return 0;
    long mask = PyLong_AsLong(PyList_GET_ITEM(entry, SLOT_MASK));
    if (mask == -1 && PyErr_Occurred())
        return -1;
    if (!(mask & EPOLLIN)) {
        mask |= EPOLLIN;
        struct epoll_event change = {.events = (uint32_t)mask};
        change.data.fd = (int)PyLong_AsLong(fd);
        /* a failure is the task's, not the kernel's: the kernel's _trap makes the same
         * change and hands its error to the task */
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, change.data.fd, &change) < 0)
            return 0;
        PyObject *m = PyLong_FromLong(mask);
        if (m == NULL)
            return -1;
        PyList_SetItem(entry, SLOT_MASK, m);
    }
    if (task_set(task, off_wait_kind, str_wait_kind, wait_read_kind) < 0
        || task_set(task, off_wait_obj, str_wait_obj, fd) < 0)
        return -1;
    Py_INCREF(task);
    PyList_SetItem(entry, SLOT_READER, task);
    struct read_socket *seen = &read_sockets[read_socket_slot(task)];
    seen->task = task;
    seen->sock = (const char *)owner;
    return 1;
}

/* Run one ready task until it waits or ends: step 3 of the loop for one task. */
static int
run_task(PyObject *kernel_dict, PyObject *task, PyObject *fds, int epfd, PyObject *finish,
         PyObject *crash, PyObject *trap_other)
{
    if (PyDict_SetItem(kernel_dict, str_current, task) < 0)
        return -1;
    PyObject *value = task_get(task, off_value, str_value);
    if (value == NULL)
        return -1;
    PyObject *exc = task_get(task, off_exc, str_exc);
    if (exc == NULL) {
        Py_DECREF(value);
        return -1;
    }
    if (exc == Py_None)
        Py_CLEAR(exc);
    if ((value != Py_None || exc != NULL)
        && (task_set(task, off_value, str_value, Py_None) < 0
            || task_set(task, off_exc, str_exc, Py_None) < 0))
        goto error;
    PyObject *coro = task_get(task, off_coro, str_coro);
    if (coro == NULL)
        goto error;
    for (;;) {
        PyObject *trap;
        PySendResult r;
        if (exc == NULL)
            r = PyIter_Send(coro, value, &trap);
        else {
            PyObject *thrower = PyObject_GetAttr(task, str_throw);
            trap = thrower == NULL ? NULL : PyObject_CallOneArg(thrower, exc);
            Py_XDECREF(thrower);
            Py_CLEAR(exc);
            r = PYGEN_NEXT;
            if (trap == NULL) {
                r = PYGEN_ERROR;
                if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
                    PyObject *stop = fetch_error();
                    trap = PyObject_GetAttrString(stop, "value");
                    Py_DECREF(stop);
                    if (trap == NULL)
                        goto error_coro;
                    r = PYGEN_RETURN;
                }
            }
        }
        Py_CLEAR(value);
        if (r == PYGEN_RETURN) {
            PyObject *done = PyObject_CallFunctionObjArgs(finish, task, trap, Py_None, NULL);
            Py_DECREF(trap);
            if (done == NULL)
                goto error_coro;
            Py_DECREF(done);
            break;
        }
        if (r == PYGEN_ERROR) {
            PyObject *error = fetch_error();
            PyObject *done = call2(crash, task, error);
            Py_DECREF(error);
            if (done == NULL)
                goto error_coro;
            Py_DECREF(done);
            break;
        }
        PyObject *pending = task_get(task, off_cancel_pending, str_cancel_pending);
        if (pending == NULL) {
            Py_DECREF(trap);
            goto error_coro;
        }
        if (pending != Py_None) {
            Py_DECREF(trap);
            if (task_set(task, off_cancel_pending, str_cancel_pending, Py_None) < 0) {
                Py_DECREF(pending);
                goto error_coro;
            }
            exc = pending;
            continue;
        }
        Py_DECREF(pending);
        int filed = inline_read_wait(task, trap, fds, epfd);
        if (filed != 0) {
            Py_DECREF(trap);
            if (filed < 0)
                goto error_coro;
            break;
        }
        /* (suspended, value, exc) from the kernel's other traps */
        PyObject *answer = call2(trap_other, task, trap);
        Py_DECREF(trap);
        if (answer == NULL)
            goto error_coro;
        if (!PyTuple_CheckExact(answer) || PyTuple_GET_SIZE(answer) != 3) {
            Py_DECREF(answer);
            PyErr_SetString(PyExc_TypeError, "the kernel's _trap must return a 3-tuple");
            goto error_coro;
        }
        int suspended = PyObject_IsTrue(PyTuple_GET_ITEM(answer, 0));
        if (suspended) {
            Py_DECREF(answer);
            if (suspended < 0)
                goto error_coro;
            break;
        }
        value = PyTuple_GET_ITEM(answer, 1);
        Py_INCREF(value);
        exc = PyTuple_GET_ITEM(answer, 2);
        if (exc == Py_None)
            exc = NULL;
        else
            Py_INCREF(exc);
        Py_DECREF(answer);
    }
    Py_DECREF(coro);
    return 0;
error_coro:
    Py_DECREF(coro);
error:
    Py_XDECREF(value);
    Py_XDECREF(exc);
    return -1;
}

/* Ask the memory for what the next ready tasks will touch while this one runs: with a
 * thousand connections a task, its coroutine and the frame inside it are far out of
 * the cache when the task's turn comes, and each miss would stall the step. The loop
 * below takes the next two tasks off the deque a step ahead (popleft does not touch
 * them; a peek would, with its reference count). The one after next is fetched first;
 * the next one, fetched a step ago, is read for its coroutine, whose object and frame
 * come next (five lines: a handler's frame with a few locals), and for the socket it
 * last waited to read (read_sockets, whose entry was fetched with the task). Hints
 * only: nothing is read that is not there. */
#define FRAME_LINES 5
static inline PREFETCHER void
prefetch_ahead(PyObject *next, PyObject *after)
{
    if (after != NULL) {
        __builtin_prefetch(after, 1, 3);
        __builtin_prefetch((char *)after + 64, 1, 3);
        __builtin_prefetch(&read_sockets[read_socket_slot(after)], 0, 3);
    }
    if (next != NULL && Py_IS_TYPE(next, task_type) && off_coro >= 0) {
        char *coro = *(char **)((char *)next + off_coro);
        for (int line = 0; coro != NULL && line < FRAME_LINES; line++)
            __builtin_prefetch(coro + 64 * line, 1, 3);
        const struct read_socket *seen = &read_sockets[read_socket_slot(next)];
        if (seen->task == next) {
            __builtin_prefetch(seen->sock, 1, 3);
            __builtin_prefetch(seen->sock + 64, 1, 3);
        }
    }
}

static PyObject *
coro_run_ready(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "run_ready(kernel, popleft, count, fds, epoll_fd, finish, crash, "
                        "trap)");
        return NULL;
    }
    PyObject *kernel = args[0], *popleft = args[1], *fds = args[3];
    Py_ssize_t count = PyLong_AsSsize_t(args[2]);
    int epfd = (int)PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_CheckExact(fds)) {
        PyErr_SetString(PyExc_TypeError, "run_ready: fds must be a dict");
        return NULL;
    }
    /* kernel.current, set per task: straight in the kernel's __dict__ */
    PyObject *kernel_dict = PyObject_GenericGetDict(kernel, NULL);
    if (kernel_dict == NULL)
        return NULL;
    /* the next two tasks, taken off the deque a step ahead (see prefetch_ahead); put
     * back at its front if the step fails */
    PyObject *next = NULL, *after = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *task = next != NULL ? next : PyObject_CallNoArgs(popleft);
        next = after;
        after = NULL;
        if (task == NULL)
            goto error;
        if ((next == NULL && i + 1 < count && (next = PyObject_CallNoArgs(popleft)) == NULL)
            || (i + 2 < count && (after = PyObject_CallNoArgs(popleft)) == NULL)) {
            Py_DECREF(task);
            goto error;
        }
        prefetch_ahead(next, after);
        int failed = run_task(kernel_dict, task, fds, epfd, args[5], args[6], args[7]);
        Py_DECREF(task);
        if (failed)
            goto error;
    }
    Py_DECREF(kernel_dict);
    Py_RETURN_NONE;
error:
    Py_DECREF(kernel_dict);
    if (next != NULL || after != NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *ready = PyCFunction_Check(popleft) ? PyCFunction_GET_SELF(popleft) : NULL;
        for (int k = 0; k < 2; k++) {
            PyObject *t = k == 0 ? after : next;
            if (t == NULL)
                continue;
            PyObject *r = ready != NULL ? PyObject_CallMethod(ready, "appendleft", "O", t)
                                        : (PyErr_SetString(PyExc_RuntimeError,
                                                           "run_ready: no deque to put it in"),
                                           NULL);
            if (r == NULL)
                PyErr_WriteUnraisable(t); /* the task cannot be put back: say so */
            Py_XDECREF(r);
            Py_DECREF(t);
        }
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

/* -- module ------------------------------------------------------------------------ */

static PyObject *
coro_set_running(PyObject *module, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
    kernel_running = on;
    Py_RETURN_NONE;
}

static PyObject *
coro_set_enabled(PyObject *module, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
    PyObject *was = PyBool_FromLong(enabled);
    enabled = on;
    return was;
}

static PyObject *
coro_enabled(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(enabled);
}

static PyObject *
coro_set_fallbacks(PyObject *module, PyObject *args)
{
    PyObject *recv_fn, *recv_into_fn, *sendall_fn, *send_rest_fn, *outside_fn;
    if (!PyArg_ParseTuple(args, "OOOOO", &recv_fn, &recv_into_fn, &sendall_fn, &send_rest_fn,
                          &outside_fn))
        return NULL;
    Py_INCREF(sendall_fn);
    Py_XSETREF(fallback_sendall, sendall_fn);
    Py_INCREF(recv_fn);
    Py_XSETREF(fallback_recv, recv_fn);
    Py_INCREF(recv_into_fn);
    Py_XSETREF(fallback_recv_into, recv_into_fn);
    Py_INCREF(send_rest_fn);
    Py_XSETREF(fallback_send_rest, send_rest_fn);
    Py_INCREF(outside_fn);
    Py_XSETREF(outside_kernel, outside_fn);
    Py_RETURN_NONE;
}

static PyMethodDef coro_functions[] = {
    {"poll", (PyCFunction)(void (*)(void))coro_poll, METH_FASTCALL,
     "poll(epoll_fd, timeout_ms, fds, wake_fd, append) -> bool: one epoll_wait and the "
     "fd table's bookkeeping; True if wake_fd was ready."},
    {"run_ready", (PyCFunction)(void (*)(void))coro_run_ready, METH_FASTCALL,
     "run_ready(kernel, popleft, count, fds, epoll_fd, finish, crash, trap): run the first "
     "count tasks of the ready queue, each until it waits or ends."},
    {"set_task_type", coro_set_task_type, METH_O,
     "The Task class, whose slots the loop then reads and writes at their offsets."},
    {"set_running", coro_set_running, METH_O,
     "Mark whether a plait kernel runs in this thread (operations may wait only there)."},
    {"set_enabled", coro_set_enabled, METH_O,
     "Use the C operations (True) or send every call to the Python fallbacks; returns the "
     "previous setting."},
    {"enabled", coro_enabled, METH_NOARGS, "Whether the C operations are used."},
    {"set_fallbacks", coro_set_fallbacks, METH_VARARGS,
     "set_fallbacks(recv, recv_into, sendall, send_rest, outside): the Python "
     "implementations, "
     "and the function that builds NoKernelError."},
    {NULL}
};

static struct PyModuleDef coro_module = {
    PyModuleDef_HEAD_INIT, "plait._core._coro",
    "The hot path of plait.coro: socket operations and the readiness step, in C.", -1,
    coro_functions,
};

PyMODINIT_FUNC
PyInit__coro(void)
{
    if (PyType_Ready(&SocketCoreType) < 0 || PyType_Ready(&OpType) < 0
        || PyType_Ready(&StreamCoreType) < 0)
        return NULL;
    read_wait_code = PyLong_FromLong(TRAP_READ_WAIT);
    write_wait_code = PyLong_FromLong(TRAP_WRITE_WAIT);
    running_kind = PyLong_FromLong(KIND_RUNNING);
    wait_read_kind = PyLong_FromLong(KIND_WAIT_READ);
    minus_one = PyLong_FromLong(-1);
    str_wait_obj = PyUnicode_InternFromString("_wait_obj");
    str_current = PyUnicode_InternFromString("current");
    str_value = PyUnicode_InternFromString("_value");
    str_exc = PyUnicode_InternFromString("_exc");
    str_coro = PyUnicode_InternFromString("coro");
    str_throw = PyUnicode_InternFromString("_throw");
    str_cancel_pending = PyUnicode_InternFromString("_cancel_pending");
    if (!wait_read_kind || !minus_one || !str_wait_obj || !str_current || !str_value || !str_exc
        || !str_coro || !str_throw || !str_cancel_pending)
        return NULL;
    str_wait_kind = PyUnicode_InternFromString("_wait_kind");
    str_recv = PyUnicode_InternFromString("recv");
    str_recv_into = PyUnicode_InternFromString("recv_into");
    str_send = PyUnicode_InternFromString("send");
    str_sendall = PyUnicode_InternFromString("sendall");
    str_read_buffered = PyUnicode_InternFromString("_read_buffered");
    if (!str_sendall || !str_read_buffered)
        return NULL;
    if (!read_wait_code || !write_wait_code || !running_kind || !str_wait_kind || !str_recv
        || !str_recv_into || !str_send)
        return NULL;
    PyObject *m = PyModule_Create(&coro_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SocketCoreType);
    if (PyModule_AddObject(m, "SocketCore", (PyObject *)&SocketCoreType) < 0) {
        Py_DECREF(&SocketCoreType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&StreamCoreType);
    if (PyModule_AddObject(m, "StreamCore", (PyObject *)&StreamCoreType) < 0) {
        Py_DECREF(&StreamCoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
