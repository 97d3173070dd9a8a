"""
DropBlock2d and DropConnect in a small CNN
==========================================

DropBlock2d and DropConnect in a small CNN on scikit-learn's 8x8 digits (see
:doc:`/guide/masks`).

Run: python examples/cnn_dropblock_dropconnect.py   (about 10 s on a laptop CPU)

The DropBlock layer drops exactly the fraction p of each feature map in expectation (its seed rate
accounts for edges and overlaps) and the DropConnect layer masks the weights of the classifier.
The drop rates warm up linearly over the first steps.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from dropreg.data import load_digits_data
from dropreg.nn import DropBlock2d, DropConnectLinear, DropRateWarmup

torch.manual_seed(0)
data = load_digits_data(test_fraction=0.25, generator=torch.Generator().manual_seed(0))
X_train, X_test = data.X_train.view(-1, 1, 8, 8), data.X_test.view(-1, 1, 8, 8)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
    DropBlock2d(p=0.1, block_size=3),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
    nn.Flatten(),
    DropConnectLinear(32 * 8 * 8, 10, p=0.3),
)
print(model)
warmup = DropRateWarmup(model, warmup_steps=100)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

# %%
# Training: the drop rates warm up over the first 100 steps; test accuracy after each epoch.

accuracies = []
for epoch in range(6):
    model.train()
    for idx in torch.randperm(len(X_train)).split(64):
        loss = nn.functional.cross_entropy(model(X_train[idx]), data.y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        warmup.step()
    model.eval()  # dropout layers are the identity in eval mode
    with torch.no_grad():
        accuracy = (model(X_test).argmax(1) == data.y_test).float().mean()
    accuracies.append(float(accuracy))
    print(f"epoch {epoch}: last batch loss {loss.item():.3f}, test accuracy {accuracy:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(len(accuracies)), accuracies, "o-", label="test accuracy (dropout layers off)")
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_ylim(0, 1)
ax.legend(loc="lower right")
fig.tight_layout()
if plt.get_backend().lower() != "agg":
    plt.show()
