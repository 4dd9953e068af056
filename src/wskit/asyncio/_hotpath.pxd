# Types for compiling _hotpath.py with Cython (pure-Python mode): the .py stays the source of
# truth and runs unchanged without Cython; this file only adds C types. With ``core`` typed as
# the core's extension type, the calls into it (its cpdef methods, see connection.pxd) are C
# calls; the front end's own attributes are public so the Python subclass reads them as slots.
cimport cython

from wskit.core.connection cimport Connection as CoreConnection


cdef class HotPath:
    cdef public CoreConnection core
    cdef public object transport
    cdef public object handler
    cdef public object loop
    cdef public object max_queue
    cdef public object close_timeout
    cdef public object _read_view
    cdef public object _messages
    cdef public object _recv_waiter
    cdef public bint _reading_paused
    cdef public bint _writing_paused
    cdef public list _held_events
    cdef public object _close_timer
    cdef public object _closed_event
    cdef public bint _batching
    cdef public bint _dispatching
    cdef public bint _flush_scheduled
    cdef public Py_ssize_t _deferred_size
    cdef public object _fragments_done
    cdef public object _hold_timer

    # C functions: called from this class only (Python code calls _process/_write_pending).
    @cython.locals(events=list, batching=bint, nested=bint, writing=bint)
    cdef _dispatch(self, list pending)
    @cython.locals(count=Py_ssize_t, index=Py_ssize_t)
    cdef _dispatch_events(self, list events, object handler)
    cdef _deliver(self, object message)
    cdef _hold(self, list rest)
    @cython.locals(data=list, size=Py_ssize_t)
    cdef _write_out(self)
