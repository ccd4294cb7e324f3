"""`bulktag api` as a real process against hostile HTTP: huge bodies, foreign Host
headers (DNS rebinding), absurd thumbnail indices (issue 16, finding 4).

Requests go over a raw socket (``http.client``) so the test controls exactly what the
server sees: a ``Content-Length`` far beyond what is sent, a chunked body that never
ends, a ``Host`` header naming another site.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_dashboard import ApiProcess
from tests.integration.test_api import photo

StartApi = Callable[..., ApiProcess]
MAX_BODY = 64 * 1024  # small cap so the test stays fast; the default is 16 MiB


def api_env(redis_url: str, root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    env.update(
        BULKTAG_REDIS_URL=redis_url,
        BULKTAG_ALLOWED_ROOTS=str(root),
        BULKTAG_API_MAX_BODY=str(MAX_BODY),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture
def start_api(redis_url: str, tmp_path: Path) -> Iterator[StartApi]:
    started: list[ApiProcess] = []

    def start(**extra: str) -> ApiProcess:
        server = ApiProcess(api_env(redis_url, tmp_path, **extra), tmp_path / "api.log")
        started.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop()


def request(
    api: ApiProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_body_over_the_cap_is_413_before_it_is_read(start_api: StartApi) -> None:
    api = start_api()
    # Given a request that announces 100 MB and sends only its first 1 KB
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    sock.sendall(
        b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n" + b"{" + b" " * 1023
    )
    # Then the server answers 413 at once, without waiting for the other 99.99 MB
    started = time.monotonic()
    reply = sock.recv(4096)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    answered = time.monotonic() - started
    assert answered < 5
    print(f"\n413 for an announced 100 MB body after {answered * 1000:.0f} ms")

    # And a chunked body (no Content-Length) is cut off once it passes the cap
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    sock.sendall(
        b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 16384
    sent = 0
    reply = b""
    sock.settimeout(0.2)
    while sent < 50 * MAX_BODY and not reply:
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:  # the server closed the connection after answering
            break
        sent += len(piece)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            continue
    if not reply:
        sock.settimeout(5)
        reply = sock.recv(4096)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent <= MAX_BODY + 4 * len(piece), f"server read {sent} bytes before refusing"
    print(f"chunked body refused after {sent} bytes sent (cap {MAX_BODY})")

    # And a body under the cap still works, and a single URI of 1 MB cannot sneak past it
    ok, _ = request(api, "GET", "/jobs", host="localhost")
    assert ok == 200
    huge_uri = json.dumps({"uris": ["https://example.com/" + "a" * MAX_BODY]}).encode()
    status, body = request(api, "POST", "/jobs", huge_uri, host="localhost")
    assert status == 413, body
    assert api.proc.poll() is None


def test_host_header_must_be_a_loopback_name_by_default(
    start_api: StartApi, tmp_path: Path
) -> None:
    api = start_api()
    port = api.port
    # Loopback names, with and without port, are answered
    for host in (
        "localhost",
        f"localhost:{port}",
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "[::1]",
        f"[::1]:{port}",
        "LOCALHOST",
    ):
        status, body = request(api, "GET", "/jobs", host=host)
        assert status == 200, (host, body)
    # A rebinding page's name is refused on every route, including a job submission
    folder = tmp_path / "photos"
    photo(folder / "a.jpg")
    submit = json.dumps({"source": str(folder), "job": "rebound"}).encode()
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "[::2]"):
        status, body = request(api, "POST", "/jobs", submit, host=host)
        assert status == 400, (host, body)
        assert b"Invalid host header" in body
    assert request(api, "GET", "/jobs/rebound", host="localhost")[0] == 404
    # Only /healthz answers any name (probes call it by address; it reveals no job)
    assert request(api, "GET", "/healthz", host="evil.example")[0] == 200


def test_host_check_applies_with_a_token_and_follows_the_allow_list(start_api: StartApi) -> None:
    token = "guard-token"
    auth = {"Authorization": f"Bearer {token}"}
    api = start_api(
        BULKTAG_API_TOKEN=token, BULKTAG_API_ALLOWED_HOSTS="tagger.internal, 10.0.0.5:8080"
    )
    assert request(api, "GET", "/jobs", host="tagger.internal:9999", headers=auth)[0] == 200
    assert request(api, "GET", "/jobs", host="10.0.0.5", headers=auth)[0] == 200
    # The list replaces the loopback default, and a right token does not excuse a wrong name
    assert request(api, "GET", "/jobs", host="localhost", headers=auth)[0] == 400
    assert request(api, "GET", "/jobs", host="evil.example", headers=auth)[0] == 400
    api.stop()

    anything = start_api(BULKTAG_API_ALLOWED_HOSTS="*")
    assert request(anything, "GET", "/jobs", host="whatever.example")[0] == 200


def test_a_huge_thumbnail_index_is_404(start_api: StartApi, tmp_path: Path) -> None:
    api = start_api()
    folder = tmp_path / "photos"
    photo(folder / "a.jpg")
    body = json.dumps({"source": str(folder), "job": "thumbs"}).encode()
    assert request(api, "POST", "/jobs", body, host="localhost")[0] in (201, 202)
    for index in ("1", "9223372036854775807", "9223372036854775808", "9" * 40):
        status, reply = request(api, "GET", f"/jobs/thumbs/thumbs/{index}", host="localhost")
        assert status == 404, (index, reply)
    assert request(api, "GET", "/jobs/thumbs/thumbs/0", host="localhost")[0] == 200
