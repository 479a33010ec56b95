"""The AXI4-Stream wrapper (:class:`pascal_hdl.board.axis.AxiStreamCore`) in the Amaranth simulator:
cycle by cycle against its model (:class:`pascal_hdl.model.axis.AxiStreamCoreModel`) under random
idle and back-pressure, its results against the integer golden model, and the malformed-sample rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pascal_hdl.board.axis import AxiStreamCore
from pascal_hdl.config import CoreConfig, HardwareError
from pascal_hdl.gateware.core import core_result_layout
from pascal_hdl.model.axis import (
    AxiStreamCoreModel,
    pack_result,
    result_data_width,
    result_fields,
    sample_beats,
    sample_data_width,
    stream_events,
    unpack_result,
)
from pascal_hdl.model.engine import sample_events
from pascal_hdl.testing import simulate
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.testing import random_mlp


def small_core(rng, in_flight: int = 1):
    """A random 12-9-4 network (L = 3) quantized by the golden model, lanes 4 and 4."""
    model = quantize(random_mlp(rng, [12, 9, 4], levels=[3]))
    return model, dataclasses.replace(CoreConfig.from_integer_network(model, lanes=[4, 4]), in_flight=in_flight)


def run_lockstep(config: CoreConfig, beats, seed: int, p_valid: float, p_ready: float, resets: int = 0,
                 max_cycles: int = 100_000):
    """Drive the wrapper and its model with ``beats``; compare ``s_axis.tready`` (while a beat is
    offered), ``m_axis.tvalid`` and, while valid, ``m_axis.tdata``/``tlast`` every cycle; the stream
    rule on ``m_axis`` (a result offered stays until taken). Returns the result words taken, in order."""
    dut, model = AxiStreamCore(config), AxiStreamCoreModel(config)
    rng = np.random.default_rng(seed)
    queue = list(beats)
    packets = sum(bool(b["tlast"]) for b in beats)
    taken_words = []

    async def testbench(ctx):
        held = None
        for cycle in range(max_cycles):
            if len(taken_words) == packets:
                return
            offer = bool(queue) and rng.random() < p_valid
            ready = bool(rng.random() < p_ready)
            beat = queue[0] if offer else {"tdata": 0, "tlast": False}
            ctx.set(dut.s_axis.tvalid, offer)
            ctx.set(dut.s_axis.tdata, beat["tdata"])
            ctx.set(dut.s_axis.tlast, beat["tlast"])
            ctx.set(dut.m_axis.tready, ready)
            if offer:
                assert ctx.get(dut.s_axis.tready) == model.s_ready(beat), f"cycle {cycle}: s_axis.tready"
            valid = bool(ctx.get(dut.m_axis.tvalid))
            assert valid == model.m_valid(), f"cycle {cycle}: m_axis.tvalid hardware {valid}"
            if valid:
                word = ctx.get(dut.m_axis.tdata)
                want = model.m_payload
                assert (word, ctx.get(dut.m_axis.tlast)) == (want["tdata"], 1), (
                    f"cycle {cycle}: m_axis.tdata {unpack_result(config, word)} model "
                    f"{unpack_result(config, want['tdata'])}")
                if held is not None:
                    assert word == held, f"cycle {cycle}: m_axis changed a result offered and not taken"
                held = None if ready else word
                if ready:
                    taken_words.append(word)
            else:
                assert held is None, f"cycle {cycle}: m_axis dropped tvalid before the result was taken"
            accepted, _ = model.step(offer, beat if offer else None, ready)
            await ctx.tick()
            if accepted:
                queue.pop(0)
        raise AssertionError(f"no end within {max_cycles} cycles (the design hangs)")

    simulate(dut, testbench)
    return taken_words


def test_result_fields_follow_the_core_result_layout():
    """The model's packing is the layout's bit for bit: every field at the offset and width the
    Amaranth layout gives it, and ``tdata`` whole bytes."""
    _, config = small_core(np.random.default_rng(3))
    layout = core_result_layout(config)
    offsets, offset = {}, 0
    for name, width, _ in result_fields(config):
        offsets[name] = (offset, width)
        offset += width
    assert offset == layout.size and result_data_width(config) == 8 * -(-layout.size // 8)
    for name, field in layout:
        if name == "logits":
            for k in range(config.readout.out_features):
                element = field.shape.elem_shape
                assert offsets[f"logit{k}"] == (field.offset + k * element.width, element.width)
        else:
            assert offsets[name] == (field.offset, field.width), name
    result = {"logits": [-3, 7, -(1 << (config.readout.logit_width - 1)), 0], "cls": 1, "cycles": 99, "rejected": True,
              "sample": 65535, "finished": (1 << 32) - 1}
    assert unpack_result(config, pack_result(config, result)) == result
    with pytest.raises(HardwareError, match="does not fit"):
        unpack_result(config, 1 << result_data_width(config))
    assert sample_data_width(config) == 8


@pytest.mark.parametrize("in_flight, p_valid, p_ready", [(1, 1.0, 1.0), (1, 0.5, 0.4), (2, 0.7, 0.5)])
def test_wrapper_matches_model_and_golden(in_flight, p_valid, p_ready):
    rng = np.random.default_rng(5)
    model, config = small_core(rng, in_flight)
    levels = rng.integers(0, config.input_levels + 1, (8, 12)) * (rng.random((8, 12)) < 0.5)
    levels[2] = 0                                   # all zero: only the last beat becomes an event
    levels[3] = config.input_levels
    levels[4, -1] = 0                               # the last feature zero, others not
    words = run_lockstep(config, sample_beats(config, levels), seed=7, p_valid=p_valid, p_ready=p_ready)
    results = [unpack_result(config, word) for word in words]
    golden = integer_ann(model, x_int=levels)
    assert [r["logits"] for r in results] == golden.integer_logits.tolist()
    assert [r["cls"] for r in results] == np.argmax(golden.integer_logits, axis=1).tolist()
    assert [r["sample"] for r in results] == list(range(len(levels)))
    assert not any(r["rejected"] for r in results)


def test_events_are_the_count_coded_events_plus_a_closing_zero():
    """The wrapper's events are :func:`sample_events` (the nonzero levels in order), with the sample's
    last feature sent as ``(N-1, 0, last)`` when its level is zero (and not the last nonzero one)."""
    rng = np.random.default_rng(8)
    _, config = small_core(rng)
    levels = rng.integers(0, config.input_levels + 1, (6, 12)) * (rng.random((6, 12)) < 0.5)
    levels[0] = 0
    levels[1, -1] = 2
    levels[2, -1] = 0
    for sample in levels:
        events = stream_events(config, sample_beats(config, sample))
        want = [dict(e, last=False) for e in sample_events(sample) if e["count"]]
        if sample[-1] == 0:
            want.append({"index": 11, "count": 0, "last": True})
        else:
            want[-1]["last"] = True
        assert events == want


def malformed_beats(config):
    """Four packets: a level above input_levels, tlast early, tlast missing (three extra beats before
    it), then a good sample; returns the beats and the good sample's levels."""
    features = config.input_features
    good = np.arange(features) % (config.input_levels + 1)
    beats = sample_beats(config, good)
    over = [dict(b) for b in beats]
    over[3]["tdata"] = config.input_levels + 1
    early = [dict(b) for b in beats[:5]]
    early[-1]["tlast"] = True
    late = [dict(b) for b in beats] + [{"tdata": 1, "tlast": False}, {"tdata": 2, "tlast": False},
                                       {"tdata": 0, "tlast": True}]
    late[features - 1]["tlast"] = False
    return over + early + late + beats, good


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.5, 0.5)])
def test_malformed_samples_are_rejected_and_never_hang(p_valid, p_ready):
    rng = np.random.default_rng(9)
    model, config = small_core(rng, in_flight=2)
    beats, good = malformed_beats(config)
    results = [unpack_result(config, w) for w in run_lockstep(config, beats, 4, p_valid, p_ready)]
    assert [r["rejected"] for r in results] == [True, True, True, False]
    golden = integer_ann(model, x_int=good[None])
    assert results[-1]["logits"] == golden.integer_logits[0].tolist()
    # The over-long packet's sample is its first input_features beats, its tail dropped.
    assert results[2]["logits"] == results[-1]["logits"]
    early = np.zeros_like(good)
    early[:5] = good[:5]
    assert results[1]["logits"] == integer_ann(model, x_int=early[None]).integer_logits[0].tolist()
    over = good.copy()
    over[3] = 0
    assert results[0]["logits"] == integer_ann(model, x_int=over[None]).integer_logits[0].tolist()


def test_wrapper_rejects_what_is_not_a_config():
    with pytest.raises(TypeError, match="AxiStreamCore: config must be a CoreConfig"):
        AxiStreamCore("digits-mlp")


def test_wrapper_and_host_link_refuse_an_analog_core():
    """Their beats and SAMPLE bytes carry levels 0..input_levels: a core taking signed pixels is refused in
    one line naming it, by the AXI4-Stream wrapper and by the UART host link."""
    from pascal_hdl.board.hostlink import HostLink
    from pascal_hdl.model.chain import core_config
    from pascal_ref.testing import random_network

    rng = np.random.default_rng(4)
    config = core_config(quantize(random_network(rng, "dense", input_levels=None), input_bound=1.0))
    assert config.is_analog
    with pytest.raises(HardwareError, match=r"AXI4-Stream wrapper: core '.*' takes signed analog pixels"):
        AxiStreamCore(config)
    with pytest.raises(HardwareError, match=r"host link: core '.*' takes signed analog pixels"):
        HostLink(config, clk_freq=12_000_000, baud=115_200, model_name="m", digest=b"\0" * 32)
