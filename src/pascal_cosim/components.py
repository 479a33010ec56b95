"""cocotb components of a harness: stream driver, capture monitor, the session that runs them.

Written once for every harness (engine, network core, neuron unit, future
convolution cores). They never wait for a clock edge: a session waits for
the harness's ``attention`` output, which toggles when a ring has crossed a
half (the stimulus ring needs refilling, a capture ring draining) or the run
is done; then the driver refills and the monitors drain. Memory words are
written and read through the simulator's VPI while the simulation is
paused, so the design runs at the simulator's own speed in between.

Wrapper naming (:func:`pascal_cosim.harness.clock_wrapper`): the harness
instance ``<inst>`` has its ports on the top level as ``<inst>__<port>`` and its
memories under ``<inst>.<path>``.
"""
from __future__ import annotations

import math
import time

from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, SimTimeoutError, ValueChange, with_timeout

__all__ = ["CaptureMonitor", "HarnessPorts", "HarnessSession", "RingAccess", "StimulusDriver"]

_DEPOSIT = 0   # cocotb.handle._GPISetAction.DEPOSIT


class RingAccess:
    """Word reads and writes of a ring memory, straight through the GPI objects of its words.

    cocotb's ``array[k].value`` wraps every word in a handle object, builds a
    ``LogicArray`` per read and schedules every write for the next ReadWrite
    phase (together about 20 us for a word's first access and 2 us after;
    tens of thousands of words per run). The ring words are never read by the
    design in the time step Python touches them (the driver writes the half
    the source left, the monitor reads the half just written), so the raw GPI
    object of each word is kept, its binary string read and values deposited
    directly. Falls back to cocotb's handles if the GPI objects lack those calls.
    """

    def __init__(self, array, width: int):
        self.array = array
        self.width = width
        gpi = getattr(array, "_handle", None)
        self.gpi = gpi if gpi is not None and hasattr(gpi, "get_handle_by_index") else None
        self.words: dict[int, object] = {}

    def _word(self, address: int):
        word = self.words.get(address)
        if word is None:
            word = self.gpi.get_handle_by_index(address)
            if not word or not hasattr(word, "get_signal_val_binstr"):
                self.gpi = None      # not what we expect: cocotb's own path from now on
                return None
            self.words[address] = word
        return word

    def read(self, address: int) -> int:
        word = self._word(address) if self.gpi is not None else None
        if word is None:
            return self.array[address].value.to_unsigned()
        text = word.get_signal_val_binstr()
        try:
            return int(text, 2)
        except ValueError:
            raise AssertionError(f"ring word {self.array._path}[{address}] holds {text!r} (X or Z): read before "
                                 "it was written") from None

    def write(self, address: int, value: int) -> None:
        word = self._word(address) if self.gpi is not None else None
        if word is None:
            self.array[address].value = value
        elif self.width <= 32:
            word.set_signal_val_int(_DEPOSIT, value)
        else:
            word.set_signal_val_binstr(_DEPOSIT, format(value, f"0{self.width}b"))


class HarnessPorts:
    """Access to one harness instance: ``ports["done"]`` and ``ports.memory("source.ring")``."""

    def __init__(self, dut, instance: str):
        self.dut = dut
        self.instance = instance

    def __getitem__(self, name: str):
        return getattr(self.dut, f"{self.instance}__{name}")

    def memory(self, path: str):
        handle = getattr(self.dut, self.instance)
        for part in path.split("."):
            handle = getattr(handle, part)
        return handle


class StimulusDriver:
    """The stream driver: writes the stimulus words into the harness's ring as the source consumes them.

    ``words`` are ring words (payload and idle gap packed by the host). The
    first ring-full is written before reset is released; then, each time the
    source moves into the other half of the ring, everything up to
    ``fetched + depth - 1`` (the address the read port holds is never written).
    """

    def __init__(self, ports: HarnessPorts, ring: str, depth: int, words: list[int], width: int):
        self.ports = ports
        self.ring = RingAccess(ports.memory(ring), width)
        self.depth = depth
        self.words = words
        self.loaded = 0
        self.python_s = 0.0     # time spent here, while the simulation waits

    def _write_up_to(self, limit: int) -> None:
        start = time.perf_counter()
        limit = min(limit, len(self.words))
        write, depth, words = self.ring.write, self.depth, self.words
        for k in range(self.loaded, limit):
            write(k % depth, words[k])
        self.loaded = max(self.loaded, limit)
        self.ports["stim_loaded"].value = self.loaded
        self.python_s += time.perf_counter() - start

    def load(self) -> None:
        """Before reset is released: totals and the first ring-full."""
        self.ports["stim_total"].value = len(self.words)
        self._write_up_to(self.depth)

    def refill(self) -> None:
        """Write everything the source has made room for (call on a wake-up, not in the read-only phase)."""
        if self.loaded < len(self.words):
            self._write_up_to(int(self.ports["stim_fetched"].value) + self.depth - 1)


class CaptureMonitor:
    """Reads a capture ring as the harness fills it and hands the words to ``sink(words)`` in order."""

    def __init__(self, ports: HarnessPorts, channel: str, ring: str, depth: int, width: int, sink):
        self.ports = ports
        self.channel = channel
        self.ring = RingAccess(ports.memory(ring), width)
        self.depth = depth
        self.sink = sink
        self.read = 0
        self.python_s = 0.0

    def drain(self) -> None:
        """Everything written so far (call in the read-only phase)."""
        start = time.perf_counter()
        count = int(self.ports[f"cap_{self.channel}_count"].value)
        if count - self.read > self.depth:
            raise AssertionError(f"capture ring {self.channel}: {count - self.read} entries unread, "
                                 f"more than its depth {self.depth} (entries lost)")
        read, depth = self.ring.read, self.depth
        words = [read(k % depth) for k in range(self.read, count)]
        self.read = count
        if words:
            self.sink(words)
        self.python_s += time.perf_counter() - start

class HarnessSession:
    """One harness instance through one run: settings, driver, monitors, ``done``.

    ``settings`` are written to the harness's input ports before reset is
    released (``samples``, ``ready_threshold``, ``seed``); ``sinks`` maps each
    captured channel to a function taking a list of words. Cycles are
    measured as simulation time (the harness has no cycle counter): from the
    release of reset to ``done`` (which a stream-contract violation raises in
    the next cycle); ``cycle_limit`` (0: none) is a timer.
    """

    def __init__(self, dut, description: dict, words: list[int], settings: dict, sinks: dict,
                 cycle_limit: int = 0, period_ns: int = 10):
        self.ports = HarnessPorts(dut, description["instance"])
        self.description = description
        self.settings = settings
        self.cycle_limit = cycle_limit
        self.period_ns = period_ns
        self.driver = StimulusDriver(self.ports, description["stim_ring"], description["stim_depth"], words,
                                     description["stim_payload_width"] + description["gap_width"])
        self.monitors = [CaptureMonitor(self.ports, name, spec["ring"], description["capture_depth"], spec["width"],
                                        sinks[name]) for name, spec in description["channels"].items()]
        self.checked = ([description["input"], description["output"]] if description["kind"] == "stream" else [])

    def load(self) -> None:
        for name, value in self.settings.items():
            self.ports[name].value = int(value)
        self.driver.load()

    def _cycles_since(self, start_ns: float) -> int:
        return math.ceil((get_sim_time("ns") - start_ns) / self.period_ns - 1e-9)

    async def run(self) -> dict:
        """From the release of reset until ``done`` (or the cycle limit); returns the harness's counters.

        One wait: ``attention`` (a ring half crossed, or ``done``); then the
        driver refills, and in the read-only phase the monitors drain.
        """
        start_ns = get_sim_time("ns")
        attention, done = self.ports["attention"], self.ports["done"]
        timeout, wakes = 0, 0
        while True:
            try:
                if self.cycle_limit:
                    left = self.cycle_limit * self.period_ns - (get_sim_time("ns") - start_ns)
                    await with_timeout(ValueChange(attention), max(left, self.period_ns), "ns")
                else:
                    await ValueChange(attention)
            except SimTimeoutError:
                timeout = 1
                await ReadOnly()
                break
            wakes += 1
            self.driver.refill()
            await ReadOnly()
            for monitor in self.monitors:
                monitor.drain()
            if int(done.value):
                break
        for monitor in self.monitors:
            monitor.drain()
        counters = {"cycle": self._cycles_since(start_ns), "timeout": timeout}
        counters.update({name: int(self.ports[name].value) for name in ("stim_starved", "stim_fetched")})
        if self.description["kind"] == "stream":
            counters["accepted"] = int(self.ports["accepted"].value)
            for stream in self.checked:
                violations = int(self.ports[f"{stream}_violations"].value)
                counters[f"{stream}_violations"] = violations
                counters[f"{stream}_first_violation"] = counters["cycle"] - 1 if violations else -1
        counters["wakes"] = wakes
        counters["python_us"] = int(1e6 * (self.driver.python_s + sum(m.python_s for m in self.monitors)))
        return counters
