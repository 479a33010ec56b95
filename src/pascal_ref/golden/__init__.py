"""The readable golden model: QCFS ANN, PASC-IF neuron and network engines, integer quantizer, array kernels."""
