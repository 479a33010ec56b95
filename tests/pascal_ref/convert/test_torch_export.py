"""PyTorch interop: the exporter against torch forwards, and against the templates.

The PASCAL-layout models here are our own re-creations of the module layout
and naming of BrainSeek-Lab/PASCAL (attribute names, Sequential indices, the
activation's ``thresh`` parameter and ``L`` attribute, its ANN-mode formula
``clamp(x/thresh, 0, 1)`` -> ``floor(x*L + 1/2)/L*thresh``).  Tests that need
torch take the ``torch`` fixture (skipped without it); the bundled-model
tests run without torch.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from pascal_ref.convert import templates
from pascal_ref.golden.ann import float_ann
from pascal_ref.io.bundled import resolve_model_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load
from pascal_ref.testing import random_state_dict

TOLERANCE = 1e-9
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def tx(torch):
    """The exporter module (imports torch)."""
    from pascal_ref.convert import torch_export
    return torch_export


@pytest.fixture(scope="module")
def pascal(torch):
    """Re-creation of the PASCAL repository's VGG-16 / ResNet layout (ANN mode)."""
    nn = torch.nn

    class IF(nn.Module):
        def __init__(self, L, thresh=1.0):
            super().__init__()
            self.thresh = nn.Parameter(torch.tensor([thresh]))
            self.L = L
            self.T = 0

        def forward(self, x):
            x = torch.clamp(x / self.thresh, 0, 1)
            return torch.floor(x * self.L + 0.5) / self.L * self.thresh

    class TimeHelper(nn.Module):     # the reference's parameter-free merge/expand helpers
        def forward(self, x):
            return x

    class VGG(nn.Module):
        def __init__(self, levels, num_classes):
            super().__init__()
            self.merge, self.expand = TimeHelper(), TimeHelper()
            levels = iter(levels)
            in_channels = 3
            for block, config in enumerate(templates.VGG16_CONFIG, start=1):
                layers = []
                for item in config:
                    if item == "M":
                        layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
                    else:
                        layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.BatchNorm2d(item),
                                   IF(next(levels)), nn.Dropout(0.1)]
                        in_channels = item
                setattr(self, f"layer{block}", nn.Sequential(*layers))
            features = 512 * 7 * 7 if num_classes == 1000 else 512
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(features, 4096), IF(next(levels)), nn.Dropout(0.1),
                                            nn.Linear(4096, 4096), IF(next(levels)), nn.Dropout(0.1),
                                            nn.Linear(4096, num_classes))

        def forward(self, x):
            for block in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5, self.classifier):
                x = block(x)
            return x

    class BasicBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride, levels, act_name="act", act=IF):
            super().__init__()
            self.residual_function = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), act(next(levels)),
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
            self.shortcut = nn.Sequential()
            if stride != 1 or in_channels != out_channels:
                self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                                              nn.BatchNorm2d(out_channels))
            self.act_name = act_name
            setattr(self, act_name, act(next(levels)))

        def forward(self, x):
            return getattr(self, self.act_name)(self.residual_function(x) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self, blocks, levels, num_classes, act_name="act", act=IF):
            super().__init__()
            levels = iter(levels)
            self.conv1 = nn.Sequential(nn.Conv2d(3, 64, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(64), act(next(levels)))
            in_channels = 64
            for (stage, channels, stride), count in zip(templates.RESNET_STAGES, blocks):
                layers = []
                for index in range(count):
                    layers.append(BasicBlock(in_channels, channels, stride if index == 0 else 1, levels, act_name, act))
                    in_channels = channels
                setattr(self, stage, nn.Sequential(*layers))
            self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            for stage in (self.conv1, self.conv2_x, self.conv3_x, self.conv4_x, self.conv5_x):
                x = stage(x)
            x = self.avg_pool(x)
            return self.fc(x.view(x.size(0), -1))

    class MyFloor(nn.Module):   # the older QCFS activation: 'up' and 't'
        def __init__(self, t, up=8.0):
            super().__init__()
            self.up = nn.Parameter(torch.tensor([up]))
            self.t = t

        def forward(self, x):
            x = torch.floor(x / self.up * self.t + 0.5) / self.t
            return torch.clamp(x, 0, 1) * self.up

    def make(arch, levels, num_classes=10, flavour="pascal"):
        names = templates.activation_names(arch, num_classes)
        levels = [levels] * len(names) if isinstance(levels, int) else levels
        if arch == "vgg16":
            return VGG(levels, num_classes)
        blocks = templates.RESNET_BLOCKS[arch]
        if flavour == "qcfs":
            return ResNet(blocks, levels, num_classes, act_name="relu", act=MyFloor)
        return ResNet(blocks, levels, num_classes)

    return make


def _load_random(torch, model, arch, num_classes=10, seed=0, flavour="pascal"):
    """Fill a PASCAL-layout model from the template's random state dict (strict: the key names must agree)."""
    state = random_state_dict(arch, num_classes, rng=seed)
    if flavour == "qcfs":
        state = {k.replace(".act.thresh", ".relu.thresh").replace(".thresh", ".up"): v for k, v in state.items()}
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    return model.double().eval(), state


def _torch_logits(torch, model, x):
    with torch.no_grad():
        return model(torch.tensor(x)).numpy()


def _same_network(a, b):
    assert [layer.name for layer in a.neuron_layers] == [layer.name for layer in b.neuron_layers]
    for la, lb in zip(a.neuron_layers, b.neuron_layers):
        assert la.output_shape == lb.output_shape and la.levels == lb.levels, la.name
        assert (la.activation is None) == (lb.activation is None)
        if la.activation is not None:
            assert la.activation.lam == lb.activation.lam and la.activation.phi == lb.activation.phi, la.name
        assert np.array_equal(la.bias, lb.bias), la.name
        for sa, sb in zip(la.synapses, lb.synapses, strict=True):
            assert sa.source == sb.source and type(sa.op) is type(sb.op), la.name
            assert [type(p).__name__ for p in sa.pre_ops] == [type(p).__name__ for p in sb.pre_ops], la.name
            if hasattr(sa.op, "weight"):
                assert np.array_equal(sa.op.weight, sb.op.weight), la.name


# ----------------------------------------------------------- QCFS module


def test_qcfs_module_formula_and_gradients(torch, tx):
    act = tx.QCFS(L=4, thresh=2.0).double()
    x = torch.linspace(-1, 3, 81, dtype=torch.float64, requires_grad=True)
    y = act(x)
    q = np.clip(np.floor(x.detach().numpy() * 4 / 2.0 + 0.5), 0, 4)
    assert np.array_equal(y.detach().numpy(), q * 0.5)
    y.sum().backward()
    assert act.thresh.grad is not None and act.thresh.grad.item() != 0      # straight-through: thresh trains
    assert x.grad.abs().sum().item() > 0
    assert tx.qcfs_parameters(act) == (2.0, 4, 0.5)
    with pytest.raises(ValueError, match="L must be an integer >= 1"):
        tx.QCFS(L=0)
    with pytest.raises(ValueError, match="thresh must be a finite number > 0"):
        tx.QCFS(L=2, thresh=-1.0)


# ------------------------------------------------ exporter equivalence


def test_mlp_equivalence(torch, tx):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), tx.QCFS(4, 1.5), nn.Dropout(0.5), nn.Linear(32, 16), nn.BatchNorm1d(16),
                          tx.QCFS(2, 0.8), nn.Linear(16, 5)).double()
    with torch.no_grad():
        model[4].running_mean.normal_(0, 0.3)
        model[4].running_var.uniform_(0.5, 2.0)
    model.train()     # the exporter evaluates in eval mode whatever the module's mode
    network = tx.export(model, (20,))
    x = np.random.default_rng(0).normal(size=(64, 20))
    expected = _torch_logits(torch, model.eval(), x)
    result = float_ann(network, x)
    diff = np.max(np.abs(result.logits - expected))
    print(f"mlp: max |logit diff| {diff:.3e}")
    assert diff <= TOLERANCE
    assert [layer.name for layer in network.neuron_layers] == ["1", "5", "6"] and network.levels == [4, 2]
    for name, q in result.levels.items():
        assert 0 < np.mean(q > 0) < 1, name


def _train_digits_module():
    spec = importlib.util.spec_from_file_location("train_digits", os.path.join(ROOT, "examples", "train_digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_digits_models_equivalence(torch, tx, kind):
    """The training script's architectures with random weights, on the digits test split."""
    script = _train_digits_module()
    make, shape = script.MODELS[kind]
    torch.manual_seed(1)
    model = make().double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
            if isinstance(module, tx.QCFS):
                module.thresh.fill_(0.7)
    _, _, x_test, _ = load_digits_split()
    x = x_test.reshape((-1,) + shape)
    network = tx.export(model, shape, input_levels=script.INPUT_LEVELS)
    result = float_ann(network, x)
    diff = np.max(np.abs(result.logits - _torch_logits(torch, model, x)))
    print(f"digits {kind}: max |logit diff| {diff:.3e}")
    assert diff <= TOLERANCE
    for name, q in result.levels.items():
        assert 0 < np.mean(q > 0) < 1, name
    # the bundled model was exported from this architecture
    bundled = load(resolve_model_path(f"digits-{kind}"))
    assert [(l.name, l.output_shape, l.levels) for l in bundled.neuron_layers] == \
        [(l.name, l.output_shape, l.levels) for l in network.neuron_layers]
    assert bundled.input_levels == network.input_levels == 16


def test_training_script_smoke(tmp_path, torch, capsys):
    """A few epochs of the bundled models' training run, export and save."""
    script = _train_digits_module()
    script.main(["--model", "mlp", "--epochs", "3", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    diff = float(out.split("max |logit diff| vs torch float64 ")[1].split()[0])
    assert diff <= TOLERANCE
    network = load(tmp_path / "digits_mlp.npz")
    _, _, x_test, y_test = load_digits_split()
    assert np.mean(float_ann(network, x_test).predictions == y_test) > 0.6


@pytest.mark.parametrize("arch", ["vgg16", "resnet18"])
def test_pascal_layout_equivalence_and_template(tmp_path, torch, tx, pascal, arch):
    """torch forward == float_ann(export) <= 1e-9; export == template built from the state-dict .npz."""
    names = templates.activation_names(arch)
    levels = [(2, 4, 8)[i % 3] for i in range(len(names))]
    model, _ = _load_random(torch, pascal(arch, levels), arch)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32))
    exported = tx.export(model, (3, 32, 32), skip=("merge", "expand"))
    assert exported.levels == levels
    result = float_ann(exported, x)
    diff = np.max(np.abs(result.logits - _torch_logits(torch, model, x)))
    print(f"{arch}: max |logit diff| {diff:.3e}")
    assert diff <= TOLERANCE, diff
    for name, q in result.levels.items():      # every layer neither silent nor saturated
        assert 0 < np.mean(q > 0) < 1, name
    # the same weights through a plain state-dict .npz and the template
    path = tmp_path / f"{arch}.npz"
    np.savez(path, **tx.state_dict_arrays(model))
    from_template = templates.build(arch, 10, levels, templates.load_state_dict(path))
    _same_network(exported, from_template)
    assert np.array_equal(float_ann(from_template, x).logits, result.logits)


def test_resnet34_shapes(torch, tx, pascal):
    model, _ = _load_random(torch, pascal("resnet34", 4), "resnet34", seed=3)
    shapes = {}
    for name, module in model.named_modules():
        if tx.is_qcfs(module):
            module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32))
    expected = _torch_logits(torch, model, x)
    network = templates.build("resnet34", 10, 4, {k: v.numpy() for k, v in model.state_dict().items()})
    assert len(shapes) == 33 and len(network.hidden_layers) == 33
    assert {layer.name: layer.output_shape for layer in network.hidden_layers} == shapes
    logits = float_ann(network, x).logits
    assert logits.shape == expected.shape == (1, 10)
    print(f"resnet34: max |logit diff| {np.max(np.abs(logits - expected)):.3e}")
    assert np.max(np.abs(logits - expected)) <= TOLERANCE


def test_old_qcfs_flavour(torch, tx, pascal):
    """MyFloor activations ('up', 't') and block activations named 'relu'."""
    model, _ = _load_random(torch, pascal("resnet18", 2, flavour="qcfs"), "resnet18", seed=4, flavour="qcfs")
    assert "conv2_x.0.relu.up" in model.state_dict()
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16))
    exported = tx.export(model, (3, 16, 16))
    assert "conv2_x.0.relu" in exported.by_name
    assert np.max(np.abs(float_ann(exported, x).logits - _torch_logits(torch, model, x))) <= TOLERANCE
    from_template = templates.build("resnet18", 10, 2, tx.state_dict_arrays(model), input_shape=(3, 16, 16))
    assert np.array_equal(float_ann(from_template, x).logits, float_ann(exported, x).logits)


def test_our_basic_block(torch, tx):
    nn = torch.nn
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), tx.QCFS(4),
                          tx.BasicBlock(8, 8, L1=2, L2=4), tx.BasicBlock(8, 16, stride=2, L1=8, L2=1),
                          nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, 4)).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, tx.QCFS):
                module.thresh.fill_(0.5)
    network = tx.export(model.eval(), (3, 8, 8))
    assert network.levels == [4, 2, 4, 8, 1]
    assert [len(layer.synapses) for layer in network.neuron_layers] == [1, 1, 2, 1, 2, 1]
    assert type(network.by_name["3.act"].synapses[1].op).__name__ == "Identity"
    assert type(network.by_name["4.act"].synapses[1].op).__name__ == "Conv2d"      # 1x1 conv shortcut
    x = np.random.default_rng(3).normal(size=(4, 3, 8, 8))
    result = float_ann(network, x)
    assert np.max(np.abs(result.logits - _torch_logits(torch, model, x))) <= TOLERANCE
    for name, q in result.levels.items():
        assert 0 < np.mean(q > 0) < 1, name


def test_export_saves_a_model_file(tmp_path, torch, tx):
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), tx.QCFS(2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)).double()
    path = tmp_path / "m.npz"
    network = tx.export(model, (1, 4, 4), input_levels=8, path=path)
    x = np.random.default_rng(0).uniform(0, 1, (5, 1, 4, 4))
    assert np.array_equal(float_ann(load(path), x).logits, float_ann(network, x).logits)


# ---------------------------------------------------------- exporter errors


def test_export_check_catches_a_forward_the_tree_does_not_show(torch, tx):
    nn = torch.nn

    class Residual(nn.Module):        # a skip connection hidden in forward
        def __init__(self):
            super().__init__()
            self.fc1, self.act1, self.fc2, self.act2, self.out = (nn.Linear(6, 6), tx.QCFS(4), nn.Linear(6, 6),
                                                                   tx.QCFS(4), nn.Linear(6, 3))

        def forward(self, x):
            h = self.act1(self.fc1(x))
            return self.out(self.act2(self.fc2(h) + h))

    torch.manual_seed(0)
    model = Residual()
    with pytest.raises(ValueError, match="logits differ by up to .* not the sequence of its children"):
        tx.export(model, (6,))
    network = tx.export(model, (6,), check=False)      # the unchecked walk gives the plain chain
    assert [layer.name for layer in network.neuron_layers] == ["act1", "act2", "out"]
    assert tx.check_export(nn.Sequential(*model.children()), network) <= TOLERANCE

    class Broken(nn.Sequential):
        def forward(self, x):
            raise RuntimeError("needs CUDA")

    with pytest.raises(ValueError, match="forward failed on a float64 probe input.*needs CUDA.*check=False"):
        tx.export(Broken(nn.Linear(2, 2), tx.QCFS(2), nn.Linear(2, 2)), (2,))



def test_exporter_errors_name_the_module(torch, tx, pascal):
    nn = torch.nn
    cases = [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), (4,), "module '1': ReLU is not a QCFS activation"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), tx.QCFS(2), nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(2, 2)),
         (1, 3, 3), "module '2': unsupported module type Upsample; if it does nothing at inference pass skip=\\['2'\\]"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), tx.QCFS(2), nn.Flatten(), nn.Linear(2, 2)), (2, 3, 3),
         "module '0': Conv2d with groups=2"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), tx.QCFS(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 2)), (1, 6, 6),
         "module '2': AdaptiveAvgPool2d only with output size \\(1, 1\\)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), tx.QCFS(2), nn.Flatten(),
                       nn.Linear(2, 2)), (1, 3, 3), "module '1': BatchNorm without running statistics"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), tx.QCFS(2), nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(2, 2)),
         (1, 4, 4), "module '2': AvgPool2d with padding"),
        (nn.Sequential(nn.Linear(4, 4), tx.QCFS(2), nn.Flatten(0), nn.Linear(4, 2)), (4,), "module '2': Flatten only"),
        (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), (4,), "two weighted layers"),
        (pascal("vgg16", 4), (3, 32, 32), "module 'merge': unsupported module type TimeHelper; .*skip=\\['merge'\\]"),
    ]
    for model, shape, message in cases:
        with pytest.raises(ValueError, match=message):
            tx.export(model, shape)
    unnamed = tx.QCFS(2)
    del unnamed.L
    with pytest.raises(ValueError, match="module '1': QCFS has a threshold .* but no integer attribute L"):
        tx.export(nn.Sequential(nn.Linear(2, 2), unnamed, nn.Linear(2, 2)), (2,))
    bad = tx.QCFS(2)
    bad.thresh = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="'thresh' must hold one value"):
        tx.export(nn.Sequential(nn.Linear(2, 2), bad, nn.Linear(2, 2)), (2,))
    negative = tx.QCFS(2)
    with torch.no_grad():
        negative.thresh.fill_(-1.0)
    with pytest.raises(ValueError, match="module '1': layer '1': lam must be a finite number > 0"):
        tx.export(nn.Sequential(nn.Linear(2, 2), negative, nn.Linear(2, 2)), (2,))
    with pytest.raises(ValueError, match="needs a torch.nn.Module"):
        tx.export("model", (2,))


# ------------------------------------------------ bundled models (no torch)


@pytest.mark.parametrize("kind, minimum, levels", [("mlp", 0.97, [4]), ("cnn", 0.985, [4, 4])])
def test_bundled_digits_models(kind, minimum, levels):
    network = load(resolve_model_path(f"digits-{kind}"))
    assert network.input_levels == 16 and network.levels == levels
    _, _, x_test, y_test = load_digits_split()
    accuracy = np.mean(float_ann(network, x_test.reshape((-1,) + network.input_shape)).predictions == y_test)
    assert accuracy >= minimum, accuracy
