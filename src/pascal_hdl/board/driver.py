"""The host driver: ``pascal-ref board run`` and the :class:`Board` library over any byte stream.

    pascal-ref board run MODEL --port /dev/ttyUSB0 --data digits [--baud B] [--limit N] [--json OUT]
                         [--lanes K] [--layer-lanes NAME=K,...] [--weight-bits B] [--per-layer-threshold]
                         [--timeout S]

The command quantizes ``MODEL`` as ``pascal-ref hdl`` does (the same options give the same weight
memory images), opens the port with pyserial (``serial.serial_for_url``: a device, or a URL such as
``loop://`` or ``socket://host:port``), identifies the board and refuses one whose weight digest or
shape differs from the model's (one line, exit status 2), streams the images with up to the board's
queue depth in flight, and reports the accuracy, images/s and the per-image agreement with the
integer golden model (``pascal_ref.golden.quantize.integer_ann``): logits and class of every image
equal, else exit status 1 (naming the first images that differ).

:class:`Board` is the same protocol code without the CLI: ``Board(port)`` over any object with
``read(n)`` (returning what arrived, ``b""`` after its own timeout) and ``write(data)``.
"""
from __future__ import annotations

import time

import numpy as np

from pascal_hdl.board import protocol
from pascal_hdl.board.protocol import ErrorReply, FrameReader, FrameType, Identity, Result, Status, encode_frame

__all__ = ["Board", "BoardError", "register_board", "DEFAULT_BAUD", "DEFAULT_TIMEOUT_S"]

DEFAULT_BAUD = 115_200
DEFAULT_TIMEOUT_S = 2.0


class BoardError(protocol.ProtocolError):
    """The board answered with an ERROR frame, answered nonsense or did not answer in time."""

    def __init__(self, message: str, reply: ErrorReply | None = None):
        super().__init__(message)
        self.reply = reply


class Board:
    """A board running the host link, over ``port`` (``read(n)``, ``write(data)``).

    Every call waits at most ``timeout`` seconds for each reply (a :class:`BoardError` then); replies
    are bounded by the largest frame the protocol allows for the identified board. An ERROR frame
    raises :class:`BoardError` with the decoded :class:`~pascal_hdl.board.protocol.ErrorReply`.
    """

    def __init__(self, port, timeout: float = DEFAULT_TIMEOUT_S, clock=time.monotonic):
        if not (hasattr(port, "read") and hasattr(port, "write")):
            raise TypeError(f"Board: port must have read(n) and write(data), got {type(port).__name__}")
        if not timeout > 0:
            raise ValueError(f"Board: timeout must be > 0 seconds, got {timeout!r}")
        self.port, self.timeout, self.clock = port, float(timeout), clock
        self.identity: Identity | None = None
        self._reader = FrameReader(max_payload=protocol.IDENTITY_BYTES)
        self._frames: list[protocol.Frame] = []
        self.bytes_sent = self.bytes_received = 0

    # -- frames

    def _send(self, frame_type: int, payload: bytes = b"") -> None:
        data = encode_frame(frame_type, payload)
        self.port.write(data)
        self.bytes_sent += len(data)

    def _next_frame(self) -> protocol.Frame:
        deadline = self.clock() + self.timeout
        while not self._frames:
            if self.clock() > deadline:
                raise BoardError(f"no reply from the board within {self.timeout:g} s")
            data = self.port.read(max(1, self._reader.needed()))
            if data:
                self.bytes_received += len(data)
                try:
                    self._frames.extend(self._reader.feed(data))
                except protocol.ProtocolError as error:
                    raise BoardError(f"bad reply from the board: {error}") from None
        return self._frames.pop(0)

    def _expect(self, frame_type: FrameType) -> protocol.Frame:
        frame = self._next_frame()
        if frame.type == FrameType.ERROR:
            reply = ErrorReply.decode(frame.payload)
            raise BoardError(f"the board answered ERROR {reply.describe()}", reply)
        if frame.type != frame_type:
            raise BoardError(f"expected a {frame_type.name} reply, got frame type 0x{frame.type:02x}")
        return frame

    # -- requests

    def identify(self) -> Identity:
        """IDENTIFY: the board's model name, weight digest, core version and shape."""
        self._send(FrameType.IDENTIFY)
        identity = Identity.decode(self._expect(FrameType.IDENTITY).payload)
        self.identity = identity
        self._reader.max_payload = max(protocol.IDENTITY_BYTES, identity.result_bytes)
        return identity

    def status(self) -> Status:
        """STATUS: counters of the link (no sample may be in flight: the reply is read next)."""
        self._send(FrameType.STATUS)
        return Status.decode(self._expect(FrameType.STATUS_REPLY).payload)

    def _identity(self) -> Identity:
        return self.identity if self.identity is not None else self.identify()

    def classify(self, levels, window: int | None = None):
        """Send every sample of ``levels`` ``(n, input_features)`` and yield one
        :class:`~pascal_hdl.board.protocol.Result` per sample, in order, with up to ``window``
        (default: the board's queue depth) samples sent and not yet answered. The results' sample
        numbers are checked to follow on from the board's ``next_sample``."""
        identity = self._identity()
        levels = np.asarray(levels)
        if levels.ndim != 2:
            raise protocol.ProtocolError(f"classify: levels must be (samples, {identity.input_features}), "
                                         f"got shape {levels.shape}")
        payloads = [protocol.sample_payload(sample, identity.input_features, identity.input_levels)
                    for sample in levels]
        window = identity.queue_depth if window is None else int(window)
        if not 1 <= window <= identity.queue_depth:
            raise protocol.ProtocolError(f"classify: window must be in 1..{identity.queue_depth} (the board's "
                                         f"queue depth), got {window}")
        number = self.status().next_sample
        sent = 0
        for index in range(len(payloads)):
            while sent < len(payloads) and sent - index < window:
                self._send(FrameType.SAMPLE, payloads[sent])
                sent += 1
            frame = self._expect(FrameType.RESULT)
            result = Result.decode(frame.payload, identity.classes, identity.logit_bytes)
            if result.sample != (number + index) & 0xFFFF:
                raise BoardError(f"result for sample number {result.sample}, expected {(number + index) & 0xFFFF} "
                                 f"(image {index})")
            yield result


# -- the command

def _quantized(args):
    """``(network, config, integer model)`` for the options, exactly as ``pascal-ref hdl`` builds them."""
    from pascal_ref.cli import CommandError
    from pascal_ref.cli.common import load_model
    from pascal_hdl.config import HardwareError
    from pascal_hdl.flow.generate import core_config_from_network

    network = load_model(args.model)
    try:
        config, model = core_config_from_network(network, lanes=args.lanes, weight_bits=args.weight_bits,
                                                 per_channel=not args.per_layer_threshold,
                                                 layer_lanes=args.layer_lanes)
    except HardwareError as error:
        raise CommandError(f"the core cannot take model {args.model!r}: {error}") from None
    return network, config, model


def check_identity(identity: Identity, config, digest: bytes, model_label: str, port: str) -> str | None:
    """The one-line refusal when the board does not run ``config`` (digest or shape), else None."""
    if identity.digest != digest:
        return (f"board on {port} runs '{identity.name}' (weights {identity.digest.hex()[:16]}...), not {model_label} "
                f"(weights {digest.hex()[:16]}...): refusing (build and flash its bitstream, or give the options "
                "it was built with)")
    shape = (config.input_features, config.input_levels, config.classes)
    board = (identity.input_features, identity.input_levels, identity.classes)
    if board != shape:
        return f"board on {port}: shape (features, levels, classes) {board}, {model_label} has {shape}: refusing"
    if identity.protocol_version != protocol.PROTOCOL_VERSION:
        return (f"board on {port} speaks protocol version {identity.protocol_version}, this driver "
                f"{protocol.PROTOCOL_VERSION}: refusing")
    return None


def run_board(args, port=None) -> int:
    """``pascal-ref board run`` (``port``: an open byte stream instead of ``--port``, for tests)."""
    from pascal_ref.cli import CommandError, require_extra
    from pascal_ref.cli.common import echo, write_json
    from pascal_ref.golden.quantize import integer_ann
    from pascal_ref.io.data import load_data

    require_extra("board", "'pascal-ref board'")
    network, config, model = _quantized(args)
    data = load_data(args.data, limit=args.limit, network=network)
    levels = model.encode_input(data.x)
    flat = levels.reshape(len(levels), -1)
    golden = np.asarray(integer_ann(model, x_int=levels).integer_logits)
    digest = protocol.weight_digest(config)
    opened = None
    if port is None:
        import serial

        try:
            opened = port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=min(0.1, args.timeout))
        except (serial.SerialException, ValueError) as error:
            raise CommandError(f"cannot open {args.port!r}: {error}") from None
    try:
        board = Board(port, timeout=args.timeout)
        try:
            identity = board.identify()
        except protocol.ProtocolError as error:
            raise CommandError(f"board on {args.port}: {error}") from None
        refusal = check_identity(identity, config, digest, f"{args.model}", args.port)
        if refusal:
            raise CommandError(refusal)
        echo(f"board on {args.port}: '{identity.name}', core version {identity.core_version}, "
             f"{identity.input_features} features x levels 0..{identity.input_levels} -> {identity.classes} classes, "
             f"queue {identity.queue_depth}, {identity.in_flight} in flight; weights {digest.hex()[:16]}... match")
        sent_before, received_before = board.bytes_sent, board.bytes_received
        results: list[Result] = []
        start = time.perf_counter()
        try:
            for result in board.classify(flat):
                results.append(result)
        except protocol.ProtocolError as error:
            raise CommandError(f"board on {args.port}, image {len(results)}: {error}") from None
        elapsed = time.perf_counter() - start
    finally:
        if opened is not None:
            opened.close()

    count = len(results)
    logits = np.array([r.logits for r in results], dtype=np.int64).reshape(count, config.classes)
    classes = np.array([r.cls for r in results], dtype=np.int64)
    agree = np.all(logits == golden, axis=1) & (classes == np.argmax(golden, axis=1))
    disagree = np.flatnonzero(~agree)
    accuracy = float(np.mean(classes == np.asarray(data.y))) if data.y is not None else None
    rate = count / elapsed if elapsed > 0 else float("inf")
    sent_per = (board.bytes_sent - sent_before) / max(count, 1)
    received_per = (board.bytes_received - received_before) / max(count, 1)
    cycles = np.array([r.cycles for r in results], dtype=np.int64)
    echo(f"{args.model} on {data.name} ({count} images) on the board: "
         f"{'every image agrees with the integer golden model' if not len(disagree) else f'{len(disagree)} DISAGREE'}"
         + (f", accuracy {accuracy:.4f}" if accuracy is not None else ""))
    echo(f"  {rate:.1f} images/s ({elapsed:.2f} s); {sent_per:.1f} bytes per image to the board, {received_per:.1f} "
         f"back; core latency {cycles.mean():.1f} cycles per image (mean; {cycles.mean() / identity.clk_freq * 1e6:.1f} "
         f"us at {identity.clk_freq / 1e6:g} MHz)")
    for index in disagree[:10]:
        echo(f"  image {int(index)}: board logits {logits[index].tolist()} class {int(classes[index])}, golden "
             f"{golden[index].tolist()} class {int(np.argmax(golden[index]))}")
    if args.json:
        samples = []
        for index in range(count):
            entry = {"index": index, "agrees": bool(agree[index]),
                     "board": {"integer_logits": logits[index].tolist(), "prediction": int(classes[index]),
                               "cycles": int(cycles[index]), "rejected": results[index].rejected},
                     "golden": {"integer_logits": golden[index].tolist(), "prediction": int(np.argmax(golden[index]))}}
            if data.y is not None:
                entry["label"] = int(data.y[index])
            samples.append(entry)
        write_json(args.json, {
            "model": args.model, "data": data.name, "port": args.port, "baud": args.baud, "images": count,
            "disagreements": int(len(disagree)), "accuracy": accuracy, "images_per_s": rate, "seconds": elapsed,
            "bytes_per_image": {"to_board": sent_per, "from_board": received_per},
            "identity": {"name": identity.name, "digest": identity.digest.hex(), "core_version": identity.core_version,
                         "input_features": identity.input_features, "input_levels": identity.input_levels,
                         "classes": identity.classes, "in_flight": identity.in_flight,
                         "queue_depth": identity.queue_depth, "clk_freq": identity.clk_freq},
            "samples": samples})
        if args.json != "-":
            echo(f"wrote {args.json}")
    return 1 if len(disagree) else 0


def _timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise ValueError(f"expected seconds in (0, 3600], got {text}")
    return value


def register_board(subparsers):
    from pascal_hdl.cli import _layer_lanes, _positive   # the same option syntax as 'pascal-ref hdl'

    parser = subparsers.add_parser("board", help="run a model on a board with the host link (UART)")
    commands = parser.add_subparsers(dest="board_command", metavar="SUBCOMMAND", required=True)
    run = commands.add_parser("run", help="identify the board, stream images, compare with the integer golden model")
    run.add_argument("model", help="model .npz file or bundled model name (digits-mlp)")
    run.add_argument("--port", required=True, help="serial device (/dev/ttyUSB0) or pyserial URL (loop://)")
    run.add_argument("--data", required=True, help="'digits' (test split) or an .npz with arrays x (and y)")
    run.add_argument("--baud", type=_positive, default=DEFAULT_BAUD, help=f"bit rate (default {DEFAULT_BAUD})")
    run.add_argument("--limit", type=_positive, default=None, help="use only the first N samples")
    run.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_S, metavar="S",
                     help=f"seconds to wait for each reply (default {DEFAULT_TIMEOUT_S:g})")
    run.add_argument("--lanes", type=_positive, default=None, help="lanes the bitstream was built with (as for hdl)")
    run.add_argument("--layer-lanes", type=_layer_lanes, default=None, metavar="NAME=K,...",
                     help="lanes per layer the bitstream was built with (as for hdl)")
    run.add_argument("--weight-bits", type=_positive, default=8, help="integer weight width (default 8)")
    run.add_argument("--per-layer-threshold", action="store_true",
                     help="one integer threshold per layer instead of per output channel")
    run.add_argument("--json", metavar="OUT", help="also write the report and every image's logits as JSON")
    run.set_defaults(handler=run_board)
