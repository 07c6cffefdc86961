/* The lock of each connection: the C twin of lock.py.
 *
 * threading.Lock().acquire() parses its (blocking, timeout) arguments with
 * PyArg_ParseTupleAndKeywords on every call, even with none given: about 400
 * instructions, twice per message sent. This Lock is the same lock (a PyThread lock)
 * with an acquire() that takes the lock at once when it is free and goes through the
 * full path (GIL released, timeout, signals) only when it must wait.
 *
 * It is used as threading.Lock is: acquire(blocking=True, timeout=-1) -> bool,
 * release() (RuntimeError if unlocked), locked(), and the context manager; so
 * threading.Condition works on it unchanged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <math.h>
#include <stddef.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char locked;
    PyObject *weakrefs;
} LockObject;

static double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* Wait for the lock, up to ``timeout`` seconds (negative: no limit), the GIL released;
 * a signal runs its handlers and the wait goes on. 1: taken, 0: timed out, -1: a
 * handler raised. */
static int
acquire_waiting(LockObject *self, double timeout)
{
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
        Py_BEGIN_ALLOW_THREADS
        status = PyThread_acquire_lock_timed(self->lock, wait_us, 1);
        Py_END_ALLOW_THREADS
        if (status == PY_LOCK_ACQUIRED) {
            return 1;
        }
        if (status == PY_LOCK_FAILURE) {
            return 0;
        }
        /* PY_LOCK_INTR: a signal; its handlers run here, then the wait goes on. */
        if (Py_MakePendingCalls() < 0) {
            return -1;
        }
        if (timeout >= 0 && monotonic() >= deadline) {
            /* one last try without waiting, as the time is up */
            if (PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED) {
                return 1;
            }
            return 0;
        }
    }
}

static PyObject *
lock_acquire(LockObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) { /* acquire(): the engine's own call */
        if (PyThread_acquire_lock_timed(self->lock, 0, 0) != PY_LOCK_ACQUIRED) {
            int taken = acquire_waiting(self, -1.0);
            if (taken < 0) {
                return NULL;
            }
            if (taken == 0) { /* only a failing semaphore ends an endless wait */
                Py_RETURN_FALSE;
            }
        }
        self->locked = 1;
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
    int taken = PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED;
    if (!taken && blocking && timeout != 0) {
        taken = acquire_waiting(self, timeout);
        if (taken < 0) {
            return NULL;
        }
    }
    if (taken) {
        self->locked = 1;
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
    self->locked = 0;
    PyThread_release_lock(self->lock);
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
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void
lock_dealloc(LockObject *self)
{
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
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
