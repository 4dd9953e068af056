# Types for compiling connection.py with Cython (pure-Python mode): the .py stays the source
# of truth and runs unchanged without Cython; this file only adds C types.
cimport cython

# A C call from _queue_frame (frames.pxd declares it cpdef).
from wskit.core.frames cimport encode_header

# Imported from frames.py: held as C ints here (they are not re-exported by connection).
cdef int FIN, MAX_CONTROL_PAYLOAD, RSV1
cdef int OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG
# The State members as module constants (connection.py).
cdef object _CONNECTING, _OPEN, _CLOSING, _CLOSED

cpdef bytes as_bytes(object data)


cdef class Connection:
    cdef public object limits
    cdef public bint stream
    cdef public object fragment_size
    cdef public object state
    cdef public object subprotocol
    cdef public list extensions
    cdef public object cause
    cdef list _events
    cdef list _out
    cdef list _pongs
    cdef readonly bytearray _buf
    cdef bint _mask
    cdef int _rsv_allowed
    cdef bint _discard
    cdef bint _close_now
    cdef int _rx_opcode
    cdef list _rx_parts
    cdef list _rx_text
    cdef Py_ssize_t _rx_size
    cdef Py_ssize_t _rx_frames
    cdef readonly object _rx_buffer
    cdef bint _rx_compressed
    cdef object _rx_decoder
    cdef Py_ssize_t _partial_left
    cdef bytes _partial_key
    cdef Py_ssize_t _partial_offset
    cdef int _partial_fin
    cdef public bint hold_errors
    cdef public bint input_held
    cdef readonly int _tx_opcode
    cdef bint _tx_compress
    cdef public object close_rcvd
    cdef public object close_sent
    cdef public Py_ssize_t messages_received
    cdef public Py_ssize_t messages_sent
    cdef public long long bytes_received
    cdef public long long bytes_sent

    # The I/O contract, called once or more per message by the asyncio front end (compiled
    # too, asyncio/_hotpath.pxd): cpdef makes those C calls, Python callers see no change.
    cpdef receive_data(self, object data)
    cpdef list events(self)
    cpdef list data_to_send(self)
    cpdef bint should_close(self)
    cpdef bint close_expected(self)
    cpdef bint release_held(self)
    cpdef send_text(self, object data, bint fin=*, bint compress=*)
    cpdef send_binary(self, object data, bint fin=*, bint compress=*)

    cdef _send_data(self, int opcode, bytes payload, bint fin, bint compress)
    cdef _send_control(self, int opcode, object payload)
    @cython.locals(n=Py_ssize_t, header=bytes)
    cdef _queue_frame(self, int opcode, bytes payload, bint fin, int rsv)
    @cython.locals(start=Py_ssize_t)
    cdef _queue_masked_chunks(self, bytes header, bytes payload, bytes key)
    cdef _queue_close(self, bytes payload, object code, str reason)
    cdef _flush_pongs(self)
    cdef _receive_handshake(self)
    cdef _receive_buffered(self)
    @cython.locals(end=Py_ssize_t, pos=Py_ssize_t, messages_before=Py_ssize_t,
                   expect_mask=int, b0=int, b1=int, length=Py_ssize_t, head=Py_ssize_t,
                   opcode=int, fin=int, rsv=int, stop=Py_ssize_t, key=bytes, payload=bytes)
    cdef Py_ssize_t _receive_frames(self, object buf) except -1
    cdef object _check_control_header(self, int opcode, int fin, int rsv, Py_ssize_t length)
    cdef object _check_data_header(self, int opcode, int rsv, Py_ssize_t length,
                                   object max_frame, object max_message)
    cdef bint _rx_compressed_frame(self, int opcode, int rsv) except -1
    cdef _start_data_frame(self, int opcode, int rsv)
    @cython.locals(n=Py_ssize_t, offset=Py_ssize_t, key=bytes, payload=bytes)
    cdef Py_ssize_t _receive_partial(self, object buf, Py_ssize_t pos, Py_ssize_t end) except -1
    cdef _receive_data_frame(self, int opcode, int fin, int rsv, bytes payload)
    @cython.locals(size=Py_ssize_t)
    cdef _receive_payload(self, bytes payload, int fin)
    cdef _end_message(self)
    cdef _receive_control_frame(self, int opcode, bytes payload)
    cdef _fail_exc(self, object exc)
    cdef _transition(self, str what)
    cdef _finish(self, str what, object cause)
    cdef _set_extensions(self, list extensions)


cdef class ServerConnection(Connection):
    cdef object _accepted
    cdef public list available_subprotocols
    cdef public list extension_factories
    cdef public object request
    cdef public object response
    cdef public object select_subprotocol

    cdef _receive_handshake(self)


cdef class ClientConnection(Connection):
    cdef str _key
    cdef bint _request_sent
    cdef public list extension_factories
    cdef public list offered_subprotocols
    cdef public object request
    cdef public object response
    cdef public object wsuri

    cdef _receive_handshake(self)
