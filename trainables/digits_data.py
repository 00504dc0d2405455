"""The embedded image task: scikit-learn's handwritten digits, as encoded images.

1,797 real 8x8 greyscale scans of the digits 0-9 (UCI "Optical Recognition of Handwritten
Digits"), installed with scikit-learn, so no network is needed. Each becomes a PNG of RGB
pixels (the pretrained backbones take three channels); the image task resizes it to the
model's input. The test split is fixed (seeded, stratified, 20%); validation is carved from
train by `data.validation_fraction` as for any data.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

LABEL_NAMES = tuple(str(d) for d in range(10))
TEST_FRACTION = 0.2
_SPLIT_SEED = 1797


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    grey = np.clip(pixels * (255 / 16), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def digits_splits() -> dict[str, pa.Table]:
    """Train and test tables of `image` (PNG bytes) and `label` (the digit)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )

    def table(rows: np.ndarray) -> pa.Table:
        images = [_png(digits.images[r]) for r in rows]
        return pa.table({"image": pa.array(images, pa.binary()), "label": labels[rows]})

    return {"train": table(train), "test": table(test)}
