"""Each shipped contract check catches what it is about: a part broken in exactly that way fails
it, naming the contract; the built-in parts pass (test_contracts.py in each folder)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import torch
from hypothesis import given, settings
from pydantic import ConfigDict, Field
from torch import nn

from maskdit.config import SpecModel
from maskdit.core.blocks import DiTBlock
from maskdit.core.process_specs import EDMProcessSpec
from maskdit.losses import DSMLoss
from maskdit.masking import ConstantRatio, Mask, MaskingStrategy, RandomMasking, specs
from maskdit.samplers import sample_euler
from maskdit.samplers.specs import EulerSamplerSpec
from maskdit.testing import (
    check_process_spec,
    ContractError,
    check_block,
    check_input_checks,
    check_loss_term,
    check_mask,
    check_masking_strategy,
    check_ratio_schedule,
    check_ready_sampler,
    check_spec_round_trip,
    check_steps,
    check_zero_ratio,
    with_ratio,
)
from maskdit.testing.strategies import loss_inputs, masks, specs_of

CALL = {"batch_size": 3, "grid_hw": (4, 4), "sigma": torch.ones(3), "step": 0, "seed": 0}


def _broken(contract: str):
    return pytest.raises(ContractError, match=f"contract '{contract}' broken by")


# ---- the Mask ------------------------------------------------------------------------------

def _order() -> torch.Tensor:
    return torch.tensor([[2, 0, 3, 1], [1, 3, 0, 2]])


@settings(max_examples=30, deadline=None)
@given(masks())
def test_masks_made_by_the_library_pass(mask):
    check_mask(mask)


def test_a_row_dropping_the_wrong_count_breaks_exact_counts():
    good = Mask.from_order(_order(), 2)
    dropped = good.dropped.clone()
    dropped[1, int(good.ids_keep[1, 0])] = True  # row 1 also drops one of its kept tokens
    with _broken("exact counts"):
        check_mask(Mask(good.ids_keep, good.ids_restore, dropped))


def test_a_position_kept_twice_breaks_disjoint_and_complete():
    good = Mask.from_order(_order(), 2)
    keep = good.ids_keep.clone()
    keep[0, 1] = keep[0, 0]
    with _broken("disjoint and complete"):
        check_mask(Mask(keep, good.ids_restore, good.dropped))


def test_kept_positions_marked_dropped_break_disjoint_and_complete():
    good = Mask.from_order(_order(), 2)
    with _broken("disjoint and complete"):
        check_mask(Mask(good.ids_keep, good.ids_restore, ~good.dropped))


def test_the_order_itself_as_ids_restore_breaks_the_inverse():
    good = Mask.from_order(_order(), 2)
    with _broken("ids_restore inverse"):
        check_mask(Mask(good.ids_keep, _order(), good.dropped))


def test_the_call_sizes_are_checked():
    with _broken("mask shapes"):
        check_mask(Mask.identity(2, 4), batch_size=3)
    with _broken("mask shapes"):
        check_mask(Mask.identity(2, 4), num_tokens=5)


@dataclass(frozen=True)
class _Groups:
    """Per-sample kept counts as groups of Masks (the shape a grouped strategy result has)."""

    groups: tuple[Mask, ...]
    members: tuple[torch.Tensor, ...]


class _TwoCounts:
    """Rows 0 and 2 keep 3 tokens, row 1 keeps 1: two groups. ``rows`` overrides the members."""

    max_ratio = 0.75

    def __init__(self, rows: tuple[list[int], list[int]] = ([0, 2], [1])) -> None:
        self.rows = rows

    def __call__(self, batch_size, grid_hw, *, sigma=None, step=None, generator=None) -> _Groups:
        order = torch.arange(4).expand(2, 4)
        return _Groups((Mask.from_order(order, 3), Mask.from_order(order[:1], 1)),
                       tuple(torch.tensor(rows) for rows in self.rows))


def test_groups_of_masks_for_per_sample_counts():
    call = {**CALL, "grid_hw": (2, 2)}
    result = check_masking_strategy(_TwoCounts(), max_ratio=0.75, **call)
    assert [mask.num_kept for mask in result.groups] == [3, 1]
    with _broken("mask groups"):
        check_masking_strategy(_TwoCounts(([0, 1], [1])), max_ratio=0.75, **call)  # row 1 twice, row 2 never
    with _broken("kept count"):
        check_masking_strategy(_TwoCounts(), max_ratio=0.5, **call)  # row 1 drops 3 of 4


# ---- strategies and schedules ------------------------------------------------------------

class _GlobalRandom(MaskingStrategy):
    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        return Mask.from_order(torch.argsort(torch.rand(batch_size, grid_hw[0] * grid_hw[1]), dim=1), kept)


class _Counting(MaskingStrategy):
    """Deterministic per object, but each call differs (hidden state)."""

    def __init__(self, ratio: Any) -> None:
        super().__init__(ratio)
        self.calls = 0

    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        self.calls += 1
        order = torch.arange(grid_hw[0] * grid_hw[1]).roll(self.calls)
        return Mask.from_order(order.repeat(batch_size, 1), kept)


class _KeepsOneMore(MaskingStrategy):
    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        return RandomMasking(0.0).draw(batch_size, grid_hw, kept + 1, generator, device)


class _Refusing:
    max_ratio = 0.5

    def __call__(self, batch_size, grid_hw, *, sigma=None, step=None, generator=None) -> Mask:
        raise ValueError("not today")


def test_strategies_breaking_their_contracts_are_caught():
    with _broken("randomness from the generator"):
        check_masking_strategy(_GlobalRandom(0.5), max_ratio=0.5, **CALL)
    with _broken("determinism"):
        check_masking_strategy(_Counting(0.5), max_ratio=0.5, **CALL)
    with _broken("kept count"):
        check_masking_strategy(_KeepsOneMore(0.5), max_ratio=0.5, **CALL)
    with _broken("kept count"):  # drops more than the largest ratio its spec declares
        check_masking_strategy(RandomMasking(0.75), max_ratio=0.5, **CALL)
    with _broken("refuses a ratio that leaves no token"):
        check_masking_strategy(_Refusing(), max_ratio=0.5, **CALL)
    assert check_masking_strategy(RandomMasking(0.5), max_ratio=0.5, **CALL).num_kept == 8


def test_a_ratio_leaving_no_token_must_be_refused():
    assert check_masking_strategy(RandomMasking(0.95), max_ratio=0.95, ratio=0.95, **CALL) is None  # refused: right

    class Silent(MaskingStrategy):
        def __call__(self, batch_size, grid_hw, **kwargs) -> Mask:
            return Mask.identity(batch_size, grid_hw[0] * grid_hw[1])

    with _broken("refuses a ratio that leaves no token"):
        check_masking_strategy(Silent(0.95), max_ratio=0.95, ratio=0.95, **CALL)


def test_zero_ratio_must_keep_everything_in_grid_order():
    check_zero_ratio(RandomMasking(0.0), batch_size=2, grid_hw=(3, 3))

    class Shuffled(MaskingStrategy):
        def __call__(self, batch_size, grid_hw, **kwargs) -> Mask:
            order = torch.arange(grid_hw[0] * grid_hw[1]).flip(0).repeat(batch_size, 1)
            return Mask.from_order(order, order.shape[1])

    with _broken("zero ratio is identity"):
        check_zero_ratio(Shuffled(0.0), batch_size=2, grid_hw=(3, 3))


def test_schedules_breaking_their_contracts_are_caught():
    class TooHigh(ConstantRatio):
        def __call__(self, **kwargs) -> float:
            return self.ratio + 0.1

    class NoMax:
        def __call__(self, **kwargs) -> float:
            return 0.5

    class GlobalDraw(ConstantRatio):
        def __call__(self, **kwargs) -> float:
            return self.ratio * torch.rand(()).item()

    call = {"batch_size": 2, "sigma": torch.ones(2), "step": 0}
    check_ratio_schedule(ConstantRatio(0.5), **call)
    with _broken("ratio values"):
        check_ratio_schedule(TooHigh(0.5), **call)
    with _broken("max_ratio"):
        check_ratio_schedule(NoMax(), **call)
    with _broken("randomness from the generator"):
        check_ratio_schedule(GlobalDraw(0.5), **call)


class _FloatRatioSpec(SpecModel):
    name: Literal["float_ratio"] = "float_ratio"
    ratio: float = Field(0.5, ge=0, lt=1, description="fraction dropped")

    def build(self, **context: Any) -> RandomMasking:
        return RandomMasking(self.ratio)


def test_a_float_only_ratio_field_breaks_takes_a_ratio_schedule():
    schedule = specs.CosineRatioSpec(start=0.5, end=0.25, total_steps=10)
    with _broken("takes a ratio schedule"):
        with_ratio(_FloatRatioSpec(), schedule)
    assert with_ratio(_FloatRatioSpec(), 0.25).ratio == 0.25
    assert with_ratio(specs.RandomMaskingSpec(), schedule).ratio == schedule


# ---- specs ---------------------------------------------------------------------------------

class _Lossy(SpecModel):
    """Its JSON does not read back equal: every read shifts the value."""

    name: Literal["lossy"] = "lossy"
    value: float = Field(0.1, description="shifted when read")

    def model_post_init(self, context: Any) -> None:
        object.__setattr__(self, "value", self.value + 1.0)

    def build(self, **context: Any) -> None:
        return None


def test_a_spec_that_does_not_read_back_breaks_the_round_trip():
    check_spec_round_trip(specs.RandomMaskingSpec(ratio=0.3))
    with _broken("spec round trip"):
        check_spec_round_trip(_Lossy(value=0.25))


class _Examples(SpecModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"table": [1, 2]}]})
    name: Literal["examples"] = "examples"
    table: list[int] = Field(description="no bounds to draw from")
    scale: float = Field(1.0, gt=0, le=2, description="drawn within its bounds")

    def build(self, **context: Any) -> None:
        return None


class _Untestable(SpecModel):
    name: Literal["untestable"] = "untestable"
    table: list[int] = Field(description="no bounds to draw from, no examples")

    def build(self, **context: Any) -> None:
        return None


@settings(max_examples=20, deadline=None)
@given(spec=specs_of(_Examples))
def test_specs_are_drawn_from_examples_and_within_bounds(spec):
    assert spec.table == [1, 2]  # only the example gives it


@settings(max_examples=50, deadline=None)
@given(spec=specs_of(specs.BlockMaskingSpec))
def test_drawn_specs_respect_bounds_and_validators(spec):
    assert spec.min_block >= 1 and 0 < spec.min_aspect <= 1
    assert spec.max_block is None or spec.max_block >= spec.min_block


class _Counts(SpecModel):
    name: Literal["counts"] = "counts"
    n: int = Field(gt=0, lt=3, description="1 or 2")
    m: int | None = Field(None, ge=2, le=2, description="None or 2")

    def build(self, **context: Any) -> None:
        return None


def test_drawn_numbers_cover_their_bounds_and_stay_inside():
    seen = set()

    @settings(max_examples=100, deadline=None, database=None)
    @given(spec=specs_of(_Counts))
    def draw(spec):
        seen.add((spec.n, spec.m))

    draw()
    assert seen == {(1, None), (1, 2), (2, None), (2, 2)}


def test_a_spec_with_nothing_to_draw_from_is_untestable():
    with _broken("testable spec"):
        specs_of(_Untestable)


# ---- loss terms ----------------------------------------------------------------------------

def _batch_mean(inputs):
    return (inputs.denoised - inputs.y).square().mean().expand(inputs.y.shape[0])


def _in_place(inputs):
    inputs.denoised.mul_(1.0)
    inputs.y.add_(1.0)
    return (inputs.denoised - inputs.y).abs().flatten(1).mean(1)


def _detached(inputs):
    return (inputs.denoised.detach() - inputs.y).abs().flatten(1).mean(1)


def _summed(inputs):
    return (inputs.denoised - inputs.y).abs().sum()


def _float32(inputs):
    return (inputs.denoised - inputs.y).abs().flatten(1).mean(1).float()


@settings(max_examples=15, deadline=None)
@given(inputs=loss_inputs())
def test_loss_terms_breaking_their_contracts_are_caught(inputs):
    check_loss_term(DSMLoss(), inputs)
    for term, contract in ((_in_place, "inputs unchanged"), (_detached, "gradient"), (_summed, "per-sample values"),
                           (_float32, "per-sample values")):
        with _broken(contract):
            check_loss_term(term, inputs)
    if inputs.y.shape[0] > 1:  # one sample is its own batch
        with _broken("per-sample values"):
            check_loss_term(_batch_mean, inputs)


# ---- samplers --------------------------------------------------------------------------------

@torch.no_grad()
def _unchecked(denoiser, x, sigmas, *, labels=None, noise_sampler=None, generator=None, callback=None, dtype=None):
    """Euler without input checks or callbacks."""
    state = x.double()
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i].to(x.dtype).expand(x.shape[0])
        denoised = denoiser(state.to(x.dtype), sigma, labels=labels).double()
        state = state + (sigmas[i + 1] - sigmas[i]) * (state - denoised) / sigmas[i]
    return state.to(x.dtype)


def test_samplers_breaking_their_contracts_are_caught():
    check_input_checks(sample_euler, subject="euler")
    check_steps(sample_euler, subject="euler")
    with _broken("input checks"):
        check_input_checks(_unchecked, subject="unchecked")
    with _broken("steps"):
        check_steps(_unchecked, subject="unchecked")


class _MiscountedSpec(EulerSamplerSpec):
    """Claims two evaluations per step; Euler makes one."""

    evals_per_step: typing.ClassVar[tuple[int, int]] = (2, 2)


def test_a_sampler_miscounting_its_evaluations_breaks_ready_sampler():
    check_ready_sampler(EulerSamplerSpec(steps=3))
    with _broken("ready sampler"):
        check_ready_sampler(_MiscountedSpec(steps=3))


# ---- blocks ----------------------------------------------------------------------------------

class _ForgetfulBlock(DiTBlock):
    """With qk_norm, leaves the norms' weights unwritten (what to_empty left there stays)."""

    def init_weights(self, generator):
        saved = [p.detach().clone() for p in self.attn.q_norm.parameters()]
        super().init_weights(generator)
        with torch.no_grad():
            for param, old in zip(self.attn.q_norm.parameters(), saved):
                param.copy_(old)


class _MixingBlock(DiTBlock):
    """Adds the batch mean: sample b's output depends on the other samples."""

    def forward(self, x, c):
        return super().forward(x, c) + 0.0 * x + (super().forward(x, c) - x).mean(dim=0, keepdim=True)


class _OpenGateBlock(DiTBlock):
    def init_weights(self, generator):
        super().init_weights(generator)
        nn.init.normal_(self.adaLN_modulation[1].bias, generator=generator)


@pytest.mark.parametrize("block, contract", [
    (_ForgetfulBlock(16, 2, cond_dim=8, qk_norm=True), "init writes every parameter"),
    (_OpenGateBlock(16, 2, cond_dim=8), "identity at init"),
    (_MixingBlock(16, 2, cond_dim=8), "per-sample values"),
])
def test_blocks_breaking_their_contracts_are_caught(block, contract):
    check_block(DiTBlock(16, 2, cond_dim=8, qk_norm=True), width=16, cond_dim=8, subject="dit")
    with _broken(contract):
        check_block(block, width=16, cond_dim=8, subject=type(block).__name__)


def test_processes_breaking_the_denoiser_contract_are_caught():
    class Float32Out(EDMProcessSpec):  # returns float32 whatever x is
        def build(self, *, net, spec, **context):
            inner = super().build(net=net, spec=spec)
            return _Wrapped(inner, lambda out: out.float())

    class Mixing(EDMProcessSpec):  # sample b's output depends on the other samples
        def build(self, *, net, spec, **context):
            return _Wrapped(super().build(net=net, spec=spec), lambda out: out + out.mean(0, keepdim=True))

    check_process_spec(EDMProcessSpec())
    for broken in (Float32Out(), Mixing()):
        with _broken("denoiser contract"):
            check_process_spec(broken)


class _Wrapped(nn.Module):
    def __init__(self, inner, change):
        super().__init__()
        self.inner, self.net, self.change = inner, inner.net, change

    def forward(self, x, sigma, *, labels=None, mask=None):
        return self.change(self.inner(x, sigma, labels=labels, mask=mask))
