"""Sample grids, metric plots and the metrics file."""

import json

import pytest
import torch
from PIL import Image

from maskdit.eval import append_metrics, class_grid, plot_metrics, read_metrics, save_class_grid


def test_class_grid_puts_each_class_on_its_own_row():
    labels = torch.tensor([3, 0, 3, 1, 0])
    images = labels.float().view(5, 1, 1, 1).expand(5, 1, 2, 2) / 10  # each image's value encodes its label
    grid = class_grid(images, labels, num_classes=4, per_class=2)
    assert grid.shape == (8, 1, 2, 2)
    rows = grid[:, 0, 0, 0].view(4, 2)  # [K * P] -> [K, P]
    expected = torch.tensor([[0.0, 0.0], [0.1, -1.0], [-1.0, -1.0], [0.3, 0.3]])
    torch.testing.assert_close(rows, expected)
    with pytest.raises(ValueError):
        class_grid(images, labels[:3], num_classes=4)


def test_save_class_grid_writes_a_png_of_the_right_size(tmp_path):
    images = torch.rand(30, 1, 32, 32) * 2 - 1
    path = save_class_grid(images, torch.arange(30) % 10, tmp_path / "samples.png", num_classes=10, per_class=3)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (3 * 34 + 2, 10 * 34 + 2)


def test_metrics_file_appends_and_plot(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    append_metrics(path, {"step": 100, "loss": 0.5})
    for step, fid in [(500, 40.0), (1000, 20.0), (2000, float("nan"))]:
        append_metrics(path, {"step": step, "fid": fid, "class_accuracy": step / 2500})
    records = read_metrics(path)
    assert len(records) == 4 and records[3]["fid"] is None
    assert all(json.loads(line) for line in path.read_text().splitlines())
    png = plot_metrics(records, tmp_path / "metrics.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]
    with pytest.raises(ValueError, match="no record has"):
        plot_metrics([{"step": 1, "loss": 1.0}], tmp_path / "none.png")
    assert read_metrics(tmp_path / "absent.jsonl") == []
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(path)
