/* Making the Message of each message received: the C twin of new_message.py.
 *
 * message_io.Message is a frozen dataclass with two slots. Its __init__ (and the draft
 * that new_message.py assigns a class to) costs about a microsecond's fraction that
 * this spends on allocating the object and storing the two references in its slots.
 *
 * The slots' places are read at import from the class's own member descriptors, and
 * checked: each must be an object slot inside the instance. Anything else and COMPILED
 * is False (the engine makes its drafts, as without this module) and new_message()
 * calls the class.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyTypeObject *message_class = NULL;
static Py_ssize_t endpoint_offset = 0;
static Py_ssize_t data_offset = 0;

PyDoc_STRVAR(new_message_doc,
"new_message(endpoint, data, /) -> Message\n\n"
"Message(endpoint, data), made without its __init__: the engine's own data, already\n"
"checked.");

static PyObject *
new_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "new_message() takes endpoint and data");
        return NULL;
    }
    if (data_offset == 0) {
        return PyObject_Vectorcall((PyObject *)message_class, args, 2, NULL);
    }
    PyObject *message = message_class->tp_alloc(message_class, 0);
    if (message == NULL) {
        return NULL;
    }
    Py_INCREF(args[0]);
    *(PyObject **)((char *)message + endpoint_offset) = args[0];
    Py_INCREF(args[1]);
    *(PyObject **)((char *)message + data_offset) = args[1];
    return message;
}

static PyMethodDef new_message_methods[] = {
    {"new_message", (PyCFunction)(void (*)(void))new_message, METH_FASTCALL, new_message_doc},
    {NULL, NULL, 0, NULL},
};

/* The offset of ``name``, an object slot of Message; 0 if it is not one. */
static Py_ssize_t
slot_offset(const char *name)
{
    PyObject *descriptor = PyDict_GetItemString(message_class->tp_dict, name); /* borrowed */
    if (descriptor != NULL && Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type == T_OBJECT_EX && member->offset >= (Py_ssize_t)sizeof(PyObject)
            && member->offset + (Py_ssize_t)sizeof(PyObject *) <= message_class->tp_basicsize
            && !(member->flags & READONLY)) {
            return member->offset;
        }
    }
    return 0;
}

static struct PyModuleDef new_message_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.network.new_message",
    "Making the Message of each message received (the C twin of new_message.py).",
    -1,
    new_message_methods,
};

PyMODINIT_FUNC
PyInit_new_message(void)
{
    PyObject *events = PyImport_ImportModule("message_io.network.net_event");
    if (events == NULL) {
        return NULL;
    }
    PyObject *cls = PyObject_GetAttrString(events, "Message");
    Py_DECREF(events);
    if (cls == NULL) {
        return NULL;
    }
    if (!PyType_Check(cls)) {
        Py_DECREF(cls);
        PyErr_SetString(PyExc_ImportError, "Message is not a class");
        return NULL;
    }
    message_class = (PyTypeObject *)cls; /* kept for the life of the process */
    Py_ssize_t endpoint = slot_offset("endpoint");
    Py_ssize_t data = slot_offset("data");
    if (endpoint && data && endpoint != data) {
        endpoint_offset = endpoint;
        data_offset = data;
    }
    PyObject *module = PyModule_Create(&new_message_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "COMPILED", data_offset ? Py_True : Py_False) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
