"""SigV4 against AWS's published Signature Version 4 test suite (2015-08-30 vectors).

Expected values are those of the suite's ``.creq``, ``.sts`` and ``.authz`` files, with its
example credentials, region us-east-1 and service "service". The suite's own
post-x-www-form-urlencoded files have been published in two revisions; the vector below is
the self-consistent one (sha256 of the canonical request equals the hash in the string to
sign), as reproduced by awslabs/aws-c-auth and the AWS SDK test fixtures.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from newsletter.senders.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    sign,
    signing_key,
)

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WHEN = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
HOST = "https://example.amazonaws.com"
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpS"
    "PfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQD"
    "YwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+s"
    "cqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)


def test_get_vanilla() -> None:
    s = sign("GET", HOST + "/", {}, b"", CREDENTIALS, "us-east-1", "service", WHEN)
    assert s.canonical_request == (
        "GET\n/\n\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert s.string_to_sign == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )
    assert s.authorization == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert s.headers["X-Amz-Date"] == "20150830T123600Z"
    assert "X-Amz-Security-Token" not in s.headers


def test_post_x_www_form_urlencoded() -> None:
    s = sign(
        "POST",
        HOST + "/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Param1=value1",
        CREDENTIALS,
        "us-east-1",
        "service",
        WHEN,
    )
    assert s.canonical_request == (
        "POST\n/\n\n"
        "content-type:application/x-www-form-urlencoded\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
    )
    assert s.string_to_sign == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
    )
    assert s.authorization == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=content-type;host;x-amz-date, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
    )


def test_get_vanilla_query_order_key_case() -> None:
    s = sign(
        "GET",
        HOST + "/?Param2=value2&Param1=value1",
        {},
        b"",
        CREDENTIALS,
        "us-east-1",
        "service",
        WHEN,
    )
    assert s.canonical_request.split("\n")[2] == "Param1=value1&Param2=value2"
    assert s.signature == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"


def test_get_utf8() -> None:
    s = sign("GET", HOST + "/\u1234", {}, b"", CREDENTIALS, "us-east-1", "service", WHEN)
    assert s.canonical_request.split("\n")[1] == "/%E1%88%B4"
    assert s.string_to_sign.endswith(
        "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102"
    )
    assert s.signature == "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"


def test_post_sts_header_before() -> None:
    creds = Credentials(CREDENTIALS.access_key_id, CREDENTIALS.secret_access_key, STS_TOKEN)
    s = sign("POST", HOST + "/", {}, b"", creds, "us-east-1", "service", WHEN)
    assert s.canonical_request == (
        "POST\n/\n\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
        f"x-amz-security-token:{STS_TOKEN}\n\n"
        f"host;x-amz-date;x-amz-security-token\n{EMPTY_SHA256}"
    )
    assert s.string_to_sign.endswith(
        "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"
    )
    assert s.authorization == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
    )
    assert s.headers["X-Amz-Security-Token"] == STS_TOKEN


def test_signing_key_matches_the_documented_iam_example() -> None:
    # docs.aws.amazon.com "Calculate the signature" example (service iam).
    key = signing_key(CREDENTIALS.secret_access_key, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_the_date_is_taken_in_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=8)))
    s = sign("GET", HOST + "/", {}, b"", CREDENTIALS, "us-east-1", "service", local)
    assert s.signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


def test_header_values_are_trimmed_and_names_lowercased() -> None:
    s = sign(
        "GET",
        HOST + "/",
        {"My-Header1": "  value1   with  spaces "},
        b"",
        CREDENTIALS,
        "us-east-1",
        "service",
        WHEN,
    )
    assert "my-header1:value1 with spaces\n" in s.canonical_request
    assert s.signed_headers == "host;my-header1;x-amz-date"


def test_canonical_query_encodes_names_and_values() -> None:
    assert canonical_query("b=2&a=x y&a=%2F") == "a=%2F&a=x%20y&b=2"
    assert canonical_query("") == ""


@pytest.mark.parametrize("field", ["secret_access_key", "session_token"])
def test_secrets_stay_out_of_repr(field: str) -> None:
    creds = Credentials("AKID", "SECRETKEY", "SESSIONTOKEN")
    assert "SECRET" not in repr(creds) and "SESSIONTOKEN" not in repr(creds)
    assert getattr(creds, field)


def test_the_body_is_hashed_into_the_signature() -> None:
    a = sign("POST", HOST + "/", {}, b"{}", CREDENTIALS, "us-east-1", "ses", WHEN)
    b = sign("POST", HOST + "/", {}, b"{ }", CREDENTIALS, "us-east-1", "ses", WHEN)
    assert a.canonical_request.endswith(hashlib.sha256(b"{}").hexdigest())
    assert a.signature != b.signature
