"""Which files are images, by name and by content, and the decoders for the newer kinds.

Three families beyond what Pillow opens out of the box:

- **HEIF/HEIC** (every iPhone photo since 2017): ISO-BMFF files whose ``ftyp`` brand is
  ``heic``, ``heix``, ``mif1``, ``msf1``, ``hevc``...; decoded by ``pillow-heif``'s
  Pillow opener, registered once per process by ``register_openers``.
- **AVIF**: ISO-BMFF with brand ``avif``/``avis`` (or ``mif1`` naming ``avif`` among
  its compatible brands); Pillow's own AVIF plugin decodes it.
- **Camera RAW** (CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, DNG, ...): recognised by
  extension in a folder walk and by content in the decoder (``is_raw``), decoded by
  LibRaw through ``rawpy`` (``tasks.raw``). Most RAW files are TIFF-structured, and
  Pillow would open one as a TIFF and decode the 160x120 thumbnail in its first IFD,
  so a TIFF magic number alone never sends a file to Pillow's TIFF reader.

Leaf module: imports nothing of bulktag, so the producer's walker and the worker's
decoder share one list.
"""

from __future__ import annotations

import struct
import threading
from pathlib import PurePath
from typing import Final

# Formats Pillow reads by itself.
PILLOW_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)
HEIF_EXTENSIONS: Final = frozenset({".heic", ".heif", ".heics", ".heifs", ".hif"})
AVIF_EXTENSIONS: Final = frozenset({".avif", ".avifs"})
# Camera RAW formats LibRaw reads, by their usual extension.
RAW_EXTENSIONS: Final = frozenset(
    {
        ".3fr",  # Hasselblad
        ".arw",  # Sony
        ".cr2",  # Canon (TIFF-based)
        ".cr3",  # Canon (ISO-BMFF)
        ".crw",  # Canon (CIFF)
        ".dcr",  # Kodak
        ".dng",  # Adobe Digital Negative (Leica, Pentax, Ricoh, phones ...)
        ".erf",  # Epson
        ".fff",  # Hasselblad
        ".iiq",  # Phase One
        ".kdc",  # Kodak
        ".mef",  # Mamiya
        ".mos",  # Leaf
        ".mrw",  # Minolta
        ".nef",  # Nikon
        ".nrw",  # Nikon compacts
        ".orf",  # Olympus / OM System
        ".pef",  # Pentax
        ".raf",  # Fujifilm
        ".raw",  # Panasonic / Leica (older)
        ".rw2",  # Panasonic
        ".rwl",  # Leica
        ".sr2",  # Sony (older)
        ".srf",  # Sony (older)
        ".srw",  # Samsung
        ".x3f",  # Sigma
    }
)
IMAGE_EXTENSIONS: Final = PILLOW_EXTENSIONS | HEIF_EXTENSIONS | AVIF_EXTENSIONS | RAW_EXTENSIONS

# ISO-BMFF ftyp brands (ISO/IEC 23008-12 and the AV1 image format spec).
HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
CR3_BRAND: Final = b"crx "
# Bytes a content check needs: the longest magic number plus an ftyp box's brand list.
HEAD_BYTES: Final = 64

_MAGIC: Final = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"FUJIFILMCCD-RAW", "raw"),  # RAF
    (b"IIRO", "raw"),  # ORF
    (b"IIRS", "raw"),  # ORF
    (b"MMOR", "raw"),  # ORF
    (b"IIU\x00", "raw"),  # RW2
    (b"FOVb", "raw"),  # X3F
    (b"\x00MRM", "raw"),  # MRW
)

# TIFF tags that mark a RAW file's structure (TIFF 6.0, TIFF/EP, DNG 1.6).
_NEW_SUBFILE_TYPE, _PHOTOMETRIC, _SUB_IFDS, _DNG_VERSION = 254, 262, 330, 50706
_CFA, _LINEAR_RAW = 32803, 34892  # PhotometricInterpretation of sensor data
_MAX_IFD_ENTRIES = 4096


def kind_by_name(name: str | PurePath) -> str | None:
    """The image family a file name promises (``pillow``, ``heif``, ``avif``, ``raw``).

    Case-insensitive (``IMG_0001.HEIC``); None for any other extension.
    """
    suffix = PurePath(name).suffix.lower()
    if suffix in PILLOW_EXTENSIONS:
        return "pillow"
    if suffix in HEIF_EXTENSIONS:
        return "heif"
    if suffix in AVIF_EXTENSIONS:
        return "avif"
    if suffix in RAW_EXTENSIONS:
        return "raw"
    return None


def sniff(head: bytes) -> str | None:
    """The image format the first bytes of a file announce, or None.

    Returns one of ``jpeg png gif bmp webp tiff heif avif raw``. ``tiff`` may still be a
    TIFF-structured RAW file: only the whole file tells (``is_raw``).
    """
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _iso_bmff_kind(head)
    return None


def _iso_bmff_kind(head: bytes) -> str | None:
    """``heif``, ``avif`` or ``raw`` (CR3) from an ftyp box; None for video and others.

    The major brand decides, except for the generic still-image brands ``mif1``/``msf1``
    that HEIC and AVIF files both use: then an ``avif``/``avis`` compatible brand makes
    it AVIF. MP4/MOV brands (``isom``, ``qt  ``...) are not images.
    """
    major = head[8:12]
    size = int.from_bytes(head[:4], "big")
    compatible = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if major in AVIF_BRANDS or (major in (b"mif1", b"msf1") and compatible & AVIF_BRANDS):
        return "avif"
    if major in HEIF_BRANDS:
        return "heif"
    if major == CR3_BRAND:
        return "raw"
    return None


def is_raw(data: bytes) -> bool:
    """True when ``data`` is a camera RAW file (LibRaw's, not Pillow's, to decode).

    Non-TIFF RAW formats have their own magic numbers (RAF, ORF, RW2, CR3...). A TIFF
    counts as RAW when its first IFD says so: Canon's ``CR`` marker (CR2), a DNGVersion
    tag, sensor data (CFA or LinearRaw photometric), or a reduced-resolution first image
    with the full one in SubIFDs (NEF, ARW, PEF, DNG with a preview). An ordinary TIFF
    has none of these.
    """
    kind = sniff(data[:HEAD_BYTES])
    if kind == "raw":
        return True
    if kind != "tiff":
        return False
    if data[8:10] == b"CR":  # CR2: "CR", version 2.0 after the TIFF header
        return True
    tags = _first_ifd(data)
    if _DNG_VERSION in tags or tags.get(_PHOTOMETRIC) in (_CFA, _LINEAR_RAW):
        return True
    reduced = (tags.get(_NEW_SUBFILE_TYPE) or 0) & 1
    return bool(reduced) and _SUB_IFDS in tags


def _first_ifd(data: bytes) -> dict[int, int | None]:
    """Tag -> first value (short/long tags only, else None) of a TIFF's first IFD.

    A malformed header gives an empty dict: the file then goes to Pillow, whose TIFF
    reader reports it in its own words.
    """
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(endian + "I", data, 4)
        (count,) = struct.unpack_from(endian + "H", data, offset)
        tags: dict[int, int | None] = {}
        for i in range(min(count, _MAX_IFD_ENTRIES)):
            tag, typ, n = struct.unpack_from(endian + "HHI", data, offset + 2 + 12 * i)
            value: int | None = None
            if n >= 1 and typ == 3:  # SHORT
                (value,) = struct.unpack_from(endian + "H", data, offset + 10 + 12 * i)
            elif n >= 1 and typ in (4, 13):  # LONG, IFD
                (value,) = struct.unpack_from(endian + "I", data, offset + 10 + 12 * i)
            tags[tag] = value
    except struct.error:
        return {}
    return tags


_registered = False
_register_lock = threading.Lock()


def register_openers() -> None:
    """Add pillow-heif's HEIF opener to Pillow, once per process (thread-safe).

    AVIF needs nothing: Pillow (11.2+) has its own plugin. pillow-heif is imported only
    here, so a producer that never decodes never loads libheif. Without pillow-heif
    installed, HEIC files become ``error`` records saying so (``missing_decoder``).
    """
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        try:
            import pillow_heif
        except ImportError:
            pass
        else:
            # One thread per decode: libheif would decode a grid image's tiles (iPhone
            # HEICs are 512x512 tiles) on 4 threads, on top of the worker's processes x
            # lanes, which already fill the cores.
            pillow_heif.options.DECODE_THREADS = 1
            # thumbnails stay on: --decode fast uses them through Image.draft().
            pillow_heif.register_heif_opener()
        _registered = True


def missing_decoder(kind: str | None) -> str | None:
    """Why a recognised format cannot be decoded in this process, or None if it can."""
    if kind == "heif":
        try:
            import pillow_heif  # noqa: F401
        except ImportError:
            return "HEIF/HEIC needs the pillow-heif package (pip install pillow-heif)"
    if kind == "avif":
        from PIL import features

        if not features.check("avif"):
            return "AVIF needs Pillow 11.2+ built with libavif"
    return None
