"""Files in and out: the .npz model format, safe .npz/.pth readers, data sets, bundled models."""
