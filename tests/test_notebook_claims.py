"""Training-log claims (``[[claims]]``): what a notebook's saved outputs show of its training, and the handout's rule.

First the reader, line by line and notebook by notebook, on output styles taken from real courses and libraries (and on
text that must not count); then the configuration, the rule on test results, the reports; last, end to end, a class of
the toy assignment ``toy_claims`` (tests/fixtures/notebooks/toy_root) graded with ``dlgrade grade``: a notebook with its
log keeps full marks, one whose outputs were cleared loses the training part (or keeps it with a warning), in a folder
or a zip, and a resumed run keeps the rule.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import check_gradescope, run_dlgrade, write_files
from fixtures.notebooks import make
from fixtures.notebooks.make import md, notebook, stream
from nbformat.v4 import new_output

from dlgrade import notebook as nbmod
from dlgrade.config import AssignmentConfig, Claim, load_assignment
from dlgrade.errors import ConfigError
from dlgrade.notebook.claims import DIAGNOSIS, Found, line_values, read_claim, settle, shown_lines
from dlgrade.report import ReportView, write_reports
from dlgrade.results import SubmissionResult, write_results
from dlgrade.results import TestResult as _TestResult

NB = "hw.ipynb"


def claim(**kw: Any) -> Claim:
    return Claim(**{"name": "vit", "notebook": NB, "kind": "accuracy", "part": "training", **kw})


def outputs_of(*outputs: object, cells: int = 1) -> nbmod.Extracted:
    """A notebook whose last code cell saved ``outputs`` (after ``cells - 1`` code cells without any)."""
    code = ["import torch"] * (cells - 1) + ["train(model)"]
    return nbmod.extract(notebook(md("# HW"), *code, outputs={cells: list(outputs)}), NB)


def read(*outputs: object, **kw: Any) -> Found:
    return read_claim(claim(**kw), outputs_of(*outputs))


# ----------------------------------------------------------------------------- one line


@pytest.mark.parametrize("line, kind, value, split", [
    ("Test accuracy: 71.3%", "accuracy", 0.713, "test"),
    ("test acc 0.713", "accuracy", 0.713, "test"),
    ("Accuracy of the network on the 10000 test images: 66 %", "accuracy", 0.66, "test"),   # the PyTorch CIFAR tutorial
    ("| Test Loss: 1.734 | Test PPL: 5.662 |", "perplexity", 5.662, "test"),                 # bentrevett's seq2seq
    ("| Test Loss: 1.734 | Test PPL: 5.662 |", "loss", 1.734, "test"),
    ("test perplexity = 6.2", "perplexity", 6.2, "test"),
    ("\t Val. Loss: 4.800 |  Val. PPL: 121.489", "perplexity", 121.489, "valid"),
    ("\tTrain Loss: 5.055 | Train PPL: 156.744", "perplexity", 156.744, "train"),
    ("test accuracy    0.907", "accuracy", 0.907, "test"),                                    # torchtext AG_NEWS tutorial
    ("| end of epoch   1 | time:  7.51s | valid accuracy    0.831", "accuracy", 0.831, "valid"),
    ("Test set: Average loss: 0.0335, Accuracy: 9890/10000 (99%)", "accuracy", 0.989, "test"),  # PyTorch MNIST example
    ("{'eval_loss': 0.52, 'eval_accuracy': 0.713, 'epoch': 3.0}", "accuracy", 0.713, "valid"),  # Hugging Face Trainer
    ("│        test_acc         │    0.7130000591278076     │", "accuracy", 0.713, "test"),   # Lightning's test table
    ("test acc tensor(0.7130, device='cuda:0')", "accuracy", 0.713, "test"),
    ("Test Acc (%): 71.3", "accuracy", 0.713, "test"),
    ("Final accuracy: 66.2%", "accuracy", 0.662, ""),
    ("Val Acc: 0.74", "accuracy", 0.74, "valid"),
    ("Epoch 1/20, Train Loss: 1.83, Train Acc: 32.5%, Test Loss: 1.52, Test Acc: 44.9%", "accuracy", 0.449, "test"),
    ("100%|██████████| 391/391 [00:12<00:00, 31.2it/s, loss=1.23, acc=0.55]", "accuracy", 0.55, ""),
])
def test_a_line_gives_its_metric_and_what_data_it_is_about(line: str, kind: str, value: float, split: str) -> None:
    got = [v for v in line_values(line) if v.kind == kind]
    assert got, line
    assert math.isclose(got[-1].value, value, rel_tol=1e-6) and got[-1].split == split


@pytest.mark.parametrize("line", [
    "accuracy should be above 70%",                      # a sentence, not a result
    "        acc = 100 * correct / total",               # source code
    "accuracy=0.71s",                                    # a number with a unit that is not a metric
    "Test accuracy: 150%",                               # not an accuracy
    "Requirement already satisfied: torch in /usr/local/lib/python3.10 (2.0.1)",
    "Downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz to ./data/cifar-10-python.tar.gz",
    "criterion = nn.CrossEntropyLoss()",
])
def test_lines_that_give_no_value(line: str) -> None:
    assert [v for v in line_values(line) if v.kind in ("accuracy", "perplexity")] == []


def test_a_progress_bar_is_read_as_the_terminal_shows_it() -> None:
    text = "\r  0%|          | 0/391\r 50%|#####     | 196/391 [loss=2.0]\r100%|##########| 391/391 [00:12<00:00, loss=1.23]\n"
    assert list(shown_lines(text)) == ["100%|##########| 391/391 [00:12<00:00, loss=1.23]", ""]


# ----------------------------------------------------------------------------- a notebook's outputs

AG_NEWS = ("| epoch   1 |   500/ 1782 batches | accuracy    0.685\n| epoch   1 |  1000/ 1782 batches | accuracy    0.855\n"
           "-----------------------------------------------------------\n"
           "| end of epoch   1 | time:  7.51s | valid accuracy    0.831\n"
           "-----------------------------------------------------------\n"
           "| epoch   2 |   500/ 1782 batches | accuracy    0.901\n"
           "| end of epoch   2 | time:  7.32s | valid accuracy    0.871\n")
BENTREVETT = ("Epoch: 01 | Time: 0m 27s\n\tTrain Loss: 5.055 | Train PPL: 156.744\n\t Val. Loss: 4.800 |  Val. PPL: 121.489\n"
              "Epoch: 02 | Time: 0m 27s\n\tTrain Loss: 4.436 | Train PPL:  84.461\n\t Val. Loss: 4.577 |  Val. PPL:  97.227\n")


def test_the_torchtext_tutorial_log_and_its_test_accuracy() -> None:
    f = read(stream(AG_NEWS), stream("Checking the results of test dataset.\ntest accuracy    0.907\n"))
    assert f.complete and f.claimed == 0.907 and f.cell == 2 and f.line == "test accuracy    0.907"
    assert f.log_lines == 5 and f.log_cells == (2,)


def test_a_seq2seq_log_of_epoch_blocks_and_the_test_perplexity() -> None:
    f = read(stream(BENTREVETT), stream("| Test Loss: 3.951 | Test PPL:  51.986 |\n"), kind="perplexity")
    assert f.complete and f.claimed == 51.986 and f.log_lines >= 4


def test_the_cifar_tutorial_and_a_percent_as_a_fraction() -> None:
    f = read(stream("[1,  2000] loss: 2.203\n[1,  4000] loss: 1.872\nFinished Training\n"),
             stream("Accuracy of the network on the 10000 test images: 54 %\n"))
    assert f.complete and f.claimed == 0.54 and f.log_lines == 2


def test_colab_noise_ansi_colours_and_tqdm_bars_around_the_log() -> None:
    noise = ("Mounted at /content/drive\nRequirement already satisfied: torch in /usr/local/lib (2.3.0)\n"
             "Downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz\nFiles already downloaded and verified\n")
    bars = "".join(f"\r\x1b[32mEpoch {e}\x1b[0m: {p}%|####| {p}/100 [00:0{e}<00:00, loss={2 - e / 10:.2f}, acc=0.{e}{p % 10}]"
                   for e in range(1, 4) for p in (50, 100)) + "\n"
    f = read(stream(noise), stream(bars, "stderr"), new_output("execute_result", data={"text/plain": "0.713"}, execution_count=7),
             stream("\x1b[1mTest accuracy: 71.3%\x1b[0m\n"))
    assert f.complete and f.claimed == 0.713 and f.line == "Test accuracy: 71.3%" and f.log_lines == 1


def test_the_last_result_wins_across_cells_and_the_cell_is_counted_as_the_student_sees_it() -> None:
    nb = notebook(md("# HW"), "train()", md("## Again, with a better lr"), "train()", "evaluate()",
                  outputs={1: [stream("epoch 1 loss 0.9\nTest accuracy: 61.0%\n")], 3: [stream("epoch 1 loss 0.7\nepoch 2 loss 0.5\n")],
                           4: [stream("Test accuracy: 71.3%\n")]})
    for cell in nbmod.extract(nb, NB).outputs:
        assert cell.cell in (2, 4, 5)
    f = read_claim(claim(), nbmod.extract(nb, NB))
    assert f.claimed == 0.713 and f.cell == 5 and f.log_lines == 3 and f.log_cells == (2, 4)


def test_a_markdown_cell_a_goal_and_source_code_are_not_results() -> None:
    nb = notebook(md("Upon successful training, the test accuracy should be above 70%.\n\nTest accuracy: 71%"),
                  "print(inspect.getsource(train))", "print('Target test accuracy: 65%')",
                  outputs={1: [stream('def evaluate(model):\n    acc = 100 * correct / total\n'
                                      '    print(f"Test accuracy: {acc:.2f}%")\n    print("Test accuracy: %.2f%%" % acc)\n'
                                      '    print("epoch {} loss {:.3f}".format(epoch, loss))\n')],
                           2: [stream("Target test accuracy: 65%\n")]})
    f = read_claim(claim(), nbmod.extract(nb, NB))
    assert f.claimed is None and f.log_lines == 0
    assert "no training log with a final accuracy was found in any cell's output" in settle_one(f).records[0].message


def test_an_error_traceback_quoting_the_print_is_not_a_result() -> None:
    trace = ["\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
             "Cell \x1b[0;32mIn[7], line 5\x1b[0m",
             "\x1b[0;32m----> 5\x1b[0m print(\x1b[38;5;124mf\x1b[39m\x1b[38;5;124m'\x1b[39m\x1b[38;5;124mTest accuracy: 71.3%\x1b[39m')",
             "      4 # Test accuracy: 71.3%",
             "\x1b[0;31mNameError\x1b[0m: name 'model' is not defined"]
    f = read(stream("epoch 1 loss 0.9\nepoch 2 loss 0.8\n"), new_output("error", ename="NameError", evalue="model", traceback=trace))
    assert f.claimed is None and f.log_lines == 2


def test_a_validation_accuracy_is_not_the_test_accuracy_unless_the_claim_says_so() -> None:
    outputs = (stream(AG_NEWS),)
    assert read(*outputs).claimed is None
    assert read(*outputs, split="valid").claimed == 0.871
    assert read(*outputs, split="any").claimed == 0.871
    # an unlabelled accuracy counts as the final one, but not on a line of the log (that is the training accuracy)
    assert read(stream("Epoch 10: loss 0.3 acc 0.9\n")).claimed is None
    assert read(stream("Epoch 10: loss 0.3 acc 0.9\nFinal accuracy: 66.2%\n")).claimed == 0.662
    # a test value wins over a later unlabelled one
    assert read(stream("epoch 1 loss 0.2\ntest acc 0.7\nAccuracy: 0.95\n")).claimed == 0.7
    # a goal after the result does not hide it; indented key=value lines under an epoch line are its log
    f = read(stream("Epoch 1\n    loss=0.52 acc=0.81\nEpoch 2\n    loss=0.41 acc=0.86\nTest accuracy: 71.3% (target 70%)\n"))
    assert f.complete and f.claimed == 0.713 and f.log_lines == 2
    # a diverged log is still a log, but nan is no final value
    f = read(stream("epoch 1 loss nan\nepoch 2 loss nan\nTest PPL: nan\n"), kind="perplexity")
    assert f.log_lines == 2 and f.claimed is None


def test_library_styles_hugging_face_and_lightning() -> None:
    hf = stream("{'loss': 0.61, 'learning_rate': 4e-05, 'epoch': 1.0}\n{'eval_loss': 0.52, 'eval_accuracy': 0.713, 'epoch': 1.0}\n")
    f = read(hf, split="valid")
    assert f.complete and f.claimed == 0.713 and f.log_lines == 2
    table = ("Epoch 9: 100%|##########| 782/782 [00:20<00:00, 38.5it/s, v_num=0, train_loss=0.3, val_acc=0.71]\n"
             "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┓\n"
             "┃        Test metric        ┃       DataLoader 0        ┃\n"
             "│         test_acc          │    0.7130000591278076     │\n"
             "│         test_loss         │    0.8512                 │\n")
    f = read(stream(table))
    assert f.complete and math.isclose(f.claimed or 0, 0.713, rel_tol=1e-6)


def test_images_are_ignored_and_a_huge_output_is_read_fast() -> None:
    png = new_output("display_data", data={"image/png": "iVBORw0KGgo" * 100_000, "text/plain": "<Figure size 640x480>"})
    bar = "".join(f"\r{s}/20000 [00:01<00:09, loss={1 / (s + 1):.4f}]" for s in range(20_000)) + "\n"
    ex = outputs_of(stream(bar + "".join(f"step {s} loss {1 / (s + 1):.4f}\n" for s in range(2000))), png,
                    stream("Test accuracy: 71.3%\n"), cells=30)
    started = time.perf_counter()
    f = read_claim(claim(), ex)
    assert time.perf_counter() - started < 3.0
    assert f.complete and f.claimed == 0.713 and f.log_lines == 2001


def test_a_hostile_flood_of_output_costs_a_bounded_time() -> None:
    """Only the last MAX_CHARS of output, and of them the last MAX_LINES candidate lines, are read closely."""
    flood = "acc 1\n" * 33_000
    ex = nbmod.Extracted(NB, "hw.py", "", outputs=tuple(nbmod.CellOutput(i, None, flood, flood) for i in range(1, 60)))
    started = time.perf_counter()
    f = read_claim(claim(split="any"), ex)
    assert time.perf_counter() - started < 5.0
    assert f.claimed == 1.0 and f.cell == 59


def test_custom_patterns_and_the_required_log_length() -> None:
    out = stream("ep=1 nll=2.0\nep=2 nll=1.5\nRESULT top1=0.66\n")
    assert read(out).claimed is None and read(out).log_lines == 0
    f = read(out, pattern=r"top1=([0-9.]+)", log_pattern=r"^ep=\d+ nll=")
    assert f.complete and f.claimed == 0.66 and f.log_lines == 2
    f = read(stream("epoch 1 loss 0.9\nTest accuracy: 70%\n"), min_log_lines=3)
    assert not f.complete and f.log_lines == 1
    assert "the training log has only 1 line (cell 2); at least 3 are required" in settle_one(f).records[0].message
    f = read(stream("Test perplexity: 6.2\n"), kind="perplexity", min_log_lines=0)   # "make sure your results are printed"
    assert f.complete and not f.log_found


def test_an_unreadable_or_missing_notebook_is_not_found_with_the_reason() -> None:
    broken = nbmod.extract(make.full_marks()[:-200], NB)
    f = read_claim(claim(), broken)
    assert f.problem == "hw.ipynb could not be read" and not f.complete
    assert settle_one(f).records[0].message.startswith("hw.ipynb could not be read, so neither a training log nor a final "
                                                       "accuracy could be read from its output; the handout gives this part 0")
    f = read_claim(claim(), None)   # not submitted (or submitted as a .py file, which has no outputs)
    assert f.problem == "hw.ipynb was not found in the submission"


# ----------------------------------------------------------------------------- configuration


def _config(tmp_path: Path, claims: str, extra: str = "") -> AssignmentConfig:
    folder = tmp_path / "assignments" / "a"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "assignment.toml").write_text(
        'submit = ["hw4_vit.ipynb", "helpers.py"]\n[parts]\nvit_training = "P3(e)"\nvit = "P3(a-d)"\n'
        "[thresholds.vit]\nthreshold = 0.64\nsteps = 1\nbatch_size = 1\nlr = 0.1\ndirection = 'higher'\n"
        f"{extra}\n{claims}")
    return load_assignment("a", tmp_path)


AGREED = '''[[claims]]
name = "vit"
notebook = "hw4_vit.ipynb"
kind = "accuracy"
threshold = "vit"
handout_target = 0.65
part = "vit_training"
missing = "zero"
spec = "P3(e): the training log and final accuracy must be in the cell's output, otherwise 0 points"
'''


def test_the_agreed_schema_and_its_defaults(tmp_path: Path) -> None:
    cfg = _config(tmp_path, AGREED + '\n[[claims]]\nname = "seq2seq"\nnotebook = "hw4_vit.ipynb"\nkind = "perplexity"\n'
                  'missing = "warn"\nsplit = "any"\nmin_log_lines = 0\npattern = "PPL: ([0-9.]+)"\n')
    vit, s2s = cfg.claims
    assert (vit.name, vit.notebook, vit.kind, vit.threshold, vit.handout_target, vit.part, vit.missing) == \
        ("vit", "hw4_vit.ipynb", "accuracy", "vit", 0.65, "vit_training", "zero")
    assert vit.split == "test" and vit.min_log_lines == 1 and vit.pattern == "" and vit.spec.startswith("P3(e)")
    assert (s2s.part, s2s.missing, s2s.split, s2s.min_log_lines, s2s.pattern) == ("", "warn", "any", 0, "PPL: ([0-9.]+)")


@pytest.mark.parametrize("change, message", [
    (("kind = \"accuracy\"", "kind = \"bleu\""), "[[claims]] entry 1 (vit): kind must be one of accuracy, perplexity, loss"),
    (("notebook = \"hw4_vit.ipynb\"", "notebook = \"hw4_rnn.ipynb\""), "entry 1 (vit): notebook 'hw4_rnn.ipynb' is not a notebook"),
    (("notebook = \"hw4_vit.ipynb\"", "notebook = \"helpers.py\""), "notebook 'helpers.py' is not a notebook of submit (hw4_vit.ipynb)"),
    (("part = \"vit_training\"", "part = \"training\""), "entry 1 (vit): part 'training' is not a part of [parts]"),
    (("part = \"vit_training\"\n", ""), "entry 1 (vit): part is required with missing = 'zero'"),
    (("threshold = \"vit\"", "threshold = \"vit2\""), "entry 1 (vit): threshold 'vit2' has no [thresholds.vit2]"),
    (("missing = \"zero\"", "missing = \"ignore\""), "entry 1 (vit): missing must be 'zero' (the handout's rule) or 'warn'"),
    (("handout_target = 0.65", "handout_target = 65"), "handout_target of an accuracy is a fraction (65 % is 0.65)"),
    (("handout_target = 0.65", "handout_target = \"65%\""), "entry 1 (vit): handout_target must be a number"),
    (("name = \"vit\"\n", ""), "[[claims]] entry 1: name is required"),
    (("spec = ", "sepc = "), "entry 1 (vit): unknown keys ['sepc']"),
    (("spec = ", "pattern = \"accuracy: [0-9.]+\"\nspec = "), "pattern 'accuracy: [0-9.]+' needs a group around the number"),
    (("spec = ", "log_pattern = \"epoch (\"\nspec = "), "log_pattern 'epoch (' is not a regular expression"),
    (("spec = ", "min_log_lines = -1\nspec = "), "min_log_lines must be a whole number >= 0"),
    (("spec = ", "split = \"validation\"\nspec = "), "split must be 'test', 'valid' or 'any'"),
])
def test_a_bad_entry_names_the_entry_and_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, AGREED.replace(*change))
    assert message in str(err.value) and "assignment.toml" in str(err.value)


def test_two_claims_may_not_share_a_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"entry 2 \(vit\): name 'vit' is used by another"):
        _config(tmp_path, AGREED + "\n" + AGREED)


# ----------------------------------------------------------------------------- the rule on results


def _t(n: int, part: str, score: float, max_score: float = 2, output: str = "Passed.", **kw: Any) -> _TestResult:
    return _TestResult(f"test {n}", str(n), score, max_score, "passed" if score >= max_score else "failed", output,
                      kw.pop("visibility", "visible"), part, f"graders/x.py::test_{n}", **kw)


TESTS = [_t(1, "vit", 2), _t(2, "training", 2), _t(3, "training", 0, output="Your ViT does not learn"),
         _t(4, "training", 0, 0, output="Advice (no points): nothing to improve here.", advice=True),
         _t(5, "training", 3, 3, extra={"threshold_name": "toy", "value": 0.83, "metric": "test accuracy"}, visibility="hidden")]


def _cfg(**kw: Any) -> AssignmentConfig:
    from fixtures.notebooks.make import TOY_ROOT
    cfg = load_assignment("toy_claims", TOY_ROOT)
    return replace(cfg, claims=(replace(cfg.claims[0], notebook=NB, **kw),))


def settle_one(f: Found, cfg: AssignmentConfig | None = None, tests: list[_TestResult] | None = None, apply: bool = True) -> Any:
    cfg = cfg or _cfg()
    return settle(cfg, [replace(f, claim=replace(cfg.claims[0], **{k: getattr(f.claim, k) for k in
                                                                   ("kind", "split", "min_log_lines", "pattern")}))],
                  tests or TESTS, apply)


def test_zero_takes_the_points_of_the_part_with_the_handout_line_and_keeps_the_measured_value() -> None:
    settled = settle_one(read())
    scores = [t.score for t in settled.tests]
    assert scores == [2, 0, 0, 0, 0]
    zeroed = settled.tests[1]
    assert zeroed.status == "failed" and zeroed.diagnosis == DIAGNOSIS
    assert zeroed.output.startswith("hw.ipynb: no training log with a final accuracy was found in any cell's output; the "
                                    "handout gives this part 0 points (Part 2: the training log")
    assert zeroed.output.endswith("The test's own result: Passed.")
    assert settled.tests[2].output == "Your ViT does not learn"     # already failed: its own message stays
    assert settled.tests[3] == TESTS[3]                              # advice is never charged
    rec = settled.records[0]
    assert (rec.rule, rec.claimed, rec.measured, rec.measured_visibility, rec.threshold, rec.handout_target) == \
        ("zero", None, 0.83, "hidden", 0.9, 0.7)
    assert settled.notes[0].startswith(zeroed.output.split("\n")[0]) and "e.g. 'Test accuracy: 71.3%'" in settled.notes[0]
    again = settle_one(read(), tests=list(settled.tests))             # a resumed run: nothing changes twice
    assert again.tests == settled.tests and again.records == settled.records


def test_warn_keeps_the_points_and_says_so() -> None:
    settled = settle_one(read(), cfg=_cfg(missing="warn"))
    assert [t.score for t in settled.tests] == [t.score for t in TESTS] and settled.tests == tuple(TESTS)
    assert settled.records[0].rule == "warn"
    assert settled.notes[0].startswith("Warning: hw.ipynb: no training log") and "the points stand" in settled.notes[0]


def test_a_complete_claim_changes_nothing_and_the_rule_can_be_off() -> None:
    done = settle_one(read(stream("epoch 1 loss 0.5\nTest accuracy: 71.3%\n")))
    assert done.tests == tuple(TESTS) and done.notes == () and done.records[0].rule == "none"
    assert done.records[0].claimed == 0.713 and done.records[0].log_found and done.records[0].message == ""
    off = settle_one(read(), apply=False)                             # dlgrade validate: the reference has no outputs
    assert off.tests == tuple(TESTS) and off.notes == () and off.records[0].rule == "off"
    cfg = _cfg()
    disabled = replace(cfg, all_parts={**cfg.all_parts, "training": replace(cfg.all_parts["training"], enabled=False)})
    assert settle_one(read(), cfg=disabled).records[0].rule == "off"


# ----------------------------------------------------------------------------- reports


def _graded(root: Path, student: str, settled: Any) -> None:
    tests = settled.tests
    write_results(SubmissionResult(student, "toy_claims", 7, tests, 1.0, f"{student}: {sum(t.score for t in tests):g} points",
                                   claims=settled.records), root / student)


def test_reports_show_the_claim_next_to_the_measured_value_and_write_claims_csv(tmp_path: Path) -> None:
    root = tmp_path / "results"
    hostile = "<script>alert(1)</script> | **x** Test accuracy: 71.3%"
    _graded(root, "amy", settle_one(read(stream("epoch 1 loss 0.5\n" + hostile + "\n"))))
    _graded(root, "bob", settle_one(read()))
    staff = write_reports(root, ReportView("instructor"))
    with (staff.folder / "claims.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"student_id": "amy", "claim": "toy", "notebook": NB, "cell": "2", "claimed": "0.713", "measured": "0.83",
         "threshold": "0.9", "handout_target": "0.7", "log_found": "yes", "rule": "none"},
        {"student_id": "bob", "claim": "toy", "notebook": NB, "cell": "", "claimed": "", "measured": "0.83",
         "threshold": "0.9", "handout_target": "0.7", "log_found": "no", "rule": "zero"}]
    summary = staff.summary.read_text()
    table = summary[summary.index("Claimed vs measured"):summary.index("</table>", summary.index('id="claims"'))]
    assert "71.3 %" in table and "83.0 %" in table and "at least 90.0 %" in table and "part set to 0" in table
    assert "claims.csv" in summary
    amy = (staff.folder / "students" / "amy.html").read_text()
    assert "not expected to be equal" in amy and "71.3 %" in amy and "83.0 %" in amy and "<script>alert" not in amy
    # students see the grader's value only where they see its threshold test (here: hidden)
    student = write_reports(root, ReportView(), out=tmp_path / "student")
    amy, bob = ((student.folder / "students" / f"{s}.html").read_text() for s in ("amy", "bob"))
    section = amy[amy.index('id="claims"'):amy.index("</section>", amy.index('id="claims"'))]
    assert "71.3 %" in section and "83.0 %" not in amy and '<td class="num">hidden</td>' in section
    assert "no training log with a final accuracy was found" in bob
    md_text = (student.folder / "students" / "amy.md").read_text()
    assert "| toy (accuracy) | 71.3 % | hw.ipynb, cell 2 | found (1 line) | hidden | at least 90.0 % | 70.0 % |" in md_text
    published = write_reports(root, ReportView(published=True), out=tmp_path / "published")
    assert "83.0 %" not in (published.folder / "students" / "amy.html").read_text()


def test_no_claims_no_claims_csv(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_results(SubmissionResult("amy", "lstm_lm_vit", 7, (_t(1, "vit", 2),), 1.0, "amy: 2 points"), root / "amy")
    (root / "reports").mkdir()
    (root / "reports" / "claims.csv").write_text("left by an earlier run")
    rep = write_reports(root)
    assert not (rep.folder / "claims.csv").exists() and "Claimed vs measured" not in rep.summary.read_text()


# ----------------------------------------------------------------------------- end to end


@pytest.fixture
def torch_threads() -> Any:
    """Grading in this process sets torch's thread count to the assignment's cpus; the tests after these keep theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("claims")
    shutil.copytree(make.TOY_ROOT, tmp / "root")
    klass = tmp / "class"
    for student, data in {"logged": make.logged(), "cleared": make.cleared(), "final_only": make.final_only(),
                          "malformed": make.logged()[:-300]}.items():
        write_files({"toy.ipynb": data}, klass / student)
    with zipfile.ZipFile(klass / "zipped.zip", "w") as zf:   # a Colab download in a zip, outputs kept
        zf.writestr("hw/Copy of toy.ipynb", make.logged())
        zf.writestr("__MACOSX/hw/._Copy of toy.ipynb", b"\0\5")
    # a run cut off after two tests, the second written with its points (before the rule): the batch resumes it
    write_files({"toy.ipynb": make.cleared()}, klass / "resumed")
    suite = "graders/toy_claims/test_toy_claims.py::"
    kept = (_TestResult("Adder adds its offset", "1", 2, 2, "passed", "Passed.", "visible", "adder", suite + "test_adder",
                        seconds=0.123, spec="Adder(offset) adds offset to its input"),
            _TestResult("Net returns one logit per class", "2", 1, 1, "passed", "Passed.", "visible", "training",
                        suite + "test_net_shape", spec="Net(dim, classes) maps (B, dim) to logits (B, classes)"))
    write_results(SubmissionResult("resumed", "toy_claims", 77, kept, 1.0, "cut off", complete=False), tmp / "out" / "resumed")
    proc = run_dlgrade("grade", "toy_claims", str(klass), "--out", str(tmp / "out"), "--seed", "5", timeout=600,
                       env={"DLGRADE_ROOT": str(tmp / "root")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return tmp


def _results(toy: Path, student: str, out: str = "out") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((toy / out / student / "results.json").read_text())
    check_gradescope(data)
    return data


def _parts(data: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in data["extra_data"]["tests"]:
        out[t["part"]] = out.get(t["part"], 0.0) + t["score"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("student", ["logged", "zipped"])
def test_a_notebook_with_its_log_keeps_full_marks_and_its_claim_is_recorded(toy: Path, student: str) -> None:
    data = _results(toy, student)
    assert data["score"] == 5
    (rec,) = data["extra_data"]["claims"]
    assert (rec["name"], rec["notebook"], rec["cell"], rec["line"], rec["claimed"], rec["log_found"], rec["rule"]) == \
        ("toy", "toy.ipynb", 5, "Test accuracy: 93.8%", 0.938, True, "none")
    assert rec["threshold"] == 0.9 and rec["handout_target"] == 0.7 and rec["kind"] == "accuracy"
    assert isinstance(rec["measured"], float) and rec["measured"] >= 0.9, "the threshold test's value on generated data"


@pytest.mark.slow
def test_a_cleared_notebook_loses_the_training_part_everywhere(toy: Path) -> None:
    data = _results(toy, "cleared")
    assert _parts(data) == {"adder": 2, "training": 0} and data["score"] == 2
    message = "toy.ipynb: no training log with a final accuracy was found in any cell's output; the handout gives this part 0 points"
    assert message in data["output"]
    assert all(message in t["output"] for t in data["tests"] if t.get("tags") == ["training"])
    assert data["extra_data"]["claims"][0]["rule"] == "zero" and data["extra_data"]["claims"][0]["measured"] >= 0.9
    final_only = _results(toy, "final_only")
    assert _parts(final_only) == {"adder": 2, "training": 0}
    assert "a final test accuracy was found (cell 5: 'Test accuracy: 93.8%') but no training log" in final_only["output"]
    with (toy / "out" / "grades.csv").open() as f:
        grades = {r["student_id"]: r for r in csv.DictReader(f)}
    assert (grades["cleared"]["training"], grades["cleared"]["total"]) == ("0.0", "2.0")
    assert (grades["logged"]["training"], grades["zipped"]["total"]) == ("3.0", "5.0")
    with (toy / "out" / "reports" / "claims.csv").open() as f:
        claims = {r["student_id"]: r for r in csv.DictReader(f)}
    assert claims["cleared"]["rule"] == "zero" and claims["logged"]["claimed"] == "0.938" and claims["zipped"]["rule"] == "none"
    assert "Training results in your notebook" in (toy / "out" / "reports" / "students" / "cleared.html").read_text()


@pytest.mark.slow
def test_an_unreadable_notebook_is_not_found_with_the_reason(toy: Path) -> None:
    rec = _results(toy, "malformed")["extra_data"]["claims"][0]
    assert rec["claimed"] is None and rec["rule"] == "zero"
    assert rec["message"].startswith("toy.ipynb could not be read, so neither a training log nor a final accuracy")


@pytest.mark.slow
@pytest.mark.usefixtures("torch_threads")
def test_the_warn_rule_keeps_the_points(toy: Path) -> None:
    from dlgrade.grade import GradeOptions, grade_batch

    root = toy / "root_warn"
    shutil.copytree(toy / "root", root)
    toml = root / "assignments" / "toy_claims" / "assignment.toml"
    toml.write_text(toml.read_text().replace('missing = "zero"', 'missing = "warn"'))
    grade_batch(load_assignment("toy_claims", root), toy / "class" / "cleared", toy / "warn", GradeOptions(seed=5))
    data = _results(toy, "cleared", "warn")
    assert data["score"] == 5 and data["extra_data"]["claims"][0]["rule"] == "warn"
    assert "Warning: toy.ipynb: no training log with a final accuracy was found" in data["output"]
    assert "the points stand" in data["output"]


@pytest.mark.slow
def test_a_resumed_run_keeps_the_rule(toy: Path) -> None:
    """The test kept from the cut-off run with its points loses them, the tests run now too: the result is a whole run's."""
    whole, final = _results(toy, "cleared"), _results(toy, "resumed")
    assert final["extra_data"]["seed"] == 77 and final["extra_data"]["complete"]
    assert final["extra_data"]["tests"][0]["seconds"] == 0.123, "the finished tests are kept, not run again"
    assert final["score"] == whole["score"] == 2 and _parts(final) == {"adder": 2, "training": 0}
    assert [t["output"] for t in final["tests"]] == [t["output"] for t in whole["tests"]]
    assert final["extra_data"]["claims"][0]["rule"] == "zero"


@pytest.mark.slow
@pytest.mark.usefixtures("torch_threads")
def test_validate_grades_without_the_rule(toy: Path) -> None:
    """The reference notebook is built without outputs: validate must still see 100 %."""
    from dlgrade.validate import validate

    cases = validate(load_assignment("toy_claims", toy / "root"), toy / "validate", seed=3, only=["reference"])
    assert all(c.ok for c in cases), cases
    reference = json.loads((toy / "validate" / "results" / "reference" / "results.json").read_text())
    assert reference["extra_data"]["claims"][0]["rule"] == "off"
