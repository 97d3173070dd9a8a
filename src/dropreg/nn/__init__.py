"""Dropout-family layers built on the mask laws of :mod:`dropreg.masks`.

Pure functions live in :mod:`dropreg.nn.functional`; ``nn.Module`` wrappers and the drop-rate
schedule are re-exported here.

Example:
    >>> import torch
    >>> from dropreg.nn import DropBlock2d
    >>> layer = DropBlock2d(p=0.1, block_size=7, generator=torch.Generator().manual_seed(0))
    >>> layer(torch.ones(8, 4, 14, 14)).shape
    torch.Size([8, 4, 14, 14])
"""

from dropreg.nn import functional
from dropreg.nn.functional import (
    drop_block1d,
    drop_block2d,
    drop_block3d,
    drop_connect,
    drop_connect_conv2d,
    drop_connect_linear,
    dropout,
    gaussian_dropout,
    mask_dropout,
)
from dropreg.nn.modules import (
    DropBlock1d,
    DropBlock2d,
    DropBlock3d,
    DropConnectConv2d,
    DropConnectLinear,
    DropLayer,
    Dropout,
    GaussianDropout,
    MaskDropout,
)
from dropreg.nn.schedule import DropRateWarmup
from dropreg.nn.weight_drop import WeightDrop

__all__ = [
    "functional",
    "dropout",
    "gaussian_dropout",
    "drop_block1d",
    "drop_block2d",
    "drop_block3d",
    "drop_connect",
    "drop_connect_linear",
    "drop_connect_conv2d",
    "mask_dropout",
    "DropLayer",
    "Dropout",
    "GaussianDropout",
    "DropBlock1d",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectLinear",
    "DropConnectConv2d",
    "MaskDropout",
    "DropRateWarmup",
    "WeightDrop",
]
