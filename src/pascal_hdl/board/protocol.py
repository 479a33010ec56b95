"""The host-link protocol: one home for the frame format, for the board, the driver, the tests and the cosim.

Pure Python (no amaranth import): the gateware (:mod:`pascal_hdl.board.hostlink`) reads its constants
and its identity image from here, the host driver (:mod:`pascal_hdl.board.driver`) encodes and decodes
with it, and :class:`LinkModel` is the board at the frame level (the parser state machine of the
gateware byte for byte, with the integer model for the results) that the driver tests and the cosim
take their expected replies from. ``docs/board.md`` describes the same format in prose.

Frame (both directions)::

    A5 5A | type (1) | length (2, big-endian) | payload (length bytes) | CRC (2, big-endian)

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, not reflected, no final
XOR: ``binascii.crc_hqx(data, 0xFFFF)``) over ``type``, ``length`` and ``payload``; over the same
bytes followed by the CRC it is 0, which is how the board checks it. Every integer is big-endian,
signed ones in two's complement.

Requests: ``IDENTIFY`` (no payload), ``STATUS`` (no payload), ``SAMPLE`` (exactly
``input_features`` bytes, the level ``0..input_levels`` of each feature, feature 0 first).
Replies: ``IDENTITY`` (:class:`Identity`), ``STATUS_REPLY`` (:class:`Status`), ``RESULT``
(:class:`Result`, one per sample, in the order the samples were sent) and ``ERROR``
(:class:`ErrorReply`: a code from :class:`ErrorCode` and a 16-bit detail).

Errors: a frame the board cannot use is answered with one ERROR frame and has no other effect
(no result, no state changed but the error counter). Faults found in the header (bad sync,
unknown type, bad length, too many features) or a UART framing error leave the frame's end unknown:
the board then drops every byte until the line has been idle for ``timeout_cycles`` and hunts for
the next sync. Faults found at the end of a well-delimited frame (bad CRC, a level above
``input_levels``, the sample queue full) keep the frame boundary: the next frame is read at once.
A frame interrupted for ``timeout_cycles`` (no byte) is answered with TRUNCATED. Nothing is
unbounded: the length field is checked against the one length each type allows before any payload
byte is taken, every reply has a fixed size, and :class:`FrameReader` refuses a length above
``max_payload``.
"""
from __future__ import annotations

import binascii
import enum
import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["SYNC", "PROTOCOL_VERSION", "CORE_VERSION", "NAME_BYTES", "DIGEST_BYTES", "IDENTITY_BYTES",
           "STATUS_BYTES", "ERROR_BYTES", "FRAME_OVERHEAD", "MAX_FEATURES", "MAX_LEVEL", "MAX_QUEUE",
           "FrameType", "ErrorCode", "ProtocolError", "crc16", "encode_frame", "Frame", "FrameReader",
           "Identity", "Result", "Status", "ErrorReply", "sample_payload", "result_bytes", "logit_bytes_for",
           "weight_images", "weight_digest", "LinkModel", "REQUEST_TYPES"]

SYNC = b"\xa5\x5a"
PROTOCOL_VERSION = 1
CORE_VERSION = 1            # the host link + core gateware revision, reported by IDENTIFY
NAME_BYTES = 32             # the model name in the identity, ASCII, NUL-padded
DIGEST_BYTES = 32           # SHA-256
FRAME_OVERHEAD = 7          # sync 2 + type 1 + length 2 + CRC 2
MAX_FEATURES = 0xFFFF       # the length field is 16 bits
MAX_LEVEL = 0xFF            # one byte per level
MAX_QUEUE = 64              # sample slots of the link at most


class FrameType(enum.IntEnum):
    IDENTIFY = 0x01
    SAMPLE = 0x02
    STATUS = 0x03
    IDENTITY = 0x81
    RESULT = 0x82
    STATUS_REPLY = 0x83
    ERROR = 0xE0


REQUEST_TYPES = (FrameType.IDENTIFY, FrameType.SAMPLE, FrameType.STATUS)


class ErrorCode(enum.IntEnum):
    """The fault an ERROR frame names; its 16-bit ``detail`` is given in each comment."""

    BAD_SYNC = 1            # the byte seen where a sync byte was expected
    UNKNOWN_TYPE = 2        # the type byte
    BAD_LENGTH = 3          # the length field (not the one length the type allows)
    BAD_CRC = 4             # the CRC field received
    TRUNCATED = 5           # the bytes of the frame received before the line fell idle
    LEVEL_TOO_HIGH = 6      # the first feature whose level is above input_levels
    TOO_MANY_FEATURES = 7   # the length field (a SAMPLE longer than input_features)
    QUEUE_FULL = 8          # 0: every sample slot was taken when the SAMPLE header arrived
    FRAMING = 9             # 0: a byte with a bad stop bit (UART framing error)


# Faults after which the board drops bytes until the line has been idle for timeout_cycles.
RESYNC_ERRORS = (ErrorCode.BAD_SYNC, ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_LENGTH, ErrorCode.TOO_MANY_FEATURES,
                 ErrorCode.FRAMING)


class ProtocolError(ValueError):
    """A frame or value that does not follow the protocol; the message says what and where."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``binascii.crc_hqx(data, 0xFFFF)``)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """A whole frame: sync, type, length, payload, CRC."""
    if not 0 <= int(frame_type) <= 0xFF:
        raise ProtocolError(f"frame type {frame_type!r} is not a byte")
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"payload of {len(payload)} bytes does not fit the 16-bit length field")
    body = bytes([int(frame_type)]) + len(payload).to_bytes(2, "big") + payload
    return SYNC + body + crc16(body).to_bytes(2, "big")


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes


class FrameReader:
    """Incremental decoder of frames from a byte stream (the host's side): :meth:`feed` bytes,
    get whole frames. A frame with a bad CRC, a length above ``max_payload`` or bytes before the sync
    raises :class:`ProtocolError` naming the fault; the reader then starts afresh at the next byte."""

    def __init__(self, max_payload: int):
        if not isinstance(max_payload, int) or not 0 <= max_payload <= 0xFFFF:
            raise ProtocolError(f"max_payload must be an int in [0, 65535], got {max_payload!r}")
        self.max_payload = max_payload
        self.buffer = bytearray()

    def needed(self) -> int:
        """Bytes still missing from the frame being read (at least 1)."""
        if len(self.buffer) < 5:
            return 5 - len(self.buffer)
        return 5 + int.from_bytes(self.buffer[3:5], "big") + 2 - len(self.buffer)

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        for byte in bytes(data):
            buf = self.buffer
            buf.append(byte)
            position = len(buf) - 1
            if position < 2 and byte != SYNC[position]:
                self.buffer = bytearray()
                raise ProtocolError(f"byte 0x{byte:02x} where sync byte {position} (0x{SYNC[position]:02x}) was expected")
            if position == 4:
                length = int.from_bytes(buf[3:5], "big")
                if length > self.max_payload:
                    self.buffer = bytearray()
                    raise ProtocolError(f"frame type 0x{buf[2]:02x}: length {length} above the limit {self.max_payload}")
            if position >= 4 and self.needed() == 0:
                body = bytes(buf[2:-2])
                received = int.from_bytes(buf[-2:], "big")
                self.buffer = bytearray()
                if crc16(body) != received:
                    raise ProtocolError(f"frame type 0x{body[0]:02x}: CRC 0x{received:04x}, computed 0x{crc16(body):04x}")
                frames.append(Frame(body[0], body[3:]))
        return frames


def _take(payload: bytes, offset: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(payload[offset:offset + size], "big", signed=signed)


def logit_bytes_for(logit_width: int) -> int:
    """Bytes per logit in a RESULT: the logit width rounded up to whole bytes."""
    return -(-int(logit_width) // 8)


@dataclass(frozen=True)
class Identity:
    """The IDENTITY payload (fixed size, :data:`IDENTITY_BYTES`), in this order: protocol version (1),
    core version (2), input features (2), input levels (1), classes (2), in_flight (1), queue depth (1),
    logit bytes (1), clock frequency in Hz (4), timeout in cycles (4), SHA-256 of the weight memory
    images (32), model name (32, ASCII, NUL-padded)."""

    name: str
    digest: bytes
    input_features: int
    input_levels: int
    classes: int
    in_flight: int
    queue_depth: int
    logit_bytes: int
    clk_freq: int
    timeout_cycles: int
    core_version: int = CORE_VERSION
    protocol_version: int = PROTOCOL_VERSION

    def __post_init__(self):
        limits = {"input_features": (1, MAX_FEATURES), "input_levels": (1, MAX_LEVEL), "classes": (1, 0xFFFF),
                  "in_flight": (1, 0xFF), "queue_depth": (1, MAX_QUEUE), "logit_bytes": (1, 8),
                  "clk_freq": (1, 0xFFFFFFFF), "timeout_cycles": (1, 0xFFFFFFFF), "core_version": (0, 0xFFFF),
                  "protocol_version": (0, 0xFF)}
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ProtocolError(f"identity: {key} must be an integer in [{low}, {high}], got {value!r}")
        if not isinstance(self.digest, (bytes, bytearray)) or len(self.digest) != DIGEST_BYTES:
            raise ProtocolError(f"identity: digest must be {DIGEST_BYTES} bytes (SHA-256), got {self.digest!r}")
        if (not isinstance(self.name, str) or not self.name or len(self.name) > NAME_BYTES
                or not all(0x21 <= ord(ch) <= 0x7E for ch in self.name)):
            raise ProtocolError(f"identity: name must be 1..{NAME_BYTES} printable ASCII characters without "
                                f"spaces, got {self.name!r}")

    def encode(self) -> bytes:
        return (bytes([self.protocol_version]) + self.core_version.to_bytes(2, "big")
                + self.input_features.to_bytes(2, "big") + bytes([self.input_levels])
                + self.classes.to_bytes(2, "big") + bytes([self.in_flight, self.queue_depth, self.logit_bytes])
                + self.clk_freq.to_bytes(4, "big") + self.timeout_cycles.to_bytes(4, "big")
                + bytes(self.digest) + self.name.encode("ascii").ljust(NAME_BYTES, b"\0"))

    @classmethod
    def decode(cls, payload: bytes) -> "Identity":
        if len(payload) != IDENTITY_BYTES:
            raise ProtocolError(f"IDENTITY payload of {len(payload)} bytes, expected {IDENTITY_BYTES}")
        name_field = payload[-NAME_BYTES:]
        name = name_field.split(b"\0", 1)[0]
        if name_field[len(name):].strip(b"\0"):
            raise ProtocolError("IDENTITY: the name field has bytes after its NUL padding")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"IDENTITY: the model name {name!r} is not ASCII") from None
        return cls(name=text, digest=bytes(payload[19:51]), protocol_version=payload[0],
                   core_version=_take(payload, 1, 2), input_features=_take(payload, 3, 2), input_levels=payload[5],
                   classes=_take(payload, 6, 2), in_flight=payload[8], queue_depth=payload[9],
                   logit_bytes=payload[10], clk_freq=_take(payload, 11, 4), timeout_cycles=_take(payload, 15, 4))

    @property
    def result_bytes(self) -> int:
        """Payload bytes of a RESULT for this board."""
        return result_bytes(self.classes, self.logit_bytes)


IDENTITY_BYTES = 19 + DIGEST_BYTES + NAME_BYTES


def result_bytes(classes: int, logit_bytes: int) -> int:
    """RESULT payload size: sample (2), class (2), flags (1), cycles (4), finished (4), logits."""
    return 13 + classes * logit_bytes


@dataclass(frozen=True)
class Result:
    """The RESULT payload: ``sample`` (the sample's number since reset, modulo 2**16), ``cls`` (the
    argmax, first maximum), ``rejected`` (flags bit 0: an input event of the sample broke the core's
    stream rule), ``cycles`` (the core's latency for it), ``finished`` (the core's cycle counter when
    the result became valid), ``logits`` (``classes`` signed integers of ``logit_bytes`` each)."""

    sample: int
    cls: int
    rejected: bool
    cycles: int
    finished: int
    logits: tuple[int, ...]

    def encode(self, logit_bytes: int) -> bytes:
        return (self.sample.to_bytes(2, "big") + self.cls.to_bytes(2, "big") + bytes([int(self.rejected)])
                + self.cycles.to_bytes(4, "big") + self.finished.to_bytes(4, "big")
                + b"".join(int(v).to_bytes(logit_bytes, "big", signed=True) for v in self.logits))

    @classmethod
    def decode(cls, payload: bytes, classes: int, logit_bytes: int) -> "Result":
        expected = result_bytes(classes, logit_bytes)
        if len(payload) != expected:
            raise ProtocolError(f"RESULT payload of {len(payload)} bytes, expected {expected}")
        if payload[4] & ~1:
            raise ProtocolError(f"RESULT: flags 0x{payload[4]:02x} has bits other than 'rejected'")
        logits = tuple(_take(payload, 13 + k * logit_bytes, logit_bytes, signed=True) for k in range(classes))
        result = cls(sample=_take(payload, 0, 2), cls=_take(payload, 2, 2), rejected=bool(payload[4] & 1),
                     cycles=_take(payload, 5, 4), finished=_take(payload, 9, 4), logits=logits)
        if result.cls >= classes:
            raise ProtocolError(f"RESULT: class {result.cls} of {classes}")
        return result


@dataclass(frozen=True)
class Status:
    """The STATUS_REPLY payload: ``next_sample`` (samples accepted since reset, modulo 2**16: the
    number the next sample gets), ``results_sent`` (RESULT frames started since reset, modulo 2**16),
    ``queued`` (samples in the link's queue, not yet handed to the core), ``errors`` (ERROR replies
    since reset, saturating at 65535), ``dropped`` (replies dropped because the reply queue was full,
    saturating)."""

    next_sample: int
    results_sent: int
    queued: int
    errors: int
    dropped: int

    def encode(self) -> bytes:
        return (self.next_sample.to_bytes(2, "big") + self.results_sent.to_bytes(2, "big") + bytes([self.queued])
                + self.errors.to_bytes(2, "big") + self.dropped.to_bytes(2, "big"))

    @classmethod
    def decode(cls, payload: bytes) -> "Status":
        if len(payload) != STATUS_BYTES:
            raise ProtocolError(f"STATUS_REPLY payload of {len(payload)} bytes, expected {STATUS_BYTES}")
        return cls(_take(payload, 0, 2), _take(payload, 2, 2), payload[4], _take(payload, 5, 2), _take(payload, 7, 2))


STATUS_BYTES = 9


@dataclass(frozen=True)
class ErrorReply:
    """The ERROR payload: ``code`` (:class:`ErrorCode`) and ``detail`` (16 bits, see the code)."""

    code: int
    detail: int

    def encode(self) -> bytes:
        return bytes([int(self.code)]) + int(self.detail).to_bytes(2, "big")

    @classmethod
    def decode(cls, payload: bytes) -> "ErrorReply":
        if len(payload) != ERROR_BYTES:
            raise ProtocolError(f"ERROR payload of {len(payload)} bytes, expected {ERROR_BYTES}")
        try:
            code = ErrorCode(payload[0])
        except ValueError:
            raise ProtocolError(f"ERROR: unknown error code {payload[0]}") from None
        return cls(code, _take(payload, 1, 2))

    def describe(self) -> str:
        return f"{ErrorCode(self.code).name} (detail {self.detail})"


ERROR_BYTES = 3


def sample_payload(levels, input_features: int, input_levels: int) -> bytes:
    """The SAMPLE payload of one sample: one byte per feature, each level in ``0..input_levels``."""
    levels = np.asarray(levels)
    if levels.dtype.kind not in "iu" or levels.shape != (input_features,):
        raise ProtocolError(f"sample: levels must be integers of shape ({input_features},), "
                            f"got {levels.dtype} {levels.shape}")
    if levels.size and (levels.min() < 0 or levels.max() > input_levels):
        raise ProtocolError(f"sample: levels must lie in [0, {input_levels}], got [{levels.min()}, {levels.max()}]")
    return bytes(int(v) for v in levels)


# -- the weights' digest

def weight_images(config) -> list[tuple[str, int, list[int]]]:
    """``(memory name, word width, words)`` of every weight and parameter memory of a core, in stage
    order (the images :func:`pascal_hdl.flow.generate.generate` writes as ``.hex`` files)."""
    images = []
    for stage in config.layers:
        engines = [(stage, stage.name)]
        if hasattr(stage, "conv1"):                      # a residual block: conv1 and the merge (act2)
            engines = [(stage.conv1, f"{stage.name}.conv1"), (stage.merge, f"{stage.name}.act2")]
        elif not hasattr(stage, "weight_words"):         # a pooling unit holds no weights
            engines = []
        for engine, stem in engines:
            weight_width = engine.lanes * engine.weight_width
            params = engine.param_words()
            if getattr(engine, "is_readout", False):
                param_width = engine.lanes * engine.logit_width
            else:
                param_width = engine.lanes * (engine.v0_width + engine.theta_width)
            images.append((f"{stem}.weights", weight_width, engine.weight_words()))
            images.append((f"{stem}.params", param_width, params))
    return images


def weight_digest(config) -> bytes:
    """SHA-256 of the core's weight memory images: for each memory of :func:`weight_images`, its name,
    a NUL, its word width and word count (4 bytes each, big-endian), then every word in
    ``ceil(width / 8)`` big-endian bytes. Equal digests mean equal weights, thresholds and biases."""
    digest = hashlib.sha256()
    for name, width, words in weight_images(config):
        size = -(-width // 8)
        digest.update(name.encode() + b"\0" + width.to_bytes(4, "big") + len(words).to_bytes(4, "big"))
        digest.update(b"".join(int(word).to_bytes(size, "big") for word in words))
    return digest.digest()


# -- the board at the frame level

class LinkModel:
    """The host link at the frame level: the gateware's parser byte for byte (the same states,
    checks, error codes and resynchronisation), its sample queue, and the integer model for the
    results (``classify(levels) -> (logits, cls)``). :meth:`receive` takes a byte, :meth:`idle` a
    pause of the line in cycles; replies collect in :attr:`replies` as :class:`Frame` objects.

    The model answers at once (its reply queue never fills and results come as soon as their sample
    is complete), so it gives the replies the board sends and their order for a host that waits for
    each control reply; the gateware may put a control reply before the result of an earlier sample.
    ``cycles`` and ``finished`` of its results are 0 (the cycle-level figures are the core's).
    """

    HUNT, SYNC1, TYPE, LEN_HI, LEN_LO, PAYLOAD, CRC_HI, CRC_LO, DISCARD = range(9)

    def __init__(self, identity: Identity, classify):
        self.identity = identity
        self.classify = classify
        self.reset()

    def reset(self) -> None:
        """The board's reset: parser hunting, queue empty, counters 0."""
        self.state = self.HUNT
        self.idle_cycles = 0
        self.replies: list[Frame] = []
        self.next_sample = self.results_sent = self.errors = 0
        self._frame_bytes = 0

    def _reply(self, frame_type: int, payload: bytes) -> None:
        self.replies.append(Frame(int(frame_type), bytes(payload)))

    def _error(self, code: ErrorCode, detail: int) -> None:
        self.errors = min(self.errors + 1, 0xFFFF)
        self._reply(FrameType.ERROR, ErrorReply(code, detail & 0xFFFF).encode())
        self.state = self.DISCARD if code in RESYNC_ERRORS else self.HUNT

    def idle(self, cycles: int) -> None:
        """The line idle for ``cycles`` more clock cycles (counted from the end of the last byte)."""
        self.idle_cycles += int(cycles)
        if self.idle_cycles >= self.identity.timeout_cycles:
            if self.state == self.DISCARD:
                self.state = self.HUNT
            elif self.state != self.HUNT:
                self._error(ErrorCode.TRUNCATED, self._frame_bytes)

    def framing_error(self) -> None:
        """A byte with a bad stop bit."""
        self.idle_cycles = 0
        if self.state != self.DISCARD:
            self._error(ErrorCode.FRAMING, 0)

    def receive(self, byte: int) -> None:
        self.idle_cycles = 0
        ident = self.identity
        state = self.state
        self._frame_bytes += 1
        if state == self.DISCARD:
            return
        if state == self.HUNT:
            self._frame_bytes = 1
            if byte == SYNC[0]:
                self.state = self.SYNC1
            else:
                self._error(ErrorCode.BAD_SYNC, byte)
        elif state == self.SYNC1:
            if byte == SYNC[1]:
                self.state = self.TYPE
                self._body = bytearray()
            else:
                self._error(ErrorCode.BAD_SYNC, byte)
        elif state == self.TYPE:
            if byte not in REQUEST_TYPES:
                self._error(ErrorCode.UNKNOWN_TYPE, byte)
            else:
                self._type, self._body = byte, bytearray([byte])
                self.state = self.LEN_HI
        elif state == self.LEN_HI:
            self._body.append(byte)
            self._length = byte << 8
            self.state = self.LEN_LO
        elif state == self.LEN_LO:
            self._body.append(byte)
            length = self._length | byte
            expected = ident.input_features if self._type == FrameType.SAMPLE else 0
            if self._type == FrameType.SAMPLE and length > expected:
                self._error(ErrorCode.TOO_MANY_FEATURES, length)
            elif length != expected:
                self._error(ErrorCode.BAD_LENGTH, length)
            else:
                self._length, self._received, self._bad_level = length, 0, None
                self._levels = bytearray()
                self.state = self.PAYLOAD if length else self.CRC_HI
        elif state == self.PAYLOAD:
            self._body.append(byte)
            if byte > ident.input_levels and self._bad_level is None:
                self._bad_level = self._received
            self._levels.append(byte)
            self._received += 1
            if self._received == self._length:
                self.state = self.CRC_HI
        elif state == self.CRC_HI:
            self._crc = byte << 8
            self.state = self.CRC_LO
        elif state == self.CRC_LO:
            received = self._crc | byte
            if crc16(self._body) != received:
                self._error(ErrorCode.BAD_CRC, received)
            elif self._bad_level is not None:
                self._error(ErrorCode.LEVEL_TOO_HIGH, self._bad_level)
            else:
                self.state = self.HUNT
                self._perform()

    def _perform(self) -> None:
        ident = self.identity
        if self._type == FrameType.IDENTIFY:
            self._reply(FrameType.IDENTITY, ident.encode())
        elif self._type == FrameType.STATUS:
            self._reply(FrameType.STATUS_REPLY, Status(self.next_sample, self.results_sent, 0, self.errors, 0).encode())
        else:
            logits, cls = self.classify(np.frombuffer(bytes(self._levels), dtype=np.uint8).astype(np.int64))
            result = Result(self.next_sample, int(cls), False, 0, 0, tuple(int(v) for v in logits))
            self.next_sample = (self.next_sample + 1) & 0xFFFF
            self.results_sent = (self.results_sent + 1) & 0xFFFF
            self._reply(FrameType.RESULT, result.encode(ident.logit_bytes))

    def feed(self, data: bytes, gap_cycles: int = 0) -> list[Frame]:
        """Receive ``data`` (with ``gap_cycles`` idle after each byte); return and clear the replies."""
        for byte in bytes(data):
            self.receive(byte)
            if gap_cycles:
                self.idle(gap_cycles)
        replies, self.replies = self.replies, []
        return replies
