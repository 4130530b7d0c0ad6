"""The first-order meta step (``meta.hypergrad.mode: fd``) runs where plain fine-tuning runs (issue 13, item 2).

``fd`` evaluates the loss vector twice under ``no_grad`` (the RNG replayed) and needs neither forward-mode
AD nor a double backward, so it must work with the fused CPU flash kernel of
``F.scaled_dot_product_attention``, a ``torch.compile``d backbone, non-reentrant activation checkpointing
and CPU autocast (bf16; fp16 with a GradScaler), alone and together. Each test trains with meta steps, then
compares the ``fd`` hypergradient with the official ``autograd`` mode's on the same weights. In float64
(the toys have no dropout) fd's error is about 1e-9 relative, so rtol 1e-4 is a fair bar; under autocast
the primary gradient ``v`` comes from a forward that rounds to 8-11 bits (fd's own forwards run in float32)
and the bar is 2e-2 (a dropped or wrong mixed term is off by about 1: here the whole hypergradient is the
mixed term). DDP with fd: tests/distributed/test_ddp.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch._dynamo.backends.registry import lookup_backend
from torch.nn.attention import SDPBackend, sdpa_kernel

from meltr import CombinerConfig, HypergradConfig, LossContractError, MetaConfig, MetaLearner, OptimConfig, Trainer
from meltr.meta_learner import unwrap_model
from tests.toy_models import TinySDPA, small_meltr, token_batches, toy_trainer_config

FD_RTOL = 1e-4  # fd against autograd, float64
AMP_RTOL = 2e-2  # fd under autocast against autograd in float64
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _meta_cfg(mode: str) -> MetaConfig:
    """A meta step every step, Adam without clipping (the hypergradient reaches the optimiser as computed)."""
    return MetaConfig(every=1, hypergrad=HypergradConfig(mode=mode), optim=OptimConfig(name="adam", lr=1e-2, schedule="constant"))


def _meta(model: nn.Module, mode: str, *, dtype: torch.dtype = torch.float64, amp: torch.dtype | None = None) -> MetaLearner:
    torch.manual_seed(1)  # the same combiner weights whatever the mode
    meta = MetaLearner.for_model(model, CombinerConfig(name="meltr", meltr=small_meltr()), _meta_cfg(mode), amp_dtype=amp)
    meta.combiner.to(dtype)
    return meta


def _hypergrad(model: nn.Module, mode: str, batch: Any, **kw: Any) -> Tensor:
    """The hypergradient ``[n_meta]`` one meta step writes to a fresh combiner, read as its optimiser steps."""
    meta = _meta(model, mode, **kw)
    got: list[Tensor] = []
    meta.optimizer.register_step_pre_hook(lambda *_: got.extend(p.grad.detach().flatten().clone() for p in meta.meta_params))
    meta.step(model, batch)
    assert got, "the meta step did not reach the meta optimiser"
    return torch.cat(got)


def _train(model: nn.Module, meta: MetaLearner, batches: list[dict[str, Tensor]]) -> list[dict[str, float]]:
    """The plug-in's own loop (backbone step, then ``maybe_step``); the meta-step stats of every step."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    stats = []
    for batch in batches:
        meta.combine(model(batch)).backward()
        opt.step()
        opt.zero_grad()
        stats.append(meta.maybe_step(model, batch))
    return stats


def _assert_meta_steps_ran(stats: list[dict[str, Any]], n: int) -> None:
    norms = [s["hypergrad_norm"] for s in stats if "hypergrad_norm" in s]
    assert len(norms) == n, stats
    assert all(math.isfinite(x) and x > 0 for x in norms), norms


def _assert_rel_close(got: Tensor, ref: Tensor, rtol: float) -> None:
    """``|got - ref| <= rtol |ref|`` over the whole vector (single small entries may lose digits)."""
    assert bool(torch.isfinite(got).all()), got
    err = float((got.double() - ref.double()).norm() / ref.double().norm())
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


def _uses_flash_cpu(out: Tensor) -> bool:
    """Whether ``out`` was computed through the fused CPU flash-attention kernel (its backward node)."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "FlashAttentionForCpu" in type(node).__name__:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


def _counting_backend(calls: list[bool]) -> Callable:
    """``aot_eager`` that records, per call of a compiled graph, whether grad mode was on."""

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable:
        compiled = lookup_backend("aot_eager")(gm, example_inputs)

        def run(*args: Any) -> Any:
            calls.append(torch.is_grad_enabled())
            return compiled(*args)

        return run

    return backend


# ---------------------------------------------------------------------------------------------------- one at a time


@pytest.mark.parametrize("mask", [False, True], ids=["no_mask", "float_mask"])
def test_fd_meta_step_runs_in_the_fused_cpu_flash_kernel(mask: bool) -> None:
    torch.manual_seed(0)
    model = TinySDPA(mask=mask).double()
    batches = token_batches(3, 4)
    # Only the flash kernel is allowed: SDPA raises where it cannot run it (no silent math fallback).
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        assert _uses_flash_cpu(model(batches[0])["cls"])
        _assert_meta_steps_ran(_train(model, _meta(model, "fd"), batches), 3)
        fd = _hypergrad(model, "fd", batches[0])
        # jvp and autograd route SDPA to the math kernel themselves (the flash kernel has neither
        # forward-mode AD nor a double backward), so they run inside the same context.
        jvp = _hypergrad(model, "jvp", batches[0])
        ref = _hypergrad(model, "autograd", batches[0])
    torch.testing.assert_close(jvp, ref, rtol=1e-9, atol=1e-12)
    _assert_rel_close(fd, ref, FD_RTOL)


def test_fd_meta_step_with_non_reentrant_checkpointing() -> None:
    torch.manual_seed(0)
    model = TinySDPA(mask=True, checkpointing=True).double()
    batches = token_batches(3, 4)
    _assert_meta_steps_ran(_train(model, _meta(model, "fd"), batches), 3)
    plain = TinySDPA(mask=True).double()
    plain.load_state_dict(model.state_dict())
    fd = _hypergrad(model, "fd", batches[0])
    ref = _hypergrad(model, "autograd", batches[0])
    _assert_rel_close(fd, ref, FD_RTOL)
    torch.testing.assert_close(_hypergrad(model, "jvp", batches[0]), ref, rtol=1e-9, atol=1e-12)
    # recomputation changes nothing: the same weights without checkpointing give the same fd hypergradient
    torch.testing.assert_close(fd, _hypergrad(plain, "fd", batches[0]), rtol=1e-12, atol=1e-15)


def test_fd_meta_step_through_a_compiled_backbone() -> None:
    calls: list[bool] = []
    torch.manual_seed(0)
    model = TinySDPA(mask=True).double()
    compiled = torch.compile(model, backend=_counting_backend(calls))
    batches = token_batches(3, 4)
    _assert_meta_steps_ran(_train(compiled, _meta(compiled, "fd"), batches), 3)
    calls.clear()
    fd = _hypergrad(compiled, "fd", batches[0])
    # the finite-difference forwards (no_grad, parameters swapped by functional_call over the
    # ``_orig_mod.`` names) ran the compiled graphs, and so did the primary gradient's forward
    assert False in calls and True in calls, calls
    _assert_rel_close(fd, _hypergrad(model, "autograd", batches[0]), FD_RTOL)  # reference: eager


def test_unwrap_model_keeps_a_compiled_model_and_peels_a_compiled_data_parallel_wrapper() -> None:
    model = TinySDPA()
    compiled = torch.compile(model)  # wrapping compiles nothing yet
    assert unwrap_model(compiled) is compiled
    assert unwrap_model(nn.DataParallel(compiled)) is compiled  # nanoGPT's order: DDP(compile(model))
    # torch.compile(DDP(model)): the meta step must reach the model under DDP (its reducer must not see
    # the meta step's passes), so the compiled wrapper goes with it
    assert unwrap_model(torch.compile(nn.DataParallel(model))) is model


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_fd_meta_step_under_cpu_autocast(amp: str) -> None:
    dtype = AMP_DTYPES[amp]
    torch.manual_seed(0)
    model = TinySDPA(mask=True)
    seen: set[tuple[bool, torch.dtype]] = set()  # (grad mode, dtype) of the attention projection's outputs
    model.qkv.register_forward_hook(lambda m, i, o: seen.add((torch.is_grad_enabled(), o.dtype)))
    trainer = Trainer(model, toy_trainer_config(amp=amp, max_steps=3, meta=_meta_cfg("fd")), token_batches(3, 4), device="cpu")
    assert trainer.amp_dtype == dtype
    # fp16 scales its gradients; a GradScaler built for CUDA would disable itself on CPU
    assert (trainer.scaler is not None and trainer.scaler.is_enabled()) == (amp == "fp16")
    batches = token_batches(3, 4)
    _assert_meta_steps_ran([trainer.train_step([b]) for b in batches], 3)
    # the backbone step and the meta step's primary gradient (grad) ran in the AMP dtype, the finite
    # differences (no_grad) in the parameters' float32 (meltr.hypergrad.full_precision), and the loss
    # vector they combine is float32
    assert seen == {(True, dtype), (False, torch.float32)}, seen
    assert trainer.meta.last_losses is not None and trainer.meta.last_losses.dtype == torch.float32
    fd = _hypergrad(model, "fd", batches[0], dtype=torch.float32, amp=dtype)
    _assert_rel_close(fd, _hypergrad(copy.deepcopy(model).double(), "autograd", batches[0]), AMP_RTOL)


# ---------------------------------------------------------------------------------------------------- together


def test_fd_meta_step_compiled_checkpointed_flash_bf16_together() -> None:
    calls: list[bool] = []
    torch.manual_seed(0)
    model = TinySDPA(mask=True, checkpointing=True)
    seen: set[tuple[bool, torch.dtype]] = set()  # as in test_fd_meta_step_under_cpu_autocast
    model.qkv.register_forward_hook(lambda m, i, o: seen.add((torch.is_grad_enabled(), o.dtype)))
    compiled = torch.compile(model, backend=_counting_backend(calls))
    batches = token_batches(3, 4)
    trainer = Trainer(compiled, toy_trainer_config(amp="bf16", max_steps=3, meta=_meta_cfg("fd")), batches, device="cpu")
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        _assert_meta_steps_ran([trainer.train_step([b]) for b in batches], 3)
        assert False in calls and True in calls, calls
        assert seen == {(True, torch.bfloat16), (False, torch.float32)}, seen
        fd = _hypergrad(compiled, "fd", batches[0], dtype=torch.float32, amp=torch.bfloat16)
    reference = TinySDPA(mask=True).double()
    reference.load_state_dict(model.state_dict())
    _assert_rel_close(fd, _hypergrad(reference, "autograd", batches[0]), AMP_RTOL)


def test_an_op_without_forward_ad_names_the_first_order_modes() -> None:
    """A backbone pinned to the flash kernel (as a compiled or custom-kernel model may be): the exact jvp step
    cannot run and says which modes can; vjp (exact) and fd run there."""

    class Pinned(TinySDPA):
        def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return super().forward(batch)

    torch.manual_seed(0)
    model = Pinned(mask=False).double()
    batch = token_batches(1, 4)[0]
    with pytest.raises(LossContractError, match="meta.hypergrad.mode: vjp"):
        _hypergrad(model, "jvp", batch)
    exact = _hypergrad(model, "vjp", batch)
    reference = TinySDPA(mask=False).double()
    reference.load_state_dict(model.state_dict())
    _assert_rel_close(exact, _hypergrad(reference, "autograd", batch), 1e-9)
    _assert_rel_close(_hypergrad(model, "fd", batch), exact, FD_RTOL)
