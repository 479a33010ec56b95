"""The network description: validation, BatchNorm folding, shapes, errors."""
import numpy as np
import pytest

from pascal_ref import (
    QCFS,
    AvgPool2d,
    BasicBlock,
    BatchNorm,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    Network,
    NetworkError,
    float_ann,
)
from pascal_ref.golden.ops import conv2d


def test_batchnorm_is_folded_exactly_as_eval_mode_bn():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    gamma, beta, mean, var = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)
    net = Network((2, 5, 5), [Conv2d("c", w, b, padding=1), BatchNorm("bn", gamma, beta, mean, var, 1e-5),
                              QCFS("a", 100.0, 1000), Flatten("f"), Linear("fc", np.eye(75))])
    x = rng.normal(size=(2, 2, 5, 5))
    z = conv2d(x, w, padding=(1, 1)) + b[None, :, None, None]
    bn = (z - mean[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None] * gamma[None, :, None, None] + beta[None, :, None, None]
    folded = net.neuron_layers[0]
    got = conv2d(x, folded.synapses[0].op.weight, padding=(1, 1)) + folded.bias[None, :, None, None]
    np.testing.assert_allclose(got, bn, rtol=1e-12, atol=1e-12)
    assert not any(isinstance(l, BatchNorm) for l in net.layers)


def test_shapes_are_inferred():
    net = Network((3, 32, 32), [Conv2d("c1", np.zeros((8, 3, 3, 3)), stride=2, padding=1), QCFS("a1", 1, 2),
                                MaxPool2d("p", 2), AvgPool2d("q", 3, 1), GlobalAvgPool("g"), Flatten("f"),
                                Linear("fc", np.zeros((10, 8)))])
    assert [l.output_shape for l in net.neuron_layers] == [(8, 16, 16), (10,)]


@pytest.mark.parametrize("layers, message", [
    ([Linear("fc", np.zeros((3, 5)))], r"layer 'fc': weight shape \(3, 5\) does not match input shape \(4,\)"),
    ([Linear("fc", np.zeros((3, 4))), QCFS("a", 1, 2)], r"must end with a Linear readout"),
    ([QCFS("a", 1, 2), Linear("fc", np.zeros((3, 4)))], r"layer 'a': QCFS activation must follow"),
    ([Linear("fc", np.zeros((3, 4))), Linear("fc2", np.zeros((3, 3)))], r"two weighted layers"),
    ([Linear("fc", np.zeros((3, 4))), QCFS("fc", 1, 2), Linear("o", np.zeros((2, 3)))], r"duplicate layer name"),
    ([BatchNorm("bn", np.ones(4), np.zeros(4), np.zeros(4), np.ones(4)), Linear("o", np.zeros((2, 4)))], r"BatchNorm must follow"),
])
def test_invalid_networks(layers, message):
    with pytest.raises(NetworkError, match=message):
        Network((4,), layers)


@pytest.mark.parametrize("make, message", [
    (lambda: QCFS("a", 0.0, 2), "lam must be a finite number > 0"),
    (lambda: QCFS("a", 1.0, 0), r"levels \(L\) must be an integer >= 1"),
    (lambda: QCFS("a", 1.0, 2.0), r"levels \(L\) must be an integer"),
    (lambda: QCFS("a", 1.0, 2, phi=2), "phi must be a number in"),
    (lambda: Conv2d("c", np.zeros((2, 2, 3))), "4 dimensions"),
    (lambda: Conv2d("c", np.zeros((2, 2, 3, 3)), stride=0), "stride must be >= 1"),
    (lambda: MaxPool2d("m", (2, 2, 2)), "kernel must be an int or a pair"),
    (lambda: Linear("has space", np.zeros((1, 1))), "invalid layer name"),
    (lambda: Linear("fc", np.zeros((3, 4)), np.zeros(2)), r"layer 'fc': bias shape \(2,\) does not match"),
    (lambda: Linear("fc", np.full((3, 4), np.nan)), r"layer 'fc': weight contains NaN"),
    (lambda: BatchNorm("bn", np.ones(2), np.zeros(2), np.zeros(2), -np.ones(2)), "running_var has negative"),
])
def test_invalid_layers(make, message):
    with pytest.raises(NetworkError, match=message):
        make()


def test_pooling_rules():
    conv = Conv2d("c", np.zeros((2, 1, 3, 3)), padding=1)
    with pytest.raises(NetworkError, match="MaxPool2d must act on spike trains"):
        Network((1, 4, 4), [conv, QCFS("a", 1, 2), AvgPool2d("p", 2, 1), MaxPool2d("m", 2), Flatten("f"),
                            Linear("o", np.zeros((2, 2)))])
    with pytest.raises(NetworkError, match="MaxPool2d must act on spike trains"):
        Network((1, 4, 4), [MaxPool2d("m", 2), Flatten("f"), Linear("o", np.zeros((2, 4)))])
    with pytest.raises(NetworkError, match="between 'c' and its activation"):
        Network((1, 4, 4), [conv, AvgPool2d("p", 2), QCFS("a", 1, 2), Flatten("f"), Linear("o", np.zeros((2, 8)))])
    with pytest.raises(NetworkError, match="identity shortcut needs equal shapes"):
        Network((1, 4, 4), [conv, QCFS("a", 1, 2),
                            BasicBlock("b", Conv2d("b.c1", np.zeros((4, 2, 3, 3)), padding=1), QCFS("b.a1", 1, 2),
                                       Conv2d("b.c2", np.zeros((4, 4, 3, 3)), padding=1), QCFS("b.a2", 1, 2)),
                            Flatten("f"), Linear("o", np.zeros((2, 64)))])


def test_with_levels_and_its_errors():
    net = Network((4,), [Linear("fc", np.ones((3, 4))), QCFS("a", 1, 2), Linear("o", np.ones((2, 3)))])
    assert net.with_levels([8]).levels == [8]
    with pytest.raises(NetworkError, match="levels list has 2 entries, the network has 1 activations"):
        net.with_levels([1, 2])
    with pytest.raises(NetworkError, match="levels"):
        net.with_levels([0])


def test_count_coded_input_is_quantized_in_the_ann():
    net = Network((1,), [Linear("fc", np.ones((1, 1))), QCFS("a", 1.0, 1000), Linear("o", np.ones((1, 1)))], input_levels=4)
    levels = float_ann(net, np.array([[0.3]])).levels["a"]
    # 0.3 -> level round(1.2) = 1 -> 0.25 -> q = floor(0.25*1000 + 0.5) = 250
    assert levels[0, 0] == 250
