"""The host side of pascal_cosim without a simulator: payloads, scoreboard, stimulus words, sources, names."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth")

from pascal_cosim.bench import random_gaps, ring_words
from pascal_cosim.harness import READY_ALWAYS, ready_threshold
from pascal_cosim.payload import Field, PayloadLayout, hex_to_words, words_to_hex
from pascal_cosim.runner import Design, safe_name
from pascal_cosim.scoreboard import MESSAGE_LIMIT, ChannelBoard, Scoreboard
from pascal_cosim.sources import (
    MemoryImage,
    icarus_patch,
    memories_from_hex,
    split_modules,
)


def test_payload_layout_follows_the_design_and_round_trips():
    from pascal_hdl.gateware.engine import event_layout, result_layout

    events = PayloadLayout.from_amaranth(event_layout(64, 16))
    assert events.width == event_layout(64, 16).size
    assert [f.name for f in events.fields] == [name for name, _ in event_layout(64, 16)]
    word = events.pack({"index": 63, "count": 16, "last": 1})
    assert events.unpack(word) == {"index": 63, "count": 16, "last": 1}

    results = PayloadLayout.from_amaranth(result_layout(5, 12))
    logits = [-2048, 2047, 0, -1, 7]
    word = results.pack({"logits": logits, "cls": 1})
    assert results.unpack(word) == {"logits": logits, "cls": 1}
    columns = results.unpack_many([word, results.pack({"logits": [0] * 5, "cls": 4})])
    np.testing.assert_array_equal(columns["logits"], [logits, [0] * 5])
    np.testing.assert_array_equal(columns["cls"], [1, 4])
    assert PayloadLayout.from_json(results.to_json()) == results


def test_payload_pack_refuses_values_that_do_not_fit():
    layout = PayloadLayout((Field("a", 0, 4, signed=True), Field("b", 4, 3, count=2)), 10)
    assert layout.unpack(layout.pack({"a": -8, "b": [7, 0]})) == {"a": -8, "b": [7, 0]}
    with pytest.raises(ValueError, match="field a: 8 does not fit 4 signed bits"):
        layout.pack({"a": 8, "b": [0, 0]})
    with pytest.raises(ValueError, match="field b: 1 values for 2 elements"):
        layout.pack({"a": 0, "b": [1]})
    with pytest.raises(KeyError, match="no field 'c'"):
        layout["c"]


def test_hex_words_round_trip():
    words = [0, 1, (1 << 70) - 1, 0xABC]
    text = words_to_hex(words, 70)
    assert text.splitlines()[2] == "3" + "f" * 17
    assert hex_to_words(text) == words


def test_ring_words_and_gaps():
    assert ring_words([5, 6], [0, 3], 4, 2) == [5, 6 | 3 << 4]
    assert ring_words([5, 6], [9, 1], 4, 2) == [5 | 3 << 4, 6 | 1 << 4]      # gaps clipped to the field
    assert ring_words([5, 6], [1, 1], 4, 0) == [5, 6]
    rng = np.random.default_rng(0)
    assert not random_gaps(10, 0.0, rng).any()
    gaps = random_gaps(20000, 0.5, rng)
    assert gaps.min() == 0 and abs(gaps.mean() - 1.0) < 0.05                   # geometric, P(one more) = 0.5


def test_ready_threshold():
    assert ready_threshold(1.0) == READY_ALWAYS
    assert ready_threshold(0.25) == READY_ALWAYS // 4
    assert ready_threshold(1e-9) == 1
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ready probability"):
            ready_threshold(bad)


def event_board(expected) -> tuple[Scoreboard, ChannelBoard]:
    scoreboard = Scoreboard("image")
    board = ChannelBoard("monitor_act1", "events", "act1", {"counts": np.asarray(expected)}, len(expected), 4)
    scoreboard.add_channel(board)
    return scoreboard, board


def test_scoreboard_events_in_order():
    scoreboard, _ = event_board([[0, 2, 0, 1], [0, 0, 0, 0]])
    scoreboard.events("monitor_act1", [1, 3, 3], [2, 1, 0], [0, 1, 1])   # image 1: only the last neuron, count 0
    scoreboard.finish()
    assert scoreboard.errors == [] and scoreboard.mismatches_per_layer() == {"act1": 0}
    np.testing.assert_array_equal(scoreboard.captured()["monitor_act1.counts"], [[0, 2, 0, 1], [0, 0, 0, 0]])


def test_scoreboard_names_the_image_the_layer_and_the_neurons():
    scoreboard, _ = event_board([[0, 2, 0, 1], [1, 1, 1, 1]])
    scoreboard.events("monitor_act1", [1, 3], [3, 1], [0, 1])
    scoreboard.events("monitor_act1", [2, 1, 3], [1, 1, 1], [0, 0, 1])
    scoreboard.finish()
    assert scoreboard.errors == [
        "image 0 layer act1: neurons [1] counts [3] want [2]",
        "image 1 layer act1: output index 1 after 2",
        "image 1 layer act1: neurons [0] counts [0] want [1]",
    ]
    assert scoreboard.mismatches_per_layer() == {"act1": 2}


def test_scoreboard_counts_missing_and_extra_transactions():
    scoreboard, _ = event_board([[0, 0, 0, 1]] * 2)
    scoreboard.events("monitor_act1", [3, 2], [1, 0], [1, 1])   # a last flag on neuron 2, then nothing
    scoreboard.finish()
    assert "image 1 layer act1: last flag on neuron 2, the layer has 4" in scoreboard.errors
    scoreboard, _ = event_board([[0, 0, 0, 1]])
    scoreboard.events("monitor_act1", [3], [1], [1])
    scoreboard.finish()
    assert scoreboard.errors == []
    scoreboard, _ = event_board([[0, 0, 0, 1]] * 3)
    scoreboard.events("monitor_act1", [3, 1], [1, 1], [1, 0])
    scoreboard.finish()
    assert scoreboard.errors == ["layer act1: 1 images on channel monitor_act1, 3 sent",
                                 "layer act1: events after the last complete image on channel monitor_act1"]


def test_scoreboard_results_and_message_limit():
    scoreboard = Scoreboard("image")
    logits = np.array([[1, 5], [2, 2]])
    scoreboard.add_channel(ChannelBoard("o", "results", "fc2", {"logits": logits, "cls": np.array([1, 0])}, 2, 2))
    scoreboard.results("o", {"logits": np.array([[1, 5], [2, 2]]), "cls": np.array([1, 1]),
                             "cycles": np.array([10, 12])})
    assert scoreboard.errors == ["image 1 layer fc2: class 1 want 0"]
    np.testing.assert_array_equal(scoreboard.captured()["o.cycles"], [10, 12])

    scoreboard, _ = event_board(np.ones((MESSAGE_LIMIT + 5, 4), dtype=int))
    for _ in range(MESSAGE_LIMIT + 5):
        scoreboard.events("monitor_act1", [3], [0], [1])
    assert len(scoreboard.errors) == MESSAGE_LIMIT and scoreboard.error_count == MESSAGE_LIMIT + 5
    assert scoreboard.mismatches_per_layer() == {"act1": MESSAGE_LIMIT + 5}
    with pytest.raises(ValueError, match="kind must be"):
        ChannelBoard("x", "beats", "l", {}, 1)


VERILOG = """module top(clk);
  input clk;
endmodule
module \\top.layer0_fc1 (clk);
  input clk;
  reg [7:0] weights [2:0];
  initial begin
    weights[0] = 8'h01;
    weights[1] = 8'd2;
    weights[2] = 8'h03;
  end
  reg \\$auto$verilog_backend.cpp:2352:dump_module$1  = 0;
endmodule
"""


def test_memories_from_hex_loads_the_images_and_names_differences():
    assert set(split_modules(VERILOG)) == {"top", "top.layer0_fc1"}
    image = MemoryImage("top.layer0_fc1", "weights", "fc1.weights.hex", "fc1")
    text, differences = memories_from_hex(VERILOG, [image], {"fc1.weights.hex": "01\n02\n03\n"})
    assert differences == []
    assert 'initial $readmemh("fc1.weights.hex", weights);' in text and "8'h03" not in text
    _, differences = memories_from_hex(VERILOG, [image], {"fc1.weights.hex": "01\n07\n03\n"})
    assert differences == [("layer 'fc1': fc1.weights.hex differs from the Verilog's initial weights at 1 word(s), "
                            "first [1] (the simulation used the .hex)")]
    with pytest.raises(ValueError, match="layer 'fc1': fc1.weights.hex has 2 words, memory weights"):
        memories_from_hex(VERILOG, [image], {"fc1.weights.hex": "01\n02\n"})
    with pytest.raises(ValueError, match="no module 'top.layer9'"):
        memories_from_hex(VERILOG, [MemoryImage("top.layer9", "weights", "x.hex", "fc9")], {"x.hex": ""})


def test_icarus_patch_toggles_the_time_zero_trigger():
    patched = icarus_patch(VERILOG)
    assert "initial #1 \\$auto$verilog_backend.cpp:2352:dump_module$1 = 1;" in patched
    assert patched.replace(patched.splitlines()[-2] + "\n", "", 1) == VERILOG


def test_design_digest_and_names():
    design = Design("d", {"a.v": "module a; endmodule\n"})
    same = Design("d", {"a.v": "module a; endmodule\n"}, runtime_files={"w.hex": b"00\n"})
    assert design.digest("icarus") == same.digest("icarus")            # memory images are not part of a build
    assert design.digest("icarus") != design.digest("verilator")
    assert design.digest("verilator") != Design("d", {"a.v": "module a;\nendmodule\n"}).digest("verilator")
    assert 'public_flat_rw -module "*" -var "ring"' in design.verilator_control()
    assert safe_name("test_x[icarus-L=1]") == "test_x-icarus-L_1"
    assert len(safe_name("x" * 200)) == 80 and safe_name("x" * 200) != safe_name("x" * 199)
    assert safe_name("///") == "run"
