"""CFG parallelism: the two halves of the gang run the two passes of classifier-free guidance at once.

world_size = cfg_degree (2) x ring x ulysses. Ranks [0, k) run the conditional pass and ranks
[k, 2k) the unconditional one, each half sequence-parallel over its own k ranks. diffusers' loop
still calls the step's expert twice, in the cache contexts "cond" then "uncond", and combines
`uncond + g (cond - uncond)` itself; a hook on each expert runs only this half's pass:

- "cond" call: the conditional half computes its prediction and returns it; the unconditional half
  returns an empty tensor of the prediction's shape, which the loop holds as the conditional one.
- "uncond" call: the unconditional half computes its prediction (so both halves compute at the same
  time); then rank i and rank i + k swap predictions (one all_gather over the pair), and the
  unconditional half writes the conditional prediction into the tensor it returned before.

Every rank ends the step with the same two predictions, so with the same latents. Both calls must
come every step: an expert at guidance exactly 1.0 has no unconditional pass, and such jobs are
refused before they start (`wan.guidance.cfg_parallel_refusal`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

HOOK = "wan22_cfg_parallel"
COND, UNCOND = "cond", "uncond"  # the cache contexts diffusers' Wan pipelines open around the two passes


class _NoState(BaseState):
    def reset(self, *args: Any, **kwargs: Any) -> None:
        pass


class PassSplit(ModelHook):
    """Runs only this half's pass of an expert and swaps predictions with the other half."""

    _is_stateful = True  # so diffusers hands it the pipeline's cache context ("cond" / "uncond")

    def __init__(self, half: int, pair: dist.ProcessGroup) -> None:
        super().__init__()
        self.half, self.pair = half, pair  # half 0 runs "cond", half 1 "uncond"
        self.contexts = StateManager(_NoState)
        self.held: torch.Tensor | None = None  # this step's conditional prediction (or the empty tensor for it)

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        name = self.contexts.context.name
        if name == COND:
            return self._cond(module, args, kwargs)
        if name == UNCOND:
            return self._uncond(module, args, kwargs)
        raise RuntimeError(f"CFG parallelism needs the 'cond' and 'uncond' cache contexts, got {name!r}")

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.held = None
        return module

    def _cond(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        # Raised on every rank alike: both halves hold a tensor from the step before.
        if self.held is not None:
            raise RuntimeError("CFG parallelism: a step ran without its unconditional pass (guidance 1.0?)")
        if self.half == 0:
            output = self.fn_ref.original_forward(*args, **kwargs)
            self.held = _prediction(output)
            return output
        self.held = _empty_prediction(module, args, kwargs)
        return _as_output(self.held, kwargs)

    def _uncond(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        held, self.held = self.held, None
        if held is None:
            raise RuntimeError("CFG parallelism: an unconditional pass without its conditional one")
        mine = held if self.half == 0 else _prediction(self.fn_ref.original_forward(*args, **kwargs))
        cond, uncond = swap(mine, self.pair)
        if self.half == 0:
            return _as_output(uncond, kwargs)
        if (held.shape, held.dtype) != (cond.shape, cond.dtype):
            raise RuntimeError(
                f"CFG parallelism: prediction {cond.shape} {cond.dtype}, expected {held.shape} {held.dtype}"
            )
        held.copy_(cond)  # the tensor the loop holds as this step's conditional prediction
        return _as_output(mine, kwargs)


def swap(mine: torch.Tensor, pair: dist.ProcessGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) prediction on both ranks of the pair, from each one's own."""
    parts = [torch.empty_like(mine) for _ in range(2)]
    dist.all_gather(parts, mine.contiguous(), group=pair)
    return parts[0], parts[1]


def split_passes(expert: nn.Module, half: int, pair: dist.ProcessGroup) -> None:
    """Register the hook outermost on `expert` (after its context-parallel hooks)."""
    HookRegistry.check_if_exists_or_initialize(expert).register_hook(PassSplit(half, pair), HOOK)


def reset_passes(experts: list[nn.Module]) -> None:
    """Forget a step a failed job left half done."""
    for expert in experts:
        registry = getattr(expert, "_diffusers_hook", None)  # diffusers' HookRegistry, where there is one
        hook = registry.get_hook(HOOK) if registry is not None else None
        if hook is not None:
            hook.reset_state(expert)


def _prediction(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def _as_output(prediction: torch.Tensor, kwargs: dict[str, Any]) -> Any:
    return Transformer2DModelOutput(sample=prediction) if kwargs.get("return_dict", True) else (prediction,)


def _empty_prediction(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    """Room for the other half's prediction: the latents' shape with the expert's output channels
    (i2v takes 36 channels in, gives 16 out), in the dtype the expert computes in."""
    latents = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    channels = module.config.out_channels or module.config.in_channels
    return latents.new_empty((latents.shape[0], channels, *latents.shape[2:]))
