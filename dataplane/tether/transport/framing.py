"""Fragmentation of stream frames into data-channel messages, and their reassembly.

A WebRTC data channel delivers whole messages, but only up to a size the peers agree
on (aiortc accepts 262144 bytes; a peer that announces nothing is held to 65536). One
serialized `ClientFrame` or `ServerFrame` may be far larger (a video frame, a tensor),
so it travels as one or more messages:

    message  = header payload
    header   = 1 byte
               bit 0   MORE: further messages of the same frame follow
               bits 1-7 reserved, always 0; a receiver refuses a message that sets them
    payload  = 0 or more bytes of the frame

    frame    = the payloads of consecutive messages on one channel, up to and including
               the first message without MORE

A frame of any length, the empty frame included, ends with exactly one message whose
MORE bit is clear; a message never exceeds the size limit its sender was given.

The same format serves both kinds of data-channel message. Binary messages carry
protobuf. Text messages carry the protobuf JSON form, for browsers, which need no
protobuf library that way: their header is the character U+0000 or U+0001 (the same
byte in UTF-8), and fragments are cut between characters, never inside one, so every
fragment is valid text. One frame's messages are all of one kind.

A receiver bounds a frame's total payload: past the bound it raises `ProtocolError`,
like every other violation of this format. The limit is part of the contract (servers
publish theirs as `Limits.max_message_bytes`), so an oversized frame is a broken
promise, not a passing shortage: the error is not retryable. After an error the
reassembler refuses everything; the stream it served is over.

Pure functions and state machines: no I/O.
"""

from __future__ import annotations

from typing import Final

from tether.errors import ProtocolError

MORE: Final = 0x01
"""Header bit: more messages of this frame follow."""

_RESERVED: Final = 0xFF & ~MORE

HEADER_SIZE: Final = 1

MIN_MESSAGE_SIZE: Final = HEADER_SIZE + 4
"""The smallest usable limit: a header and the longest UTF-8 character."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 65536
"""Bytes per data-channel message, header included.

aiortc accepts up to 262144, but it holds a peer whose SDP announces no
`max-message-size` to 65536 (RFC 8841's default), and so do other stacks: this size
works with every peer, and costs nothing measurable, since SCTP cuts messages into
~1200-byte chunks anyway.
"""

Message = bytes | str
"""One data-channel message: binary (protobuf) or text (protobuf JSON)."""


def _payload_size(max_message_size: int) -> int:
    if max_message_size < MIN_MESSAGE_SIZE:
        raise ValueError(f"max_message_size must be at least {MIN_MESSAGE_SIZE} bytes")
    return max_message_size - HEADER_SIZE


def split(frame: bytes, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[bytes]:
    """The binary messages that carry `frame`, none longer than `max_message_size`."""
    chunk = _payload_size(max_message_size)
    view = memoryview(frame)
    messages = [
        bytes((MORE,)) + view[start : start + chunk]
        for start in range(0, len(frame) - chunk, chunk)
    ]
    last = (len(messages) * chunk) if messages else 0
    messages.append(b"\x00" + view[last:])
    return messages


def split_text(frame: str, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[str]:
    """The text messages that carry `frame`, none longer than `max_message_size` in UTF-8.

    Cuts fall between characters, so a fragment may be up to three bytes short of the
    limit when a multi-byte character would straddle it.
    """
    chunk = _payload_size(max_message_size)
    if frame.isascii():  # the JSON we produce: one byte per character, cut anywhere
        pieces = [frame[i : i + chunk] for i in range(0, len(frame), chunk)] or [""]
    else:
        pieces = _utf8_pieces(frame, chunk)
    return [
        ("\x01" if index < len(pieces) - 1 else "\x00") + piece
        for index, piece in enumerate(pieces)
    ]


def _utf8_pieces(text: str, chunk: int) -> list[str]:
    encoded = text.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + chunk, len(encoded))
        # Back off to a character boundary: UTF-8 continuation bytes are 0b10xxxxxx.
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces or [""]


class Reassembler:
    """Rebuilds frames from the messages of one data channel, in arrival order.

    reassembler = Reassembler(max_frame_size=16 * 1024 * 1024)
    for message in messages:
        frame = reassembler.feed(message)  # None until a frame is complete
    """

    def __init__(self, max_frame_size: int) -> None:
        if max_frame_size < 0:
            raise ValueError("max_frame_size must not be negative")
        self.max_frame_size = max_frame_size
        self._parts: list[bytes] = []
        self._size = 0
        self._text: bool | None = None
        """Kind of the frame in progress: True for text, False for binary, None between frames."""
        self._broken: ProtocolError | None = None

    @property
    def pending(self) -> bool:
        """A frame has started and not yet ended."""
        return self._text is not None

    def feed(self, message: Message) -> Message | None:
        """Take the next message; return the frame it completes, of the same kind, or None."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(message)
        except ProtocolError as exc:
            self._broken = exc
            self._parts.clear()
            raise

    def _feed(self, message: Message) -> Message | None:
        text = isinstance(message, str)
        payload = message.encode("utf-8") if isinstance(message, str) else message
        if not payload:
            raise ProtocolError("data-channel message without a frame header")
        header = payload[0]
        if header & _RESERVED:
            raise ProtocolError(f"data-channel message header sets reserved bits (0x{header:02x})")
        if self._text is not None and self._text != text:
            raise ProtocolError("a frame's fragments mix text and binary messages")
        self._size += len(payload) - HEADER_SIZE
        if self._size > self.max_frame_size:
            raise ProtocolError(f"frame exceeds the maximum of {self.max_frame_size} bytes")
        self._parts.append(payload[HEADER_SIZE:])
        if header & MORE:
            self._text = text
            return None
        frame = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        self._size = 0
        self._text = None
        # Each text fragment was valid UTF-8 and began with a one-byte header, so their
        # concatenation cannot fail to decode.
        return frame.decode("utf-8") if text else frame
