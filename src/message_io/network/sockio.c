/* The engine's non-blocking socket calls, made directly: the C twin of sockio.py.
 *
 * socket.socket's recv() and send() parse their arguments and release the GIL around
 * every system call. The engine's sockets are non-blocking, so the call never waits:
 * these functions pass MSG_DONTWAIT (they never block, whatever the socket's mode) and
 * keep the GIL for transfers up to GIL_LIMIT bytes, releasing it only for larger ones,
 * whose copy takes long enough for another thread to use the time.
 *
 * Only an exact socket.socket is read directly, through the descriptor its object holds
 * (-1 once closed, so a closed socket fails with EBADF as its own methods do). Any
 * other object (an ssl.SSLSocket, a subclass) gets its own method called. Errors are
 * raised as socket.socket's are: OSError from errno, so BlockingIOError,
 * ConnectionResetError and the rest.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define GIL_LIMIT 65536

/* socket.socket: the only class whose descriptor is read from the object. */
static PyTypeObject *socket_class = NULL;
/* Where the object of _socket.socket keeps its descriptor and its type (SOCK_STREAM,
 * SOCK_DGRAM...); 0: unknown, call methods. */
static Py_ssize_t fd_offset = 0;
static Py_ssize_t type_offset = 0;
static Py_ssize_t family_offset = 0;

/* The descriptor of ``sock`` if it is read directly, else -2 (call its method). */
static inline int
direct_fd(PyObject *sock)
{
    if (fd_offset == 0 || Py_TYPE(sock) != socket_class) {
        return -2;
    }
    return *(int *)((char *)sock + fd_offset);
}

static int
as_int(PyObject *value, int *out)
{
    long number = PyLong_AsLong(value);
    if (number == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (number < INT_MIN || number > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "signed integer is greater than maximum");
        return -1;
    }
    *out = (int)number;
    return 0;
}

/* A datagram read with MSG_TRUNC, or a small read of a stream: into a scratch buffer
 * (the GIL is held throughout, so one serves every call), then copied out at its size.
 * A datagram is rarely near the size asked, nor is a small read (a peer that sends
 * little), and a bytes object of that size would be allocated and shrunk each time.
 * send2() also puts a frame's header and body together in it. */
static char scratch[GIL_LIMIT];

/* Reads of a stream up to this size go through the scratch buffer: the copy costs less
 * than the allocation it spares (one at most: a 1-byte result is CPython's own). */
#define SMALL_COPY 512

/* The ``got`` bytes of a read of ``size`` bytes into ``buffer``, as a new bytes object:
 * for a datagram longer than ``size`` (read with MSG_TRUNC), its real size, as
 * socket.recv says it, the bytes past ``size`` (never received) zeros. */
static PyObject *
copied_out(const char *buffer, Py_ssize_t size, Py_ssize_t got)
{
    if (got <= size) {
        return PyBytes_FromStringAndSize(buffer, got);
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, got);
    if (data != NULL) {
        memcpy(PyBytes_AS_STRING(data), buffer, (size_t)size);
        memset(PyBytes_AS_STRING(data) + size, 0, (size_t)(got - size));
    }
    return data;
}

/* Read ``sock`` (read directly) into the scratch buffer, its sender into ``sender``
 * unless that is NULL, and copy it out at its size: for a datagram longer than ``size``
 * (with MSG_TRUNC), its real size, as socket.recv says it, the rest zeros. */
static PyObject *
read_copied(PyObject *sock, Py_ssize_t size, int flags, struct sockaddr_storage *sender,
            socklen_t *length)
{
    ssize_t got;
    for (;;) {
        if (sender != NULL) {
            *length = (socklen_t)sizeof(*sender);
            sender->ss_family = AF_UNSPEC; /* as read unless the call gives no address */
        }
        /* read again after a signal: its handler may have closed the socket */
        got = recvfrom(direct_fd(sock), scratch, (size_t)size, flags | MSG_DONTWAIT,
                       (struct sockaddr *)sender, length);
        if (got >= 0) {
            break;
        }
        if (errno != EINTR) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    return copied_out(scratch, size, got);
}

/* ``value`` as a Py_ssize_t (OverflowError beyond), the usual int without the number
 * protocol's calls; -1 with an exception set on failure. */
static inline Py_ssize_t
as_ssize(PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        return PyLong_AsSsize_t(value);
    }
    return PyNumber_AsSsize_t(value, PyExc_OverflowError);
}

/* The arguments of recv() and recvfrom(): (sock, size, flags=0). */
static int
read_args(const char *name, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size,
          int *flags)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes sock, size and optional flags", name);
        return -1;
    }
    *size = as_ssize(args[1]);
    if (*size == -1 && PyErr_Occurred()) {
        return -1;
    }
    *flags = 0;
    return nargs == 3 ? as_int(args[2], flags) : 0;
}

PyDoc_STRVAR(recv_doc,
"recv(sock, size, flags=0, /) -> bytes\n\n"
"sock.recv(size, flags) without blocking: BlockingIOError when nothing waits.");

static PyObject *
sockio_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    int flags;
    if (read_args("recv", args, nargs, &size, &flags) < 0) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    PyObject *sock = args[0];
    int fd = direct_fd(sock);
    if (fd == -2) {
        return PyObject_CallMethod(sock, "recv", "ni", size, flags);
    }
    if (size == 0) {
        return PyBytes_FromStringAndSize(NULL, 0); /* as socket.recv(0): no call at all */
    }
    /* The scratch buffer: with MSG_TRUNC for datagrams only (on a stream socket it
     * discards the bytes and writes nothing, and the scratch would hand out an earlier
     * datagram); without it, for any small read. */
    int truncating = (flags & MSG_TRUNC) != 0;
    if ((truncating && size <= GIL_LIMIT
         && *(int *)((char *)sock + type_offset) == SOCK_DGRAM)
        || (!truncating && size <= SMALL_COPY)) {
        return read_copied(sock, size, flags, NULL, NULL);
    }
    PyObject *buffer = PyBytes_FromStringAndSize(NULL, size);
    if (buffer == NULL) {
        return NULL;
    }
    ssize_t got;
    int error;
    for (;;) {
        if (size > GIL_LIMIT) {
            Py_BEGIN_ALLOW_THREADS
            got = recv(fd, PyBytes_AS_STRING(buffer), (size_t)size, flags | MSG_DONTWAIT);
            error = errno;
            Py_END_ALLOW_THREADS
        }
        else {
            got = recv(fd, PyBytes_AS_STRING(buffer), (size_t)size, flags | MSG_DONTWAIT);
            error = errno;
        }
        if (got >= 0) {
            break;
        }
        if (error != EINTR || PyErr_CheckSignals() < 0) {
            Py_DECREF(buffer);
            if (error != EINTR) {
                errno = error;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            return NULL;
        }
        fd = direct_fd(sock); /* a signal handler may have closed the socket */
    }
    if (got != size) {
        /* Shorter; or longer with MSG_TRUNC (a datagram's real size), as socket.recv
         * does: the bytes past ``size`` were never received and are zeros here. */
        if (_PyBytes_Resize(&buffer, got) < 0) {
            return NULL;
        }
        if (got > size) {
            memset(PyBytes_AS_STRING(buffer) + size, 0, (size_t)(got - size));
        }
    }
    return buffer;
}

/* The sender of the last datagram read by recvfrom() and its address tuple: a listener
 * hears from the same peers again and again, and formatting an address costs more than
 * reading the datagram. Used with the GIL held. */
static struct sockaddr_storage last_sender;
static socklen_t last_sender_len = 0;
static PyObject *last_address = NULL;

static PyObject *format_address(const struct sockaddr_storage *sender, socklen_t length,
                                const char *caller);

/* The address tuple of ``sender``, as socket.recvfrom() gives it: (host, port) for
 * IPv4, (host, port, flowinfo, scope_id) for IPv6; NULL and OSError for another
 * family. */
static PyObject *
address_of(const struct sockaddr_storage *sender, socklen_t length)
{
    if (last_address != NULL && length == last_sender_len
        && memcmp(sender, &last_sender, (size_t)length) == 0) {
        return Py_NewRef(last_address);
    }
    PyObject *address = format_address(sender, length, "recvfrom");
    if (address != NULL) {
        memcpy(&last_sender, sender, (size_t)length);
        last_sender_len = length;
        Py_XSETREF(last_address, Py_NewRef(address));
    }
    return address;
}

/* The address tuple of ``sender`` (see address_of), made afresh; for another family,
 * OSError naming ``caller``. */
static PyObject *
format_address(const struct sockaddr_storage *sender, socklen_t length, const char *caller)
{
    char host[INET6_ADDRSTRLEN];
    PyObject *address;
    if (sender->ss_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sender;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        address = Py_BuildValue("(si)", host, (int)ntohs(in4->sin_port));
    }
    else if (sender->ss_family == AF_INET6 && length >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sender;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        address = Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port),
                                (unsigned int)ntohl(in6->sin6_flowinfo),
                                (unsigned int)in6->sin6_scope_id);
    }
    else {
        return PyErr_Format(PyExc_OSError, "%s(): address family %d", caller,
                            sender->ss_family);
    }
    return address;
}

PyDoc_STRVAR(recvfrom_doc,
"recvfrom(sock, size, flags=0, /) -> (bytes, address)\n\n"
"sock.recvfrom(size, flags) of a datagram socket without blocking: BlockingIOError\n"
"when nothing waits. With MSG_TRUNC, a longer datagram's real size, as recv().");

static PyObject *
sockio_recvfrom(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    int flags;
    if (read_args("recvfrom", args, nargs, &size, &flags) < 0) {
        return NULL;
    }
    PyObject *sock = args[0];
    if (size < 0 || size > GIL_LIMIT || direct_fd(sock) == -2
        || *(int *)((char *)sock + type_offset) != SOCK_DGRAM) {
        /* not the engine's case (a datagram of at most 64 KiB): the socket's own */
        return PyObject_CallMethod(sock, "recvfrom", "ni", size, flags);
    }
    struct sockaddr_storage sender;
    socklen_t length;
    PyObject *data = read_copied(sock, size, flags, &sender, &length);
    if (data == NULL) {
        return NULL;
    }
    PyObject *address = address_of(&sender, length);
    if (address == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, data, address);
    Py_DECREF(data);
    Py_DECREF(address);
    return pair;
}

/* Datagrams read by one recv_some() call at most: each has a slot of GIL_LIMIT bytes
 * (more than any UDP payload) in batch_space, and its header and sender in the arrays
 * beside it. All are used with the GIL held, kept ready for the size and the kind of
 * the last call (prepare()), so that a call like the last one writes nothing into
 * them first: the kernel changes only each header's msg_len and msg_flags, and the
 * sender's length, which are put back once read. Only the pages that datagrams were
 * written to are ever mapped. */
#define BATCH 16
#ifdef __linux__
static char batch_space[BATCH][GIL_LIMIT];
static struct mmsghdr batch_headers[BATCH];
static struct iovec batch_pieces[BATCH];
static struct sockaddr_storage batch_senders[BATCH];
static Py_ssize_t prepared_size = -1;
static int prepared_senders = -1;
/* Set once recvmmsg was refused as such (a seccomp filter, an emulation without it):
 * every later call answers None, and the caller reads one datagram at a time. */
static int batches_refused = 0;

/* Make the headers read datagrams of ``size`` bytes, with their senders or not. */
static void
prepare(Py_ssize_t size, int with_sender)
{
    if (size == prepared_size && with_sender == prepared_senders) {
        return;
    }
    for (int i = 0; i < BATCH; i++) {
        batch_pieces[i].iov_base = batch_space[i];
        batch_pieces[i].iov_len = (size_t)size;
        struct msghdr *header = &batch_headers[i].msg_hdr;
        memset(header, 0, sizeof(*header));
        header->msg_iov = &batch_pieces[i];
        header->msg_iovlen = 1;
        if (with_sender) {
            header->msg_name = &batch_senders[i];
            header->msg_namelen = (socklen_t)sizeof(batch_senders[i]);
        }
    }
    prepared_size = size;
    prepared_senders = with_sender;
}
#endif

PyDoc_STRVAR(recv_some_doc,
"recv_some(sock, size, flags, out, limit, /) -> int | None\n\n"
"Read up to limit datagrams (BATCH at most) of the datagram socket sock with one system\n"
"call (recvmmsg), each as recv(size, flags) reads it, and append them to the list out.\n"
"The number read: fewer than asked when no other datagram waited, or when an error\n"
"ended the batch (the kernel keeps it for the next call, and the socket stays\n"
"readable). BlockingIOError when none waits; the error of the first datagram as recv()\n"
"raises it. None, having read nothing, when the datagrams cannot be read so: sock not\n"
"read directly, size 0 or over GIL_LIMIT, MSG_PEEK, or recvmmsg refused by the system\n"
"(then every later call): the caller reads one datagram at a time.");

static PyObject *
read_some(PyObject *const *args, Py_ssize_t nargs, const char *name, int with_sender)
{
    if (nargs != 5) {
        return PyErr_Format(PyExc_TypeError, "%s() takes sock, size, flags, out and limit",
                            name);
    }
    PyObject *sock = args[0];
    PyObject *out = args[3];
    Py_ssize_t size = as_ssize(args[1]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int flags;
    if (as_int(args[2], &flags) < 0) {
        return NULL;
    }
    if (!PyList_Check(out)) {
        return PyErr_Format(PyExc_TypeError, "%s(): out must be a list", name);
    }
    Py_ssize_t limit = as_ssize(args[4]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
#ifdef __linux__
    /* Not the readers' case, nor a read recv() makes differently: with MSG_PEEK each
     * header would read the same datagram, and recv(0) reads nothing at all. */
    if (batches_refused || size <= 0 || size > GIL_LIMIT || (flags & MSG_PEEK)
        || direct_fd(sock) == -2 || *(int *)((char *)sock + type_offset) != SOCK_DGRAM) {
        Py_RETURN_NONE;
    }
    if (limit <= 0) {
        return PyLong_FromLong(0);
    }
    unsigned int want = limit < BATCH ? (unsigned int)limit : BATCH;
    int got;
    for (;;) {
        /* again after a signal: its handler may have read another socket, or closed
         * this one */
        prepare(size, with_sender);
        got = recvmmsg(direct_fd(sock), batch_headers, want, flags | MSG_DONTWAIT, NULL);
        if (got >= 0) {
            break;
        }
        if (errno == ENOSYS || errno == EPERM || errno == EOPNOTSUPP || errno == EINVAL) {
            batches_refused = 1; /* not the socket's error: the call's */
            Py_RETURN_NONE;
        }
        if (errno != EINTR) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    /* First every datagram out of the shared slots, and every sender: making a bytes
     * object runs no other code, while a tuple may start the garbage collector, and a
     * finalizer that reads a socket. */
    PyObject *data[BATCH];
    struct sockaddr_storage senders[BATCH];
    socklen_t lengths[BATCH];
    int made = 0;
    for (; made < got; made++) {
        struct mmsghdr *header = &batch_headers[made];
        data[made] = copied_out(batch_space[made], size, (Py_ssize_t)header->msg_len);
        if (with_sender) {
            lengths[made] = header->msg_hdr.msg_namelen;
            if (lengths[made] > (socklen_t)sizeof(senders[made])) {
                lengths[made] = (socklen_t)sizeof(senders[made]);
            }
            memcpy(&senders[made], &batch_senders[made], (size_t)lengths[made]);
            if (lengths[made] < (socklen_t)sizeof(sa_family_t)) {
                senders[made].ss_family = AF_UNSPEC; /* no address: OSError, not garbage */
            }
        }
        if (data[made] == NULL) {
            break;
        }
    }
    for (int i = 0; with_sender && i < got; i++) { /* ready for the next call */
        batch_headers[i].msg_hdr.msg_namelen = (socklen_t)sizeof(batch_senders[i]);
    }
    int failed = made < got;
    for (int i = 0; i < made; i++) {
        PyObject *item = data[i];
        if (!failed && with_sender) {
            PyObject *address = address_of(&senders[i], lengths[i]);
            PyObject *pair = address != NULL ? PyTuple_Pack(2, address, item) : NULL;
            Py_XDECREF(address);
            Py_SETREF(item, pair);
        }
        if (!failed && (item == NULL || PyList_Append(out, item) < 0)) {
            failed = 1;
        }
        Py_XDECREF(item);
    }
    return failed ? NULL : PyLong_FromLong(got);
#else
    (void)sock;
    (void)flags;
    Py_RETURN_NONE;
#endif
}

static PyObject *
sockio_recv_some(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return read_some(args, nargs, "recv_some", 0);
}

PyDoc_STRVAR(recvfrom_some_doc,
"recvfrom_some(sock, size, flags, out, limit, /) -> int | None\n\n"
"recv_some(), appending (address, data) pairs: each datagram's sender as recvfrom()\n"
"gives it (the same tuple object again while the sender stays the same), and its\n"
"bytes. send_back() knows the last of them.");

static PyObject *
sockio_recvfrom_some(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return read_some(args, nargs, "recvfrom_some", 1);
}

PyDoc_STRVAR(send_doc,
"send(sock, data, /) -> int\n\n"
"sock.send(data) without blocking: the number of bytes sent, BlockingIOError when\n"
"none could be. No SIGPIPE: a closed peer raises BrokenPipeError.");

/* A view of ``data``: a bytes object's own buffer without the buffer protocol's calls
 * (it cannot change, and the caller's reference keeps it alive throughout), else the
 * buffer protocol's (release it with release_view). */
static int
get_view(PyObject *data, Py_buffer *view)
{
    if (PyBytes_CheckExact(data)) {
        view->obj = NULL;
        view->buf = PyBytes_AS_STRING(data);
        view->len = PyBytes_GET_SIZE(data);
        return 0;
    }
    return PyObject_GetBuffer(data, view, PyBUF_SIMPLE);
}

static void
release_view(Py_buffer *view)
{
    if (view->obj != NULL) {
        PyBuffer_Release(view);
    }
}

/* Send ``count`` views (at most two) of ``sock`` (read directly, descriptor ``fd``) as
 * one: one view from its own buffer, two copied into the scratch buffer first (their
 * total at most GIL_LIMIT, the GIL held). To ``to`` (``to_len`` bytes) if it is not
 * NULL (a datagram socket's sendto), else to the peer. Retried after a signal whose
 * handlers return, with the descriptor read again and the scratch buffer filled again
 * (a handler may have closed the socket, or used the buffer). The bytes sent, or -1
 * with an exception. */
static Py_ssize_t
send_views(PyObject *sock, int fd, Py_buffer *views, int count,
           const struct sockaddr *to, socklen_t to_len)
{
    ssize_t sent;
    int error;
    for (;;) {
        if (count == 2) {
            memcpy(scratch, views[0].buf, (size_t)views[0].len);
            memcpy(scratch + views[0].len, views[1].buf, (size_t)views[1].len);
            sent = sendto(fd, scratch, (size_t)(views[0].len + views[1].len),
                          MSG_DONTWAIT | MSG_NOSIGNAL, to, to_len);
            error = errno;
        }
        else if (views[0].len > GIL_LIMIT) {
            Py_BEGIN_ALLOW_THREADS
            sent = sendto(fd, views[0].buf, (size_t)views[0].len, MSG_DONTWAIT | MSG_NOSIGNAL,
                          to, to_len);
            error = errno;
            Py_END_ALLOW_THREADS
        }
        else {
            sent = sendto(fd, views[0].buf, (size_t)views[0].len, MSG_DONTWAIT | MSG_NOSIGNAL,
                          to, to_len);
            error = errno;
        }
        if (sent >= 0) {
            return (Py_ssize_t)sent;
        }
        if (error != EINTR) {
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        fd = direct_fd(sock);
    }
}

static PyObject *
sockio_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send() takes sock and data");
        return NULL;
    }
    PyObject *sock = args[0];
    int fd = direct_fd(sock);
    if (fd == -2) {
        return PyObject_CallMethod(sock, "send", "O", args[1]);
    }
    Py_buffer view;
    if (get_view(args[1], &view) < 0) {
        return NULL;
    }
    Py_ssize_t sent = send_views(sock, fd, &view, 1, NULL, 0);
    release_view(&view);
    return sent < 0 ? NULL : PyLong_FromSsize_t(sent);
}

PyDoc_STRVAR(send2_doc,
"send2(sock, head, data, /) -> int\n\n"
"send(sock, head + data), without making head + data when the two come to at most\n"
"GIL_LIMIT bytes: they are copied into one buffer and sent at once. The number of\n"
"bytes sent (of the two together), BlockingIOError when none could be.");

static PyObject *
sockio_send2(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send2() takes sock, head and data");
        return NULL;
    }
    PyObject *sock = args[0];
    int fd = direct_fd(sock);
    Py_buffer views[2];
    if (get_view(args[1], &views[0]) < 0) {
        return NULL;
    }
    if (get_view(args[2], &views[1]) < 0) {
        release_view(&views[0]);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t total = views[0].len + views[1].len;
    if (fd != -2 && total <= GIL_LIMIT) {
        Py_ssize_t sent = send_views(sock, fd, views, 2, NULL, 0);
        if (sent >= 0) {
            result = PyLong_FromSsize_t(sent);
        }
    }
    else {
        PyObject *wire = PyBytes_FromStringAndSize(NULL, total);
        if (wire != NULL) {
            memcpy(PyBytes_AS_STRING(wire), views[0].buf, (size_t)views[0].len);
            memcpy(PyBytes_AS_STRING(wire) + views[0].len, views[1].buf, (size_t)views[1].len);
            PyObject *send_args[2] = {sock, wire};
            result = sockio_send(module, send_args, 2);
            Py_DECREF(wire);
        }
    }
    release_view(&views[1]);
    release_view(&views[0]);
    return result;
}

PyDoc_STRVAR(send_back_doc,
"send_back(sock, data, addr, /) -> int | None\n\n"
"sock.sendto(data, addr) without blocking, when addr is the very tuple the last\n"
"recvfrom() returned and sock is of its family: sent to the sender as it was read, with\n"
"no tuple to parse. The bytes sent, BlockingIOError when none could be. None, having\n"
"sent nothing, for any other addr (the caller sends it the usual way).");

static PyObject *
sockio_send_back(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send_back() takes sock, data and addr");
        return NULL;
    }
    PyObject *sock = args[0];
    /* The same object, alive in the caller: the tuple made from last_sender. */
    if (last_address == NULL || args[2] != last_address) {
        Py_RETURN_NONE;
    }
    int fd = direct_fd(sock);
    if (fd == -2 || *(int *)((char *)sock + type_offset) != SOCK_DGRAM
        || *(int *)((char *)sock + family_offset) != last_sender.ss_family) {
        Py_RETURN_NONE;
    }
    Py_buffer view;
    if (get_view(args[1], &view) < 0) {
        return NULL;
    }
    if (view.len > GIL_LIMIT) {
        release_view(&view);
        Py_RETURN_NONE;
    }
    /* A copy: a signal handler run between retries may read another datagram. */
    struct sockaddr_storage to;
    socklen_t to_len = last_sender_len;
    memcpy(&to, &last_sender, (size_t)to_len);
    Py_ssize_t sent = send_views(sock, fd, &view, 1, (const struct sockaddr *)&to, to_len);
    release_view(&view);
    return sent < 0 ? NULL : PyLong_FromSsize_t(sent);
}

PyDoc_STRVAR(pending_doc,
"pending(sock, /) -> int\n\n"
"The bytes waiting to be read (FIONREAD; on a datagram socket, the size of the next\n"
"datagram); OSError if the socket cannot tell.");

static PyObject *
sockio_pending(PyObject *module, PyObject *sock)
{
    int fd = direct_fd(sock);
    if (fd == -2) {
        PyObject *fileno = PyObject_CallMethod(sock, "fileno", NULL);
        if (fileno == NULL) {
            return NULL;
        }
        int ok = as_int(fileno, &fd);
        Py_DECREF(fileno);
        if (ok < 0) {
            return NULL;
        }
    }
    int waiting = 0;
    if (ioctl(fd, FIONREAD, &waiting) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(waiting);
}

PyDoc_STRVAR(accept_doc,
"accept(sock, /) -> (fd, address)\n\n"
"sock._accept() of an IPv4 or IPv6 listening socket, the new descriptor already\n"
"non-blocking (accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC: no second system call to\n"
"make it so): wrap it as socket.socket(family, type | SOCK_NONBLOCK, proto, fileno=fd).\n"
"BlockingIOError when no connection waits.");

static PyObject *
sockio_accept(PyObject *module, PyObject *sock)
{
    int fd = direct_fd(sock);
    if (fd == -2) {
        PyErr_SetString(PyExc_TypeError, "accept() takes a socket.socket");
        return NULL;
    }
#ifndef SOCK_NONBLOCK
    PyErr_SetString(PyExc_NotImplementedError, "accept4() is not available here");
    return NULL;
#else
    struct sockaddr_storage peer;
    socklen_t length;
    int got;
    for (;;) {
        length = (socklen_t)sizeof(peer);
        got = accept4(fd, (struct sockaddr *)&peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (got >= 0) {
            break;
        }
        if (errno != EINTR) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
        fd = direct_fd(sock); /* a signal handler may have closed the socket */
    }
    PyObject *address = format_address(&peer, length, "accept");
    if (address == NULL) {
        close(got);
        return NULL;
    }
    PyObject *number = PyLong_FromLong(got);
    if (number == NULL) {
        Py_DECREF(address);
        close(got);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, number, address);
    Py_DECREF(number);
    Py_DECREF(address);
    if (pair == NULL) {
        close(got);
    }
    return pair;
#endif
}

static PyMethodDef sockio_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))sockio_recv, METH_FASTCALL, recv_doc},
    {"send", (PyCFunction)(void (*)(void))sockio_send, METH_FASTCALL, send_doc},
    {"send2", (PyCFunction)(void (*)(void))sockio_send2, METH_FASTCALL, send2_doc},
    {"recvfrom", (PyCFunction)(void (*)(void))sockio_recvfrom, METH_FASTCALL, recvfrom_doc},
    {"send_back", (PyCFunction)(void (*)(void))sockio_send_back, METH_FASTCALL, send_back_doc},
    {"recv_some", (PyCFunction)(void (*)(void))sockio_recv_some, METH_FASTCALL, recv_some_doc},
    {"recvfrom_some", (PyCFunction)(void (*)(void))sockio_recvfrom_some, METH_FASTCALL,
     recvfrom_some_doc},
    {"pending", (PyCFunction)sockio_pending, METH_O, pending_doc},
    {"accept", (PyCFunction)sockio_accept, METH_O, accept_doc},
    {NULL, NULL, 0, NULL},
};

/* Find where _socket.socket keeps the descriptor and the type: right before its
 * ``family`` and right after it, in every CPython this builds for ({PyObject_HEAD;
 * SOCKET_T sock_fd; int sock_family; int sock_type; ...}). Checked, not assumed: the
 * ``family`` and ``type`` members must be ints at those places, and a live socket must
 * show its fileno() and type there. Anything else leaves fd_offset 0, and every call
 * goes through the socket's methods. */
static int
find_fd_offset(PyObject *module)
{
    PyObject *socket_module = PyImport_ImportModule("socket");
    if (socket_module == NULL) {
        return -1;
    }
    PyObject *cls = PyObject_GetAttrString(socket_module, "socket");
    Py_DECREF(socket_module);
    if (cls == NULL) {
        return -1;
    }
    if (!PyType_Check(cls)) {
        Py_DECREF(cls);
        PyErr_SetString(PyExc_ImportError, "socket.socket is not a class");
        return -1;
    }
    socket_class = (PyTypeObject *)cls; /* kept for the life of the process */
    PyTypeObject *base = socket_class->tp_base;
    if (base == NULL || base->tp_dict == NULL) {
        return 0;
    }
    PyObject *family = PyDict_GetItemString(base->tp_dict, "family"); /* borrowed */
    if (family == NULL || !Py_IS_TYPE(family, &PyMemberDescr_Type)) {
        return 0;
    }
    PyObject *type = PyDict_GetItemString(base->tp_dict, "type"); /* borrowed */
    if (type == NULL || !Py_IS_TYPE(type, &PyMemberDescr_Type)) {
        return 0;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)family)->d_member;
    PyMemberDef *type_member = ((PyMemberDescrObject *)type)->d_member;
    Py_ssize_t expected = (Py_ssize_t)(sizeof(PyObject) + sizeof(int));
    if (member->type != T_INT || member->offset != expected || type_member->type != T_INT
        || type_member->offset != expected + (Py_ssize_t)sizeof(int)) {
        return 0;
    }
    /* And a live socket's descriptor and type where they should be. */
    PyObject *probe = PyObject_CallFunction(cls, "ii", AF_INET, SOCK_DGRAM);
    if (probe == NULL) {
        PyErr_Clear(); /* no socket to spare now: call methods */
        return 0;
    }
    PyObject *fileno = PyObject_CallMethod(probe, "fileno", NULL);
    long number = fileno != NULL ? PyLong_AsLong(fileno) : -1;
    Py_XDECREF(fileno);
    PyErr_Clear();
    if (Py_TYPE(probe) == socket_class && number >= 0
        && *(int *)((char *)probe + sizeof(PyObject)) == (int)number
        && *(int *)((char *)probe + expected + sizeof(int)) == SOCK_DGRAM) {
        fd_offset = (Py_ssize_t)sizeof(PyObject);
        family_offset = expected;
        type_offset = expected + (Py_ssize_t)sizeof(int);
    }
    PyObject *closed = PyObject_CallMethod(probe, "close", NULL);
    Py_XDECREF(closed);
    Py_DECREF(probe);
    PyErr_Clear();
    return 0;
}

static struct PyModuleDef sockio_module = {
    PyModuleDef_HEAD_INIT,
    "message_io.network.sockio",
    "Non-blocking socket calls made directly (the C twin of sockio.py).",
    -1,
    sockio_methods,
};

PyMODINIT_FUNC
PyInit_sockio(void)
{
    PyObject *module = PyModule_Create(&sockio_module);
    if (module == NULL) {
        return NULL;
    }
    if (find_fd_offset(module) < 0
        || PyModule_AddObjectRef(module, "COMPILED", Py_True) < 0
        || PyModule_AddObjectRef(module, "DIRECT", fd_offset ? Py_True : Py_False) < 0
        || PyModule_AddIntConstant(module, "GIL_LIMIT", GIL_LIMIT) < 0
        || PyModule_AddIntConstant(module, "BATCH", BATCH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
