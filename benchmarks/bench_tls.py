"""Decrypting one sweep of wss:// input: 1000 sockets, one ~500-byte TLS record each.

A record is what one 20 ms audio message inside a WebSocket frame costs on the wire.
The anchor is the data plane's Python loop (rtms_fast.pump's ``_decrypt_inputs``): per
socket ``incoming.write(...)`` then ``sslobj.read(n, buffer)`` while bytes are pending,
on ``ssl.SSLObject`` + ``MemoryBIO``. The subjects: ``rtms_tls_decrypt_batch``, one C call
for the whole sweep, with the own TLS 1.3 record layer (one AEAD call per record) and with
OpenSSL's ``SSL_read`` per record, and the same Python loop over ``NativeTLSObject`` (the
drop-in).

Every round decrypts fresh records (a TLS record decrypts once), made by Python TLS
servers outside the timing; the peers run TLS 1.3 with the same cipher suite on both
sides. Two cache conditions, each its own group:
  cold  the records of a sweep are made just before it: 1000 server connections' state
        passes through the caches in between, so the clients' TLS state comes from DRAM;
  warm  every round's records are made up front and the sweeps run back to back: the
        clients' TLS state stays in the caches as far as it fits.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme

from rtms_fast.native import ffi, lib
from rtms_fast.tls import STATUS_OK, NativeTLSContext, native_tls_available

pytestmark = pytest.mark.skipif(
    not native_tls_available(), reason="rtms_fast._native was built without OpenSSL"
)

SOCKETS = 1000
RECORD = 500  # plaintext bytes per socket per sweep
ROUNDS = 30
GROUP = "tls-decrypt-sweep"
MODES = ["cold", "warm"]
ARENA = 1 << 21


class Peer:
    """A client (native or ssl.SSLObject) and its Python server, joined in memory."""

    def __init__(self, client: Any, incoming: Any, outgoing: Any,
                 server_ctx: ssl.SSLContext, payload: bytes) -> None:
        self.client, self.incoming, self.outgoing = client, incoming, outgoing
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.payload = payload
        for _ in range(8):
            done = 0
            for side, out, into in ((client, outgoing, self.s_in),
                                    (self.server, self.s_out, incoming)):
                try:
                    side.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
                into.write(out.read())
            if done == 2:
                break
        assert client.version() == "TLSv1.3"
        # consume the session tickets now, not in the first timed round
        with contextlib.suppress(ssl.SSLWantReadError):
            client.read(1)

    def record(self) -> bytes:
        self.server.write(self.payload)
        return self.s_out.read()


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("bench-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    rng = np.random.default_rng(7)
    payloads = [rng.integers(0, 256, RECORD, dtype=np.uint8).tobytes() for _ in range(SOCKETS)]
    return {"ca_file": ca_file, "server_ctx": server_ctx, "payloads": payloads}


def _native_peers(setup: dict[str, Any], own_records: bool = True) -> list[Peer]:
    ctx = NativeTLSContext(setup["ca_file"], own_records=own_records)
    peers = []
    for payload in setup["payloads"]:
        obj = ctx.wrap("localhost")
        peers.append(Peer(obj, obj.incoming, obj.outgoing, setup["server_ctx"], payload))
        assert obj.own_records is own_records
    return peers


def _python_peers(setup: dict[str, Any]) -> list[Peer]:
    ctx = ssl.create_default_context(cafile=str(Path(setup["ca_file"])))
    peers = []
    for payload in setup["payloads"]:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        peers.append(Peer(obj, incoming, outgoing, setup["server_ctx"], payload))
    return peers


def _sweep_input(peers: list[Peer]) -> tuple[bytes, list[int], list[int]]:
    """One sweep's ciphertext, laid end to end as the socket arena holds it."""
    records = [p.record() for p in peers]
    starts, pos = [], 0
    for r in records:
        starts.append(pos)
        pos += len(r)
    return b"".join(records), starts, [len(r) for r in records]


def _sweeps(peers: list[Peer], mode: str) -> Any:
    """A function giving the next sweep's input: made on the spot (cold) or taken from
    rounds made up front (warm)."""
    if mode == "cold":
        return lambda: _sweep_input(peers)
    made = [_sweep_input(peers) for _ in range(ROUNDS + 1)]  # + the warm-up round
    made.reverse()
    return made.pop


def _python_loop(peers: list[Peer], arena: memoryview, starts: list[int], lengths: list[int],
                 plain_view: memoryview) -> list[int]:
    """The per-socket loop of the data plane, as in pump._decrypt_inputs."""
    firsts: list[int] = []
    pos = 0
    for peer, start, length in zip(peers, starts, lengths, strict=True):
        tls, incoming = peer.client, peer.incoming
        incoming.write(arena[start : start + length])
        firsts.append(pos)
        while incoming.pending or tls.pending():
            try:
                pos += tls.read(ARENA - pos, plain_view[pos:])
            except ssl.SSLWantReadError:
                break
    firsts.append(pos)
    return firsts


def _check(plain: bytearray, firsts: list[int], peers: list[Peer]) -> None:
    for i, peer in enumerate(peers):
        assert plain[firsts[i] : firsts[i + 1]] == peer.payload, i


def _run_python_loop(benchmark: Any, peers: list[Peer], mode: str, role: str,
                     what: str) -> None:
    plain = bytearray(ARENA)
    plain_view = memoryview(plain)
    result: list[list[int]] = []
    next_sweep = _sweeps(peers, mode)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        data, starts, lengths = next_sweep()
        return (memoryview(data), starts, lengths), {}

    def run(arena: memoryview, starts: list[int], lengths: list[int]) -> None:
        result.append(_python_loop(peers, arena, starts, lengths, plain_view))

    benchmark.group = f"{GROUP}-{mode}"
    benchmark.extra_info.update(items=SOCKETS, unit="messages", role=role, what=what)
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    _check(plain, result[-1], peers)


@pytest.mark.parametrize("mode", MODES)
def test_decrypt_sweep_python_sslobject_anchor(benchmark: Any, tls_setup: dict[str, Any],
                                               mode: str) -> None:
    _run_python_loop(benchmark, _python_peers(tls_setup), mode, "anchor",
                     "ssl.SSLObject + MemoryBIO, Python loop")


@pytest.mark.parametrize("mode", MODES)
def test_decrypt_sweep_native_objects(benchmark: Any, tls_setup: dict[str, Any],
                                      mode: str) -> None:
    _run_python_loop(benchmark, _native_peers(tls_setup), mode, "subject",
                     "NativeTLSObject (drop-in), same Python loop")


@pytest.mark.parametrize("layer", ["own-records", "openssl-records"])
@pytest.mark.parametrize("mode", MODES)
def test_decrypt_sweep_native_batch(benchmark: Any, tls_setup: dict[str, Any],
                                    mode: str, layer: str) -> None:
    own = layer == "own-records"
    peers = _native_peers(tls_setup, own_records=own)
    next_sweep = _sweeps(peers, mode)
    n = len(peers)
    # numpy-backed arrays, as the data plane holds them
    conns = ffi.new("rtms_tls_conn *[]", [p.client.native_handle for p in peers])
    bufs = np.zeros(n, np.uint64)
    lens = np.zeros(n, np.uint64)
    offsets = np.zeros(n, np.uint64)
    out_lens = np.zeros(n, np.uint64)
    status = np.zeros(n, np.int32)
    p_bufs = ffi.cast("const uint8_t *const *", ffi.from_buffer(bufs))
    p_lens = ffi.cast("size_t *", ffi.from_buffer(lens))
    p_offsets = ffi.cast("size_t *", ffi.from_buffer(offsets))
    p_out_lens = ffi.cast("size_t *", ffi.from_buffer(out_lens))
    p_status = ffi.cast("int32_t *", ffi.from_buffer(status))
    plain = bytearray(ARENA)
    p_plain = ffi.from_buffer("uint8_t[]", plain)
    arena = np.zeros(ARENA, np.uint8)
    arena_address = int(ffi.cast("uintptr_t", ffi.from_buffer(arena)))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        data, starts, lengths = next_sweep()
        arena[: len(data)] = np.frombuffer(data, np.uint8)
        bufs[:] = np.asarray(starts, np.uint64) + np.uint64(arena_address)
        lens[:] = lengths
        return (), {}

    def run() -> int:
        return int(lib.rtms_tls_decrypt_batch(conns, p_bufs, p_lens, n, p_plain, ARENA,
                                              p_offsets, p_out_lens, p_status))

    benchmark.group = f"{GROUP}-{mode}"
    benchmark.extra_info.update(
        items=SOCKETS, unit="messages", role="subject",
        what="rtms_tls_decrypt_batch, one call per sweep, "
             + ("own TLS 1.3 record layer" if own else "OpenSSL SSL_read per record"))
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert (status == STATUS_OK).all()
    assert (out_lens == RECORD).all()
    _check(plain, [*offsets.tolist(), int(offsets[-1] + out_lens[-1])], peers)
