"""TEST STAND-IN for the torch-hub repository harritaylor/torchvggish, with RANDOM WEIGHTS.

``vggish()`` builds the real VGGish network (the PyPI port ``torchvggish==0.2``, whose layers and
parameter names are those of the hub repository's VGGish) with randomly initialised weights, and
preprocesses audio with that package's ``vggish_input``, the preprocessing of the hub repository. It
takes the hub repository's keyword arguments and refuses ``pretrained=True`` and ``postprocess=True``:
nothing is ever downloaded. Embeddings it gives test the code path, not VGGish's features.
"""

dependencies = ["torch", "numpy", "resampy"]


def vggish(pretrained=True, preprocess=True, postprocess=True, device=None, progress=True):
    import torch
    from torchvggish import torchvggish as port
    from torchvggish import vggish_input

    if pretrained or postprocess:
        raise ValueError("test stand-in: random weights and no PCA only (it never downloads)")
    device = torch.device(device or "cpu")

    class RandomVGGish(port.VGG):
        def __init__(self):
            super().__init__(port.make_layers(), postprocess=False)
            self.device = device
            self.preprocess = preprocess

        def forward(self, x, fs=None):
            if self.preprocess:
                x = vggish_input.waveform_to_examples(x, fs)
            return port.VGG.forward(self, x.to(self.device))

    return RandomVGGish().to(device)
