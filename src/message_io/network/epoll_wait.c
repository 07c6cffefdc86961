/* Waiting on the node's epoll: the C twin of epoll_wait.py.
 *
 * select.epoll.poll() converts its timeout through the generic time API, allocates an
 * event buffer per call (with malloc: it is 12 KiB) and builds each (fd, mask) pair
 * with Py_BuildValue. wait() calls epoll_wait into a buffer on its own stack and returns
 * the same list, reusing the list and pairs of earlier calls that nothing holds any more.
 *
 * The descriptor is read from the epoll object at the time of the call (-1 once it is
 * closed: ValueError, as epoll.poll raises), at the place found and checked at import
 * against a live epoll's fileno(); when it does not match, fileno() is called instead.
 * A signal that interrupts the wait runs its handlers, and the wait goes on for what is
 * left of the timeout (PEP 475, as epoll.poll); an exception from a handler is raised.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sys/epoll.h>
#include <time.h>

#define MAX_EVENTS 1024

/* select.epoll: the only class whose descriptor is read from the object. */
static PyTypeObject *epoll_class = NULL;
/* Where its object keeps the descriptor; 0: unknown, call fileno(). */
static Py_ssize_t fd_offset = 0;

static int
epoll_fd(PyObject *epoll)
{
    if (fd_offset && Py_TYPE(epoll) == epoll_class) {
        int fd = *(int *)((char *)epoll + fd_offset);
        if (fd < 0) {
            PyErr_SetString(PyExc_ValueError, "I/O operation on closed epoll object");
        }
        return fd;
    }
    PyObject *fileno = PyObject_CallMethod(epoll, "fileno", NULL);
    if (fileno == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not an open epoll descriptor");
        return -1;
    }
    return (int)fd;
}

/* Seconds to epoll_wait's milliseconds, rounded up (never sooner than asked, as
 * epoll.poll); None or negative: -1, no limit. -2 with an exception set if not a number. */
static int
milliseconds(PyObject *timeout)
{
    if (timeout == Py_None) {
        return -1;
    }
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return -2;
    }
    if (isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -2;
    }
    double ms = ceil(seconds * 1e3);
    if (ms < 0) {
        return -1;
    }
    if (ms > (double)INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "timeout is too large");
        return -2;
    }
    return (int)ms;
}

static double
monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e3 + (double)now.tv_nsec * 1e-6;
}

#ifndef Py_GIL_DISABLED
/* The pairs of earlier calls, by position: one that nothing else holds any more (the
 * loop has dropped the list it came in) is filled anew instead of allocated, as
 * CPython's own dict items and enumerate iterators reuse their result tuple. Only under
 * the GIL, which guards them; a tuple the GC untracked stays so (it holds ints only). */
static PyObject *spare_pairs[MAX_EVENTS];
#endif

/* A new reference to the pair (fd, mask), the i-th of this call's list. */
static PyObject *
new_pair(int i, int fd, uint32_t mask)
{
    PyObject *fd_obj = PyLong_FromLong(fd);
    if (fd_obj == NULL) {
        return NULL;
    }
    PyObject *mask_obj = PyLong_FromUnsignedLong(mask);
    if (mask_obj == NULL) {
        Py_DECREF(fd_obj);
        return NULL;
    }
#ifndef Py_GIL_DISABLED
    PyObject *pair = spare_pairs[i];
    if (pair != NULL && Py_REFCNT(pair) == 1) {
        PyObject *old_fd = PyTuple_GET_ITEM(pair, 0);
        PyObject *old_mask = PyTuple_GET_ITEM(pair, 1);
        PyTuple_SET_ITEM(pair, 0, fd_obj);
        PyTuple_SET_ITEM(pair, 1, mask_obj);
        Py_DECREF(old_fd);
        Py_DECREF(old_mask);
        Py_INCREF(pair);
        return pair;
    }
#endif
    PyObject *fresh = PyTuple_New(2);
    if (fresh == NULL) {
        Py_DECREF(fd_obj);
        Py_DECREF(mask_obj);
        return NULL;
    }
    PyTuple_SET_ITEM(fresh, 0, fd_obj);
    PyTuple_SET_ITEM(fresh, 1, mask_obj);
#ifndef Py_GIL_DISABLED
    Py_INCREF(fresh);
    Py_XSETREF(spare_pairs[i], fresh); /* the one it replaces is still held elsewhere */
#endif
    return fresh;
}

/* The list of the last call, kept: reused, with its pairs, when nothing else holds it
 * any more and it has the length this call needs. */
#ifndef Py_GIL_DISABLED
static PyObject *spare_list = NULL;
#endif

/* The new list of (fd, mask) pairs of events[:count]. */
static PyObject *
ready_list(const struct epoll_event *events, int count)
{
#ifndef Py_GIL_DISABLED
    if (spare_list != NULL && Py_REFCNT(spare_list) == 1) {
        if (PyList_GET_SIZE(spare_list) == count) {
            PyObject *ready = spare_list;
            /* Each slot is emptied first, so that its pair is free to be refilled; none
             * is seen meanwhile (nothing else holds the list), and a pair's release
             * runs no Python code (it holds ints). */
            for (int i = 0; i < count; i++) {
                Py_DECREF(PyList_GET_ITEM(ready, i)); /* its slot is refilled below */
                PyObject *pair = new_pair(i, events[i].data.fd, events[i].events);
                if (pair == NULL) {
                    /* The slot keeps a valid item: None (the list is dropped). */
                    PyList_SET_ITEM(ready, i, Py_NewRef(Py_None));
                    Py_CLEAR(spare_list);
                    return NULL;
                }
                PyList_SET_ITEM(ready, i, pair);
            }
            return Py_NewRef(ready);
        }
        Py_CLEAR(spare_list); /* frees its pairs for this call */
    }
#endif
    PyObject *ready = PyList_New(count);
    if (ready == NULL) {
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        PyObject *pair = new_pair(i, events[i].data.fd, events[i].events);
        if (pair == NULL) {
            Py_DECREF(ready);
            return NULL;
        }
        PyList_SET_ITEM(ready, i, pair);
    }
#ifndef Py_GIL_DISABLED
    Py_XSETREF(spare_list, Py_NewRef(ready));
#endif
    return ready;
}

/* Milliseconds from now to deadline_ms (CLOCK_MONOTONIC, as time.monotonic()), rounded
 * up; 0 if it has passed, at most INT_MAX (the loop then looks again). */
static int
milliseconds_until(double deadline_ms)
{
    double left = ceil(deadline_ms - monotonic_ms());
    if (left <= 0) {
        return 0;
    }
    return left < (double)INT_MAX ? (int)left : INT_MAX;
}

/* The ready list of epoll after at most ms milliseconds (-1: no limit); a signal's
 * handlers run, then the wait goes on until deadline_ms (PEP 475, as epoll.poll). */
static PyObject *
wait_events(PyObject *epoll, int ms, double deadline_ms)
{
    int epfd = epoll_fd(epoll);
    if (epfd < 0) {
        return NULL;
    }
    struct epoll_event events[MAX_EVENTS];
    int count;
    int error;
    for (;;) {
        /* The GIL is released even for a timeout of 0: the loop's turns run compiled
         * code, which never offers the GIL on its own, so this is where the other
         * threads get it (a loop turning with nothing to wait for would otherwise
         * starve them). */
        Py_BEGIN_ALLOW_THREADS
        count = epoll_wait(epfd, events, MAX_EVENTS, ms);
        error = errno;
        Py_END_ALLOW_THREADS
        if (count >= 0) {
            break;
        }
        if (error != EINTR) {
            errno = error;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        /* A signal: its handlers run, then the wait goes on for what is left. */
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
        if (ms > 0) {
            ms = milliseconds_until(deadline_ms);
        }
        epfd = epoll_fd(epoll); /* a handler may have closed it */
        if (epfd < 0) {
            return NULL;
        }
    }
    return ready_list(events, count);
}

PyDoc_STRVAR(wait_doc,
"wait(epoll, timeout, /) -> list[tuple[int, int]]\n\n"
"epoll.poll(timeout): (fd, mask) of the ready descriptors, after at most timeout\n"
"seconds (None or negative: no limit).");

static PyObject *
epoll_wait_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait() takes epoll and timeout");
        return NULL;
    }
    int ms = milliseconds(args[1]);
    if (ms == -2) {
        return NULL;
    }
    return wait_events(args[0], ms, ms > 0 ? monotonic_ms() + ms : 0.0);
}

PyDoc_STRVAR(wait_until_doc,
"wait_until(epoll, deadline, /) -> list[tuple[int, int]]\n\n"
"wait() until deadline, a time.monotonic() reading (None: no limit; one that has\n"
"passed: do not wait). The clock is read here, not by the caller.");

static PyObject *
epoll_wait_until_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait_until() takes epoll and deadline");
        return NULL;
    }
    if (args[1] == Py_None) {
        return wait_events(args[0], -1, 0.0);
    }
    double deadline = PyFloat_AsDouble(args[1]);
    if (deadline == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (isnan(deadline)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return NULL;
    }
    double deadline_ms = deadline * 1e3;
    return wait_events(args[0], deadline > 0 ? milliseconds_until(deadline_ms) : 0, deadline_ms);
}

PyDoc_STRVAR(passed_doc,
"passed(deadline, /) -> bool\n\n"
"time.monotonic() >= deadline, without the float of the clock reading: whether a\n"
"deadline of the loop's timers has come. The clock is read as time.monotonic() reads\n"
"it, to the same double, so a later time.monotonic() agrees.");

static PyObject *
epoll_wait_passed(PyObject *module, PyObject *deadline_obj)
{
    double deadline = PyFloat_AsDouble(deadline_obj);
    if (deadline == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* As CPython's _PyTime_AsSecondsDouble does with the nanoseconds it reads. */
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    double seconds = ns % 1000000000LL == 0 ? (double)(ns / 1000000000LL) : (double)ns / 1e9;
    return PyBool_FromLong(seconds >= deadline);
}

static PyMethodDef epoll_wait_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))epoll_wait_call, METH_FASTCALL, wait_doc},
    {"wait_until", (PyCFunction)(void (*)(void))epoll_wait_until_call, METH_FASTCALL,
     wait_until_doc},
    {"passed", (PyCFunction)epoll_wait_passed, METH_O, passed_doc},
    {NULL, NULL, 0, NULL},
};

/* Find where select.epoll keeps its descriptor ({PyObject_HEAD; SOCKET epfd; ...} in
 * every CPython this builds for), checked against a live epoll's fileno(). */
static int
find_fd_offset(void)
{
    PyObject *select = PyImport_ImportModule("select");
    if (select == NULL) {
        return -1;
    }
    PyObject *cls = PyObject_GetAttrString(select, "epoll");
    Py_DECREF(select);
    if (cls == NULL) {
        return -1;
    }
    if (!PyType_Check(cls)) {
        Py_DECREF(cls);
        PyErr_SetString(PyExc_ImportError, "select.epoll is not a class");
        return -1;
    }
    epoll_class = (PyTypeObject *)cls; /* kept for the life of the process */
    if (epoll_class->tp_basicsize < (Py_ssize_t)(sizeof(PyObject) + sizeof(int))) {
        return 0;
    }
    PyObject *probe = PyObject_CallNoArgs(cls);
    if (probe == NULL) {
        PyErr_Clear(); /* no epoll to spare now: call fileno() each time */
        return 0;
    }
    PyObject *fileno = PyObject_CallMethod(probe, "fileno", NULL);
    long expected = fileno != NULL ? PyLong_AsLong(fileno) : -1;
    Py_XDECREF(fileno);
    PyErr_Clear();
    if (Py_TYPE(probe) == epoll_class && expected >= 0
        && *(int *)((char *)probe + sizeof(PyObject)) == (int)expected) {
        fd_offset = (Py_ssize_t)sizeof(PyObject);
    }
    PyObject *closed = PyObject_CallMethod(probe, "close", NULL);
    Py_XDECREF(closed);
    Py_DECREF(probe);
    PyErr_Clear();
    return 0;
}

static struct PyModuleDef epoll_wait_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.network.epoll_wait",
    "Waiting on the node's epoll (the C twin of epoll_wait.py).",
    -1,
    epoll_wait_methods,
};

PyMODINIT_FUNC
PyInit_epoll_wait(void)
{
    if (find_fd_offset() < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&epoll_wait_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "COMPILED", Py_True) < 0
        || PyModule_AddIntConstant(module, "MAX_EVENTS", MAX_EVENTS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
