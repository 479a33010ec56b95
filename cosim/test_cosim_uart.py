"""End to end without a board: the host link's UART top co-simulated with the driver's protocol code.

The design is :class:`pascal_hdl.board.hostlink.HostLink` for the bundled digits MLP (quantized as
``pascal-ref hdl`` and ``pascal-ref board run`` do it), 4 clock cycles per bit
(:data:`pascal_cosim.uart.DIVISOR`); the host side is cocotbext-uart's UartSource and UartSink with
:mod:`pascal_hdl.board.protocol` (``encode_frame``, ``FrameReader``). Every reply is compared with
what :class:`~pascal_hdl.board.protocol.LinkModel` predicts (results: the integer golden model),
every result's ``cycles`` with the cycle model (:func:`pascal_hdl.model.core.expected_cycles`).

* The stream: IDENTIFY (checked as the driver checks it), STATUS, the digits test images with up to
  the queue depth unanswered, STATUS. All 540 on Verilator; 40 on Icarus (540 with ``--runslow``).
* The protocol session (one simulation per simulator): every error code the UART path produces,
  each followed by a good sample and a STATUS, a reset between two bytes of a frame, a reset in the
  middle of a byte, and a burst of samples faster than the core (QUEUE_FULL).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace

import numpy as np
import pytest
from jobboard import CosimJob

from pascal_cosim.uart import (
    DIVISOR,
    Script,
    judge,
    judge_after_garbage,
    judge_queue_full,
    link_figures,
    model_cycles,
    run_errors,
    run_script,
    uart_link,
)
from pascal_hdl.board import protocol
from pascal_hdl.board.driver import check_identity
from pascal_hdl.board.protocol import ErrorCode, ErrorReply, FrameType, encode_frame

pytestmark = pytest.mark.cosim

MODEL = "digits-mlp"
ICARUS_IMAGES = 40
ALL_IMAGES = 540
BURST = 12                  # heavy samples back to back: the core takes ~8,200 cycles each, the line 2,840
CORE_GAP_CYCLES = 1         # between a result and the next (the core never waits when a sample is queued)
RESET_AT_BITS = 35 * 10 + 4.5   # the mid-byte reset: in data bit 3 of byte 35 of a SAMPLE frame
PAPER_CLOCK = 12e6          # the figures: a 12 MHz core clock (iCEBreaker)
MALFORMED = ("bad_sync", "bad_second_sync", "unknown_type", "reply_type_sent", "bad_length", "short_sample",
             "too_many_features", "huge_length", "bad_crc", "bad_crc_sample", "level_too_high", "truncated",
             "framing", "framing_mid_frame")


@dataclass
class DigitsLink:
    ulink: object
    config: object
    model: object
    levels: np.ndarray        # (540, 64) the digits test images, count coded
    golden: dict              # bytes of a sample's levels -> integer logits

    def classify(self, levels):
        levels = np.asarray(levels, dtype=np.int64)
        key = levels.astype(np.uint8).tobytes()
        if key not in self.golden:
            from pascal_ref.golden.quantize import integer_ann

            self.golden[key] = np.asarray(integer_ann(self.model, x_int=levels[None]).integer_logits[0])
        logits = self.golden[key]
        return logits, int(np.argmax(logits))


_lock = threading.Lock()
_cases: dict = {}


def digits_link() -> DigitsLink:
    """The digits MLP behind the UART top and its 540 test images (Verilog converted once a session)."""
    with _lock:
        if "digits" not in _cases:
            from pascal_hdl.flow.generate import core_config_from_network
            from pascal_ref.golden.quantize import integer_ann
            from pascal_ref.io.bundled import bundled_path
            from pascal_ref.io.data import load_digits_split
            from pascal_ref.io.fileformat import load

            network = load(bundled_path(MODEL))
            config, model = core_config_from_network(network)
            _, _, x_test, _ = load_digits_split()
            levels = np.asarray(model.encode_input(x_test)).reshape(len(x_test), -1)
            shaped = levels.reshape((len(levels),) + tuple(network.input_shape))
            logits = integer_ann(model, x_int=shaped).integer_logits
            golden = {sample.astype(np.uint8).tobytes(): np.asarray(row) for sample, row in zip(levels, logits)}
            _cases["digits"] = DigitsLink(uart_link(config, model_name=MODEL), config, model, levels, golden)
        return _cases["digits"]


def sample_frame(levels) -> bytes:
    return encode_frame(FrameType.SAMPLE, bytes(int(v) for v in levels))


# -- the scripts


def stream_script(case: DigitsLink, count: int) -> Script:
    ulink = case.ulink
    script = Script(ulink, case.classify)
    script.segment("identify")
    script.request(FrameType.IDENTIFY)
    script.request(FrameType.STATUS)
    script.segment("stream")
    for levels in case.levels[:count]:
        script.sample(levels, window=ulink.link.queue_depth)
    script.segment("status")
    script.request(FrameType.STATUS)
    script.tail(tail_cycles(ulink))
    return script


def tail_cycles(ulink) -> int:
    """After the last step: four RESULT frames' time on the line, for any reply that should not come."""
    return 4 * (protocol.FRAME_OVERHEAD + ulink.identity.result_bytes) * ulink.byte_cycles


def malformed_cases(case: DigitsLink) -> dict:
    """name: (the bytes of the malformed frame, and the ERROR (code, detail) it must get). The
    ``framing`` cases send their bytes (None: none), then a byte with a broken stop bit."""
    features, top = case.config.input_features, case.config.input_levels
    good = sample_frame(case.levels[0])
    corrupted = bytearray(good)
    corrupted[5 + 10] ^= 0x01                     # a level changed, the CRC kept
    high = case.levels[1].copy()
    high[9], high[20] = top + 1, 255
    status = encode_frame(FrameType.STATUS)
    cases = {
        "bad_sync": (b"\x17" + encode_frame(FrameType.IDENTIFY), (ErrorCode.BAD_SYNC, 0x17)),
        "bad_second_sync": (b"\xa5\x17" + encode_frame(FrameType.IDENTIFY)[2:], (ErrorCode.BAD_SYNC, 0x17)),
        "unknown_type": (encode_frame(0x44), (ErrorCode.UNKNOWN_TYPE, 0x44)),
        "reply_type_sent": (encode_frame(FrameType.RESULT), (ErrorCode.UNKNOWN_TYPE, FrameType.RESULT)),
        "bad_length": (encode_frame(FrameType.IDENTIFY, b"\x00\x01"), (ErrorCode.BAD_LENGTH, 2)),
        "short_sample": (encode_frame(FrameType.SAMPLE, bytes(features - 1)), (ErrorCode.BAD_LENGTH, features - 1)),
        "too_many_features": (encode_frame(FrameType.SAMPLE, bytes(features + 1)),
                              (ErrorCode.TOO_MANY_FEATURES, features + 1)),
        "huge_length": (b"\xa5\x5a\x02\xff\xff", (ErrorCode.TOO_MANY_FEATURES, 0xFFFF)),
        "bad_crc": (status[:-1] + bytes([status[-1] ^ 0x40]),
                    (ErrorCode.BAD_CRC, int.from_bytes(status[-2:], "big") ^ 0x40)),
        "bad_crc_sample": (bytes(corrupted), (ErrorCode.BAD_CRC, int.from_bytes(good[-2:], "big"))),
        "level_too_high": (sample_frame(high), (ErrorCode.LEVEL_TOO_HIGH, 9)),
        "truncated": (good[:30], (ErrorCode.TRUNCATED, 30)),
        "framing": (None, (ErrorCode.FRAMING, 0)),
        "framing_mid_frame": (good[:20], (ErrorCode.FRAMING, 0)),
    }
    assert tuple(cases) == MALFORMED
    return cases


def heavy_samples(case: DigitsLink, count: int, seed: int = 21) -> np.ndarray:
    """Every level at the top but three lowered at random: the core's slowest samples, distinct logits."""
    rng = np.random.default_rng(seed)
    top = case.config.input_levels
    levels = np.full((count, case.config.input_features), top, dtype=np.int64)
    for row in levels:
        row[rng.choice(len(row), 3, replace=False)] = rng.integers(0, top, 3)
    return levels


def protocol_script(case: DigitsLink) -> Script:
    """Every malformed-frame case, the resets and the queue-full burst, in one session."""
    ulink = case.ulink
    script = Script(ulink, case.classify)
    good = iter(case.levels[2:])
    for name, (data, _) in malformed_cases(case).items():
        script.segment(name)
        if name.startswith("framing"):
            if data:
                script.send(data)
            script.broken_byte(0x55)
        else:
            script.send(data)
        script.idle()
        script.sample(next(good))
        script.request(FrameType.STATUS)
    # reset between byte 35 and 36 of a SAMPLE frame: the rest is a BAD_SYNC, then the link works from 0
    script.segment("reset_mid_frame")
    frame = sample_frame(next(good))
    script.send(frame[:35])
    script.reset()
    script.send(frame[35:])
    script.idle()
    script.sample(next(good))
    script.sample(next(good))
    script.request(FrameType.STATUS)
    # reset in the middle of a byte: the rest of the frame is garbage to the receiver (ERRORs only)
    script.segment("reset_mid_byte", predicted=False)
    script.sample(next(good), replies=0)
    script.reset(after_bits=RESET_AT_BITS)
    script.quiet()
    script.sample(next(good), replies=1)
    script.sample(next(good), replies=1)
    script.request(FrameType.STATUS, replies=1)
    # samples back to back, faster than the core: some are refused with QUEUE_FULL
    script.segment("queue_full", predicted=False)
    script.reset()
    script.burst(heavy_samples(case, BURST), replies=BURST)
    script.drain()
    script.request(FrameType.STATUS, replies=1)
    script.sample(next(good), replies=1)
    script.request(FrameType.STATUS, replies=1)
    script.tail(tail_cycles(ulink))
    return script


# -- jobs (see conftest.JobBoard)


def stream_images(simulator: str, slow: bool) -> int:
    return ALL_IMAGES if simulator == "verilator" or slow else ICARUS_IMAGES


@dataclass
class Outcome:
    script: Script
    run: object               # pascal_cosim.uart.UartRun
    count: int = 0            # images streamed


def _stream(simulator, root, count):
    case = digits_link()
    script = stream_script(case, count)
    return Outcome(script, run_script(case.ulink, script, simulator, f"uart-stream-{count}-{simulator}", root), count)


def _protocol(simulator, root):
    case = digits_link()
    script = protocol_script(case)
    return Outcome(script, run_script(case.ulink, script, simulator, f"uart-protocol-{simulator}", root))


_STREAM_TESTS = {"test_uart_stream": False, "test_uart_stream_all_images": True, "test_uart_identify_and_status": False}


def cosim_job(item, root) -> CosimJob | None:
    name = item.originalname
    if not name.startswith("test_uart"):
        return None
    simulator = item.callspec.params["simulator"]
    if name in _STREAM_TESTS:
        count = stream_images(simulator, _STREAM_TESTS[name])
        cost = count * (1.5 if simulator == "icarus" else 0.05) + 10    # seconds, on a busy 2-core machine
        return CosimJob(("uart", "stream", simulator, count), cost, lambda: _stream(simulator, root, count))
    cost = 90 if simulator == "icarus" else 20
    return CosimJob(("uart", "protocol", simulator), cost, lambda: _protocol(simulator, root))


# -- tests


def check_stream(outcome: Outcome, count: int, simulator: str):
    script, run = outcome.script, outcome.run
    assert outcome.count == count
    case = digits_link()
    errors = run_errors(run)
    mismatches = 0
    for segment in script.segments:
        more, bad = judge(run, script, segment)
        errors += more
        mismatches += bad
    frames, _ = run.frames_of(script.segments[1])
    results = [protocol.Result.decode(f.payload, case.config.classes, case.ulink.identity.logit_bytes)
               for f in frames if f.type == FrameType.RESULT]
    cycles = np.array([r.cycles for r in results])
    want = model_cycles(case.config, case.levels[:count])
    figures = link_figures(case.ulink.identity, float(want.mean()) + CORE_GAP_CYCLES, clk_freq=PAPER_CLOCK)
    rates = "; ".join(f"{baud:,} baud: {rate['images_per_s']:,.0f} images/s (link {rate['link_images_per_s']:,.0f}, "
                      f"core {rate['core_images_per_s']:,.0f}: the {rate['limited_by']} limits it)"
                      for baud, rate in figures["rates"].items())
    sim_interval = (results[-1].finished - results[0].finished) / max(1, len(results) - 1) if results else 0
    print(f"\nuart cosim {simulator}: {len(results)} images, {mismatches} mismatches (logits, class, cycles), "
          f"{len(errors)} errors; {DIVISOR} cycles per bit; core latency {cycles.mean() if len(cycles) else 0:.1f} "
          f"cycles/image (model {want.mean():.1f}); one image per {sim_interval:.0f} cycles in simulation (the line: "
          f"{figures['bytes_to_board'] * 10 * DIVISOR}); {run.sim_cycles:,} cycles in {run.wall_s:.1f} s "
          f"({run.cycles_per_s:,.0f} cycles/s), build {run.build_s:.1f} s, run {run.run_s:.1f} s\n"
          f"  {figures['bytes_to_board']} bytes per image to the board, {figures['bytes_from_board']} back; at "
          f"{PAPER_CLOCK / 1e6:g} MHz ({figures['core_cycles_per_image']:.0f} core cycles per image): {rates}")
    summary = {"simulator": simulator, "images": len(results), "mismatches": mismatches, "errors": len(errors),
               "cycles_per_bit": DIVISOR, "mean_core_latency": float(cycles.mean()) if len(cycles) else None,
               "simulated_cycles": run.sim_cycles, "sim_wall_s": run.wall_s, "sim_cpu_s": run.cpu_s,
               "build_s": run.build_s, "run_s": run.run_s, **figures}
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    assert len(results) == count
    assert not errors, f"{len(errors)} errors:\n" + "\n".join(errors[:10])
    assert run.error_at_end == 0
    assert mismatches == 0
    np.testing.assert_array_equal(cycles, want)
    assert run.bytes_sent == count * figures["bytes_to_board"] + 3 * protocol.FRAME_OVERHEAD   # + IDENTIFY, 2 STATUS
    return figures


def test_uart_stream(simulator, request, cosim_jobs):
    """IDENTIFY, STATUS, the digits images (queue depth in flight), STATUS: every reply as predicted."""
    count = stream_images(simulator, False)
    check_stream(cosim_jobs.result(request.node), count, simulator)


@pytest.mark.slow
def test_uart_stream_all_images(simulator, request, cosim_jobs):
    """All 540 digits images through the UART (on Verilator the same run as test_uart_stream)."""
    check_stream(cosim_jobs.result(request.node), ALL_IMAGES, simulator)


def test_uart_identify_and_status(simulator, request, cosim_jobs):
    """The stream's IDENTIFY and STATUS replies: name, digest, versions, shape as the driver checks them."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    case = digits_link()
    identify = script.segments[0]
    errors, _ = judge(run, script, identify)
    frames, _ = run.frames_of(identify)
    assert not errors, errors
    identity = protocol.Identity.decode(frames[0].payload)
    digest = protocol.weight_digest(case.config)
    print(f"\nIDENTITY ({simulator}): {identity}")
    assert identity.name == MODEL and identity.digest == digest
    assert (identity.protocol_version, identity.core_version) == (protocol.PROTOCOL_VERSION, protocol.CORE_VERSION)
    assert check_identity(identity, case.config, digest, MODEL, "cosim") is None
    assert check_identity(identity, case.config, bytes(32), MODEL, "cosim").startswith("board on cosim runs")
    assert protocol.Status.decode(frames[1].payload) == protocol.Status(0, 0, 0, 0, 0)
    final, _ = run.frames_of(script.segments[2])
    assert protocol.Status.decode(final[0].payload) == protocol.Status(outcome.count, outcome.count, 0, 0, 0)


@pytest.mark.parametrize("case_name", MALFORMED)
def test_uart_malformed_frame(case_name, simulator, request, cosim_jobs):
    """A malformed frame: its exact ERROR (as LinkModel predicts and as the table says), then a good
    sample gives the golden result and STATUS counts the error."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    case = digits_link()
    segment = next(s for s in script.segments if s.name == case_name)
    errors = run_errors(run)
    more, _ = judge(run, script, segment)
    errors += more
    frames, _ = run.frames_of(segment)
    _, (code, detail) = malformed_cases(case)[case_name]
    print(f"\n{case_name} ({simulator}): " + ", ".join(
        ErrorReply.decode(f.payload).describe() if f.type == FrameType.ERROR else FrameType(f.type).name
        for f in frames))
    assert not errors, "\n".join(errors)
    assert frames and frames[0].type == FrameType.ERROR
    assert ErrorReply.decode(frames[0].payload) == ErrorReply(code, detail)
    assert [f.type for f in frames[1:]] == [FrameType.RESULT, FrameType.STATUS_REPLY]


def test_uart_every_error_code_is_exercised(simulator, request, cosim_jobs):
    """The session covers every error code (QUEUE_FULL in the burst)."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    seen = {ErrorReply.decode(f.payload).code for f in run.frames if f.type == FrameType.ERROR}
    assert seen == set(ErrorCode), set(ErrorCode) - seen
    assert not run_errors(run) and run.error_at_end == 0    # the last frame was well formed: the LED is off


def test_uart_judge_catches_wrong_replies(simulator, request, cosim_jobs):
    """The comparison is not vacuous: a logit, a cycle count, an error detail changed or a reply lost
    in the received frames are each reported."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    case = digits_link()
    segment = next(s for s in script.segments if s.name == "level_too_high")
    first = run.steps[segment.first]["received"]
    frames = list(run.frames)
    result = protocol.Result.decode(frames[first + 1].payload, case.config.classes, case.ulink.identity.logit_bytes)
    logit_bytes = case.ulink.identity.logit_bytes
    wrong = {
        "logit": replace(result, logits=(result.logits[0] + 1,) + result.logits[1:]).encode(logit_bytes),
        "cycles": replace(result, cycles=result.cycles + 1).encode(logit_bytes),
    }
    assert not judge(run, script, segment)[0]
    for name, payload in wrong.items():
        changed = frames[:first + 1] + [protocol.Frame(FrameType.RESULT, payload)] + frames[first + 2:]
        errors, bad = judge(replace(run, frames=changed), script, segment)
        assert bad == 1 and errors, name
    detail = frames[:first] + [protocol.Frame(FrameType.ERROR, ErrorReply(ErrorCode.LEVEL_TOO_HIGH, 10).encode())]
    assert judge(replace(run, frames=detail + frames[first + 1:]), script, segment)[0]
    lost = replace(run, frames=frames[:first + 1] + frames[first + 2:],
                   steps=[dict(step, received=step["received"] - (step["received"] > first + 1))
                          for step in run.steps])
    assert any("2 replies, expected 3" in message for message in judge(lost, script, segment)[0])


def test_uart_reset_mid_frame(simulator, request, cosim_jobs):
    """Reset between two bytes of a SAMPLE: the rest of the frame is one BAD_SYNC, then the samples are
    exact and numbered from 0."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    segment = next(s for s in script.segments if s.name == "reset_mid_frame")
    errors, _ = judge(run, script, segment)
    frames, _ = run.frames_of(segment)
    assert not errors, "\n".join(errors)
    assert [f.type for f in frames] == [FrameType.ERROR, FrameType.RESULT, FrameType.RESULT, FrameType.STATUS_REPLY]
    assert protocol.Status.decode(frames[-1].payload) == protocol.Status(2, 2, 0, 1, 0)


def test_uart_reset_mid_byte(simulator, request, cosim_jobs):
    """Reset in the middle of a byte of a SAMPLE: whatever the receiver makes of the rest is answered
    with ERRORs only; after the line was idle, the samples are exact and numbered from 0."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    segment = next(s for s in script.segments if s.name == "reset_mid_byte")
    verdict = judge_after_garbage(run, script, segment, garbage_steps=3)
    print(f"\nreset mid-byte ({simulator}): replies to the cut frame {verdict['garbage']}, then {verdict['after']}")
    assert not run_errors(run) and not verdict["errors"], "\n".join(run_errors(run) + verdict["errors"])
    assert verdict["after"] == 3


def test_uart_queue_full(simulator, request, cosim_jobs):
    """Samples back to back, slower to compute than to send: each gets a RESULT (exact, in order) or
    QUEUE_FULL; the accepted ones alone give the model's results; STATUS counts the refusals."""
    outcome = cosim_jobs.result(request.node)
    script, run = outcome.script, outcome.run
    case = digits_link()
    segment = next(s for s in script.segments if s.name == "queue_full")
    verdict = judge_queue_full(run, script, segment, burst_step=1)
    results = verdict["results"]
    gaps = [b.finished - a.finished - b.cycles for a, b in zip(results, results[1:])]
    print(f"\nqueue full ({simulator}): {verdict['sent']} samples, refused {verdict['rejected']}; core latency "
          f"{np.mean([r.cycles for r in results]):.0f} cycles, between results {min(gaps)}..{max(gaps)} cycles more")
    assert not run_errors(run) and not verdict["errors"], "\n".join(run_errors(run) + verdict["errors"])
    assert verdict["rejected"] and len(results) >= case.ulink.link.queue_depth
    assert set(gaps) == {CORE_GAP_CYCLES}
