"""Data-channel framing (tether.transport.framing): the wire format, fragmentation at the
size limit, reassembly bounds, and that garbage only ever yields ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import ProtocolError
from tether.transport.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    MORE,
    Reassembler,
    split,
    split_text,
)


def reassemble(
    messages: list[bytes] | list[str], max_frame_size: int = 1 << 30
) -> list[bytes | str]:
    reassembler = Reassembler(max_frame_size)
    frames = [frame for message in messages if (frame := reassembler.feed(message)) is not None]
    assert not reassembler.pending
    return frames


def test_a_small_frame_is_one_final_message_with_a_zero_header() -> None:
    assert split(b"abc") == [b"\x00abc"]


def test_the_empty_frame_is_one_header_only_message() -> None:
    assert split(b"") == [b"\x00"]
    assert split_text("") == ["\x00"]
    assert reassemble([b"\x00"]) == [b""]
    assert reassemble(["\x00"]) == [""]


def test_a_frame_exactly_filling_one_message_is_not_fragmented() -> None:
    frame = bytes(range(7))
    assert split(frame, max_message_size=8) == [b"\x00" + frame]


def test_one_byte_over_the_limit_makes_two_messages_and_only_the_first_has_more() -> None:
    frame = bytes(range(8))
    messages = split(frame, max_message_size=8)
    assert messages == [b"\x01" + frame[:7], b"\x00" + frame[7:]]


def test_no_message_exceeds_the_default_limit_for_a_large_frame() -> None:
    frame = bytes(3 * DEFAULT_MAX_MESSAGE_SIZE)
    messages = split(frame)
    assert all(len(m) <= DEFAULT_MAX_MESSAGE_SIZE for m in messages)
    assert [m[0] for m in messages] == [MORE, MORE, MORE, 0]
    assert reassemble(messages) == [frame]


def test_text_fragments_are_cut_between_characters_and_stay_within_the_utf8_limit() -> None:
    frame = "é€😀x" * 40
    messages = split_text(frame, max_message_size=MIN_MESSAGE_SIZE + 2)
    assert all(len(m.encode()) <= MIN_MESSAGE_SIZE + 2 for m in messages)
    assert reassemble(messages) == [frame]


def test_consecutive_frames_are_reassembled_in_order() -> None:
    messages = split(b"one", 5) + split(b"", 5) + split(b"three", 5)
    assert reassemble(messages) == [b"one", b"", b"three"]


def test_a_limit_too_small_for_any_character_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        split(b"x", max_message_size=MIN_MESSAGE_SIZE - 1)


def test_a_frame_over_the_maximum_size_is_a_protocol_error_as_soon_as_it_crosses_it() -> None:
    reassembler = Reassembler(max_frame_size=10)
    assert reassembler.feed(b"\x01" + bytes(10)) is None
    with pytest.raises(ProtocolError, match="maximum of 10 bytes"):
        reassembler.feed(b"\x01" + bytes(1))


def test_a_frame_of_exactly_the_maximum_size_is_accepted() -> None:
    assert reassemble(split(bytes(10), 6), max_frame_size=10) == [bytes(10)]


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([b""], "without a frame header"),
        ([""], "without a frame header"),
        ([b"\x02abc"], "reserved bits"),
        ([b"\x80"], "reserved bits"),
        (["é"], "reserved bits"),
        ([b"\x01ab", "\x00cd"], "mix text and binary"),
        (["\x01ab", b"\x00cd"], "mix text and binary"),
    ],
)
def test_malformed_messages_are_protocol_errors(messages: list[bytes | str], reason: str) -> None:
    reassembler = Reassembler(max_frame_size=100)
    *leading, last = messages
    for message in leading:
        assert reassembler.feed(message) is None
    with pytest.raises(ProtocolError, match=reason):
        reassembler.feed(last)


def test_after_an_error_the_reassembler_refuses_everything() -> None:
    reassembler = Reassembler(max_frame_size=100)
    with pytest.raises(ProtocolError):
        reassembler.feed(b"\xff")
    with pytest.raises(ProtocolError, match="reserved bits"):
        reassembler.feed(b"\x00fine")


@st.composite
def frames_and_limits(draw: st.DrawFn) -> tuple[bytes, int]:
    """Random frames, with lengths at, just under and just over multiples of the payload size."""
    max_message_size = draw(st.integers(min_value=MIN_MESSAGE_SIZE, max_value=300))
    payload = max_message_size - 1
    length = draw(
        st.one_of(
            st.integers(min_value=0, max_value=2000),
            st.builds(
                lambda k, d: max(0, k * payload + d), st.integers(0, 6), st.sampled_from([-1, 0, 1])
            ),
        )
    )
    return draw(st.binary(min_size=length, max_size=length)), max_message_size


@settings(max_examples=300, deadline=None)
@given(case=frames_and_limits())
def test_split_then_reassemble_is_identity_for_binary_frames(case: tuple[bytes, int]) -> None:
    frame, max_message_size = case
    messages = split(frame, max_message_size)
    assert all(len(m) <= max_message_size for m in messages)
    assert all(m[0] == MORE for m in messages[:-1])
    assert messages[-1][0] == 0
    assert reassemble(messages, max_frame_size=len(frame)) == [frame]


@settings(max_examples=300, deadline=None)
@given(
    frame=st.text(max_size=600),
    max_message_size=st.integers(min_value=MIN_MESSAGE_SIZE, max_value=80),
)
def test_split_then_reassemble_is_identity_for_text_frames(
    frame: str, max_message_size: int
) -> None:
    messages = split_text(frame, max_message_size)
    assert all(len(m.encode()) <= max_message_size for m in messages)
    assert reassemble(messages, max_frame_size=len(frame.encode())) == [frame]


@settings(max_examples=500, deadline=None)
@given(
    messages=st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=40)), max_size=12),
    max_frame_size=st.integers(min_value=0, max_value=64),
)
def test_garbage_yields_frames_or_protocol_errors_and_nothing_else(
    messages: list[bytes | str], max_frame_size: int
) -> None:
    reassembler = Reassembler(max_frame_size)
    for message in messages:
        try:
            frame = reassembler.feed(message)
        except ProtocolError:
            continue
        if frame is not None:
            assert type(frame) is type(message)
            assert len(frame.encode() if isinstance(frame, str) else frame) <= max_frame_size
