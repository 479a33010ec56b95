"""Proofs of the host link's frame parser (:class:`pascal_hdl.board.hostlink.FrameParser`; issue 15).

One harness (:class:`FrameParserHarness`), proved on two configurations: :data:`SMALL_PARSER` (3
features, levels up to 5, 2 queue slots, a 20-cycle timeout) and :data:`TINY_PARSER` (1 feature, levels
up to 5, 2 slots, an 8-cycle timeout: short frames, so its mutants fail in fewer cycles). Free in every
cycle: a received byte (``i.valid``, ``i.payload``), ``framing_error`` (also together with a byte),
``rst``, and ``h_release`` (the core
taking the oldest queued sample; the harness keeps the queue's fill count ``used`` from the parser's
``commit`` and these releases, as :class:`~pascal_hdl.board.hostlink.HostLink` does, and gives it to the
parser). The harness's own registers reset with the parser's, so every property speaks about what
happened since the last reset.

The specification (the protocol, ``docs/board.md``, :mod:`pascal_hdl.board.protocol`) is restated in
the harness in terms of the frame itself rather than of states: ``h_pos`` counts the bytes of the frame
being read (0: hunting), ``h_discard`` says bytes are being dropped after a fault that lost the frame
boundary, and the frame's bytes are recorded as they come (type, length, payload, CRC high byte). From
these, for every cycle, the harness derives what the protocol asks for in that cycle: nothing, an ERROR
with its code and detail (BAD_SYNC at byte 0 or 1 other than the sync; UNKNOWN_TYPE; TOO_MANY_FEATURES
for a SAMPLE longer than ``features``; BAD_LENGTH for any other length than the type's one; at the last
CRC byte BAD_CRC if the CRC field is not the CRC-16 of type, length and payload, else LEVEL_TOO_HIGH at
the first level above the maximum, else QUEUE_FULL if no slot was free at the SAMPLE header; FRAMING at
a framing error unless dropping; TRUNCATED with the bytes received when a frame has had no byte for
``timeout`` cycles), an IDENTITY or STATUS reply at the last byte of a good IDENTIFY or STATUS, a commit
at the last byte of a good SAMPLE, and a queue write for every payload byte of a SAMPLE that has a slot.
The CRC is the harness's own: CRC-16/CCITT-FALSE as a GF(2)-linear map of (register, byte), the register
after a byte being ``(register + byte * x^8) * x^8 mod P(x)``, ``P = x^16 + x^12 + x^5 + 1``, whose
columns :data:`CRC_COLUMNS` are computed here by polynomial division (:func:`poly_mod`), not the
design's bit-serial loop; it is checked against :func:`binascii.crc_hqx` (:func:`crc16_by_columns`,
``tests/pascal_hdl/formal/test_hostlink.py``). The harness shadows the queue memory (every byte the
parser writes, kept through resets like a memory).

Properties (cycle by cycle, against that specification):

* ``reply``: the parser's control request is the one the protocol asks for (kind; for an ERROR, code and
  detail). So every frame that is not accepted gets exactly one ERROR, with its documented code and
  detail, and a well-formed IDENTIFY / STATUS exactly one request of its kind;
* ``commit``: exactly at the last byte of a SAMPLE with the right length, a CRC field equal to the CRC of
  its body, every level at most the maximum and a slot free at its header; at a commit the harness also
  checks those facts on the recorded frame directly, and that the shadowed slot holds exactly the frame's
  payload bytes;
* ``queue``: a byte is written exactly for each payload byte of a SAMPLE that has a slot, into the slot
  after the last committed one at the byte's offset, with the byte received; never while the queue is
  full, never into a slot that holds a queued sample;
* ``no hang``: ``timeout`` cycles after the last byte the parser is in HUNT, whatever came before;
* ``state``: always a valid encoding, and the one the frame position calls for (HUNT, SYNC1, TYPE,
  LEN_HI, LEN_LO, PAYLOAD, CRC_HI, CRC_LO, DISCARD).

Invariants (true properties that make the induction short, asserted like the others): the parser's
registers (:class:`~pascal_hdl.board.hostlink.ParserRegisters`: idle counter, byte count, type, length
byte, payload offset, running CRC, CRC high byte, level flag and index, drop flag, slot address) equal
what the recorded frame makes them; the recorded level flag and index agree with the recorded bytes;
the harness's queue pointers agree.

Cover statements: a committed sample, a committed sample carrying the maximal level, each of the nine
error codes, an IDENTITY and a STATUS request, and a commit after a reset that interrupted a frame.

Proof mode: k-induction (unbounded: every input and reset sequence of any length) with k = 1: the
assertions together are an inductive invariant. Covers, and the mutants' bounded checks, from power-up to
:attr:`ParserProof.bound` (``depth + 1`` SAMPLE frames back to back: the queue filled and one refused;
at least the timeout and a byte). The mutants of :data:`pascal_hdl.formal.mutants.HOSTLINK_MUTATIONS`
and the assertions that refute them: :data:`HOSTLINK_MUTANT_PROOFS` (the bounded check stops at the
first cycle where an assertion fails; for some mutants that is an invariant, a proved property as well,
which fails a few cycles before the output property would). The invariants also keep the bounded checks
fast (earlier assertions are assumed in later cycles): without them one such check (a queue-full mutant)
had not ended after 15 minutes, 9 of them on cycle 14; with them it takes about 25 s.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from amaranth.hdl import Assert, Cat, Const, Cover, Elaboratable, Module, Mux, Signal

from .engine_proofs import reset_interrupted
from .sby import ProofResult, run_proof

__all__ = ["CRC_COLUMNS", "CRC_POLY", "FrameParserHarness", "HOSTLINK_MUTANT_PROOFS", "HOSTLINK_PROOFS",
           "ParserProof", "ParserProofConfig", "SMALL_PARSER", "TINY_PARSER", "crc16_by_columns", "crc_after",
           "hostlink_module", "poly_mod", "prove_parser"]

CRC_POLY = 0x11021          # x^16 + x^12 + x^5 + 1 (CRC-16/CCITT-FALSE; initial value 0xFFFF)
HEADER = 5                  # bytes before the payload: sync 2, type 1, length 2


def hostlink_module():
    """The design, imported at run time: the import contract puts the board layer above the formal one
    (``pyproject.toml``)."""
    return importlib.import_module("pascal_hdl.board.hostlink")


def poly_mod(value: int, poly: int = CRC_POLY) -> int:
    """The remainder of ``value`` divided by ``poly``, both GF(2) polynomials (bit ``i``: the coefficient
    of ``x^i``)."""
    degree = poly.bit_length() - 1
    while value.bit_length() > degree:
        value ^= poly << (value.bit_length() - 1 - degree)
    return value


# The CRC register after one more byte is (register + byte * x^8) * x^8 mod P: column i is the image of
# bit i of (register ^ byte << 8), x^(i + 8) mod P.
CRC_COLUMNS = tuple(poly_mod(1 << (i + 8)) for i in range(16))


def crc16_by_columns(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` through :data:`CRC_COLUMNS` (the harness's formula, in Python)."""
    for byte in bytes(data):
        v = crc ^ (byte << 8)
        crc = reduce(lambda acc, i: acc ^ (CRC_COLUMNS[i] if v >> i & 1 else 0), range(16), 0)
    return crc


def crc_after(m: Module, crc, byte, name: str) -> Signal:
    """The harness's CRC register after ``byte`` (:data:`CRC_COLUMNS`), a signal of ``m`` (so that a chain
    of them is not lowered as one ever-growing expression)."""
    v = Signal(16, name=f"{name}_in")
    out = Signal(16, name=name)
    m.d.comb += [v.eq(Cat(Const(0, 8), byte) ^ crc),
                 out.eq(reduce(lambda acc, i: acc ^ Mux(v[i], CRC_COLUMNS[i], 0), range(16), Const(0, 16)))]
    return out


@dataclass(frozen=True)
class ParserProofConfig:
    """The parser under proof: ``features`` bytes a SAMPLE, levels up to ``max_level``, ``depth`` queue
    slots, ``timeout`` cycles."""

    name: str
    features: int
    max_level: int
    depth: int
    timeout: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of a whole SAMPLE frame."""
        return HEADER + self.features + 2


SMALL_PARSER = ParserProofConfig("small", features=3, max_level=5, depth=2, timeout=20)


class FrameParserHarness(Elaboratable):
    """The frame parser's properties on a free byte stream (module docstring)."""

    def __init__(self, config: ParserProofConfig = SMALL_PARSER, module=None):
        self.config = config
        self.module = module or hostlink_module()
        self.dut = self.module.FrameParser(config.features, config.max_level, config.depth, config.timeout)
        self.release = Signal(name="h_release")

    @property
    def ports(self):
        return [self.dut.i.valid, self.dut.i.payload, self.dut.framing_error, self.release]

    def elaborate(self, platform):
        m = Module()
        m.submodules.parser = dut = self.dut
        cfg = self.config
        F, D, T, top = cfg.features, cfg.depth, cfg.timeout, cfg.max_level
        states = self.module.ParserState
        kinds = self.module.ReplyKind
        protocol = importlib.import_module("pascal_hdl.board.protocol")    # pure Python: sync, types, codes
        codes, SYNC = protocol.ErrorCode, protocol.SYNC
        types = protocol.FrameType
        SAMPLE, IDENTIFY, STATUS = types.SAMPLE, types.IDENTIFY, types.STATUS
        regs = dut.registers
        byte, got, framing = dut.i.payload, dut.i.valid, dut.framing_error

        # -- the queue around the parser: fill count, oldest slot, next free slot, shadow of the memory
        used = Signal(range(D + 1), name="h_used")
        oldest = Signal(range(D), name="h_oldest")
        free = Signal(range(D), name="h_free")
        take = self.release & (used != 0)
        m.d.sync += used.eq(used + dut.commit - take)
        m.d.comb += dut.used.eq(used)

        def following(slot):
            return Mux(slot == D - 1, 0, slot + 1)

        with m.If(take):
            m.d.sync += oldest.eq(following(oldest))
        with m.If(dut.commit):
            m.d.sync += free.eq(following(free))
        shadow = [Signal(8, name=f"h_shadow{a}", reset_less=True) for a in range(D * F)]

        def slot_byte(k):                                # byte k of the free slot in the shadow
            return Cat(*shadow).word_select(free * F + k, 8)

        with m.If(dut.write.en):
            for a in range(D * F):
                with m.If(dut.write.addr == a):
                    m.d.sync += shadow[a].eq(dut.write.data)

        # -- the frame as received
        quiet = Signal(range(T + 1), name="h_quiet")     # cycles since the last byte or framing error
        with m.If(got | framing):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != T):
            m.d.sync += quiet.eq(quiet + 1)
        expire = ~got & ~framing & (quiet == T - 1)      # the T-th cycle without a byte
        discard = Signal(name="h_discard")
        pos = Signal(range(HEADER + F + 2), name="h_pos")
        kind = Signal(8, name="h_type")
        len_hi, len_lo = Signal(8, name="h_len_hi"), Signal(8, name="h_len_lo")
        payload = [Signal(8, name=f"h_payload{k}") for k in range(F)]
        crc_hi = Signal(8, name="h_crc_hi")
        full = Signal(name="h_full")                     # no slot free at the SAMPLE header
        sample = kind == SAMPLE
        length = Cat(len_lo, len_hi)
        body_end = Mux(sample, HEADER + F, HEADER)       # the position of the CRC high byte

        # The CRC of the body's first j bytes (type, length, payload), from the recorded bytes.
        prefix = [Const(0xFFFF, 16)]
        for j, part in enumerate([kind, len_hi, len_lo, *payload]):
            prefix.append(crc_after(m, prefix[-1], part, f"h_crc{j + 1}"))
        body_crc = Signal(16, name="h_body_crc")          # the CRC of the whole body
        m.d.comb += body_crc.eq(Mux(sample, prefix[3 + F], prefix[3]))
        recorded = [sample & (pos > HEADER + k) for k in range(F)]   # payload byte k is recorded
        high = [payload[k] > top for k in range(F)]
        bad = reduce(lambda acc, k: acc | (recorded[k] & high[k]), range(F), Const(0, 1))
        bad_index = Signal(16, name="h_bad_index")      # the first recorded level above the maximum
        m.d.comb += bad_index.eq(0)
        for k in reversed(range(F)):
            with m.If(recorded[k] & high[k]):
                m.d.comb += bad_index.eq(k)

        # -- what the protocol asks for in this cycle
        want_kind = Signal(kinds, name="h_want_kind")
        want_code = Signal(8, name="h_want_code")
        want_detail = Signal(16, name="h_want_detail")
        want_commit = Signal(name="h_want_commit")
        want_write = Signal(name="h_want_write")
        offset = Signal(range(F), name="h_offset")
        m.d.comb += offset.eq((pos - HEADER)[:len(offset)])

        def error(code, detail, resync):
            m.d.comb += [want_kind.eq(kinds.ERROR), want_code.eq(code), want_detail.eq(detail)]
            m.d.sync += [pos.eq(0), discard.eq(resync)]

        with m.If(framing):
            with m.If(~discard):
                error(codes.FRAMING, 0, True)
        with m.Elif(expire):
            with m.If(discard):
                m.d.sync += discard.eq(0)
            with m.Elif(pos != 0):
                error(codes.TRUNCATED, pos, False)
        with m.Elif(got & ~discard):
            with m.If(pos < 2):
                with m.If(byte == Mux(pos == 0, SYNC[0], SYNC[1])):
                    m.d.sync += pos.eq(pos + 1)
                with m.Else():
                    error(codes.BAD_SYNC, byte, True)
            with m.Elif(pos == 2):
                with m.If((byte == SAMPLE) | (byte == IDENTIFY) | (byte == STATUS)):
                    m.d.sync += [kind.eq(byte), pos.eq(3)]
                with m.Else():
                    error(codes.UNKNOWN_TYPE, byte, True)
            with m.Elif(pos == 3):
                m.d.sync += [len_hi.eq(byte), pos.eq(4)]
            with m.Elif(pos == 4):
                asked = Cat(byte, len_hi)
                with m.If(sample & (asked > F)):
                    error(codes.TOO_MANY_FEATURES, asked, True)
                with m.Elif(asked != Mux(sample, F, 0)):
                    error(codes.BAD_LENGTH, asked, True)
                with m.Else():
                    m.d.sync += [len_lo.eq(byte), full.eq(used == D), pos.eq(HEADER)]
            with m.Elif(pos < body_end):
                m.d.comb += want_write.eq(~full)
                for k in range(F):
                    with m.If(offset == k):
                        m.d.sync += payload[k].eq(byte)
                m.d.sync += pos.eq(pos + 1)
            with m.Elif(pos == body_end):
                m.d.sync += [crc_hi.eq(byte), pos.eq(pos + 1)]
            with m.Else():                               # the last CRC byte
                with m.If(Cat(byte, crc_hi) != body_crc):
                    error(codes.BAD_CRC, Cat(byte, crc_hi), False)
                with m.Elif(bad):
                    error(codes.LEVEL_TOO_HIGH, bad_index, False)
                with m.Elif(sample & full):
                    error(codes.QUEUE_FULL, 0, False)
                with m.Else():
                    m.d.sync += pos.eq(0)
                    with m.If(sample):
                        m.d.comb += want_commit.eq(1)
                    with m.Elif(kind == IDENTIFY):
                        m.d.comb += want_kind.eq(kinds.IDENTITY)
                    with m.Else():
                        m.d.comb += want_kind.eq(kinds.STATUS)

        # -- the properties
        request = dut.request
        m.d.comb += Assert(request.kind == want_kind, "reply: the request the protocol asks for")
        with m.If(want_kind == kinds.ERROR):
            m.d.comb += [Assert(request.code == want_code, "reply: the documented error code"),
                         Assert(request.detail == want_detail, "reply: the documented error detail")]
        m.d.comb += Assert(dut.commit == want_commit, "commit: exactly a good SAMPLE with a free slot")
        with m.If(dut.commit):
            m.d.comb += [Assert(sample & (length == F), "commit: a SAMPLE of input_features bytes"),
                         Assert(Cat(byte, crc_hi) == body_crc, "commit: the CRC field checks"),
                         Assert(used != D, "commit: a free slot")]
            for k in range(F):
                m.d.comb += [Assert(payload[k] <= top, "commit: every level at most the maximum"),
                             Assert(slot_byte(k) == payload[k], "commit: the slot holds the frame's payload bytes")]
        m.d.comb += Assert(dut.write.en == want_write, "queue: a byte written exactly for each payload byte "
                                                       "of a SAMPLE with a slot")
        with m.If(dut.write.en):
            m.d.comb += [Assert(dut.write.addr == free * F + offset,
                                "queue: into the free slot, at the byte's offset"),
                         Assert(dut.write.data == byte, "queue: the byte received"),
                         Assert(used != D, "queue: nothing written while the queue is full")]
            for slot in range(D):
                queued = Mux(slot >= oldest, slot - oldest, slot + D - oldest) < used
                inside = (dut.write.addr >= slot * F) & (dut.write.addr < slot * F + F)
                m.d.comb += Assert(~(queued & inside), "queue: no write into a slot holding a queued sample")
        with m.If(quiet == T):
            m.d.comb += Assert(dut.state == states.HUNT, "no hang: HUNT timeout cycles after the last byte")
        m.d.comb += Assert(dut.state.as_value() <= max(s.value for s in states), "state: a valid encoding")
        expected = Signal(len(dut.state.as_value()), name="h_state")
        in_header = [states.HUNT, states.SYNC1, states.TYPE, states.LEN_HI, states.LEN_LO]
        with m.If(discard):
            m.d.comb += expected.eq(states.DISCARD.value)
        with m.Elif(pos < HEADER):
            for j, state in enumerate(in_header):
                with m.If(pos == j):
                    m.d.comb += expected.eq(state.value)
        with m.Elif(pos < body_end):
            m.d.comb += expected.eq(states.PAYLOAD.value)
        with m.Elif(pos == body_end):
            m.d.comb += expected.eq(states.CRC_HI.value)
        with m.Else():
            m.d.comb += expected.eq(states.CRC_LO.value)
        m.d.comb += Assert(dut.state.as_value() == expected, "state: the one the frame position calls for")

        # -- invariants (also true properties; they keep the induction short)
        in_frame = ~discard & (pos != 0)
        m.d.comb += [Assert(regs.idle == quiet, "invariant: the idle counter"),
                     Assert(~discard | (pos == 0), "harness: no frame while dropping"),
                     Assert(pos <= body_end + 1, "harness: the position within the frame"),
                     Assert(used <= D, "harness: the fill count"),
                     Assert(free == Mux(oldest + used >= D, oldest + used - D, oldest + used),
                            "harness: the free slot follows the queued ones"),
                     Assert(regs.wr_base == free * F, "invariant: the slot address")]
        with m.If(in_frame):
            m.d.comb += Assert(regs.frame_bytes == pos, "invariant: the byte count")
        with m.If(in_frame & (pos >= 3)):
            m.d.comb += [Assert((kind == SAMPLE) | (kind == IDENTIFY) | (kind == STATUS), "harness: the type"),
                         Assert(regs.frame_type == kind, "invariant: the type")]
        with m.If(in_frame & (pos == 4)):
            m.d.comb += Assert(regs.length_high == len_hi, "invariant: the length's high byte")
        with m.If(in_frame & (pos >= HEADER)):
            m.d.comb += [Assert(length == Mux(sample, F, 0), "harness: the length"),
                         Assert(regs.bad_level == bad, "invariant: the level flag"),
                         Assert(regs.drop == full, "invariant: the drop flag"),
                         Assert(full | (used != D), "harness: a slot free at the header stays free")]
            with m.If(bad):
                m.d.comb += Assert(regs.bad_index == bad_index, "invariant: the level index")
        with m.If(in_frame & (pos >= HEADER) & (pos < body_end)):
            m.d.comb += Assert(regs.received == pos - HEADER, "invariant: the payload offset")
        for j in range(3, HEADER + F + 1):               # the running CRC after the body's first j - 2 bytes
            with m.If(in_frame & (pos == j) & (pos <= body_end)):
                m.d.comb += Assert(regs.crc == prefix[j - 2], "invariant: the running CRC")
        with m.If(in_frame & (pos == body_end + 1)):
            m.d.comb += [Assert(regs.crc == crc_after(m, body_crc, crc_hi, "h_crc_field"),
                                "invariant: the running CRC"),
                         Assert(regs.crc_high == crc_hi, "invariant: the CRC high byte")]
        for k in range(F):                               # the shadowed slot holds the bytes written so far
            with m.If(in_frame & recorded[k] & ~full):
                m.d.comb += Assert(slot_byte(k) == payload[k], "invariant: the slot holds the payload so far")

        # -- non-vacuity
        m.d.comb += [Cover(dut.commit),
                     Cover(dut.commit & reduce(lambda acc, k: acc | (payload[k] == top), range(F), Const(0, 1))),
                     Cover(request.kind == kinds.IDENTITY), Cover(request.kind == kinds.STATUS),
                     Cover(dut.commit & reset_interrupted(m, in_frame))]
        for code in codes:
            m.d.comb += Cover((request.kind == kinds.ERROR) & (request.code == code))
        return m



@dataclass(frozen=True)
class ParserProof:
    """One proof: its configuration, the induction depth ``k`` and the bound of the cover run and of the
    mutants' bounded checks (from power-up; the cover run must reach its :attr:`covers` statements)."""

    name: str
    config: ParserProofConfig
    depth: int
    bound: int
    covers: int = 5 + 9     # five, and one for each of the nine protocol.ErrorCode values


def _parser_proof(config: ParserProofConfig) -> ParserProof:
    # The bound: depth + 1 SAMPLE frames back to back (the queue filled, the next one refused), and at
    # least the timeout with a byte before it and the cycle after it (TRUNCATED, the end of a DISCARD).
    bound = max((config.depth + 1) * config.frame_bytes, config.timeout + 2) + 2
    return ParserProof(f"frame_parser_{config.name}", config, 1, bound)


# The small configuration, and a tiny one (one feature, an 8-cycle timeout: frames of 8 bytes) where the
# queue-full, slot and timeout mutants fail in fewer cycles.
TINY_PARSER = ParserProofConfig("tiny", features=1, max_level=5, depth=2, timeout=8)
HOSTLINK_PROOFS = (_parser_proof(SMALL_PARSER), _parser_proof(TINY_PARSER))
PROOFS = {p.name: p for p in HOSTLINK_PROOFS}

# mutant name -> ((proof that must refute it, failed-property messages one of which it reports), ...)
HOSTLINK_MUTANT_PROOFS = {
    "parser_crc_unchecked": (("frame_parser_small", ("reply: the request the protocol asks for",)),),
    "parser_commit_when_full": (("frame_parser_tiny", ("commit: exactly a good SAMPLE with a free slot",)),),
    "parser_write_when_full": (("frame_parser_tiny", ("invariant: the drop flag", "queue: nothing written",
                                                      "queue: a byte written exactly")),),
    "parser_discard_forever": (("frame_parser_tiny", ("no hang: HUNT timeout cycles after the last byte",)),),
    "parser_timeout_late": (("frame_parser_tiny", ("reply: the request the protocol asks for",)),),
    "parser_level_off_by_one": (("frame_parser_small", ("invariant: the level flag",
                                                        "reply: the request the protocol asks for")),),
    "parser_slot_not_advanced": (("frame_parser_tiny", ("invariant: the slot address",
                                                        "queue: into the free slot")),),
}


def prove_parser(proof: ParserProof | str, workdir, module=None, mode: str = "prove", name: str | None = None,
                 depth: int | None = None) -> ProofResult:
    """k-induction (``mode="prove"``, depth :attr:`ParserProof.depth`), a bounded check from power-up
    (``"bmc"``, :attr:`ParserProof.bound`: the mutants') or the cover run (``"cover"``, the same bound) of
    the frame parser harness."""
    proof = PROOFS[proof] if isinstance(proof, str) else proof
    harness = FrameParserHarness(proof.config, module)
    name = name or f"{proof.name}_{mode}"
    depth = depth or (proof.depth if mode == "prove" else proof.bound)
    return run_proof(harness, harness.ports, name, Path(workdir), mode=mode, depth=depth)
