"""Front ends: PyTorch export and the reference implementation's architectures (VGG-16, ResNet-18/34)."""
