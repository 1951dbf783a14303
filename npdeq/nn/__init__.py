"""Neural-network building blocks on npdeq's tape: ``Module``, ``Parameter``, layers,
containers, initialisation and ``.npz`` saving (PyTorch's ``torch.nn`` names); the
optimizers are in :mod:`npdeq.optim`.
"""

from npdeq.nn import init
from npdeq.nn.containers import ModuleList, Sequential
from npdeq.nn.init import manual_seed
from npdeq.nn.conv import Conv1d, Conv2d
from npdeq.nn.embedding import Embedding
from npdeq.nn.layers import GELU, Flatten, Identity, Linear, ReLU, Sigmoid, Tanh
from npdeq.nn.normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from npdeq.nn.pooling import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from npdeq.nn.module import Module
from npdeq.nn.parameter import Parameter
from npdeq.nn.serialization import load, save

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Linear", "Conv2d", "GroupNorm",
           "LayerNorm", "ReLU", "Tanh", "GELU", "Sigmoid", "Identity", "Flatten", "AvgPool2d",
           "init", "manual_seed", "save", "load"]
__all__ += ["Conv1d", "AvgPool1d", "MaxPool1d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d",
            "Embedding"]

# PyTorch's torch.nn.functional, torch.nn.utils (gradient clipping), Dropout and the losses.
from npdeq.nn import functional, utils  # noqa: E402
from npdeq.nn.dropout import Dropout  # noqa: E402
from npdeq.nn.loss import CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: E402

__all__ += ["functional", "utils", "Dropout", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss"]
