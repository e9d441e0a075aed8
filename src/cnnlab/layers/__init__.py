"""Reusable torch modules (torch only)."""

from cnnlab.layers.factory import get_act_layer, get_norm_layer

__all__ = ["get_act_layer", "get_norm_layer"]
