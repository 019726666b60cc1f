"""A sweep: one ``featlt extract`` per backbone, outputs named by a template, failures recorded.

``-o 'features/{model}-{weights}-{layer}-{resolution}.h5'`` names each backbone's file; two
backbones that would write the same file are refused before any work. A backbone that fails (an
unknown model name, missing weights, unreadable data) is recorded and the sweep goes on; the caller
reports the failures at the end.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from featlt.errors import FeatltError
from featlt.runtime import log

TEMPLATE_FIELDS = ("model", "weights", "layer", "resolution")


@dataclass(frozen=True)
class SweepFailure:
    """A backbone the sweep could not extract, and why."""

    model: str
    output: Path
    error: str


def template_values(model: str, weights: str | None, layer: str | None,
                    resolution: int | None) -> dict[str, str]:
    """The template fields of one run, as file-name-safe text.

    ``weights``: the option's value (a file's stem, a folder's name), ``default`` when not given
    (zoo names fix their own); ``layer``: ``prelogits`` by default; ``resolution``: ``native`` by
    default.
    """
    if weights is None:
        weights_text = "default"
    elif weights.startswith("local-dir:"):
        weights_text = Path(weights.split(":", 1)[1]).name
    elif weights in ("hub", "random"):
        weights_text = weights
    else:
        weights_text = Path(weights).stem
    values = {"model": model, "weights": weights_text, "layer": layer or "prelogits",
              "resolution": "native" if resolution is None else str(resolution)}
    return {key: re.sub(r"[^A-Za-z0-9._+=-]", "_", value) for key, value in values.items()}


def output_paths(template: Path, models: Sequence[str], weights: str | None, layer: str | None,
                 resolution: int | None) -> list[Path]:
    """Each model's output file; refuses unknown fields and two models writing one file.

    Raises:
        FeatltError: naming the unknown field, or the colliding models and their file.
    """
    text = str(template)
    fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    unknown = sorted(fields - set(TEMPLATE_FIELDS))
    if unknown:
        raise FeatltError(
            f"-o {text}: unknown template field {{{unknown[0]}}}; use "
            + ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
        )
    paths = [Path(text.format(**template_values(m, weights, layer, resolution)))
             for m in models]
    seen: dict[Path, str] = {}
    for model, path in zip(models, paths, strict=True):
        if path in seen:
            raise FeatltError(
                f"-o {text}: --model {seen[path]} and --model {model} would both write {path}; "
                "put {model} (or another field that differs) in the output template"
            )
        seen[path] = model
    return paths


def run_sweep(
    config: object, models: Sequence[str], outputs: Sequence[Path],
    extract: Callable[[object], object],
) -> tuple[list[object], list[SweepFailure]]:
    """Run ``extract`` for every (model, output); a failure is logged and the sweep goes on.

    Args:
        config: an :class:`~featlt.extract.pipeline.ExtractConfig`; model and output replaced.
    Returns:
        (results of the runs that finished, failures).
    """
    results, failures = [], []
    for model, output in zip(models, outputs, strict=True):
        run = dataclasses.replace(config, model=model, output=output)  # type: ignore[type-var]
        try:
            results.append(extract(run))
        except Exception as err:  # one backbone's failure, whatever it is, ends only its run
            text = str(err) if isinstance(err, FeatltError) else f"{type(err).__name__}: {err}"
            log.error("sweep: --model %s failed: %s", model, text)
            failures.append(SweepFailure(model=model, output=output, error=text))
    return results, failures
