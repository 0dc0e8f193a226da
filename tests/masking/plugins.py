"""Example specs for every registered masking strategy and ratio schedule.

The contract tests run over every registered strategy (built-in or plugin): a strategy with a
``ratio`` field gets each schedule example; one without is built with its defaults. Ratio
schedules need an example here (their fields have no generic values)."""

from hypothesis import strategies as st

from maskdit.masking import MASKING, specs

ratios = st.floats(min_value=0.0, max_value=0.95, allow_nan=False)


@st.composite
def _uniform(draw):
    low, high = sorted((draw(ratios), draw(ratios)))
    return specs.UniformRatioSpec(low=low, high=high)


SCHEDULE_EXAMPLES = {
    "constant": ratios.map(lambda r: specs.ConstantRatioSpec(ratio=r)),
    "uniform": _uniform(),
    "cosine": st.builds(specs.CosineRatioSpec, start=ratios, end=ratios, total_steps=st.integers(1, 1000)),
    "sigma": st.builds(specs.SigmaRatioSpec, r_min=ratios, r_max=ratios, groups=st.integers(1, 6)),
}


def strategy_spec(name: str, ratio) -> object:
    """The spec of strategy ``name`` with the given ratio (or schedule) spec, if it takes one."""
    cls = MASKING.get(name)
    return cls(ratio=ratio) if "ratio" in cls.model_fields else cls()


STRATEGY_NAMES = tuple(MASKING.names())
