"""Signature verification: the documented vector, and every way a request can be refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calendly_brevo.errors import (
    InvalidSignature,
    MalformedSignature,
    MissingSignature,
    SignatureError,
    StaleSignature,
)
from calendly_brevo.signature import parse_header, sign, verify, verify_key

# calendly-api.md §1: the self-generated, openssl-cross-checked vector.
VECTOR_KEY = "5mEzn9C-I28UtwOjZJtFoob0sAAFZ95GbZkqj4y3i0I"
VECTOR_T = 1492774577
VECTOR_BODY = (
    b'{"created_at":"2020-11-23T17:51:19.000000Z","created_by":"https://api.calendly.com/users/'
    b'AAAAAAAAAAAAAAAA","event":"invitee.created","payload":{"email":"test@example.com","uri":'
    b'"https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA"}}'
)
VECTOR_HEADER = "t=1492774577,v1=dac2cb101b5fff77308a0e34a91426c07b170b14105f6edc277e9a1933b8e0c2"


def test_reference_vector_verifies() -> None:
    assert len(VECTOR_BODY) == 265
    assert verify([VECTOR_KEY], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T + 10) == VECTOR_T


def test_sign_reproduces_the_reference_vector() -> None:
    assert sign(VECTOR_KEY, VECTOR_BODY, VECTOR_T) == VECTOR_HEADER


def test_one_extra_space_in_the_body_breaks_the_signature() -> None:
    body = VECTOR_BODY.replace(b'"event":"invitee', b'"event": "invitee')
    assert sign(VECTOR_KEY, body, VECTOR_T).endswith(
        "9f2bea626954d2b4f81722ea905b353e3811c7e9de844eae6e33db08e45aea89"
    )
    with pytest.raises(InvalidSignature):
        verify([VECTOR_KEY], body, VECTOR_HEADER, now=VECTOR_T)


def test_unsigned_request_is_refused() -> None:
    with pytest.raises(MissingSignature):
        verify([VECTOR_KEY], VECTOR_BODY, None, now=VECTOR_T)
    with pytest.raises(MissingSignature):
        verify([VECTOR_KEY], VECTOR_BODY, "  ", now=VECTOR_T)


def test_forged_signature_is_refused() -> None:
    forged = sign("another-key", VECTOR_BODY, VECTOR_T)
    with pytest.raises(InvalidSignature):
        verify([VECTOR_KEY], VECTOR_BODY, forged, now=VECTOR_T)


def test_stale_signature_is_refused_after_the_tolerance() -> None:
    with pytest.raises(StaleSignature):
        verify([VECTOR_KEY], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T + 181)
    assert verify([VECTOR_KEY], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T + 180) == VECTOR_T


def test_timestamp_far_in_the_future_is_refused() -> None:
    with pytest.raises(StaleSignature):
        verify([VECTOR_KEY], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T - 600)


def test_tolerance_is_configurable() -> None:
    assert verify([VECTOR_KEY], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T + 250, tolerance=300)


@pytest.mark.parametrize(
    "header",
    [
        "v1=" + "a" * 64,  # no timestamp
        "t=1492774577",  # no signature
        "t=abc,v1=" + "a" * 64,
        "t=1492774577,v1=xyz",
        "t=1492774577,v1=" + "a" * 63,
        "t=1,t=2,v1=" + "a" * 64,
        "garbage",
        "t=1492774577;v1=" + "a" * 64,
        "t=١٤٩٢٧٧٤٥٧٧,v1=" + "a" * 64,  # non-ASCII digits
    ],
)
def test_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(MalformedSignature):
        verify([VECTOR_KEY], VECTOR_BODY, header, now=VECTOR_T)


def test_rotated_keys_are_all_accepted() -> None:
    header = sign("old-key", VECTOR_BODY, VECTOR_T)
    assert verify(["new-key", "old-key"], VECTOR_BODY, header, now=VECTOR_T) == VECTOR_T


def test_verify_key_says_which_key_verified() -> None:
    keys = ["new-key", "old-key"]
    for index, key in enumerate(keys):
        header = sign(key, VECTOR_BODY, VECTOR_T)
        assert verify_key(keys, VECTOR_BODY, header, now=VECTOR_T) == (VECTOR_T, index)
    both = f"{sign('new-key', VECTOR_BODY, VECTOR_T)},{sign('old-key', VECTOR_BODY, VECTOR_T)}"
    both = both.replace(f",t={VECTOR_T}", "")  # one t=, two v1= (Calendly mid-rotation)
    assert verify_key(keys, VECTOR_BODY, both, now=VECTOR_T) == (VECTOR_T, 0)


def test_any_of_several_v1_values_may_match() -> None:
    good = sign(VECTOR_KEY, VECTOR_BODY, VECTOR_T).split(",")[1]
    header = f"t={VECTOR_T},v1={'0' * 64},{good}"
    assert verify([VECTOR_KEY], VECTOR_BODY, header, now=VECTOR_T) == VECTOR_T


def test_unknown_schemes_are_ignored() -> None:
    header = VECTOR_HEADER + ",v0=deadbeef"
    assert verify([VECTOR_KEY], VECTOR_BODY, header, now=VECTOR_T) == VECTOR_T


def test_no_configured_key_refuses_everything() -> None:
    with pytest.raises(InvalidSignature):
        verify([], VECTOR_BODY, VECTOR_HEADER, now=VECTOR_T)


@given(header=st.text(max_size=300))
def test_arbitrary_headers_either_verify_or_raise_a_signature_error(header: str) -> None:
    try:
        verify([VECTOR_KEY], VECTOR_BODY, header, now=VECTOR_T)
    except SignatureError:
        return
    raise AssertionError("a random header verified")


@given(
    key=st.text(min_size=1, max_size=64),
    body=st.binary(max_size=2048),
    t=st.integers(min_value=0, max_value=10**11),
)
def test_sign_then_verify_round_trips_for_any_key_and_body(key: str, body: bytes, t: int) -> None:
    assert verify([key], body, sign(key, body, t), now=t) == t


@given(body=st.binary(max_size=512), flip=st.integers(min_value=0, max_value=511))
def test_any_changed_byte_breaks_the_signature(body: bytes, flip: int) -> None:
    if not body:
        return
    header = sign(VECTOR_KEY, body, VECTOR_T)
    i = flip % len(body)
    tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
    with pytest.raises(InvalidSignature):
        verify([VECTOR_KEY], tampered, header, now=VECTOR_T)


def test_parse_header_returns_timestamp_and_lowercased_signatures() -> None:
    t, sigs = parse_header("t=5, v1=" + "A" * 64)
    assert t == 5
    assert sigs == ["a" * 64]
