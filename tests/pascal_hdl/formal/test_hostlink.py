"""Proofs of the host link's frame parser (:class:`pascal_hdl.board.hostlink.FrameParser`, issue 15), their
cover runs, and the mutants each proof must refute; see :mod:`pascal_hdl.formal.hostlink_proofs`."""
from __future__ import annotations

import binascii

import numpy as np
import pytest

from pascal_hdl.formal.hostlink_proofs import (
    CRC_COLUMNS,
    CRC_POLY,
    HOSTLINK_MUTANT_PROOFS,
    HOSTLINK_PROOFS,
    PROOFS,
    crc16_by_columns,
    poly_mod,
    prove_parser,
)
from pascal_hdl.formal.mutants import HOSTLINK_MUTATIONS, MutationError, load_mutant, proof_cases

pytestmark = pytest.mark.formal


def test_harness_crc_is_crc16_ccitt_false():
    """The harness's CRC (a GF(2)-linear map whose columns come from polynomial division) is
    CRC-16/CCITT-FALSE: equal to ``binascii.crc_hqx(data, 0xFFFF)`` on the check string and random data."""
    assert crc16_by_columns(b"123456789") == 0x29B1 == binascii.crc_hqx(b"123456789", 0xFFFF)
    rng = np.random.default_rng(15)
    for size in range(40):
        data = rng.integers(0, 256, size).astype(np.uint8).tobytes()
        assert crc16_by_columns(data) == binascii.crc_hqx(data, 0xFFFF), data
    assert CRC_COLUMNS[:8] == tuple(1 << (i + 8) for i in range(8))      # no reduction below x^16
    assert CRC_COLUMNS[8] == CRC_POLY ^ (1 << 16) == 0x1021              # x^16 = x^12 + x^5 + 1 mod P
    assert poly_mod(CRC_POLY) == 0 and poly_mod(0x1021) == 0x1021


@pytest.mark.parametrize("proof", HOSTLINK_PROOFS, ids=lambda p: p.name)
def test_k_induction(proof, tmp_path, proved):
    """Every cycle, the parser's control request (kind, error code, detail), its commit and its queue
    writes are what the protocol asks for; a commit only for a good SAMPLE with a free slot, whose slot
    then holds its payload bytes; nothing written while the queue is full or into a queued sample's
    slot; HUNT ``timeout`` cycles after the last byte; the state a valid encoding, the one the frame
    position calls for. Unbounded: k-induction, bytes, framing errors, releases and ``rst`` free."""
    proved(prove_parser(proof, tmp_path))


@pytest.mark.parametrize("proof", HOSTLINK_PROOFS, ids=lambda p: p.name)
def test_bound_reaches_the_interesting_cases(proof, tmp_path, proved):
    """Every cover statement is reached within the bound: a committed sample, one carrying the maximal
    level, an IDENTITY and a STATUS request, each of the nine error codes (QUEUE_FULL after the queue
    filled), and a commit after a reset that interrupted a frame."""
    result = prove_parser(proof, tmp_path, mode="cover")
    proved(result)
    steps = result.covers
    assert len(steps) == proof.covers, result.log
    assert max(steps.values()) < proof.bound


def test_every_hostlink_mutant_has_a_proof():
    assert len(proof_cases(HOSTLINK_MUTATIONS, HOSTLINK_MUTANT_PROOFS, PROOFS)) >= len(HOSTLINK_MUTATIONS)
    with pytest.raises(MutationError, match="without a proof"):               # the check can fail
        proof_cases(HOSTLINK_MUTATIONS, dict(list(HOSTLINK_MUTANT_PROOFS.items())[1:]), PROOFS)
    with pytest.raises(MutationError, match="unknown proofs"):
        proof_cases(HOSTLINK_MUTATIONS, {**HOSTLINK_MUTANT_PROOFS, "parser_crc_unchecked": (("nope", ()),)}, PROOFS)


MUTANT_CASES = [pytest.param(mutation, proof, messages, id=f"{mutation.name}-{proof}")
                for mutation, proof, messages in proof_cases(HOSTLINK_MUTATIONS, HOSTLINK_MUTANT_PROOFS, PROOFS)]


@pytest.mark.parametrize("mutation, proof, messages", MUTANT_CASES)
def test_mutant_has_counterexample(mutation, proof, messages, tmp_path, refuted):
    """Bounded from power-up over the proof's bound: the mutant fails one of the assertions named (the
    first one it breaks; an invariant is a proved property too)."""
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_parser(proof, tmp_path, module=module, mode="bmc", name=f"mutant_{mutation.name}")
    refuted(result, mutation, messages)

