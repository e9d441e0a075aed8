"""Reusable torch modules (torch only): dropout family, normalizations, residuals, factory."""

from cnnlab.layers.conv import Conv2d, small_map_conv2d, stock_convs
from cnnlab.layers.drop import (
    Cutout,
    DropConnect,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    DropPath,
    SpatialDropout,
    cutout,
    drop_connect,
    drop_path,
    dropout,
    spatial_dropout,
)
from cnnlab.layers.factory import (
    get_act_layer,
    get_conv_layer,
    get_norm_layer,
    norm_names,
    register_norm,
)
from cnnlab.layers.norm import (
    BatchChannelNorm,
    EstimatedBatchNorm2d,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LayerNorm2d,
    LayerNormCHW,
    WSConv2d,
    default_groups,
    standardize_weight,
)
from cnnlab.layers.pool import GlobalAvgPool2d
from cnnlab.layers.residual import Residual, projection_shortcut

__all__ = [
    "BatchChannelNorm", "Conv2d", "Cutout", "DropConnect", "DropConnectConv2d", "DropConnectLinear",
    "DropPath", "Dropout", "EstimatedBatchNorm2d", "GlobalAvgPool2d", "GroupNorm",
    "InstanceNorm", "LayerNorm",
    "LayerNorm2d", "LayerNormCHW", "Residual", "SpatialDropout", "WSConv2d", "cutout",
    "default_groups", "drop_connect", "drop_path", "dropout", "get_act_layer",
    "get_conv_layer", "get_norm_layer", "norm_names", "projection_shortcut", "register_norm",
    "small_map_conv2d", "spatial_dropout", "standardize_weight", "stock_convs",
]
