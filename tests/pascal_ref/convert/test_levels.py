"""One reader of the L per activation: text, an int for all, or a list; one wording of errors."""
import numpy as np
import pytest

from pascal_ref.convert.levels import levels_per_activation

NAMES = ["conv1.2", "layer.act", "fc.act"]


@pytest.mark.parametrize("levels, expected", [
    ("4", [4, 4, 4]),
    ("8,4,1", [8, 4, 1]),
    (2, [2, 2, 2]),
    (np.int64(3), [3, 3, 3]),
    ([1, 2, 3], [1, 2, 3]),
    ((np.int32(8), 4, 2), [8, 4, 2]),
])
def test_accepted_forms(levels, expected):
    result = levels_per_activation(levels, NAMES, "net")
    assert result == expected and all(type(value) is int for value in result)


@pytest.mark.parametrize("levels, message", [
    ("four", "--levels: expected an integer or a comma-separated list of integers, got 'four'"),
    ("4,,4", "--levels: expected an integer or a comma-separated list of integers, got '4,,4'"),
    ("4,4", "--levels: 2 values but net has 3 activations (conv1.2, layer.act, fc.act); give one L per activation"),
    ([4] * 5, "--levels: 5 values but net has 3 activations"),
    ("0", "--levels: level for activation 'conv1.2' must be an integer >= 1, got 0"),
    ([4, 2.5, 1], "--levels: level for activation 'layer.act' must be an integer >= 1, got 2.5"),
    ([4, True, 1], "--levels: level for activation 'layer.act' must be an integer >= 1, got True"),
    (None, "--levels: expected an int or a list of ints, one per activation, got None"),
])
def test_errors_name_the_option_the_network_and_the_activation(levels, message):
    with pytest.raises(ValueError) as error:
        levels_per_activation(levels, NAMES, "net", "--levels")
    assert message in str(error.value)


def test_long_networks_are_named_by_their_ends():
    names = [f"act{i}" for i in range(17)]
    with pytest.raises(ValueError, match=r"resnet18 has 17 activations \(act0 \.\. act16\)"):
        levels_per_activation([4, 4], names, "resnet18")
