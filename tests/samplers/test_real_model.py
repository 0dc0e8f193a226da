"""The samplers drive the real network: a tiny MaskDiT, with guidance from the spec."""

from __future__ import annotations

import warnings

import pytest
import torch

core = pytest.importorskip("maskdit.core")

from maskdit.samplers import SAMPLERS, build_sampler, specs  # noqa: E402

TINY = dict(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
            decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_runs_the_tiny_model_with_guidance(name):
    sampler = build_sampler(SAMPLERS.get(name)(steps=3, cfg_scale=1.5))  # null label from denoiser.num_classes
    # a default grid from pure noise (the flow samplers') needs a flow model: an EDM model has no value there
    process = {"name": "flow"} if bool(torch.isinf(sampler.sigmas[0])) else {"name": "edm"}
    denoiser = core.build_denoiser(core.ModelSpec(**TINY, process=process),
                                   generator=torch.Generator().manual_seed(0)).eval()
    noise = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    out = sampler(denoiser, noise, labels=torch.tensor([0, 2]), generator=torch.Generator().manual_seed(2))
    assert out.shape == noise.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_guided_sampling_without_labels_raises_and_an_unlabelled_call_warns_once():
    from maskdit.core.denoiser import UnconditionalCallWarning

    denoiser = core.build_denoiser(core.ModelSpec(**TINY), generator=torch.Generator().manual_seed(0)).eval()
    noise = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="needs class labels"):  # it used to run silently unguided
        build_sampler(specs.HeunSamplerSpec(steps=3, cfg_scale=2.0))(denoiser, noise)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own filter: once per calling line
        plain = build_sampler(specs.HeunSamplerSpec(steps=3))(denoiser, noise)
    unlabelled = [w for w in caught if issubclass(w.category, UnconditionalCallWarning)]
    assert len(unlabelled) == 1 and "called without labels" in str(unlabelled[0].message)
    null = torch.full((2,), TINY["num_classes"])
    assert torch.equal(plain, build_sampler(specs.HeunSamplerSpec(steps=3))(denoiser, noise, labels=null))
