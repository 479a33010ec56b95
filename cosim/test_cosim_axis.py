"""Co-simulation of the AXI4-Stream wrapper (:class:`pascal_hdl.board.axis.AxiStreamCore`) with
cocotbext-axi's ``AxiStreamSource`` and ``AxiStreamSink``, random pauses on both sides
(:mod:`pascal_cosim.axis`).

* The bundled digits MLP on all 540 digits test images (Verilator; Icarus, about 2,500 cycles/s with a
  Python callback per cycle: the first :data:`ICARUS_IMAGES`, all 540 under ``--runslow``), the source
  paused in 30 % of the cycles and the sink in 50 %: one result per image, in order (``sample`` 0, 1,
  ...), logits and class equal to the integer golden model (``integer_ann``, as
  ``cosim/test_cosim_network.py``), none rejected.
* The bundled digits CNN with one and two samples in flight on :data:`CNN_IMAGES` images (Icarus: the
  first :data:`ICARUS_CNN_IMAGES`, all under ``--runslow``), source paused 50 %, sink 30 %.
* Malformed packets (a level above ``input_levels``, ``tdata`` all ones, ``tlast`` early, a one-beat
  packet, ``tlast`` late, a packet twice too long, a too-high level in a dropped tail), each followed by
  a good sample, with one and two in flight: each gives one result with ``rejected`` set and the logits
  of the sample the framing rules make of it (``pascal_hdl.model.axis``), and the good sample after it
  is right (the stream recovers).
* The handshakes of the first cycles of every run (all of the malformed runs) replayed through the
  wrapper's cycle model (``AxiStreamCoreModel``): ``s_axis.tready``, ``m_axis.tvalid``, every beat
  offered and every result word equal the model's in every cycle.
* A run that waits for a result that cannot come ends at its cycle limit with a message, not a hang.

Printed: images, mismatches, cycles per image measured (steady state, from the results' ``finished``)
beside the core's cycle model without pauses (``run_stream`` on the first images), latency, the
simulation speed and build/run times.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest
from jobboard import CosimJob

from pascal_cosim.axis import TRACE_FLAGS, check_results, cosim_axis, expected_results, replay_trace, trace_columns
from pascal_hdl.flow.generate import core_config_from_network
from pascal_hdl.model.axis import sample_data_width
from pascal_hdl.model.core import run_stream, stream_figures
from pascal_ref.golden.quantize import integer_ann
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load

pytestmark = pytest.mark.cosim

ALL_IMAGES = 540
ICARUS_IMAGES = 40
CNN_IMAGES = 40
ICARUS_CNN_IMAGES = 3
MLP_PAUSES = {"source_pause": 0.3, "sink_pause": 0.5}
CNN_PAUSES = {"source_pause": 0.5, "sink_pause": 0.3}
MALFORMED_PAUSES = {"source_pause": 0.4, "sink_pause": 0.4}
TRACE_CYCLES = {"digits-mlp": 30_000, "digits-cnn": 40_000}   # about 10 MLP images, 2 CNN images
LIMIT_CYCLES = 12_000                                         # two MLP images take about 5,500
MODEL_IMAGES = {"digits-mlp": 40, "digits-cnn": 6}             # run_stream: ~20 ms per MLP image, ~0.8 s per CNN image


@dataclass
class Case:
    config: object
    model: object
    levels: np.ndarray            # (540, input_features): the beats of each image, feature order


_lock = threading.Lock()
_cases: dict[tuple, Case] = {}
_streams: dict[tuple, dict] = {}


def case_of(name: str, in_flight: int) -> Case:
    with _lock:
        key = (name, in_flight)
        if key not in _cases:
            network = load(bundled_path(name))
            config, model = core_config_from_network(network, in_flight=in_flight)
            _, _, x_test, _ = load_digits_split()
            levels = model.encode_input(x_test)
            _cases[key] = Case(config, model, levels.reshape(len(levels), -1))
        return _cases[key]


def packets_of(levels) -> list[list[int]]:
    return [[int(level) for level in sample] for sample in levels]


def model_stream(case: Case, count: int) -> dict:
    """``stream_figures`` of the core's cycle model with no pauses (``run_stream``) on the first ``count`` images."""
    with _lock:
        key = (case.config.name, case.config.in_flight, count)
        if key not in _streams:
            _streams[key] = stream_figures(run_stream(case.config, case.levels[:count]))
        return _streams[key]


def malformed_stream(config, levels) -> tuple[list[list[int]], list[str]]:
    """Malformed packets, each followed by a good sample; returns the packets and a name per packet."""
    features, top = config.input_features, config.input_levels
    good = packets_of(levels)
    too_high = list(good[0])
    too_high[features // 2] = top + 1
    all_ones = list(good[1])
    all_ones[-1] = (1 << sample_data_width(config)) - 1
    bad = [
        ("level above input_levels", too_high),
        ("tdata all ones on the last feature", all_ones),
        ("tlast after 5 beats", good[2][:5]),
        ("one beat", good[3][:1]),
        ("tlast 3 beats late", good[4] + [1, 2, 0]),
        ("twice too long", good[5] + good[6] + [0]),
        ("too-high level in the dropped tail", good[7] + [top + 5]),
    ]
    packets, names = [], []
    for index, (name, packet) in enumerate(bad):
        packets += [packet, good[8 + index]]
        names += [name, f"good sample after '{name}'"]
    return packets, names


def _mlp_all(simulator, root, runslow):
    case = case_of("digits-mlp", 1)
    count = ALL_IMAGES if simulator == "verilator" or runslow else ICARUS_IMAGES
    packets = packets_of(case.levels[:count])
    return packets, cosim_axis(case.config, packets, simulator, f"axis-mlp-{count}-{simulator}", root, seed=21,
                               trace_cycles=TRACE_CYCLES["digits-mlp"], **MLP_PAUSES)


def _cnn(simulator, root, runslow, in_flight):
    case = case_of("digits-cnn", in_flight)
    count = CNN_IMAGES if simulator == "verilator" or runslow else ICARUS_CNN_IMAGES
    packets = packets_of(case.levels[:count])
    return packets, cosim_axis(case.config, packets, simulator, f"axis-cnn-inflight{in_flight}-{count}-{simulator}",
                               root, seed=22 + in_flight, trace_cycles=TRACE_CYCLES["digits-cnn"], **CNN_PAUSES)


def _malformed(simulator, root, in_flight):
    case = case_of("digits-mlp", in_flight)
    packets, _ = malformed_stream(case.config, case.levels)
    return packets, cosim_axis(case.config, packets, simulator, f"axis-malformed-inflight{in_flight}-{simulator}",
                               root, seed=31 + in_flight, trace_cycles=10**6, **MALFORMED_PAUSES)


def _limit(simulator, root):
    case = case_of("digits-mlp", 1)
    packets = packets_of(case.levels[:2])
    return packets, cosim_axis(case.config, packets, simulator, f"axis-limit-{simulator}", root, seed=41, results=3,
                               cycle_limit=LIMIT_CYCLES, **MLP_PAUSES)


def cosim_job(item, root) -> CosimJob | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    simulator = params.get("simulator")
    if simulator is None:
        return None
    runslow = item.config.getoption("--runslow")
    icarus = simulator == "icarus"
    name = item.originalname
    if name == "test_axis_mlp_all_images":
        return CosimJob(("axis", "mlp", simulator), 50 if icarus else 70, lambda: _mlp_all(simulator, root, runslow))
    if name == "test_axis_cnn":
        in_flight = params["in_flight"]
        return CosimJob(("axis", "cnn", in_flight, simulator), 35 if icarus else 80,
                        lambda: _cnn(simulator, root, runslow, in_flight))
    if name == "test_axis_malformed_packets":
        in_flight = params["in_flight"]
        return CosimJob(("axis", "malformed", in_flight, simulator), 20, lambda: _malformed(simulator, root, in_flight))
    if name == "test_axis_cycle_limit":
        return CosimJob(("axis", "limit", simulator), 5, lambda: _limit(simulator, root))
    return None


# -- checks


def replay_errors(case: Case, packets, run) -> tuple[list[str], int]:
    """The handshake trace replayed through the wrapper's cycle model (``replay_trace``)."""
    errors, covered = replay_trace(case.config, packets, run.words, run.trace)
    assert len(run.trace) > 0, "the testbench recorded no handshake trace"
    return errors, covered


def report(label: str, case: Case, name: str, run, errors: list[str], replayed: list[str], covered: int) -> None:
    results = run.results(case.config)
    measured = stream_figures(results)
    count = min(len(results), MODEL_IMAGES[name])
    ideal = model_stream(case, count)
    prefix = stream_figures(results[:count])
    print(f"\nAXI4-Stream cosim {label} {run.simulator}: {len(results)} images, {len(errors)} mismatches; "
          f"cycles/image measured {measured['cycles_per_image']:.1f} (latency mean {measured['latency_mean']:.1f}); "
          f"first {count}: measured {prefix['cycles_per_image']:.1f}, cycle model without pauses "
          f"{ideal['cycles_per_image']:.1f} (ratio {prefix['cycles_per_image'] / ideal['cycles_per_image']:.3f}); "
          f"cycle model replay: {len(run.trace)} cycles, {covered} results, {len(replayed)} differences; "
          f"{run.cycles:,} cycles in {run.wall_s:.1f} s = {run.cycles_per_s:,.0f} cycles/s "
          f"({len(results) / max(run.wall_s, 1e-9):.1f} images/s); build {run.build_s:.1f} s, run {run.run_s:.1f} s")


def test_axis_mlp_all_images(simulator, request, cosim_jobs, runslow):
    packets, run = cosim_jobs.result(request.node)
    case = case_of("digits-mlp", 1)
    count = ALL_IMAGES if simulator == "verilator" or runslow else ICARUS_IMAGES
    assert run.error is None, run.error
    want = expected_results(case.config, case.model, packets)
    assert not any(w["rejected"] for w in want)
    errors = check_results(case.config, want, run.words)
    replayed, covered = replay_errors(case, packets, run)
    report("digits-mlp", case, "digits-mlp", run, errors, replayed, covered)
    assert len(run.words) == len(packets) == count
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors)
    assert not replayed, "handshakes differ from the cycle model:\n" + "\n".join(replayed)
    assert covered >= 5
    # The checker sees a wrong result (the comparison above can fail).
    tampered = list(run.words)
    tampered[3] ^= 1
    assert check_results(case.config, want, tampered)[0].startswith("packet 3: logits")


@pytest.mark.parametrize("in_flight", [1, 2])
def test_axis_cnn(simulator, in_flight, request, cosim_jobs):
    packets, run = cosim_jobs.result(request.node)
    case = case_of("digits-cnn", in_flight)
    assert run.error is None, run.error
    errors = check_results(case.config, expected_results(case.config, case.model, packets), run.words)
    replayed, covered = replay_errors(case, packets, run)
    report(f"digits-cnn in_flight {in_flight}", case, "digits-cnn", run, errors, replayed, covered)
    assert len(run.words) == len(packets)
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors)
    assert not replayed, "handshakes differ from the cycle model:\n" + "\n".join(replayed)
    assert covered >= 1


@pytest.mark.parametrize("in_flight", [1, 2])
def test_axis_malformed_packets(simulator, in_flight, request, cosim_jobs):
    packets, run = cosim_jobs.result(request.node)
    case = case_of("digits-mlp", in_flight)
    config, model = case.config, case.model
    _, names = malformed_stream(config, case.levels)
    assert run.error is None, run.error
    results = run.results(config)
    for name, packet, result in zip(names, packets, results):
        print(f"{simulator} in_flight {in_flight}: {len(packet)} beats, {name}: rejected {result['rejected']}, "
              f"class {result['cls']}, sample {result['sample']}")
    want = expected_results(config, model, packets)
    assert [w["rejected"] for w in want] == [not name.startswith("good") for name in names]
    errors = check_results(config, want, run.words)
    assert not errors, "\n".join(errors)
    replayed, covered = replay_errors(case, packets, run)
    assert not replayed, "handshakes differ from the cycle model:\n" + "\n".join(replayed)
    assert covered == len(packets)
    # The replay sees a tready the model would not give (the comparison above can fail).
    offered = np.flatnonzero(trace_columns(config, run.trace)["s_valid"])
    tampered = run.trace.copy()
    tampered[offered[0]] ^= 1 << (sample_data_width(config) + TRACE_FLAGS.index("s_ready"))
    assert replay_trace(config, packets, run.words, tampered)[0][0].startswith(f"cycle {offered[0]}: s_axis.tready")

    # The framing rules by hand, beside the model's: what each malformed packet's sample is.
    def golden(levels):
        return integer_ann(model, x_int=np.asarray(levels).reshape((1,) + tuple(model.network.input_shape))
                           ).integer_logits[0].tolist()

    features, good = config.input_features, case.levels
    too_high = good[0].copy()
    too_high[features // 2] = 0
    all_ones = good[1].copy()
    all_ones[-1] = 0
    early = np.zeros(features, dtype=np.int64)
    early[:5] = good[2][:5]
    one = np.zeros(features, dtype=np.int64)
    one[0] = good[3][0]
    by_hand = [too_high, all_ones, early, one, good[4], good[5], good[7]]
    assert [r["logits"] for r in results[0::2]] == [golden(levels) for levels in by_hand]
    assert [r["logits"] for r in results[1::2]] == [golden(good[8 + k]) for k in range(len(by_hand))]
    assert [r["sample"] for r in results] == list(range(len(packets)))


def test_axis_cycle_limit(simulator, request, cosim_jobs):
    """Waiting for a third result after two packets ends at the cycle limit with the count, not a hang."""
    packets, run = cosim_jobs.result(request.node)
    assert run.error is not None and run.error.startswith("no end within"), run.error
    assert "2 of 3 results" in run.error
    assert len(run.words) == 2
