"""Model families and the registry."""

from cnnlab.models.registry import (
    count_flops,
    count_params,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "count_flops", "count_params", "create_model", "list_models", "model_info", "register_model",
]
