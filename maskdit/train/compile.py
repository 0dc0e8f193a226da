"""The ``train.compile`` switch: regional compilation where the model has transformer blocks."""

from __future__ import annotations

from torch import nn

from maskdit.core import compile_blocks


def compile_model(model: nn.Module) -> nn.Module:
    """Compile a MaskDiT's blocks in place (short compile time, masking and gathers stay eager,
    state-dict keys unchanged); any other module's forward is compiled whole, also in place."""
    net = getattr(model, "net", model)
    if getattr(net, "blocks", None) is not None:
        return compile_blocks(model, dynamic=True)
    model.compile()
    return model
