"""In-order comparison of captured transactions with the golden model (plain Python).

Two kinds of channels, as the core's streams carry them:

* ``events``: spike-train events ``{index, count, last}`` of a layer; the
  events of one sample (up to ``last``) form one transaction, the dense count
  vector of the layer (neurons not sent have count 0). Checked: the counts,
  indices strictly increasing, ``last`` on the layer's last neuron.
* ``results``: one beat per sample (``{logits, cls, ...}``); every expected
  field is compared.

Transactions are compared in order against the expected ones; a message
names the sample (``noun``: image, sample), the layer and the neurons or
field that differ, with both values. The scoreboard also keeps what the
hardware produced (counts, logits, classes, cycles) for the report.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ChannelBoard", "Scoreboard"]

MESSAGE_LIMIT = 20
"""Messages kept per channel (all are counted)."""


class ChannelBoard:
    """Expected and received transactions of one channel."""

    def __init__(self, name: str, kind: str, layer: str, expected: dict[str, np.ndarray], samples: int,
                 features: int | None = None):
        if kind not in ("events", "results"):
            raise ValueError(f"channel {name}: kind must be 'events' or 'results', got {kind!r}")
        self.name, self.kind, self.layer = name, kind, layer
        self.expected = {key: np.asarray(value) for key, value in expected.items()}
        self.samples = samples
        self.features = features
        self.received = 0
        self.messages: list[str] = []
        self.bad_samples: set[int] = set()
        self.got: dict[str, list] = {}
        # events: the sample being assembled
        self._counts = np.zeros(features or 0, dtype=np.int64)
        self._previous = -1
        self._problems: list[str] = []


class Scoreboard:
    """Compares every channel's transactions in order; collects messages and per-layer mismatch counts."""

    def __init__(self, noun: str = "sample"):
        self.noun = noun
        self.channels: dict[str, ChannelBoard] = {}
        self.error_count = 0

    def add_channel(self, board: ChannelBoard) -> None:
        self.channels[board.name] = board

    def error(self, board: ChannelBoard, message: str) -> None:
        self.error_count += 1
        if len(board.messages) < MESSAGE_LIMIT:
            board.messages.append(message)

    @property
    def errors(self) -> list[str]:
        """The kept messages, channel by channel (in the order the channels were added)."""
        return [message for board in self.channels.values() for message in board.messages]

    # -- transactions

    def events(self, channel: str, index, count, last) -> None:
        """A batch of decoded events (arrays of equal length) of an ``events`` channel, in order."""
        board = self.channels[channel]
        for n, c, end in zip(np.asarray(index).tolist(), np.asarray(count).tolist(), np.asarray(last).tolist()):
            if n <= board._previous:
                board._problems.append(f"output index {n} after {board._previous}")
            if n >= board.features:
                board._problems.append(f"output index {n} beyond the {board.features} neurons")
            else:
                board._counts[n] = c
            board._previous = n
            if end:
                if n != board.features - 1:
                    board._problems.append(f"last flag on neuron {n}, the layer has {board.features}")
                self._event_sample(board)

    def _event_sample(self, board: ChannelBoard) -> None:
        s = board.received
        counts = board._counts
        board.got.setdefault("counts", []).append(counts.copy())
        where = f"{self.noun} {s} layer {board.layer}"
        for problem in board._problems:
            self.error(board, f"{where}: {problem}")
        bad = bool(board._problems)
        if s >= board.samples:
            self.error(board, f"layer {board.layer}: more than the {board.samples} {self.noun}s sent")
            bad = True
        else:
            want = board.expected["counts"][s]
            wrong = np.flatnonzero(counts != want)
            if len(wrong):
                self.error(board, f"{where}: neurons {wrong.tolist()} counts {counts[wrong].tolist()} "
                           f"want {want[wrong].tolist()}")
                bad = True
        if bad:
            board.bad_samples.add(s)
        board.received += 1
        board._counts = np.zeros_like(counts)
        board._previous = -1
        board._problems = []

    def results(self, channel: str, fields: dict[str, np.ndarray]) -> None:
        """A batch of decoded result beats (``{field: array (n, ...)}``) of a ``results`` channel."""
        board = self.channels[channel]
        n = len(next(iter(fields.values())))
        for k in range(n):
            s = board.received
            for name, column in fields.items():
                board.got.setdefault(name, []).append(column[k])
            if s >= board.samples:
                self.error(board, f"layer {board.layer}: more than the {board.samples} results expected")
                board.bad_samples.add(s)
            else:
                for name, want in board.expected.items():
                    got = fields[name][k]
                    if not np.array_equal(got, want[s]):
                        what = "class" if name == "cls" else name
                        note = " (pascal_hdl.model.core.expected_cycles)" if name == "cycles" else ""
                        self.error(board, f"{self.noun} {s} layer {board.layer}: {what} {np.asarray(got).tolist()} "
                                   f"want {np.asarray(want[s]).tolist()}{note}")
                        board.bad_samples.add(s)
            board.received += 1

    def finish(self) -> None:
        """Every channel must have received exactly the expected number of transactions."""
        for board in self.channels.values():
            if board.received != board.samples:
                self.error(board, f"layer {board.layer}: {board.received} {self.noun}s on channel {board.name}, "
                           f"{board.samples} sent")
            if board.kind == "events" and (board._previous >= 0 or board._problems):
                self.error(board, f"layer {board.layer}: events after the last complete {self.noun} on channel {board.name}")

    # -- summary

    def mismatches_per_layer(self) -> dict[str, int]:
        """Samples with at least one mismatch, per layer."""
        return {board.layer: len(board.bad_samples) for board in self.channels.values()}

    def captured(self) -> dict[str, np.ndarray]:
        """What the hardware produced: ``{"<channel>.<field>": array}``."""
        out = {}
        for board in self.channels.values():
            for name, rows in board.got.items():
                out[f"{board.name}.{name}"] = np.asarray(rows, dtype=np.int64)
        return out
