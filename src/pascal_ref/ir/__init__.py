"""Intermediate representation: the validated network description (layers, compiled neuron layers)."""
