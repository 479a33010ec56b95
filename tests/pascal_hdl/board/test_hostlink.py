"""Amaranth-simulator tests of the host link (:class:`pascal_hdl.board.hostlink.HostLink`): bytes on the
``rx`` line in, bytes decoded from ``tx`` out (through the UART cycle models), every reply compared
with the frame-level model (:class:`pascal_hdl.board.protocol.LinkModel`) and the results with the
integer golden model."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_hdl.board import protocol
from pascal_hdl.board.hostlink import HostLink, uart_divisor
from pascal_hdl.board.protocol import ErrorCode, ErrorReply, FrameReader, FrameType, LinkModel, encode_frame
from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.model.uart import UartRxModel, uart_bits
from pascal_hdl.testing import with_reset
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.testing import random_mlp

DIVISOR = 4
CLK = 400_000
BAUD = CLK // DIVISOR
TIMEOUT = 400                       # cycles: 10 byte times


def small_config(rng):
    model = quantize(random_mlp(rng, [12, 9, 4], levels=[3]))
    return model, CoreConfig.from_integer_network(model, lanes=[4, 2])


def small_link(rng, queue_depth=2, in_flight=1):
    model, config = small_config(rng)
    if in_flight != 1:
        config = CoreConfig(config.name, config.input_features, config.input_levels, config.layers, in_flight)
    link = HostLink(config, clk_freq=CLK, baud=BAUD, model_name="small-mlp", digest=protocol.weight_digest(config),
                    queue_depth=queue_depth, timeout_cycles=TIMEOUT)
    return model, config, link


def classify(model):
    def run(levels):
        logits = integer_ann(model, x_int=np.asarray(levels)[None]).integer_logits[0]
        return logits, int(np.argmax(logits))
    return run


class LinkBench:
    """Drives ``rx`` bit by bit from a schedule of line levels and decodes ``tx`` with the receiver's
    cycle model, one cycle at a time. ``script`` is a list of ``("bytes", data)``,
    ``("idle", cycles)``, ``("bits", levels)`` (raw line levels, one bit each) and ``("reset", None)``;
    the run ends ``tail`` cycles after the script (or earlier when ``until(frames)`` holds)."""

    def __init__(self, link: HostLink):
        self.link = link
        self.frames: list[protocol.Frame] = []
        self.faults: list[str] = []

    def run(self, script, tail: int = 20_000, until=None, max_cycles: int = 400_000):
        from amaranth.sim import Simulator

        link = self.link
        top, rst = with_reset(link)
        sim = Simulator(top)
        sim.add_clock(1e-6)
        receiver = UartRxModel(link.divisor)
        reader = FrameReader(max_payload=protocol.IDENTITY_BYTES)
        schedule = []   # per cycle: line level, or "reset"
        for kind, value in script:
            if kind == "bytes":
                for byte in value:
                    schedule += [bit for bit in uart_bits(byte) for _ in range(link.divisor)]
            elif kind == "bits":
                schedule += [bit for bit in value for _ in range(link.divisor)]
            elif kind == "idle":
                schedule += [1] * value
            elif kind == "reset":
                schedule += ["reset"]
        frames, faults = self.frames, self.faults

        async def bench(ctx):
            position, after = 0, 0
            for _ in range(max_cycles):
                if position < len(schedule):
                    level = schedule[position]
                    position += 1
                    ctx.set(rst, level == "reset")
                    ctx.set(link.rx, 1 if level == "reset" else level)
                else:
                    ctx.set(rst, 0)
                    ctx.set(link.rx, 1)
                    after += 1
                    if after >= tail or (until is not None and until(frames)):
                        return
                await ctx.tick()
                receiver.step(ctx.get(link.tx))
                if receiver.valid:
                    try:
                        frames.extend(reader.feed(bytes([receiver.data])))
                    except protocol.ProtocolError as error:
                        faults.append(str(error))
                if receiver.framing_error:
                    faults.append("framing error on tx")
            raise AssertionError(f"bench: not done within {max_cycles} cycles")

        sim.add_testbench(bench)
        sim.run()
        assert not self.faults, self.faults
        return self.frames


def model_replies(model_link: LinkModel, script) -> list[protocol.Frame]:
    replies = []
    for kind, value in script:
        if kind == "bytes":
            replies += model_link.feed(value)
        elif kind == "idle":
            model_link.idle(value)
            replies += model_link.feed(b"")
        elif kind == "reset":
            model_link.reset()
    return replies


def sample_frame(levels) -> bytes:
    return encode_frame(FrameType.SAMPLE, bytes(int(v) for v in levels))


def test_divisor_and_bounds():
    assert uart_divisor(12_000_000, 115_200) == 104
    assert uart_divisor(25_000_000, 1_000_000) == 25
    with pytest.raises(HardwareError, match="at least 4"):
        uart_divisor(1_000_000, 1_000_000)
    with pytest.raises(HardwareError, match="more than 2% from"):
        uart_divisor(1_000_000, 230_400)   # 4.34 cycles per bit -> 4: 250000 baud
    rng = np.random.default_rng(1)
    _, config = small_config(rng)
    digest = protocol.weight_digest(config)
    with pytest.raises(HardwareError, match="name must be 1..32 printable ASCII"):
        HostLink(config, clk_freq=CLK, baud=BAUD, model_name="a" * 33, digest=digest)
    with pytest.raises(HardwareError, match="digest must be 32 bytes"):
        HostLink(config, clk_freq=CLK, baud=BAUD, model_name="m", digest=b"\0" * 31)
    with pytest.raises(HardwareError, match="timeout_cycles must be an integer in \\[80"):
        HostLink(config, clk_freq=CLK, baud=BAUD, model_name="m", digest=digest, timeout_cycles=79)
    with pytest.raises(HardwareError, match="queue_depth"):
        HostLink(config, clk_freq=CLK, baud=BAUD, model_name="m", digest=digest, queue_depth=0)


def test_identify_status_and_samples_match_the_models():
    rng = np.random.default_rng(2)
    model, config, link = small_link(rng, queue_depth=8)   # the results wait behind the identity reply
    levels = rng.integers(0, config.input_levels + 1, (5, config.input_features)) * (rng.random((5, 12)) < 0.6)
    levels[1] = 0                                     # the all-zero sample: one (0, 0, last) event
    levels[2] = config.input_levels
    # the status is latched when its reply starts (after the identity's): wait for both before the samples
    script = [("bytes", encode_frame(FrameType.IDENTIFY)), ("bytes", encode_frame(FrameType.STATUS)), ("idle", 6000)]
    script += [("bytes", sample_frame(sample)) for sample in levels]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) == 2 + len(levels))
    expected = model_replies(LinkModel(link.identity, classify(model)), script)
    assert [f.type for f in frames] == [f.type for f in expected], [f.payload for f in frames]
    assert frames[0] == expected[0] and protocol.Identity.decode(frames[0].payload) == link.identity
    assert protocol.Status.decode(frames[1].payload) == protocol.Status(0, 0, 0, 0, 0)
    results = [protocol.Result.decode(f.payload, config.classes, link.identity.logit_bytes) for f in frames[2:]]
    golden = integer_ann(model, x_int=levels).integer_logits
    assert [r.sample for r in results] == list(range(len(levels)))
    np.testing.assert_array_equal([r.logits for r in results], golden)
    assert [r.cls for r in results] == list(np.argmax(golden, axis=1))
    assert not any(r.rejected for r in results)
    assert all(r.cycles > 0 for r in results)
    for got, want in zip(results, expected[2:]):      # the model's results carry no cycle figures
        want = protocol.Result.decode(want.payload, config.classes, link.identity.logit_bytes)
        assert (got.sample, got.cls, got.logits) == (want.sample, want.cls, want.logits)


def _error(frame) -> ErrorReply:
    assert frame.type == FrameType.ERROR, frame
    return ErrorReply.decode(frame.payload)


MALFORMED = {
    # name: (bytes of the malformed frame, the error expected)
    "bad_sync": (b"\x17" + encode_frame(FrameType.IDENTIFY), (ErrorCode.BAD_SYNC, 0x17)),
    "bad_second_sync": (b"\xa5\x17" + encode_frame(FrameType.IDENTIFY)[2:], (ErrorCode.BAD_SYNC, 0x17)),
    "unknown_type": (encode_frame(0x44), (ErrorCode.UNKNOWN_TYPE, 0x44)),
    "bad_length": (encode_frame(FrameType.IDENTIFY, b"\x00\x01"), (ErrorCode.BAD_LENGTH, 2)),
    "short_sample": (encode_frame(FrameType.SAMPLE, bytes(11)), (ErrorCode.BAD_LENGTH, 11)),
    "too_many_features": (encode_frame(FrameType.SAMPLE, bytes(13)), (ErrorCode.TOO_MANY_FEATURES, 13)),
    "huge_length": (b"\xa5\x5a\x02\xff\xff", (ErrorCode.TOO_MANY_FEATURES, 0xFFFF)),
    "bad_crc": (encode_frame(FrameType.STATUS)[:-1] + b"\x00", None),
    "level_too_high": (sample_frame([1] * 7 + [200] + [1] * 4), (ErrorCode.LEVEL_TOO_HIGH, 7)),
    "truncated": (encode_frame(FrameType.SAMPLE, bytes(12))[:9], (ErrorCode.TRUNCATED, 9)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frame_gets_its_error_then_the_link_works(case):
    rng = np.random.default_rng(3)
    model, config, link = small_link(rng)
    data, want = MALFORMED[case]
    if want is None:                                  # bad_crc: the CRC field received
        want = (ErrorCode.BAD_CRC, int.from_bytes(data[-2:], "big"))
    good = rng.integers(0, config.input_levels + 1, config.input_features)
    script = [("bytes", data), ("idle", TIMEOUT + 80), ("bytes", sample_frame(good)),
              ("bytes", encode_frame(FrameType.STATUS))]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) >= 3)
    expected = model_replies(LinkModel(link.identity, classify(model)), script)
    error = _error(frames[0])
    assert (error.code, error.detail) == want
    assert frames == expected[:1] + frames[1:] and [f.type for f in frames] == [f.type for f in expected]
    result = protocol.Result.decode(frames[1].payload, config.classes, link.identity.logit_bytes)
    assert result.logits == tuple(integer_ann(model, x_int=good[None]).integer_logits[0]) and result.sample == 0
    assert protocol.Status.decode(frames[2].payload) == protocol.Status(1, 1, 0, 1, 0)


def test_framing_error_and_glitch():
    rng = np.random.default_rng(4)
    model, config, link = small_link(rng)
    # a byte whose stop bit is 0 (then the line returns to 1), and a start-bit glitch shorter than half a bit
    script = [("bits", [0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1]), ("idle", TIMEOUT + 80),
              ("bytes", encode_frame(FrameType.IDENTIFY))]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) >= 2)
    assert (_error(frames[0]).code, _error(frames[0]).detail) == (ErrorCode.FRAMING, 0)
    assert frames[1].type == FrameType.IDENTITY


def test_queue_full_is_answered_and_never_corrupts():
    """Queue depth 1 and samples back to back: each SAMPLE gets a RESULT (right logits) or QUEUE_FULL."""
    rng = np.random.default_rng(5)
    model, config, link = small_link(rng, queue_depth=1)
    levels = np.full((8, config.input_features), config.input_levels)   # in faster than the results go out
    script = [("bytes", b"".join(sample_frame(sample) for sample in levels))]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) == 8)
    assert len(frames) == 8
    full = [f for f in frames if f.type == FrameType.ERROR]
    assert full and all(_error(f).code == ErrorCode.QUEUE_FULL for f in full)
    results = [protocol.Result.decode(f.payload, config.classes, link.identity.logit_bytes)
               for f in frames if f.type == FrameType.RESULT]
    golden = integer_ann(model, x_int=levels[:1]).integer_logits[0]
    assert results and all(r.logits == tuple(golden) for r in results)
    assert [r.sample for r in results] == list(range(len(results)))


def test_reset_mid_frame():
    """A reset in the middle of a SAMPLE frame: the rest of the frame is a BAD_SYNC, then the link works,
    its sample numbers and counters from 0."""
    rng = np.random.default_rng(6)
    model, config, link = small_link(rng)
    sample = np.arange(config.input_features) % (config.input_levels + 1)
    frame = sample_frame(sample)
    script = [("bytes", frame[:8]), ("reset", None), ("bytes", frame[8:]),
              ("idle", TIMEOUT + 80), ("bytes", frame), ("bytes", encode_frame(FrameType.STATUS))]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) >= 3, tail=20_000)
    expected = model_replies(LinkModel(link.identity, classify(model)), script)
    after = frames
    assert len(frames) == 3 and [f.type for f in after] == [f.type for f in expected]
    assert (_error(after[0]).code, _error(after[0]).detail) == (ErrorCode.BAD_SYNC, frame[8])
    result = protocol.Result.decode(after[1].payload, config.classes, link.identity.logit_bytes)
    assert result.sample == 0 and result.logits == tuple(integer_ann(model, x_int=sample[None]).integer_logits[0])
    assert protocol.Status.decode(after[2].payload) == protocol.Status(1, 1, 0, 1, 0)


def test_in_flight_core_keeps_order():
    rng = np.random.default_rng(7)
    model, config, link = small_link(rng, queue_depth=3, in_flight=2)
    levels = rng.integers(0, config.input_levels + 1, (6, config.input_features))
    script = [("bytes", sample_frame(sample)) for sample in levels]
    frames = LinkBench(link).run(script, until=lambda frames: len(frames) == 6)
    results = [protocol.Result.decode(f.payload, config.classes, link.identity.logit_bytes) for f in frames]
    np.testing.assert_array_equal([r.logits for r in results], integer_ann(model, x_int=levels).integer_logits)
    assert [r.sample for r in results] == list(range(6))
