"""
Layer-wise neural collapse: NC1 falls with depth
================================================

Neural collapse is usually measured at the penultimate layer, but the
within-class variability shrinks progressively through the network: each
layer separates the classes a little more than the one before it. Papyan
(2020) saw it in the spectra of deep nets, He & Su (2023, *A law of data
separation*) found the separation fuzziness to fall geometrically with depth,
and Rangamani et al. (2023, *Feature learning in deep classifiers through
intermediate neural collapse*) measured NC1 at every layer of trained
classifiers. This page reproduces the qualitative figure of those papers —
NC1 against depth on a log axis — on scikit-learn's bundled 8x8 digits, for a
deep MLP and for sknc's small CNN, with :func:`sknc.model_nc_report` measuring
every layer in one streamed pass per layer (forward hooks, no feature matrix
kept).

Fast path: 4 hidden layers of width 64 and 60 epochs (MLP) / 40 epochs (CNN),
about 5 seconds on two CPU cores; the papers train deeper nets for hundreds of
epochs on CIFAR-10, where the decrease is steeper.
"""

# %%
# Data and a deep MLP trained with skorch
# ---------------------------------------
# Any ``torch.nn.Module`` works; here a plain ``nn.Sequential`` trained by a
# plain skorch ``NeuralNetClassifier`` with weight decay, as a user would.
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch import NeuralNetClassifier

import sknc
from sknc.plotting import plot_layerwise

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

torch.manual_seed(0)
width, depth = 64, 4
layers = []
for i in range(depth):
    layers += [torch.nn.Linear(64 if i == 0 else width, width), torch.nn.ReLU()]
mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
net = NeuralNetClassifier(mlp, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.05,
                          optimizer__momentum=0.9, optimizer__weight_decay=5e-4, max_epochs=60, batch_size=64,
                          train_split=None, verbose=0)
net.fit(X_train, y_train)
print(f"MLP test accuracy: {net.score(X_test, y_test):.3f}")

# %%
# NC of every layer in one call
# -----------------------------
# Layer names come from ``model.named_modules()``; ``"0:input"`` is the input
# of module ``0`` (the raw pixels), ``"1"`` the output of the first ReLU, and
# so on. The last name, the input of the final ``nn.Linear``, is the
# penultimate layer: its classifier ``W, b`` is found automatically, so NC3 and
# NC4 are filled in there (NaN elsewhere: those layers have no classifier).
names = ["0:input"] + [str(2 * i + 1) for i in range(depth - 1)] + [f"{2 * depth}:input"]
report = sknc.model_nc_report(net.module_, X_train, y_train, layers=names)
report.index = ["pixels"] + [f"ReLU {i + 1}" for i in range(depth)]
print(report[["nc1", "nc2_h", "cdnv", "nc4"]].to_string(float_format=lambda v: f"{v:.4g}"))

nc1 = report["nc1"].to_numpy()
print("NC1 decreases layer by layer:", bool(np.all(np.diff(nc1) < 0)))
print(f"NC1 shrinks by {nc1[0] / nc1[-1]:.1f}x from the pixels to the penultimate layer")
fig = plot_layerwise(report, metrics=["nc1", "cdnv", "nc2_h"])
_ = fig.axes[0].set_title("Deep MLP on digits: NC across depth (training data)")

# %%
# The same for a small CNN
# ------------------------
# sknc's :class:`sknc.nn.SmallCNN` backbone (three conv blocks and a linear
# feature layer) with a linear head, trained on the 8x8 images. The default
# ``reduce='avg'`` would average each conv map over space (global average
# pooling), which throws away where the strokes are in early layers; the
# layer-wise papers measure the whole activation, so ``reduce='flatten'`` here
# (at most 16 x 8 x 8 = 1024 dimensions per layer).
from sknc.nn import SmallCNN

torch.manual_seed(0)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = SmallCNN(in_channels=1, feature_dim=64, width=16)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.backbone(x.view(-1, 1, 8, 8)))


cnn = NeuralNetClassifier(CNN, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.05,
                          optimizer__momentum=0.9, optimizer__weight_decay=5e-4, max_epochs=40, batch_size=64,
                          train_split=None, verbose=0)
cnn.fit(X_train, y_train)
print(f"CNN test accuracy: {cnn.score(X_test, y_test):.3f}")
print("layers:", sknc.extract.layer_names(cnn.module_)[:12], "...")

# %%
# Every block's output, then the penultimate features (the head's input).
blocks = [name for name, module in cnn.module_.named_modules() if isinstance(module, torch.nn.ReLU)]
cnn_report = sknc.model_nc_report(cnn.module_, X_train, y_train, layers=["backbone:input", *blocks, "head:input"],
                                  reduce="flatten")
print(cnn_report[["nc1", "nc2_h", "nc4"]].to_string(float_format=lambda v: f"{v:.4g}"))
fig = plot_layerwise(cnn_report, metrics=["nc1", "cdnv"])
_ = fig.axes[0].set_title("Small CNN on digits: NC across depth (training data)")

# %%
# Reading the figures
# -------------------
# In the MLP, NC1 and the class-distance-normalised variance (CDNV) fall at
# every layer, from 0.91 at the pixels to about 0.11 at the penultimate layer;
# in the CNN they fall through every conv block (0.91 to about 0.075), and the
# final linear feature map leaves NC1 about where the last block put it. Depth
# keeps separating the classes, as the papers report. NC2 (distance of the class means to a simplex ETF)
# need not fall monotonically; it is the last layers that approach the ETF.
# With longer training and more layers the decrease becomes the clean
# geometric law He & Su describe.
