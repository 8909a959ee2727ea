# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=False
"""The per-message byte work in C: the NATS parser's scan, the protobuf
messages of a publish and an ack, the NATS ``PUB`` frame and the FILE
records. ``nss.hot.pure`` is the same in Python; ``tests/unit/test_hot.py``
holds both to identical bytes and callbacks.

Decoders handle the form clients send (known fields, right wire types,
valid UTF-8) and return None for anything else: the caller then takes the
protobuf library's path, so an odd message is judged exactly as before.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy
from cpython cimport array as carray
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from types import MemberDescriptorType as _MemberDescriptor

from nss.nats.parser import _bad, control, hmsg_args, msg_args, _reraise, MAX_CONTROL_LINE


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


# ------------------------------------------------------------------ helpers

cdef inline Py_ssize_t _varint_size(uint64_t v) noexcept:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline char* _put_varint(char* p, uint64_t v) noexcept:
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <char>v
    return p + 1


cdef inline int _get_varint(const unsigned char* p, Py_ssize_t n, Py_ssize_t* i,
                            uint64_t* out) noexcept:
    """0, or -1 when the varint is cut or longer than 10 bytes."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if i[0] >= n or shift > 63:
            return -1
        b = p[i[0]]
        i[0] += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return 0
        shift += 7


cdef inline char* _grow(bytearray buf, Py_ssize_t extra) except NULL:
    """Room for ``extra`` more bytes at the end of ``buf``; where they start."""
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, n + extra)
    return PyByteArray_AS_STRING(buf) + n


# ------------------------------------------------------------------ NATS parser

cdef inline Py_ssize_t _find_crlf(const char* p, Py_ssize_t pos, Py_ssize_t n) noexcept:
    cdef const char* q
    while pos < n:
        q = <const char*>memchr(p + pos, 10, n - pos)
        if q == NULL:
            return -1
        if q - p > pos and q[-1] == 13:
            return q - p - 1
        pos = q - p + 1
    return -1


cdef inline Py_ssize_t _token_end(const char* p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    while pos < end and p[pos] != 32:
        pos += 1
    return pos


cdef inline long long _digits(const char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """The number written in p[a:b], or -1 if it is not 1-18 plain digits."""
    cdef long long v = 0
    if b <= a or b - a > 18:
        return -1
    while a < b:
        if p[a] < 48 or p[a] > 57:
            return -1
        v = v * 10 + (p[a] - 48)
        a += 1
    return v


cdef class Parser:
    """``nss.nats.parser.Parser`` with its scan in C (same callbacks)."""

    cdef public object on_msg, on_hmsg, on_ping, on_pong, on_info, on_err, on_ok
    cdef public object on_callback_error
    cdef public dict handlers
    cdef bytearray _tail
    cdef Py_ssize_t _need

    def __init__(self, *, on_msg, on_hmsg, on_ping, on_pong, on_info, on_err,
                 on_ok=None, on_callback_error=None):
        self.on_msg = on_msg
        self.on_hmsg = on_hmsg
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.on_info = on_info
        self.on_err = on_err
        self.on_ok = on_ok if on_ok is not None else _noop
        self.on_callback_error = on_callback_error if on_callback_error is not None else _reraise
        self.handlers = {}
        self._tail = bytearray()
        self._need = 0

    @property
    def pending(self):
        return len(self._tail)

    def reset(self):
        del self._tail[:]
        self._need = 0

    def feed(self, data):
        cdef bytes buf
        cdef bytearray tail = self._tail
        if PyByteArray_GET_SIZE(tail):
            tail += data
            if PyByteArray_GET_SIZE(tail) < self._need:
                return
            buf = bytes(tail)
            del tail[:]
        elif type(data) is bytes:
            buf = <bytes>data
        else:
            buf = bytes(data)
        cdef const char* p = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, need = 0, i, a, b, c, d, start, end, k
        cdef long long sid, size
        cdef dict handlers = self.handlers
        cdef object h, subject, reply
        on_msg = self.on_msg
        try:
            while pos < n:
                i = _find_crlf(p, pos, n)
                if i < 0:
                    if n - pos > MAX_CONTROL_LINE:
                        raise _bad(buf, pos, n, "control line too long")
                    break
                if p[pos] == 77:
                    # the usual form: single spaces, plain numbers
                    sid = -1
                    a = pos + 4
                    b = _token_end(p, a, i)
                    c = _token_end(p, b + 1, i)
                    if b > a and c > b + 1 and c < i:
                        sid = _digits(p, b + 1, c)
                        d = _token_end(p, c + 1, i)
                        if d == i:
                            size = _digits(p, c + 1, i)
                            k = 0
                        else:
                            size = _digits(p, d + 1, i) if _token_end(p, d + 1, i) == i else -1
                            k = 1
                        if sid < 0 or size < 0 or (k and d <= c + 1) or p[pos + 3] != 32:
                            sid = -1
                    if sid >= 0:
                        # subject and reply made below, unless an ack takes the message
                        subject = None
                    else:
                        sid, subject, reply, size = msg_args(buf, pos, i)
                    start = i + 2
                    end = start + size
                    if end + 2 > n:
                        need = end + 2 - pos
                        break
                    pos = end + 2
                    h = handlers.get(sid)
                    if subject is None:
                        if type(h) is AckHandler:
                            try:
                                (<AckHandler>h)._take(<const unsigned char*>p + start, size)
                            except Exception as e:
                                self.on_callback_error(PyBytes_FromStringAndSize(p + a, b - a), e)
                            continue
                        subject = PyBytes_FromStringAndSize(p + a, b - a)
                        reply = PyBytes_FromStringAndSize(p + c + 1, d - c - 1) if k else b""
                    if h is None:
                        on_msg(sid, subject, reply, PyBytes_FromStringAndSize(p + start, size))
                    else:
                        # the publish callback is called in C (the ack one above),
                        # the rest as objects
                        try:
                            if type(h) is PublishFastPath:
                                (<PublishFastPath>h)._take(
                                    subject, reply, PyBytes_FromStringAndSize(p + start, size)
                                )
                            else:
                                h(subject, reply, PyBytes_FromStringAndSize(p + start, size))
                        except Exception as e:
                            self.on_callback_error(subject, e)
                elif p[pos] == 72 and buf.startswith(b"HMSG ", pos):
                    sid, subject, reply, c, size = hmsg_args(buf, pos, i)
                    start = i + 2
                    end = start + size
                    if end + 2 > n:
                        need = end + 2 - pos
                        break
                    pos = end + 2
                    self.on_hmsg(sid, subject, reply, buf[start:start + c], buf[start + c:end])
                else:
                    line = buf[pos:i]
                    pos = i + 2
                    control(self, line)
        finally:
            if pos < n:
                tail += buf[pos:]
            self._need = need


def _noop():
    pass


# ------------------------------------------------------------------ STAN protobufs

cdef inline object _utf8(const unsigned char* p, Py_ssize_t a, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>p + a, n, NULL)


def decode_pubmsg(bytes payload):
    """(clientID, guid, subject, reply, data, connID) of a PubMsg, or None."""
    return _decode_pubmsg(payload)


cdef object _decode_pubmsg(bytes payload):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload), i = 0, a
    cdef uint64_t tag, ln
    cdef object client_id = "", guid = "", subject = "", reply = ""
    cdef object data = b"", conn_id = b""
    try:
        while i < n:
            if _get_varint(p, n, &i, &tag) < 0 or (tag & 7) != 2:
                return None
            if _get_varint(p, n, &i, &ln) < 0 or ln > <uint64_t>(n - i):
                return None
            a = i
            i += <Py_ssize_t>ln
            tag >>= 3
            if tag == 1:
                client_id = _utf8(p, a, i - a)
            elif tag == 2:
                guid = _utf8(p, a, i - a)
            elif tag == 3:
                subject = _utf8(p, a, i - a)
            elif tag == 4:
                reply = _utf8(p, a, i - a)
            elif tag == 5:
                data = PyBytes_FromStringAndSize(<const char*>p + a, i - a)
            elif tag == 6:
                conn_id = PyBytes_FromStringAndSize(<const char*>p + a, i - a)
            elif tag != 10:
                return None
    except UnicodeDecodeError:
        return None
    return (client_id, guid, subject, reply, data, conn_id)


def decode_ack(bytes payload):
    """(subject, sequence) of an Ack, or None."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload), i = 0, a
    cdef uint64_t tag, v
    cdef object subject = ""
    cdef uint64_t seq = 0
    try:
        while i < n:
            if _get_varint(p, n, &i, &tag) < 0:
                return None
            if tag == 0x0A:
                if _get_varint(p, n, &i, &v) < 0 or v > <uint64_t>(n - i):
                    return None
                a = i
                i += <Py_ssize_t>v
                subject = _utf8(p, a, i - a)
            elif tag == 0x10:
                if _get_varint(p, n, &i, &seq) < 0:
                    return None
            else:
                return None
    except UnicodeDecodeError:
        return None
    return (subject, seq)


cdef inline char* _put_field(char* q, unsigned char tag, const char* s, Py_ssize_t n) noexcept:
    q[0] = <char>tag
    q = _put_varint(q + 1, <uint64_t>n)
    memcpy(q, s, n)
    return q + n


def encode_msgproto(uint64_t seq, str subject, str reply, bytes data, int64_t ts):
    """MsgProto{sequence, subject, reply, data, timestamp}, as protobuf
    serializes it (fields in number order, zero values left out)."""
    return _encode_msgproto(seq, subject, reply, data, ts)


cdef bytes _encode_msgproto(uint64_t seq, str subject, str reply, bytes data, int64_t ts):
    cdef Py_ssize_t ns, nr, nd = PyBytes_GET_SIZE(data)
    cdef const char* s = PyUnicode_AsUTF8AndSize(subject, &ns)
    cdef const char* r = PyUnicode_AsUTF8AndSize(reply, &nr)
    cdef Py_ssize_t size = 0
    if seq:
        size += 1 + _varint_size(seq)
    if ns:
        size += 1 + _varint_size(ns) + ns
    if nr:
        size += 1 + _varint_size(nr) + nr
    if nd:
        size += 1 + _varint_size(nd) + nd
    if ts:
        size += 1 + _varint_size(<uint64_t>ts)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* q = PyBytes_AS_STRING(out)
    if seq:
        q[0] = 0x08
        q = _put_varint(q + 1, seq)
    if ns:
        q = _put_field(q, 0x12, s, ns)
    if nr:
        q = _put_field(q, 0x1A, r, nr)
    if nd:
        q = _put_field(q, 0x22, PyBytes_AS_STRING(data), nd)
    if ts:
        q[0] = 0x28
        q = _put_varint(q + 1, <uint64_t>ts)
    return out


def encode_puback(str guid, str error=""):
    """PubAck{guid, error}."""
    cdef Py_ssize_t ng, ne
    cdef const char* g = PyUnicode_AsUTF8AndSize(guid, &ng)
    cdef const char* e = PyUnicode_AsUTF8AndSize(error, &ne)
    cdef Py_ssize_t size = 0
    if ng:
        size += 1 + _varint_size(ng) + ng
    if ne:
        size += 1 + _varint_size(ne) + ne
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* q = PyBytes_AS_STRING(out)
    if ng:
        q = _put_field(q, 0x0A, g, ng)
    if ne:
        q = _put_field(q, 0x12, e, ne)
    return out


# ------------------------------------------------------------------ NATS PUB

cdef inline char* _put_dec(char* q, Py_ssize_t v) noexcept:
    cdef char tmp[24]
    cdef int k = 0
    if v == 0:
        q[0] = 48
        return q + 1
    while v > 0:
        tmp[k] = <char>(48 + v % 10)
        v //= 10
        k += 1
    while k > 0:
        k -= 1
        q[0] = tmp[k]
        q += 1
    return q


cdef inline Py_ssize_t _dec_len(Py_ssize_t v) noexcept:
    cdef Py_ssize_t k = 1
    while v >= 10:
        v //= 10
        k += 1
    return k


cdef inline char* _put_pub_line(char* q, const char* s, Py_ssize_t ns, const char* r,
                                Py_ssize_t nr, Py_ssize_t npl) noexcept:
    """``PUB <subject> [reply] <size>\\r\\n`` at ``q``."""
    memcpy(q, b"PUB ", 4)
    q += 4
    memcpy(q, s, ns)
    q += ns
    q[0] = 32
    q += 1
    if nr:
        memcpy(q, r, nr)
        q += nr
        q[0] = 32
        q += 1
    q = _put_dec(q, npl)
    q[0] = 13
    q[1] = 10
    return q + 2


cdef inline Py_ssize_t _pub_size(Py_ssize_t ns, Py_ssize_t nr, Py_ssize_t npl) noexcept:
    return 4 + ns + 1 + (nr + 1 if nr else 0) + _dec_len(npl) + 2 + npl + 2


def append_pub(bytearray buf, str subject, str reply, bytes payload):
    """``PUB <subject> [reply] <size>\\r\\n<payload>\\r\\n`` at the end of buf."""
    cdef Py_ssize_t ns, nr, npl = PyBytes_GET_SIZE(payload)
    cdef const char* s = PyUnicode_AsUTF8AndSize(subject, &ns)
    cdef const char* r = PyUnicode_AsUTF8AndSize(reply, &nr)
    cdef char* q = _grow(buf, _pub_size(ns, nr, npl))
    q = _put_pub_line(q, s, ns, r, nr, npl)
    memcpy(q, PyBytes_AS_STRING(payload), npl)
    q[npl] = 13
    q[npl + 1] = 10


def append_pubs(bytearray buf, str subject, list payloads, Py_ssize_t max_payload):
    """A PUB of each payload to ``subject``, or none at all (False) when one
    is over ``max_payload``."""
    cdef object p
    cdef Py_ssize_t ns, npl, total = 0
    cdef const char* s = PyUnicode_AsUTF8AndSize(subject, &ns)
    for p in payloads:
        npl = PyBytes_GET_SIZE(<bytes?>p)
        if npl > max_payload:
            return False
        total += _pub_size(ns, 0, npl)
    cdef char* q = _grow(buf, total)
    for p in payloads:
        npl = PyBytes_GET_SIZE(<bytes>p)
        q = _put_pub_line(q, s, ns, NULL, 0, npl)
        memcpy(q, PyBytes_AS_STRING(<bytes>p), npl)
        q[npl] = 13
        q[npl + 1] = 10
        q += npl + 2
    return True


# ------------------------------------------------------------------ FILE records

# CRC-32 of Go's crc32.MakeTable(poly) (reflected), slicing by 8: one table
# set, for the polynomial last asked for (a server uses one).
cdef uint32_t _crc_tab[8][256]
cdef uint32_t _crc_poly = 0


cdef void _crc_init(uint32_t poly) noexcept:
    global _crc_poly
    cdef uint32_t c
    cdef int i, j
    for i in range(256):
        c = i
        for j in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        _crc_tab[0][i] = c
    for i in range(256):
        c = _crc_tab[0][i]
        for j in range(1, 8):
            c = _crc_tab[0][c & 0xFF] ^ (c >> 8)
            _crc_tab[j][i] = c
    _crc_poly = poly


cdef uint32_t _crc(uint32_t poly, const unsigned char* p, Py_ssize_t n) noexcept:
    if poly != _crc_poly:
        _crc_init(poly)
    cdef uint32_t c = 0xFFFFFFFF
    cdef uint32_t lo, hi
    while n >= 8:
        lo = c ^ (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        hi = <uint32_t>p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        c = (_crc_tab[7][lo & 0xFF] ^ _crc_tab[6][(lo >> 8) & 0xFF]
             ^ _crc_tab[5][(lo >> 16) & 0xFF] ^ _crc_tab[4][lo >> 24]
             ^ _crc_tab[3][hi & 0xFF] ^ _crc_tab[2][(hi >> 8) & 0xFF]
             ^ _crc_tab[1][(hi >> 16) & 0xFF] ^ _crc_tab[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        c = _crc_tab[0][(c ^ p[0]) & 0xFF] ^ (c >> 8)
        p += 1
        n -= 1
    return c ^ 0xFFFFFFFF


def crc32(const unsigned char[:] data, uint32_t poly):
    """CRC-32 of ``data`` with Go's table for ``poly``."""
    if data.shape[0] == 0:
        return 0
    return _crc(poly, &data[0], data.shape[0])


cdef inline char* _u32(char* q, uint32_t v) noexcept:
    q[0] = <char>(v & 0xFF)
    q[1] = <char>((v >> 8) & 0xFF)
    q[2] = <char>((v >> 16) & 0xFF)
    q[3] = <char>(v >> 24)
    return q + 4


cdef inline char* _u64(char* q, uint64_t v) noexcept:
    q = _u32(q, <uint32_t>(v & 0xFFFFFFFF))
    return _u32(q, <uint32_t>(v >> 32))


def append_msg_record(bytearray wbuf, bytearray ibuf, uint64_t seq, uint64_t offset,
                      int64_t ts, bytes data, uint32_t poly):
    """A message's ``.dat`` record (size, CRC, MsgProto) onto ``wbuf`` and
    its 32-byte index record (seq, offset, timestamp, size, CRC) onto ``ibuf``."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef char* q = _grow(wbuf, 8 + n)
    q = _u32(q, <uint32_t>n)
    q = _u32(q, _crc(poly, d, n))
    memcpy(q, d, n)
    q = _grow(ibuf, 32)
    cdef char* body = q
    q = _u64(q, seq)
    q = _u64(q, offset)
    q = _u64(q, <uint64_t>ts)
    q = _u32(q, <uint32_t>n)
    _u32(q, _crc(poly, <const unsigned char*>body, 28))


def append_msg_records(bytearray wbuf, bytearray ibuf, uint64_t first, uint64_t offset,
                       tss, list datas, uint32_t poly):
    """``append_msg_record`` for messages ``first``, ``first + 1``, ... written
    one after the other from ``offset``; their payload bytes in all.
    ``tss``: the timestamps, an ``array('q')`` (as a batch keeps them) or a
    list."""
    cdef Py_ssize_t k, n = len(datas), total = 0, size
    if len(tss) != n:
        raise ValueError("as many timestamps as messages")
    cdef carray.array ta
    if type(tss) is carray.array and (<carray.array>tss).ob_descr.typecode == b"q":
        ta = <carray.array>tss
    else:  # converted first: a bad value raises before a byte is added
        ta = carray.array("q", tss)
    cdef long long* tv = ta.data.as_longlongs
    # every payload checked before a byte is added: no half record
    for k in range(n):
        total += PyBytes_GET_SIZE(<bytes?>datas[k])
    cdef char* q = _grow(wbuf, 8 * n + total)
    cdef char* x = _grow(ibuf, 32 * n)
    cdef char* body
    cdef const unsigned char* d
    for k in range(n):
        data = <bytes>datas[k]
        size = PyBytes_GET_SIZE(data)
        d = <const unsigned char*>PyBytes_AS_STRING(data)
        q = _u32(q, <uint32_t>size)
        q = _u32(q, _crc(poly, d, size))
        memcpy(q, d, size)
        q += size
        body = x
        x = _u64(x, first + <uint64_t>k)
        x = _u64(x, offset)
        x = _u64(x, <uint64_t>tv[k])
        x = _u32(x, <uint32_t>size)
        x = _u32(x, _crc(poly, <const unsigned char*>body, 28))
        offset += 8 + <uint64_t>size
    return total


def sub_record(int rtype, uint64_t sub_id, uint64_t seq, uint32_t poly):
    """A ``subs.dat`` record of type ``rtype`` holding SubStateUpdate{ID, seqno}
    (zero fields left out, as gogo-protobuf writes them)."""
    cdef char rec[32]
    cdef Py_ssize_t n = _put_sub_record(rec, rtype, sub_id, seq, poly) - rec
    return PyBytes_FromStringAndSize(rec, n)


cdef char* _put_sub_record(char* o, int rtype, uint64_t sub_id, uint64_t seq, uint32_t poly) noexcept:
    cdef char payload[24]
    cdef char* q = payload
    if sub_id:
        q[0] = 0x08
        q = _put_varint(q + 1, sub_id)
    if seq:
        q[0] = 0x10
        q = _put_varint(q + 1, seq)
    cdef Py_ssize_t n = q - payload
    o = _u32(o, (<uint32_t>rtype << 24) | <uint32_t>n)
    o = _u32(o, _crc(poly, <const unsigned char*>payload, n))
    memcpy(o, payload, n)
    return o + n


def append_sub_ops(
    bytearray buf, list ops, bytearray kinds, int msg_type, int ack_type, uint32_t poly
):
    """The ``subs.dat`` records of noted operations ``[sub ID, seq, ...]``
    onto ``buf``: per pair, a pending record where ``kinds`` holds 0, an ack
    record where it holds 1; how many were acks."""
    cdef Py_ssize_t i, n = len(ops), acks = 0
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    cdef uint64_t sid, seq
    cdef const unsigned char* k = <const unsigned char*>PyByteArray_AS_STRING(kinds)
    if n % 2 or PyByteArray_GET_SIZE(kinds) != n // 2:
        raise ValueError("ops holds pairs, and kinds one byte per pair")
    cdef char* q0 = _grow(buf, (n // 2) * 32)
    cdef char* q = q0
    try:
        for i in range(0, n, 2):
            sid = ops[i]
            seq = ops[i + 1]
            if k[i // 2]:
                q = _put_sub_record(q, ack_type, sid, seq, poly)
                acks += 1
            else:
                q = _put_sub_record(q, msg_type, sid, seq, poly)
    except BaseException:
        PyByteArray_Resize(buf, start)  # a value that is no uint64: buf as it was
        raise
    PyByteArray_Resize(buf, start + (q - q0))
    return acks


# ------------------------------------------------------------------ PubAcks

cdef class AckNoter:
    """A FILE subscription store's ``ack_seq_pending`` (see the Python twin);
    DirectBatch calls ``note`` in C."""

    cdef readonly list ops
    cdef readonly bytearray kinds
    cdef readonly dict pending
    cdef readonly object encode
    cdef readonly Py_ssize_t limit

    def __init__(
        self, list ops not None, bytearray kinds not None, dict pending not None, encode,
        Py_ssize_t limit
    ):
        self.ops = ops
        self.kinds = kinds
        self.pending = pending
        self.encode = encode
        self.limit = limit

    def __call__(self, sub_id, seq):
        self.note(sub_id, seq)

    cdef int note(self, sub_id, seq) except -1:
        cdef list ops = self.ops
        ops.append(sub_id)
        ops.append(seq)
        self.kinds.append(1)
        p = self.pending.get(sub_id)
        if p is not None:
            p.discard(seq)
        if len(ops) >= self.limit:
            self.encode()
        return 0


def append_pubacks(bytearray buf, list pubacks):
    """The PUB of every PubAck of a batch onto ``buf``. ``pubacks`` holds
    (reply, guid, part, error) as the publish batch keeps them: a part whose
    ``error`` is set fails every publish of it."""
    cdef tuple t
    cdef object error, part, last_part = None, last_error = ""
    cdef Py_ssize_t nr, ng, ne, npl
    cdef const char* r
    cdef const char* g
    cdef const char* e
    cdef char* q
    for t in pubacks:
        error = t[3]
        part = t[2]
        if not error and part is not None:
            if part is not last_part:  # a batch's PubAcks come part by part
                last_part, last_error = part, part.error
            error = last_error
        # PUB <reply> <n>\r\nPubAck{guid, error}\r\n, framed in place
        r = PyUnicode_AsUTF8AndSize(<str?>t[0], &nr)
        g = PyUnicode_AsUTF8AndSize(<str?>t[1], &ng)
        e = PyUnicode_AsUTF8AndSize(<str?>error, &ne)
        npl = (1 + _varint_size(ng) + ng if ng else 0) + (1 + _varint_size(ne) + ne if ne else 0)
        q = _grow(buf, _pub_size(nr, 0, npl))
        q = _put_pub_line(q, r, nr, NULL, 0, npl)
        if ng:
            q = _put_field(q, 0x0A, g, ng)
        if ne:
            q = _put_field(q, 0x12, e, ne)
        q[0] = 13
        q[1] = 10


# ------------------------------------------------------------------ acks

cdef class AckHandler:
    """The raw NATS callback of one subscription's ack inbox: an Ack of the
    subscription's channel goes to ``on_ack(sub, seq)``, one of another
    channel is dropped (as in Go), and what the fast decoder does not take
    goes to ``on_other(sub, payload)`` to be judged the long way."""

    cdef readonly object sub
    cdef readonly str channel
    cdef object on_ack, on_other
    cdef DirectBatch _direct

    def __init__(self, sub, str channel, on_ack, on_other):
        self.sub = sub
        self.channel = channel
        self.on_ack = on_ack
        self.on_other = on_other
        self._direct = _direct_of(on_ack) if getattr(on_ack, "__name__", "") == "ack" else None

    def __call__(self, subject, reply, bytes payload):
        self._take(<const unsigned char*>PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))

    cdef int _take(self, const unsigned char* p, Py_ssize_t n) except -1:
        """The Ack in ``p[:n]`` (the parser's buffer: no bytes object is
        made unless the long way needs one)."""
        cdef Py_ssize_t i = 0, a = 0, ln = 0
        cdef uint64_t tag, v, seq = 0
        cdef Py_ssize_t nc
        cdef const char* c
        while i < n:
            if _get_varint(p, n, &i, &tag) < 0:
                return self._other(p, n)
            if tag == 0x0A:
                if _get_varint(p, n, &i, &v) < 0 or v > <uint64_t>(n - i):
                    return self._other(p, n)
                a = i
                ln = <Py_ssize_t>v
                i += ln
            elif tag == 0x10:
                if _get_varint(p, n, &i, &seq) < 0:
                    return self._other(p, n)
            else:
                return self._other(p, n)
        c = PyUnicode_AsUTF8AndSize(self.channel, &nc)
        if nc != ln or (ln and memcmp(c, p + a, ln) != 0):
            # another channel, or a name that is not valid UTF-8: the long way
            # tells them apart (it logs the second)
            return self._other(p, n)
        if self._direct is not None:
            self._direct._ack(self.sub, seq)
        else:
            self.on_ack(self.sub, seq)
        return 0

    cdef int _other(self, const unsigned char* p, Py_ssize_t n) except -1:
        self.on_other(self.sub, PyBytes_FromStringAndSize(<const char*>p, n))
        return 0


# ------------------------------------------------------------------ publishes

cdef class PublishFastPath:
    """The raw NATS callback of the publish subject. The usual publish (a
    client known by its connID, a guid, a channel name already seen valid)
    is counted and goes to ``publish(fields, reply)``, the I/O path;
    everything else goes to ``other(subject, reply, payload)``, the Python
    handler, which decides as it always did (and counts through
    ``in_msgs``/``in_bytes`` here)."""

    raw = True
    cdef dict by_conn
    cdef set valid
    cdef object publish, other
    cdef DirectBatch _direct
    cdef public long long in_msgs
    cdef public long long in_bytes

    def __init__(self, dict by_conn, set valid, publish, other):
        self.by_conn = by_conn
        self.valid = valid
        self.publish = publish
        self.other = other
        self._direct = _direct_of(publish) if getattr(publish, "__name__", "") == "publish" else None
        self.in_msgs = 0
        self.in_bytes = 0

    def __call__(self, subject, bytes reply, bytes payload):
        self._take(subject, reply, payload)

    cdef int _take(self, subject, bytes reply, bytes payload) except -1:
        cdef object pm = _decode_pubmsg(payload)
        cdef tuple t
        if pm is not None:
            t = <tuple>pm
            conn_id = t[5]
            if t[1] and conn_id and t[2] in self.valid and conn_id in self.by_conn:
                self.in_msgs += 1
                self.in_bytes += PyBytes_GET_SIZE(payload)
                if self._direct is not None:
                    self._direct._publish(t, reply.decode() if reply else "")
                else:
                    self.publish(pm, reply.decode() if reply else "")
                return 0
        self.other(subject, reply, payload)
        return 0


# ------------------------------------------------------------------ the batch

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef Py_ssize_t _slot(type t, str name) except -1:
    """Where an instance of ``t`` keeps its ``__slots__`` entry ``name``
    (TypeError when that is no slot).

    Read from C, an attribute takes the generic lookup (the type's dict, the
    descriptor, its getter): around a hundred instructions each, a fifth of
    the server's per-message instructions before the batch's classes were
    read this way. With the offset, learnt once per class, it is a load."""
    d = getattr(t, name, None)
    if type(d) is not _MemberDescriptor:
        raise TypeError(f"{t.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*><PyObject*>d).d_member.offset


cdef list _slots(type t, tuple names):
    """The offsets of ``names`` in ``t``, or None when one is no slot (an
    object of that class goes the long way)."""
    try:
        return [_slot(t, n) for n in names]
    except TypeError:
        return None


cdef inline object _get(object o, Py_ssize_t off):
    cdef PyObject* v = (<PyObject**>((<char*><PyObject*>o) + off))[0]
    if v == NULL:
        raise AttributeError("slot read before it was set")
    return <object>v


cdef inline void _put(object o, Py_ssize_t off, object v) noexcept:
    cdef PyObject** p = <PyObject**>((<char*><PyObject*>o) + off)
    cdef PyObject* old = p[0]
    Py_INCREF(v)
    p[0] = <PyObject*>v
    Py_XDECREF(old)


cdef inline int64_t _time_ns() noexcept:
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return <int64_t>t.tv_sec * 1000000000 + t.tv_nsec


cdef class DirectBatch:
    """Publishes and acks straight into the publish batch while the I/O task
    is parked on an empty queue: a publish to a channel the batch already
    holds, and the ack of a message pending on a plain subscription, done as
    ``PublishBatch.add_publish``, ``PublishBatch.add_ack`` and
    ``Deliverer.ack`` would. Anything else goes to ``io.publish`` or
    ``io.ack``, which decide as they always did: a channel new to the batch,
    a payload over the limit, a queue member, an unknown
    sequence, a refusing store, a busy queue. (The Python twin sends
    everything there.)

    The attributes of the I/O path, the batch, the channel, its part and the
    subscription are read and written at their slots' offsets (``_slot``),
    learnt from the first object of each class; an object of another class
    goes the long way."""

    cdef readonly object io, batch
    cdef bint _plain
    cdef Py_ssize_t o_open, o_refusal, o_wake
    cdef Py_ssize_t o_subjects, o_pubacks, o_acked, o_to_deliver, o_max_payload
    cdef type _ch_t, _part_t, _sub_t
    cdef Py_ssize_t o_next_seq, o_last_ts, o_subs_store
    cdef Py_ssize_t o_count, o_tss, o_datas
    cdef Py_ssize_t o_group, o_pending, o_channel, o_redeliveries, o_stalled
    cdef Py_ssize_t o_max_inflight, o_id

    def __init__(self, io):
        self.io = io
        self.batch = io.batch
        io_offs = _slots(type(io), ("_open", "refusal", "_wake"))
        batch_offs = _slots(
            type(self.batch), ("_subjects", "_pubacks", "_acked", "_to_deliver", "max_payload")
        )
        if io_offs is None or batch_offs is None:
            self._plain = True  # not the server's classes: everything the long way
            return
        self.o_open, self.o_refusal, self.o_wake = io_offs
        (self.o_subjects, self.o_pubacks, self.o_acked, self.o_to_deliver,
         self.o_max_payload) = batch_offs

    cdef bint _know_channel(self, ch) except -1:
        t = type(ch)
        if t is not self._ch_t:
            offs = _slots(t, ("next_seq", "last_ts", "subs_store"))
            if offs is None:
                return False
            self.o_next_seq, self.o_last_ts, self.o_subs_store = offs
            self._ch_t = t
        return True

    cdef bint _know_part(self, part) except -1:
        t = type(part)
        if t is not self._part_t:
            offs = _slots(t, ("count", "tss", "datas"))
            if offs is None:
                return False
            self.o_count, self.o_tss, self.o_datas = offs
            self._part_t = t
        return True

    cdef bint _know_sub(self, sub) except -1:
        t = type(sub)
        if t is not self._sub_t:
            offs = _slots(t, (
                "group", "pending", "channel", "redeliveries", "stalled", "max_inflight", "id"
            ))
            if offs is None:
                return False
            (self.o_group, self.o_pending, self.o_channel, self.o_redeliveries, self.o_stalled,
             self.o_max_inflight, self.o_id) = offs
            self._sub_t = t
        return True

    cdef inline bint _parked(self) except -1:
        """The I/O task waits on an empty queue and the batch takes more."""
        cdef Py_ssize_t n = _get(self.io, self.o_open)
        return n > 0

    cdef int _took(self) except -1:
        """One more publish or ack went into the batch: wake the task."""
        io = self.io
        cdef Py_ssize_t n = _get(io, self.o_open)
        _put(io, self.o_open, n - 1)
        if _get(io, self.o_wake) is not None:
            io._signal()
        return 0

    def publish(self, tuple pm, str reply):
        self._publish(pm, reply)

    cdef int _publish(self, tuple pm, str reply) except -1:
        if (
            not self._plain
            and self._parked()
            and _get(self.io, self.o_refusal) is None
            and self._stage(pm, reply)
        ):
            return self._took()
        self.io.publish(pm, reply)
        return 0

    cdef bint _stage(self, tuple pm, str reply) except -1:
        batch = self.batch
        cdef str subject = pm[2]
        known = (<dict>_get(batch, self.o_subjects)).get(subject)
        if known is None:
            return False
        ch = (<tuple>known)[0]
        part = (<tuple>known)[1]
        if not (self._know_channel(ch) and self._know_part(part)):
            return False
        seq = _get(ch, self.o_next_seq)
        cdef int64_t last_ts = _get(ch, self.o_last_ts)
        cdef int64_t ts = _time_ns()
        if ts < last_ts:
            ts = last_ts
        cdef bytes encoded = _encode_msgproto(seq, subject, pm[3], pm[4], ts)
        cdef Py_ssize_t max_payload = _get(batch, self.o_max_payload)
        if PyBytes_GET_SIZE(encoded) > max_payload:
            return False
        tss = _get(part, self.o_tss)
        if type(tss) is not carray.array or (<carray.array>tss).ob_descr.typecode != b"q":
            return False
        cdef Py_ssize_t count = _get(part, self.o_count)
        _put(part, self.o_count, count + 1)
        if reply:
            (<list>_get(batch, self.o_pubacks)).append((reply, pm[1], part, ""))
        cdef Py_ssize_t k = len(<carray.array>tss)
        carray.resize_smart(<carray.array>tss, k + 1)
        (<carray.array>tss).data.as_longlongs[k] = ts
        (<list>_get(part, self.o_datas)).append(encoded)
        _put(ch, self.o_next_seq, seq + 1)
        _put(ch, self.o_last_ts, ts)
        return True

    def ack(self, sub, seq):
        self._ack(sub, seq)

    cdef int _ack(self, sub, seq) except -1:
        cdef dict pending
        if (
            self._plain
            or not self._parked()
            or not self._know_sub(sub)
            or _get(sub, self.o_group) is not None
        ):
            self.io.ack(sub, seq)
            return 0
        pending = <dict>_get(sub, self.o_pending)
        ch = _get(sub, self.o_channel)
        if seq not in pending or not self._know_channel(ch):
            self.io.ack(sub, seq)
            return 0
        del pending[seq]
        subs_store = _get(ch, self.o_subs_store)
        if subs_store.tracks_pending:
            note = subs_store.ack_seq_pending
            if type(note) is AckNoter:
                (<AckNoter>note).note(_get(sub, self.o_id), seq)
            else:
                note(_get(sub, self.o_id), seq)
        (<dict>_get(sub, self.o_redeliveries)).pop(seq, None)
        if not pending:
            sub.cancel_timer()
        batch = self.batch
        if _get(sub, self.o_stalled) and len(pending) < _get(sub, self.o_max_inflight):
            _put(sub, self.o_stalled, False)
            (<dict>_get(batch, self.o_to_deliver))[sub] = None
        (<dict>_get(batch, self.o_acked))[ch] = None
        return self._took()


cdef DirectBatch _direct_of(fn):
    """The DirectBatch whose ``publish`` or ``ack`` ``fn`` is (bound), else
    None: the fast callbacks then call its C entry point, not the method."""
    target = getattr(fn, "__self__", None)
    if type(target) is DirectBatch:
        return <DirectBatch>target
    return None


def send_span(deliverer, sub, msgs, uint64_t seq, uint64_t last):
    """Send a plain subscription the stored messages ``seq``..``last`` it
    has room for (MaxInFlight), looked up first, then published in one call
    and recorded pending (see the Python twin)."""
    lookup_many = msgs.lookup_many
    cdef dict pending = sub.pending
    cdef Py_ssize_t room = <Py_ssize_t>sub.max_inflight - len(pending)
    cdef uint64_t last_sent = sub.last_sent
    cdef list datas = []
    cdef list new = []
    cdef list span
    cdef bint stalled = False
    cdef Py_ssize_t nbytes = 0, i
    cdef uint64_t hi
    while seq <= last:
        if room <= 0:
            stalled = True
            break
        hi = seq + <uint64_t>room - 1
        if hi > last:
            hi = last
        span = lookup_many(seq, hi)
        for i in range(len(span)):
            data = span[i]
            if data is not None:
                key = seq
                datas.append(data)
                nbytes += PyBytes_GET_SIZE(<bytes>data)
                if key not in pending:
                    new.append(key)
                    if seq > last_sent:
                        last_sent = seq
                    room -= 1
                if room <= 0:
                    stalled = True
                    break
            elif seq > last_sent:
                last_sent = seq
            seq += 1
        if stalled:
            break
    if datas:
        deliverer.publish_many(sub.inbox, datas)
        deliverer.out_msgs += len(datas)
        deliverer.out_bytes += nbytes
    cdef timespec t
    if new:
        ack_wait = sub.ack_wait
        clock_gettime(CLOCK_REALTIME, &t)
        deadline = (<double>t.tv_sec + <double>t.tv_nsec * 1e-9) + ack_wait
        subs_store = sub.channel.subs_store
        if subs_store.tracks_pending:
            subs_store.add_seqs_pending(sub.id, new)
        for key in new:
            pending[key] = deadline
        if sub.timer is None:
            deliverer._arm(sub, ack_wait)
    sub.last_sent = last_sent
    if stalled:
        sub.stalled = True
