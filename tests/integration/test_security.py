"""Nothing gets in: pickled messages are refused, Redis passwords and TLS work end to end.

Real redis-servers (password-protected, TLS with a certificate made here) and real
`bulktag worker` processes; the tampered-checkpoint refusal is a unit test
(tests/unit/test_checkpoint_security.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import pickle
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from kombu import Connection, Producer

from producer.samples import build_corpus
from tasks import keys
from tests.invariants import cli, wait_for, worker_pids
from tests.servers import RedisServer, free_port, need_binary, running_worker

pytestmark = pytest.mark.e2e


class Payload:
    """Unpickling this touches ``marker``: if the file exists, a message ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Only stdlib names in the stream, so any Python process could unpickle it.
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def publish_pickled(url: str, body: object, headers: dict[str, object]) -> None:
    """Put a pickle-serialised message straight on the bulktag queue, as an attacker could."""
    with Connection(url) as conn:
        Producer(conn).publish(
            body, serializer="pickle", exchange="", routing_key="bulktag", headers=headers
        )


def photos(folder: Path, n: int = 3) -> Path:
    build_corpus(folder, n, sizes=[(160, 120)], repeat_fraction=0.0)
    return folder


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_pickled_messages_are_refused_not_executed(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(Payload(armed)))
    assert armed.exists(), "the payload must really run code when unpickled"
    env = {**worker_env, "BULKTAG_METRICS_PORT": "0"}

    with running_worker(env, tmp_path / "worker.log", redis_client, 1) as worker:
        pids = worker_pids(redis_client)
        # When pickled messages arrive: a protocol-2 task and a protocol-1 body
        task_id = str(uuid.uuid4())
        headers = {"lang": "py", "task": "bulktag.tag_chunk", "id": task_id, "root_id": task_id}
        publish_pickled(
            worker_env["BULKTAG_REDIS_URL"], ((Payload(marker), [], {}), {}, {}), headers
        )
        body = {"task": "bulktag.tag_chunk", "id": str(uuid.uuid4()), "args": [Payload(marker)]}
        publish_pickled(worker_env["BULKTAG_REDIS_URL"], body, {})
        wait_for(
            "the messages to be consumed",
            lambda: (
                redis_client.llen(keys.broker_queue("bulktag")) == 0
                and redis_client.hlen(keys.broker_unacked()) == 0
            ),
            30,
        )
        # ...and then a real job, which proves the worker went on past them
        done = cli(env, "submit", str(photos(tmp_path / "ok")), "--job", "after", "--wait")
        assert "3/3 done" in done.stdout
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker_pids(redis_client) == pids

    # Then neither message ran: the marker file was never created
    assert not marker.exists()
    log = (tmp_path / "worker.log").read_text()
    assert log.count("ContentDisallowed") >= 2, log[-3000:]


def test_password_protected_redis_works_and_a_wrong_password_fails_clearly(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", "--requirepass", "c0rrect-h0rse").start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        env = {**worker_env, "BULKTAG_REDIS_URL": server.url, "BULKTAG_METRICS_PORT": "0"}
        # Given the right password in the URL, a job runs end to end
        with running_worker(env, tmp_path / "worker.log", client, 1):
            done = cli(env, "submit", str(photos(tmp_path / "p")), "--job", "pw", "--wait")
            assert "3/3 done" in done.stdout
        assert "ok        3" in cli(env, "status", "pw").stdout

        # A wrong password: one clear line, the password not echoed, for CLI and worker
        wrong = {**env, "BULKTAG_REDIS_URL": f"redis://:n0t-it@127.0.0.1:{server.port}/0"}
        line = one_line_error(cli(wrong, "status", "pw", check=False))
        assert line.startswith("bulktag: error: Redis at redis://***@127.0.0.1:")
        assert "refused our password" in line and "n0t-it" not in line
        line = one_line_error(cli(wrong, "worker", check=False, timeout=60))
        assert "refused our password" in line
        # No password at all
        bare = {**env, "BULKTAG_REDIS_URL": f"redis://127.0.0.1:{server.port}/0"}
        assert "requires a password" in one_line_error(cli(bare, "status", "pw", check=False))
    finally:
        server.stop()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bulktag test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(pem_key(key))
    return paths


def start_tls_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """redis-server listening only on TLS; skips the test if the binary has no TLS."""
    binary = need_binary("redis-server")
    ca, cert, key = make_tls_files(folder / "tls")
    port = free_port()
    log = folder / "redis.log"
    args = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, port, ca
        except redis.ConnectionError:
            if proc.poll() is not None:
                text = log.read_text(errors="replace")
                if "tls" in text.lower() and (
                    "support" in text.lower() or "bad directive" in text.lower()
                ):
                    pytest.skip(f"redis-server built without TLS: {text.strip()[-200:]}")
                raise RuntimeError(f"TLS redis-server did not start: {text[-500:]}") from None
            assert time.monotonic() < deadline, "TLS redis-server did not answer"
            time.sleep(0.05)


def test_rediss_url_works_end_to_end_and_verifies_the_certificate(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    proc, port, ca = start_tls_redis(tmp_path / "redis-tls")
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        client = redis.Redis.from_url(url, decode_responses=True)
        env = {**worker_env, "BULKTAG_REDIS_URL": url, "BULKTAG_METRICS_PORT": "0"}
        # Given a TLS-only Redis and a URL naming the CA, a job runs end to end
        with running_worker(env, tmp_path / "worker.log", client, 1):
            done = cli(env, "submit", str(photos(tmp_path / "p")), "--job", "tls", "--wait")
            assert "3/3 done" in done.stdout
        assert len(cli(env, "results", "tls").stdout.splitlines()) == 3

        # Without the CA the server's certificate is not trusted: refused, clearly
        untrusted = {**env, "BULKTAG_REDIS_URL": f"rediss://127.0.0.1:{port}/0"}
        line = one_line_error(cli(untrusted, "status", "tls", check=False))
        assert "certificate verify failed" in line
        # and plain redis:// to the TLS port does not get through either
        plain = {**env, "BULKTAG_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        assert "cannot reach Redis" in one_line_error(cli(plain, "status", "tls", check=False))
    finally:
        proc.terminate()
        proc.wait(10)
