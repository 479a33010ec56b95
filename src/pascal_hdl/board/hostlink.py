"""The host-link top level: the network core behind a UART, speaking :mod:`pascal_hdl.board.protocol`.

::

    rx -> UartRx -> frame parser -> sample queue (memory) -> feeder -> NetworkCore
                         |  (identify, status, errors)                   |
                         v                                               v
                   control reply FIFO ------------------------> reply framer -> UartTx -> tx
                                        identity ROM (memory) -->

See :class:`HostLink`; the frame parser is :class:`FrameParser` (proved in
:mod:`pascal_hdl.formal.hostlink_proofs`).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pascal_hdl.board import protocol
from pascal_hdl.board.protocol import ErrorCode, FrameType
from pascal_hdl.board.uart import UartRx, UartTx
from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.gateware.core import NetworkCore
from pascal_hdl.widths import check_type

__all__ = ["HostLink", "FrameParser", "ParserRegisters", "ParserState", "ReplyKind", "CONTROL_REQUEST", "advance_slot",
           "uart_divisor", "DEFAULT_TIMEOUT_S", "DEFAULT_QUEUE_DEPTH", "CONTROL_REPLY_DEPTH"]

DEFAULT_TIMEOUT_S = 0.02        # a frame stalled this long is truncated (USB-serial adapters pause ~1 ms)
DEFAULT_QUEUE_DEPTH = 4         # sample slots
CONTROL_REPLY_DEPTH = 4         # identity, status and error replies waiting for the transmitter
MAX_BAUD_ERROR = 0.02           # relative error of clk_freq / divisor against the baud rate


def uart_divisor(clk_freq: int, baud: int) -> int:
    """Clock cycles per UART bit: ``round(clk_freq / baud)``, at least 4, within 2 % of the baud rate;
    else a :class:`HardwareError`."""
    for name, value in (("clk_freq", clk_freq), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HardwareError(f"host link: {name} must be a positive integer, got {value!r}")
    divisor = (clk_freq + baud // 2) // baud
    if divisor < 4:
        raise HardwareError(f"host link: clk_freq {clk_freq} Hz gives {clk_freq / baud:.2f} cycles per bit at "
                            f"{baud} baud; at least 4 are needed")
    if abs(clk_freq / divisor - baud) > MAX_BAUD_ERROR * baud:
        raise HardwareError(f"host link: {clk_freq} Hz / {divisor} = {clk_freq / divisor:.0f} baud, more than "
                            f"{MAX_BAUD_ERROR:.0%} from {baud}")
    return divisor


class HostLink(wiring.Component):
    """The network core behind a UART (8N1) and the framed protocol of :mod:`pascal_hdl.board.protocol`.

    Parameters
    ----------
    config : CoreConfig
        The core (``input_levels`` at most 255, ``input_features`` at most 65535: one byte per level
        and a 16-bit length).
    clk_freq : int
        Clock frequency of the ``sync`` domain in Hz.
    baud : int
        UART bit rate; ``round(clk_freq / baud)`` cycles per bit (:func:`uart_divisor`).
    model_name : str
        Reported by IDENTIFY (1..32 printable ASCII characters).
    digest : bytes
        SHA-256 of the weight memory images (:func:`pascal_hdl.board.protocol.weight_digest`),
        reported by IDENTIFY.
    queue_depth : int
        Sample slots (default 4): complete, CRC-checked samples wait here for the core.
    timeout_cycles : int or None
        A frame with no byte for this many cycles is TRUNCATED; after a fault that loses the frame
        boundary the link drops bytes until the line was idle this long. Default
        ``clk_freq * 0.02`` (20 ms); at least two byte times (``20 * divisor``).

    Members
    -------
    rx : In(1)
        UART receive line (idle high), synchronised inside.
    tx : Out(1)
        UART transmit line (idle high).
    busy : Out(1)
        A sample is queued, in the core or being answered, a frame is being received or a reply sent.
    error : Out(1)
        An ERROR reply was produced since the last well-formed frame (for an LED).

    Attributes
    ----------
    identity : protocol.Identity
        What IDENTIFY answers.
    identity_rom : amaranth.lib.memory.Memory
        The IDENTITY payload (:data:`protocol.IDENTITY_BYTES` bytes), read through a synchronous port
        (a block RAM, so a weight swap can replace it together with the weight memories).
    divisor : int
        Clock cycles per bit.
    """

    def __init__(self, config: CoreConfig, *, clk_freq: int, baud: int, model_name: str, digest: bytes,
                 queue_depth: int = DEFAULT_QUEUE_DEPTH, timeout_cycles: int | None = None):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.config = check_type("HostLink", "config", config, CoreConfig)
        if config.is_analog:
            raise HardwareError(f"host link: core '{config.name}' takes signed analog pixels; a SAMPLE frame carries "
                                "levels 0..input_levels, one byte each (use count-coded input on the board)")
        if config.input_levels > protocol.MAX_LEVEL:
            raise HardwareError(f"host link: core '{config.name}' takes levels up to {config.input_levels}; "
                                f"the protocol carries one byte per level (at most {protocol.MAX_LEVEL})")
        if config.input_features > protocol.MAX_FEATURES:
            raise HardwareError(f"host link: core '{config.name}' has {config.input_features} input features; "
                                f"a SAMPLE frame holds at most {protocol.MAX_FEATURES}")
        self.clk_freq, self.baud = clk_freq, baud
        self.divisor = uart_divisor(clk_freq, baud)
        if (isinstance(queue_depth, bool) or not isinstance(queue_depth, int)
                or not 1 <= queue_depth <= protocol.MAX_QUEUE):
            raise HardwareError(f"host link: queue_depth must be an integer in 1..{protocol.MAX_QUEUE}, "
                                f"got {queue_depth!r}")
        self.queue_depth = queue_depth
        if timeout_cycles is None:
            timeout_cycles = max(int(clk_freq * DEFAULT_TIMEOUT_S), 20 * self.divisor)
        if (isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int)
                or not 20 * self.divisor <= timeout_cycles <= 0xFFFFFFFF):
            raise HardwareError(f"host link: timeout_cycles must be an integer in [{20 * self.divisor} "
                                f"(two byte times), {0xFFFFFFFF}], got {timeout_cycles!r}")
        self.timeout_cycles = timeout_cycles
        readout = config.readout
        try:
            self.identity = protocol.Identity(
                name=model_name, digest=bytes(digest) if isinstance(digest, (bytes, bytearray)) else digest,
                input_features=config.input_features, input_levels=config.input_levels, classes=config.classes,
                in_flight=config.in_flight, queue_depth=queue_depth,
                logit_bytes=protocol.logit_bytes_for(readout.logit_width), clk_freq=clk_freq,
                timeout_cycles=timeout_cycles)
        except protocol.ProtocolError as error:
            raise HardwareError(f"host link: {error}") from None
        self.identity_rom = Memory(shape=8, depth=protocol.IDENTITY_BYTES, init=list(self.identity.encode()))
        self._identity_port = self.identity_rom.read_port()
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "error": Out(1)})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        cfg, depth, features = self.config, self.queue_depth, self.config.input_features
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)
        m.submodules.parser = parser = FrameParser(features, cfg.input_levels, depth, self.timeout_cycles)
        m.submodules.core = core = NetworkCore(cfg)
        m.submodules.identity_rom = self.identity_rom
        m.submodules.queue = queue = Memory(shape=8, depth=depth * features, init=[])
        m.submodules.control = control = fifo.SyncFIFOBuffered(width=CONTROL_REQUEST.size, depth=CONTROL_REPLY_DEPTH)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]

        # -- counters shared by the parser, the feeder and the reply framer
        used = Signal(range(depth + 1))                  # slots holding a sample not yet fed to the core
        next_sample = Signal(16)                         # samples accepted since reset
        results_sent = Signal(16)                        # RESULT frames started since reset
        errors = Signal(16)                              # ERROR replies produced (saturating)
        dropped = Signal(16)                             # control replies lost to a full reply FIFO (saturating)
        error_flag = Signal()                            # an ERROR reply since the last well-formed frame
        commit, release = parser.commit, Signal()
        m.d.sync += used.eq(used + commit - release)

        # -- the frame parser (FrameParser): sample bytes into the queue, control replies into the FIFO
        wiring.connect(m, uart_rx.o, parser.i)
        wport = queue.write_port()
        m.d.comb += [parser.framing_error.eq(uart_rx.framing_error), parser.used.eq(used),
                     wport.addr.eq(parser.write.addr), wport.data.eq(parser.write.data), wport.en.eq(parser.write.en)]
        request = parser.request
        asked = request.kind != ReplyKind.NONE
        with m.If(commit):
            m.d.sync += next_sample.eq(next_sample + 1)
        with m.If(request.kind == ReplyKind.ERROR):
            m.d.sync += [error_flag.eq(1), errors.eq(Mux(errors == 0xFFFF, errors, errors + 1))]
        with m.Elif(commit | asked):
            m.d.sync += error_flag.eq(0)
        m.d.comb += [control.w_data.eq(request), control.w_en.eq(asked)]
        with m.If(asked & ~control.w_rdy & (dropped != 0xFFFF)):
            m.d.sync += dropped.eq(dropped + 1)

        # -- the feeder: a queued sample's levels -> count-coded events into the core
        feed = Signal(FeederState)
        rd_base = Signal(range(depth * features))
        feed_index = Signal(range(features))
        pending_valid = Signal()
        pending_index = Signal(range(features))
        pending_count = Signal(8)
        held_index = Signal(range(features))
        held_count = Signal(8)
        rport = queue.read_port()
        m.d.comb += rport.addr.eq(rd_base + feed_index)
        level = rport.data

        def next_feature():
            with m.If(feed_index == features - 1):
                m.d.sync += feed.eq(FeederState.LAST)
            with m.Else():
                m.d.sync += [feed_index.eq(feed_index + 1), feed.eq(FeederState.FETCH)]

        event = core.i.payload
        with m.Switch(feed):
            with m.Case(FeederState.IDLE):
                with m.If(used != 0):
                    m.d.sync += [feed_index.eq(0), pending_valid.eq(0), feed.eq(FeederState.FETCH)]
            with m.Case(FeederState.FETCH):             # the read port takes the address this cycle
                m.d.sync += feed.eq(FeederState.LOOK)
            with m.Case(FeederState.LOOK):
                with m.If(level != 0):
                    with m.If(pending_valid):
                        m.d.sync += [held_index.eq(feed_index), held_count.eq(level), feed.eq(FeederState.SEND)]
                    with m.Else():
                        m.d.sync += [pending_valid.eq(1), pending_index.eq(feed_index), pending_count.eq(level)]
                        next_feature()
                with m.Else():
                    next_feature()
            with m.Case(FeederState.SEND):              # the previous nonzero level, not the last one
                m.d.comb += [core.i.valid.eq(1), event.index.eq(pending_index), event.count.eq(pending_count)]
                with m.If(core.i.ready):
                    m.d.sync += [pending_index.eq(held_index), pending_count.eq(held_count)]
                    next_feature()
            with m.Case(FeederState.LAST):              # the last nonzero level, or (0, 0) for an all-zero sample
                m.d.comb += [core.i.valid.eq(1), event.last.eq(1),
                             event.index.eq(Mux(pending_valid, pending_index, 0)),
                             event.count.eq(Mux(pending_valid, pending_count, 0))]
                with m.If(core.i.ready):
                    m.d.comb += release.eq(1)
                    m.d.sync += [rd_base.eq(advance_slot(rd_base, depth, features)), feed.eq(FeederState.IDLE)]

        # -- the reply framer: control replies first, then results; bytes to the transmitter
        readout = cfg.readout
        logit_bytes = self.identity.logit_bytes
        result_size = protocol.result_bytes(cfg.classes, logit_bytes)
        shift_bytes = max(result_size, protocol.STATUS_BYTES, protocol.ERROR_BYTES)
        shift = Signal(8 * shift_bytes)
        sending = Signal()
        from_rom = Signal()
        reply_type = Signal(8)
        reply_length = Signal(16)
        position = Signal(16)
        reply_crc = Signal(16)
        out_valid = Signal()
        out_byte = Signal(8)
        settle = Signal()                                # the ROM's read data follows the address a cycle later

        def big_endian(fields):
            """The bytes of ``fields`` ((value, bytes) pairs, first byte first) left-aligned in ``shift``."""
            total = sum(size for _, size in fields)
            parts = [Const(0, 8 * (shift_bytes - total))] if total < shift_bytes else []
            for value, size in reversed(fields):
                wide = Signal(signed(8 * size)) if getattr(value.shape(), "signed", False) else Signal(8 * size)
                m.d.comb += wide.eq(value)
                parts.append(wide.as_unsigned())
            return Cat(*parts)

        entry = data.View(CONTROL_REQUEST, control.r_data)
        result = core.o.payload
        result_fields = ([(result.sample, 2), (result.cls, 2), (result.rejected, 1), (result.cycles, 4),
                          (result.finished, 4)] + [(result.logits[k], logit_bytes) for k in range(cfg.classes)])
        status_fields = [(next_sample, 2), (results_sent, 2), (used, 1), (errors, 2), (dropped, 2)]
        start = Signal()
        with m.If(~sending):
            with m.If(control.r_rdy):
                m.d.comb += [control.r_en.eq(1), start.eq(1)]
                with m.Switch(entry.kind):
                    with m.Case(ReplyKind.IDENTITY):
                        m.d.sync += [reply_type.eq(FrameType.IDENTITY), reply_length.eq(protocol.IDENTITY_BYTES),
                                     from_rom.eq(1)]
                    with m.Case(ReplyKind.STATUS):
                        m.d.sync += [reply_type.eq(FrameType.STATUS_REPLY), reply_length.eq(protocol.STATUS_BYTES),
                                     from_rom.eq(0), shift.eq(big_endian(status_fields))]
                    with m.Default():
                        m.d.sync += [reply_type.eq(FrameType.ERROR), reply_length.eq(protocol.ERROR_BYTES),
                                     from_rom.eq(0), shift.eq(big_endian([(entry.code, 1), (entry.detail, 2)]))]
            with m.Elif(core.o.valid):
                m.d.comb += [core.o.ready.eq(1), start.eq(1)]
                m.d.sync += [reply_type.eq(FrameType.RESULT), reply_length.eq(result_size), from_rom.eq(0),
                             shift.eq(big_endian(result_fields)), results_sent.eq(results_sent + 1)]
        with m.If(start):
            m.d.sync += [sending.eq(1), position.eq(0), reply_crc.eq(0xFFFF), settle.eq(1)]

        payload_end = Signal(17)
        m.d.comb += payload_end.eq(5 + reply_length)
        tx_crc = crc_next(m, reply_crc, out_byte, "tx_crc")
        identity_port = self._identity_port
        m.d.comb += [identity_port.addr.eq((position - 5)[:len(identity_port.addr)]), uart_tx.i.valid.eq(out_valid), uart_tx.i.payload.eq(out_byte)]
        with m.If(out_valid & uart_tx.i.ready):
            m.d.sync += [out_valid.eq(0), position.eq(position + 1), settle.eq(1)]
            with m.If((position >= 2) & (position < payload_end)):
                m.d.sync += reply_crc.eq(tx_crc)
            with m.If((position >= 5) & (position < payload_end) & ~from_rom):
                m.d.sync += shift.eq(shift << 8)
        with m.Elif(sending & ~out_valid & ~settle):
            with m.If(position == payload_end + 2):
                m.d.sync += sending.eq(0)
            with m.Else():
                m.d.sync += out_valid.eq(1)
                with m.If(position == 0):
                    m.d.sync += out_byte.eq(protocol.SYNC[0])
                with m.Elif(position == 1):
                    m.d.sync += out_byte.eq(protocol.SYNC[1])
                with m.Elif(position == 2):
                    m.d.sync += out_byte.eq(reply_type)
                with m.Elif(position == 3):
                    m.d.sync += out_byte.eq(reply_length[8:])
                with m.Elif(position == 4):
                    m.d.sync += out_byte.eq(reply_length[:8])
                with m.Elif(position < payload_end):
                    m.d.sync += out_byte.eq(Mux(from_rom, identity_port.data, shift[-8:]))
                with m.Elif(position == payload_end):
                    m.d.sync += out_byte.eq(reply_crc[8:])
                with m.Else():
                    m.d.sync += out_byte.eq(reply_crc[:8])
        with m.Elif(settle):
            m.d.sync += settle.eq(0)

        m.d.comb += [
            self.busy.eq((used != 0) | (feed != FeederState.IDLE) | (next_sample != results_sent) | sending
                         | control.r_rdy | (parser.state != ParserState.HUNT)),
            self.error.eq(error_flag),
        ]
        return m




class ReplyKind(enum.Enum, shape=2):
    """What a control request asks the reply framer for."""

    NONE = 0
    IDENTITY = 1
    STATUS = 2
    ERROR = 3


CONTROL_REQUEST = data.StructLayout({"detail": 16, "code": 8, "kind": ReplyKind})
"""A control reply request (:attr:`FrameParser.request`), also the entry of the control reply FIFO: the
reply's ``kind``, and for an ERROR its ``code`` (:class:`protocol.ErrorCode`) and 16-bit ``detail``."""


def advance_slot(base, depth: int, features: int):
    """The queue address of the slot after the one at ``base`` (``features`` bytes a slot, ``depth`` slots,
    wrapping to 0)."""
    return Mux(base == (depth - 1) * features, 0, base + features)


class ParserRegisters:
    """The frame parser's registers other than its ports (created with the parser, driven by it): what the
    formal proofs' invariants name (:mod:`pascal_hdl.formal.hostlink_proofs`)."""

    def __init__(self, features: int, depth: int, timeout_cycles: int):
        self.idle = Signal(range(timeout_cycles + 1), name="idle")     # cycles since the last byte (saturating)
        self.frame_bytes = Signal(16, name="frame_bytes")              # bytes of the frame so far (TRUNCATED)
        self.frame_type = Signal(8, name="frame_type")
        self.length_high = Signal(8, name="length_high")
        self.received = Signal(16, name="received")                    # payload bytes so far
        self.crc = Signal(16, name="crc")                              # over type, length, payload, CRC high
        self.crc_high = Signal(8, name="crc_high")
        self.bad_level = Signal(name="bad_level")                      # a level above the maximum was seen
        self.bad_index = Signal(16, name="bad_index")                  # the first such level's feature
        self.drop = Signal(name="drop")                                # the queue was full at the SAMPLE header
        self.wr_base = Signal(range(depth * features), name="wr_base")  # the queue address of the free slot


class FrameParser(wiring.Component):
    """The host link's frame parser: received bytes in; SAMPLE payload bytes into the sample queue, a
    ``commit`` per complete good sample, and control reply requests (identity, status, errors) out.

    The states, checks, error codes and resynchronisation are those of :class:`protocol.LinkModel` (and
    ``docs/board.md``): a fault in the header (bad sync, unknown type, bad length, too many features) or a
    framing error is answered with one ERROR and the parser drops bytes (DISCARD) until the line was idle
    for ``timeout_cycles``; a fault at the end of a well-delimited frame (bad CRC, a level too high, the
    queue full) with one ERROR and the next frame is read at once; a frame with no byte for
    ``timeout_cycles`` is TRUNCATED. A SAMPLE's bytes are written into the free slot as they arrive and
    committed at its last CRC byte when all checks pass; a rejected frame commits nothing (its bytes sit in
    the free slot until the next sample overwrites them). Proved in :mod:`pascal_hdl.formal.hostlink_proofs`.

    Parameters
    ----------
    features : int
        Bytes of a SAMPLE payload (the core's ``input_features``, 1..65535); a queue slot holds as many.
    max_level : int
        The largest level a SAMPLE byte may carry (the core's ``input_levels``, 1..255).
    depth : int
        Slots of the sample queue (1..:data:`protocol.MAX_QUEUE`); slot ``s`` is at queue address
        ``s * features``.
    timeout_cycles : int
        Cycles without a byte after which a frame is TRUNCATED (and a DISCARD ends); at least 2.

    Members
    -------
    i : In(stream.Signature(8, always_ready=True))
        A received byte (``valid`` for one cycle, as :attr:`UartRx.o` gives it; no back-pressure).
    framing_error : In(1)
        A byte with a 0 stop bit (one cycle); it wins over ``i.valid`` in the same cycle.
    used : In(range(depth + 1))
        Queue slots holding a sample not yet taken by the core; read in the cycle a SAMPLE header ends:
        ``used == depth`` (no free slot) means the frame is read to its end, nothing is written, and it is
        answered with QUEUE_FULL.
    write : Out(Signature(addr, data, en))
        A SAMPLE payload byte into the queue: ``data`` at ``addr`` (the free slot's address plus the
        byte's offset) when ``en``.
    commit : Out(1)
        One cycle at the last CRC byte of a SAMPLE with the right length, a good CRC, every level at most
        ``max_level`` and a free slot: the free slot holds the sample; the next sample goes to the next slot.
    request : Out(CONTROL_REQUEST)
        A control reply asked for in this cycle (``kind`` NONE: none): IDENTITY or STATUS at the last CRC
        byte of a good frame of that type, ERROR with its ``code`` and ``detail`` at a fault.
    state : Out(ParserState)
        The parser's state (HUNT between frames).

    Attributes
    ----------
    registers : ParserRegisters
        The other registers, for the proofs.
    """

    def __init__(self, features: int, max_level: int, depth: int, timeout_cycles: int):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        limits = {"features": (features, protocol.MAX_FEATURES), "max_level": (max_level, protocol.MAX_LEVEL),
                  "depth": (depth, protocol.MAX_QUEUE), "timeout_cycles": (timeout_cycles, 0xFFFFFFFF)}
        for key, (value, high) in limits.items():
            low = 2 if key == "timeout_cycles" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise HardwareError(f"frame parser: {key} must be an integer in [{low}, {high}], got {value!r}")
        self.features, self.max_level, self.depth, self.timeout_cycles = features, max_level, depth, timeout_cycles
        self.registers = ParserRegisters(features, depth, timeout_cycles)
        write = wiring.Signature({"addr": Out(range(depth * features)), "data": Out(8), "en": Out(1)})
        super().__init__({"i": In(stream.Signature(8, always_ready=True)), "framing_error": In(1),
                          "used": In(range(depth + 1)), "write": Out(write), "commit": Out(1),
                          "request": Out(CONTROL_REQUEST), "state": Out(ParserState)})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        r, features, depth, timeout = self.registers, self.features, self.depth, self.timeout_cycles
        state = self.state
        byte, got, framing = self.i.payload, self.i.valid, self.framing_error
        idle = r.idle
        with m.If(got | framing):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != timeout):
            m.d.sync += idle.eq(idle + 1)
        expire = ~got & ~framing & (idle == timeout - 1)
        fault = Signal()
        fault_code = Signal(8)
        fault_detail = Signal(16)
        crc_in = crc_next(m, r.crc, byte, "rx_crc")
        crc_first = crc_next(m, Const(0xFFFF, 16), byte, "rx_crc_type")
        is_sample = r.frame_type == FrameType.SAMPLE
        length = Cat(byte, r.length_high)
        request = self.request

        def fail(code, detail, resync):
            m.d.comb += [fault.eq(1), fault_code.eq(code), fault_detail.eq(detail)]
            m.d.sync += state.eq(ParserState.DISCARD if resync else ParserState.HUNT)

        m.d.comb += [self.write.addr.eq(r.wr_base + r.received), self.write.data.eq(byte)]
        with m.If(got):
            m.d.sync += r.frame_bytes.eq(Mux(state == ParserState.HUNT, 1, r.frame_bytes + 1))
        with m.If(framing & (state != ParserState.DISCARD)):
            fail(ErrorCode.FRAMING, 0, True)
        with m.Elif(expire & (state == ParserState.DISCARD)):
            m.d.sync += state.eq(ParserState.HUNT)
        with m.Elif(expire & (state != ParserState.HUNT)):
            fail(ErrorCode.TRUNCATED, r.frame_bytes, False)
        with m.Elif(got):
            with m.Switch(state):
                with m.Case(ParserState.HUNT):
                    with m.If(byte == protocol.SYNC[0]):
                        m.d.sync += state.eq(ParserState.SYNC1)
                    with m.Else():
                        fail(ErrorCode.BAD_SYNC, byte, True)
                with m.Case(ParserState.SYNC1):
                    with m.If(byte == protocol.SYNC[1]):
                        m.d.sync += state.eq(ParserState.TYPE)
                    with m.Else():
                        fail(ErrorCode.BAD_SYNC, byte, True)
                with m.Case(ParserState.TYPE):
                    with m.If((byte == FrameType.IDENTIFY) | (byte == FrameType.SAMPLE) | (byte == FrameType.STATUS)):
                        m.d.sync += [r.frame_type.eq(byte), r.crc.eq(crc_first), state.eq(ParserState.LEN_HI)]
                    with m.Else():
                        fail(ErrorCode.UNKNOWN_TYPE, byte, True)
                with m.Case(ParserState.LEN_HI):
                    m.d.sync += [r.length_high.eq(byte), r.crc.eq(crc_in), state.eq(ParserState.LEN_LO)]
                with m.Case(ParserState.LEN_LO):
                    with m.If(is_sample & (length > features)):
                        fail(ErrorCode.TOO_MANY_FEATURES, length, True)
                    with m.Elif(length != Mux(is_sample, features, 0)):
                        fail(ErrorCode.BAD_LENGTH, length, True)
                    with m.Else():
                        m.d.sync += [r.crc.eq(crc_in), r.received.eq(0), r.bad_level.eq(0),
                                     r.drop.eq(self.used == depth),
                                     state.eq(Mux(is_sample, ParserState.PAYLOAD, ParserState.CRC_HI))]
                with m.Case(ParserState.PAYLOAD):
                    m.d.comb += self.write.en.eq(~r.drop)
                    m.d.sync += [r.crc.eq(crc_in), r.received.eq(r.received + 1)]
                    with m.If((byte > self.max_level) & ~r.bad_level):
                        m.d.sync += [r.bad_level.eq(1), r.bad_index.eq(r.received)]
                    with m.If(r.received == features - 1):
                        m.d.sync += state.eq(ParserState.CRC_HI)
                with m.Case(ParserState.CRC_HI):
                    m.d.sync += [r.crc_high.eq(byte), r.crc.eq(crc_in), state.eq(ParserState.CRC_LO)]
                with m.Case(ParserState.CRC_LO):
                    with m.If(crc_in != 0):
                        fail(ErrorCode.BAD_CRC, Cat(byte, r.crc_high), False)
                    with m.Elif(is_sample & r.bad_level):
                        fail(ErrorCode.LEVEL_TOO_HIGH, r.bad_index, False)
                    with m.Elif(is_sample & r.drop):
                        fail(ErrorCode.QUEUE_FULL, 0, False)
                    with m.Else():
                        m.d.sync += state.eq(ParserState.HUNT)
                        with m.If(is_sample):
                            m.d.comb += self.commit.eq(1)
                            m.d.sync += r.wr_base.eq(advance_slot(r.wr_base, depth, features))
                        with m.Elif(r.frame_type == FrameType.IDENTIFY):
                            m.d.comb += request.kind.eq(ReplyKind.IDENTITY)
                        with m.Else():
                            m.d.comb += request.kind.eq(ReplyKind.STATUS)
        with m.If(fault):
            m.d.comb += [request.kind.eq(ReplyKind.ERROR), request.code.eq(fault_code),
                         request.detail.eq(fault_detail)]
        return m


class ParserState(enum.Enum, shape=4):
    """States of the frame parser (the same as :class:`pascal_hdl.board.protocol.LinkModel`'s)."""

    HUNT = protocol.LinkModel.HUNT
    SYNC1 = protocol.LinkModel.SYNC1
    TYPE = protocol.LinkModel.TYPE
    LEN_HI = protocol.LinkModel.LEN_HI
    LEN_LO = protocol.LinkModel.LEN_LO
    PAYLOAD = protocol.LinkModel.PAYLOAD
    CRC_HI = protocol.LinkModel.CRC_HI
    CRC_LO = protocol.LinkModel.CRC_LO
    DISCARD = protocol.LinkModel.DISCARD


class FeederState(enum.Enum, shape=3):
    IDLE = 0
    FETCH = 1
    LOOK = 2
    SEND = 3
    LAST = 4


def crc_next(m, crc, byte, name: str):
    """CRC-16/CCITT-FALSE after one more byte (MSB first, polynomial 0x1021), combinational: a signal
    of ``m`` (each of the 8 steps in a signal of its own, so no expression is lowered twice)."""
    value = Signal(16, name=f"{name}_0")
    m.d.comb += value.eq(crc ^ (byte << 8))
    for step in range(8):
        following = Signal(16, name=f"{name}_{step + 1}")
        m.d.comb += following.eq(Mux(value[15], (value << 1)[:16] ^ 0x1021, (value << 1)[:16]))
        value = following
    return value
