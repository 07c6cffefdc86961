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
 *
 * A Message lives for one callback, and a busy node makes one per message: allocating
 * it, and freeing it through CPython's generic deallocator of classes (subtype_dealloc,
 * which looks for a __dict__, weak references, a finalizer and slots to clear on every
 * call), cost more than the rest of its making. So Message gets a deallocator of its
 * own, which knows its two slots, and keeps up to FREE_MAX freed objects for the next
 * messages, as CPython keeps its tuples and floats. It is installed only when the class
 * is as expected: its deallocator the generic one, no __dict__ nor weak references,
 * object its base. Subclasses (TextMessage, a user's) keep the generic deallocator,
 * which hands their Message part to this one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyTypeObject *message_class = NULL;
static Py_ssize_t endpoint_offset = 0;
static Py_ssize_t data_offset = 0;

/* Freed Messages kept for reuse: untracked by the GC, their slots empty, no reference
 * to their class. Used with the GIL held. */
#define FREE_MAX 64
static PyObject *free_messages[FREE_MAX];
static int free_count = 0;

/* The deallocator of Message, and of the Message part of a subclass's instance (called
 * by subtype_dealloc once it has cleared what the subclass added: it stops at the first
 * base whose deallocator is not its own). Does what subtype_dealloc would do from
 * Message down: runs a finalizer that Message was given after import, clears the two
 * slots, frees the object (or keeps an exact Message for reuse) and releases the
 * reference that it held to its class. */
static void
message_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (type == message_class && type->tp_finalize != NULL) {
        /* Subclasses' finalizers have run in subtype_dealloc already. */
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return; /* resurrected */
        }
    }
    PyObject_GC_UnTrack(self);
    Py_CLEAR(*(PyObject **)((char *)self + endpoint_offset));
    Py_CLEAR(*(PyObject **)((char *)self + data_offset));
    /* Decided last: what the two references held may have run code that made and
     * freed Messages. One whose header says it was finalized is not a new object. */
    if (type == message_class && free_count < FREE_MAX && !PyObject_GC_IsFinalized(self)) {
        free_messages[free_count++] = self;
    }
    else {
        type->tp_free(self);
    }
    Py_DECREF(type);
}

/* Install message_dealloc if Message is laid out as it expects; else leave it be. */
static void
install_dealloc(void)
{
#ifndef Py_GIL_DISABLED
    PyTypeObject *cls = message_class;
    if (cls->tp_base == &PyBaseObject_Type && cls->tp_dictoffset == 0
        && cls->tp_weaklistoffset == 0 && (cls->tp_flags & Py_TPFLAGS_HEAPTYPE)
        && (cls->tp_flags & Py_TPFLAGS_HAVE_GC) && cls->tp_free == PyObject_GC_Del
        && cls->tp_itemsize == 0 && cls->tp_finalize == NULL && cls->tp_del == NULL
        && cls->tp_dealloc != NULL && cls->tp_dealloc != message_dealloc) {
        cls->tp_dealloc = message_dealloc;
    }
#endif
}

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
    if (free_count > 0) {
        PyObject *message = PyObject_Init(free_messages[--free_count], message_class);
        *(PyObject **)((char *)message + endpoint_offset) = Py_NewRef(args[0]);
        *(PyObject **)((char *)message + data_offset) = Py_NewRef(args[1]);
        PyObject_GC_Track(message);
        return message;
    }
    PyObject *message = message_class->tp_alloc(message_class, 0);
    if (message == NULL) {
        return NULL;
    }
    *(PyObject **)((char *)message + endpoint_offset) = Py_NewRef(args[0]);
    *(PyObject **)((char *)message + data_offset) = Py_NewRef(args[1]);
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
        install_dealloc();
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
