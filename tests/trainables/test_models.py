import pytest

from trainables.config import ModelConfig
from trainables.errors import ModelLoadError
from trainables.models import build_model, encoder_layers, resolve_model_path

LABELS = ("a", "b", "c")


def trainable(model: object) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}  # type: ignore[attr-defined]


def test_head_is_replaced_for_the_label_count(tiny_model_dir: str) -> None:
    model = build_model(ModelConfig(name_or_path=tiny_model_dir), LABELS)
    assert model.config.num_labels == 3 and model.config.id2label[2] == "c"
    assert model.classifier.out_features == 3


def test_freeze_modes(tiny_model_dir: str) -> None:
    def build(**kw: object) -> set[str]:
        return trainable(build_model(ModelConfig(name_or_path=tiny_model_dir, **kw), LABELS))

    everything = build()
    emb = build(freeze="embeddings")
    layer = build(freeze="layers", freeze_layers=1)
    backbone = build(freeze="backbone")
    assert not any("embeddings" in n for n in emb) and any("layer.0." in n for n in emb)
    assert not any("layer.0." in n for n in layer) and any("layer.1." in n for n in layer)
    assert backbone == {n for n in everything if n.startswith("classifier")}
    assert backbone < layer < emb < everything


def test_too_many_frozen_layers_are_refused(tiny_model_dir: str) -> None:
    with pytest.raises(ModelLoadError, match="model.freeze_layers"):
        build_model(
            ModelConfig(name_or_path=tiny_model_dir, freeze="layers", freeze_layers=5), LABELS
        )


def test_dropout_overrides_reach_the_modules(tiny_model_dir: str) -> None:
    cfg = ModelConfig(
        name_or_path=tiny_model_dir,
        hidden_dropout=0.3,
        attention_dropout=0.2,
        classifier_dropout=0.4,
    )
    model = build_model(cfg, LABELS)
    assert model.config.hidden_dropout_prob == 0.3
    assert model.config.attention_probs_dropout_prob == 0.2
    assert model.dropout.p == 0.4
    assert len(encoder_layers(model)) == 2


def test_unloadable_model_names_the_field(tmp_path: object) -> None:
    with pytest.raises(ModelLoadError, match="model.name_or_path"):
        build_model(ModelConfig(name_or_path=str(tmp_path)), LABELS)


def test_embedded_alias_resolves_to_the_packaged_folder() -> None:
    assert resolve_model_path("embedded:all-MiniLM-L6-v2").endswith("model")
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
