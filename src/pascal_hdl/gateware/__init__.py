"""Amaranth gateware: the PASC-IF neuron unit, layer engines and the network core."""
