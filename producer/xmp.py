"""Merge bulktag's labels into an XMP sidecar, keeping everything else it holds.

A sidecar is an XMP packet (``<x:xmpmeta><rdf:RDF><rdf:Description>...``) that photo
tools (digiKam, darktable, Lightroom) read beside the image. bulktag adds its labels as
``dc:subject`` keywords and as ``lr:hierarchicalSubject`` entries under ``bulktag|``,
and the model id with each label's score in its own small namespace. Every other
property (other keywords, ratings, colour labels, development history) is kept as it
was: this module edits the parsed RDF tree with lxml, which keeps prefixes and unknown
namespaces intact, and only ever appends to the two keyword bags.

Why lxml and not an XMP toolkit: python-xmp-toolkit needs the exempi C library and
adds nothing for two bags and three properties; a real XML tree (never string
templates) is what keeps foreign content safe. Untrusted sidecars are parsed without
entity expansion, DTDs or network access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from tasks.errors import BulktagError

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
BULKTAG = "https://bulktag.dev/ns/xmp/1.0/"  # exiftool shows these as XMP-bulktag:*
HIERARCHY_ROOT = "bulktag"  # lr:hierarchicalSubject entries are "bulktag|<label>"

_PACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_PACKET_END = '\n<?xpacket end="w"?>\n'
_MAX_SIDECAR_BYTES = 16 << 20  # a sidecar larger than this is not one we should parse


class XmpError(BulktagError):
    """An existing sidecar is not XMP bulktag can merge into (it is left untouched)."""


@dataclass(frozen=True)
class Tags:
    """What bulktag writes into one sidecar.

    Attributes:
        keywords: labels to add as ``dc:subject`` (and ``bulktag|<label>``), best first.
        model: the model id the labels came from.
        scores: every top label of the record with its score, best first.
    """

    keywords: Sequence[str]
    model: str
    scores: Sequence[tuple[str, float]]


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=True
    )


def new_packet() -> etree._Element:
    """An empty ``x:xmpmeta`` with one ``rdf:Description`` (rdf:about="")."""
    root = etree.Element(_q(X, "xmpmeta"), nsmap={"x": X})
    root.set(_q(X, "xmptk"), "bulktag")
    rdf = etree.SubElement(root, _q(RDF, "RDF"), nsmap={"rdf": RDF})
    etree.SubElement(rdf, _q(RDF, "Description")).set(_q(RDF, "about"), "")
    return root


def parse_packet(data: bytes) -> etree._Element:
    """The ``x:xmpmeta`` element of an existing sidecar (an ``rdf:RDF`` root is wrapped).

    Raises:
        XmpError: not well-formed XML, too large, with a DOCTYPE (entities are never
            expanded), or without an ``rdf:RDF``.
    """
    if len(data) > _MAX_SIDECAR_BYTES:
        raise XmpError(f"sidecar is larger than {_MAX_SIDECAR_BYTES >> 20} MiB")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmpError(f"sidecar is not well-formed XML: {exc}") from None
    if getattr(root.getroottree().docinfo, "doctype", ""):  # lxml-stubs lack .doctype
        # XMP forbids DTDs; entities were left unexpanded and could not be written back.
        raise XmpError("sidecar declares a DOCTYPE, which XMP does not allow")
    if root.tag == _q(RDF, "RDF"):
        meta = etree.Element(_q(X, "xmpmeta"), nsmap={"x": X})
        meta.append(root)
        return meta
    if root.find(f".//{_q(RDF, 'RDF')}") is None:
        raise XmpError(f"sidecar has no rdf:RDF (root element {root.tag})")
    return root


def _rdf(root: etree._Element) -> etree._Element:
    found = root.find(f".//{_q(RDF, 'RDF')}")
    assert found is not None  # parse_packet / new_packet guarantee it
    return found


def _find_property(rdf: etree._Element, ns: str, name: str) -> etree._Element | None:
    """The first ``ns:name`` property of any top-level ``rdf:Description``."""
    for desc in rdf.iterfind(_q(RDF, "Description")):
        prop = desc.find(_q(ns, name))
        if prop is not None:
            return prop
    return None


def _own_description(rdf: etree._Element) -> etree._Element:
    """The ``rdf:Description`` that carries bulktag's namespaces, created when missing.

    New properties go into a Description of their own that declares ``dc``, ``lr`` and
    ``bulktag``, so no namespace is declared on another tool's element; XMP readers
    merge the Descriptions of one ``rdf:about``.
    """
    for desc in rdf.iterfind(_q(RDF, "Description")):
        if desc.find(_q(BULKTAG, "model")) is not None:
            return desc
    first = rdf.find(_q(RDF, "Description"))
    about = first.get(_q(RDF, "about"), "") if first is not None else ""
    desc = etree.SubElement(
        rdf, _q(RDF, "Description"), nsmap={"dc": DC, "lr": LR, "bulktag": BULKTAG}
    )
    desc.set(_q(RDF, "about"), about)
    return desc


def _add_to_bag(
    rdf: etree._Element, own: etree._Element, ns: str, name: str, values: Sequence[str]
) -> int:
    """Append the ``values`` a bag property lacks (exact text match); return how many.

    The bag is extended where it already is (whichever Description holds it); a missing
    one is created in ``own``, bulktag's Description.
    """
    prop = _find_property(rdf, ns, name)
    if prop is None:
        prop = etree.SubElement(own, _q(ns, name))
    container = prop.find(_q(RDF, "Bag"))
    if container is None:
        container = prop.find(_q(RDF, "Seq"))  # some tools write keywords as a Seq
    if container is None:
        container = etree.SubElement(prop, _q(RDF, "Bag"))
    have = {li.text or "" for li in container.iterfind(_q(RDF, "li"))}
    added = 0
    for value in values:
        if value not in have:
            etree.SubElement(container, _q(RDF, "li")).text = value
            have.add(value)
            added += 1
    return added


def _set_seq(desc: etree._Element, name: str, values: Sequence[str]) -> None:
    """Make ``bulktag:name`` an ``rdf:Seq`` of exactly ``values`` (replacing an old one)."""
    prop = desc.find(_q(BULKTAG, name))
    if prop is None:
        prop = etree.SubElement(desc, _q(BULKTAG, name))
    for child in list(prop):
        prop.remove(child)
    seq = etree.SubElement(prop, _q(RDF, "Seq"))
    for value in values:
        etree.SubElement(seq, _q(RDF, "li")).text = value


def merge_tags(existing: bytes | None, tags: Tags) -> bytes:
    """The sidecar's new bytes: ``existing`` (or a fresh packet) with ``tags`` merged in.

    Keywords are only ever added, so a second run with the same tags returns the same
    bytes; the bulktag namespace (model id, labels, scores) is replaced by the latest.

    Raises:
        XmpError: ``existing`` is not a sidecar bulktag can safely merge into.
    """
    root = parse_packet(existing) if existing else new_packet()
    rdf = _rdf(root)
    desc = _own_description(rdf)
    model = desc.find(_q(BULKTAG, "model"))
    if model is None:
        model = etree.SubElement(desc, _q(BULKTAG, "model"))
    model.text = tags.model
    _set_seq(desc, "labels", [label for label, _ in tags.scores])
    _set_seq(desc, "scores", [f"{score:.6f}" for _, score in tags.scores])
    hierarchy = [f"{HIERARCHY_ROOT}|{k}" for k in tags.keywords]
    _add_to_bag(rdf, desc, DC, "subject", tags.keywords)
    _add_to_bag(rdf, desc, LR, "hierarchicalSubject", hierarchy)
    etree.indent(root, space=" ")  # deterministic layout: a re-run yields the same bytes
    body = etree.tostring(root, encoding="unicode")
    return (_PACKET_BEGIN + body + _PACKET_END).encode("utf-8")


def read_keywords(data: bytes) -> list[str]:
    """The ``dc:subject`` keywords of a sidecar (for dry runs and tests)."""
    prop = _find_property(_rdf(parse_packet(data)), DC, "subject")
    if prop is None:
        return []
    return [li.text or "" for li in prop.iter(_q(RDF, "li"))]
