"""What every runner view reads the same way: the runner's class, its model, the model's device, its ModelConfig.

V1 and V2 runners both expose ``get_model()`` (the model without any CUDA-graph
wrapper; ``model`` is the fallback) and ``model_config``; the views inherit
these from :class:`RunnerBasics` and differ only in the per-step facts.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import probes

__all__ = ["RunnerBasics"]


class RunnerBasics:
    """The runner-independent part of a :class:`~.view.RunnerView` (holds the runner as ``self.runner``)."""

    def __init__(self, runner: Any):
        self.runner = runner

    def runner_class(self) -> str:
        cls = type(self.runner)
        return f"{cls.__module__}.{cls.__qualname__}"

    def model(self) -> torch.nn.Module:
        get_model = getattr(self.runner, "get_model", None)
        model = get_model() if callable(get_model) else getattr(self.runner, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise probes.missing("model_runner.get_model() / model_runner.model")
        return model

    def device(self) -> torch.device:
        for param in self.model().parameters():
            return param.device
        return torch.device("cpu")

    def model_config(self) -> Any:
        try:
            return self.runner.model_config
        except AttributeError as exc:
            raise probes.missing(f"model_runner.model_config ({exc})") from exc
