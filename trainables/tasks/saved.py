"""A promoted (or any saved) model folder loaded the way its library loads it, as a predictor.

This is what `sweeps verify` runs and what docs/tasks/ tell a user to write: timm's
`create_model("local-dir:<folder>", pretrained=True)` with the folder's preprocessing, or
transformers' `from_pretrained` with the folder's tokenizer or image processor. A text model's
answer follows its config's `problem_type`: a class name, the names of the classes at or over
the threshold its config saved (`multi_label_classification`), or the predicted numbers
(`regression`). A token-classification model tags a sentence: `word/TAG` pairs. A causal LM
continues a prompt greedily (deterministic): the generated text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def kind_of(folder: str) -> str:
    """`timm`, `transformers-image`, `transformers-token` (a token classifier) or
    `transformers-text`: how the folder was saved."""
    config = json.loads(Path(folder, "config.json").read_text())
    if "architecture" in config:
        return "timm"
    if Path(folder, "preprocessor_config.json").is_file():
        return "transformers-image"
    if any(a.endswith("ForTokenClassification") for a in config.get("architectures") or ()):
        return "transformers-token"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in config.get("architectures") or ()):
        return "transformers-causal-lm"
    return "transformers-text"


def load_classifier(folder: str) -> Callable[[Any], str]:
    """A function from one input (a PIL image, or a text) to the prediction, in words: the
    predicted label's name (a regression's numbers; a multi-label model's names)."""
    kind = kind_of(folder)
    if kind == "timm":
        from trainables.tasks.vision_models import import_timm

        timm = import_timm()
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        data_config = timm.data.resolve_data_config(model=model)
        transform = timm.data.create_transform(**data_config)
        names = json.loads(Path(folder, "config.json").read_text()).get("label_names")

        def classify_image(image: Any) -> str:
            with torch.no_grad():
                index = int(model(transform(image.convert("RGB"))[None]).argmax())
            return str(names[index]) if names else str(index)

        return classify_image
    if kind == "transformers-image":
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        processor = AutoImageProcessor.from_pretrained(folder)
        hf_image = AutoModelForImageClassification.from_pretrained(folder).eval()

        def classify_hf_image(image: Any) -> str:
            with torch.no_grad():
                inputs = processor(images=image.convert("RGB"), return_tensors="pt")
                index = int(hf_image(**inputs).logits.argmax())
            return str(hf_image.config.id2label[index])

        return classify_hf_image
    if kind == "transformers-token":
        from trainables.tasks.token_classification import load_tagger

        tag = load_tagger(folder)

        def tag_text(text: Any) -> str:
            return " ".join(f"{word}/{tag}" for word, tag in tag(str(text)))

        return tag_text
    if kind == "transformers-causal-lm":
        from transformers import AutoTokenizer

        from trainables.tasks.causal_lm import load_generator

        generate = load_generator(folder)
        generated_by = AutoTokenizer.from_pretrained(folder)

        def continue_text(text: Any) -> str:
            return str(generated_by.decode(generate(str(text)), skip_special_tokens=True))

        return continue_text
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text_model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    problem = text_model.config.problem_type
    names = text_model.config.id2label
    threshold = float(getattr(text_model.config, "decision_threshold", 0.5))

    def classify_text(text: Any) -> str:
        with torch.no_grad():
            logits = text_model(**tokenizer(str(text), return_tensors="pt")).logits[0]
        if problem == "regression":
            return ", ".join(f"{names[i]}={float(v):.4g}" for i, v in enumerate(logits))
        if problem == "multi_label_classification":
            probabilities = torch.sigmoid(logits)
            chosen = [
                str(names[int(i)]) for i in torch.nonzero(probabilities >= threshold).flatten()
            ]
            return ", ".join(chosen) or "(no label)"
        return str(names[int(logits.argmax())])

    return classify_text


def smoke_input(folder: str) -> Any:
    """An input of the folder's kind to classify once: a grey image or a sentence."""
    kind = kind_of(folder)
    if kind == "transformers-token":
        from trainables.tasks.token_classification import SMOKE_SENTENCE

        return SMOKE_SENTENCE
    if kind == "transformers-causal-lm":
        from trainables.tasks.causal_lm import SMOKE_PROMPT

        return SMOKE_PROMPT
    if kind == "transformers-text":
        return "a sentence to classify"
    from PIL import Image

    return Image.new("RGB", (64, 64), (128, 128, 128))
