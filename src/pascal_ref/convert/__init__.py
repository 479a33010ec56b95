"""Front ends: PyTorch export (``torch_export``), the reference implementation's architectures
(``architectures``: VGG-16, ResNet-18/34) built from state dicts (``state_dict``), and the L per
activation (``levels``); ``templates`` is the old import path of the architectures."""
