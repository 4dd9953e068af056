# Types for compiling frames.py with Cython (pure-Python mode); see connection.pxd.
cimport cython

@cython.locals(b0=int, mbit=int)
cpdef bytes encode_header(int opcode, Py_ssize_t length, bint fin=*, int rsv=*, bytes mask=*)

# The frame extensions see (wskit.core.extensions): an extension type, cheaper to create
# than a frozen dataclass (four per compressed message echoed).
cdef class Frame:
    cdef readonly int opcode
    cdef readonly bytes data
    cdef readonly bint fin
    cdef readonly int rsv
