"""bulktag settings: one frozen dataclass built from ``BULKTAG_*`` environment variables.

This is the only module that reads ``os.environ``. Every default below is documented
in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tasks.cpu import auto_concurrency, available_cores
from tasks.env_values import bool_value as _bool
from tasks.env_values import choice_value as _choice
from tasks.env_values import float_value as _float
from tasks.env_values import hosts as _hosts_or_none
from tasks.env_values import int_value as _int
from tasks.env_values import path_or_none as _path_or_none
from tasks.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# Results database file when BULKTAG_RESULTS_URL is unset: one per user, the same for the
# producer, workers and API of one machine (docs/RESULTS_DB.md).
RESULTS_DB_NAME = "bulktag/results.db"
DEFAULT_WEIGHTS = Path("~/.cache/bulktag/weights/resnet18-imagenet1k-v1.pt")
DEFAULT_QUEUE = "bulktag"
# Chunk = one Celery message. 32 keeps a chunk's decoded tensors ~20 MB and a redelivery
# cheap, while still filling two batch-16 forwards per message.
DEFAULT_CHUNK_SIZE = 32
# A one-thread CPU forward costs about the same per image from batch 4 to 16; batch 32
# was no faster and took ~230 MB more peak memory per process (fp32, docs/BENCHMARKS.md).
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # a 50 MB file is far past any camera JPEG
DEFAULT_MAX_PIXELS = 64_000_000  # 5x a 12 MP photo; Pillow's own bomb limit is ~89 MP
# Redis re-delivers ANY un-acked chunk after this long, its worker alive or not: the last
# resort now that heartbeats re-queue a dead worker's chunks in 40 s. It must exceed the
# slowest healthy chunk: measured 0.3-0.4 s for 32 photos in `make bench` (4-12 s on a
# loaded 2-core VM), but ~27 min at worst with slow remote sources at the fetch limits
# below (worker.delivery.slowest_healthy_chunk); the hard time limit at 90% of 3600 s
# keeps a 2x margin over that bound (docs/RELIABILITY.md, "Delivery settings").
DEFAULT_VISIBILITY_TIMEOUT = 3600
# Fault tests lower it to see a dead worker's chunk come back quickly (docs/RELIABILITY.md).
MIN_VISIBILITY_TIMEOUT = 10
# Seconds a worker process's heartbeat lives unrefreshed (beats every TTL/6). A worker
# gone that long has its chunks re-queued by a live one within TTL + TTL/3 (40 s):
# long enough that a starved 2-core box or a Redis blip of a few seconds kills no one.
DEFAULT_HEARTBEAT_TTL = 30
MIN_HEARTBEAT_TTL = 3
DEFAULT_FETCH_THREADS = 8
# Remote fetches (HTTP and S3). Worst case, a chunk of stalled URLs costs
# chunk / fetch threads x attempts x (connect + deadline): 4 x 3 x 125 s = 25 min with
# the defaults, inside the visibility timeout, so no healthy chunk is redelivered.
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to open a TCP/TLS connection
DEFAULT_READ_TIMEOUT = 30.0  # seconds of silence allowed between two reads
DEFAULT_FETCH_DEADLINE = 120.0  # seconds for one whole download attempt (slow-drip guard)
DEFAULT_FETCH_ATTEMPTS = 3  # tries per URI on transient faults (timeouts, 5xx, throttling)
DEFAULT_FETCH_BACKOFF = 0.5  # first retry waits up to this (full jitter), doubling each time
DEFAULT_MAX_REDIRECTS = 5
# Producer backpressure: chunks allowed to wait in the broker queue; 0 = no cap.
DEFAULT_MAX_QUEUED = 0
# Prometheus endpoint of `bulktag worker` (one per worker, all its processes); 0 = off.
DEFAULT_METRICS_PORT = 9808
# HTTP API: the largest request body accepted (413 above it, refused before it is read
# whole). 16 MiB holds a POST of the 100,000-URI maximum at ~160 bytes a URI.
DEFAULT_API_MAX_BODY = 16 * 1024 * 1024
# Host header names the API answers: loopback only, so a DNS-rebinding page (a hostile
# name resolving to 127.0.0.1) cannot drive it from the operator's browser. Any port.
DEFAULT_API_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
LOG_FORMATS = ("text", "json")
# Scheduled runs for `bulktag beat` / `bulktag schedule list` (see docs/OPERATIONS.md).
DEFAULT_SCHEDULES = Path("schedules.toml")
DEVICES = ("cpu", "cuda")
# Uploads (POST /uploads, producer/api/uploads.py). The folder is always readable by
# workers: it is added to the allowed roots, so it must be storage they share.
DEFAULT_UPLOAD_DIR = Path("~/.cache/bulktag/uploads")
DEFAULT_UPLOAD_MAX_BYTES = 25 * 1024 * 1024  # per file: a 12 MP JPEG is 3-8 MB
DEFAULT_UPLOAD_MAX_TOTAL_BYTES = 200 * 1024 * 1024  # per request body, else 413
DEFAULT_UPLOAD_MAX_FILES = 50  # per request
DEFAULT_UPLOAD_RETENTION_DAYS = 7.0  # unreferenced upload files older than this go
# Hot path (docs/BENCHMARKS.md): "exact" = reference preprocessing, "fast" = JPEG DCT
# scaling; "fp32" = reference arithmetic, "bf16" = CPU autocast, "fp16" = CUDA only,
# "int8" = CPU static quantization from a calibration file (tasks.quantize).
DECODE_MODES = ("exact", "fast")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def default_results_url(env: dict[str, str] | None = None) -> str:
    """``sqlite:///${XDG_DATA_HOME:-~/.local/share}/bulktag/results.db`` (absolute)."""
    env = dict(os.environ if env is None else env)
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share").expanduser()
    return f"sqlite:///{(base / RESULTS_DB_NAME).resolve()}"


def results_url_from_env(env: dict[str, str] | None = None) -> str:
    """``BULKTAG_RESULTS_URL``, else the per-user default: also the dataclass default, so
    ``Settings(redis_url=...)`` built in code finds the same database as ``from_env``."""
    env = dict(os.environ if env is None else env)
    return env.get("BULKTAG_RESULTS_URL") or default_results_url(env)


def check_precision(precision: str, device: str) -> None:
    """Refuse combinations that cannot run well (torch-free: the worker's parent calls it).

    Raises:
        ConfigError: unknown precision, fp16 on CPU (slow emulation there), or int8 on
            CUDA (torch's quantized kernels are CPU ones).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device != "cuda":
        raise ConfigError("precision fp16 needs --device cuda; on CPU use bf16 or fp32")
    if precision == "int8" and device != "cpu":
        raise ConfigError("precision int8 runs on CPU only; on cuda use fp16")


@dataclass(frozen=True)
class Settings:
    """Everything a producer or worker needs to know, resolved once."""

    redis_url: str = DEFAULT_REDIS_URL
    # Results database: sqlite:///ABS/PATH.db (one machine) or postgresql://... (many).
    results_url: str = field(default_factory=lambda: results_url_from_env())
    weights: Path = DEFAULT_WEIGHTS
    weights_sha256: str | None = None
    queue: str = DEFAULT_QUEUE
    chunk_size: int = DEFAULT_CHUNK_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    concurrency: int = 0  # 0 = auto
    threads: int = 0  # torch intra-op threads per process; 0 = auto
    lanes: int = 0  # decode+forward lanes per process (tasks.lanes); 0 = auto (= threads)
    fetch_threads: int = DEFAULT_FETCH_THREADS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    heartbeat_ttl: int = DEFAULT_HEARTBEAT_TTL
    channels_last: bool = True
    decode: str = "exact"  # "fast": Image.draft DCT scaling (measured agreement)
    precision: str = "fp32"  # "bf16" (CPU autocast), "fp16" (CUDA), "int8"; measured agreement
    int8_calibration: Path | None = None  # None: the weights path + ".int8"
    s3_endpoint_url: str | None = None  # None: botocore's AWS_ENDPOINT_URL[_S3] or AWS
    allow_private_networks: bool = False  # SSRF guard off: trusted internal deployments only
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    fetch_deadline: float = DEFAULT_FETCH_DEADLINE
    fetch_attempts: int = DEFAULT_FETCH_ATTEMPTS
    fetch_backoff: float = DEFAULT_FETCH_BACKOFF
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_queued: int = DEFAULT_MAX_QUEUED
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_dir: Path | None = None  # None: a fresh temporary directory per worker
    log_format: str = "text"  # "json": one JSON object per line
    schedules: Path = DEFAULT_SCHEDULES
    device: str = "cpu"  # "cuda": GPU workers (README, GPU workers)
    upload_dir: Path = DEFAULT_UPLOAD_DIR
    upload_max_bytes: int = DEFAULT_UPLOAD_MAX_BYTES
    upload_max_total_bytes: int = DEFAULT_UPLOAD_MAX_TOTAL_BYTES
    upload_max_files: int = DEFAULT_UPLOAD_MAX_FILES
    upload_retention_days: float = DEFAULT_UPLOAD_RETENTION_DAYS
    # HTTP API bearer token; None = no auth (bind the API to loopback then). Kept out of repr.
    api_token: str | None = field(default=None, repr=False)
    api_max_body: int = DEFAULT_API_MAX_BODY
    # Host names (no port) the API answers; ("*",) answers any (behind a proxy that checks).
    api_allowed_hosts: tuple[str, ...] = DEFAULT_API_ALLOWED_HOSTS
    # TEST HOOK: a worker SIGKILLs its own process on any URI whose file name contains
    # this marker (a deterministic "poison" input). Never set it in production.
    test_crash_on: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from ``BULKTAG_*`` variables; unknown values raise ConfigError."""
        env = dict(os.environ if env is None else env)
        get = env.get
        roots_raw = get("BULKTAG_ALLOWED_ROOTS")
        roots = (
            tuple(Path(p).expanduser() for p in roots_raw.split(os.pathsep) if p)
            if roots_raw
            else (Path.home(), Path.cwd())
        )
        upload_dir = Path(get("BULKTAG_UPLOAD_DIR") or DEFAULT_UPLOAD_DIR).expanduser()
        roots += (upload_dir,)  # workers read what the API stored there
        return cls(
            redis_url=get("BULKTAG_REDIS_URL", DEFAULT_REDIS_URL),
            results_url=results_url_from_env(env),
            weights=Path(get("BULKTAG_WEIGHTS", str(DEFAULT_WEIGHTS))).expanduser(),
            weights_sha256=get("BULKTAG_WEIGHTS_SHA256") or None,
            queue=get("BULKTAG_QUEUE", DEFAULT_QUEUE),
            chunk_size=_int(env, "BULKTAG_CHUNK_SIZE", DEFAULT_CHUNK_SIZE, minimum=1),
            batch_size=_int(env, "BULKTAG_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1),
            concurrency=_int(env, "BULKTAG_CONCURRENCY", 0, minimum=0),
            threads=_int(env, "BULKTAG_THREADS", 0, minimum=0),
            lanes=_int(
                env,
                "BULKTAG_LANES",
                _int(env, "BULKTAG_DECODE_THREADS", 0, minimum=0),
                minimum=0,
            ),
            fetch_threads=_int(env, "BULKTAG_FETCH_THREADS", DEFAULT_FETCH_THREADS, minimum=1),
            max_bytes=_int(env, "BULKTAG_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=1),
            max_pixels=_int(env, "BULKTAG_MAX_PIXELS", DEFAULT_MAX_PIXELS, minimum=1),
            allowed_roots=roots,
            visibility_timeout=_int(
                env,
                "BULKTAG_VISIBILITY_TIMEOUT",
                DEFAULT_VISIBILITY_TIMEOUT,
                minimum=MIN_VISIBILITY_TIMEOUT,
            ),
            heartbeat_ttl=_int(
                env, "BULKTAG_HEARTBEAT_TTL", DEFAULT_HEARTBEAT_TTL, minimum=MIN_HEARTBEAT_TTL
            ),
            channels_last=_bool(env, "BULKTAG_CHANNELS_LAST", True),
            decode=_choice(env, "BULKTAG_DECODE", DECODE_MODES),
            precision=_choice(env, "BULKTAG_PRECISION", PRECISIONS),
            int8_calibration=(
                Path(get("BULKTAG_INT8_CALIBRATION", "")).expanduser()
                if get("BULKTAG_INT8_CALIBRATION")
                else None
            ),
            s3_endpoint_url=get("BULKTAG_S3_ENDPOINT_URL") or None,
            allow_private_networks=_bool(env, "BULKTAG_ALLOW_PRIVATE_NETWORKS", False),
            connect_timeout=_float(env, "BULKTAG_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_float(env, "BULKTAG_READ_TIMEOUT", DEFAULT_READ_TIMEOUT),
            fetch_deadline=_float(env, "BULKTAG_FETCH_DEADLINE", DEFAULT_FETCH_DEADLINE),
            fetch_attempts=_int(env, "BULKTAG_FETCH_ATTEMPTS", DEFAULT_FETCH_ATTEMPTS, minimum=1),
            fetch_backoff=_float(env, "BULKTAG_FETCH_BACKOFF", DEFAULT_FETCH_BACKOFF, minimum=0),
            max_redirects=_int(env, "BULKTAG_MAX_REDIRECTS", DEFAULT_MAX_REDIRECTS, minimum=0),
            max_queued=_int(env, "BULKTAG_MAX_QUEUED", DEFAULT_MAX_QUEUED, minimum=0),
            metrics_port=_int(env, "BULKTAG_METRICS_PORT", DEFAULT_METRICS_PORT, minimum=0),
            metrics_dir=_path_or_none(get("BULKTAG_METRICS_DIR")),
            log_format=_choice(env, "BULKTAG_LOG_FORMAT", LOG_FORMATS),
            schedules=Path(get("BULKTAG_SCHEDULES") or DEFAULT_SCHEDULES).expanduser(),
            device=_choice(env, "BULKTAG_DEVICE", DEVICES),
            upload_dir=upload_dir,
            upload_max_bytes=_int(
                env, "BULKTAG_UPLOAD_MAX_BYTES", DEFAULT_UPLOAD_MAX_BYTES, minimum=1
            ),
            upload_max_total_bytes=_int(
                env, "BULKTAG_UPLOAD_MAX_TOTAL_BYTES", DEFAULT_UPLOAD_MAX_TOTAL_BYTES, minimum=1
            ),
            upload_max_files=_int(
                env, "BULKTAG_UPLOAD_MAX_FILES", DEFAULT_UPLOAD_MAX_FILES, minimum=1
            ),
            upload_retention_days=_float(
                env, "BULKTAG_UPLOAD_RETENTION_DAYS", DEFAULT_UPLOAD_RETENTION_DAYS, minimum=0
            ),
            api_token=get("BULKTAG_API_TOKEN") or None,
            api_max_body=_int(env, "BULKTAG_API_MAX_BODY", DEFAULT_API_MAX_BODY, minimum=1),
            api_allowed_hosts=_hosts(get("BULKTAG_API_ALLOWED_HOSTS")),
            test_crash_on=get("BULKTAG_TEST_CRASH_ON") or None,
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the non-None ``changes`` applied (CLI flags over env)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def effective_concurrency(self) -> int:
        return self.concurrency or auto_concurrency(available_cores())

    @property
    def effective_threads(self) -> int:
        """Torch threads per process: cores / processes unless set, so no oversubscription."""
        return self.threads or max(1, available_cores() // self.effective_concurrency)

    @property
    def effective_lanes(self) -> int:
        """Lanes per process (``tasks.lanes``): each decodes a group, then forwards it."""
        return self.lanes or self.effective_threads

    @property
    def torch_threads(self) -> int:
        """Intra-op threads of each lane's forward: the process's threads over its lanes."""
        return max(1, self.effective_threads // self.effective_lanes)


def _hosts(raw: str | None) -> tuple[str, ...]:
    """The API's Host allow-list: the variable's names, else the loopback defaults."""
    return _hosts_or_none(raw) or DEFAULT_API_ALLOWED_HOSTS
