"""Calibrate the threshold tests from the reference and known-bad models.

usage: python graders/lstm_lm_vit/calibrate.py [--seeds 0 1 2 3 4 5] [--write]

For every seed, trains the reference and each known-bad model (bugs from bugs.toml, applied
to the reference) with the same recipes and budgets the hidden tests use, and measures the
metric the grader computes. Prints a table; with --write also records it in CALIBRATION.md.
The threshold is placed midway between the worst reference run and the best run of the
required known-bad models, and the script checks that this separates them on every seed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dlgrade.config import load_assignment  # noqa: E402
from dlgrade.release import reference_submission  # noqa: E402
from dlgrade.validate import bug_submission, load_bugs  # noqa: E402
from graders.lstm_lm_vit import thresholds  # noqa: E402

BAD = {"lm": ["lstm_classifier_on_embeddings", "lstm_log_softmax_over_time", "loss_counts_padding"],
       "vit": ["no_position_embedding", "attention_ignores_queries", "softmax_over_queries"]}
REQUIRED_BAD = {"lm": ["lstm_classifier_on_embeddings", "loss_counts_padding"], "vit": ["no_position_embedding"]}
NOTES = """## Notes

- The perplexity is that of the REFERENCE LSTM carrying the student's trained weights, so a
  forward that bypasses the LSTM (`lstm_classifier_on_embeddings`) leaves the LSTM untrained
  and the measured perplexity is about the vocabulary size.
- The text data has short sequences (2 to 10 targets) in rows of 32, so most positions are
  padding; a loss that also counts them (`loss_counts_padding`) spends its training on the
  easy padding targets and ends measurably worse. The first token names the topic.
- The ViT task is positional (which quadrant holds the bright patch), so forgetting the
  position embeddings leaves the model at chance. Attention that ignores the queries, or
  normalises over the queries, still solves it (the class token finds the bright patch by
  content alone); the attention unit tests catch those. A relational task that catches them
  (pairs of tagged patches) was tried: it needed about 10 s of training per submission with
  1500 steps, so it was left out.
- Budgets and thresholds are read from `assignment.toml` (`[thresholds.lm]`,
  `[thresholds.vit]`); the hidden tests derive the data seed from the run's seed.
"""


class LocalContext:
    """The recipe context of the worker, over modules loaded from a folder."""

    def __init__(self, folder: Path, tag: str) -> None:
        self.folder, self.tag, self.device = folder, tag, torch.device("cpu")
        self.modules: dict[str, ModuleType] = {}

    def module(self, name: str) -> ModuleType:
        if name not in self.modules:
            spec = importlib.util.spec_from_file_location(f"_calib_{self.tag}_{name}", self.folder / f"{name}.py")
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            self.modules[name] = mod
        return self.modules[name]

    def new(self, qualname: str, *args: Any, **kwargs: Any) -> Any:
        mod, _, cls = qualname.partition(".")
        return getattr(self.module(mod), cls)(*args, **kwargs)

    def seed(self, n: int) -> None:
        torch.manual_seed(n)


def recipes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_calib_recipes", thresholds.ASSIGNMENT_DIR / "recipes.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(kind: str, ctx: LocalContext, seed: int, reference: ModuleType) -> tuple[float, float]:
    """(metric, seconds) of one training run, computed exactly as the hidden test does."""
    b = thresholds.budget(kind)
    if kind == "lm":
        data = thresholds.lm_data(seed, tuple(sorted(b.data_args.items())))
        out = recipes().train_lm(ctx, model_args=b.model_args, train=data["train"], steps=b.steps,
                                 batch_size=b.batch_size, lr=b.lr, seed=seed)
        try:
            return thresholds.lm_perplexity(reference, b.model_args, out["state_dict"], data["valid"]), out["seconds"]
        except Exception:
            return float("inf"), out["seconds"]
    data = thresholds.vit_data(seed, tuple(sorted(b.data_args.items())))
    out = recipes().train_vit(ctx, model_args=b.model_args, train_images=data["train_images"],
                              train_labels=data["train_labels"], test_images=data["test_images"], steps=b.steps,
                              batch_size=b.batch_size, lr=b.lr, seed=seed)
    return thresholds.accuracy(out["test_logits"], data["test_labels"], b.model_args["num_classes"]), out["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--kinds", nargs="+", default=["lm", "vit"])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in the grading worker (assignment.toml limits.cpus)
    cfg = load_assignment("lstm_lm_vit", ROOT)
    bugs = {b.name: b for b in load_bugs(cfg)}
    tmp = Path(tempfile.mkdtemp(prefix="calibrate-"))
    variants: dict[str, dict[str, bytes]] = {"reference": reference_submission(cfg)}
    for names in BAD.values():
        variants.update({n: bug_submission(cfg, bugs[n]) for n in names})
    for name, files in variants.items():
        (tmp / name).mkdir()
        for rel, data in files.items():
            (tmp / name / rel).write_bytes(data)
    reference = LocalContext(tmp / "reference", "ref").module("lstm_solution")
    lines = ["# Threshold calibration (lstm_lm_vit)", "",
             f"Made by `python graders/lstm_lm_vit/calibrate.py --seeds {' '.join(map(str, args.seeds))} --write` "
             f"on {time.strftime('%Y-%m-%d')}, CPU, torch {torch.__version__}, 1 thread (as the worker).", ""]
    for kind in args.kinds:
        b = thresholds.budget(kind)
        names = ["reference", *BAD[kind]]
        table: dict[str, list[float]] = {n: [] for n in names}
        secs: list[float] = []
        metric = "validation perplexity (lower is better)" if kind == "lm" else "test accuracy (higher is better)"
        lines += [f"## {kind}: {metric}", "", f"Budget: {b.steps} steps, batch {b.batch_size}, lr {b.lr}, "
                  f"model {b.model_args}, data {b.data_args}.", "",
                  "| seed | " + " | ".join(names) + " | reference seconds |", "|" + "---|" * (len(names) + 2)]
        for seed in args.seeds:
            row = []
            for n in names:
                value, sec = run(kind, LocalContext(tmp / n, f"{n}{seed}"), seed, reference)
                table[n].append(value)
                if n == "reference":
                    secs.append(sec)
                row.append(f"{value:.3f}")
            lines.append(f"| {seed} | " + " | ".join(row) + f" | {secs[-1]:.2f} |")
            print(lines[-1], flush=True)
        ref = table["reference"]
        bad = [v for n in REQUIRED_BAD[kind] for v in table[n]]
        lower_is_better = kind == "lm"
        worst_ref = max(ref) if lower_is_better else min(ref)
        best_bad = min(bad) if lower_is_better else max(bad)
        threshold = round((worst_ref + best_bad) / 2, 2)
        ok = (worst_ref < threshold < best_bad) if lower_is_better else (best_bad < threshold < worst_ref)
        bad_ranges = "; ".join(f"`{n}`: {min(table[n]):.3f} to {max(table[n]):.3f}" for n in REQUIRED_BAD[kind])
        lines += ["", f"Reference: {min(ref):.3f} to {max(ref):.3f} (median {statistics.median(ref):.3f}); {bad_ranges}. "
                  f"Threshold = midway between the worst reference run and the best run of a required bad model: "
                  f"**{threshold:.2f}** (margin {abs(threshold - worst_ref):.3f} to the reference, "
                  f"{abs(best_bad - threshold):.3f} to the bad models). "
                  f"Reference training time: median {statistics.median(secs):.2f} s." + ("" if ok else " NOT SEPARATED."), ""]
        print(lines[-2], flush=True)
    if args.write:
        (HERE / "CALIBRATION.md").write_text("\n".join(lines) + "\n" + NOTES)


if __name__ == "__main__":
    main()
