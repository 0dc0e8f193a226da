import maskdit


def test_every_public_name_resolves():
    for name in maskdit.__all__:
        assert getattr(maskdit, name) is not None, name


def test_paper_objective_and_sampler_from_the_top_level():
    objective = maskdit.maskdit_objective(num_classes=10, patch_size=4)
    assert [term.name for term in objective.terms] == ["dsm", "mae"]
    assert [term.weight for term in objective.terms] == [1.0, 0.1]
    sigmas = maskdit.get_sigmas_karras(18, 0.002, 80.0)
    assert sigmas.shape == (19,) and float(sigmas[-1]) == 0.0
