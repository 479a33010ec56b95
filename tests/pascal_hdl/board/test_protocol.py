"""The host-link protocol (:mod:`pascal_hdl.board.protocol`): frames, CRC, payloads, bounds, and the
frame-level model's answer to every malformed frame."""
from __future__ import annotations

import binascii

import numpy as np
import pytest

from pascal_hdl.board import protocol
from pascal_hdl.board.protocol import (ErrorCode, ErrorReply, FrameReader, FrameType, Identity, LinkModel,
                                       ProtocolError, Result, Status, crc16, encode_frame)


def identity(**changes):
    fields = dict(name="digits-mlp", digest=bytes(range(32)), input_features=4, input_levels=3, classes=3,
                  in_flight=1, queue_depth=2, logit_bytes=2, clk_freq=12_000_000, timeout_cycles=1000)
    fields.update(changes)
    return Identity(**fields)


def test_crc_is_ccitt_false_and_checks_to_zero():
    assert crc16(b"123456789") == 0x29B1                     # the CRC-16/CCITT-FALSE check value
    frame = encode_frame(FrameType.STATUS)
    assert frame == b"\xa5\x5a\x03\x00\x00" + crc16(b"\x03\x00\x00").to_bytes(2, "big")
    assert binascii.crc_hqx(frame[2:], 0xFFFF) == 0        # the board's check: CRC over body + CRC is 0


def test_payloads_round_trip():
    ident = identity()
    assert len(ident.encode()) == protocol.IDENTITY_BYTES == 83 and Identity.decode(ident.encode()) == ident
    result = Result(sample=65535, cls=2, rejected=True, cycles=123456, finished=2**32 - 1, logits=(-32768, 0, 32767))
    assert Result.decode(result.encode(2), 3, 2) == result
    status = Status(1, 2, 3, 4, 5)
    assert Status.decode(status.encode()) == status
    assert ErrorReply.decode(ErrorReply(ErrorCode.TRUNCATED, 9).encode()).describe() == "TRUNCATED (detail 9)"


@pytest.mark.parametrize("change, message", [
    ({"name": "x" * 33}, "name must be 1..32"), ({"name": "a b"}, "name must be"), ({"digest": b"1"}, "digest"),
    ({"input_levels": 256}, "input_levels must be an integer in \\[1, 255\\]"), ({"queue_depth": 0}, "queue_depth"),
])
def test_identity_is_validated(change, message):
    with pytest.raises(ProtocolError, match=message):
        identity(**change)


def test_decoders_refuse_wrong_sizes_and_values():
    with pytest.raises(ProtocolError, match="IDENTITY payload of 82 bytes, expected 83"):
        Identity.decode(bytes(82))
    with pytest.raises(ProtocolError, match="class 3 of 3"):
        Result.decode(Result(0, 3, False, 0, 0, (0, 0, 0)).encode(2), 3, 2)
    with pytest.raises(ProtocolError, match="flags 0x02"):
        Result.decode(bytes(4) + b"\x02" + bytes(14), 3, 2)
    with pytest.raises(ProtocolError, match="unknown error code 99"):
        ErrorReply.decode(b"\x63\x00\x00")
    with pytest.raises(ProtocolError, match="levels must lie in \\[0, 3\\]"):
        protocol.sample_payload(np.array([0, 1, 4, 0]), 4, 3)
    with pytest.raises(ProtocolError, match="shape \\(4,\\)"):
        protocol.sample_payload(np.array([0, 1, 2]), 4, 3)


def test_reader_is_bounded_and_resynchronises():
    reader = FrameReader(max_payload=8)
    frames = reader.feed(encode_frame(FrameType.ERROR, b"\x01\x00\x02") + encode_frame(FrameType.STATUS_REPLY, bytes(8)))
    assert [f.type for f in frames] == [FrameType.ERROR, FrameType.STATUS_REPLY]
    with pytest.raises(ProtocolError, match="length 9 above the limit 8"):
        reader.feed(b"\xa5\x5a\x83\x00\x09")
    assert reader.needed() == 5                              # nothing kept of the refused frame
    with pytest.raises(ProtocolError, match="CRC"):
        reader.feed(encode_frame(FrameType.STATUS_REPLY, b"")[:-1] + b"\xff")
    assert reader.feed(encode_frame(FrameType.IDENTITY, b"")) == [protocol.Frame(FrameType.IDENTITY, b"")]


def _model():
    return LinkModel(identity(), lambda levels: (np.array([int(levels.sum()), 0, -1]), 0))


@pytest.mark.parametrize("data, code, detail", [
    (b"\x00", ErrorCode.BAD_SYNC, 0), (b"\xa5\x00", ErrorCode.BAD_SYNC, 0), (encode_frame(0x7F), ErrorCode.UNKNOWN_TYPE, 0x7F),
    (encode_frame(FrameType.STATUS, b"\x00"), ErrorCode.BAD_LENGTH, 1),
    (encode_frame(FrameType.SAMPLE, bytes(3)), ErrorCode.BAD_LENGTH, 3),
    (encode_frame(FrameType.SAMPLE, bytes(5)), ErrorCode.TOO_MANY_FEATURES, 5),
    (encode_frame(FrameType.SAMPLE, b"\x00\x04\x00\x09"), ErrorCode.LEVEL_TOO_HIGH, 1),
    (encode_frame(FrameType.IDENTIFY)[:-1] + b"\x00", ErrorCode.BAD_CRC, None),
])
def test_model_answers_each_malformed_frame_once(data, code, detail):
    link = _model()
    replies = link.feed(data)
    assert len(replies) == 1 and replies[0].type == FrameType.ERROR
    error = ErrorReply.decode(replies[0].payload)
    assert error.code == code and error.detail == (int.from_bytes(data[-2:], "big") if detail is None else detail)
    link.idle(1000)
    assert [f.type for f in link.feed(encode_frame(FrameType.IDENTIFY))] == [FrameType.IDENTITY]


def test_model_truncation_and_discard():
    link = _model()
    assert link.feed(encode_frame(FrameType.SAMPLE, bytes(4))[:6]) == []
    link.idle(999)
    assert link.feed(b"") == []
    link.idle(1)
    assert ErrorReply.decode(link.feed(b"")[0].payload) == ErrorReply(ErrorCode.TRUNCATED, 6)
    # after a header fault every byte is dropped until the line was idle for the timeout
    assert len(link.feed(b"\x00" + encode_frame(FrameType.IDENTIFY))) == 1
    link.idle(1000)
    result = link.feed(encode_frame(FrameType.SAMPLE, b"\x01\x02\x03\x00"))
    assert Result.decode(result[0].payload, 3, 2).logits == (6, 0, -1)
