# Types for compiling events.py with Cython (pure-Python mode): the hot events become
# extension types (cheaper to create than frozen dataclasses).
cdef class Text:
    cdef readonly str data
    cdef readonly bint final

cdef class Binary:
    cdef readonly bytes data
    cdef readonly bint final

cdef class Ping:
    cdef readonly bytes payload

cdef class Pong:
    cdef readonly bytes payload
