"""A TLS client in C (OpenSSL over memory BIOs), shaped like ``ssl.SSLObject``.

``NativeTLSContext(ca_file, verify).wrap(server_hostname)`` gives a
``NativeTLSObject``: a drop-in for the part of ``ssl.SSLObject`` plus its two
``ssl.MemoryBIO`` s that a socket-less client uses. Ciphertext from the network
goes into ``obj.incoming.write(...)``, ciphertext to send comes out of
``obj.outgoing.read()``; ``do_handshake``, ``read``, ``write``, ``pending``,
``version`` and ``unwrap`` behave like the ``ssl`` module's and raise its
exceptions (``ssl.SSLWantReadError``, ``ssl.SSLZeroReturnError``,
``ssl.SSLEOFError``, ``ssl.SSLCertVerificationError``, ``ssl.SSLError``). One
difference: at the peer's close_notify, ``read`` raises ``ssl.SSLZeroReturnError``
(every time), where ``ssl.SSLObject.read`` returns ``b""`` until ``unwrap``.

What the ``ssl`` module cannot do is decrypt many connections in one call:
``obj.native_handle`` is the ``rtms_tls_conn *`` for ``lib.rtms_tls_decrypt_batch``,
which feeds and decrypts every connection of a sweep with the GIL released;
``decrypt_batch`` here is its convenience form.

Settings: TLS 1.2 minimum, OpenSSL's default ciphers; with ``verify`` the chain is
checked against ``ca_file`` (or the system's default CA paths) and the certificate
against ``server_hostname`` (a DNS name, sent as SNI, or an IP address).

``native_tls_available()`` is False when the extension was built without OpenSSL;
constructing a context then raises ``NativeTLSUnavailableError``. An object is
used by one thread at a time; a context may be shared.
"""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import Sequence
from typing import Any, NoReturn, overload

from rtms_fast.native import ffi, lib

__all__ = [
    "STATUS_CLOSED",
    "STATUS_ERROR",
    "STATUS_MORE",
    "STATUS_OK",
    "STATUS_OUTPUT_PENDING",
    "IncomingBIO",
    "NativeTLSContext",
    "NativeTLSObject",
    "NativeTLSUnavailableError",
    "OutgoingBIO",
    "decrypt_batch",
    "native_tls_available",
]

# rtms_tls_decrypt_batch status bits
STATUS_OK: int = lib.RTMS_TLS_STATUS_OK
STATUS_CLOSED: int = lib.RTMS_TLS_STATUS_CLOSED
STATUS_ERROR: int = lib.RTMS_TLS_STATUS_ERROR
STATUS_OUTPUT_PENDING: int = lib.RTMS_TLS_STATUS_OUTPUT_PENDING
STATUS_MORE: int = lib.RTMS_TLS_STATUS_MORE

# return codes of the single-connection calls
_OK: int = lib.RTMS_TLS_OK
_WANT_READ: int = lib.RTMS_TLS_WANT_READ
_CLOSED: int = lib.RTMS_TLS_CLOSED
_EOF: int = lib.RTMS_TLS_EOF
_ERR_CAP: int = lib.RTMS_TLS_ERR_CAP

# Scratch for reads: only the bytes C wrote are ever returned, so skip the zeroing.
_uninitialised = ffi.new_allocator(should_clear_after_alloc=False)
# Hot paths pass a ctype object (not a string to parse) and read results into annotated
# locals (not int(...)): a few tenths of a microsecond per call add up per message.
_U8 = ffi.typeof("uint8_t[]")


class NativeTLSUnavailableError(ssl.SSLError):
    """The extension was built without OpenSSL (see build.py)."""


def native_tls_available() -> bool:
    """True when the native extension was built with OpenSSL."""
    return bool(lib.rtms_tls_available())


def _text(p: Any) -> str:
    return "" if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


def _host_bytes(server_hostname: str) -> bytes:
    try:
        return server_hostname.encode("ascii")
    except UnicodeEncodeError:
        try:
            return server_hostname.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"invalid server_hostname {server_hostname!r}: {exc}") from None


class NativeTLSContext:
    """Client settings shared by many connections (an OpenSSL ``SSL_CTX``).

    ``ca_file``: PEM file of trusted CAs; ``None`` uses the system's default CA
    paths. ``verify=False`` accepts any certificate for any name (tests only).
    ``own_records``: after a TLS 1.3 handshake, decrypt received records with the own
    record layer (csrc/tls.c: one AEAD call per record, keys from OpenSSL's key log
    callback) instead of ``SSL_read``; OpenSSL still sends. ~4x less CPU per small
    record over many connections (``benchmarks/bench_tls.py``). TLS 1.2 always goes
    through OpenSSL. ``tls13_ciphersuites``: the TLS 1.3 suites offered, OpenSSL's
    syntax (default: OpenSSL's list).
    Raises ``ssl.SSLError`` (OpenSSL's reason in the message) when the CA file
    cannot be loaded or no suite is usable, ``NativeTLSUnavailableError`` without OpenSSL.
    """

    __slots__ = ("_ctx", "ca_file", "own_records", "verify")

    def __init__(self, ca_file: str | os.PathLike[str] | None = None, verify: bool = True,
                 *, own_records: bool = True, tls13_ciphersuites: str | None = None) -> None:
        self.ca_file = None if ca_file is None else os.fspath(ca_file)
        self.verify = bool(verify)
        self.own_records = bool(own_records)
        err = ffi.new("char[]", _ERR_CAP)
        path = ffi.NULL if self.ca_file is None else os.fsencode(self.ca_file)
        ctx = lib.rtms_tls_ctx_new(path, int(self.verify), err, _ERR_CAP)
        if ctx == ffi.NULL:
            cls = NativeTLSUnavailableError if not native_tls_available() else ssl.SSLError
            raise cls(ssl.SSL_ERROR_SSL, _text(err))
        self._ctx = ffi.gc(ctx, lib.rtms_tls_ctx_free)
        lib.rtms_tls_ctx_set_own_records(self._ctx, int(self.own_records))
        if tls13_ciphersuites is not None and lib.rtms_tls_ctx_set_ciphersuites(
                self._ctx, tls13_ciphersuites.encode("ascii"), err, _ERR_CAP) != _OK:
            raise ssl.SSLError(ssl.SSL_ERROR_SSL, _text(err))

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        """``ssl.CERT_REQUIRED`` when verifying, else ``ssl.CERT_NONE``."""
        return ssl.CERT_REQUIRED if self.verify else ssl.CERT_NONE

    @property
    def check_hostname(self) -> bool:
        """Whether the certificate must match ``server_hostname`` (same as ``verify``)."""
        return self.verify

    def wrap(self, server_hostname: str | None) -> NativeTLSObject:
        """A new client connection to ``server_hostname`` (a DNS name or an IP address)."""
        return NativeTLSObject(self, server_hostname)


class _BIO:
    """One direction of a connection's ciphertext, duck-typed like ``ssl.MemoryBIO``:
    ``pending`` counts its bytes, ``read`` takes them (the native functions per direction
    are class attributes)."""

    __slots__ = ("_conn",)
    _count: Any  # (conn) -> bytes waiting
    _take: Any  # (conn, out, cap) -> bytes moved to out

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @property
    def pending(self) -> int:
        n: int = type(self)._count(self._conn)
        return n

    def read(self, n: int = -1) -> bytes:
        """Take up to ``n`` bytes (all when negative)."""
        available = self.pending
        if n < 0 or n > available:
            n = available
        if n == 0:
            return b""
        buf = _uninitialised("uint8_t[]", n)
        got = int(type(self)._take(self._conn, buf, n))
        return ffi.buffer(buf, got)[:]  # type: ignore[no-any-return]


class IncomingBIO(_BIO):
    """Ciphertext from the network, not yet decrypted: ``write`` it here; ``read``
    withdraws fed bytes that TLS has not consumed."""

    __slots__ = ()
    _count = lib.rtms_tls_input_pending
    _take = lib.rtms_tls_take_input

    @property
    def eof(self) -> bool:
        """True once ``write_eof`` was called and every fed byte was consumed."""
        return bool(lib.rtms_tls_input_eof(self._conn)) and self.pending == 0

    def write(self, data: Any) -> int:
        """Append ciphertext (any bytes-like object); returns its length."""
        src = ffi.from_buffer(_U8, data)
        n = len(src)
        if lib.rtms_tls_feed(self._conn, src, n) < 0:
            if lib.rtms_tls_input_eof(self._conn):
                raise ssl.SSLError(ssl.SSL_ERROR_SSL, "cannot write() after write_eof()")
            raise MemoryError("cannot buffer TLS input")
        return n

    def write_eof(self) -> None:
        """The network stream ended: reads past the fed bytes report it (SSLEOFError
        unless a close_notify came first)."""
        lib.rtms_tls_feed_eof(self._conn)


class OutgoingBIO(_BIO):
    """Ciphertext to send to the network: ``read`` it from here."""

    __slots__ = ()
    _count = lib.rtms_tls_output_pending
    _take = lib.rtms_tls_take_output

    @property
    def eof(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        """Only TLS itself writes here."""
        raise io.UnsupportedOperation("the outgoing BIO is written by TLS only")


class NativeTLSObject:
    """One client TLS connection over memory BIOs; see the module docstring."""

    __slots__ = ("_conn", "_context", "incoming", "outgoing", "server_hostname")

    def __init__(self, context: NativeTLSContext, server_hostname: str | None) -> None:
        self._context = context  # the C side keeps its SSL_CTX alive too; this is for users
        self.server_hostname = server_hostname
        err = ffi.new("char[]", _ERR_CAP)
        host = ffi.NULL if server_hostname is None else _host_bytes(server_hostname)
        conn = lib.rtms_tls_conn_new(context._ctx, host, err, _ERR_CAP)
        if conn == ffi.NULL:
            message = _text(err)
            if "server_hostname" in message:
                raise ValueError(message)
            raise ssl.SSLError(ssl.SSL_ERROR_SSL, message)
        self._conn = ffi.gc(conn, lib.rtms_tls_conn_free)
        self.incoming = IncomingBIO(self._conn)
        self.outgoing = OutgoingBIO(self._conn)

    # ---- ssl.SSLObject's surface ------------------------------------------------------
    @property
    def context(self) -> NativeTLSContext:
        return self._context

    @property
    def server_side(self) -> bool:
        return False

    @property
    def native_handle(self) -> Any:
        """The ``rtms_tls_conn *`` (cffi cdata) for ``lib.rtms_tls_decrypt_batch``; valid
        while this object lives."""
        return self._conn

    def do_handshake(self) -> None:
        """Advance the handshake; ``ssl.SSLWantReadError`` while it needs input (send
        ``outgoing`` first)."""
        code = lib.rtms_tls_handshake(self._conn)
        if code != _OK:
            self._raise(code)

    @overload
    def read(self, n: int = ..., buffer: None = None) -> bytes: ...
    @overload
    def read(self, n: int, buffer: Any) -> int: ...

    def read(self, n: int = 1024, buffer: Any = None) -> bytes | int:
        """Up to ``n`` decrypted bytes; with a writable ``buffer``, decrypt into it and
        return the count (``n`` <= 0 or larger than the buffer means its size).
        ``ssl.SSLWantReadError`` when no complete record is buffered,
        ``ssl.SSLZeroReturnError`` after the peer's close_notify, ``ssl.SSLEOFError``
        when the input ended (``incoming.write_eof``) without one."""
        if buffer is not None:
            try:
                dst = ffi.from_buffer(_U8, buffer, True)  # writable
            except BufferError as exc:  # ssl.SSLObject says TypeError
                raise TypeError(f"buffer must be writable: {exc}") from None
            size = len(dst)
            if n <= 0 or n > size:
                n = size
            count: int = lib.rtms_tls_read(self._conn, dst, n)  # 0 when n is 0
            if count < 0:
                self._raise(count)
            return count
        if n < 0:
            raise ValueError("size should not be negative")
        if n == 0:
            return b""
        out = _uninitialised("uint8_t[]", n)
        got = lib.rtms_tls_read(self._conn, out, n)
        if got < 0:
            self._raise(got)
        return ffi.buffer(out, got)[:]  # type: ignore[no-any-return]

    def write(self, data: Any) -> int:
        """Encrypt ``data`` (bytes-like) into ``outgoing``; returns its length."""
        src = ffi.from_buffer(_U8, data)
        put: int = lib.rtms_tls_write(self._conn, src, len(src))
        if put < 0:
            self._raise(put)
        return put

    def pending(self) -> int:
        """Decrypted bytes buffered, readable without more input."""
        n: int = lib.rtms_tls_plain_pending(self._conn)
        return n

    def version(self) -> str | None:
        """``"TLSv1.3"`` / ``"TLSv1.2"`` once the handshake is done, else ``None``."""
        p = lib.rtms_tls_version(self._conn)
        return None if p == ffi.NULL else _text(p)

    def unwrap(self) -> None:
        """Send our close_notify (into ``outgoing``); ``ssl.SSLWantReadError`` until the
        peer's has been fed."""
        code = lib.rtms_tls_shutdown(self._conn)
        if code != _OK:
            self._raise(code)

    def selected_alpn_protocol(self) -> str | None:
        return None  # no ALPN is offered

    # ---- beyond ssl.SSLObject ---------------------------------------------------------
    def handshake_done(self) -> bool:
        return bool(lib.rtms_tls_handshake_done(self._conn))

    @property
    def own_records(self) -> bool:
        """True once received records are decrypted by the own TLS 1.3 record layer
        (decided when the handshake completes; see ``NativeTLSContext``)."""
        return bool(lib.rtms_tls_own_records(self._conn))

    def key_update(self, request_peer: bool = True) -> None:
        """TLS 1.3: queue a KeyUpdate into ``outgoing`` (``request_peer``: the peer
        updates its keys too). ``ssl.SSLError`` on TLS 1.2 or before the handshake."""
        if lib.rtms_tls_key_update(self._conn, int(request_peer)) != _OK:
            raise ssl.SSLError(ssl.SSL_ERROR_SSL, self.error_text())

    def error_text(self) -> str:
        """The last error OpenSSL reported for this connection ("" if none)."""
        return _text(lib.rtms_tls_conn_error(self._conn))

    def _raise(self, code: int) -> NoReturn:
        if code == _WANT_READ:
            raise ssl.SSLWantReadError(
                ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)"
            )
        if code == _CLOSED:
            raise ssl.SSLZeroReturnError(
                ssl.SSL_ERROR_ZERO_RETURN, "TLS/SSL connection has been closed (EOF)"
            )
        text = self.error_text()
        if code == _EOF:
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, text)
        verify_code = int(lib.rtms_tls_verify_error(self._conn))
        if verify_code:
            exc = ssl.SSLCertVerificationError(ssl.SSL_ERROR_SSL, text)
            exc.verify_code = verify_code
            exc.verify_message = _text(lib.rtms_tls_verify_message(self._conn))
            exc.library = "SSL"
            exc.reason = "CERTIFICATE_VERIFY_FAILED"
            raise exc
        raise ssl.SSLError(ssl.SSL_ERROR_SSL, text)


def decrypt_batch(
    objects: Sequence[NativeTLSObject], inputs: Sequence[Any], out: Any
) -> list[tuple[int, int, int]]:
    """Feed ``inputs[i]`` (bytes-like ciphertext) to ``objects[i]`` and decrypt every
    complete record of all of them into the writable buffer ``out``, in one C call.

    Returns ``(offset, length, status)`` per object: the plaintext is
    ``out[offset : offset + length]``, ``status`` is ``STATUS_*`` bits. With
    ``STATUS_MORE`` the buffer ran full: read the rest with ``objects[i].read``.
    """
    n = len(objects)
    if len(inputs) != n:
        raise ValueError(f"{n} objects but {len(inputs)} inputs")
    dst = ffi.from_buffer("uint8_t[]", out, require_writable=True)
    keep = [ffi.from_buffer("uint8_t[]", data) for data in inputs]  # alive until the call returns
    conns = ffi.new("rtms_tls_conn *[]", [o.native_handle for o in objects])
    srcs = ffi.new("const uint8_t *[]", keep)
    lens = ffi.new("size_t[]", [len(k) for k in keep])
    offsets = ffi.new("size_t[]", n)
    out_lens = ffi.new("size_t[]", n)
    status = ffi.new("int32_t[]", n)
    if n:
        lib.rtms_tls_decrypt_batch(conns, srcs, lens, n, dst, len(dst), offsets, out_lens,
                                   status)
    return [(int(offsets[i]), int(out_lens[i]), int(status[i])) for i in range(n)]
