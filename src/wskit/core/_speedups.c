/* Compiled hot path of the wskit core: payload masking (RFC 6455 5.3), whole frames in one
 * allocation, and message assembly.
 *
 * The pure-Python twins are wskit.core.frames.apply_mask_py, build_frame_py and
 * MessageBufferPy; each pair gives the same bytes for every input (masking keys aside:
 * tests/core/test_speedups.py checks it). wskit.core.frames picks these when they are built,
 * unless WSKIT_NO_EXTENSIONS is set.
 *
 * The XOR runs 8 bytes at a time on a 64-bit copy of the key; compilers vectorise the loop.
 * On x86-64 the loop is also compiled for AVX2 and picked at run time when the CPU has it
 * (MASK_KERNEL names the kernel in use). The GIL is released for large payloads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Payloads at least this large are masked or copied with the GIL released. */
#define NOGIL_THRESHOLD (64 * 1024)

/* XOR n bytes of src with the repeated key into dst; the one loop every kernel below runs. */
static inline __attribute__((always_inline)) void
xor_mask_loop(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const uint8_t key[4])
{
    uint32_t key32;
    uint64_t key64;
    Py_ssize_t i = 0;

    memcpy(&key32, key, 4);
    /* The key repeated twice, in memory order, whatever the byte order of the machine. */
    key64 = ((uint64_t)key32 << 32) | key32;
    for (; i + 8 <= n; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, src + i, 8);
        chunk ^= key64;
        memcpy(dst + i, &chunk, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

typedef void (*xor_mask_kernel)(const uint8_t *, uint8_t *, Py_ssize_t, const uint8_t[4]);

/* Built for the compiler's baseline (SSE2 on x86-64), so it runs everywhere. */
static void
xor_mask_portable(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const uint8_t key[4])
{
    xor_mask_loop(src, dst, n, key);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WSKIT_AVX2_KERNEL 1
/* The same loop compiled for AVX2 (32 bytes per step): about 1.4x the portable kernel on
 * payloads of 1 to 64 KiB that sit in cache; chosen at import when the CPU has AVX2. */
__attribute__((target("avx2"))) static void
xor_mask_avx2(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const uint8_t key[4])
{
    xor_mask_loop(src, dst, n, key);
}
#endif

/* The kernel in use (set once, when the module is loaded) and its name (MASK_KERNEL). */
static xor_mask_kernel xor_mask = xor_mask_portable;
static const char *xor_mask_name = "portable";

static void
choose_mask_kernel(void)
{
#ifdef WSKIT_AVX2_KERNEL
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        xor_mask = xor_mask_avx2;
        xor_mask_name = "avx2";
    }
#endif
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, /)\n--\n\n"
"XOR data with the repeated 4-byte mask (RFC 6455 5.3); return bytes.");

/* apply_mask() with a given kernel. */
static PyObject *
mask_with(xor_mask_kernel kernel, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len >= NOGIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        kernel(data.buf, (uint8_t *)PyBytes_AS_STRING(result), data.len, mask.buf);
        Py_END_ALLOW_THREADS
    }
    else {
        kernel(data.buf, (uint8_t *)PyBytes_AS_STRING(result), data.len, mask.buf);
    }
done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return mask_with(xor_mask, args, nargs);
}

PyDoc_STRVAR(apply_mask_portable_doc,
"_apply_mask_portable(data, mask, /)\n--\n\n"
"apply_mask() with the portable kernel whatever the CPU: lets tests compare the kernels.");

static PyObject *
apply_mask_portable(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return mask_with(xor_mask_portable, args, nargs);
}

/* ------------------------------------------------------------------ build_frame
 *
 * A whole frame (header, masking key for a client, payload) as one bytes object: one
 * allocation where building it from parts takes four or five. Clients draw their masking keys
 * from a pool of random bytes filled KEY_POOL_SIZE bytes at a time by os.urandom, the strong
 * source RFC 6455 10.3 asks for; each key is used once. The pool is process-wide: keys are
 * random whoever draws them, and the GIL serialises the draws.
 */

#define KEY_POOL_SIZE 1024

static uint8_t key_pool[KEY_POOL_SIZE];
static Py_ssize_t key_pool_left = 0;

static int
next_key(uint8_t key[4])
{
    if (key_pool_left < 4) {
        PyObject *os = PyImport_ImportModule("os");
        PyObject *fresh;

        if (os == NULL) {
            return -1;
        }
        fresh = PyObject_CallMethod(os, "urandom", "n", (Py_ssize_t)KEY_POOL_SIZE);
        Py_DECREF(os);
        if (fresh == NULL) {
            return -1;
        }
        if (!PyBytes_Check(fresh) || PyBytes_GET_SIZE(fresh) != KEY_POOL_SIZE) {
            Py_DECREF(fresh);
            PyErr_SetString(PyExc_RuntimeError, "os.urandom returned an unexpected value");
            return -1;
        }
        memcpy(key_pool, PyBytes_AS_STRING(fresh), KEY_POOL_SIZE);
        Py_DECREF(fresh);
        key_pool_left = KEY_POOL_SIZE;
    }
    key_pool_left -= 4;
    memcpy(key, key_pool + key_pool_left, 4);
    return 0;
}

PyDoc_STRVAR(reset_key_pool_doc,
"reset_key_pool()\n--\n\n"
"Forget the masking keys drawn so far: after fork(), so that parent and child never\n"
"use the same keys.");

static PyObject *
reset_key_pool(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    memset(key_pool, 0, sizeof(key_pool));
    key_pool_left = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(build_frame_doc,
"build_frame(first_byte, payload, mask, /)\n--\n\n"
"One frame as bytes: first_byte (FIN, RSV and opcode), the shortest length encoding\n"
"(RFC 6455 5.2) and the payload; with a true mask, a fresh masking key and the payload\n"
"masked with it (5.3).");

static PyObject *
build_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer payload;
    PyObject *result = NULL;
    long first;
    int mask;
    Py_ssize_t n, head;
    uint8_t *out;
    uint8_t key[4];

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build_frame() takes exactly 3 arguments");
        return NULL;
    }
    first = PyLong_AsLong(args[0]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (first < 0 || first > 255) {
        PyErr_SetString(PyExc_ValueError, "first_byte must be in 0..255");
        return NULL;
    }
    mask = PyObject_IsTrue(args[2]);
    if (mask < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    n = payload.len;
    head = (n < 126 ? 2 : n < 65536 ? 4 : 10) + (mask ? 4 : 0);
    if (mask && next_key(key) < 0) {
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, head + n);
    if (result == NULL) {
        goto done;
    }
    out = (uint8_t *)PyBytes_AS_STRING(result);
    out[0] = (uint8_t)first;
    if (n < 126) {
        out[1] = (uint8_t)n;
        out += 2;
    }
    else if (n < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        out += 4;
    }
    else {
        uint64_t length = (uint64_t)n;
        int i;

        out[1] = 127;
        for (i = 0; i < 8; i++) {
            out[2 + i] = (uint8_t)(length >> (8 * (7 - i)));
        }
        out += 10;
    }
    if (mask) {
        ((uint8_t *)PyBytes_AS_STRING(result))[1] |= 0x80;
        memcpy(out, key, 4);
        out += 4;
        if (n >= NOGIL_THRESHOLD) {
            Py_BEGIN_ALLOW_THREADS
            xor_mask(payload.buf, out, n, key);
            Py_END_ALLOW_THREADS
        }
        else {
            xor_mask(payload.buf, out, n, key);
        }
    }
    else if (n) {
        memcpy(out, payload.buf, n);
    }
done:
    PyBuffer_Release(&payload);
    return result;
}

/* ------------------------------------------------------------------ MessageBuffer
 *
 * One received message assembled in place: the connection creates it with the length its
 * frame header declared (after checking that length against the limits), then unmasks every
 * arriving piece of payload straight into the bytes object that finish() hands out. The
 * payload is copied once, from the receive buffer to its final place.
 *
 * The bytes object is created with PyBytes_FromStringAndSize(NULL, size) and stays private
 * until finish(): its contents are filled in before anyone sees it. finish() refuses until
 * every byte was written, so uninitialised memory never leaks out.
 */

typedef struct {
    PyObject_HEAD
    PyObject *data;        /* the private bytes object; NULL for size 0 and after finish() */
    Py_ssize_t size;       /* the message's length: what finish() returns */
    Py_ssize_t written;    /* bytes written so far, from the start */
    int finished;          /* finish() returned the bytes */
    int busy;              /* a write runs with the GIL released: every other call must wait */
} MessageBuffer;

static int
mb_usable(MessageBuffer *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "MessageBuffer is in use by another thread");
        return 0;
    }
    if (self->finished) {
        PyErr_SetString(PyExc_ValueError, "MessageBuffer is finished");
        return 0;
    }
    return 1;
}

static PyObject *
mb_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    MessageBuffer *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:MessageBuffer", kwlist, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must not be negative");
        return NULL;
    }
    self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = NULL;
    self->size = size;
    self->written = 0;
    self->finished = self->busy = 0;
    if (size > 0) {
        self->data = PyBytes_FromStringAndSize(NULL, size);
        if (self->data == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static void
mb_dealloc(MessageBuffer *self)
{
    PyTypeObject *type = Py_TYPE(self);

    Py_XDECREF(self->data);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyDoc_STRVAR(mb_write_doc,
"write(src, key=b'', key_offset=0, /)\n--\n\n"
"Append src, unmasked with the 4-byte key (RFC 6455 5.3) or copied as is when key is empty.\n"
"key_offset says how many payload bytes of the frame came before src, so the key lines up.\n"
"Raises ValueError if src does not fit in the bytes left.");

static PyObject *
mb_write(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer src, key = {0};
    Py_ssize_t key_offset = 0;
    PyObject *result = NULL;
    uint8_t *dst;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "write() takes from 1 to 3 arguments");
        return NULL;
    }
    if (nargs == 3) {
        key_offset = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
        if (key_offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (key_offset < 0) {
            PyErr_SetString(PyExc_ValueError, "key_offset must not be negative");
            return NULL;
        }
    }
    if (PyObject_GetBuffer(args[0], &src, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (nargs >= 2 && PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (key.len != 0 && key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "key must be empty or 4 bytes");
        goto done;
    }
    if (!mb_usable(self)) {
        goto done;
    }
    if (src.len > self->size - self->written) {
        PyErr_Format(PyExc_ValueError,
                     "%zd bytes do not fit: %zd of %zd bytes are left",
                     src.len, self->size - self->written, self->size);
        goto done;
    }
    if (src.len == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    dst = (uint8_t *)PyBytes_AS_STRING(self->data) + self->written;
    if (key.len == 4) {
        uint8_t rotated[4];
        const uint8_t *k = key.buf;
        int i;
        for (i = 0; i < 4; i++) {
            rotated[i] = k[(i + key_offset) & 3];
        }
        if (src.len >= NOGIL_THRESHOLD) {
            self->busy = 1;
            Py_BEGIN_ALLOW_THREADS
            xor_mask(src.buf, dst, src.len, rotated);
            Py_END_ALLOW_THREADS
            self->busy = 0;
        }
        else {
            xor_mask(src.buf, dst, src.len, rotated);
        }
    }
    else if (src.len >= NOGIL_THRESHOLD) {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, src.buf, src.len);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    else {
        memcpy(dst, src.buf, src.len);
    }
    self->written += src.len;
    result = Py_NewRef(Py_None);
done:
    if (key.obj != NULL) {
        PyBuffer_Release(&key);
    }
    PyBuffer_Release(&src);
    return result;
}

PyDoc_STRVAR(mb_finish_doc,
"finish()\n--\n\n"
"The assembled message as bytes, without a copy. Only once, and only when all size bytes\n"
"were written (ValueError otherwise); the buffer is unusable afterwards.");

static PyObject *
mb_finish(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result;

    if (!mb_usable(self)) {
        return NULL;
    }
    if (self->written != self->size) {
        PyErr_Format(PyExc_ValueError, "%zd of %zd bytes were written",
                     self->written, self->size);
        return NULL;
    }
    self->finished = 1;
    if (self->data == NULL) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    result = self->data;
    self->data = NULL;
    return result;
}

static PyObject *
mb_get_size(MessageBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->size);
}

static PyObject *
mb_get_written(MessageBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->written);
}

static PyMethodDef mb_methods[] = {
    {"write", (PyCFunction)(void (*)(void))mb_write, METH_FASTCALL, mb_write_doc},
    {"finish", (PyCFunction)mb_finish, METH_NOARGS, mb_finish_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mb_getset[] = {
    {"size", (getter)mb_get_size, NULL, "The message's length.", NULL},
    {"written", (getter)mb_get_written, NULL, "Bytes written so far.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(mb_doc,
"MessageBuffer(size)\n--\n\n"
"One received message of size bytes assembled in place: write() payload into it\n"
"(unmasking on the way), then finish() once for the bytes.");

static PyType_Slot mb_slots[] = {
    {Py_tp_doc, (void *)mb_doc},
    {Py_tp_new, mb_new},
    {Py_tp_dealloc, mb_dealloc},
    {Py_tp_methods, mb_methods},
    {Py_tp_getset, mb_getset},
    {0, NULL},
};

static PyType_Spec mb_spec = {
    "wskit.core._speedups.MessageBuffer",
    sizeof(MessageBuffer),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    mb_slots,
};

/* ------------------------------------------------------------------ module */

static int
speedups_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &mb_spec, NULL);
    PyObject *os, *reset, *result;
    int rc;

    if (type == NULL) {
        return -1;
    }
    choose_mask_kernel();
    if (PyModule_AddStringConstant(module, "MASK_KERNEL", xor_mask_name) < 0) {
        Py_DECREF(type);
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "MessageBuffer", type);
    Py_DECREF(type);
    if (rc < 0) {
        return rc;
    }
    /* A forked child must not hand out the keys its parent draws next (RFC 6455 5.3):
     * os.register_at_fork(after_in_child=reset_key_pool). */
    os = PyImport_ImportModule("os");
    if (os == NULL) {
        return -1;
    }
    reset = PyObject_GetAttrString(module, "reset_key_pool");
    if (reset == NULL) {
        Py_DECREF(os);
        return -1;
    }
    result = NULL;
    if (PyObject_HasAttrString(os, "register_at_fork")) {
        PyObject *args = PyTuple_New(0);
        PyObject *kwargs = Py_BuildValue("{s:O}", "after_in_child", reset);
        PyObject *register_at_fork = PyObject_GetAttrString(os, "register_at_fork");
        if (args != NULL && kwargs != NULL && register_at_fork != NULL) {
            result = PyObject_Call(register_at_fork, args, kwargs);
        }
        Py_XDECREF(register_at_fork);
        Py_XDECREF(kwargs);
        Py_XDECREF(args);
        if (result == NULL) {
            Py_DECREF(reset);
            Py_DECREF(os);
            return -1;
        }
        Py_DECREF(result);
    }
    Py_DECREF(reset);
    Py_DECREF(os);
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"_apply_mask_portable", (PyCFunction)(void (*)(void))apply_mask_portable, METH_FASTCALL,
     apply_mask_portable_doc},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL, build_frame_doc},
    {"reset_key_pool", reset_key_pool, METH_NOARGS, reset_key_pool_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wskit.core._speedups",
    "Compiled hot path of the wskit core (see wskit.core.frames).",
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
