"""Formal proofs of the neuron unit and the layer engine (SymbiYosys + Yices/z3).

``reference``: the contract's PASC-IF neuron as an Amaranth step machine;
``neuron_proofs`` / ``engine_proofs``: property harnesses and configurations;
``mutants``: designs broken on purpose; ``sby``: job writer and runner;
``mutation`` (with the pytest plugin ``mutant_plugin``): the gateware mutation tier.
See ``docs/formal.md``; run ``pytest -m formal`` or ``python -m pascal_hdl.formal``;
the mutation tier with ``python -m pascal_hdl.formal.mutation``.
"""
