"""The host driver (:mod:`pascal_hdl.board.driver`) without a board: against the frame-level model of the
board (:class:`pascal_hdl.board.protocol.LinkModel` with the integer golden model) behind a fake serial
port, and against pyserial's ``loop://`` (which echoes: no board answers)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pascal_hdl.board import protocol
from pascal_hdl.board.driver import Board, BoardError, run_board
from pascal_hdl.board.protocol import ErrorCode, ErrorReply, FrameType, Identity, LinkModel, encode_frame
from pascal_hdl.flow.generate import core_config_from_network
from pascal_ref.cli import build_parser, main
from pascal_ref.golden.quantize import integer_ann
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load

QUEUE = 4


class FakeBoardPort:
    """A serial port with the board's frame-level model behind it: ``write`` feeds the model, ``read``
    returns its replies (``b""`` when there is nothing, as pyserial does after its timeout).
    ``max_outstanding`` checks the driver never has more samples unanswered than the board's queue."""

    def __init__(self, link: LinkModel, corrupt=None):
        self.link, self.out, self.corrupt = link, bytearray(), corrupt
        self.written = bytearray()

    def write(self, data: bytes) -> int:
        self.written += data
        for frame in self.link.feed(data):
            encoded = encode_frame(frame.type, frame.payload)
            self.out += self.corrupt(frame, encoded) if self.corrupt else encoded
        return len(data)

    def read(self, size: int) -> bytes:
        data, self.out = bytes(self.out[:size]), self.out[size:]
        return data


def mlp():
    network = load(bundled_path("digits-mlp"))
    config, model = core_config_from_network(network)
    return network, config, model


def golden_classify(model, shape, offset_image=None):
    calls = []

    def classify(levels):
        calls.append(levels)
        logits = np.asarray(integer_ann(model, x_int=levels.reshape((1,) + shape)).integer_logits[0])
        if offset_image is not None and len(calls) - 1 == offset_image:
            logits = logits.copy()
            logits[0] += 1
        return logits, int(np.argmax(logits))
    return classify


def identity_of(config, name="digits-mlp", digest=None):
    return Identity(name=name, digest=digest or protocol.weight_digest(config), input_features=config.input_features,
                    input_levels=config.input_levels, classes=config.classes, in_flight=1, queue_depth=QUEUE,
                    logit_bytes=protocol.logit_bytes_for(config.readout.logit_width), clk_freq=12_000_000,
                    timeout_cycles=240_000)


def fake_port(config, model, network, **kwargs):
    identity = identity_of(config, **{k: kwargs.pop(k) for k in ("name", "digest") if k in kwargs})
    link = LinkModel(identity, golden_classify(model, tuple(network.input_shape), kwargs.pop("offset_image", None)))
    return FakeBoardPort(link, **kwargs)


def parse(*argv):
    return build_parser().parse_args(["board", "run", "digits-mlp", "--port", "fake", "--data", "digits", *argv])


def test_board_library_identifies_and_classifies():
    network, config, model = mlp()
    port = fake_port(config, model, network)
    board = Board(port)
    identity = board.identify()
    assert identity.digest == protocol.weight_digest(config) and identity.name == "digits-mlp"
    _, _, x_test, _ = load_digits_split()
    levels = model.encode_input(x_test[:12])
    results = list(board.classify(levels.reshape(12, -1)))
    np.testing.assert_array_equal([r.logits for r in results], integer_ann(model, x_int=levels).integer_logits)
    assert [r.sample for r in results] == list(range(12))
    assert board.status() == protocol.Status(12, 12, 0, 0, 0)


def test_the_driver_never_has_more_in_flight_than_the_queue():
    network, config, model = mlp()
    port = fake_port(config, model, network)
    board = Board(port)
    board.identify()
    levels = np.ones((9, config.input_features), dtype=np.int64)
    sent_at_result = []
    for result in board.classify(levels):
        sent_at_result.append(port.written.count(encode_frame(FrameType.SAMPLE, bytes([1] * config.input_features))))
    assert [sent - index for index, sent in enumerate(sent_at_result)] == [4, 4, 4, 4, 4, 4, 3, 2, 1]


def test_run_command_reports_agreement(tmp_path, capsys):
    network, config, model = mlp()
    out = tmp_path / "board.json"
    status = run_board(parse("--limit", "40", "--json", str(out)), port=fake_port(config, model, network))
    text = capsys.readouterr().out
    assert status == 0, text
    assert "every image agrees with the integer golden model" in text and "images/s" in text
    report = json.loads(out.read_text())
    assert report["images"] == 40 and report["disagreements"] == 0 and 0.8 < report["accuracy"] <= 1
    frame = protocol.FRAME_OVERHEAD          # one SAMPLE and one RESULT per image, one STATUS for the stream
    assert report["bytes_per_image"] == {
        "to_board": (40 * (frame + config.input_features) + frame) / 40,
        "from_board": (40 * (frame + protocol.result_bytes(10, report_logit_bytes(config)))
                       + frame + protocol.STATUS_BYTES) / 40}


def report_logit_bytes(config):
    return protocol.logit_bytes_for(config.readout.logit_width)


def test_run_command_fails_on_a_disagreement(capsys):
    network, config, model = mlp()
    status = run_board(parse("--limit", "10"), port=fake_port(config, model, network, offset_image=3))
    text = capsys.readouterr().out
    assert status == 1
    assert "1 DISAGREE" in text and "image 3: board logits" in text


def test_refuses_a_board_with_other_weights(capsys):
    network, config, model = mlp()
    other = bytes(32)
    with pytest.raises(Exception) as caught:
        run_board(parse("--limit", "2"), port=fake_port(config, model, network, name="other", digest=other))
    message = str(caught.value)
    assert "runs 'other' (weights 0000000000000000...), not digits-mlp" in message and "refusing" in message
    assert "\n" not in message


def test_refuses_the_model_built_with_other_lanes():
    """The digest covers the memory images, so a bitstream built with other lanes is refused too."""
    network, config, model = mlp()
    other, _ = core_config_from_network(network, lanes=4)
    assert protocol.weight_digest(other) != protocol.weight_digest(config)


def test_cli_exit_status_2_on_refusal_over_loopback(capsys):
    """``loop://`` echoes the IDENTIFY request: the driver names the wrong reply and exits 2."""
    status = main(["board", "run", "digits-mlp", "--port", "loop://", "--data", "digits", "--limit", "1",
                   "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert status == 2
    assert "expected a IDENTITY reply, got frame type 0x01" in err and len(err.strip().splitlines()) == 1


def test_cli_names_a_missing_port(capsys):
    status = main(["board", "run", "digits-mlp", "--port", "/dev/does-not-exist-ttyUSB9", "--data", "digits"])
    err = capsys.readouterr().err
    assert status == 2 and "cannot open '/dev/does-not-exist-ttyUSB9'" in err


class SilentPort:
    def write(self, data):
        return len(data)

    def read(self, size):
        return b""


def test_no_reply_times_out():
    ticks = iter(range(1000))
    board = Board(SilentPort(), timeout=3, clock=lambda: next(ticks))
    with pytest.raises(BoardError, match="no reply from the board within 3 s"):
        board.identify()


@pytest.mark.parametrize("reply, message", [
    (encode_frame(FrameType.ERROR, ErrorReply(ErrorCode.BAD_CRC, 0x1234).encode()),
     "the board answered ERROR BAD_CRC \\(detail 4660\\)"),
    (encode_frame(FrameType.IDENTITY, bytes(protocol.IDENTITY_BYTES))[:-1] + b"\x00",
     "bad reply from the board: frame type 0x81: CRC"),
    (b"\xa5\x5a\x81\xff\xff", "bad reply from the board: frame type 0x81: length 65535 above the limit 83"),
    (b"\x00", "bad reply from the board: byte 0x00 where sync byte 0"),
    (encode_frame(FrameType.STATUS_REPLY, bytes(9)), "expected a IDENTITY reply, got frame type 0x83"),
])
def test_bad_replies_are_named(reply, message):
    class Port(SilentPort):
        def __init__(self):
            self.out = bytearray(reply)

        def read(self, size):
            data, self.out = bytes(self.out[:size]), self.out[size:]
            return data

    with pytest.raises(BoardError, match=message):
        Board(Port(), timeout=0.2).identify()


def test_board_error_frame_during_classify():
    """An ERROR during the stream (here: every SAMPLE answered LEVEL_TOO_HIGH) stops it with that error."""
    network, config, model = mlp()
    port = fake_port(config, model, network)
    port.link.identity = identity_of(config)
    board = Board(port)
    board.identify()
    port.link.identity = Identity(**{**port.link.identity.__dict__, "input_levels": 1})
    with pytest.raises(BoardError, match="LEVEL_TOO_HIGH"):
        list(board.classify(np.full((2, config.input_features), 2)))
