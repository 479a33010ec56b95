"""Designs broken on purpose: the gateware mutants of the formal proofs and of the mutation tier.

A :class:`Mutation` replaces one exact piece of a design module's source (it
must occur exactly once, so a mutation that no longer applies after an edit
of the design is an error, never a silent no-op). Two ways to use one:

* :func:`load_mutant` loads the result as a fresh module beside the
  package, so a formal harness can build it like the real design (the
  proofs of ``tests/pascal_hdl/formal`` do this for
  :data:`NEURON_MUTATIONS` and :data:`ENGINE_MUTATIONS`);
* :func:`install_mutant` puts it in place of the real module for a whole
  process, so every importer (the engine importing the neuron, the core
  importing the engine, the tests, the formal harnesses) gets the mutant:
  the pytest plugin :mod:`pascal_hdl.formal.mutant_plugin` does this and
  :mod:`pascal_hdl.formal.mutation` runs the suite once per mutant.

:data:`GATEWARE_MUTATIONS` is the curated list of the mutation tier (bugs a
developer makes: operators flipped, off-by-one counters and limits, the
``index == in_features`` and ``count == T1 + 1`` acceptance, the readout's
first-maximum tie rule, stale or unreset registers, the CLEAR phase after
reset, parameters read live instead of latched, handshake bugs, widths one
bit narrower). :data:`ACCEPTED_SURVIVORS` says why a mutant that no check
kills is equivalent or accepted; the runner reports any other survivor as
unexplained.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pascal_ref.errors import PascalError

__all__ = ["Mutation", "MutationError", "load_mutant", "NEURON_MUTATIONS", "ENGINE_MUTATIONS", "ACCEPTED_SURVIVORS",
           "CORE", "ENGINE", "GATEWARE_MUTATIONS", "NEURON", "all_mutation_names", "install_mutant", "mutation_named",
           "proof_cases"]

_serial = itertools.count()

NEURON = "pascal_hdl.gateware.neuron"
ENGINE = "pascal_hdl.gateware.engine"
CORE = "pascal_hdl.gateware.core"


class MutationError(PascalError):
    """A mutation does not apply to the current design source."""


@dataclass(frozen=True)
class Mutation:
    """Replace ``find`` with ``replace`` (exactly once) in module ``target``."""

    name: str
    target: str
    find: str
    replace: str
    description: str

    @property
    def block(self) -> str:
        """The gateware block the mutation breaks: ``neuron``, ``engine`` or ``core``."""
        return self.target.rsplit(".", 1)[-1]

    def apply(self, source: str) -> str:
        found = source.count(self.find)
        if found != 1:
            raise MutationError(f"mutation '{self.name}': expected exactly one {self.find!r} in {self.target}, "
                                f"found {found}; update the mutation to the design")
        return source.replace(self.find, self.replace)


def proof_cases(mutations, mutant_proofs, proof_names):
    """The ``(mutation, proof name, failed-property messages)`` triples of a table of mutants refuted by
    proofs (``mutant_proofs``: mutant name -> ((proof name, messages), ...)), in table order. Raises
    :class:`MutationError` unless every mutant has a proof, every proof entry names a mutant and every
    proof named is one of ``proof_names``."""
    names = {m.name for m in mutations}
    if names != set(mutant_proofs):
        raise MutationError(f"mutants without a proof: {sorted(names - set(mutant_proofs))}; "
                            f"proofs of unknown mutants: {sorted(set(mutant_proofs) - names)}")
    unknown = {proof for cases in mutant_proofs.values() for proof, _ in cases} - set(proof_names)
    if unknown:
        raise MutationError(f"mutant proofs name unknown proofs: {sorted(unknown)}")
    return [(m, proof, messages) for m in mutations for proof, messages in mutant_proofs[m.name]]


def load_mutant(mutation: Mutation, workdir):
    """Write the mutated source of ``mutation.target`` into ``workdir`` and
    import it as a new module of the same package (relative imports work)."""
    original = importlib.import_module(mutation.target)
    source = mutation.apply(inspect.getsource(original))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = mutation.target.rsplit(".", 1)[-1]
    path = workdir / f"{stem}_mutant_{mutation.name}.py"
    path.write_text(source)
    package = mutation.target.rsplit(".", 1)[0]
    name = f"{package}._mutant_{stem}_{mutation.name}_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def install_mutant(mutation: Mutation, workdir=None):
    """Make ``mutation`` *the* module ``mutation.target`` for the rest of this process.

    The mutated source is written to ``workdir`` (a temporary folder by
    default, so tracebacks show the mutated lines) and imported under the
    real module name. Gateware modules imported before are dropped from
    ``sys.modules`` first, so their next import reads the mutant. Meant for a
    process of its own (a pytest run started by the mutation runner).
    """
    spec = importlib.util.find_spec(mutation.target)
    if spec is None or spec.origin is None:
        raise MutationError(f"mutation '{mutation.name}': module {mutation.target} not found")
    source = mutation.apply(Path(spec.origin).read_text())
    for name in [n for n in sys.modules if n.startswith("pascal_hdl.gateware.")]:
        del sys.modules[name]
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="pascal_mutant_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{mutation.block}_mutant_{mutation.name}.py"
    path.write_text(source)
    mutant_spec = importlib.util.spec_from_file_location(mutation.target, path)
    module = importlib.util.module_from_spec(mutant_spec)
    sys.modules[mutation.target] = module
    try:
        mutant_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mutation.target]
        raise
    package, stem = mutation.target.rsplit(".", 1)
    setattr(importlib.import_module(package), stem, module)
    return module


def _m(name, target, find, replace, description):
    return Mutation(name, target, find, replace, description)


GATEWARE_MUTATIONS = (
    # ------------------------------------------------------------------ neuron unit
    _m("fire_gt", NEURON,
       "fire = active & (charged >= self.theta_q)", "fire = active & (charged > self.theta_q)",
       "the firing comparison v >= theta flipped to v > theta (state update only)"),
    _m("excitatory_port_gt", NEURON,
       "active & (charged >= self.theta_q))),", "active & (charged > self.theta_q))),",
       "the excitatory spike port compares v > theta (the state update is right)"),
    _m("no_inhibitory", NEURON,
       "self.inhibitory.eq((stage == Stage.SETTLE) & (charged < 0))", "self.inhibitory.eq(0)",
       "stage 2 without its inhibitory branch"),
    _m("inhibitory_le", NEURON,
       "& (charged < 0))", "& (charged <= 0))",
       "the inhibitory comparison v < 0 flipped to v <= 0"),
    _m("inhibitory_subtracts", NEURON,
       "Mux(self.inhibitory, charged + self.theta_q, charged)", "Mux(self.inhibitory, charged - self.theta_q, charged)",
       "the inhibitory soft reset subtracts theta instead of adding it"),
    _m("counter_inhibitory_plus", NEURON,
       "c.eq(c + fire - self.inhibitory)", "c.eq(c + fire + self.inhibitory)",
       "an inhibitory spike increments the spike counter"),
    _m("burst_ge", NEURON,
       "self.spike.eq((stage == Stage.TRANSMIT) & (c > step))",
       "self.spike.eq((stage == Stage.TRANSMIT) & (c >= step))",
       "the transmitted spike c > t flipped to c >= t"),
    _m("settle_min", NEURON,
       "settle_steps.eq(Mux(self.t_in_q > self.t_out_q, self.t_in_q, self.t_out_q) - 1)",
       "settle_steps.eq(Mux(self.t_in_q < self.t_out_q, self.t_in_q, self.t_out_q) - 1)",
       "stage 2 lasts min(T1,T2)-1 steps instead of max(T1,T2)-1"),
    _m("integrate_one_more", NEURON,
       "with m.If(step == self.t_in_q - 1):", "with m.If(step == self.t_in_q):",
       "off by one: stage 1 lasts T1 + 1 steps"),
    _m("transmit_one_more", NEURON,
       "with m.If(step == self.t_out_q - 1):", "with m.If(step == self.t_out_q):",
       "off by one: stage 3 lasts T2 + 1 steps"),
    _m("count_no_high_clip", NEURON,
       "self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out_q, self.t_out_q, c)))", "self.count.eq(Mux(c < 0, 0, c))",
       "the count port not clipped at T2"),
    _m("count_no_low_clip", NEURON,
       "self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out_q, self.t_out_q, c)))",
       "self.count.eq(Mux(c > self.t_out_q, self.t_out_q, c))",
       "the count port not clipped at 0 (a negative counter wraps)"),
    _m("count_live_t_out", NEURON,
       "self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out_q, self.t_out_q, c)))",
       "self.count.eq(Mux(c < 0, 0, Mux(c > self.t_out, self.t_out, c)))",
       "the count port clips at the live t_out port instead of the T2 latched at start"),
    _m("theta_read_live", NEURON,
       "fire = active & (charged >= self.theta_q)", "fire = active & (charged >= self.theta)",
       "the firing decision reads the live theta port instead of the theta latched at start"),
    _m("ready_idle_only", NEURON,
       "self.ready.eq((stage == Stage.IDLE) | (stage == Stage.TRANSMIT))", "self.ready.eq(stage == Stage.IDLE)",
       "handshake: start refused during TRANSMIT"),
    _m("start_ignores_ready", NEURON,
       "with m.If(self.start & self.ready):", "with m.If(self.start):",
       "handshake: start accepted in any stage (restarts a run in stage 1 or 2)"),
    _m("start_keeps_counter", NEURON,
       "[v.eq(self.v0), c.eq(0), stage.eq(Stage.INTEGRATE), step.eq(0)]",
       "[v.eq(self.v0), stage.eq(Stage.INTEGRATE), step.eq(0)]",
       "stale register: the spike counter is not cleared at start"),
    _m("start_keeps_step", NEURON,
       "[v.eq(self.v0), c.eq(0), stage.eq(Stage.INTEGRATE), step.eq(0)]",
       "[v.eq(self.v0), c.eq(0), stage.eq(Stage.INTEGRATE)]",
       "stale register: the step index is not cleared at start (restart during TRANSMIT)"),
    _m("current_in_settle", NEURON,
       "Mux(stage == Stage.INTEGRATE, v + self.current, v)", "Mux(stage != Stage.IDLE, v + self.current, v)",
       "the input current is added in stage 2 as well"),
    _m("charged_narrow", NEURON,
       "charged = Signal(signed(self.widths.v_width + 1))", "charged = Signal(signed(self.widths.v_width))",
       "the membrane-plus-current signal without its extra bit"),
    _m("membrane_narrow", NEURON,
       '"v": Out(signed(self.widths.v_width)),', '"v": Out(signed(self.widths.v_width - 1)),',
       "the membrane register one bit narrower than its derived width (overflow)"),
    _m("counter_narrow", NEURON,
       '"c": Out(signed(self.widths.c_width)),', '"c": Out(signed(self.widths.c_width - 1)),',
       "the spike counter one bit narrower than its derived width (overflow)"),
    # ------------------------------------------------------------------ layer engine
    _m("subtract_weight", ENGINE,
       "a_wr.data.word_select(k, aw).eq(acc_lanes[k] + weight)",
       "a_wr.data.word_select(k, aw).eq(acc_lanes[k] - weight)",
       "the accumulator subtracts the weight instead of adding it"),
    _m("stale_accumulator", ENGINE,
       "a_rd = acc.read_port(transparent_for=(a_wr,))", "a_rd = acc.read_port()",
       "the accumulator read port not transparent: a back-to-back spike reads the old sum"),
    _m("accept_equal_index", ENGINE,
       "(seen & (index <= prev_index))", "(seen & (index < prev_index))",
       "an event repeating the previous index is accumulated instead of dropped"),
    _m("accept_index_in_features", ENGINE,
       "(index >= in_features)", "(index > in_features)",
       "off by one: an event with index == in_features is accepted"),
    _m("accept_count_above_t1", ENGINE,
       "(count > t_in)", "(count > t_in + 1)",
       "off by one: an event with count T1 + 1 is accepted"),
    _m("reject_count_t1", ENGINE,
       "(count > t_in)", "(count >= t_in)",
       "off by one: an event with count == T1 is rejected"),
    _m("order_checked_on_first", ENGINE,
       "(seen & (index <= prev_index))", "(index <= prev_index)",
       "the first event of a sample is checked against the previous sample's last index"),
    _m("first_not_reset", ENGINE,
       "m.d.sync += [phase.eq(Phase.ACCUMULATE), first.eq(1), last_seen.eq(0), group.eq(0)]",
       "m.d.sync += [phase.eq(Phase.ACCUMULATE), last_seen.eq(0), group.eq(0)]",
       "stale register: 'first event of the sample' not set again after a sample"),
    _m("last_seen_not_reset", ENGINE,
       "m.d.sync += [phase.eq(Phase.ACCUMULATE), first.eq(1), last_seen.eq(0), group.eq(0)]",
       "m.d.sync += [phase.eq(Phase.ACCUMULATE), first.eq(1), group.eq(0)]",
       "stale register: 'last event seen' not cleared after a sample"),
    _m("bad_event_accumulated", ENGINE,
       "count.eq(Mux(bad, 0, payload.count))", "count.eq(payload.count)",
       "a rejected event is flagged but still accumulated"),
    _m("rejected_without_accept", ENGINE,
       "self.rejected.eq(accept & bad)", "self.rejected.eq(bad)",
       "rejected raised while a bad event waits (or a stale one sits) in the input register"),
    _m("input_always_ready", ENGINE,
       "self.i.ready.eq(~clearing & (~buffered | can_take))", "self.i.ready.eq(~clearing)",
       "handshake: i.ready stays high while busy, overwriting the buffered event"),
    _m("ready_through_output", ENGINE,
       "self.i.ready.eq(~clearing & (~buffered | can_take))",
       "self.i.ready.eq(~clearing & (~buffered | can_take | self.o.ready))",
       "handshake: a combinational path from o.ready to i.ready (documented: none)"),
    _m("buffer_never_emptied", ENGINE,
       "m.d.sync += buffered.eq(0)", "pass",
       "handshake: the input register is not emptied when its event is taken (processed twice)"),
    _m("repeats_one_more", ENGINE,
       "repeats.eq(count - 1), fill_group.eq(1)", "repeats.eq(count), fill_group.eq(1)",
       "off by one (groups > 1): an event accumulates count + 1 spikes"),
    _m("single_group_short", ENGINE,
       "busy.eq(count > 1), repeats.eq(count - 2)", "busy.eq(count > 2), repeats.eq(count - 2)",
       "off by one (one group): an event with count 2 accumulates one spike"),
    _m("finish_before_spikes", ENGINE,
       "with m.If((count == 1) & payload.last):", "with m.If(payload.last):",
       "one group: a last event with count > 1 ends the input phase before its spikes are issued"),
    _m("address_top_bit_dropped", ENGINE,
       "for bit in range(constant.bit_length())", "for bit in range(constant.bit_length() - 1)",
       "times_constant drops the top bit: wrong weight address j*groups"),
    _m("issue_base_only", ENGINE,
       "issue_addr.eq(base + fill_group)", "issue_addr.eq(base)",
       "later groups of a spike read the first group's weights"),
    _m("acc_read_group_register", ENGINE,
       "a_rd.addr.eq(Mux(issue, issue_group, group))", "a_rd.addr.eq(group)",
       "the accumulator is read at the group register instead of the issued group"),
    _m("writeback_group_register", ENGINE,
       "writeback_group.eq(issue_group)", "writeback_group.eq(group)",
       "the sum is written back to the group register instead of the issued group"),
    _m("params_group0", ENGINE,
       "p_rd.addr.eq(group)", "p_rd.addr.eq(0)",
       "every group reads the first group's v0/theta (or bias)"),
    _m("hidden_acc_not_cleared", ENGINE,
       "m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(group), a_wr.data.eq(0)]\n"
       "                m.d.sync += [phase.eq(Phase.RUN), run_steps.eq(0)]",
       "m.d.sync += [phase.eq(Phase.RUN), run_steps.eq(0)]",
       "stale register: a hidden engine's accumulators are not cleared (sums carry into the next sample)"),
    _m("readout_acc_not_cleared", ENGINE,
       "with m.If(lane == 0):", "with m.If(0):",
       "stale register: the readout's accumulators are not cleared"),
    _m("clear_never_writes", ENGINE,
       "with m.If(clearing):\n            m.d.comb += [a_wr.en.eq(1), a_wr.addr.eq(group), a_wr.data.eq(0)]",
       "with m.If(clearing):\n            m.d.comb += [a_wr.addr.eq(group), a_wr.data.eq(0)]",
       "reset: the CLEAR phase runs but never writes (a reset leaves the interrupted sample's partial sums)"),
    _m("clear_one_word_short", ENGINE,
       "with m.If(group == groups - 1):\n                m.d.sync += [phase.eq(Phase.ACCUMULATE), group.eq(0)]",
       "with m.If(group >= groups - 2):\n                m.d.sync += [phase.eq(Phase.ACCUMULATE), group.eq(0)]",
       "reset: the CLEAR phase ends one word early (groups > 1): the last group keeps its partial sums"),
    _m("drain_reads_fill_bank", ENGINE,
       "drain_rd.data.eq(Mux(bank, read_data[0], read_data[1]))", "drain_rd.data.eq(Mux(bank, read_data[1], read_data[0]))",
       "double buffer: the drain side reads the bank being filled (the next sample's partial sums)"),
    _m("bank_not_cleared_after_drain", ENGINE,
       "wr.en.eq(Mux(fills, fill_wr.en, drain_wr.en))", "wr.en.eq(Mux(fills, fill_wr.en, 0))",
       "double buffer: a drained bank is not cleared (its sums carry into the sample filled into it next)"),
    _m("run_one_short", ENGINE,
       "m.d.sync += [phase.eq(Phase.RUN), run_steps.eq(0)]", "m.d.sync += [phase.eq(Phase.RUN), run_steps.eq(1)]",
       "off by one: the neuron phase lasts T2 - 1 cycles (counts read before the units settle)"),
    _m("emit_zero_skipped_wrong", ENGINE,
       "wanted = (count != 0) | is_last", "wanted = (count > 1) | is_last",
       "a hidden neuron with count 1 is skipped as if silent (hidden engine)"),
    _m("last_neuron_not_sent", ENGINE,
       "wanted = (count != 0) | is_last", "wanted = (count != 0)",
       "the last neuron is skipped when silent: the next layer never sees 'last'"),
    _m("emit_ignores_ready", ENGINE,
       "with m.If(~wanted | self.o.ready):", "with m.If(1):",
       "handshake: hidden output payload changes while valid without ready"),
    _m("result_ignores_ready", ENGINE,
       "with m.If(self.o.ready):\n                    end_sample()", "with m.If(1):\n                    end_sample()",
       "handshake: the readout drops valid before the result is taken"),
    _m("readout_last_maximum", ENGINE,
       "(logit > best)", "(logit >= best)",
       "argmax tie rule: the last maximum wins instead of the first"),
    _m("readout_max_not_restarted", ENGINE,
       "(logit_index == 0) | (logit > best)", "(logit > best)",
       "stale register: the running maximum is not restarted per sample"),
    _m("readout_no_bias", ENGINE,
       "logit.eq(Array(acc_lanes)[lane] + p_rd.data.word_select(lane, lw).as_signed())",
       "logit.eq(Array(acc_lanes)[lane])",
       "the readout forgets the bias"),
    _m("accumulator_narrow", ENGINE,
       "wb, aw = cfg.weight_width, cfg.acc_width", "wb, aw = cfg.weight_width, cfg.acc_width - 1",
       "the accumulators one bit narrower than their derived width (overflow)"),
    _m("logits_narrow", ENGINE,
       "logits = Signal(data.ArrayLayout(signed(lw), cfg.out_features))",
       "logits = Signal(data.ArrayLayout(signed(lw - 1), cfg.out_features))",
       "the readout's logit registers one bit narrower than their derived width"),
    # ------------------------------------------------------------------ network core
    _m("gate_open_in_wait", CORE,
       "self.i.ready.eq(first.i.ready & open_)", "self.i.ready.eq(first.i.ready)",
       "handshake: the core says ready while the gate is closed (the first stage does not see the event)"),
    _m("no_wait_state", CORE,
       "open_ = within | (inside < depth)", "open_ = within | (inside <= depth)",
       "off by one: the gate lets one sample more than in_flight in (with 1: before the result is taken)"),
    _m("idle_before_taken", CORE,
       "taken = self.o.valid & self.o.ready", "taken = self.o.valid",
       "handshake: a result counts as gone when it is offered, not when it is taken"),
    _m("cycles_from_zero", CORE,
       "m.d.comb += latency.eq(finished_at - stamps[head])", "m.d.comb += latency.eq(finished_at - stamps[head] - 1)",
       "off by one: the latency is one cycle short"),
    _m("cycles_run_while_valid", CORE,
       "m.d.comb += finished_at.eq(Mux(held, held_finished, now))", "m.d.comb += finished_at.eq(now)",
       "handshake: the cycles field keeps counting while the result waits (payload changes while valid)"),
    _m("rejected_sticky", CORE,
       "m.d.sync += flags[slot].eq(Mux(start, bad, flags[slot] | bad))", "m.d.sync += flags[slot].eq(flags[slot] | bad)",
       "stale register: a slot's rejected flag is never cleared for the next sample in it"),
    _m("rejected_never_set", CORE,
       "self.o.payload.rejected.eq(flags[head])", "self.o.payload.rejected.eq(0)",
       "the result's rejected flag is never set"),
    _m("sample_tag_stuck", CORE,
       "results_taken.eq(results_taken + 1)", "results_taken.eq(results_taken)",
       "the results' sample number never advances (results cannot be told apart)"),
    _m("monitor_without_ready", CORE,
       "monitor.valid.eq(before.o.valid & before.o.ready)", "monitor.valid.eq(before.o.valid)",
       "a monitor shows an event in every cycle it is offered, not when it is handed over"),
)

_BY_NAME = {m.name: m for m in GATEWARE_MUTATIONS}   # unique: checked with the other tables, below


def mutation_named(name: str) -> Mutation:
    """The mutation of :data:`GATEWARE_MUTATIONS` called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise MutationError(f"no gateware mutation named {name!r}; known: {', '.join(_BY_NAME)}") from None


# The designs broken on purpose that the formal proofs must refute on their own
# (tests/pascal_hdl/formal; each gives a counterexample from reset).
NEURON_MUTATIONS = tuple(mutation_named(n) for n in (
    "fire_gt", "no_inhibitory", "burst_ge", "settle_min", "membrane_narrow", "start_ignores_ready",
    "count_live_t_out"))
ENGINE_MUTATIONS = tuple(mutation_named(n) for n in (
    "subtract_weight", "stale_accumulator", "accept_equal_index", "emit_zero_skipped_wrong",
    "accept_index_in_features", "accept_count_above_t1", "reject_count_t1", "readout_last_maximum",
    "result_ignores_ready", "rejected_without_accept", "clear_never_writes", "clear_one_word_short",
    "drain_reads_fill_bank", "bank_not_cleared_after_drain"))

# Mutants that no check of the default suite, the formal proofs or cosim kills,
# with the reason (equivalent, or accepted), from the mutation runs (docs/formal.md).
ACCEPTED_SURVIVORS: dict[str, str] = {
    "charged_narrow": "equivalent: v + I(t) never leaves the membrane range, which already covers "
                      "max(v0,0) + T1*max(I,0) and min(v0,0) + T1*min(I,0) (widths.neuron_widths), so the extra bit "
                      "is never used; the neuron equivalence k-induction PASSes on the mutant (small, wide, "
                      "digits_mlp_act1): no input sequence tells them apart",
    "last_seen_not_reset": "equivalent: last_seen is written from the payload at every accepted event and read "
                           "only while that event's spikes are issued (busy), so the value left from the previous "
                           "sample is always overwritten before it is read",
}

# ------------------------------------------------------------------ UART (issue 15)
# The UART receiver's and transmitter's mutants, refuted by the proofs of
# pascal_hdl.formal.uart_proofs (UART_MUTANT_PROOFS names the proof and the failed
# properties; tests/pascal_hdl/formal/test_uart.py). Not in GATEWARE_MUTATIONS: the
# mutation tier's runner knows the neuron, engine and core blocks only.
UART = "pascal_hdl.board.uart"

UART_MUTATIONS = (
    _m("uart_rx_samples_at_edge", UART,
       "timer.eq(divisor // 2 - 1)", "timer.eq(0)",
       "the receiver samples every bit at its start edge instead of its middle"),
    _m("uart_rx_accepts_zero_stop", UART,
       "with m.If(line):\n                m.d.sync += [self.o.valid.eq(1), state.eq(RxState.IDLE)]",
       "with m.If(1):\n                m.d.sync += [self.o.valid.eq(1), state.eq(RxState.IDLE)]",
       "the receiver delivers a byte whose stop bit is 0 instead of a framing error"),
    _m("uart_rx_seven_data_bits", UART,
       "with m.If(bit == 7):", "with m.If(bit == 6):",
       "off by one: the receiver's bit counter ends one data bit short"),
    _m("uart_rx_never_delivers", UART,
       "m.d.sync += [self.o.valid.eq(1), state.eq(RxState.IDLE)]", "m.d.sync += [state.eq(RxState.IDLE)]",
       "the receiver checks the stop bit but never offers the byte"),
    _m("uart_tx_msb_first", UART,
       "shift.eq(self.i.payload | (1 << 8))", "shift.eq(self.i.payload[::-1] | (1 << 8))",
       "the transmitter sends the data bits MSB first"),
)

# ------------------------------------------------------------------ host link frame parser (issue 15)
# The frame parser's mutants (pascal_hdl.board.hostlink.FrameParser), refuted by the proofs of
# pascal_hdl.formal.hostlink_proofs (HOSTLINK_MUTANT_PROOFS names the proof and the failed properties;
# tests/pascal_hdl/formal/test_hostlink.py). Not in GATEWARE_MUTATIONS, like the UART's.
HOSTLINK = "pascal_hdl.board.hostlink"

HOSTLINK_MUTATIONS = (
    _m("parser_crc_unchecked", HOSTLINK,
       "with m.If(crc_in != 0):", "with m.If(0):",
       "the parser never checks the CRC: a frame with a bad CRC is accepted"),
    _m("parser_commit_when_full", HOSTLINK,
       "with m.Elif(is_sample & r.drop):", "with m.Elif(0):",
       "a SAMPLE that arrived with the queue full is committed (its bytes were not written) instead of QUEUE_FULL"),
    _m("parser_write_when_full", HOSTLINK,
       "r.drop.eq(self.used == depth),", "r.drop.eq(0),",
       "the queue-full flag never set: a SAMPLE overwrites a queued sample and is committed"),
    _m("parser_discard_forever", HOSTLINK,
       "with m.Elif(expire & (state == ParserState.DISCARD)):\n            m.d.sync += state.eq(ParserState.HUNT)",
       "with m.Elif(expire & (state == ParserState.DISCARD)):\n            pass",
       "the timeout never ends a DISCARD: after a header fault the parser hangs"),
    _m("parser_timeout_late", HOSTLINK,
       "expire = ~got & ~framing & (idle == timeout - 1)", "expire = ~got & ~framing & (idle == timeout)",
       "off by one: the timeout fires one cycle late (after timeout + 1 quiet cycles)"),
    _m("parser_level_off_by_one", HOSTLINK,
       "with m.If((byte > self.max_level) & ~r.bad_level):", "with m.If((byte >= self.max_level) & ~r.bad_level):",
       "off by one: a level equal to the maximum is refused (LEVEL_TOO_HIGH)"),
    _m("parser_slot_not_advanced", HOSTLINK,
       "m.d.sync += r.wr_base.eq(advance_slot(r.wr_base, depth, features))", "pass",
       "the write slot does not advance at a commit: the next sample overwrites the queued one"),
)
_NAMES = [m.name for m in GATEWARE_MUTATIONS + UART_MUTATIONS + HOSTLINK_MUTATIONS]
if len(set(_NAMES)) != len(_NAMES):  # pragma: no cover - a typo in the tables
    raise MutationError("mutation names must be unique across the gateware, UART and host link tables: "
                        + ", ".join(sorted({n for n in _NAMES if _NAMES.count(n) > 1})))


def all_mutation_names() -> list[str]:
    """The names of every mutation of the gateware, UART and host link tables (unique, checked above); the
    conv and pooling table (:data:`pascal_hdl.formal.conv_proofs.CONV_MUTATIONS`) checks its names against
    these."""
    return list(_NAMES)
