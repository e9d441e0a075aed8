"""Data sources: where images come from, how they are fetched, verified and cached.

``load_dataset("cifar10")`` reads a spec string and calls the registered source (see
:mod:`cnnlab.data.sources.registry`); one module per source (``cifar``, ``mnist``,
``digits``, ``folder``) holds its registration, beside the shared download
(``download``) and decode-cache (``cache``) code.  Importing this package loads no torch.
"""

from cnnlab.data.sources.registry import (
    KINDS,
    SourceEntry,
    SourceRequest,
    Spec,
    known_specs,
    list_sources,
    load_dataset,
    parse_spec,
    register_source,
    specs_help,
)

__all__ = [
    "KINDS", "SourceEntry", "SourceRequest", "Spec", "known_specs", "list_sources",
    "load_dataset", "parse_spec", "register_source", "specs_help",
]
