"""Small JPEG thumbnails of a job's images for the dashboard's gallery.

The image is read exactly as a worker reads it (``tasks.fetch.fetch_bytes``: allowed
roots, byte cap, SSRF guard) and decoded by ``tasks.decode.decode_image`` (pixel limit,
EXIF orientation), so the page can never show more than the workers could read. The
route resolves a *job index* to its URI; a client never names a path itself.
"""

from __future__ import annotations

import io

from PIL import Image

from tasks.decode import decode_image
from tasks.fetch import fetch_bytes
from tasks.settings import Settings

THUMB_MAX_SIDE = 256
THUMB_QUALITY = 80


def render_thumbnail(uri: str, settings: Settings, max_side: int = THUMB_MAX_SIDE) -> bytes:
    """A JPEG of ``uri`` at most ``max_side`` pixels on its longer side.

    Raises:
        UriError: whatever fetching or decoding raises for this URI (not allowed, not
            found, too large, not an image, a transient fault).
    """
    img = decode_image(fetch_bytes(uri, settings), settings.max_pixels)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()
