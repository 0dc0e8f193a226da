"""Wiring of the FID Inception path with random weights (the real FID weights are never downloaded)."""

import pytest
import torch
import torch.nn.functional as F

from maskdit.eval.inception import WEIGHTS_NAME, FIDInception, FIDInceptionA, FIDInceptionE, inception_weights_path


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    model = FIDInception()  # random weights: only the wiring is under test
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_NAME
    torch.save(model.net.state_dict(), path)  # the layout of pytorch-fid's pt_inception-2015-12-05 file
    return path


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("MASKDIT_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("MASKDIT_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        FIDInception.from_file()
    message = str(error.value)
    assert str(tmp_path / WEIGHTS_NAME) in message and "MASKDIT_INCEPTION_WEIGHTS" in message
    assert "never downloads" in message
    monkeypatch.setenv("MASKDIT_INCEPTION_WEIGHTS", str(tmp_path / "elsewhere.pth"))
    with pytest.raises(FileNotFoundError, match=r"elsewhere.pth \(\$MASKDIT_INCEPTION_WEIGHTS\)"):
        inception_weights_path()


def test_loads_local_file_by_path_and_env_and_gives_2048_d_features(weights_file, monkeypatch):
    model = FIDInception.from_file(weights_file)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        features = model(images)
        rgb = model(images.expand(-1, 3, -1, -1))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    torch.testing.assert_close(features, rgb)  # grey images are repeated to RGB
    monkeypatch.setenv("MASKDIT_INCEPTION_WEIGHTS", str(weights_file))
    again = FIDInception.from_file()
    with torch.no_grad():
        torch.testing.assert_close(again(images), features)


def test_wrong_state_dict_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an FID Inception state dict"):
        FIDInception.from_file(path)


def test_fid_blocks_pool_like_the_tensorflow_graph():
    net = FIDInception().net
    assert isinstance(net.Mixed_5b, FIDInceptionA) and net.fc.out_features == 1008
    assert isinstance(net.Mixed_7b, FIDInceptionE) and not net.Mixed_7b.max_pool
    assert isinstance(net.Mixed_7c, FIDInceptionE) and net.Mixed_7c.max_pool
    # the pooling branch of block A excludes padding: on a constant input its border equals the interior
    block = FIDInceptionA(4, pool_features=2).eval()
    pooled = {}
    block.branch_pool.register_forward_hook(lambda m, inp, out: pooled.setdefault("x", inp[0]))
    with torch.no_grad():
        block(torch.ones(1, 4, 5, 5))
    torch.testing.assert_close(pooled["x"], torch.ones(1, 4, 5, 5))
    assert not torch.allclose(F.avg_pool2d(torch.ones(1, 4, 5, 5), 3, 1, 1), torch.ones(1, 4, 5, 5))


def test_rejects_bad_channel_counts():
    with pytest.raises(ValueError, match="1 or 3"):
        FIDInception()(torch.zeros(1, 2, 8, 8))
