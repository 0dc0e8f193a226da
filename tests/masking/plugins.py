"""Example specs for every registered masking strategy and ratio schedule.

The contract tests draw from these; a newly registered plugin without an entry here fails
``test_every_plugin_has_an_example`` until it gets one, and then all property tests cover it.
"""

from hypothesis import strategies as st

from maskdit.masking import specs

ratios = st.floats(min_value=0.0, max_value=0.95, allow_nan=False)


@st.composite
def _uniform(draw):
    low, high = sorted((draw(ratios), draw(ratios)))
    return specs.UniformRatioSpec(low=low, high=high)


SCHEDULE_EXAMPLES = {
    "constant": ratios.map(lambda r: specs.ConstantRatioSpec(ratio=r)),
    "uniform": _uniform(),
    "cosine": st.builds(specs.CosineRatioSpec, start=ratios, end=ratios, total_steps=st.integers(1, 1000)),
    "sigma": st.builds(specs.SigmaRatioSpec, r_min=ratios, r_max=ratios),
}


def strategy_spec(name: str, ratio) -> object:
    """The spec of strategy ``name`` with the given ratio (or schedule) spec."""
    return {
        "random": lambda: specs.RandomMaskingSpec(ratio=ratio),
        "block": lambda: specs.BlockMaskingSpec(ratio=ratio),
        "grid": lambda: specs.GridMaskingSpec(ratio=ratio),
        "none": lambda: specs.NoMaskingSpec(),
    }[name]()


STRATEGY_NAMES = ("random", "block", "grid", "none")
