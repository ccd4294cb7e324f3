"""Stream a ``multipart/form-data`` body straight into the upload folder, capped.

Starlette's own form parser spools every part to a temporary file with no overall
limit; here each ``files`` part goes through an ``UploadSink`` (hash, first bytes,
spool in the upload folder itself, so storing it is a rename), the body is refused
with 413 as soon as it passes ``BULKTAG_UPLOAD_MAX_TOTAL_BYTES`` or carries more than
``BULKTAG_UPLOAD_MAX_FILES`` files, and memory stays at one network chunk.

The parser runs on the event loop: each step is a hash update and a buffered write of
at most one chunk (~64 KB), far shorter than a thread hop would be worth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import PurePosixPath

from fastapi import HTTPException, status
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from producer.upload_store import UploadSink, UploadStore

FIELD = "files"
MAX_FILENAME = 255


def client_filename(raw: str) -> str:
    """The last path component of a client's file name (browsers may send a path)."""
    name = PurePosixPath(raw.replace("\\", "/")).name
    return name[:MAX_FILENAME] or "unnamed"


def too_large(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail)


class PartReceiver:
    """python-multipart callbacks that route ``files`` parts into upload sinks."""

    def __init__(self, store: UploadStore, max_bytes: int, max_files: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.sinks: list[UploadSink] = []
        self._current: UploadSink | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._current, self._disposition = None, b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name != FIELD or filename is None:
            return  # another field: its bytes are read (they count) and dropped
        if len(self.sinks) >= self.max_files:
            raise too_large(
                f"more than {self.max_files} files in one request (BULKTAG_UPLOAD_MAX_FILES)"
            )
        self._current = self.store.sink(
            client_filename(filename.decode("utf-8", "replace")), self.max_bytes
        )
        self.sinks.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.write(data[start:end])

    def _part_end(self) -> None:
        self._current = None

    def discard(self) -> None:
        """Remove every spooled part (the request failed)."""
        for sink in self.sinks:
            sink.discard()


async def receive_parts(
    content_type: str,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    store: UploadStore,
    *,
    max_bytes: int,
    max_total: int,
    max_files: int,
) -> list[UploadSink]:
    """Parse the body into one sink per ``files`` part, in order.

    Raises:
        HTTPException: 422 when the body is not multipart or has no ``files`` part;
            400 when it is malformed; 413 past the total size or the file count.
    """
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"send multipart/form-data with one or more '{FIELD}' parts "
            f"(curl -F {FIELD}=@photo.jpg)",
        )
    if content_length and content_length.isdigit() and int(content_length) > max_total:
        raise too_large(
            f"request body is {content_length} bytes, over the {max_total}-byte limit "
            "(BULKTAG_UPLOAD_MAX_TOTAL_BYTES)"
        )
    receiver = PartReceiver(store, max_bytes, max_files)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    seen = 0
    try:
        async for chunk in stream:
            seen += len(chunk)
            if seen > max_total:  # a chunked body declares no length: count it
                raise too_large(
                    f"request body passed the {max_total}-byte limit "
                    "(BULKTAG_UPLOAD_MAX_TOTAL_BYTES)"
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        receiver.discard()
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}"
        ) from None
    except BaseException:  # 413, a client that went away, a full disk
        receiver.discard()
        raise
    if not receiver.sinks:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"no '{FIELD}' part with a file name in the form (curl -F {FIELD}=@photo.jpg)",
        )
    return receiver.sinks
