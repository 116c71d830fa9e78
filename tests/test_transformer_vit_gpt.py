"""transformer_vit_gpt (seed 001, one notebook): tokenization offline, data loaders, the release, the hidden suite.

- Tokenization: the graded dialogue is tokenized by nltk.word_tokenize with an empty Punkt model (the grader cannot
  download `punkt_tab`); on that text the result must not depend on Punkt's parameters, which is checked here with
  parameters built to disagree as much as possible.
- The CIFAR-10 binary loader and the dialogue loader of the notebook, on small files made here.
- The release: the skeleton notebook, its answer cells, and the reference notebook's own public test cells.
- The hidden suite (slow): `dlgrade validate` on the reference, the skeleton, the full-marks notebooks and a subset
  of the bug catalogue; hostile notebooks score no more than a blank one and never reach what they aim at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import grade_cli, write_files

from dlgrade import notebook
from dlgrade.config import find_root, load_assignment
from dlgrade.release import skeleton_files
from graders.transformer_vit_gpt._support import datagen, module_from_notebook, reference

ROOT = find_root(Path(__file__).parent)
ID = "transformer_vit_gpt"
NB = "transformer_vit_gpt.ipynb"
PRELUDE = ROOT / "assignments" / ID / "offline_nltk.py"


# ----------------------------------------------------------------------------- tokenization without downloads


def _punkt(params=None):
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    return PunktSentenceTokenizer(params or PunktParameters())


def _adversarial_params(words: set[str]):
    """Punkt parameters that would change every decision they can: every word an abbreviation, a sentence starter
    and in every orthographic context, every pair of words a collocation."""
    from nltk.tokenize.punkt import PunktParameters

    p = PunktParameters()
    lower = {w.lower() for w in words}
    p.abbrev_types = set(lower)
    p.sent_starters = set(lower)
    p.collocations = {(a, b) for a in list(lower)[:40] for b in list(lower)[:40]}
    p.ortho_context = dict.fromkeys(lower, 0xFF)
    return p


def _tokens(text: str, splitter) -> list[str]:
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer()
    return [t for sentence in splitter.tokenize(text) for t in words.tokenize(sentence)]


def test_graded_dialogue_tokenizes_the_same_under_any_punkt_model() -> None:
    """No full stop or double quote in the graded dialogue, and word_tokenize's tokens do not depend on Punkt's
    parameters there: empty (the grader's), adversarial, or no sentence splitting at all (preserve_line)."""
    from nltk.tokenize import NLTKWordTokenizer

    for seed in (0, 1, 2, 12345):
        blocks = datagen().dialogue_data(seed, n_train=300, n_valid=50)
        lines = blocks["train"] + blocks["valid"]
        corpus = datagen().dialogue_text(blocks["train"])
        assert not any(ch in corpus for ch in '."'), "the generated dialogue must have no full stop or double quote"
        words = set(NLTKWordTokenizer().tokenize(corpus))
        empty, adversarial = _punkt(), _punkt(_adversarial_params(words))
        for text in [corpus, *lines[:80]]:
            base = _tokens(text, empty)
            assert base == _tokens(text, adversarial), text[:200]
            assert base == NLTKWordTokenizer().tokenize(text), text[:200]  # word_tokenize(text, preserve_line=True)
            assert empty.tokenize(text) == adversarial.tokenize(text)


def test_full_stops_are_where_punkt_models_differ() -> None:
    """The control: with a full stop after a word, the parameters change the tokens (so the test above can fail)."""
    text = "I saw the sword. Then we ran!"
    assert _tokens(text, _punkt()) != _tokens(text, _punkt(_adversarial_params({"sword", "then"})))


def test_offline_prelude_makes_word_tokenize_work_without_data(tmp_path: Path) -> None:
    """In a fresh interpreter with no NLTK data anywhere, the prelude lets word_tokenize run, as in the grader."""
    script = PRELUDE.read_text() + textwrap.dedent("""
        from nltk import word_tokenize
        print(word_tokenize("ROMEO:\\nAlas, JULIET! thou sought the ring; the ring is golden?"))
    """)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "none"), "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "['ROMEO', ':', 'Alas', ',', 'JULIET', '!', 'thou', 'sought', 'the', 'ring', ';', 'the', 'ring', 'is', " \
           "'golden', '?']" in done.stdout
    assert list((tmp_path / "tmp").iterdir()) == []  # the empty model is removed at exit (a laptop's /tmp keeps nothing)


# ----------------------------------------------------------------------------- data loaders of the notebook


def test_cifar10_binary_loader(tmp_path: Path) -> None:
    """Records of 1 label byte + 3072 pixel bytes (R, G, B planes), five training batches and a test batch."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    want = {}
    for name, n in [*((f"data_batch_{i}.bin", 3) for i in range(1, 6)), ("test_batch.bin", 4)]:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels.reshape(n, -1)], 1).tobytes())
        want[name] = (labels, pixels)
    images, labels = reference().load_cifar10_binary(str(folder), train=True)
    assert images.shape == (15, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.long
    first_labels, first_pixels = want["data_batch_1.bin"]
    assert labels[:3].tolist() == first_labels.tolist()
    assert torch.allclose(images[:3], torch.from_numpy(first_pixels).float() / 255)
    assert float(images[3, 1, 0, 5]) == pytest.approx(want["data_batch_2.bin"][1][0, 1, 0, 5] / 255)
    test_images, test_labels = reference().load_cifar10_binary(str(folder), train=False)
    assert test_images.shape == (4, 3, 32, 32) and test_labels.tolist() == want["test_batch.bin"][0].tolist()
    (folder / "test_batch.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(ValueError, match="3073-byte"):
        reference().load_cifar10_binary(str(folder), train=False)


def test_dialogue_loader(tmp_path: Path) -> None:
    """Blocks separated by blank lines (even with spaces on them), each stripped; the generated corpus round-trips."""
    path = tmp_path / "input.txt"
    path.write_text("FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n\nALL:\nSpeak, speak.\n  \n\n"
                    "FIRST CITIZEN:\nYou are all resolved rather to die than to famish?\n")
    blocks = reference().load_dialogues(str(path))
    assert blocks == ["FIRST CITIZEN:\nBefore we proceed any further, hear me speak.", "ALL:\nSpeak, speak.",
                      "FIRST CITIZEN:\nYou are all resolved rather to die than to famish?"]
    generated = datagen().dialogue_data(3, n_train=20, n_valid=2)["train"]
    path.write_text(datagen().dialogue_text(generated))
    assert reference().load_dialogues(str(path)) == generated


# ----------------------------------------------------------------------------- the release


def test_release_notebook_skeleton_and_answer_cells() -> None:
    cfg = load_assignment(ID, ROOT)
    data = skeleton_files(cfg)[NB]
    nb = json.loads(data)
    text = "".join("".join(c["source"]) for c in nb["cells"])
    assert "BEGIN SOLUTION" not in text and "torch.bmm(alpha, v)" not in text and "causal = torch.tril" not in text
    assert text.count("raise NotImplementedError") >= 8 and "_Your answer here._" in text
    assert "def generate(self, input_ids, num_tokens)" in text and "class VisionTransformer" in text  # given code
    ex = notebook.extract(data, NB, notebook.settings(cfg))
    assert ex.readable and not ex.problems, ex.problems  # every class is there, as a stub
    spec = notebook.settings(cfg).spec(NB)
    assert set(ex.answers) == set(spec.questions) and all("_Your answer here._" in a for a in ex.answers.values())
    full = notebook.extract(json.dumps(json.loads(data)).encode(), NB, notebook.settings(cfg))
    assert full.answer_cells == ex.answer_cells


def test_reference_answers_are_found_per_question() -> None:
    cfg = load_assignment(ID, ROOT)
    from dlgrade.release import reference_submission

    ex = notebook.extract(reference_submission(cfg)[NB], NB, notebook.settings(cfg))
    assert "W_h W_x x_1 + W_x x_2" in ex.answers["P1(a)"] and "sinusoidal" in ex.answers["P3(b)"]
    assert all(len(cells) == 1 for cells in ex.answer_cells.values())


def test_reference_notebook_public_test_cells_pass(capsys: pytest.CaptureFixture[str]) -> None:
    ref = reference()
    for test in (ref.test_transformer_sizes, ref.test_vit_sizes, ref.test_tokenizer, ref.test_gpt_sizes):
        test()
    assert capsys.readouterr().out.count("passed") == 4


def test_skeleton_public_test_cells_fail_with_not_implemented() -> None:
    skel = module_from_notebook(skeleton_files(load_assignment(ID, ROOT))[NB], "_tvg_skeleton")
    with pytest.raises(NotImplementedError):
        skel.test_transformer_sizes()


# ----------------------------------------------------------------------------- the hidden suite (slow)

BUGS = ["head_no_scale", "head_mask_ignored", "mha_reversed_concat", "transformer_not_chained", "patch_reshape_without_transpose",
        "vit_positions_dropped", "encode_no_start", "gpt_no_causal_mask", "loss_counts_padding"]


@pytest.mark.slow
def test_validate_reference_skeleton_full_marks_and_bugs(tmp_path: Path) -> None:
    full = [f"full-{p.name}" for p in sorted((ROOT / "graders" / ID / "full_marks").iterdir()) if p.is_dir()]
    assert len(full) >= 3
    res = subprocess.run([sys.executable, "-m", "dlgrade", "validate", ID, "--out", str(tmp_path), "--seed", "11",
                          "-j", "2", "--fast", "--only", "reference", "skeleton", *full, *BUGS],
                         cwd=ROOT, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    cases = {c["name"]: c for c in json.loads((tmp_path / ID / "validate" / "validate.json").read_text())}
    assert set(cases) >= {"reference", "skeleton", *full, *(f"bug-{b}" for b in BUGS)}
    assert all(c["ok"] for c in cases.values()), [c for c in cases.values() if not c["ok"]]


HOSTILE = {  # name -> a code cell added to the skeleton notebook ({OUT}, {ROOT} filled in)
    "top_level_code_writes_results": "open('{OUT}/hostile/results.json', 'w').write('{{\"score\": 999}}')\n"
                                     "print('HOSTILE-SUCCESS: top-level code ran')",
    "default_argument_reads_reference": (
        "def helper(_=print('HOSTILE-SUCCESS: read ' + str(len(open('{ROOT}/reference_solutions/transformer_vit_gpt/"
        "transformer_vit_gpt.py').read())) + ' bytes of the reference'))):\n    pass"),
    "default_argument_writes_results": (
        "def helper(_=open('{OUT}/hostile/results.json', 'w').write('{{\"score\": 999, \"tests\": []}}')):\n    pass"),
    "default_argument_exits_the_worker": "import os\ndef helper(_=os._exit(0)):\n    pass",
    "default_argument_prints_fake_results": (
        "def helper(_=print('{{\"score\": 999, \"tests\": []}}')):\n    pass"),
    "class_body_reads_hidden_tests": (
        "class Probe:\n    import glob\n    found = glob.glob('{ROOT}/graders/transformer_vit_gpt/*.py')\n"
        "    print(('HOSTILE-SUCCESS: ' if found else 'HOSTILE-BLOCKED: ') + str(found[:1]))"),
    "shell_escape": "!echo HOSTILE-SUCCESS shell > {OUT}/hostile/shell.txt\n%system echo HOSTILE-SUCCESS magic",
    "cell_magic_bash": "%%bash\necho HOSTILE-SUCCESS bash > {OUT}/hostile/bash.txt",
}


@pytest.mark.slow
def test_hostile_notebooks_score_no_more_than_a_blank_one(tmp_path: Path) -> None:
    cfg = load_assignment(ID, ROOT)
    out = tmp_path / "out"
    (out / "hostile").mkdir(parents=True)
    skeleton = json.loads(skeleton_files(cfg)[NB])
    subs = tmp_path / "subs"
    write_files({NB: json.dumps(skeleton).encode()}, subs / "blank")
    for name, code in HOSTILE.items():
        nb = json.loads(json.dumps(skeleton))
        source = code.format(OUT=out, ROOT=ROOT)
        nb["cells"].insert(8, {"cell_type": "code", "execution_count": None, "id": "hostile", "metadata": {},
                               "outputs": [], "source": source.splitlines(True)})
        write_files({NB: json.dumps(nb).encode()}, subs / name)
    run = grade_cli(subs, out, "--seed", "2", assignment=ID, timeout=900)
    blank = run.results("blank")["score"]
    assert blank == 0
    for name in HOSTILE:
        data = run.results(name)
        assert data["score"] <= blank, (name, data["score"])
        assert "HOSTILE-SUCCESS" not in run.student_output(name), name
    assert not list((out / "hostile").iterdir()), "a hostile notebook wrote outside its sandbox"
