"""Run under AddressSanitizer + UBSan by tests/test_sanitizers.py (never imported by pytest).

Usage: python _sanitizer_driver.py <build dir> <module name> <corpus dir> <mutations>

Drives the sanitized build's ``lib`` directly (rtms_fast.native would load the normal
build): every parser on exact-size native copies of its input (so a one-byte overread
lands in a redzone), with tight output capacities too, and the batched ingest kernel
on the seed corpus plus seeded random mutations, split into random reads.
"""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path
from typing import Any

build_dir, module_name, corpus_dir, n_mutations = sys.argv[1:5]
sys.path.insert(0, build_dir)
native = importlib.import_module(module_name)
ffi, lib = native.ffi, native.lib


def exact(data: bytes) -> Any:
    """An exact-size native copy of ``data`` (NULL for empty input)."""
    if not data:
        return ffi.NULL
    buf = ffi.new("uint8_t[]", len(data))
    ffi.memmove(buf, data, len(data))
    return buf


def parsers(data: bytes, rng: random.Random) -> None:
    src = exact(data)
    n = len(data)
    frame = ffi.new("rtms_ws_frame *")
    lib.rtms_ws_parse_header(src, n, 1 << 20, rng.randrange(2), frame)
    for cap in (0, n // 2, int(lib.rtms_b64_decoded_max(n))):
        out = ffi.new("uint8_t[]", max(cap, 1))
        lib.rtms_b64_decode(src, n, out, cap)
        lib.rtms_json_unescape(src, n, out, cap)
    msg = ffi.new("rtms_media_msg *")
    for mode in range(4):
        if lib.rtms_media_msg_scan(src, n, mode, msg) == 0 and msg.has_data:
            body = data[msg.data_off : msg.data_off + msg.data_len]
            assert len(body) == msg.data_len
    rtp = ffi.new("rtms_rtp_header *")
    if lib.rtms_rtp_parse(src, n, rng.choice([-1, 0, 8, 9]), rtp) == 0:
        assert rtp.payload_off + rtp.payload_len <= n
    if n:
        enc = ffi.new("uint8_t[]", n + 14)
        lib.rtms_ws_encode(
            rng.choice([0, 1, 2, 8, 9, 10, 3]),
            1,
            src,
            n,
            ffi.NULL if rng.random() < 0.5 else exact(b"abcd"),
            enc,
            n + 14,
        )
        lib.rtms_ws_encode(1, 1, src, n, ffi.NULL, enc, n // 2)
        b64 = ffi.new("uint8_t[]", (n + 2) // 3 * 4)
        lib.rtms_b64_encode(src, n, b64)


CONFIGS = [
    # codec, content, in rate, channels, out rate, float, mixed, masked, policy
    (2, 1, 8000, 1, 8000, 0, 0, 0, 0),
    (100, 2, 8000, 1, 16000, 1, 0, 1, 1),
    (1, 2, 16000, 2, 48000, 0, 0, 0, 2),
    (1, 2, 48000, 1, 8000, 1, 1, 1, 0),
    (3, 1, 16000, 1, 16000, 0, 0, 0, 0),
    (3, 2, 16000, 1, 24000, 1, 0, 0, 1),
]


def new_conn(cfg_tuple: tuple[int, ...], budget: Any) -> Any:
    codec, content, rate_in, ch, rate_out, flt, mixed, masked, policy = cfg_tuple
    cfg = ffi.new("rtms_ingest_config *")
    cfg.codec, cfg.content_type, cfg.input_rate_hz, cfg.channels = codec, content, rate_in, ch
    cfg.output_rate_hz, cfg.sample_format, cfg.mixed, cfg.allow_masked = (
        rate_out,
        flt,
        mixed,
        masked,
    )
    cfg.ring_policy, cfg.max_participants, cfg.fill_gaps = policy, 3, 1
    cfg.rtp_payload_type = -1
    cfg.ring_capacity_items = 4000
    cfg.max_message_bytes = 3000
    cfg.max_gap_ms = 2000
    cfg.budget = budget
    conn = lib.rtms_ingest_conn_new(cfg, ffi.NULL)
    assert conn != ffi.NULL, cfg_tuple
    return ffi.gc(conn, lib.rtms_ingest_conn_free)


def ingest(streams: list[bytes], rng: random.Random, pool: list[Any]) -> None:
    """Feed streams[i] to a connection from the pool, in random reads, in one batch."""
    n = len(streams)
    conns = rng.sample(pool, n)
    for c in conns:
        lib.rtms_ingest_conn_reset(c)  # may have failed on the previous stream
    conn_arr = ffi.new("rtms_ingest_conn *[]", conns)
    pending = [b""] * n
    pos = [0] * n
    max_records = rng.choice([2, 3, 16])
    records = ffi.new("rtms_ingest_record[]", max_records)
    consumed = ffi.new("size_t[]", n)
    status = ffi.new("uint32_t *")
    stats = ffi.new("rtms_ingest_stats *")
    for _ in range(200):
        for i in range(n):
            step = rng.randrange(0, 400)
            pending[i] += streams[i][pos[i] : pos[i] + step]
            pos[i] += step
        keep = [exact(p) for p in pending]
        bufs = ffi.new("const uint8_t *[]", keep)
        lens = ffi.new("size_t[]", [len(p) for p in pending])
        count = lib.rtms_ingest_batch(
            conn_arr, bufs, lens, n, consumed, records, max_records, status
        )
        assert count <= max_records
        for k in range(count):
            r = records[k]
            if r.flags & 1:
                base = lib.rtms_ingest_conn_reassembly(conns[r.conn])
                assert r.offset + r.length <= 3000
                bytes(ffi.buffer(base + r.offset, r.length))
            elif r.flags & 2:
                assert r.length <= 125
            else:
                assert r.offset + r.length <= len(pending[r.conn])
            if r.kind == 3 and r.error == 0 and rng.random() < 0.5:
                ring = lib.rtms_ingest_slot_ring(conns[r.conn], r.slot)
                out = ffi.new("uint8_t[]", 4 * 8192)
                lib.rtms_ring_read(ring, out, 8192)
        for i in range(n):
            assert consumed[i] <= len(pending[i])
            pending[i] = pending[i][consumed[i] :]
            lib.rtms_ingest_conn_stats(conns[i], stats)
        if all(pos[i] >= len(streams[i]) for i in range(n)) and not status[0]:
            break
    info = ffi.new("rtms_ingest_slot_info *")
    for c in conns:
        for s in range(lib.rtms_ingest_conn_slot_count(c)):
            lib.rtms_ingest_slot_get_info(c, s, info)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        if not buf:
            buf.append(rng.randrange(256))
            continue
        i = rng.randrange(len(buf))
        op = rng.randrange(5)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.choice([0, 0x7E, 0x7F, 0x80, 0xFF, ord('"'), ord("\\"), ord("{")])
        elif op == 2:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
        elif op == 3:
            del buf[i : i + rng.randrange(1, 30)]
        else:
            buf[i:i] = buf[i : i + rng.randrange(1, 60)]
    return bytes(buf)


# ---- the TLS client (tls.c) against Python's TLS server, over memory BIOs ----------------------
class TLSLink:
    """One native client conn and a Python server SSLObject; bytes carried by hand, every
    buffer crossing into C an exact-size native copy."""

    def __init__(self, ctx: Any, server_ctx: Any, host: bytes) -> None:
        import ssl

        err = ffi.new("char[]", lib.RTMS_TLS_ERR_CAP)
        conn = lib.rtms_tls_conn_new(ctx, host, err, lib.RTMS_TLS_ERR_CAP)
        assert conn != ffi.NULL, ffi.string(err)
        self.conn = ffi.gc(conn, lib.rtms_tls_conn_free)
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.expected = bytearray()  # sent by the server, not yet decrypted
        self.held = b""  # ciphertext kept back for a later feed
        self.closing = False  # the server sent its close_notify: it writes no more
        self.unpredictable = False  # bytes were corrupted or withdrawn: skip the checks

    def take_output(self) -> bytes:
        n = int(lib.rtms_tls_output_pending(self.conn))
        if not n:
            return b""
        buf = ffi.new("uint8_t[]", n)
        assert lib.rtms_tls_take_output(self.conn, buf, n) == n
        return bytes(ffi.buffer(buf, n))

    def feed(self, data: bytes) -> None:
        assert lib.rtms_tls_feed(self.conn, exact(data), len(data)) == len(data)

    def handshake(self) -> bool:
        import ssl

        for _ in range(6):
            code = lib.rtms_tls_handshake(self.conn)
            self.s_in.write(self.take_output())
            if code not in (lib.RTMS_TLS_OK, lib.RTMS_TLS_WANT_READ):
                ffi.string(lib.rtms_tls_conn_error(self.conn))
                ffi.string(lib.rtms_tls_verify_message(self.conn))
                return False
            try:
                self.server.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
            self.feed(self.s_out.read())
            if code == lib.RTMS_TLS_OK and self.server.version() is not None:
                ffi.string(lib.rtms_tls_version(self.conn))
                return True
        return False

    def read_rest(self, rng: random.Random) -> tuple[bytes, bool]:
        """rtms_tls_read into exact-size buffers of random sizes until it wants input;
        the bytes, and whether the connection is still live."""
        got = bytearray()
        while True:
            cap = rng.choice([1, 7, 100, 5000])
            buf = ffi.new("uint8_t[]", cap)
            n = lib.rtms_tls_read(self.conn, buf, cap)
            if n <= 0:
                return bytes(got), n == lib.RTMS_TLS_WANT_READ
            got += ffi.buffer(buf, n)


def tls(rng: random.Random) -> None:
    if not lib.rtms_tls_available():
        print("sanitizer driver: TLS unavailable in this build, skipped")
        return
    import contextlib
    import ssl
    import tempfile

    import trustme

    ca = trustme.CA()
    servers = []
    for maximum in (None, ssl.TLSVersion.TLSv1_2):
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(sctx)
        if maximum is not None:
            sctx.maximum_version = maximum
        servers.append(sctx)
    err = ffi.new("char[]", lib.RTMS_TLS_ERR_CAP)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(path))
        ctx = lib.rtms_tls_ctx_new(str(path).encode(), 1, err, lib.RTMS_TLS_ERR_CAP)
        assert ctx != ffi.NULL, ffi.string(err)
        # a second context whose connections receive through OpenSSL's SSL_read, not the
        # own TLS 1.3 record layer; both take the same beating below
        raw_openssl = lib.rtms_tls_ctx_new(str(path).encode(), 1, err, lib.RTMS_TLS_ERR_CAP)
        assert raw_openssl != ffi.NULL, ffi.string(err)
        assert lib.rtms_tls_ctx_new(b"/nonexistent.pem", 1, err, 40) == ffi.NULL
    ctx = ffi.gc(ctx, lib.rtms_tls_ctx_free)
    ctx_openssl = ffi.gc(raw_openssl, lib.rtms_tls_ctx_free)
    lib.rtms_tls_ctx_set_own_records(ctx_openssl, 0)
    lib.rtms_tls_ctx_set_own_records(ffi.NULL, 0)  # ignored
    assert lib.rtms_tls_ctx_set_ciphersuites(ctx, b"nonsense", err, 40) == lib.RTMS_TLS_ERROR
    # failures: a wrong name, an IP mismatch, garbage from the server
    for host in (b"wrong.example", b"127.0.0.9"):
        assert not TLSLink(ctx, servers[0], host).handshake()
    junk = TLSLink(ctx, servers[1], b"localhost")
    lib.rtms_tls_handshake(junk.conn)
    junk.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert lib.rtms_tls_handshake(junk.conn) == lib.RTMS_TLS_ERROR

    def fresh() -> TLSLink:
        link = TLSLink(rng.choice([ctx, ctx_openssl]), rng.choice(servers),
                       rng.choice([b"localhost", b"127.0.0.1"]))
        assert link.handshake()
        seen["own records"] += lib.rtms_tls_own_records(link.conn)
        return link

    seen = dict.fromkeys(["more", "output", "closed", "error", "plaintext", "own records"], 0)
    links = [fresh() for _ in range(8)]
    for _round in range(400):
        inputs = []
        for link in links:
            for _ in range(0 if link.closing else rng.randrange(0, 4)):
                msg = rng.randbytes(rng.choice([0, 1, 50, 500, 3000, 17000]))
                if msg:
                    link.server.write(msg)
                    link.expected += msg
            wire = link.held + link.s_out.read()
            if wire and rng.random() < 0.02:  # corrupt a byte
                k = rng.randrange(len(wire))
                wire = wire[:k] + bytes([wire[k] ^ 0x10]) + wire[k + 1 :]
                link.unpredictable = True
            cut = rng.randrange(len(wire) + 1) if rng.random() < 0.4 else len(wire)
            inputs.append(wire[:cut])
            link.held = wire[cut:]
        n = len(links)
        keep = [exact(w) for w in inputs]
        conns = ffi.new("rtms_tls_conn *[]", [link.conn for link in links])
        ins = ffi.new("const uint8_t *[]", keep)
        lens = ffi.new("size_t[]", [len(w) for w in inputs])
        offs, outl = ffi.new("size_t[]", n), ffi.new("size_t[]", n)
        status = ffi.new("int32_t[]", n)
        cap = rng.choice([0, 1, 300, 4000, 70000])
        out = ffi.new("uint8_t[]", cap) if cap else ffi.NULL
        total = lib.rtms_tls_decrypt_batch(conns, ins, lens, n, out, cap, offs, outl, status)
        assert 0 <= total <= cap
        for i, link in enumerate(links):
            st = status[i]
            assert offs[i] + outl[i] <= total
            got = bytes(ffi.buffer(out + offs[i], outl[i])) if outl[i] else b""
            seen["more"] += bool(st & lib.RTMS_TLS_STATUS_MORE)
            seen["output"] += bool(st & lib.RTMS_TLS_STATUS_OUTPUT_PENDING)
            seen["closed"] += bool(st & lib.RTMS_TLS_STATUS_CLOSED)
            seen["error"] += bool(st & lib.RTMS_TLS_STATUS_ERROR)
            seen["plaintext"] += outl[i]
            if st & lib.RTMS_TLS_STATUS_MORE:
                rest, live = link.read_rest(rng)
                got += rest
                if not live:
                    st &= ~lib.RTMS_TLS_STATUS_OK
            if not link.unpredictable:
                assert link.expected[: len(got)] == got
                del link.expected[: len(got)]
            if st & lib.RTMS_TLS_STATUS_OUTPUT_PENDING:
                out_bytes = link.take_output()
                try:
                    link.s_in.write(out_bytes)
                    link.server.read(1 << 16)
                except ssl.SSLError:
                    pass
            roll = rng.random()
            if st & lib.RTMS_TLS_STATUS_OK and roll < 0.05:  # the client talks back
                data = rng.randbytes(rng.choice([1, 900, 20000]))
                put = lib.rtms_tls_write(link.conn, exact(data), len(data))
                assert put == len(data), (put, ffi.string(lib.rtms_tls_conn_error(link.conn)))
                link.s_in.write(link.take_output())
                with contextlib.suppress(ssl.SSLError):
                    link.server.read(1 << 16)
            elif st & lib.RTMS_TLS_STATUS_OK and roll < 0.08:
                lib.rtms_tls_key_update(link.conn, rng.randrange(2))
                link.s_in.write(link.take_output())
            elif st & lib.RTMS_TLS_STATUS_OK and roll < 0.10:
                link.closing = True
                with contextlib.suppress(ssl.SSLError):
                    link.server.unwrap()
            elif st & lib.RTMS_TLS_STATUS_OK and roll < 0.11:
                lib.rtms_tls_feed_eof(link.conn)
            elif st & lib.RTMS_TLS_STATUS_OK and roll < 0.12:
                k = int(lib.rtms_tls_input_pending(link.conn))
                buf = ffi.new("uint8_t[]", max(k, 1))
                assert lib.rtms_tls_take_input(link.conn, buf, k) == k
                link.unpredictable = True
            if not st & lib.RTMS_TLS_STATUS_OK:
                ffi.string(lib.rtms_tls_conn_error(link.conn))
                lib.rtms_tls_shutdown(link.conn)
                link.take_output()
                links[i] = fresh()
    # a ctx freed before its conns
    err = ffi.new("char[]", lib.RTMS_TLS_ERR_CAP)
    raw = lib.rtms_tls_ctx_new(ffi.NULL, 0, err, lib.RTMS_TLS_ERR_CAP)
    conn = lib.rtms_tls_conn_new(raw, ffi.NULL, err, lib.RTMS_TLS_ERR_CAP)
    lib.rtms_tls_ctx_free(raw)
    lib.rtms_tls_handshake(conn)
    lib.rtms_tls_conn_free(conn)
    print(f"sanitizer driver: TLS ok {seen}")


def main() -> None:
    rng = random.Random(20261124)
    seeds = [p.read_bytes() for p in sorted(Path(corpus_dir).glob("*.bin"))]
    assert seeds, corpus_dir
    budget = ffi.gc(lib.rtms_budget_new(1 << 22), lib.rtms_budget_free)
    # connections are reused (reset between streams): creating one builds filters and rings
    pool = [new_conn(cfg, budget if k % 2 else ffi.NULL) for cfg in CONFIGS for k in range(3)]
    for data in seeds:
        parsers(data, rng)
        ingest([data], rng, pool)
    ingest(seeds[: len(pool)], rng, pool)
    for _ in range(int(n_mutations)):
        data = mutate(rng.choice(seeds), rng)
        parsers(data, rng)
        # payload-level mutations too: the message inside the first frame
        if len(data) > 4:
            parsers(data[2:], rng)
        streams = [data] + [mutate(rng.choice(seeds), rng) for _ in range(rng.randrange(0, 3))]
        ingest(streams, rng, pool)
    tls(random.Random(20261203))
    print("sanitizer driver: ok")


main()
