# Types for compiling frames.py with Cython (pure-Python mode); see connection.pxd.
cimport cython

@cython.locals(b0=int, mbit=int)
cpdef bytes encode_header(int opcode, Py_ssize_t length, bint fin=*, int rsv=*, bytes mask=*)
