/* Masking a WebSocket payload: the C twin of mask.py.
 *
 * websockets' apply_mask parses its two arguments with PyArg_ParseTupleAndKeywords,
 * which for a small message costs several times the XOR itself; mask() takes them as
 * a vector. mask_into() writes into a bytearray the caller reuses (a client's frame
 * bodies, see body_pool.py) instead of a new bytes object. Sixteen bytes at a time where the CPU has SSE2 (every x86-64), else eight,
 * then the tail byte by byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

PyDoc_STRVAR(mask_doc,
"mask(data, key, /) -> bytes\n\n"
"data (bytes-like) XOR key (4 bytes) repeated: a WebSocket payload masked or unmasked\n"
"(RFC 6455 5.3).");

PyDoc_STRVAR(mask_into_doc,
"mask_into(dest, data, key, /) -> None\n\n"
"dest[:] = mask(data, key), without the intermediate bytes: dest (a bytearray) is\n"
"resized to len(data) and holds data XOR key repeated. BufferError if dest must change\n"
"size while a view of it is open.");

/* out[i] = in[i] ^ k[i % 4] for i < size (out may be in, not otherwise overlap it). */
static void
xor_key(unsigned char *out, const unsigned char *in, Py_ssize_t size, const unsigned char *k)
{
    Py_ssize_t i = 0;
    if (size >= 8) {
        unsigned char pattern[16] = {k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3],
                                     k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]};
#if defined(__SSE2__)
        __m128i block_key = _mm_loadu_si128((const __m128i *)pattern);
        for (; i + 16 <= size; i += 16) {
            __m128i block = _mm_loadu_si128((const __m128i *)(in + i));
            _mm_storeu_si128((__m128i *)(out + i), _mm_xor_si128(block, block_key));
        }
#endif
        uint64_t word_key;
        memcpy(&word_key, pattern, 8);
        for (; i + 8 <= size; i += 8) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            word ^= word_key;
            memcpy(out + i, &word, 8);
        }
    }
    for (; i < size; i++) {
        out[i] = in[i] ^ k[i & 3];
    }
}

/* The data and the key of a call: PyBuffer_Release both afterwards (on success). */
static int
get_data_and_key(PyObject *data_obj, PyObject *key_obj, Py_buffer *data, Py_buffer *key)
{
    if (PyObject_GetBuffer(data_obj, data, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(key_obj, key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    if (key->len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        PyBuffer_Release(key);
        PyBuffer_Release(data);
        return -1;
    }
    return 0;
}

static PyObject *
mask_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "mask() takes data and key");
        return NULL;
    }
    Py_buffer data;
    Py_buffer key;
    if (get_data_and_key(args[0], args[1], &data, &key) < 0) {
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_key((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                data.len, (const unsigned char *)key.buf);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

/* Make ``dest`` (a bytearray, not exported) hold ``size`` bytes, of any value. Within
 * its allocation when that is at most twice as large, from its start (whatever a front
 * cut, del dest[:n], left before it): a buffer reused for bodies of one size is never
 * reallocated. Else as PyByteArray_Resize decides. */
static int
set_size(PyByteArrayObject *dest, Py_ssize_t size)
{
    if (dest->ob_bytes != NULL && size < dest->ob_alloc && size >= dest->ob_alloc / 2) {
        dest->ob_start = dest->ob_bytes;
        Py_SET_SIZE(dest, size);
        dest->ob_bytes[size] = '\0'; /* the trailing NUL every bytearray keeps */
        return 0;
    }
    return PyByteArray_Resize((PyObject *)dest, size);
}

static PyObject *
mask_into_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "mask_into() takes dest, data and key");
        return NULL;
    }
    PyObject *dest = args[0];
    if (!PyByteArray_Check(dest)) {
        PyErr_Format(PyExc_TypeError, "mask_into() needs a bytearray, not %.100s",
                     Py_TYPE(dest)->tp_name);
        return NULL;
    }
    Py_buffer data;
    Py_buffer key;
    if (get_data_and_key(args[1], args[2], &data, &key) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (PyByteArray_GET_SIZE(dest) != data.len) {
        if (((PyByteArrayObject *)dest)->ob_exports > 0) {
            /* As dest[:] = ... refuses it: a view of the buffer is open (data may be
             * one, of dest itself). */
            PyErr_SetString(PyExc_BufferError,
                            "Existing exports of data: object cannot be re-sized");
            goto done;
        }
        if (set_size((PyByteArrayObject *)dest, data.len) < 0) {
            goto done;
        }
    }
    /* Same size: in place, even if data is dest (each byte is read before it is
     * written), as dest[:] = ... does. */
    xor_key((unsigned char *)PyByteArray_AS_STRING(dest), (const unsigned char *)data.buf,
            data.len, (const unsigned char *)key.buf);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(masked_frame_doc,
"masked_frame(first, data, keys, at, /) -> bytes\n\n"
"A whole masked WebSocket frame (RFC 6455 5.2) in one object: its first byte first,\n"
"the mask bit and the length of data, the masking key keys[at:at + 4], then data\n"
"masked with it. ValueError if first is not a byte or keys holds no 4 bytes at at.");

static PyObject *
masked_frame_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes first, data, keys and at");
        return NULL;
    }
    long first = PyLong_AsLong(args[0]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t at = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
    if (at == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (first < 0 || first > 255) {
        PyErr_SetString(PyExc_ValueError, "first must be a byte (0 to 255)");
        return NULL;
    }
    Py_buffer data;
    Py_buffer keys;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &keys, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *result = NULL;
    if (at < 0 || at > keys.len - 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    Py_ssize_t size = data.len;
    Py_ssize_t head = size < 126 ? 2 : size < 65536 ? 4 : 10;
    result = PyBytes_FromStringAndSize(NULL, head + 4 + size);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    out[0] = (unsigned char)first;
    if (head == 2) {
        out[1] = (unsigned char)(0x80 | size);
    }
    else if (head == 4) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(size >> 8);
        out[3] = (unsigned char)size;
    }
    else {
        out[1] = 0x80 | 127;
        unsigned long long length = (unsigned long long)size;
        for (int i = 9; i >= 2; i--) {
            out[i] = (unsigned char)length;
            length >>= 8;
        }
    }
    const unsigned char *key = (const unsigned char *)keys.buf + at;
    memcpy(out + head, key, 4);
    xor_key(out + head + 4, (const unsigned char *)data.buf, size, key);
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(unmask_doc,
"unmask(data, start, stop, /) -> bytes\n\n"
"mask(data[start:stop], data[start - 4:start]): the payload of a masked frame that\n"
"data (bytes) holds whole, unmasked with the key just before it, without the two\n"
"slices. ValueError unless 4 <= start <= stop <= len(data).");

static PyObject *
unmask_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask() takes data, start and stop");
        return NULL;
    }
    PyObject *data = args[0];
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "unmask() needs bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t stop = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (stop == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 4 || stop < start || stop > PyBytes_GET_SIZE(data)) {
        PyErr_SetString(PyExc_ValueError, "unmask() needs 4 <= start <= stop <= len(data)");
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(data);
    PyObject *result = PyBytes_FromStringAndSize(NULL, stop - start);
    if (result != NULL) {
        xor_key((unsigned char *)PyBytes_AS_STRING(result), in + start, stop - start,
                in + start - 4);
    }
    return result;
}

static PyMethodDef mask_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))mask_call, METH_FASTCALL, mask_doc},
    {"mask_into", (PyCFunction)(void (*)(void))mask_into_call, METH_FASTCALL, mask_into_doc},
    {"masked_frame", (PyCFunction)(void (*)(void))masked_frame_call, METH_FASTCALL,
     masked_frame_doc},
    {"unmask", (PyCFunction)(void (*)(void))unmask_call, METH_FASTCALL, unmask_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mask_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.codec.mask",
    "Masking a WebSocket payload (the C twin of mask.py).",
    -1,
    mask_methods,
};

PyMODINIT_FUNC
PyInit_mask(void)
{
    PyObject *module = PyModule_Create(&mask_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "COMPILED", Py_True) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
