"""Cycle-level Python model of the AXI4-Stream wrapper (:class:`pascal_hdl.board.axis.AxiStreamCore`).

Beat formats (the wrapper's contract, ``docs/board.md``):

Samples in (``s_axis``, slave)
    One beat per input feature, features in index order ``0 .. N-1`` (``N = input_features``):
    ``tdata`` holds the feature's level ``0 .. input_levels`` (``tdata`` is
    :func:`sample_data_width` bits: the level's bits rounded up to whole bytes, the upper bits zero) and
    ``tlast`` is set on the sample's last beat (feature ``N-1``). A sample is exactly ``N`` beats.
    The wrapper turns beats into the core's count-coded events (``docs/semantics.md`` §5): a beat
    with a nonzero level, and the sample's last beat, become the event ``(index, level, last)``; a
    zero level on any other beat is taken in the cycle it is offered and never reaches the core.
    Malformed samples never hang and never give a result that looks valid; their result has
    ``rejected`` set:

    * a level above ``input_levels`` (or any bit above it in ``tdata``): that feature counts as 0;
    * ``tlast`` before feature ``N-1``: the sample ends there (the missing features count as 0);
    * no ``tlast`` on feature ``N-1``: the sample ends at feature ``N-1``, and every following beat
      up to and including the next ``tlast`` is taken and dropped.

    So every packet (up to ``tlast``) gives exactly one result.

Results out (``m_axis``, master)
    One beat per sample, in order, ``tlast`` set on every beat: ``tdata`` is the core's result
    (:func:`pascal_hdl.gateware.core.core_result_layout`) packed least significant field first,
    :func:`result_fields`: ``logits`` (``classes`` signed words of ``logit_width`` bits, class 0 at
    bit 0), ``cls``, ``cycles`` (32), ``rejected`` (1: the core's own flag or a malformed sample),
    ``sample`` (16), ``finished`` (32), zero-padded to :func:`result_data_width` (whole bytes).
    :func:`unpack_result` reads it.

Timing: no register between the AXI ports and the core. ``s_axis.tready`` is the core's ``i.ready``
for a beat that becomes an event and 1 for a beat that is dropped (it depends on the offered
``tdata``/``tlast``, never on anything downstream of the core); ``m_axis`` is the core's result
stream (``tvalid`` never depends on ``tready``). A beat that becomes an event costs what the event
costs the core (``max(1, count * groups)`` cycles, ``NetworkCore``); a dropped beat one cycle.
"""
from __future__ import annotations

from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.model.core import COUNTER_MODULUS, SAMPLE_TAG_WIDTH, CoreModel, check_levels
from pascal_hdl.widths import check_type

__all__ = ["AxiStreamCoreModel", "CYCLE_FIELD_WIDTH", "beat_event", "level_width", "pack_result", "result_data_width",
           "result_fields", "sample_beats", "sample_data_width", "stream_events", "unpack_result"]

CYCLE_FIELD_WIDTH = COUNTER_MODULUS.bit_length() - 1
"""Width of the ``cycles`` and ``finished`` fields (the core's cycle counter)."""


def _whole_bytes(bits: int) -> int:
    return 8 * -(-bits // 8)


def level_width(config: CoreConfig) -> int:
    """Bits of an input level ``0 .. input_levels``."""
    return max(1, int(config.input_levels).bit_length())


def sample_data_width(config: CoreConfig) -> int:
    """``s_axis.tdata`` width: :func:`level_width` rounded up to whole bytes."""
    return _whole_bytes(level_width(config))


def result_fields(config: CoreConfig) -> list[tuple[str, int, bool]]:
    """``(name, width, signed)`` of every field of a result beat, least significant first; ``logits``
    is one entry per class (``logit0``, ``logit1``, ...), in the order of ``core_result_layout``."""
    readout = config.readout
    fields = [(f"logit{k}", readout.logit_width, True) for k in range(readout.out_features)]
    fields += [("cls", max(1, (max(readout.out_features, 2) - 1).bit_length()), False),
               ("cycles", CYCLE_FIELD_WIDTH, False), ("rejected", 1, False), ("sample", SAMPLE_TAG_WIDTH, False),
               ("finished", CYCLE_FIELD_WIDTH, False)]
    return fields


def result_data_width(config: CoreConfig) -> int:
    """``m_axis.tdata`` width: the packed result rounded up to whole bytes."""
    return _whole_bytes(sum(width for _, width, _ in result_fields(config)))


def pack_result(config: CoreConfig, result: dict) -> int:
    """The ``tdata`` of a result beat from ``{logits, cls, cycles, rejected, sample, finished}``."""
    values = {f"logit{k}": int(v) for k, v in enumerate(result["logits"])}
    values.update({name: int(result[name]) for name in ("cls", "cycles", "rejected", "sample", "finished")})
    word, offset = 0, 0
    for name, width, _ in result_fields(config):
        word |= (values[name] & ((1 << width) - 1)) << offset
        offset += width
    return word


def unpack_result(config: CoreConfig, word: int) -> dict:
    """``{logits, cls, cycles, rejected, sample, finished}`` of a result beat's ``tdata``."""
    word, offset, values = int(word), 0, {}
    if word < 0 or word >> result_data_width(config):
        raise HardwareError(f"core '{config.name}': result word {word:#x} does not fit {result_data_width(config)} bits")
    for name, width, signed in result_fields(config):
        value = (word >> offset) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        values[name] = value
        offset += width
    logits = [values.pop(f"logit{k}") for k in range(config.readout.out_features)]
    return {"logits": logits, **values, "rejected": bool(values["rejected"])}


def sample_beats(config: CoreConfig, levels) -> list[dict]:
    """The ``s_axis`` beats ``{tdata, tlast}`` of samples ``levels`` ``(batch, input_features)`` (or one
    sample), one beat per feature, ``tlast`` on each sample's last feature."""
    levels = check_levels(config, levels)
    features = config.input_features
    return [{"tdata": int(level), "tlast": index == features - 1} for sample in levels
            for index, level in enumerate(sample)]


def beat_event(config: CoreConfig, position: int, beat: dict) -> tuple[dict | None, bool, bool]:
    """What the wrapper makes of ``beat`` at feature ``position`` of its sample (not while dropping):
    ``(event or None, malformed, ends the sample)``; the event is ``{index, count, last}``."""
    level, tlast = int(beat["tdata"]), bool(beat["tlast"])
    at_last_feature = position == config.input_features - 1
    ends = tlast or at_last_feature
    level_bad = level > config.input_levels
    count = 0 if level_bad else level
    malformed = level_bad or tlast != at_last_feature
    event = {"index": position, "count": count, "last": ends} if (ends or count) else None
    return event, malformed, ends


def stream_events(config: CoreConfig, beats) -> list[dict]:
    """The events the wrapper hands the core for a list of beats (the framing rules of the module
    docstring, malformed beats included)."""
    events, position, dropping = [], 0, False
    for beat in beats:
        if dropping:
            dropping = not beat["tlast"]
            continue
        event, _, ends = beat_event(config, position, beat)
        if event is not None:
            events.append(event)
        position = 0 if ends else position + 1
        dropping = ends and not beat["tlast"]
    return events


class AxiStreamCoreModel:
    """Cycle-level model of :class:`~pascal_hdl.board.axis.AxiStreamCore`: the framing registers
    (feature position, dropping, the sample's malformed flag), the FIFO of malformed flags (one slot per
    sample in flight, written when a sample's last event is taken, read when its result is taken) and
    a :class:`~pascal_hdl.model.core.CoreModel`.

    Per cycle: read :meth:`s_ready` (for the beat offered), :meth:`m_valid` and :attr:`m_payload`,
    then :meth:`step`.
    """

    def __init__(self, config: CoreConfig):
        self.config = check_type("AxiStreamCoreModel", "config", config, CoreConfig)
        self.core = CoreModel(config)
        self.position = 0
        self.dropping = False
        self.malformed = False
        self.flags = [False] * config.in_flight
        self.head = self.tail = 0

    def reset(self) -> None:
        """``rst``: every register to its reset value, the core model reset."""
        self.__init__(self.config)

    def _event(self, beat):
        if self.dropping:
            return None, False, False
        return beat_event(self.config, self.position, beat)

    def s_ready(self, beat: dict | None) -> bool:
        """``s_axis.tready`` with ``beat`` offered (``None``: nothing offered; then the beat that would
        be dropped or become an event is not known, and the value is that of a zero level that does not
        end the sample, as the hardware computes it from whatever ``tdata`` holds)."""
        beat = beat if beat is not None else {"tdata": 0, "tlast": False}
        event, _, _ = self._event(beat)
        return self.core.in_ready() if event is not None else True

    def m_valid(self) -> bool:
        return self.core.out_valid()

    @property
    def m_payload(self) -> dict:
        """The result beat offered: ``{tdata, tlast}``."""
        result = dict(self.core.out_payload)
        result["rejected"] = bool(result["rejected"] or self.flags[self.head])
        return {"tdata": pack_result(self.config, result), "tlast": True}

    def step(self, s_valid: bool = False, beat: dict | None = None, m_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(beat taken, result taken)``."""
        event, malformed, ends = self._event(beat) if s_valid else (None, False, False)
        forward = bool(s_valid) and event is not None
        accepted = bool(s_valid) and (self.core.in_ready() if forward else True)
        m_valid = self.core.out_valid()
        self.core.step(forward, event if forward else None, m_ready)
        taken = m_valid and bool(m_ready)
        if taken:
            self.head = (self.head + 1) % self.config.in_flight
        if accepted:
            if self.dropping:
                self.dropping = not beat["tlast"]
            elif ends:
                self.flags[self.tail] = self.malformed or malformed
                self.tail = (self.tail + 1) % self.config.in_flight
                self.position, self.malformed, self.dropping = 0, False, not beat["tlast"]
            else:
                self.position += 1
                self.malformed = self.malformed or malformed
        return accepted, taken
