"""PyTorch CPU baselines built from a :class:`pascal_ref.ir.network.Network` (same weights as our engines).

* :class:`TorchAnn`: PyTorch's own float32 QCFS ANN forward (BatchNorm
  folded, ``F.conv2d``/``F.linear``, ``q = clamp(floor(z*L/lam + phi), 0, L)``).
* :class:`TorchDenseSnn`: the spiking network computed the way the reference
  implementation computes it: every layer runs its weighted op on all
  timesteps of its input train at once as one dense batch (``T*B`` samples,
  silent or not), spreads its bias over the input steps, then loops the
  PASC-IF stages over time with whole-tensor operations.  Residual inputs of
  unequal train lengths add the shortcut's total at step 0, as the reference
  does.  The first layer (analog input) computes QCFS on its current and
  sends the burst, as the reference's first layer does.  The firing
  comparison uses the reference's tolerance (``v >= theta - 8e-5``).  It is a cost model of the reference, not a
  verified path (its float counts are not checked here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pascal_ref.ir.network import INPUT, AvgPool2d, Flatten, GlobalAvgPool, Identity, MaxPool2d, Network

__all__ = ["TorchAnn", "TorchDenseSnn"]

TOLERANCE = 8e-5


def _pre_ops(x: torch.Tensor, pre_ops) -> torch.Tensor:
    for op in pre_ops:
        if isinstance(op, MaxPool2d):
            x = F.max_pool2d(x, op.kernel, op.stride)
        elif isinstance(op, AvgPool2d):
            x = F.avg_pool2d(x, op.kernel, op.stride)
        elif isinstance(op, GlobalAvgPool):
            x = F.adaptive_avg_pool2d(x, 1)
        elif isinstance(op, Flatten):
            x = x.flatten(1)
    return x


class _Synapse(torch.nn.Module):
    def __init__(self, synapse):
        super().__init__()
        self.source = synapse.source
        self.pre_ops = synapse.pre_ops
        op = synapse.op
        self.kind = type(op).__name__
        if isinstance(op, Identity):
            self.register_buffer("weight", torch.ones(1))
        else:
            self.register_buffer("weight", torch.tensor(op.weight, dtype=torch.float32))
        self.stride = getattr(op, "stride", None)
        self.padding = getattr(op, "padding", None)

    def forward(self, x):
        x = _pre_ops(x, self.pre_ops)
        if self.kind == "Conv2d":
            return F.conv2d(x, self.weight, None, self.stride, self.padding)
        if self.kind == "Linear":
            return F.linear(x.flatten(1), self.weight)
        return x


class _Layer(torch.nn.Module):
    def __init__(self, network: Network, layer):
        super().__init__()
        self.name = layer.name
        self.synapses = torch.nn.ModuleList(_Synapse(s) for s in layer.synapses)
        self.register_buffer("bias", torch.tensor(layer.bias, dtype=torch.float32))
        self.readout = layer.is_readout
        if not self.readout:
            act = layer.activation
            self.lam, self.levels, self.phi, self.theta = act.lam, act.levels, act.phi, act.theta
        self.steps = network.input_steps(layer)

    def bias_view(self, ndim: int) -> torch.Tensor:
        return self.bias.reshape((1, -1) + (1,) * (ndim - 2))


class TorchAnn(torch.nn.Module):
    """PyTorch float32 QCFS ANN of a network; ``forward(x)`` returns the logits."""

    def __init__(self, network: Network):
        super().__init__()
        self.input_levels = network.input_levels
        self.layers = torch.nn.ModuleList(_Layer(network, layer) for layer in network.neuron_layers)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_levels is not None:
            x = torch.clamp(torch.floor(x * self.input_levels + 0.5), 0, self.input_levels) / self.input_levels
        values = {INPUT: x}
        for layer in self.layers:
            z = None
            for synapse in layer.synapses:
                part = synapse(values[synapse.source])
                z = part if z is None else z + part
            z = z + layer.bias_view(z.ndim)
            if layer.readout:
                return z
            q = torch.clamp(torch.floor(z * (layer.levels / layer.lam) + layer.phi), 0, layer.levels)
            values[layer.name] = q * layer.theta
        raise AssertionError("network without readout")


class TorchDenseSnn(torch.nn.Module):
    """The SNN as the reference computes it: a dense pass per timestep (see the module docstring)."""

    def __init__(self, network: Network):
        super().__init__()
        self.input_levels = network.input_levels
        self.layers = torch.nn.ModuleList(_Layer(network, layer) for layer in network.neuron_layers)
        self.train_steps = {INPUT: network.source_levels(INPUT)}
        for layer in network.hidden_layers:
            self.train_steps[layer.name] = layer.levels

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if self.input_levels is None:
            trains = {INPUT: x.unsqueeze(0)}                       # analog: one step
        else:
            levels = torch.clamp(torch.floor(x * self.input_levels + 0.5), 0, self.input_levels)
            steps = torch.arange(self.input_levels, dtype=x.dtype).reshape(-1, *([1] * x.ndim))
            trains = {INPUT: (levels.unsqueeze(0) > steps).to(x.dtype) / self.input_levels}
        for layer in self.layers:
            currents = None
            for synapse in layer.synapses:
                train = trains[synapse.source]                      # (T_src, B, ...)
                steps = train.shape[0]
                dense = synapse(train.flatten(0, 1))                # every step, silent or not
                dense = dense.reshape((steps, batch) + dense.shape[1:])
                if currents is None:
                    currents = torch.zeros((layer.steps,) + dense.shape[1:], dtype=dense.dtype)
                if steps == layer.steps:
                    currents = currents + dense
                else:                                               # unequal trains: total at step 0
                    currents[0] = currents[0] + dense.sum(0)
            currents = currents + layer.bias_view(currents.ndim - 1).unsqueeze(0) / layer.steps
            if layer.readout:
                return currents.mean(0)
            if self.input_levels is None and all(s.source == INPUT for s in layer.synapses):
                trains[layer.name] = self._analog_first_layer(currents[0], layer)
            else:
                trains[layer.name] = self._pasc_if(currents, layer)
        raise AssertionError("network without readout")

    @staticmethod
    def _analog_first_layer(current: torch.Tensor, layer: _Layer) -> torch.Tensor:
        """The reference's first layer: QCFS on the analog current, then an L-step burst."""
        value = torch.floor(torch.clamp(current / layer.lam, 0, 1) * layer.levels + layer.phi) * layer.theta
        out = []
        for _ in range(layer.levels):
            spike = (value - layer.theta >= -TOLERANCE).to(value.dtype) * layer.theta
            value = value - spike
            out.append(spike)
        return torch.stack(out)

    @staticmethod
    def _pasc_if(currents: torch.Tensor, layer: _Layer) -> torch.Tensor:
        theta = layer.theta
        mem = torch.full_like(currents[0], layer.phi * theta)
        count = torch.zeros_like(mem)
        for t in range(currents.shape[0]):                          # stage 1
            mem = mem + currents[t]
            spike = (mem - theta >= -TOLERANCE).to(mem.dtype)
            mem = mem - spike * theta
            count = count + spike
        for _ in range(max(currents.shape[0], layer.levels) - 1):   # stage 2
            excite = (mem - theta >= -TOLERANCE).to(mem.dtype)
            inhibit = (mem < 0).to(mem.dtype) * (1 - excite)
            mem = mem - excite * theta + inhibit * theta
            count = count + excite - inhibit
        out = [(count > t).to(mem.dtype) * theta for t in range(layer.levels)]   # stage 3: burst
        return torch.stack(out)
