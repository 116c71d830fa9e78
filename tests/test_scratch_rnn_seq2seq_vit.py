"""scratch_rnn_seq2seq_vit (seed 002, three notebooks): loaders, generated data, the release, intake, rules, the suite.

- The loaders the notebooks' pipelines use (a news CSV/TSV, the course's parallel-corpus module data/data.py, CIFAR-10's
  binary batches), on small files made here, and the generated data the threshold tests train on.
- The release: three skeleton notebooks and the data module; the reference notebooks' public test cells pass, the
  skeletons' fail; the Seq2Seq notebook imports the released data module through the assignment's prelude.
- Intake: a zip named by the student ID with the three notebooks at its root or in a folder, with __MACOSX junk.
- The handout's rules, reported with the notebook's cell and line; the training-log claims of the full-marks notebooks.
- The hidden suite (slow): `dlgrade validate` on the reference, the skeleton, the full-marks submissions and one bug
  per kind of mistake (`make validate ASSIGNMENT=scratch_rnn_seq2seq_vit` grades the whole catalogue).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from dlgrade import intake, notebook, static_check
from dlgrade.config import find_root, load_assignment
from dlgrade.notebook.claims import find_claims
from dlgrade.release import reference_submission, skeleton_files
from graders.scratch_rnn_seq2seq_vit._support import course_data, datagen, graded_vocab, module_from_notebook, reference

ROOT = find_root(Path(__file__).parent)
ID = "scratch_rnn_seq2seq_vit"
ADIR = ROOT / "assignments" / ID
NOTEBOOKS = ("hw4_rnn.ipynb", "hw4_seq2seq.ipynb", "hw4_vit.ipynb")
FULL_MARKS = ROOT / "graders" / ID / "full_marks"


def cfg():
    return load_assignment(ID, ROOT)


# ----------------------------------------------------------------------------- loaders of the notebooks' pipelines


def test_news_csv_and_tsv_loader(tmp_path: Path) -> None:
    """AG News layout (quoted class index, title, description), two-column rows, a .tsv file; labels become 0-based."""
    rows = datagen().news_data(0, n_train=5, n_test=0)["train"]
    datagen().write_news_csv(tmp_path / "train.csv", rows)
    loaded = reference("hw4_rnn").load_text_classification(str(tmp_path / "train.csv"))
    assert loaded == [(label, text) for label, text in rows]  # the title and the description joined again
    with open(tmp_path / "train.csv", newline="") as f:
        first = next(csv.reader(f))
    assert first[0] == str(rows[0][0] + 1) and len(first) == 3  # 1-based, three columns, as AG News
    (tmp_path / "two.csv").write_text('"3","Wall St. Bears Claw Back Into the Black (Reuters)"\n\n"1","Troops, again"\n')
    assert reference("hw4_rnn").load_text_classification(str(tmp_path / "two.csv")) == [
        (2, "Wall St. Bears Claw Back Into the Black (Reuters)"), (0, "Troops, again")]
    datagen().write_news_csv(tmp_path / "small.tsv", rows[:2], title_column=False, delimiter="\t")
    assert reference("hw4_rnn").load_text_classification(str(tmp_path / "small.tsv")) == rows[:2]


def test_parallel_corpus_reader_vocabulary_and_batches(tmp_path: Path) -> None:
    """data/data.py: tab-separated pairs (an attribution column ignored, malformed lines skipped), vocabularies with
    the four specials first, batch-first padded batches with <sos>/<eos>, a reproducible split."""
    cd = course_data()
    pairs = datagen().translation_pairs(1, n_train=40, n_valid=0)["train"]
    path = tmp_path / "fra.txt"
    datagen().write_parallel_tsv(path, pairs)
    with open(path, "a", encoding="utf-8") as f:
        f.write("no tab on this line\n\t\nGo.\tVa !\n")
    read = cd.read_parallel_corpus(str(path))
    assert len(read) == 41 and read[-1] == (["go", "."], ["va", "!"])
    assert read[0] == (cd.tokenize(pairs[0][0]), cd.tokenize(pairs[0][1]))
    assert len(cd.read_parallel_corpus(str(path), max_len=4)) < 41 and len(cd.read_parallel_corpus(str(path), limit=3)) == 3
    src_vocab = cd.Vocab([s for s, _ in read])
    assert src_vocab.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"] and src_vocab.itos[4] == "."  # most frequent first
    trg_vocab = cd.Vocab([t for _, t in read])
    ids = trg_vocab.encode(read[0][1], sos=True)
    assert ids[0] == cd.SOS_IDX and ids[-1] == cd.EOS_IDX and trg_vocab.decode(ids + [cd.PAD_IDX]) == read[0][1]
    assert src_vocab.encode(["zzz"], eos=False) == [cd.UNK_IDX]
    src, trg = cd.collate_translation(cd.TranslationDataset(read[:5], src_vocab, trg_vocab).items)
    assert src.shape == (5, max(len(s) for s, _ in read[:5]) + 1) and trg.shape == (5, max(len(t) for _, t in read[:5]) + 2)
    assert bool((trg[:, 0] == cd.SOS_IDX).all()) and int((src == cd.EOS_IDX).sum()) == 5
    train, valid, test, sv, tv = cd.make_loaders(str(path), batch_size=4, max_len=20, min_freq=1, seed=3)
    assert len(train.dataset) + len(valid.dataset) + len(test.dataset) == 41 and len(sv) > 4 and len(tv) > 4
    again = cd.make_loaders(str(path), batch_size=4, max_len=20, min_freq=1, seed=3)
    assert [x.tolist() for x in valid.dataset.items[0]] == [x.tolist() for x in again[1].dataset.items[0]]


def test_cifar10_binary_loader(tmp_path: Path) -> None:
    """One label byte and 3072 pixel bytes per record (R, G, B planes), five training batches and a test batch."""
    gen = torch.Generator().manual_seed(0)
    batches = {}
    for name, n in [*((f"data_batch_{i}.bin", 2) for i in range(1, 6)), ("test_batch.bin", 3)]:
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen).float() / 255
        labels = torch.randint(0, 10, (n,), generator=gen)
        datagen().write_cifar10_binary(tmp_path, images, labels, name)
        batches[name] = (images, labels)
    images, labels = reference("hw4_vit").load_cifar10_binary(str(tmp_path), train=True)
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.long
    assert torch.allclose(images[:2], batches["data_batch_1.bin"][0], atol=1e-6)
    assert labels[2:4].tolist() == batches["data_batch_2.bin"][1].tolist()
    raw = (tmp_path / "data_batch_1.bin").read_bytes()
    first_images, first_labels = batches["data_batch_1.bin"]
    assert raw[0] == int(first_labels[0]) and raw[1 + 1024] == round(255 * float(first_images[0, 1, 0, 0]))  # green plane
    test_images, test_labels = reference("hw4_vit").load_cifar10_binary(str(tmp_path), train=False)
    assert test_images.shape == (3, 3, 32, 32) and test_labels.tolist() == batches["test_batch.bin"][1].tolist()
    (tmp_path / "test_batch.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(ValueError, match="3073-byte"):
        reference("hw4_vit").load_cifar10_binary(str(tmp_path), train=False)


# ----------------------------------------------------------------------------- the generated data


def test_generated_data_is_seeded_and_labelled_as_documented() -> None:
    dg = datagen()
    news = dg.news_data(7, n_train=300, n_test=10)
    assert news == dg.news_data(7, n_train=300, n_test=10) and news != dg.news_data(8, n_train=300, n_test=10)
    topic = {w: label for label, words in dg.TOPIC_WORDS.items() for w in words}
    for label, text in news["train"]:
        words = text.lower().rstrip(".").split()
        assert text.endswith(".") and topic[words[-1]] == label  # the topic of the last topic word
    assert sum(len([w for w in t.lower().split() if w.strip(".") in topic]) > 1 for _, t in news["train"]) > 100
    pairs = dg.translation_pairs(3, n_train=50, n_valid=5)
    for src, trg in pairs["train"]:
        s, t = src.lower().rstrip(".").split(), trg.lower().rstrip(".").split()
        assert t == [dg.TARGET_WORDS[w] for w in reversed(s)]
    data = dg.square_images(2, n_train=64, n_test=8, image_size=8, patch_size=2)
    images, labels = data["train_images"], data["train_labels"]
    assert images.shape == (64, 3, 8, 8) and set(labels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(images, dg.square_images(2, n_train=64, n_test=8)["train_images"])
    patch_means = torch.nn.functional.avg_pool2d(images[:, 0], 2)  # (N, 4, 4): the mean of each 2x2 patch (red)
    for i in range(64):  # the square's patch is the brightest red patch; the label is its quadrant
        row, col = divmod(int(patch_means[i].argmax()), 4)
        assert int(labels[i]) == 2 * int(row >= 2) + int(col >= 2)
    assert float(images[:, 2].abs().max()) < 1  # no square in the blue channel: noise only


def test_grader_vocabulary_tokenizes_like_the_notebook() -> None:
    """rnn_vocab.py's tokenizer is the notebook's BasicEnglishTokenizer; every generated word is in its vocabulary."""
    g = graded_vocab()
    notebook_tokenizer = reference("hw4_rnn").BasicEnglishTokenizer()
    texts = [t for _, t in datagen().news_data(0, n_train=200, n_test=0)["train"]]
    texts += ['He said: "Shares (and profit) fell; again!" Why?', "It's   the chip's week, isn't it."]
    for text in texts:
        assert g["tokenizer"](text) == notebook_tokenizer(text)
    assert all(g["vocab"]["<unk>"] not in g["vocab"](g["tokenizer"](t)) for t in texts[:200])
    assert g["vocab"]["<unk>"] == 0 and g["vocab"]["<pad>"] == 1 and g["vocab"]["never-seen"] == 0


# ----------------------------------------------------------------------------- the release


def test_release_has_three_skeleton_notebooks_and_the_data_module() -> None:
    files = skeleton_files(cfg())
    assert {*NOTEBOOKS, "data/data.py", "handout.md", "datagen.py", "rnn_vocab.py"} <= set(files)
    settings = notebook.settings(cfg())
    text = {nb: "".join("".join(c["source"]) for c in json.loads(files[nb])["cells"]) for nb in NOTEBOOKS}
    for nb in NOTEBOOKS:
        assert "BEGIN SOLUTION" not in text[nb]
        ex = notebook.extract(files[nb], nb, settings)
        assert ex.readable and not ex.problems, (nb, ex.problems)
    assert "states[length.long() - 1" not in text["hw4_rnn.ipynb"] and "def init_parameters" in text["hw4_rnn.ipynb"]
    assert "torch.bmm(weights, encoder_outputs)" not in text["hw4_seq2seq.ipynb"]
    assert "self.lstm = nn.LSTM(emb_dim, hid_dim, batch_first=True)" in text["hw4_seq2seq.ipynb"]  # given __init__
    assert "self.qkv" not in text["hw4_vit.ipynb"] and "self.blocks = nn.ModuleList" in text["hw4_vit.ipynb"]
    assert sum(t.count("raise NotImplementedError") for t in text.values()) >= 12
    answers = notebook.extract(files["hw4_rnn.ipynb"], "hw4_rnn.ipynb", settings).answers
    assert set(answers) == {"1(f)"} and "_Your answer here._" in answers["1(f)"]


def test_reference_public_test_cells_pass(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ADIR)  # where data/data.py is, as next to the notebook in Colab
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "data", raising=False)
    data = reference_submission(cfg())
    rnn = module_from_notebook(data["hw4_rnn.ipynb"], "hw4_rnn.ipynb", "_t_rnn")
    s2s = module_from_notebook(data["hw4_seq2seq.ipynb"], "hw4_seq2seq.ipynb", "_t_s2s")
    vit = module_from_notebook(data["hw4_vit.ipynb"], "hw4_vit.ipynb", "_t_vit")
    assert s2s.SOS_IDX == 1 and s2s.make_loaders.__module__ == "data"  # the real module, through the prelude
    for test in (rnn.test_collate_batch, rnn.test_rnn, s2s.test_seq2seq, vit.test_vit):
        test()
    assert capsys.readouterr().out.count("passed") == 4


def test_skeleton_public_test_cells_fail() -> None:
    files = skeleton_files(cfg())
    rnn = module_from_notebook(files["hw4_rnn.ipynb"], "hw4_rnn.ipynb", "_t_rnn_skel")
    vit = module_from_notebook(files["hw4_vit.ipynb"], "hw4_vit.ipynb", "_t_vit_skel")
    with pytest.raises(NotImplementedError):
        rnn.test_collate_batch()
    with pytest.raises((NotImplementedError, AssertionError, KeyError)):
        rnn.test_rnn()
    with pytest.raises((NotImplementedError, AttributeError, TypeError)):
        vit.test_vit()


def test_student_loader_imports_the_data_module_next_to_the_notebook(tmp_path: Path) -> None:
    """As a student runs the public loader: the notebook beside data/data.py, the prelude puts data/ on the path."""
    files = skeleton_files(cfg())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.py").write_bytes(files["data/data.py"])
    (tmp_path / "hw4_seq2seq.ipynb").write_bytes(files["hw4_seq2seq.ipynb"])
    prelude = notebook.settings(cfg()).spec("hw4_seq2seq.ipynb").prelude_source
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'dlgrade' / 'notebook')!r})
        from standalone import load_notebook_module
        mod = load_notebook_module({str(tmp_path / 'hw4_seq2seq.ipynb')!r}, "hw4_seq2seq", prelude={prelude!r})
        print(mod.PAD_IDX, mod.SOS_IDX, mod.EOS_IDX, type(mod.make_loaders).__name__, mod.make_loaders.__module__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "1", "2", "function", "data"]


# ----------------------------------------------------------------------------- intake


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("folder", ["", "2024-20000/", "hw4/submission/"])
def test_zip_named_by_student_id_holds_the_three_notebooks(tmp_path: Path, folder: str) -> None:
    ref = reference_submission(cfg())
    members = {f"{folder}{nb}": ref[nb] for nb in NOTEBOOKS}
    members |= {f"__MACOSX/{folder}._hw4_rnn.ipynb": b"\0\5\26\7 junk", f"{folder}.ipynb_checkpoints/hw4_vit-checkpoint.ipynb":
                b"{}", f"{folder}data/data.py": b"# the student's copy of the data module"}
    path = _zip(tmp_path / "2024-20000.zip", members)
    files = intake.read_submission(path, cfg())
    assert files.student == "2024-20000" and not files.problems, files.problems
    assert set(files.notebooks) == set(NOTEBOOKS)
    assert {"hw4_rnn.py", "hw4_seq2seq.py", "hw4_vit.py"} <= set(files.files)
    assert "class RNN" in files.files["hw4_rnn.py"].decode() and "class ViT" in files.files["hw4_vit.py"].decode()


def test_three_loose_notebooks_and_a_missing_one(tmp_path: Path) -> None:
    ref = reference_submission(cfg())
    for nb in NOTEBOOKS[:2]:
        (tmp_path / "2024-31337" / f"Copy of {nb}").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "2024-31337" / f"Copy of {nb}").write_bytes(ref[nb])
    files = intake.read_submission(tmp_path / "2024-31337", cfg())
    assert set(files.notebooks) == set(NOTEBOOKS[:2])
    assert any("hw4_vit.ipynb" in p and "missing" in p for p in files.problems), files.problems


# ----------------------------------------------------------------------------- the handout's rules


def _violations(sources: dict[str, str]) -> list[str]:
    c = cfg()
    extracted = {nb: notebook.extract(percent_notebook(text, nb), nb, notebook.settings(c)) for nb, text in sources.items()}
    found = static_check.check_files(notebook.check_sources(extracted), c.rules)
    return [v.message() for v in notebook.locate_violations(found, extracted)]


def percent_notebook(text: str, name: str) -> bytes:
    from dlgrade.notebook import percent

    return percent.reference_notebook(text, name)


def test_rules_are_reported_with_the_cell_and_line() -> None:
    from dlgrade.release import reference_sources

    src = reference_sources(cfg())
    rnn = src["hw4_rnn.ipynb"].replace("        states = torch.stack(states)  # (L, B, hidden_size)",
                                       "        states = nn.RNN(x.shape[-1], self.hidden_size)(x)[0]")
    rnn = rnn.replace("        loss = -torch.log(picked.clamp_min(1e-12)).mean()",
                      "        loss = torch.nn.functional.nll_loss(torch.log(prediction), label)")
    vit = src["hw4_vit.ipynb"].replace("from tqdm.auto import tqdm", "from tqdm.auto import tqdm\nimport einops")
    vit = vit.replace("        return self.head(x[:, 0])  # the class token",
                      "        return self.head(nn.AdaptiveAvgPool1d(1)(x.transpose(1, 2)).squeeze(-1))")
    messages = _violations({"hw4_rnn.ipynb": rnn, "hw4_vit.ipynb": vit, "hw4_seq2seq.ipynb": src["hw4_seq2seq.ipynb"]})
    joined = "\n".join(messages)
    cell, line = where(percent_notebook(rnn, "hw4_rnn.ipynb"), "nn.RNN(x.shape[-1]")
    assert f"hw4_rnn.ipynb cell {cell}, line {line} (in RNN.forward) uses torch.nn.RNN, which the handout forbids" in joined
    cell, line = where(percent_notebook(rnn, "hw4_rnn.ipynb"), "functional.nll_loss")
    assert f"hw4_rnn.ipynb cell {cell}, line {line} (in RNN.compute_loss) uses torch.nn.functional.nll_loss" in joined
    cell, line = where(percent_notebook(vit, "hw4_vit.ipynb"), "import einops")
    assert f"hw4_vit.ipynb cell {cell}, line {line} imports einops; the handout allows only math" in joined
    cell, line = where(percent_notebook(vit, "hw4_vit.ipynb"), "AdaptiveAvgPool1d")
    assert f"hw4_vit.ipynb cell {cell}, line {line} (in ViT.forward) uses torch.nn.AdaptiveAvgPool1d" in joined
    assert len(messages) == 4, joined


def where(data: bytes, text: str) -> tuple[int, int]:
    """(cell, line) of the first line holding ``text``, counting every cell from 1 and lines within the cell from 1."""
    for c, cell in enumerate(json.loads(data)["cells"], 1):
        for n, line in enumerate("".join(cell["source"]).splitlines(), 1):
            if text in line:
                return c, n
    raise AssertionError(text)


def test_reference_and_full_marks_break_no_rule_and_show_their_training_logs() -> None:
    c = cfg()
    folders = [p for p in sorted(FULL_MARKS.iterdir()) if p.is_dir()]
    assert len(folders) >= 4
    ref = {nb: notebook.extract(data, nb, notebook.settings(c)) for nb, data in reference_submission(c).items()}
    assert not static_check.check_files(notebook.check_sources(ref), c.rules)
    for folder in folders:
        files = intake.read_submission(folder, c)
        assert not files.problems, files.problems
        assert not static_check.check_files(notebook.check_sources(files.notebooks), c.rules), folder.name
    for folder in folders:
        found = {f.claim.name: f for f in find_claims(c, intake.read_submission(folder, c).notebooks)}
        assert found["rnn"].claimed is not None and 0.7 < found["rnn"].claimed < 1 and found["rnn"].log_lines >= 10
        assert found["seq2seq"].claimed is not None and 1 < found["seq2seq"].claimed < 7, folder.name
        assert found["vit"].claimed is not None and 0.65 < found["vit"].claimed < 1 and found["vit"].log_lines >= 40
    messy = json.loads((FULL_MARKS / "messy_colab" / "hw4_rnn.ipynb").read_text())
    sources = ["".join(cell["source"]) for cell in messy["cells"]]
    assert any(s.startswith("!pip install") for s in sources) and any("drive.mount(" in s for s in sources)
    assert any("%tensorboard --logdir" in s for s in sources) and sum(s.count("class RNN(") for s in sources) == 2


# ----------------------------------------------------------------------------- the hidden suite (slow)

BUGS = ["collate_pads_to_longest", "rnn_reads_padded_end", "loss_summed", "train_scheduler_not_stepped",
        "attention_softmax_over_target", "no_teacher_forcing", "attention_single_head", "block_post_norm",
        "vit_no_position_embedding", "rule_rnn_uses_nn_dropout", "rule_vit_uses_sdpa"]  # one per kind of mistake


@pytest.mark.slow
def test_validate_reference_skeleton_full_marks_and_bugs(tmp_path: Path) -> None:
    full = [f"full-{p.name}" for p in sorted(FULL_MARKS.iterdir()) if p.is_dir()]
    res = subprocess.run([sys.executable, "-m", "dlgrade", "validate", ID, "--out", str(tmp_path), "--seed", "11",
                          "-j", "2", "--fast", "--only", "reference", "skeleton", *full, *BUGS],
                         cwd=ROOT, capture_output=True, text=True, timeout=1500, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    folder = tmp_path / ID / "validate"
    cases = {c["name"]: c for c in json.loads((folder / "validate.json").read_text())}
    assert set(cases) >= {"reference", "skeleton", *full, *(f"bug-{b}" for b in BUGS)}
    assert all(c["ok"] for c in cases.values()), [c for c in cases.values() if not c["ok"]]
    # the handout's single-head rule: a correct vanilla attention keeps 5 of the 10 attention points
    tests = json.loads((folder / "results" / "bug-attention_single_head" / "results.json").read_text())["extra_data"]["tests"]
    attention = [t for t in tests if t["part"] == "attention"]
    assert sum(t["score"] for t in attention) == 5 and sum(t["max_score"] for t in attention) == 10
