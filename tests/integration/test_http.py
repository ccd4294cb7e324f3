"""HTTP sources against a real local HTTP server: retries, timeouts, caps, redirects, SSRF.

The server (``http.server`` in a thread on 127.0.0.1) counts requests per path, so a
retry is proven by the count, not assumed. Because the server is on loopback, every
test that expects a fetch to reach it opts in with ``allow_private_networks`` (the
setting behind ``BULKTAG_ALLOW_PRIVATE_NETWORKS``); one test shows the default refusing.
"""

from __future__ import annotations

import io
import json
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from PIL import Image

import tasks.fetch_http as fetch_http_module
from tasks import ssrf
from tasks.errors import NotAllowed, NotFound, PermanentUriError, TooLarge, TransientUriError
from tasks.fetch import fetch_bytes
from tasks.settings import Settings
from tests.servers import BULKTAG, REPO, running_worker

CAP = 200_000  # byte cap for these tests; every good image is far below it
SLOW = 1.5  # seconds the slow route stalls; the read timeout below is 0.4 s
DRIP = 0.2  # seconds between the drip route's bytes: well inside the read timeout


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


class PhotoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.images = {f"/img/{n}.jpg": jpeg(320 + 16 * n, 240) for n in range(3)}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hung up on purpose: a timeout or the byte cap
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PhotoServer

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            hits = self.server.hits[self.path]
        path = self.path
        if path in self.server.images:
            self.send(200, self.server.images[path], Content_Type="image/jpeg")
        elif path == "/flaky.jpg":  # 500 once, then the image
            self.send(500) if hits == 1 else self.send(200, self.server.images["/img/0.jpg"])
        elif path == "/always-503.jpg":
            self.send(503)
        elif path == "/forbidden.jpg":
            self.send(403)
        elif path == "/slow.jpg":
            time.sleep(SLOW)
            self.send(200, self.server.images["/img/0.jpg"])
        elif path == "/drip.jpg":  # one byte every DRIP s: each read beats the read timeout
            self.send_response(200)
            self.send_header("Content-Length", "50")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\xff")
                time.sleep(DRIP)
        elif path == "/huge-declared.jpg":
            self.send(200, b"\xff" * (CAP + 1))
        elif path == "/huge-streamed.jpg":  # no Content-Length: only counting can stop it
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\xff" * 16_384)
            self.close_connection = True
        elif path == "/loop-a":
            self.send(302, Location="/loop-b")
        elif path == "/loop-b":
            self.send(302, Location="/loop-a")
        elif path.startswith("/hop/"):  # /hop/N -> /hop/N+1: a long, loop-free chain
            self.send(301, Location=f"/hop/{int(path[5:]) + 1}")
        elif path == "/moved.jpg":
            self.send(307, Location="/img/1.jpg")
        elif path == "/to-other-host":
            self.send(302, Location=self.server.url("/img/1.jpg", host="127.0.0.2"))
        else:
            self.send(404)


@pytest.fixture(scope="module")
def server() -> Iterator[PhotoServer]:
    srv = PhotoServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def trusted() -> Settings:
    """Settings for a trusted internal deployment, with short timeouts for the tests."""
    return Settings(
        allow_private_networks=True,
        read_timeout=0.4,
        connect_timeout=1.0,
        fetch_attempts=3,
        fetch_backoff=0.05,
        max_bytes=CAP,
        max_redirects=5,
    )


def test_images_are_fetched_and_a_redirect_is_followed(
    server: PhotoServer, trusted: Settings
) -> None:
    assert fetch_bytes(server.url("/img/2.jpg"), trusted) == server.images["/img/2.jpg"]
    assert fetch_bytes(server.url("/moved.jpg"), trusted) == server.images["/img/1.jpg"]


def test_404_and_403_are_final_without_a_retry(server: PhotoServer, trusted: Settings) -> None:
    with pytest.raises(NotFound, match="HTTP 404 Not Found"):
        fetch_bytes(server.url("/nope.jpg"), trusted)
    with pytest.raises(NotAllowed, match="HTTP 403 Forbidden"):
        fetch_bytes(server.url("/forbidden.jpg"), trusted)
    assert server.hits["/nope.jpg"] == 1
    assert server.hits["/forbidden.jpg"] == 1


def test_a_500_is_retried_and_the_second_answer_used(
    server: PhotoServer, trusted: Settings
) -> None:
    server.hits["/flaky.jpg"] = 0
    assert fetch_bytes(server.url("/flaky.jpg"), trusted) == server.images["/img/0.jpg"]
    assert server.hits["/flaky.jpg"] == 2


def test_a_persistent_5xx_gives_up_after_every_attempt(
    server: PhotoServer, trusted: Settings
) -> None:
    with pytest.raises(TransientUriError, match=r"HTTP 503 .* \(gave up after 3 attempts\)"):
        fetch_bytes(server.url("/always-503.jpg"), trusted)
    assert server.hits["/always-503.jpg"] == 3


def test_a_response_slower_than_the_read_timeout_is_abandoned(
    server: PhotoServer, trusted: Settings
) -> None:
    settings = replace(trusted, fetch_attempts=2)
    started = time.monotonic()
    with pytest.raises(TransientUriError, match=r"read timeout .* \(gave up after 2 attempts\)"):
        fetch_bytes(server.url("/slow.jpg"), settings)
    assert time.monotonic() - started < 2 * SLOW  # did not wait the server out
    assert server.hits["/slow.jpg"] == 2


def test_a_slow_drip_body_is_cut_off_at_the_fetch_deadline(
    server: PhotoServer, trusted: Settings
) -> None:
    # Given a server that keeps every read alive (a byte per DRIP s, read timeout 0.4 s)
    # but would take 10 s to send its 50 bytes, and a 1 s deadline per attempt
    settings = replace(trusted, fetch_deadline=1.0, fetch_attempts=1)
    started = time.monotonic()
    # When the URI is fetched
    with pytest.raises(TransientUriError, match=r"longer than 1s \(BULKTAG_FETCH_DEADLINE\)"):
        fetch_bytes(server.url("/drip.jpg"), settings)
    # Then the deadline, not the server, ended the download
    assert time.monotonic() - started < 2.0
    assert server.hits["/drip.jpg"] == 1


def test_bodies_past_the_byte_cap_are_refused(server: PhotoServer, trusted: Settings) -> None:
    with pytest.raises(TooLarge, match="Content-Length is 200001 bytes"):
        fetch_bytes(server.url("/huge-declared.jpg"), trusted)
    with pytest.raises(TooLarge, match="body is over the 200000-byte limit"):
        fetch_bytes(server.url("/huge-streamed.jpg"), trusted)


def test_redirect_loops_and_long_chains_end_with_a_reason(
    server: PhotoServer, trusted: Settings
) -> None:
    with pytest.raises(PermanentUriError, match="redirect loop"):
        fetch_bytes(server.url("/loop-a"), trusted)
    with pytest.raises(PermanentUriError, match=r"too many redirects \(more than 5\)"):
        fetch_bytes(server.url("/hop/0"), trusted)
    assert server.hits["/hop/5"] == 1 and server.hits["/hop/6"] == 0


def test_the_ssrf_guard_refuses_loopback_unless_allowed(server: PhotoServer) -> None:
    # Given the default settings (guard on) read from an environment without the flag
    settings = Settings.from_env({})
    assert settings.allow_private_networks is False
    before = sum(server.hits.values())
    # When a loopback URL is fetched, by IP or by a name that resolves to it
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(NotAllowed, match="refused by the SSRF guard"):
            fetch_bytes(server.url("/img/0.jpg", host=host), settings)
    # Then the server never saw a request
    assert sum(server.hits.values()) == before
    # And the operator's setting lets the same URL through
    allowed = Settings.from_env({"BULKTAG_ALLOW_PRIVATE_NETWORKS": "true"})
    assert fetch_bytes(server.url("/img/0.jpg"), allowed) == server.images["/img/0.jpg"]


def test_every_redirect_hop_is_checked(
    server: PhotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Treat 127.0.0.1 as public and the rest of loopback as private: the first hop passes,
    # and the redirect to 127.0.0.2 must be caught by the check on the second hop.
    real = ssrf.blocked_reason
    monkeypatch.setattr(
        ssrf,
        "blocked_reason",
        lambda ip: None if str(ip) == "127.0.0.1" else real(ip),
    )
    target_before = server.hits["/img/1.jpg"]
    with pytest.raises(NotAllowed, match=r"127\.0\.0\.2, a loopback address"):
        fetch_bytes(server.url("/to-other-host"), Settings(read_timeout=1.0))
    assert server.hits["/to-other-host"] == 1  # the first hop was made
    assert server.hits["/img/1.jpg"] == target_before  # the second never was


def test_a_worker_job_over_http_ends_every_uri_with_a_record(
    server: PhotoServer,
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a worker trusted to read the loopback server, with short timeouts
    env = {
        **worker_env,
        "BULKTAG_ALLOW_PRIVATE_NETWORKS": "true",
        "BULKTAG_READ_TIMEOUT": "0.4",
        "BULKTAG_FETCH_ATTEMPTS": "2",
        "BULKTAG_FETCH_BACKOFF": "0.05",
        "BULKTAG_MAX_BYTES": str(CAP),
    }
    server.hits["/flaky.jpg"] = 0
    good = [server.url(p) for p in server.images] + [server.url("/flaky.jpg")]
    bad = {
        server.url("/nope.jpg"): "HTTP 404 Not Found",
        server.url("/slow.jpg"): "read timeout",
        server.url("/huge-streamed.jpg"): "over the 200000-byte limit",
        server.url("/loop-a"): "redirect loop",
        server.url("/always-503.jpg"): "gave up after 2 attempts",
    }
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(good + list(bad)) + "\n")

    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        # When the URLs are submitted as one job and waited for
        run = subprocess.run(
            [*BULKTAG, "submit", f"@{listing}", "--job", "web", "--chunk-size", "4", "--wait"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        out = subprocess.run(
            [*BULKTAG, "results", "web"], cwd=REPO, env=env, capture_output=True, text=True
        )
    records = {r["uri"]: r for r in map(json.loads, out.stdout.splitlines())}

    # Then every URI has a final record: the good ones ok, each bad one with its reason
    assert set(records) == set(good) | set(bad)
    assert all(records[u]["status"] == "ok" and len(records[u]["top3"]) == 3 for u in good)
    for uri, reason in bad.items():
        assert records[uri]["status"] == "error" and reason in records[uri]["error"], uri
    assert server.hits["/flaky.jpg"] == 2  # the 500 was retried inside the worker


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` (and a key), valid for an hour; its own CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_goes_to_the_checked_address_but_verifies_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an HTTPS server for "localhost" whose certificate the client trusts
    cert, key = self_signed(tmp_path, "localhost")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust store
    fetch_http_module._pool_manager.cache_clear()
    srv = PhotoServer()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    trusted = Settings(allow_private_networks=True, fetch_attempts=1)
    try:
        # When it is fetched by name, the connection goes to the resolved address, and
        # TLS still names (SNI) and verifies "localhost"
        data = fetch_bytes(f"https://localhost:{port}/img/0.jpg", trusted)
        assert data == srv.images["/img/0.jpg"]
        assert names and set(names) == {"localhost"}
        # And a certificate that does not match the URL's host is refused, not retried
        with pytest.raises(PermanentUriError, match=r"TLS error .* doesn't match 'localhost'"):
            fetch_bytes(f"https://127.0.0.1:{port}/img/0.jpg", trusted)
    finally:
        srv.shutdown()
        srv.server_close()
        fetch_http_module._pool_manager.cache_clear()
