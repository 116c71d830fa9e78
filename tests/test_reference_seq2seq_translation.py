"""Tests of the reference solution of `seq2seq_translation` and of its release.

Reference modules are loaded from their files under private names (the course layout has a
top-level `models` package, which must not leak into other tests).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

from dlgrade.config import find_root, load_assignment
from dlgrade.intake import read_submission
from dlgrade.release import build_release, reference_submission, skeleton_files, support_files

ROOT = find_root(Path(__file__).parent)
REFERENCE = ROOT / "reference_solutions" / "seq2seq_translation"


def load(rel: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_s2s_ref_{rel.replace('/', '_')}", REFERENCE / f"{rel}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_rnn_cell_shapes_and_log_probabilities():
    rnn = load("models/naive/RNN").VanillaRNN(5, 7, 4)
    out, h = rnn(torch.randn(3, 5), torch.randn(3, 7))
    assert out.shape == (3, 4) and h.shape == (3, 7)
    assert torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-6)
    assert [tuple(p.shape) for p in rnn.parameters()] == [(7, 12), (7,), (4, 12), (4,)]  # hidden layer first


def test_lstm_creation_order_and_agreement_with_torch():
    lstm = load("models/naive/LSTM").LSTM(5, 6)
    names = [n for n, _ in lstm.named_parameters()]
    assert names == [f"{k}_{s}{g}" for g in "ifgo" for k, s in (("W", "i"), ("b", "i"), ("W", "h"), ("b", "h"))]
    assert all(float(p.detach().abs().sum()) == 0 for n, p in lstm.named_parameters() if n.startswith("b"))  # init_hidden
    x = torch.randn(2, 4, 5)
    h, c = lstm(x)
    # the same equations as torch.nn.LSTM, whose weights are the transposed, gate-stacked (i, f, g, o) ones
    torch_lstm = torch.nn.LSTM(5, 6, batch_first=True)
    p = dict(lstm.named_parameters())
    with torch.no_grad():
        torch_lstm.weight_ih_l0.copy_(torch.cat([p[f"W_i{g}"].T for g in "ifgo"]))
        torch_lstm.weight_hh_l0.copy_(torch.cat([p[f"W_h{g}"].T for g in "ifgo"]))
        torch_lstm.bias_ih_l0.copy_(torch.cat([p[f"b_i{g}"] for g in "ifgo"]))
        torch_lstm.bias_hh_l0.copy_(torch.cat([p[f"b_h{g}"] for g in "ifgo"]))
        _, (want_h, want_c) = torch_lstm(x)
    assert torch.allclose(h, want_h[0], atol=1e-6) and torch.allclose(c, want_c[0], atol=1e-6)


@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
@pytest.mark.parametrize("attention", [False, True])
def test_seq2seq_shapes_and_attention(model_type, attention):
    enc = load("models/seq2seq/Encoder").Encoder(11, 5, 6, 6, dropout=0.0, model_type=model_type)
    dec = load("models/seq2seq/Decoder").Decoder(5, 6, 6, 9, dropout=0.0, model_type=model_type, attention=attention)
    src = torch.randint(4, 11, (3, 7))
    src[:, 0] = 2
    out, hidden = enc(src)
    assert out.shape == (3, 7, 6)
    if model_type == "LSTM":
        assert hidden[0].shape == (1, 3, 6) and torch.equal(hidden[1], enc.rnn(enc.embedding(src))[1][1])  # c untouched
    weights = dec.compute_attention(torch.randn(1, 3, 6), out)
    assert weights.shape == (3, 1, 7) and torch.allclose(weights.sum(-1), torch.ones(3, 1))
    s2s = load("models/seq2seq/Seq2Seq").Seq2Seq(enc, dec, "cpu")
    scores = s2s(src)
    assert scores.shape == (3, 7, 9) and torch.allclose(scores.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    assert ("attention_linear" in dict(dec.named_modules())) == attention


def test_transformers_shapes_causality_and_fixed_initialisation():
    tr = load("models/Transformer")
    a = tr.TransformerTranslator(13, 11, "cpu", hidden_dim=8, dim_feedforward=12, dim_k=6, dim_v=6, dim_q=6, max_length=9)
    b = tr.TransformerTranslator(13, 11, "cpu", hidden_dim=8, dim_feedforward=12, dim_k=6, dim_v=6, dim_q=6, max_length=9)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))  # seed_torch(0)
    assert a(torch.randint(0, 13, (2, 7))).shape == (2, 7, 11)
    full = tr.FullTransformerTranslator(13, 11, "cpu", hidden_dim=8, num_heads=2, dim_feedforward=12, num_layers_enc=1,
                                        num_layers_dec=1, dropout=0.0, max_length=9).eval()
    names = [n.split(".")[0] for n, _ in full.named_parameters()]
    assert names[0] == "transformer" and names[-6:] == ["srcembeddingL", "tgtembeddingL", "srcposembeddingL",
                                                         "tgtposembeddingL", "output_layer", "output_layer"]
    src = torch.randint(4, 13, (1, 7))
    tgt = torch.randint(4, 11, (1, 7))
    tgt[:, 0] = 2
    changed = tgt.clone()
    changed[0, 4] = 4 if int(tgt[0, 4]) != 4 else 5
    with torch.no_grad():
        before, after = full(src, tgt), full(src, changed)
    assert torch.allclose(before[:, :5], after[:, :5]) and not torch.allclose(before[:, 5:], after[:, 5:])
    assert full.generate_translation(src).shape == (1, 7, 11)
    assert torch.equal(full.add_start_token(torch.tensor([[2, 5, 6, 7]])), torch.tensor([[2, 2, 5, 6]]))
    assert torch.equal(full.add_start_token(torch.tensor([[2, 2, 5, 6]])), torch.tensor([[2, 2, 5, 6]]))


def test_theory_matches_autograd():
    theory = load("theory")
    gen = torch.Generator().manual_seed(0)
    for h, d, k in [(5, 3, 4), (2, 7, 3)]:
        x, y = torch.randn(4, d, generator=gen, dtype=torch.float64), torch.randint(0, k, (4,), generator=gen)
        u, w, v = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((h, d), (h, h), (k, h)))
        b, c = torch.randn(h, generator=gen, dtype=torch.float64), torch.randn(k, generator=gen, dtype=torch.float64)
        bb = b.clone().requires_grad_(True)
        hid, loss = torch.zeros(h, dtype=torch.float64), 0.0
        for t in range(4):
            hid = torch.tanh(u @ x[t] + w @ hid + bb)
            loss = loss + torch.nn.functional.cross_entropy((v @ hid + c)[None], y[t:t + 1])
        loss.backward()
        assert torch.allclose(theory.rnn_bias_gradient(x, y, u, w, v, b, c), bb.grad)


def test_release_builds_a_skeleton_that_imports(tmp_path):
    cfg = load_assignment("seq2seq_translation", ROOT)
    rel = build_release(cfg, tmp_path)
    for name in cfg.submit:
        assert name in rel.files and "BEGIN SOLUTION" not in (rel.folder / name).read_text()
    assert {"translation_data.py", "training.py", "models/__init__.py"} <= set(rel.files)
    code = ("import torch\nfrom models.naive.RNN import VanillaRNN\nfrom models.naive.LSTM import LSTM\n"
            "from models.seq2seq.Encoder import Encoder\nfrom models.seq2seq.Decoder import Decoder\n"
            "from models.seq2seq.Seq2Seq import Seq2Seq\nfrom models.Transformer import TransformerTranslator, "
            "FullTransformerTranslator\nimport theory\n"
            "m = TransformerTranslator(10, 10, 'cpu')\n"  # given layers build; the stubs raise on use
            "try:\n    m.embed(torch.zeros(1, 3, dtype=torch.long))\nexcept NotImplementedError:\n    print('stub')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=rel.folder, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "stub" in res.stdout, res.stderr[-2000:]
    with zipfile.ZipFile(rel.zip) as zf:
        assert "seq2seq_translation/models/seq2seq/Decoder.py" in zf.namelist()
    assert "models/naive/RNN.py" not in support_files(cfg) and "translation_data.py" in support_files(cfg)
    assert set(skeleton_files(cfg)) >= set(cfg.submit)


def test_nested_submission_paths_are_found_in_zips_and_folders(tmp_path):
    cfg = load_assignment("seq2seq_translation", ROOT)
    files = reference_submission(cfg)
    zpath = tmp_path / "alice.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for rel, data in files.items():
            zf.writestr(f"project/{rel}", data)
        zf.writestr("project/old/RNN.py", b"# a stray copy")  # the file at the asked-for path wins
    got = read_submission(zpath, cfg)
    assert got.files == files
    flat = tmp_path / "bob"
    flat.mkdir()
    for rel, data in files.items():  # everything in one folder: found by file name
        (flat / Path(rel).name).write_bytes(data)
    assert set(read_submission(flat, cfg).files) == set(cfg.submit)
    assert cfg.modules[0] == "models.naive.RNN" and cfg.modules[-1] == "theory"
