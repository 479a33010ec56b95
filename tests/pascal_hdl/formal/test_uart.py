"""Proofs of the UART receiver and transmitter (:mod:`pascal_hdl.board.uart`, issue 15), their
cover runs, and the mutants each proof must refute; see :mod:`pascal_hdl.formal.uart_proofs`."""
from __future__ import annotations

import pytest

from pascal_hdl.formal.mutants import UART_MUTATIONS, load_mutant, proof_cases
from pascal_hdl.formal.uart_proofs import (
    PROOFS,
    UART_MUTANT_PROOFS,
    UART_PROOFS,
    prove_uart,
    uart_proofs,
)

pytestmark = pytest.mark.formal


@pytest.mark.parametrize("proof", UART_PROOFS, ids=lambda p: p.name)
def test_k_induction(proof, tmp_path, proved):
    """Tx: ready exactly while no frame is on the line, idle line 1, start 0 / data LSB first / stop 1,
    ``divisor`` cycles each. Rx: every report comes from a falling edge, start 0, data and stop sampled
    at mid-bit, one per frame, and every frame after a quiet line is reported. Loopback: every byte
    delivered once, unchanged, in order, at the documented latency, no framing error. Unbounded:
    k-induction, ``rst`` free in every cycle."""
    proved(prove_uart(proof, tmp_path))


@pytest.mark.parametrize("proof", UART_PROOFS, ids=lambda p: p.name)
def test_bound_reaches_the_interesting_cases(proof, tmp_path, proved):
    """Every cover statement is reached within the cover bound: a whole 0xA5 frame, a byte taken in the
    first cycle Tx is ready again, a frame after a reset mid-frame (Tx); 0xA5 delivered, a framing
    error, a byte after a framing error, a byte after a glitch, a byte after a reset mid-frame (Rx);
    two different bytes back to back both delivered, two bytes in flight at once (divisor 4), a byte
    after a reset that hit one in flight (loopback)."""
    result = prove_uart(proof, tmp_path, mode="cover")
    proved(result)
    assert len(result.cover_steps) == proof.covers, result.log
    assert max(result.cover_steps) < proof.cover_depth


@pytest.mark.slow
@pytest.mark.parametrize("proof", uart_proofs(5), ids=lambda p: f"{p.name}_divisor5")
def test_odd_divisor(proof, tmp_path, proved):
    """The same proofs and covers at 5 cycles per bit (an odd divisor: mid-bit is ``divisor // 2``); about
    a minute for the three."""
    proved(prove_uart(proof, tmp_path))
    result = prove_uart(proof, tmp_path, mode="cover")
    proved(result)
    assert len(result.cover_steps) == proof.covers and max(result.cover_steps) < proof.cover_depth, result.log


def test_every_uart_mutant_has_a_proof():
    assert len(proof_cases(UART_MUTATIONS, UART_MUTANT_PROOFS, PROOFS)) >= len(UART_MUTATIONS)


MUTANT_CASES = [pytest.param(mutation, proof, messages, id=f"{mutation.name}-{proof}")
                for mutation, proof, messages in proof_cases(UART_MUTATIONS, UART_MUTANT_PROOFS, PROOFS)]


@pytest.mark.parametrize("mutation, proof, messages", MUTANT_CASES)
def test_mutant_has_counterexample(mutation, proof, messages, tmp_path, refuted):
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_uart(proof, tmp_path, module=module, name=f"mutant_{mutation.name}")
    refuted(result, mutation, messages)


def test_loopback_alone_misses_the_stop_bit_check(tmp_path):
    """Why Rx has a proof of its own on a free line: Tx never sends a 0 stop bit, so the loopback proof
    holds on a receiver that delivers such a frame as a byte (the Rx proof refutes it, above)."""
    mutation = next(m for m in UART_MUTATIONS if m.name == "uart_rx_accepts_zero_stop")
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_uart("uart_loopback", tmp_path, module=module, name="loopback_uart_rx_accepts_zero_stop")
    assert result.passed, f"{result.summary()}\n{result.failed}"
