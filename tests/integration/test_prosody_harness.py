"""The Prosody test harness itself, checked with nothing but the standard library."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import time
from pathlib import Path

from _prosody import ProsodyInstance, run_prosody

TIMEOUT = 5.0
STREAM_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def _read_until(sock: socket.socket, *markers: bytes) -> bytes:
    """Read until one of ``markers`` has arrived; bounded by TIMEOUT overall."""
    deadline = time.monotonic() + TIMEOUT
    data = b""
    while not any(m in data for m in markers):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {markers!r}; got {data!r}")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed waiting for {markers!r}; got {data!r}")
        data += chunk
    return data


def _context(prosody: ProsodyInstance) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(prosody.cafile))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    return ctx


def _starttls_login(
    prosody: ProsodyInstance, user: str, password: str, mechanism: bytes = b"PLAIN"
) -> bytes:
    with socket.create_connection((prosody.host, prosody.c2s_port), timeout=TIMEOUT) as raw:
        raw.sendall(STREAM_HEADER)
        assert b"<starttls" in _read_until(raw, b"</stream:features>")
        raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert b"<proceed" in _read_until(raw, b"<proceed", b"<failure")
        with _context(prosody).wrap_socket(raw, server_hostname=prosody.domain) as tls:
            tls.sendall(STREAM_HEADER)
            features = _read_until(tls, b"</stream:features>")
            assert b"<mechanism>" + mechanism + b"</mechanism>" in features
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            auth = (
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )
            tls.sendall(auth.encode())
            return _read_until(tls, b"<success", b"<failure")


def test_plain_c2s_offers_starttls(prosody: ProsodyInstance) -> None:
    with socket.create_connection((prosody.host, prosody.c2s_port), timeout=TIMEOUT) as sock:
        sock.sendall(STREAM_HEADER)
        reply = _read_until(sock, b"</stream:features>")
    assert b"<stream:features>" in reply
    assert b"<starttls" in reply
    # c2s_require_encryption: no SASL before TLS.
    assert b"<mechanisms" not in reply


def test_direct_tls_verifies_with_cafile(prosody: ProsodyInstance) -> None:
    with (
        socket.create_connection(
            (prosody.host, prosody.c2s_direct_tls_port), timeout=TIMEOUT
        ) as raw,
        _context(prosody).wrap_socket(raw, server_hostname=prosody.domain) as tls,
    ):
        assert tls.version() is not None
        tls.sendall(STREAM_HEADER)
        reply = _read_until(tls, b"</stream:features>")
    assert b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" in reply
    assert b"<starttls" not in reply


def test_https_verifies_by_ip(prosody: ProsodyInstance) -> None:
    with (
        socket.create_connection((prosody.host, prosody.https_port), timeout=TIMEOUT) as raw,
        _context(prosody).wrap_socket(raw, server_hostname=prosody.host) as tls,
    ):
        tls.sendall(b"GET /xmpp-websocket HTTP/1.0\r\nHost: localhost\r\n\r\n")
        assert _read_until(tls, b"\r\n").startswith(b"HTTP/1.0 200")


def test_starttls_then_sasl_plain(prosody: ProsodyInstance) -> None:
    assert b"<success" in _starttls_login(prosody, "alice", prosody.users["alice"])
    assert b"<success" in _starttls_login(prosody, "bob", prosody.users["bob"])


def test_sasl_plain_wrong_password(prosody: ProsodyInstance) -> None:
    reply = _starttls_login(prosody, "alice", "not-alicepass")
    assert b"<failure" in reply
    assert b"not-authorized" in reply


def test_plain_websocket_upgrade(prosody: ProsodyInstance) -> None:
    assert prosody.websocket_url == f"ws://127.0.0.1:{prosody.http_port}/xmpp-websocket"
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /xmpp-websocket HTTP/1.1\r\n"
        f"Host: {prosody.host}:{prosody.http_port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: xmpp\r\n\r\n"
    )
    with socket.create_connection((prosody.host, prosody.http_port), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode())
        reply = _read_until(sock, b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 101")
    assert b"xmpp" in reply.lower()


def test_sha256_instance_and_clean_shutdown(tmp_path: Path) -> None:
    users = {"carol": "carolpass", "dave.o-x": "davepass"}  # '.', '-' are %-encoded on disk
    with run_prosody(tmp_path, users, password_hash="SHA-256") as server:
        pid = server.pid
        assert int((tmp_path / "prosody.pid").read_text().strip()) == pid
        account = (server.data_dir / "localhost" / "accounts" / "carol.dat").read_text()
        assert '["iteration_count"] = 10000;' in account
        assert b"<success" in _starttls_login(server, "carol", "carolpass", b"SCRAM-SHA-256")
        assert b"<failure" in _starttls_login(server, "carol", "wrong", b"SCRAM-SHA-256")
        assert (server.data_dir / "localhost" / "accounts" / "dave%2eo%2dx.dat").is_file()
        assert b"<success" in _starttls_login(server, "dave.o-x", "davepass", b"SCRAM-SHA-256")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"prosody (pid {pid}) still running after run_prosody exited")
