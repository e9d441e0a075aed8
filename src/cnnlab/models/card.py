"""The README.md model card of a model folder, rendered from its card (the flat dict of
config.json): YAML front matter as the Hugging Face Hub reads it (library, tags, datasets,
metrics), then what the model is, how well it does, what it was trained on and how, and
how to use it."""

from __future__ import annotations

import json
from collections.abc import Mapping

# summary metrics worth a row, in this order (accuracies in [0, 1] are shown as %)
METRIC_ROWS = ("test_acc", "test_acc_no_tta", "best_val_acc", "final_train_acc", "test_loss",
               "epochs_completed", "steps", "wall_time", "device", "precision")


def _value(key: str, v) -> str:
    if isinstance(v, float) and "_acc" in key and 0 <= v <= 1:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:.4g}" + (" s" if key == "wall_time" else "")
    return str(v)


def _metric_rows(metrics: Mapping) -> list[str]:
    keys = [k for k in METRIC_ROWS if metrics.get(k) is not None]
    keys += [k for k, v in metrics.items() if k not in keys and isinstance(v, int | float)
             and not isinstance(v, bool) and k not in ("params",)][:8]
    return [f"| {k} | {_value(k, metrics[k])} |" for k in keys]


def _rounded(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _data_text(data) -> str:
    """``{"spec": ..., "sizes": {"train": 36000, ...}, "split_seed": 0}`` in words."""
    if not isinstance(data, Mapping):
        return str(data)
    parts = []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            v = ", ".join(f"{name} {n:,}" if isinstance(n, int) else f"{name} {n}"
                          for name, n in v.items())
        parts.append(f"{k}: {v}")
    return "; ".join(parts)


def render_card(card: Mapping) -> str:
    """Markdown with YAML front matter; ``card`` as :func:`cnnlab.models.hub.read_card`
    returns it."""
    name, dataset = card["name"], card.get("dataset")
    training = dict(card.get("training") or {})
    source = card.get("tag") or "MODEL_DIR"
    lines = ["---", "library_name: cnnlab", "pipeline_tag: image-classification",
             f"tags: [image-classification, cnnlab, {name}]"]
    if dataset:
        lines.append(f"datasets: [{dataset}]")
    lines += ["metrics: [accuracy]", "---", ""]
    lines.append(f"# {card.get('title') or name + (f' on {dataset}' if dataset else '')}")
    lines.append("")
    h, w = card["input_size"]
    lines.append(f"`{name}` ({card.get('params', 0):,} parameters, {card['num_classes']} "
                 f"classes) built by cnnlab: `cnnlab.create_model({name!r}, "
                 f"num_classes={card['num_classes']}"
                 + "".join(f", {k}={v!r}" for k, v in (card.get("args") or {}).items())
                 + ")`.")
    lines.append(f"Input: {h}x{w} {card.get('image_mode') or ''} images (resized "
                 f"{card.get('resize', 'bilinear')}), pixels in [0, 1]"
                 + (f" normalized with mean {_rounded(card['mean'])} and std "
                    f"{_rounded(card['std'])}" if card.get("mean") is not None else "") + ".")
    if card.get("classes"):
        lines.append(f"Classes: {', '.join(card['classes'])}.")
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|", *_metric_rows(metrics)]
        if training.get("metrics_note"):
            lines += ["", training["metrics_note"]]
    if training or dataset:
        lines += ["", "## Training", ""]
        data = training.get("data")
        if dataset or data:
            lines.append(f"- data: {dataset or ''}" + (f" ({_data_text(data)})" if data else ""))
        if "seed" in training:
            lines.append(f"- seed: {training['seed']}")
        recipe = training.get("recipe")
        if isinstance(recipe, str):
            lines.append(f"- recipe: {recipe}")
        elif isinstance(recipe, Mapping) and recipe:
            lines.append("- recipe (settings that differ from cnnlab's defaults):")
            lines += [f"  - `{k} = {json.dumps(v)}`" for k, v in recipe.items()]
        if training.get("command"):
            lines += ["- command:", "", "```bash", str(training["command"]), "```"]
        if training.get("machine"):
            lines.append(f"- machine: {training['machine']}")
    lines += ["", "## Use", "", "```python", "import cnnlab", "",
              f"model = cnnlab.create_model({name!r}, pretrained={source!r})",
              f"model = cnnlab.load_pretrained({source!r})  # the same, with model.card",
              "```", "", "```bash", f"cnnlab predict {source} image.png", "```", ""]
    versions = card.get("versions") or {}
    if versions:
        lines.append("Saved by " + ", ".join(f"{k} {v}" for k, v in versions.items())
                     + (f" on {card['created']}" if card.get("created") else "") + ".")
        lines.append("")
    return "\n".join(lines)
