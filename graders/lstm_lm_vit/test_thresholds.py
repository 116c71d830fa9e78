"""Threshold tests: the student's own model and loss, trained briefly, must learn.

The worker trains (assignments/lstm_lm_vit/recipes.py); the metric is computed here, on the
trusted side: perplexity of the reference LSTM carrying the student's trained weights, and
accuracy of the student's ViT logits against test labels the worker never receives. Budgets
and thresholds are in assignment.toml, calibrated as CALIBRATION.md records.
"""

from __future__ import annotations

import pytest

from dlgrade.harness import expect
from graders.lstm_lm_vit import thresholds


@pytest.mark.part("lstm")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(60)
@pytest.mark.threshold("lm")
@pytest.mark.spec("P1.1-1.2: forward returns the log-probabilities of the next words, and loss the mean NLL over the "
                  "unmasked tokens; trained with them, the model learns (threshold calibrated on generated text)")
def test_lm_reaches_perplexity(sub, ref, seed, record, config, earlier):
    """Training: your LSTM and loss reach the perplexity threshold on generated text"""
    b = config.thresholds["lm"]
    data = thresholds.lm_data(seed, tuple(sorted(b.data_args.items())))
    trained = sub.run_recipe(b.recipe, train=data["train"], seed=seed, **b.recipe_kwargs())
    out = expect.training_result(trained, ("state_dict",), record, "check forward and loss for numerical problems")
    ppl = thresholds.lm_perplexity(ref.module("lstm_solution"), b.model_args, out["state_dict"], data["valid"])
    if not expect.reaches(b, ppl, record):
        expect.trained_too_poorly(
            f"After {b.steps} training steps with your forward and loss, the validation perplexity is {ppl:.2f}; it must "
            f"be at most {b.threshold:.2f}.", earlier, "lstm",
            "Check that forward returns log-probabilities of the NEXT token computed from the LSTM outputs, and that the "
            "loss averages the NLL of real (unmasked) tokens.", "the language model does not learn")


@pytest.mark.part("vit")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(60)
@pytest.mark.threshold("vit")
@pytest.mark.spec("P2.6-2.9: the ViT built from your patches, blocks, forward and loss learns to classify images "
                  "(threshold calibrated on generated positional images)")
def test_vit_reaches_accuracy(sub, seed, record, config, earlier):
    """Training: your Vision Transformer reaches the accuracy threshold on generated images"""
    b = config.thresholds["vit"]
    data = thresholds.vit_data(seed, tuple(sorted(b.data_args.items())))
    trained = sub.run_recipe(b.recipe, train_images=data["train_images"], train_labels=data["train_labels"],
                             test_images=data["test_images"], seed=seed, **b.recipe_kwargs())
    out = expect.training_result(trained, ("test_logits",), record, "check forward and loss for numerical problems")
    acc = thresholds.accuracy(out["test_logits"], data["test_labels"], b.model_args["num_classes"])
    if not expect.reaches(b, acc, record):
        expect.trained_too_poorly(
            f"After {b.steps} training steps your ViT classifies {acc:.1%} of the test images correctly; it must reach "
            f"{b.threshold:.1%}.", earlier, ("vit", "attention", "layernorm"),
            "The labels depend on where things are in the image: check the patch order, the position embeddings and "
            "the class token.", "the ViT does not learn")
