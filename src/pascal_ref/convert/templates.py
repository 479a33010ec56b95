"""Old import path of the architecture templates and the state-dict reader.

The templates live in :mod:`pascal_ref.convert.architectures`, the reading
of ``.npz``/``.pth`` state dicts in :mod:`pascal_ref.convert.state_dict`;
random weights in the template layout are
:func:`pascal_ref.testing.random_state_dict` (``pascal_ref.testing`` sits
above ``convert`` in the layers, so it is not re-exported here).
"""
from __future__ import annotations

from pascal_ref.convert.architectures import (
    ARCHITECTURES,
    NUM_CLASSES,
    RESNET_BLOCKS,
    RESNET_STAGES,
    VGG16_CONFIG,
    activation_names,
    build,
    default_input_shape,
    expected_keys,
)
from pascal_ref.convert.state_dict import StateDictError, load_state_dict, load_state_dict_npz

__all__ = ["ARCHITECTURES", "NUM_CLASSES", "StateDictError", "build", "expected_keys", "load_state_dict_npz",
           "load_state_dict", "activation_names", "default_input_shape", "VGG16_CONFIG", "RESNET_BLOCKS",
           "RESNET_STAGES"]
