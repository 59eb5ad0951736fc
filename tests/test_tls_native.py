"""The native TLS client (csrc/tls.c, rtms_fast.tls) against Python's own TLS server.

No sockets: the server is an ``ssl.SSLObject`` over ``MemoryBIO`` s and the bytes are
moved by hand, so every split, corruption and truncation is under the test's control.
Certificates come from ``trustme`` (a throwaway CA, a leaf for localhost and 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import random
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from rtms_fast import tls
from rtms_fast.native import ffi, lib
from rtms_fast.tls import (
    STATUS_CLOSED,
    STATUS_ERROR,
    STATUS_MORE,
    STATUS_OK,
    STATUS_OUTPUT_PENDING,
    NativeTLSContext,
    NativeTLSObject,
    decrypt_batch,
    native_tls_available,
)

ROOT = Path(__file__).resolve().parents[1]

requires_tls = pytest.mark.skipif(
    not native_tls_available(),
    reason="rtms_fast._native was built without OpenSSL "
    "(RTMS_NATIVE_NO_OPENSSL=1, or no usable OpenSSL headers/libraries)",
)

X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64


# ---- fixtures and the in-memory link (ca, ca_file: tests/conftest.py) -------------------
def _server_context(ca: trustme.CA, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


@pytest.fixture(scope="module")
def server13(ca: trustme.CA) -> ssl.SSLContext:
    return _server_context(ca)


@pytest.fixture(scope="module")
def server12(ca: trustme.CA) -> ssl.SSLContext:
    return _server_context(ca, ssl.TLSVersion.TLSv1_2)


@pytest.fixture(scope="module", params=["TLSv1.3", "TLSv1.2"])
def server(request: pytest.FixtureRequest, server13: ssl.SSLContext,
           server12: ssl.SSLContext) -> ssl.SSLContext:
    return server13 if request.param == "TLSv1.3" else server12


@pytest.fixture(scope="module", params=["own-records", "openssl-records"])
def client(request: pytest.FixtureRequest, ca_file: str) -> NativeTLSContext:
    """Every test runs on both receive paths: the own TLS 1.3 record layer and
    OpenSSL's SSL_read (TLS 1.2 takes the latter either way)."""
    if not native_tls_available():
        pytest.skip("no OpenSSL in this build")
    return NativeTLSContext(ca_file, own_records=request.param == "own-records")


class Link:
    """A native client and a Python TLS server joined by hand-carried bytes."""

    def __init__(self, client: NativeTLSContext, server: ssl.SSLContext,
                 host: str | None = "localhost") -> None:
        self.client = client.wrap(host)
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server.wrap_bio(self.s_in, self.s_out, server_side=True)

    def handshake(self) -> Link:
        for _ in range(8):
            client_done = server_done = False
            try:
                self.client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
            self.s_in.write(self.client.outgoing.read())
            try:
                self.server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
            self.client.incoming.write(self.s_out.read())
            if client_done and server_done:
                return self
        raise AssertionError("the handshake did not finish")

    def server_send(self, data: bytes) -> bytes:
        """What the server puts on the wire for ``data``."""
        if data:
            self.server.write(data)
        return self.s_out.read()

    def client_read_all(self, expected: int) -> bytes:
        got = bytearray()
        while len(got) < expected:
            got += self.client.read(expected - len(got))
        return bytes(got)

    def server_read_all(self) -> bytes:
        self.s_in.write(self.client.outgoing.read())
        got = bytearray()
        while True:
            try:
                got += self.server.read(1 << 16)
            except ssl.SSLWantReadError:
                return bytes(got)


@pytest.fixture
def link(client: NativeTLSContext, server13: ssl.SSLContext) -> Link:
    return Link(client, server13).handshake()


def _payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed * 7919 + n).randbytes(n)


# ---- availability and the fallback build ---------------------------------------------------
def test_available_agrees_with_lib() -> None:
    assert native_tls_available() == bool(lib.rtms_tls_available())
    version = ffi.string(lib.rtms_tls_library_version()).decode()
    if native_tls_available():
        assert version.startswith("OpenSSL")
        return
    assert version == "unavailable"
    with pytest.raises(tls.NativeTLSUnavailableError, match="without OpenSSL"):
        NativeTLSContext()
    with pytest.raises(ssl.SSLError):
        NativeTLSContext(verify=False)


_FALLBACK_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
m = __import__(sys.argv[2])
ffi, lib = m.ffi, m.lib
assert lib.rtms_tls_available() == 0
err = ffi.new("char[]", lib.RTMS_TLS_ERR_CAP)
assert lib.rtms_tls_ctx_new(ffi.NULL, 1, err, lib.RTMS_TLS_ERR_CAP) == ffi.NULL
assert b"without OpenSSL" in ffi.string(err), ffi.string(err)
assert lib.rtms_tls_conn_new(ffi.NULL, b"localhost", err, 0) == ffi.NULL
conns = ffi.new("rtms_tls_conn *[]", 2)
ins = ffi.new("const uint8_t *[]", 2)
lens = ffi.new("size_t[]", [0, 0])
offs, outl, st = ffi.new("size_t[]", 2), ffi.new("size_t[]", 2), ffi.new("int32_t[]", 2)
out = ffi.new("uint8_t[]", 8)
assert lib.rtms_tls_decrypt_batch(conns, ins, lens, 2, out, 8, offs, outl, st) == 0
assert list(st) == [lib.RTMS_TLS_STATUS_ERROR] * 2
print("fallback ok")
"""


@pytest.mark.slow
def test_fallback_build_reports_unavailable(tmp_path: Path) -> None:
    """Build the extension with RTMS_NATIVE_NO_OPENSSL=1 under another name: every TLS
    function exists and reports "unavailable"."""
    if sys.platform != "linux" or not (ROOT / "build.py").exists():
        pytest.skip("needs a Linux source checkout with build.py")
    module = "rtms_native_no_openssl"
    env = dict(os.environ, RTMS_NATIVE_NO_OPENSSL="1", RTMS_NATIVE_MODULE=module)
    env.pop("RTMS_NATIVE_SANITIZE", None)
    build = subprocess.run(
        [sys.executable, "-c",
         "import sys, build; from pathlib import Path; "
         "print(build.build_inplace(Path(sys.argv[1])))", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run(
        [sys.executable, "-c", _FALLBACK_PROBE, str(tmp_path), module],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 0 and "fallback ok" in run.stdout, run.stdout + run.stderr


def test_build_knob_disables_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ROOT / "build.py").exists():
        pytest.skip("needs a source checkout with build.py")
    # by path, under a private name: "build" may also be the PyPA package
    spec = importlib.util.spec_from_file_location("_rtms_build_script", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setenv("RTMS_NATIVE_NO_OPENSSL", "1")
    assert build.openssl_usable() is False


# ---- handshakes and verification -----------------------------------------------------------
@requires_tls
@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_handshake(version: str, client: NativeTLSContext, server13: ssl.SSLContext,
                   server12: ssl.SSLContext) -> None:
    link = Link(client, server13 if version == "TLSv1.3" else server12)
    assert link.client.version() is None and not link.client.handshake_done()
    with pytest.raises(ssl.SSLWantReadError):
        link.client.do_handshake()
    link.handshake()
    assert link.client.version() == version == link.server.version()
    assert link.client.handshake_done()
    assert link.client.server_hostname == "localhost"
    assert link.client.context is client and not link.client.server_side
    assert link.client.selected_alpn_protocol() is None
    link.client.do_handshake()  # done: a no-op


@requires_tls
def test_sni_is_sent(client: NativeTLSContext, ca: trustme.CA) -> None:
    seen: list[str | None] = []
    ctx = _server_context(ca)

    def remember(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx.sni_callback = remember
    Link(client, ctx).handshake()
    Link(client, ctx, "127.0.0.1").handshake()  # IP literals are not sent as SNI
    assert seen == ["localhost", None]


@requires_tls
def test_ip_address_hostname(client: NativeTLSContext, server: ssl.SSLContext) -> None:
    link = Link(client, server, "127.0.0.1").handshake()
    assert link.client.server_hostname == "127.0.0.1"
    link.client.incoming.write(link.server_send(b"ip ok"))
    assert link.client.read() == b"ip ok"


@requires_tls
@pytest.mark.parametrize(
    ("host", "code", "why"),
    [
        ("wrong.example", X509_V_ERR_HOSTNAME_MISMATCH, "hostname mismatch"),
        ("127.0.0.2", X509_V_ERR_IP_ADDRESS_MISMATCH, "IP address mismatch"),
    ],
)
def test_wrong_name_is_refused(host: str, code: int, why: str, client: NativeTLSContext,
                               server: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        Link(client, server, host).handshake()
    exc = info.value
    assert host in str(exc) and why in str(exc) and "certificate verify failed" in str(exc)
    assert exc.verify_code == code
    assert why in exc.verify_message and host in exc.verify_message
    assert exc.reason == "CERTIFICATE_VERIFY_FAILED"


@requires_tls
def test_unknown_ca_is_refused(server13: ssl.SSLContext, tmp_path: Path) -> None:
    other = trustme.CA()
    path = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(path))
    for ctx in (NativeTLSContext(path), NativeTLSContext()):  # a stranger, the system CAs
        link = Link(ctx, server13)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            link.handshake()
        assert "unable to get local issuer certificate" in info.value.verify_message
        assert info.value.verify_code == 20
        # sticky: the object stays failed
        with pytest.raises(ssl.SSLError):
            link.client.do_handshake()
        with pytest.raises(ssl.SSLError):
            link.client.read(10)


@requires_tls
def test_verify_false_accepts_anything(server: ssl.SSLContext) -> None:
    ctx = NativeTLSContext(verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    for host in ("wrong.example", "10.1.2.3", None):
        link = Link(ctx, server, host).handshake()
        link.client.incoming.write(link.server_send(b"unverified"))
        assert link.client.read() == b"unverified"


@requires_tls
def test_context_errors(tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLError, match=r"cannot load CA file .*nowhere\.pem"):
        NativeTLSContext(tmp_path / "nowhere.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError, match=r"junk\.pem"):
        NativeTLSContext(junk)
    ctx = NativeTLSContext()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.wrap(None)
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.wrap("")
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.wrap("a" * 300)
    assert ctx.wrap("bücher.example").server_hostname == "bücher.example"  # IDNA


@requires_tls
def test_plain_http_peer_is_an_error(client: NativeTLSContext) -> None:
    obj = client.wrap("localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    assert obj.outgoing.pending > 0  # the ClientHello
    obj.incoming.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ssl.SSLError) as info:
        obj.do_handshake()
    assert type(info.value) is ssl.SSLError
    assert "error:" in str(info.value) and str(info.value) == obj.error_text()


# ---- plaintext both ways ---------------------------------------------------------------------
SIZES = [0, 1, 2, 17, 500, 4096, 16383, 16384, 16385, 40000, 65536]


@requires_tls
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int, client: NativeTLSContext, server: ssl.SSLContext) -> None:
    link = Link(client, server).handshake()
    down = _payload(size, 1)
    link.client.incoming.write(link.server_send(down))
    assert link.client_read_all(size) == down
    up = _payload(size, 2)
    assert link.client.write(up) == size
    assert link.server_read_all() == up
    if size == 0:
        assert link.client.read(0) == b""
        with pytest.raises(ssl.SSLWantReadError):
            link.client.read()


@requires_tls
def test_read_into_buffer(link: Link) -> None:
    data = _payload(3000)
    link.client.incoming.write(link.server_send(data))
    buf = bytearray(1000)
    assert link.client.read(400, buf) == 400  # n smaller than the buffer
    assert link.client.pending() == 3000 - 400
    view = memoryview(buf)
    assert link.client.read(0, view[400:]) == 600  # n <= 0: the whole buffer
    assert link.client.read(10**6, buf) == 1000  # n larger: the buffer's size
    rest = bytearray(5000)
    assert link.client.read(5000, rest) == 1000
    assert link.client.pending() == 0
    assert bytes(buf) == data[1000:2000] and bytes(rest[:1000]) == data[2000:]
    with pytest.raises(ssl.SSLWantReadError):
        link.client.read(10, rest)
    with pytest.raises(ValueError):
        link.client.read(-1)
    with pytest.raises(TypeError):
        link.client.read(10, b"read-only")  # as ssl.SSLObject


@requires_tls
@pytest.mark.parametrize("use_batch", [False, True])
def test_record_split_at_every_byte(use_batch: bool, link: Link) -> None:
    """Feed one record cut at every position: nothing comes out before its last byte."""
    message = _payload(41, 3)
    probe = link.server_send(message)  # records of one plaintext length have one size
    link.client.incoming.write(probe)
    assert link.client.read() == message
    out = bytearray(100)
    for cut in range(len(probe) + 1):
        wire = link.server_send(message)
        assert len(wire) == len(probe)
        head, tail = wire[:cut], wire[cut:]
        if use_batch:
            (_off, n, st), = decrypt_batch([link.client], [head], out)
            assert st == STATUS_OK and (n == len(message)) == (cut == len(wire))
            (off, n2, st), = decrypt_batch([link.client], [tail], out)
            assert st == STATUS_OK and n + n2 == len(message)
            assert bytes(out[off:off + n2]) == (message if n2 else b"")
        else:
            link.client.incoming.write(head)
            if cut < len(wire):
                with pytest.raises(ssl.SSLWantReadError):
                    link.client.read()
            link.client.incoming.write(tail)
            assert link.client.read() == message


@requires_tls
def test_one_byte_at_a_time(link: Link) -> None:
    message = _payload(300, 4)
    wire = link.server_send(message)
    got = bytearray()
    for i in range(len(wire)):
        link.client.incoming.write(wire[i:i + 1])
        try:
            got += link.client.read(1000)
        except ssl.SSLWantReadError:
            assert i < len(wire) - 1
    assert bytes(got) == message


@requires_tls
def test_many_records_per_feed(link: Link) -> None:
    messages = [_payload(n, 5) for n in range(1, 200, 7)]
    wire = b"".join(link.server_send(m) for m in messages)
    link.client.incoming.write(wire)
    got = bytearray()
    while link.client.incoming.pending or link.client.pending():
        got += link.client.read(1 << 16)
    assert bytes(got) == b"".join(messages)
    wire = b"".join(link.server_send(m) for m in messages)
    out = bytearray(1 << 16)
    (off, n, st), = decrypt_batch([link.client], [wire], out)
    assert st == STATUS_OK and bytes(out[off:off + n]) == b"".join(messages)


@requires_tls
def test_incoming_bio_surface(link: Link) -> None:
    with pytest.raises(ssl.SSLWantReadError):
        link.client.read()  # consumes the session tickets that followed the handshake
    assert link.client.incoming.pending == 0
    wire = link.server_send(b"abc")
    link.client.incoming.write(wire[:3])
    assert link.client.incoming.pending == 3 and not link.client.incoming.eof
    assert link.client.incoming.read(2) == wire[:2]  # withdrawn before TLS saw them
    assert link.client.incoming.read() == wire[2:3]
    assert link.client.incoming.read() == b""
    with pytest.raises(OSError):
        link.client.outgoing.write(b"no")
    assert not link.client.outgoing.eof


@requires_tls
def test_write_before_handshake_wants_read(client: NativeTLSContext) -> None:
    obj = client.wrap("localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.write(b"early")
    assert obj.outgoing.pending > 0


# ---- close, truncation, corruption -----------------------------------------------------------
@requires_tls
def test_close_notify(client: NativeTLSContext, server: ssl.SSLContext) -> None:
    link = Link(client, server).handshake()
    link.server.write(b"last words")
    with pytest.raises(ssl.SSLWantReadError):
        link.server.unwrap()  # sends close_notify, waits for ours
    link.client.incoming.write(link.s_out.read())
    assert link.client.read() == b"last words"
    for _ in range(2):  # sticky
        with pytest.raises(ssl.SSLZeroReturnError):
            link.client.read()
    # answer it: our close_notify completes the server's shutdown
    link.client.unwrap()
    link.s_in.write(link.client.outgoing.read())
    link.server.unwrap()


@requires_tls
def test_close_notify_in_batch(client: NativeTLSContext, server13: ssl.SSLContext) -> None:
    links = [Link(client, server13).handshake() for _ in range(3)]
    wires = []
    for i, lk in enumerate(links):
        lk.server.write(b"bye %d" % i)
        if i == 1:
            with pytest.raises(ssl.SSLWantReadError):
                lk.server.unwrap()
        wires.append(lk.s_out.read())
    out = bytearray(100)
    res = decrypt_batch([lk.client for lk in links], wires, out)
    assert [st for _, _, st in res] == [STATUS_OK, STATUS_CLOSED, STATUS_OK]
    assert [bytes(out[o:o + n]) for o, n, _ in res] == [b"bye 0", b"bye 1", b"bye 2"]
    res = decrypt_batch([lk.client for lk in links], [b"", links[1].server_send(b""), b""], out)
    assert [st for _, _, st in res] == [STATUS_OK, STATUS_CLOSED, STATUS_OK]


@requires_tls
def test_client_unwrap_first(link: Link) -> None:
    with pytest.raises(ssl.SSLWantReadError):
        link.client.unwrap()
    link.s_in.write(link.client.outgoing.read())
    assert link.server.read() == b""  # CPython's SSLObject: b"" at a close_notify
    link.server.unwrap()
    link.client.incoming.write(link.s_out.read() + b"after")
    link.client.unwrap()
    assert link.client.incoming.read() == b"after"  # bytes past the close_notify


@requires_tls
@pytest.mark.parametrize("partial", [False, True])
def test_truncation_is_an_eof_error(partial: bool, link: Link) -> None:
    wire = link.server_send(b"cut short")
    link.client.incoming.write(wire[:-5] if partial else wire)
    if not partial:
        assert link.client.read() == b"cut short"
    link.client.incoming.write_eof()
    with pytest.raises(ssl.SSLEOFError, match="EOF"):
        link.client.read()
    with pytest.raises(ssl.SSLEOFError):
        link.client.read()
    with pytest.raises(ssl.SSLError, match="after write_eof"):
        link.client.incoming.write(b"more")
    assert link.client.incoming.eof
    out = bytearray(10)
    (_off, n, st), = decrypt_batch([link.client], [b""], out)
    assert n == 0 and st & (STATUS_ERROR | STATUS_OK | STATUS_CLOSED) == STATUS_ERROR


@requires_tls
@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_corruption_fails_one_connection_only(version: str, client: NativeTLSContext,
                                              server13: ssl.SSLContext,
                                              server12: ssl.SSLContext) -> None:
    server = server13 if version == "TLSv1.3" else server12
    links = [Link(client, server).handshake() for _ in range(3)]
    messages = [_payload(500, 10 + i) for i in range(3)]
    wires = [lk.server_send(m) for lk, m in zip(links, messages, strict=True)]
    bad = bytearray(wires[1])
    bad[len(bad) // 2] ^= 0x40
    wires[1] = bytes(bad)
    out = bytearray(4096)
    res = decrypt_batch([lk.client for lk in links], wires, out)
    assert res[0][2] == STATUS_OK and res[2][2] == STATUS_OK
    assert res[1][1] == 0 and res[1][2] == STATUS_ERROR | STATUS_OUTPUT_PENDING  # an alert
    assert bytes(out[res[0][0]:res[0][0] + 500]) == messages[0]
    assert bytes(out[res[2][0]:res[2][0] + 500]) == messages[2]
    assert res[2][0] == 500
    assert "bad record mac" in links[1].client.error_text()
    # the alert reaches the server
    links[1].s_in.write(links[1].client.outgoing.read())
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        links[1].server.read()
    # the failed one stays failed, the others go on
    wires = [lk.server_send(m) for lk, m in ((links[0], b"a"), (links[2], b"c"))]
    res = decrypt_batch([links[0].client, links[1].client, links[2].client],
                        [wires[0], b"ignored", wires[1]], out)
    assert [st for *_, st in res] == [STATUS_OK, STATUS_ERROR, STATUS_OK]
    assert bytes(out[:2]) == b"ac"
    with pytest.raises(ssl.SSLError) as info:
        links[1].client.read()
    assert type(info.value) is ssl.SSLError and "bad record mac" in str(info.value)


@requires_tls
def test_corrupted_read_raises_ssl_error(link: Link) -> None:
    wire = bytearray(link.server_send(b"x" * 100))
    wire[-1] ^= 1
    link.client.incoming.write(wire)
    with pytest.raises(ssl.SSLError, match="bad record mac"):
        link.client.read()
    assert link.client.outgoing.pending > 0
    with pytest.raises(ssl.SSLError):
        link.client.write(b"no more")


# ---- the batch ---------------------------------------------------------------------------------
@requires_tls
def test_batch_of_200(client: NativeTLSContext, server13: ssl.SSLContext,
                      server12: ssl.SSLContext) -> None:
    links = [Link(client, server13 if i % 3 else server12).handshake() for i in range(200)]
    rng = random.Random(99)
    for _round in range(3):
        messages = [[_payload(rng.randrange(0, 1500), rng.randrange(1 << 30))
                     for _ in range(rng.randrange(0, 4))] for _ in links]
        wires = [b"".join(lk.server_send(m) for m in ms)
                 for lk, ms in zip(links, messages, strict=True)]
        out = bytearray(sum(len(w) for w in wires))
        res = decrypt_batch([lk.client for lk in links], wires, out)
        pos = 0
        for (off, n, st), ms in zip(res, messages, strict=True):
            assert st == STATUS_OK
            assert off == pos
            assert bytes(out[off:off + n]) == b"".join(ms)
            pos += n


@requires_tls
def test_batch_out_too_small(client: NativeTLSContext, server13: ssl.SSLContext) -> None:
    links = [Link(client, server13).handshake() for _ in range(3)]
    messages = [_payload(1000, 20 + i) for i in range(3)]
    wires = [lk.server_send(m) + lk.server_send(m) for lk, m in zip(links, messages, strict=True)]
    out = bytearray(2500)
    res = decrypt_batch([lk.client for lk in links], wires, out)
    assert res[0] == (0, 2000, STATUS_OK)
    assert res[1] == (2000, 500, STATUS_OK | STATUS_MORE)
    assert res[2] == (2500, 0, STATUS_OK | STATUS_MORE)
    assert bytes(out[2000:2500]) == messages[1][:500]
    rest1 = links[1].client_read_all(1500)
    assert rest1 == messages[1][500:] + messages[1]
    assert links[2].client_read_all(2000) == messages[2] * 2
    # nothing left: a batch with no input reads nothing and says OK
    res = decrypt_batch([lk.client for lk in links], [b"", b"", b""], out)
    assert res == [(0, 0, STATUS_OK)] * 3
    # an empty out buffer
    wire = links[0].server_send(b"z")
    res = decrypt_batch([links[0].client], [wire], bytearray())
    assert res == [(0, 0, STATUS_OK | STATUS_MORE)]
    assert links[0].client.read() == b"z"


@requires_tls
@pytest.mark.parametrize("seed", range(4))
def test_batch_random_splits_and_caps(seed: int, client: NativeTLSContext,
                                      server13: ssl.SSLContext,
                                      server12: ssl.SSLContext) -> None:
    """Streams of records cut anywhere, fed over many batches with random output
    capacities; what MORE leaves behind is read with read(): every stream arrives whole."""
    rng = random.Random(seed)
    links = [Link(client, server13 if i % 2 else server12).handshake() for i in range(12)]
    sent = [bytearray() for _ in links]
    got = [bytearray() for _ in links]
    held = [b""] * len(links)
    for _ in range(60):
        inputs = []
        for i, lk in enumerate(links):
            for _ in range(rng.randrange(0, 3)):
                msg = rng.randbytes(rng.choice([1, 100, 2000, 17000]))
                sent[i] += msg
                lk.server.write(msg)
            wire = held[i] + lk.s_out.read()
            cut = rng.randrange(len(wire) + 1)
            inputs.append(wire[:cut])
            held[i] = wire[cut:]
        out = bytearray(rng.choice([0, 10, 1000, 30000, 200000]))
        res = decrypt_batch([lk.client for lk in links], inputs, out)
        for i, (off, n, st) in enumerate(res):
            assert st & ~STATUS_MORE == STATUS_OK
            got[i] += out[off:off + n]
            if st & STATUS_MORE:
                with contextlib.suppress(ssl.SSLWantReadError):
                    while True:
                        got[i] += links[i].client.read(1 << 16)
    for i, lk in enumerate(links):  # the tails
        lk.client.incoming.write(held[i])
        with contextlib.suppress(ssl.SSLWantReadError):
            while True:
                got[i] += lk.client.read(1 << 16)
        assert got[i] == sent[i]


@requires_tls
def test_batch_edge_arguments(link: Link) -> None:
    assert decrypt_batch([], [], bytearray(1)) == []
    with pytest.raises(ValueError):
        decrypt_batch([link.client], [], bytearray(1))
    conns = ffi.new("rtms_tls_conn *[]", [ffi.NULL, link.client.native_handle])
    ins = ffi.new("const uint8_t *[]", 2)
    lens = ffi.new("size_t[]", [0, 0])
    offs, outl, st = ffi.new("size_t[]", 2), ffi.new("size_t[]", 2), ffi.new("int32_t[]", 2)
    out = ffi.new("uint8_t[]", 4)
    assert lib.rtms_tls_decrypt_batch(conns, ins, lens, 2, out, 4, offs, outl, st) == 0
    assert list(st) == [STATUS_ERROR, STATUS_OK]


# ---- output: writes, alerts, key updates -------------------------------------------------------
@requires_tls
def test_write_output_is_taken_in_pieces(link: Link) -> None:
    assert link.client.outgoing.pending == 0
    data = _payload(70000, 30)
    assert link.client.write(memoryview(data)) == len(data)
    pending = link.client.outgoing.pending
    assert pending > len(data)  # record headers and tags
    first = link.client.outgoing.read(1000)
    assert len(first) == 1000 and link.client.outgoing.pending == pending - 1000
    link.s_in.write(first + link.client.outgoing.read())
    assert link.client.outgoing.pending == 0 and link.client.outgoing.read() == b""
    got = bytearray()
    while len(got) < len(data):
        got += link.server.read(1 << 16)
    assert bytes(got) == data


@requires_tls
def test_key_update(link: Link) -> None:
    """A KeyUpdate asking the peer to update too: both directions rekey and go on."""
    link.client.key_update(request_peer=True)
    assert link.client.outgoing.pending > 0
    assert link.client.write(b"after rekey") == 11
    assert link.server_read_all() == b"after rekey"
    link.server.write(b"server rekeyed")  # carries the server's KeyUpdate first
    out = bytearray(100)
    (off, n, st), = decrypt_batch([link.client], [link.s_out.read()], out)
    assert st == STATUS_OK and bytes(out[off:off + n]) == b"server rekeyed"


@requires_tls
def test_key_update_needs_tls13(client: NativeTLSContext, server12: ssl.SSLContext) -> None:
    link = Link(client, server12).handshake()
    with pytest.raises(ssl.SSLError):
        link.client.key_update()
    link.client.incoming.write(link.server_send(b"still fine"))
    assert link.client.read() == b"still fine"
    fresh = client.wrap("localhost")
    with pytest.raises(ssl.SSLError):
        fresh.key_update()


# ---- lifetimes and the shared error queue ------------------------------------------------------
@requires_tls
def test_conn_outlives_its_ctx(ca_file: str, server13: ssl.SSLContext) -> None:
    err = ffi.new("char[]", lib.RTMS_TLS_ERR_CAP)
    ctx = lib.rtms_tls_ctx_new(ca_file.encode(), 1, err, lib.RTMS_TLS_ERR_CAP)
    assert ctx != ffi.NULL
    conns = [lib.rtms_tls_conn_new(ctx, b"localhost", err, lib.RTMS_TLS_ERR_CAP)
             for _ in range(3)]
    assert all(c != ffi.NULL for c in conns)
    lib.rtms_tls_ctx_free(ctx)
    # the freed ctx's settings still hold: a full handshake with verification
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server13.wrap_bio(s_in, s_out, server_side=True)
    c = conns[0]
    buf = ffi.new("uint8_t[]", 1 << 16)
    for _ in range(4):
        lib.rtms_tls_handshake(c)
        s_in.write(ffi.buffer(buf, lib.rtms_tls_take_output(c, buf, 1 << 16))[:])
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        data = s_out.read()
        lib.rtms_tls_feed(c, data, len(data))
    assert lib.rtms_tls_handshake(c) == lib.RTMS_TLS_OK
    assert ffi.string(lib.rtms_tls_version(c)) == b"TLSv1.3"
    for c in reversed(conns):
        lib.rtms_tls_conn_free(c)
    lib.rtms_tls_conn_free(ffi.NULL)
    lib.rtms_tls_ctx_free(ffi.NULL)


@requires_tls
def test_python_objects_keep_ctx_alive(ca_file: str, server13: ssl.SSLContext) -> None:
    objs = [NativeTLSContext(ca_file).wrap("localhost") for _ in range(3)]
    gc.collect()  # the contexts have no other reference
    link = Link(NativeTLSContext(ca_file), server13)
    link.client = objs[1]
    link.handshake()
    link.client.incoming.write(link.server_send(b"alive"))
    assert link.client.read() == b"alive"
    del objs, link
    gc.collect()


@requires_tls
def test_error_queue_left_clean_for_python_ssl(client: NativeTLSContext,
                                               server13: ssl.SSLContext) -> None:
    """A native failure must not leave OpenSSL errors behind for the ssl module (same
    thread, same libssl), and the ssl module's leftovers must not confuse us."""
    link = Link(client, server13).handshake()
    with pytest.raises(ssl.SSLCertVerificationError):
        Link(client, server13, "wrong.example").handshake()
    broken = Link(client, server13).handshake()
    wire = bytearray(broken.server_send(b"x"))
    wire[-1] ^= 1
    broken.client.incoming.write(bytes(wire))
    with pytest.raises(ssl.SSLError):
        broken.client.read()
    # the Python server sees a plain "want read", not our stale errors
    with pytest.raises(ssl.SSLWantReadError):
        link.server.read()
    # and a Python failure first, then a native read that merely wants input
    py_in, py_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    py_client = ssl.create_default_context().wrap_bio(py_in, py_out, server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        py_client.do_handshake()
    py_in.write(b"\x16\x03\x03\x00\x02garbage")
    with pytest.raises(ssl.SSLError):
        py_client.do_handshake()
    with pytest.raises(ssl.SSLWantReadError):
        link.client.read()
    link.client.incoming.write(link.server_send(b"fine"))
    assert link.client.read() == b"fine"


@requires_tls
def test_native_handle_is_the_conn(link: Link) -> None:
    handle = link.client.native_handle
    assert ffi.typeof(handle) is ffi.typeof("rtms_tls_conn *")
    assert lib.rtms_tls_handshake_done(handle) == 1
    assert isinstance(link.client, NativeTLSObject)


# ---- the own TLS 1.3 record layer ----------------------------------------------------------------
@requires_tls
@pytest.mark.parametrize("own", [True, False])
def test_own_record_layer_is_chosen_for_tls13_only(own: bool, ca_file: str,
                                                   server13: ssl.SSLContext,
                                                   server12: ssl.SSLContext) -> None:
    ctx = NativeTLSContext(ca_file, own_records=own)
    assert ctx.own_records is own
    fresh = ctx.wrap("localhost")
    assert not fresh.own_records  # decided when the handshake completes
    assert Link(ctx, server13).handshake().client.own_records is own
    assert not Link(ctx, server12).handshake().client.own_records


TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"]


@requires_tls
@pytest.mark.parametrize("suite", TLS13_SUITES)
def test_every_tls13_suite(suite: str, ca_file: str, server13: ssl.SSLContext) -> None:
    """Each suite the own layer implements: records of every size, cut anywhere, through
    both the batch and single reads, across key updates in both directions."""
    ctx = NativeTLSContext(ca_file, tls13_ciphersuites=suite)
    link = Link(ctx, server13).handshake()
    assert link.client.own_records
    assert link.server.cipher()[0] == suite  # type: ignore[index]
    rng = random.Random(suite)
    sent, got, held = bytearray(), bytearray(), b""
    for round_ in range(40):
        for _ in range(rng.randrange(1, 4)):
            msg = rng.randbytes(rng.choice([0, 1, 17, 500, 16384, 16385, 40000]))
            sent += msg
            if msg:
                link.server.write(msg)
        if round_ % 10 == 9:  # the client rekeys, the server answers with its own KeyUpdate
            link.client.key_update(request_peer=True)
            link.s_in.write(link.client.outgoing.read())
            with contextlib.suppress(ssl.SSLWantReadError):
                link.server.read(1)
        wire = held + link.s_out.read()
        cut = rng.randrange(len(wire) + 1)
        held = wire[cut:]
        if round_ % 2:
            out = bytearray(rng.choice([100, 20000, 100000]))
            (off, n, st), = decrypt_batch([link.client], [wire[:cut]], out)
            assert st & ~STATUS_MORE == STATUS_OK
            got += out[off:off + n]
        else:
            link.client.incoming.write(wire[:cut])
        with contextlib.suppress(ssl.SSLWantReadError):
            while True:
                got += link.client.read(rng.choice([1, 1000, 1 << 16]))
    link.client.incoming.write(held + link.s_out.read())
    with contextlib.suppress(ssl.SSLWantReadError):
        while True:
            got += link.client.read(1 << 16)
    assert got == sent
    assert link.client.own_records


@requires_tls
def test_unknown_suite_is_refused(ca_file: str) -> None:
    with pytest.raises(ssl.SSLError, match="cipher suite"):
        NativeTLSContext(ca_file, tls13_ciphersuites="TLS_NOT_A_SUITE")


@requires_tls
def test_fatal_alert_from_the_peer(client: NativeTLSContext, server13: ssl.SSLContext) -> None:
    """The server refuses a record of ours: its alert ends the connection with the reason."""
    links = [Link(client, server13).handshake() for _ in range(2)]
    links[0].client.write(b"tampered with")
    bad = bytearray(links[0].client.outgoing.read())
    bad[-3] ^= 0x01
    links[0].s_in.write(bytes(bad))
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        links[0].server.read(100)
    wires = [links[0].s_out.read(), links[1].server_send(b"unaffected")]
    out = bytearray(100)
    res = decrypt_batch([lk.client for lk in links], wires, out)
    assert res[0][1:] == (0, STATUS_ERROR)
    assert res[1] == (0, 10, STATUS_OK) and bytes(out[:10]) == b"unaffected"
    assert "bad record mac" in links[0].client.error_text()
    assert links[0].client.outgoing.pending == 0  # nothing is sent after a fatal alert
    with pytest.raises(ssl.SSLError, match="bad record mac"):
        links[0].client.read()


@requires_tls
def test_records_after_close_notify_stay_unread(client: NativeTLSContext,
                                                server13: ssl.SSLContext) -> None:
    link = Link(client, server13).handshake()
    wire = link.server_send(b"before")
    with pytest.raises(ssl.SSLWantReadError):
        link.server.unwrap()
    wire += link.s_out.read() + b"\x17\x03\x03\x00\x20" + bytes(32)
    out = bytearray(100)
    (off, n, st), = decrypt_batch([link.client], [wire], out)
    assert (n, st) == (6, STATUS_CLOSED) and bytes(out[off:off + n]) == b"before"
    assert link.client.incoming.pending == 37  # left for whoever reads the socket next
