"""Threshold tests: the student's models, trained briefly on the generated toy language, must learn.

The worker trains (assignments/seq2seq_translation/recipes.py) and returns the trained model's
scores on the validation sources; the perplexity against the validation targets (which never
reach the worker) is computed here. Budgets and thresholds are in assignment.toml, calibrated
as CALIBRATION.md records.
"""

from __future__ import annotations

from typing import Any

import pytest

from dlgrade.config import Threshold
from dlgrade.harness import expect
from graders.seq2seq_translation import thresholds


def _train(sub, config, name: str, seed: int, record: dict[str, Any]) -> tuple[float, Threshold]:
    b = config.thresholds[name]
    d = thresholds.data(seed, tuple(sorted(b.data_args.items())))
    out = expect.training_result(sub.run_recipe(b.recipe, **thresholds.recipe_kwargs(b, d, seed)), ("valid_scores",), record)
    ppl = thresholds.perplexity(out["valid_scores"], d["valid_tgt"], log_probs=b.recipe == "train_seq2seq",
                                skip_first=name == "full_transformer")
    return ppl, b


@pytest.mark.part("attention")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(60)
@pytest.mark.threshold("seq2seq")
@pytest.mark.spec("Seq2Seq with attention: the LSTM encoder/decoder with cosine attention, decoding greedily, learns to "
                  "translate (threshold calibrated on the generated reordering language)")
def test_seq2seq_reaches_perplexity(sub, seed, record, config, earlier):
    """Training: your LSTM Seq2Seq with attention reaches the perplexity threshold on the toy language"""
    ppl, b = _train(sub, config, "seq2seq", seed, record)
    if not expect.reaches(b, ppl, record):
        expect.trained_too_poorly(
            f"After {b.steps} training steps your LSTM encoder/decoder with attention reaches a validation perplexity "
            f"of {ppl:.2f}; it must be at most {b.threshold:.2f}.", earlier, ("attention", "seq2seq"),
            "The toy language reorders words, so the decoder needs the attention context: check that it reaches the "
            "recurrent layer.", "the Seq2Seq model does not learn")


@pytest.mark.part("transformer")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(60)
@pytest.mark.threshold("transformer")
@pytest.mark.spec("TransformerTranslator: embeddings with learned positions, multi-head attention and the feed-forward "
                  "layer learn to translate (threshold calibrated on the generated language)")
def test_transformer_reaches_perplexity(sub, seed, record, config, earlier):
    """Training: your encoder-only Transformer reaches the perplexity threshold on the toy language"""
    ppl, b = _train(sub, config, "transformer", seed, record)
    if not expect.reaches(b, ppl, record):
        expect.trained_too_poorly(
            f"After {b.steps} training steps your TransformerTranslator reaches a validation perplexity of {ppl:.2f}; "
            f"it must be at most {b.threshold:.2f}.", earlier, "transformer",
            "Word order matters in this language: check the position embeddings and the attention.",
            "the Transformer does not learn")


@pytest.mark.part("full_transformer")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.time_limit(60)
@pytest.mark.threshold("full_transformer")
@pytest.mark.spec("FullTransformerTranslator: trained with teacher forcing and a causal mask, its greedy "
                  "generate_translation translates (threshold calibrated on the generated language)")
def test_full_transformer_reaches_perplexity(sub, seed, record, config, earlier):
    """Training: your full Transformer's greedy translations reach the perplexity threshold"""
    ppl, b = _train(sub, config, "full_transformer", seed, record)
    if not expect.reaches(b, ppl, record):
        expect.trained_too_poorly(
            f"After {b.steps} training steps the greedy translations of your FullTransformerTranslator "
            f"(generate_translation) reach a validation perplexity of {ppl:.2f}; it must be at most {b.threshold:.2f}.",
            earlier, "full_transformer",
            "Check that forward masks future target tokens and padding, and that generate_translation decodes greedily "
            "from its own predictions.", "the full Transformer does not learn to generate")
