"""The own TLS 1.3 record layer (csrc/tls.c) against records forged here.

A Python TLS server does the handshake (no session tickets, its key log on) and from
then on the test writes the server's records itself, with the server's traffic secret
and ``cryptography``'s AEADs: padding, post-handshake messages split across records,
a KeyUpdate that asks for ours, and every malformed record the layer must refuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ssl
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from rtms_fast.tls import (
    STATUS_CLOSED,
    STATUS_ERROR,
    STATUS_OK,
    NativeTLSContext,
    NativeTLSObject,
    decrypt_batch,
    native_tls_available,
)

pytestmark = pytest.mark.skipif(not native_tls_available(),
                                reason="rtms_fast._native was built without OpenSSL")

SUITES = {  # name: (hash, key length, AEAD)
    "TLS_AES_128_GCM_SHA256": (hashlib.sha256, 16, AESGCM),
    "TLS_AES_256_GCM_SHA384": (hashlib.sha384, 32, AESGCM),
    "TLS_CHACHA20_POLY1305_SHA256": (hashlib.sha256, 32, ChaCha20Poly1305),
}
APPLICATION_DATA, HANDSHAKE, ALERT = 23, 22, 21


def expand_label(hash_: Callable[..., object], secret: bytes, label: str, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1) with an empty context, one block."""
    full = b"tls13 " + label.encode()
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hash_).digest()[:length]  # type: ignore[arg-type]


class Forger:
    """The server's side of the record layer, by the RFC."""

    def __init__(self, suite: str, secret: bytes) -> None:
        self.hash, self.key_len, self.aead_type = SUITES[suite]
        self.secret = secret
        self._install()

    def _install(self) -> None:
        self.aead = self.aead_type(expand_label(self.hash, self.secret, "key", self.key_len))
        self.iv = expand_label(self.hash, self.secret, "iv", 12)
        self.seq = 0

    def update(self) -> None:
        """Next traffic secret (after sending a KeyUpdate)."""
        self.secret = expand_label(self.hash, self.secret, "traffic upd", len(self.secret))
        self._install()

    def record(self, content: bytes, content_type: int = APPLICATION_DATA, padding: int = 0,
               header: bytes = b"\x17\x03\x03", inner: bytes | None = None) -> bytes:
        plain = content + bytes([content_type]) + bytes(padding) if inner is None else inner
        head = header + struct.pack(">H", len(plain) + 16)
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))
        self.seq += 1
        return head + self.aead.encrypt(nonce, plain, head)


def handshake_message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def new_session_ticket(ticket_len: int) -> bytes:
    """A well-formed NewSessionTicket (RFC 8446 4.6.1) with a ticket of ticket_len bytes."""
    body = (struct.pack(">II", 7200, 12345) + b"\x08" + bytes(range(8))
            + struct.pack(">H", ticket_len) + bytes(i % 251 for i in range(ticket_len))
            + b"\x00\x00")
    return handshake_message(4, body)


class ForgedLink:
    """A native client whose server, after the handshake, is a Forger."""

    def __init__(self, ca: trustme.CA, ca_file: str, tmp: Path, suite: str,
                 ctx: NativeTLSContext | None = None, own: bool = True) -> None:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost").configure_cert(server_ctx)
        server_ctx.num_tickets = 0  # the forger's first record is the first of the epoch
        keylog = tmp / f"keys-{suite}.log"
        server_ctx.keylog_filename = str(keylog)
        self.client: NativeTLSObject = (ctx or NativeTLSContext(
            ca_file, tls13_ciphersuites=suite)).wrap("localhost")
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        for _ in range(8):
            done = 0
            for side, out, into in ((self.client, self.client.outgoing, self.s_in),
                                    (self.server, self.s_out, self.client.incoming)):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
                    done += 1
                into.write(out.read())
            if done == 2:
                break
        assert self.client.own_records is own
        secrets = [line.split()[2] for line in keylog.read_text().splitlines()
                   if line.startswith("SERVER_TRAFFIC_SECRET_0 ")]
        self.forger = Forger(suite, bytes.fromhex(secrets[-1]))

    def read_all(self) -> bytes:
        got = bytearray()
        with contextlib.suppress(ssl.SSLWantReadError):
            while True:
                got += self.client.read(1 << 16)
        return bytes(got)


@pytest.fixture
def forged(ca: trustme.CA, ca_file: str, tmp_path: Path) -> ForgedLink:
    return ForgedLink(ca, ca_file, tmp_path, "TLS_AES_128_GCM_SHA256")


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_forged_records_of_every_kind(suite: str, ca: trustme.CA, ca_file: str,
                                      tmp_path: Path) -> None:
    link = ForgedLink(ca, ca_file, tmp_path, suite)
    f = link.forger
    ticket = new_session_ticket(185)
    wire = b"".join([
        f.record(b"padded", padding=300),
        f.record(b""),  # empty application data is allowed
        f.record(ticket + ticket, HANDSHAKE),  # two messages in one record
        f.record(ticket[:3], HANDSHAKE),  # one message over three records
        f.record(ticket[3:100], HANDSHAKE),
        f.record(ticket[100:], HANDSHAKE),
        f.record(b"\x01" * 16384),  # the largest content
        f.record(bytes([1, 90]), ALERT),  # user_canceled: ignored (a close_notify follows)
        f.record(b"last"),
    ])
    link.client.incoming.write(wire)
    assert link.read_all() == b"padded" + b"\x01" * 16384 + b"last"
    close = f.record(bytes([1, 0]), ALERT)
    out = bytearray(10)
    (_, n, st), = decrypt_batch([link.client], [close + b"after"], out)
    assert (n, st) == (0, STATUS_CLOSED)
    assert link.client.incoming.read() == b"after"


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_any_split_of_forged_records(suite: str, ca: trustme.CA, ca_file: str,
                                     tmp_path: Path) -> None:
    ticket = new_session_ticket(105)
    expected = b"abc" + b"z" * 3000
    for step in (1, 13, 700):
        link = ForgedLink(ca, ca_file, tmp_path, suite)
        f = link.forger
        wire = (f.record(b"abc", padding=5) + f.record(ticket[:50], HANDSHAKE)
                + f.record(ticket[50:], HANDSHAKE) + f.record(b"z" * 3000))
        got = bytearray()
        out = bytearray(4096)
        for start in range(0, len(wire), step):
            (off, n, st), = decrypt_batch([link.client], [wire[start:start + step]], out)
            assert st == STATUS_OK
            got += out[off:off + n]
        assert got == expected


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_key_update_requested_by_the_server(suite: str, ca: trustme.CA, ca_file: str,
                                            tmp_path: Path) -> None:
    """The server rekeys and asks us to: the client reads on with the next keys and
    answers with a KeyUpdate of its own, which the real server accepts."""
    link = ForgedLink(ca, ca_file, tmp_path, suite)
    f = link.forger
    wire = f.record(b"before") + f.record(handshake_message(24, b"\x01"), HANDSHAKE)
    f.update()
    wire += f.record(b"after")
    assert link.client.outgoing.pending == 0
    link.client.incoming.write(wire)
    assert link.read_all() == b"beforeafter"
    answer = link.client.outgoing.read()
    assert answer  # our KeyUpdate
    link.client.write(b"client data under new keys")
    link.s_in.write(answer + link.client.outgoing.read())
    assert link.server.read(100) == b"client data under new keys"
    # a second update, not requested: nothing to answer
    wire = f.record(handshake_message(24, b"\x00"), HANDSHAKE)
    f.update()
    link.client.incoming.write(wire + f.record(b"again"))
    assert link.read_all() == b"again"
    assert link.client.outgoing.pending == 0


def _flip_last_byte(record: bytes) -> bytes:
    return record[:-1] + bytes([record[-1] ^ 0x01])


def _no_type(f: Forger) -> bytes:
    return f.record(b"", inner=bytes(40))


REFUSED: dict[str, tuple[Callable[[Forger], bytes], str]] = {
    "handshake-type outer record": (
        lambda f: f.record(b"x", header=b"\x16\x03\x03"), "unexpected record type"),
    "old version": (lambda f: f.record(b"x", header=b"\x17\x03\x01"), "unexpected record type"),
    "body shorter than a tag": (lambda f: b"\x17\x03\x03\x00\x10" + bytes(16),
                                "record length out of range"),
    "body too long": (lambda f: b"\x17\x03\x03\x41\x01" + bytes(16641),
                      "record length out of range"),
    "bad tag": (lambda f: _flip_last_byte(f.record(b"payload")), "bad record mac"),
    "no content type": (_no_type, "without a content type"),
    "content over 2^14": (lambda f: f.record(b"\x02" * 16385), "record overflow"),
    "change_cipher_spec": (lambda f: f.record(b"\x01", 20), "unexpected record content type"),
    "certificate request": (lambda f: f.record(handshake_message(13, b"\x00" * 8), HANDSHAKE),
                            "unexpected post-handshake message"),
    "KeyUpdate too long": (lambda f: f.record(handshake_message(24, b"\x00\x00"), HANDSHAKE),
                           "malformed KeyUpdate"),
    "KeyUpdate value 2": (lambda f: f.record(handshake_message(24, b"\x02"), HANDSHAKE),
                          "malformed KeyUpdate"),
    "KeyUpdate not last": (lambda f: f.record(handshake_message(24, b"\x00")
                                              + handshake_message(4, b"\x00" * 8), HANDSHAKE),
                           "malformed KeyUpdate"),
    "interleaved": (lambda f: f.record(handshake_message(4, bytes(50))[:10], HANDSHAKE)
                    + f.record(b"data"), "interrupted by another record type"),
    "alert of 3 bytes": (lambda f: f.record(b"\x02\x00\x00", ALERT), "malformed alert"),
    "huge handshake message": (lambda f: f.record(b"\x04\xff\xff\xff", HANDSHAKE),
                               "post-handshake message too long"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("path", ["read", "batch"])
def test_refused_records(case: str, path: str, forged: ForgedLink) -> None:
    """Each refusal fails this connection with the reason and a fatal alert for the
    server (which OpenSSL, holding the sending side, writes); nothing is delivered."""
    make, reason = REFUSED[case]
    good = forged.forger.record(b"fine")
    wire = make(forged.forger)
    if path == "read":
        forged.client.incoming.write(good + wire)
        assert forged.client.read() == b"fine"
        with pytest.raises(ssl.SSLError, match=reason):
            forged.client.read()
    else:
        out = bytearray(20000)
        (off, n, st), = decrypt_batch([forged.client], [good + wire], out)
        assert bytes(out[off:off + n]) == b"fine"
        assert st & (STATUS_ERROR | STATUS_OK | STATUS_CLOSED) == STATUS_ERROR
        assert reason in forged.client.error_text()
    alert = forged.client.outgoing.read()
    assert alert
    forged.s_in.write(alert)
    with pytest.raises(ssl.SSLError, match=r"ALERT|alert"):
        forged.server.read(10)
    with pytest.raises(ssl.SSLError):  # sticky
        forged.client.read()


def test_fatal_alert_from_the_server_sends_nothing_back(forged: ForgedLink) -> None:
    forged.client.incoming.write(forged.forger.record(bytes([2, 40]), ALERT))
    with pytest.raises(ssl.SSLError, match="fatal alert: handshake failure"):
        forged.client.read()
    assert forged.client.outgoing.pending == 0


def test_unwrap_drops_data_until_the_close_notify(forged: ForgedLink) -> None:
    with pytest.raises(ssl.SSLWantReadError):
        forged.client.unwrap()  # ours goes out first
    f = forged.forger
    forged.client.incoming.write(f.record(b"dropped"))
    with pytest.raises(ssl.SSLWantReadError):
        forged.client.unwrap()
    forged.client.incoming.write(f.record(bytes([1, 0]), ALERT) + b"tail")
    forged.client.unwrap()
    assert forged.client.incoming.read() == b"tail"
    forged.s_in.write(forged.client.outgoing.read())
    assert forged.server.read(10) == b""  # the server saw our close_notify


def test_openssl_reads_the_forged_records_alike(ca: trustme.CA, ca_file: str,
                                               tmp_path: Path) -> None:
    """The forger checked against OpenSSL: with own records off, OpenSSL's SSL_read
    takes the same forged stream (padding, split tickets, a requested KeyUpdate) to the
    same bytes, so the tests above test the record layer, not a shared misreading."""
    for suite in sorted(SUITES):
        ctx = NativeTLSContext(ca_file, own_records=False, tls13_ciphersuites=suite)
        link = ForgedLink(ca, ca_file, tmp_path, suite, ctx, own=False)
        f = link.forger
        ticket = new_session_ticket(75)
        wire = (f.record(b"one", padding=33) + f.record(ticket[:20], HANDSHAKE)
                + f.record(ticket[20:], HANDSHAKE)
                + f.record(handshake_message(24, b"\x01"), HANDSHAKE))
        f.update()
        wire += f.record(b"two")
        link.client.incoming.write(wire)
        assert link.read_all() == b"onetwo"
        link.client.write(b"three")  # OpenSSL sends its answering KeyUpdate first
        link.s_in.write(link.client.outgoing.read())
        assert link.server.read(10) == b"three"
