"""
Diagnose a BatchNorm ResNet and a transformer
=============================================

Diagnose two models people train: a small ResNet with BatchNorm and a transformer encoder.

Run: python examples/diagnose_models.py   (a few seconds on a laptop CPU)

`dropreg.curvature.diagnose` gives, with dropout off (clean) and for the expected dropout loss over
8 fixed masks: the top Hessian eigenvalues with their residuals, the trace with its standard
error, the spectral density, and the alignment of the dropout gradient-noise covariance with the
Hessian (Zhang, Zhou & Xu 2022). The data come from a DataLoader; the models stay untouched
(BatchNorm running statistics included). Each figure is written to the current folder.
Replace the models and the loaders by your own.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dropreg.curvature import diagnose

g = torch.Generator().manual_seed(0)


class Block(nn.Module):
    """A residual block: conv-BN-ReLU-conv-BN plus the identity."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class Classifier(nn.Module):
    """Token embedding, one transformer encoder layer (attention dropout too), mean pooling."""

    def __init__(self, vocab=20, d=16, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)).mean(1))


torch.manual_seed(0)  # layer initialisation of this example
resnet = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                       Block(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                       nn.Linear(8, 10)).eval()
images = torch.randn(32, 3, 16, 16, generator=g)
labels = torch.randint(0, 10, (32,), generator=g)
transformer = Classifier().eval()
tokens = torch.randint(0, 20, (32, 8), generator=g)
classes = torch.randint(0, 3, (32,), generator=g)

for name, model, (X, y) in (("resnet", resnet, (images, labels)),
                            ("transformer", transformer, (tokens, classes))):
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    result = diagnose(model, nn.functional.cross_entropy, loader, k=3, noise_samples=8,
                      trace_matvecs=9, lanczos_steps=8, generator=g)
    print(f"== {name}")
    print(result.summary())
    result.plot().savefig(f"diagnose_{name}.png", dpi=100)
