"""producer.xmp: merging keeps foreign XMP intact, is idempotent, and parses safely."""

from __future__ import annotations

import pytest
from lxml import etree

from producer.xmp import DC, LR, RDF, Tags, XmpError, merge_tags, read_keywords

TAGS = Tags(["tabby", "tiger cat"], "resnet18-0123456789ab", [("tabby", 0.6), ("tiger cat", 0.2)])

DIGIKAM = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmp:Rating="5" xmp:Label="Red">
   <digiKam:TagsList><rdf:Seq><rdf:li>People/Anna</rdf:li></rdf:Seq></digiKam:TagsList>
   <dc:subject><rdf:Seq><rdf:li>Anna</rdf:li><rdf:li>tabby</rdf:li></rdf:Seq></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def texts(data: bytes, ns: str, name: str) -> list[str]:
    root = etree.fromstring(data)
    return [
        li.text or "" for prop in root.iter(f"{{{ns}}}{name}") for li in prop.iter(f"{{{RDF}}}li")
    ]


def test_a_new_sidecar_is_an_xmp_packet_with_both_keyword_forms() -> None:
    data = merge_tags(None, TAGS)
    assert data.startswith(b'<?xpacket begin="\xef\xbb\xbf"') and data.endswith(
        b'<?xpacket end="w"?>\n'
    )
    assert texts(data, DC, "subject") == ["tabby", "tiger cat"]
    assert texts(data, LR, "hierarchicalSubject") == ["bulktag|tabby", "bulktag|tiger cat"]
    assert merge_tags(data, TAGS) == data  # a second run changes nothing


def test_merge_keeps_foreign_properties_prefixes_and_the_existing_container() -> None:
    merged = merge_tags(DIGIKAM, TAGS)
    text = merged.decode()
    # digiKam's own tags, rating and colour label stay, under their own prefixes
    assert "<digiKam:TagsList>" in text and 'xmp:Rating="5"' in text and 'xmp:Label="Red"' in text
    # the existing keyword Seq is extended in place; "tabby" is not added twice
    assert read_keywords(merged) == ["Anna", "tabby", "tiger cat"]
    assert text.count("<dc:subject>") == 1
    assert merge_tags(merged, TAGS) == merged


def test_an_rdf_root_without_xmpmeta_is_wrapped() -> None:
    bare = (
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about=""/></rdf:RDF>'
    )
    assert read_keywords(merge_tags(bare, TAGS)) == ["tabby", "tiger cat"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not xml <", "not well-formed XML"),
        (b"<html><body/></html>", "no rdf:RDF"),
    ],
)
def test_what_is_not_xmp_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(XmpError, match=message):
        merge_tags(data, TAGS)


def test_a_doctype_is_refused_and_entities_are_never_expanded() -> None:
    # A "billion laughs" or external entity in a hostile sidecar must not be expanded;
    # XMP allows no DTD, so such a sidecar is refused (and left as it is).
    hostile = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd"><!ENTITY a "aaaaaaaaaa">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title>&secret;&a;</dc:title></rdf:Description></rdf:RDF></x:xmpmeta>"""
    with pytest.raises(XmpError, match="DOCTYPE") as caught:
        merge_tags(hostile, TAGS)
    assert "root:" not in str(caught.value)
