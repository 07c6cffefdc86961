"""Wire codecs: the varint length prefix and the frame decoder of ``FramedTcp``."""

from __future__ import annotations

from .framing import FrameDecoder, encode_frame, frame_header
from .varint import MAX_VARINT_LEN, decode_varint, encode_varint

__all__ = [
    "MAX_VARINT_LEN",
    "FrameDecoder",
    "decode_varint",
    "encode_frame",
    "encode_varint",
    "frame_header",
]
