"""Threshold tests: the student's ViT and DialogueGPT, trained briefly on generated data, must learn.

Budgets and thresholds are in assignment.toml ([thresholds.vit], [thresholds.gpt]), calibrated as
CALIBRATION.md records (`dlgrade calibrate transformer_vit_gpt`).
"""

from __future__ import annotations

import pytest

from dlgrade.harness import expect
from graders.transformer_vit_gpt import thresholds


@pytest.mark.part("vit_training")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(90)
@pytest.mark.threshold("vit")
@pytest.mark.spec("P3(c): train the Vision Transformer (your PatchEmbed and Transformer in the given ViT); it must "
                  "learn (accuracy threshold calibrated on generated images)")
def test_vit_reaches_accuracy(sub, seed, record, config):
    """Training: your Vision Transformer reaches the accuracy threshold on generated images"""
    b = config.thresholds["vit"]
    data = thresholds.vit_data(seed, tuple(sorted(b.data_args.items())))
    trained = sub.run_recipe(b.recipe, train_images=data["train_images"], train_labels=data["train_labels"],
                             test_images=data["test_images"], seed=seed, **b.recipe_kwargs())
    out = expect.training_result(trained, ("test_logits",), record)
    acc = thresholds.accuracy(out["test_logits"], data["test_labels"], b.model_args["nout"])
    passed = expect.reaches(b, acc, record)
    expect.true(passed, f"after {b.steps} training steps your ViT classifies {acc:.1%} of the test images "
                f"correctly; it must reach {b.threshold:.1%}. The label is where a bright square is: check PatchEmbed "
                "(stride = kernel = patch_size, patches in order) and that attention mixes the patches.",
                "the ViT does not learn")


@pytest.mark.part("gpt_training")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(90)
@pytest.mark.threshold("gpt")
@pytest.mark.spec("P4(f): train DialogueGPT; as a causal language model it must learn to predict the next token from "
                  "the tokens before it (perplexity threshold calibrated on generated dialogue)")
def test_gpt_reaches_perplexity(sub, seed, record, config):
    """Training: your DialogueGPT reaches the perplexity threshold on generated dialogue, predicting from prefixes"""
    b = config.thresholds["gpt"]
    max_n = int(b.model_args["max_N"])
    data = thresholds.gpt_data(seed, tuple(sorted(b.data_args.items())), max_n)
    kwargs = b.recipe_kwargs()
    kwargs["model_args"] = {**kwargs["model_args"], "vocab_size": data["vocab_size"]}
    trained = sub.run_recipe(b.recipe, train_ids=data["train_ids"], train_mask=data["train_mask"],
                             valid_ids=data["valid_ids"], seed=seed, **kwargs)
    out = expect.training_result(trained, ("valid_log_probs",), record)
    ppl = thresholds.perplexity(out["valid_log_probs"], data["valid_ids"], data["valid_mask"], data["vocab_size"])
    passed = expect.reaches(b, ppl, record)
    expect.true(passed, f"after {b.steps} training steps your DialogueGPT's validation perplexity, each token "
                f"predicted from the tokens before it, is {ppl:.2f}; it must be at most {b.threshold:.2f}. A model that "
                "sees later tokens while training (no causal mask) learns to copy them and fails here.",
                "the GPT does not learn to predict the next token")
