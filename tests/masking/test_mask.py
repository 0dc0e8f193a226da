import pytest
import torch

from maskdit.masking import Mask


def test_identity_round_trip():
    mask = Mask.identity(3, 5)
    tokens = torch.randn(3, 5, 4)
    assert torch.equal(mask.gather(tokens), tokens)
    assert torch.equal(mask.scatter(tokens), tokens)
    assert mask.is_identity and mask.ratio == 0.0


def test_from_dropped_keeps_grid_order():
    dropped = torch.tensor([[True, False, True, False], [False, False, True, True]])
    mask = Mask.from_dropped(dropped)
    assert mask.ids_keep.tolist() == [[1, 3], [0, 1]]
    assert torch.equal(mask.dropped, dropped)
    tokens = torch.arange(8.0).view(2, 4, 1)
    out = mask.scatter(mask.gather(tokens), fill=torch.tensor([-1.0]))
    assert out.view(2, 4).tolist() == [[-1, 1, -1, 3], [4, 5, -1, -1]]


def test_from_order_inverse_permutation():
    order = torch.tensor([[2, 0, 3, 1]])
    mask = Mask.from_order(order, 2)
    assert mask.ids_keep.tolist() == [[2, 0]]
    assert mask.dropped.tolist() == [[False, True, False, True]]
    assert torch.equal(order.gather(1, mask.ids_restore), torch.arange(4).view(1, 4))


def test_unequal_counts_rejected():
    with pytest.raises(ValueError, match="same number of tokens"):
        Mask.from_dropped(torch.tensor([[True, False], [False, False]]))


def test_constructor_validates():
    with pytest.raises(ValueError, match="2-D"):
        Mask(torch.zeros(3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="disagree"):
        Mask(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="int64"):
        Mask(torch.zeros(1, 2), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="0 <= K <= L"):
        Mask(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="L >= 1"):
        Mask(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.bool))


def test_token_shape_errors():
    mask = Mask.identity(2, 4)
    with pytest.raises(ValueError, match=r"expects \[B=2, 4, D\]"):
        mask.gather(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="fill must broadcast"):
        mask.scatter(torch.zeros(2, 4, 3), fill=torch.zeros(2))


def test_scatter_passes_gradient_to_fill():
    mask = Mask.from_dropped(torch.tensor([[True, False, False]]))
    fill = torch.zeros(1, 1, 2, requires_grad=True)
    kept = torch.ones(1, 2, 2, requires_grad=True)
    mask.scatter(kept, fill).sum().backward()
    assert fill.grad.tolist() == [[[1.0, 1.0]]]
    assert torch.equal(kept.grad, torch.ones(1, 2, 2))
