"""evaluation.py: metrics from a confusion matrix (absent classes included) and the figures."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from amobilenet_jax import evaluation

NAMES = ("neutral", "happiness", "surprise")


def test_confusion_metrics_rows_are_true_classes():
    confusion = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])  # surprise: no example
    result = evaluation.confusion_metrics(confusion, NAMES)
    assert result["accuracy"] == pytest.approx(5 / 8) and result["num_examples"] == 8
    assert result["per_class_accuracy"] == {"neutral": 0.75, "happiness": 0.5, "surprise": None}
    assert result["mean_class_accuracy"] == pytest.approx(0.625)  # over the classes present
    assert result["confusion_matrix"] == confusion.tolist()


def test_confusion_metrics_of_nothing_are_nan_not_an_error():
    result = evaluation.confusion_metrics(np.zeros((3, 3), np.int64), NAMES)
    assert math.isnan(result["accuracy"]) and math.isnan(result["mean_class_accuracy"])
    assert set(result["per_class_accuracy"].values()) == {None}


def test_figures_are_pngs_and_images_for_tensorboard():
    png = evaluation.confusion_figure_png(np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]]), NAMES, "run")
    image = evaluation.png_to_array(png)
    assert png.startswith(b"\x89PNG") and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.array_equal(image, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    curves = evaluation.training_curves_png(
        {"train/loss": [(1, 2.0), (2, 1.5)], "train/accuracy": [(1, 0.2), (2, 0.4)], "eval/test_accuracy": [(2, 0.3)]}
    )
    assert curves.startswith(b"\x89PNG")
    assert evaluation.training_curves_png({}).startswith(b"\x89PNG")  # a run that logged nothing yet


def test_upsample_keeps_channels_and_values_of_a_flat_image():
    images = np.full((2, 4, 4, 1), 0.25, np.float32)
    out = evaluation.upsample(images, 12)
    assert out.shape == (2, 12, 12, 1)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)
