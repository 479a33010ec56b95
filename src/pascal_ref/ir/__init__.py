"""Intermediate representation: the validated network description.

``layers`` (the layer types, each carrying its behaviour, and their registry),
``kernels`` (the array functions they are made of), ``graph`` (the compiled
neuron layers and synapses every engine reads) and ``network`` (validation and
the compile step).
"""
