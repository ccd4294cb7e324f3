"""S3 URIs parse as the AWS CLI writes them; S3 failures become clear per-URI errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from producer.s3 import is_image_key
from tasks.errors import (
    NotAllowed,
    NotFound,
    PermanentUriError,
    TransientUriError,
    UnsupportedUri,
)
from tasks.fetch_s3 import parse_s3_uri, s3_error


def client_error(code: str, status: int, retries: int = 0) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
    }
    return ClientError(response, "GetObject")


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://photos/2024/a b.jpg") == ("photos", "2024/a b.jpg")
    assert parse_s3_uri("s3://photos") == ("photos", "")
    with pytest.raises(PermanentUriError):
        parse_s3_uri("s3:///key.jpg")
    with pytest.raises(UnsupportedUri):
        parse_s3_uri("gs://bucket/key.jpg")


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (client_error("NoSuchKey", 404), NotFound, "no such S3 object: s3://b/k.jpg"),
        (client_error("NoSuchBucket", 404), NotFound, "no such S3 bucket"),
        (client_error("404", 404), NotFound, "no such S3 object"),  # HEAD-style, no body
        (client_error("AccessDenied", 403), NotAllowed, "S3 denied reading s3://b/k.jpg"),
        (client_error("InvalidAccessKeyId", 403), NotAllowed, "InvalidAccessKeyId"),
        (client_error("SlowDown", 503, 2), TransientUriError, "SlowDown (HTTP 503)"),
        (client_error("InternalError", 500, 2), TransientUriError, "after 3 attempts"),
        (client_error("InvalidObjectState", 403), NotAllowed, "InvalidObjectState"),
        (client_error("InvalidRequest", 400), PermanentUriError, "S3 refused"),
        (NoCredentialsError(), NotAllowed, "no AWS credentials"),
        (EndpointConnectionError(endpoint_url="http://x"), TransientUriError, "connection"),
    ],
)
def test_s3_errors_map_to_bulktag_errors(error: Exception, kind: type, text: str) -> None:
    mapped = s3_error(error, "s3://b/k.jpg")  # type: ignore[arg-type]
    assert type(mapped) is kind
    assert text in str(mapped)


def test_only_image_keys_are_listed() -> None:
    assert is_image_key("2024/IMG_0001.JPG")
    assert is_image_key("a/b.webp")
    assert not is_image_key("2024/")
    assert not is_image_key("2024/notes.txt")
    assert not is_image_key("2024/README")
