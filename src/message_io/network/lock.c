/* The lock of each connection: the C twin of lock.py.
 *
 * threading.Lock().acquire() parses its (blocking, timeout) arguments with
 * PyArg_ParseTupleAndKeywords on every call, even with none given, and takes a
 * semaphore even when nobody else wants it: twice per message sent. This Lock keeps its
 * state in two fields that only a thread holding the GIL reads or writes (every call
 * to acquire() or release() does), so taking a free lock and releasing a lock nobody
 * waits for touch no semaphore at all:
 *
 *   locked   the lock is held (or handed to a waiter that has not woken yet);
 *   waiters  threads waiting for it, not counting those a token was passed to.
 *
 * A thread that must wait counts itself in waiters and sleeps, the GIL released, on a
 * semaphore (a PyThread lock used as one, made the first time anybody waits: an idle
 * connection never has one). release() with waiters leaves the lock held and posts one
 * token: the waiter that takes it owns the lock (no newcomer can barge in between). A
 * waiter that times out or is interrupted takes the GIL back, then either finds a
 * token after all (and owns the lock) or uncounts itself.
 *
 * It is used as threading.Lock is: acquire(blocking=True, timeout=-1) -> bool,
 * release() (RuntimeError if unlocked), locked(), and the context manager; so
 * threading.Condition works on it unchanged. One difference: a thread must not release
 * a lock another thread holds while threads wait for it (threading.Lock allows that;
 * the engine and threading.Condition never do it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <math.h>
#include <stddef.h>
#include <time.h>

#ifdef Py_GIL_DISABLED
#error "this lock's state is guarded by the GIL: a free-threaded build uses lock.py"
#endif

typedef struct {
    PyObject_HEAD
    PyThread_type_lock handoff; /* NULL until a thread first waits; a token is "unlocked" */
    char locked;
    Py_ssize_t waiters;
    PyObject *weakrefs;
} LockObject;

static double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Take a token without waiting: 1 if one was there (the lock is now the caller's). */
static int
take_token(LockObject *self)
{
    return PyThread_acquire_lock_timed(self->handoff, 0, 0) == PY_LOCK_ACQUIRED;
}

/* Release: hand the lock to one waiter, or free it. The GIL is held. */
static void
hand_on(LockObject *self)
{
    if (self->waiters > 0) {
        self->waiters--;
        PyThread_release_lock(self->handoff); /* one token; locked stays 1 */
    }
    else {
        self->locked = 0;
    }
}

/* Wait for the lock, up to ``timeout`` seconds (negative: no limit), the GIL released;
 * a signal runs its handlers and the wait goes on. 1: taken, 0: timed out, -1: an
 * error (a handler raised, or no memory for the semaphore). The GIL is held. */
static int
acquire_waiting(LockObject *self, double timeout)
{
    if (self->handoff == NULL) {
        PyThread_type_lock handoff = PyThread_allocate_lock();
        if (handoff == NULL) {
            PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
            return -1;
        }
        PyThread_acquire_lock(handoff, 1); /* no token yet */
        self->handoff = handoff;
    }
    self->waiters++;
    double deadline = timeout >= 0 ? monotonic() + timeout : 0.0;
    for (;;) {
        PY_TIMEOUT_T wait_us = -1;
        if (timeout >= 0) {
            double left = deadline - monotonic();
            if (left < 0) {
                left = 0;
            }
            double us = ceil(left * 1e6);
            wait_us = us > (double)PY_TIMEOUT_MAX ? PY_TIMEOUT_MAX : (PY_TIMEOUT_T)us;
        }
        PyLockStatus status;
        PyThread_type_lock handoff = self->handoff;
        Py_BEGIN_ALLOW_THREADS
        status = PyThread_acquire_lock_timed(handoff, wait_us, 1);
        Py_END_ALLOW_THREADS
        if (status == PY_LOCK_ACQUIRED) {
            return 1; /* the releaser uncounted this thread */
        }
        if (status == PY_LOCK_INTR) {
            /* A signal: its handlers run here, then the wait goes on. */
            if (Py_MakePendingCalls() < 0) {
                if (take_token(self)) { /* handed over meanwhile: pass it on */
                    hand_on(self);
                }
                else {
                    self->waiters--;
                }
                return -1;
            }
            if (timeout < 0 || monotonic() < deadline) {
                continue;
            }
        }
        /* Time is up: a last look, as a token may have come since. */
        if (take_token(self)) {
            return 1;
        }
        self->waiters--;
        return 0;
    }
}

static PyObject *
lock_acquire(LockObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) { /* acquire(): the engine's own call */
        if (!self->locked) {
            self->locked = 1;
            Py_RETURN_TRUE;
        }
        int taken = acquire_waiting(self, -1.0);
        if (taken < 0) {
            return NULL;
        }
        if (taken == 0) { /* only a failing semaphore ends an endless wait */
            Py_RETURN_FALSE;
        }
        Py_RETURN_TRUE;
    }
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *blocking_arg = NULL;
    PyObject *timeout_arg = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (nargs >= 1) {
        blocking_arg = args[0];
    }
    if (nargs == 2) {
        timeout_arg = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = NULL;
        for (int k = 0; k < 2; k++) {
            if (PyUnicode_CompareWithASCIIString(name, names[k]) == 0) {
                slot = k == 0 ? &blocking_arg : &timeout_arg;
            }
        }
        if (slot == NULL || *slot != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected or repeated "
                         "keyword argument '%U'", name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    int blocking = 1;
    if (blocking_arg != NULL) {
        blocking = PyObject_IsTrue(blocking_arg);
        if (blocking < 0) {
            return NULL;
        }
    }
    double timeout = -1.0;
    if (timeout_arg != NULL) {
        timeout = PyFloat_AsDouble(timeout_arg);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(timeout)) {
            PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
            return NULL;
        }
    }
    if (!blocking && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    if (timeout > (double)PY_TIMEOUT_MAX / 1e6) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return NULL;
    }
    if (!self->locked) {
        self->locked = 1;
        Py_RETURN_TRUE;
    }
    if (!blocking || timeout == 0) {
        Py_RETURN_FALSE;
    }
    int taken = acquire_waiting(self, timeout);
    if (taken < 0) {
        return NULL;
    }
    return PyBool_FromLong(taken);
}

static PyObject *
lock_release(LockObject *self, PyObject *unused)
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    hand_on(self);
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(LockObject *self, PyObject *args)
{
    return lock_release(self, NULL);
}

static PyObject *
lock_locked(LockObject *self, PyObject *unused)
{
    return PyBool_FromLong(self->locked);
}

static PyObject *
lock_enter(LockObject *self, PyObject *unused)
{
    return lock_acquire(self, NULL, 0, NULL);
}

static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
        return NULL;
    }
    LockObject *self = (LockObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    return (PyObject *)self; /* unlocked, no waiter, no semaphore yet */
}

static void
lock_dealloc(LockObject *self)
{
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->handoff != NULL) {
        /* Nobody waits: a waiter holds a reference. A token may be left: release it
         * (a semaphore is freed unlocked). */
        take_token(self);
        PyThread_release_lock(self->handoff);
        PyThread_free_lock(self->handoff);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
lock_repr(LockObject *self)
{
    return PyUnicode_FromFormat("<%s message_io lock object at %p>",
                                self->locked ? "locked" : "unlocked", self);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool, as threading.Lock's."},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "release(), as threading.Lock's."},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS, "locked() -> bool"},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, "acquire()"},
    {"__exit__", (PyCFunction)lock_exit, METH_VARARGS, "release()"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "message_io.network.lock.Lock",
    .tp_basicsize = sizeof(LockObject),
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_repr = (reprfunc)lock_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A lock, as threading.Lock, whose acquire() with no arguments is cheap.",
    .tp_weaklistoffset = offsetof(LockObject, weakrefs),
    .tp_methods = lock_methods,
    .tp_new = lock_new,
};

static struct PyModuleDef lock_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.network.lock",
    "The lock of each connection (the C twin of lock.py).",
    -1,
    NULL,
};

PyMODINIT_FUNC
PyInit_lock(void)
{
    if (PyType_Ready(&LockType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&lock_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Lock", (PyObject *)&LockType) < 0
        || PyModule_AddObjectRef(module, "COMPILED", Py_True) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
