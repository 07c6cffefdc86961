/* Appending a small message to a connection's open send buffer: the C twin of
 * coalesce.py.
 *
 * ``buffer += head; buffer += data`` makes two generic in-place additions, and CPython
 * grows a bytearray by an eighth when it runs out of room, so a buffer filled one small
 * message at a time is copied about eight times over by realloc. append() takes its
 * arguments as a vector, copies both parts in one call, and when the buffer must grow,
 * reserves as much again as it holds (at most SLACK_MAX bytes more; past 8 SLACK_MAX,
 * CPython's own eighth is the larger): each byte is copied about once or twice.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define SLACK_MAX (1 << 20)

PyDoc_STRVAR(append_doc,
"append(buffer, head, data, /) -> None\n\n"
"buffer += head; buffer += data, in one copy. buffer must be a bytearray; head and\n"
"data are bytes-like. BufferError if buffer is exported and must grow.");

/* Bytes ``buffer`` can hold without a new allocation (its trailing NUL left out). */
static inline Py_ssize_t
capacity(PyByteArrayObject *buffer)
{
    if (buffer->ob_bytes == NULL) {
        return 0;
    }
    return buffer->ob_alloc - (buffer->ob_start - buffer->ob_bytes) - 1;
}

/* The bytes of ``obj``: read in place from an exact bytes object (immutable, so nothing
 * can change or free them meanwhile: the caller holds a reference), else through the
 * buffer protocol. Either way, release() them afterwards. */
static inline int
view(PyObject *obj, Py_buffer *out)
{
    if (PyBytes_CheckExact(obj)) {
        out->obj = NULL;
        out->buf = PyBytes_AS_STRING(obj);
        out->len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    return PyObject_GetBuffer(obj, out, PyBUF_SIMPLE);
}

static inline void
release(Py_buffer *buffer)
{
    if (buffer->obj != NULL) {
        PyBuffer_Release(buffer);
    }
}

static PyObject *
append(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "append() takes buffer, head and data");
        return NULL;
    }
    PyObject *target = args[0];
    if (!PyByteArray_CheckExact(target)) {
        PyErr_Format(PyExc_TypeError, "append() needs a bytearray, not %.100s",
                     Py_TYPE(target)->tp_name);
        return NULL;
    }
    Py_buffer head;
    Py_buffer data;
    if (view(args[1], &head) < 0) {
        return NULL;
    }
    if (view(args[2], &data) < 0) {
        release(&head);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t size = PyByteArray_GET_SIZE(target);
    if (head.len > PY_SSIZE_T_MAX - size || data.len > PY_SSIZE_T_MAX - size - head.len) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t needed = size + head.len + data.len;
    if (needed == size) {
        result = Py_NewRef(Py_None); /* nothing to add: += would change nothing either */
        goto done;
    }
    if (((PyByteArrayObject *)target)->ob_exports > 0) {
        /* As PyByteArray_Resize refuses it: a view of the buffer is open. */
        PyErr_SetString(PyExc_BufferError,
                        "Existing exports of data: object cannot be re-sized");
        goto done;
    }
    if (needed > capacity((PyByteArrayObject *)target)) {
        Py_ssize_t slack = size < SLACK_MAX ? size : SLACK_MAX;
        if (slack <= size / 8 || slack > PY_SSIZE_T_MAX - 1 - needed) {
            slack = 0; /* CPython's own growth, an eighth, is as much */
        }
        if (PyByteArray_Resize(target, needed + slack) < 0) {
            goto done;
        }
    }
    /* The object's size set within its allocation, as PyByteArray_Resize does for a
     * size that fits (except that it gives the memory back when the size falls below
     * half of it, which after a front cut would undo the slack reserved above). */
    Py_SET_SIZE(target, needed);
    PyByteArray_AS_STRING(target)[needed] = '\0';
    char *out = PyByteArray_AS_STRING(target) + size;
    if (head.len) {
        memcpy(out, head.buf, (size_t)head.len);
    }
    if (data.len) {
        memcpy(out + head.len, data.buf, (size_t)data.len);
    }
    result = Py_NewRef(Py_None);
done:
    release(&data);
    release(&head);
    return result;
}

static PyMethodDef coalesce_methods[] = {
    {"append", (PyCFunction)(void (*)(void))append, METH_FASTCALL, append_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef coalesce_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.network.coalesce",
    "Appending a small message to a send buffer (the C twin of coalesce.py).",
    -1,
    coalesce_methods,
};

PyMODINIT_FUNC
PyInit_coalesce(void)
{
    PyObject *module = PyModule_Create(&coalesce_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "COMPILED", Py_True) < 0
        || PyModule_AddIntConstant(module, "SLACK_MAX", SLACK_MAX) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
