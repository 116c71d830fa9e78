"""Tests of the reference solution of `lstm_lm_vit` (models, data loaders, runners).

The reference is a folder of plain modules (`lstm_solution`, `vit_solution`, `utils`), not a
package: each test imports them through the `refmod` fixture, which puts the folder on
sys.path and removes the modules again afterwards so that `utils` does not leak into other
tests.
"""

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference_solutions" / "lstm_lm_vit"
MODULE_ROOTS = ("lstm_solution", "vit_solution", "utils", "run_lstm", "run_exp_vit")

# WikiText-2 as described in ../shared/data/README.md: (tokens, documents) per split.
WIKITEXT2_COUNTS = {
    "train": (2_356_376, 23_767),
    "validation": (245_046, 2_461),
    "test": (279_023, 2_891),
}


def _reference_modules():
    return [
        name
        for name in sys.modules
        if name in MODULE_ROOTS or any(name.startswith(root + ".") for root in MODULE_ROOTS)
    ]


@pytest.fixture
def refmod(monkeypatch):
    """`refmod("utils.wikitext2")` imports a module of the reference solution."""
    saved = {name: sys.modules.pop(name) for name in _reference_modules()}
    monkeypatch.syspath_prepend(str(REFERENCE))
    try:
        yield importlib.import_module
    finally:
        for name in _reference_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------- WikiText-2


def test_wikitext2_splits_documents_into_padded_sequences(refmod, tmp_path):
    wikitext2 = refmod("utils.wikitext2")
    # documents of 1, 5, 9 and 4 tokens; ids start at 1 because 0 is padding
    sizes = np.array([1, 5, 9, 4], dtype=np.int64)
    tokens = np.arange(1, sizes.sum() + 1, dtype=np.uint16)
    write_npz(tmp_path / "wiki.train.npz", tokens=tokens, sizes=sizes)

    data = wikitext2.Wikitext2(str(tmp_path), split="train", sequence_length=4)
    # pairs per document: 0, 4, 8, 3 -> sequences of at most 4 pairs: 0 + 1 + 2 + 1
    assert len(data) == 4
    items = [data[i] for i in range(len(data))]
    for item in items:
        assert set(item) == {"source", "target", "mask"}
        assert item["source"].dtype == torch.long and item["target"].dtype == torch.long
        assert item["mask"].dtype == torch.float
        assert all(item[k].shape == (4,) for k in item)

    # document 2 is tokens 2..6: one full sequence, source 2..5, target 3..6
    assert items[0]["source"].tolist() == [2, 3, 4, 5]
    assert items[0]["target"].tolist() == [3, 4, 5, 6]
    # document 3 is tokens 7..15: two sequences that share token 11
    assert items[1]["source"].tolist() == [7, 8, 9, 10]
    assert items[1]["target"].tolist() == [8, 9, 10, 11]
    assert items[2]["source"].tolist() == [11, 12, 13, 14]
    assert items[2]["target"].tolist() == [12, 13, 14, 15]
    # document 4 is tokens 16..19: 3 pairs then padding, masked out
    assert items[3]["source"].tolist() == [16, 17, 18, 0]
    assert items[3]["target"].tolist() == [17, 18, 19, 0]
    assert items[3]["mask"].tolist() == [1.0, 1.0, 1.0, 0.0]
    # every token except a document's first is a target exactly once
    total = sum(item["mask"].sum().item() for item in items)
    assert total == len(tokens) - len(sizes)


def test_wikitext2_default_length_is_256(refmod, tmp_path):
    wikitext2 = refmod("utils.wikitext2")
    sizes = np.array([300, 10], dtype=np.int64)
    write_npz(tmp_path / "wiki.validation.npz", tokens=np.ones(310, np.uint16), sizes=sizes)
    data = wikitext2.Wikitext2(str(tmp_path), split="validation")
    assert len(data) == 3  # 299 pairs -> 256 + 43, then 9
    assert [data[i]["mask"].sum().item() for i in range(3)] == [256, 43, 9]
    assert data[1]["source"].shape == (256,)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert batch["source"].shape == batch["target"].shape == batch["mask"].shape == (3, 256)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"tokens": np.ones(4, np.uint16)}, "missing array"),
        ({"tokens": np.ones(4, np.int32), "sizes": np.array([4])}, "uint16"),
        ({"tokens": np.ones((2, 2), np.uint16), "sizes": np.array([4])}, "1-D uint16"),
        ({"tokens": np.ones(4, np.uint16), "sizes": np.array([4.0])}, "integer"),
        ({"tokens": np.ones(4, np.uint16), "sizes": np.array([2, 3])}, "sum to 5"),
        ({"tokens": np.ones(4, np.uint16), "sizes": np.array([5, -1])}, "negative"),
    ],
)
def test_load_npz_rejects_malformed_arrays(refmod, tmp_path, arrays, message):
    wikitext2 = refmod("utils.wikitext2")
    path = write_npz(tmp_path / "wiki.train.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        wikitext2.load_npz(str(path))


def test_load_npz_rejects_files_that_are_not_archives(refmod, tmp_path):
    wikitext2 = refmod("utils.wikitext2")
    garbage = tmp_path / "wiki.train.npz"
    garbage.write_bytes(b"this is not a zip file" * 10)
    with pytest.raises(ValueError, match="not a readable .npz"):
        wikitext2.load_npz(str(garbage))
    truncated = tmp_path / "truncated.npz"
    write_npz(truncated, tokens=np.ones(1000, np.uint16), sizes=np.array([1000]))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable .npz"):
        wikitext2.load_npz(str(truncated))
    with pytest.raises(FileNotFoundError):
        wikitext2.Wikitext2(str(tmp_path), split="test")


def _shared_wikitext2():
    for data in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (data / "wikitext2").is_dir():
            return data / "wikitext2"
    return None


@pytest.mark.skipif(
    _shared_wikitext2() is None,
    reason="the real WikiText-2 files are not here (expected in ../shared/data/wikitext2)",
)
def test_real_wikitext2_matches_the_readme(refmod):
    wikitext2 = refmod("utils.wikitext2")
    root = _shared_wikitext2()
    for split, (num_tokens, num_documents) in WIKITEXT2_COUNTS.items():
        tokens, sizes = wikitext2.load_npz(str(root / f"wiki.{split}.npz"))
        assert (len(tokens), len(sizes)) == (num_tokens, num_documents), split
        assert 0 < tokens.max() < 40479, "ids are GPT ids and 0 stays free for padding"

    data = wikitext2.Wikitext2(str(root), split="validation")
    loader = torch.utils.data.DataLoader(data, batch_size=512)
    targets = sum(batch["mask"].sum().item() for batch in loader)
    num_tokens, num_documents = WIKITEXT2_COUNTS["validation"]
    assert targets == num_tokens - num_documents  # every document has at least one token


# ----------------------------------------------------------------------------- CIFAR-10


def write_cifar_batch(path, labels, images):
    records = np.concatenate([np.array(labels, np.uint8)[:, None], images.reshape(len(labels), -1)], 1)
    records.astype(np.uint8).tofile(path)


def test_cifar10_reads_the_binary_format(refmod, tmp_path):
    cifar10 = refmod("utils.cifar10")
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = []
    for i in range(1, 6):
        images = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        write_cifar_batch(folder / f"data_batch_{i}.bin", [i, 9 - i], images)
        batches.append(images)
    test_image = np.zeros((1, 3, 32, 32), np.uint8)
    test_image[0, 1] = 255  # a green image: channel-major order puts it in channel 1
    write_cifar_batch(folder / "test_batch.bin", [3], test_image)

    mean, std = (0.5, 0.25, 0.125), (0.5, 0.5, 0.25)
    train = cifar10.CIFAR10(str(tmp_path), split="train", mean=mean, std=std)  # parent folder
    assert len(train) == 10
    image, label = train[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float
    assert label == 9 - 2 and isinstance(label, int)
    pixels = torch.from_numpy(batches[1][1]).float() / 255
    want = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(image, want)

    test = cifar10.CIFAR10(str(folder), split="test", mean=(0, 0, 0), std=(1, 1, 1))
    image, label = test[0]
    assert label == 3
    assert image[1].eq(1).all() and image[0].eq(0).all() and image[2].eq(0).all()

    augmented = cifar10.CIFAR10(str(folder), split="train", augment=True)
    assert augmented[0][0].shape == (3, 32, 32)


def test_cifar10_rejects_truncated_files(refmod, tmp_path):
    cifar10 = refmod("utils.cifar10")
    (tmp_path / "test_batch.bin").write_bytes(bytes(3073 * 2 - 1))
    with pytest.raises(ValueError, match="3073"):
        cifar10.CIFAR10(str(tmp_path), split="test")
    (tmp_path / "test_batch.bin").write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match="label 10"):
        cifar10.CIFAR10(str(tmp_path), split="test")
    with pytest.raises(ValueError, match="split"):
        cifar10.CIFAR10(str(tmp_path), split="valid")


# ----------------------------------------------------------------------------- LSTM


def test_lstm_shapes_and_log_probabilities(refmod):
    lstm_solution = refmod("lstm_solution")
    torch.manual_seed(0)
    model = lstm_solution.LSTM(vocabulary_size=50, embedding_size=16, hidden_size=24, num_layers=2)
    inputs = torch.randint(0, 50, (3, 7))
    log_probas, (h, c) = model(inputs, model.initial_states(3))
    assert log_probas.shape == (3, 7, 50)
    assert h.shape == c.shape == (2, 3, 24)
    torch.testing.assert_close(log_probas.exp().sum(-1), torch.ones(3, 7))
    # the returned state continues the sequence: running in two halves gives the same output
    first, state = model(inputs[:, :4], model.initial_states(3))
    second, _ = model(inputs[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), log_probas)


def test_lstm_ties_and_freezes_the_embeddings(refmod, tmp_path):
    lstm_solution = refmod("lstm_solution")
    model = lstm_solution.LSTM(vocabulary_size=30, embedding_size=8, hidden_size=12)
    assert model.classifier[2].weight is model.embedding.weight
    assert not model.embedding.weight.requires_grad
    assert lstm_solution.LSTM(30, 8, 12, learn_embeddings=True).embedding.weight.requires_grad

    weight = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    write_npz(tmp_path / "emb.npz", tokens=weight)
    loaded = lstm_solution.LSTM.load_embeddings_from(str(tmp_path / "emb.npz"), hidden_size=12)
    assert (loaded.vocabulary_size, loaded.embedding_size, loaded.hidden_size) == (30, 8, 12)
    torch.testing.assert_close(loaded.embedding.weight.detach(), torch.from_numpy(weight))


def test_lstm_loss_averages_per_sequence_then_over_the_batch(refmod):
    lstm_solution = refmod("lstm_solution")
    model = lstm_solution.LSTM(vocabulary_size=10, embedding_size=4, hidden_size=6)
    torch.manual_seed(1)
    log_probas = torch.log_softmax(torch.randn(3, 5, 10), -1)
    targets = torch.randint(1, 10, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float)
    loss = model.loss(log_probas, targets, mask)
    picked = [[-log_probas[b, t, targets[b, t]].item() for t in range(5)] for b in range(3)]
    want = (sum(picked[0]) / 5 + sum(picked[1][:2]) / 2 + 0.0) / 3
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- ViT parts


def test_layernorm_matches_torch(refmod):
    vit_solution = refmod("vit_solution")
    torch.manual_seed(0)
    norm = vit_solution.LayerNorm(16)
    assert norm.weight.tolist() == [1.0] * 16 and norm.bias.tolist() == [0.0] * 16
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    for shape in [(16,), (5, 16), (2, 3, 4, 16)]:
        x = torch.randn(shape) * 3 + 1
        want = F.layer_norm(x, (16,), norm.weight, norm.bias, eps=1e-5)
        torch.testing.assert_close(norm(x), want)


def test_split_and_merge_heads(refmod):
    vit_solution = refmod("vit_solution")
    attn = vit_solution.MultiHeadedAttention(head_size=4, num_heads=3, sequence_length=5)
    x = torch.randn(2, 5, 12)
    y = attn.split_heads(x)
    assert y.shape == (2, 3, 5, 4)
    assert y[0, 1, 2, 3] == x[0, 2, 4 * 1 + 3]  # y[b, h, t, i] = x[b, t, h * head_size + i]
    assert y[1, 2, 4, 0] == x[1, 4, 4 * 2 + 0]
    torch.testing.assert_close(attn.merge_heads(y), x)
    z = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(attn.split_heads(attn.merge_heads(z)), z)


def test_attention_weights_apply_and_forward(refmod):
    vit_solution = refmod("vit_solution")
    torch.manual_seed(0)
    attn = vit_solution.MultiHeadedAttention(head_size=4, num_heads=3, sequence_length=5)
    assert (attn.head_size, attn.num_heads, attn.sequence_length) == (4, 3, 5)
    d = 12
    assert sum(p.numel() for p in attn.parameters()) == 4 * (d * d + d)
    assert [name for name, _ in attn.named_children()] == ["W_q", "W_k", "W_v", "W_o"]

    q, k, v = torch.randn(3, 2, 3, 5, 4).unbind(0)
    weights = attn.get_attention_weights(q, k)
    assert weights.shape == (2, 3, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1))
    heads = attn.apply_attention(q, k, v)
    assert heads.shape == (2, 5, 12)
    torch.testing.assert_close(heads[:, :, 4:8], weights[:, 1] @ v[:, 1])

    x = torch.randn(2, 5, 12)
    out = attn(x)
    assert out.shape == (2, 5, 12)
    # self-attention without positions is permutation-equivariant over the sequence
    order = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(attn(x[:, order]), out[:, order])


def test_prenorm_block_wiring(refmod):
    vit_solution = refmod("vit_solution")
    torch.manual_seed(0)
    block = vit_solution.PreNormAttentionBlock(16, 32, num_heads=4, sequence_length=6)
    x = torch.randn(2, 6, 16)
    h = x + block.attn(block.layer_norm_1(x))
    torch.testing.assert_close(block(x), h + block.linear(block.layer_norm_2(h)))


def test_get_patches_order(refmod):
    vit_solution = refmod("vit_solution")
    model = vit_solution.VisionTransformer(embed_dim=8, hidden_dim=8, num_heads=2, num_layers=1)
    image = torch.arange(2 * 2 * 4 * 6, dtype=torch.float).view(2, 2, 4, 6)  # (B, C, H, W)
    patches = model.get_patches(image, 2)
    assert patches.shape == (2, 6, 2 * 2 * 2)
    # patch 4 is row 1, column 1 of the 2x3 grid: pixels rows 2-3, columns 2-3
    want = [image[1, c, 2 + r, 2 + s].item() for c in range(2) for r in range(2) for s in range(2)]
    assert patches[1, 4].tolist() == want
    for n in range(6):
        row, col = divmod(n, 3)
        block = image[:, :, 2 * row : 2 * row + 2, 2 * col : 2 * col + 2]  # (B, C, 2, 2)
        torch.testing.assert_close(patches[:, n], block.reshape(2, -1))
    unflattened = model.get_patches(image, 2, flatten_channels=False)
    assert unflattened.shape == (2, 6, 2, 2, 2)
    torch.testing.assert_close(unflattened.reshape(2, 6, -1), patches)


@pytest.mark.parametrize("block", ["prenorm", "postnorm"])
def test_vit_forward_and_loss(refmod, block):
    vit_solution = refmod("vit_solution")
    torch.manual_seed(0)
    model = vit_solution.VisionTransformer(
        embed_dim=32, hidden_dim=64, num_heads=4, num_layers=2, num_classes=7, block=block
    )
    images = torch.randn(3, 3, 32, 32)
    logits = model(images)
    assert logits.shape == (3, 7)
    labels = torch.tensor([0, 6, 2])
    torch.testing.assert_close(model.loss(logits, labels), F.cross_entropy(logits, labels))
    # smaller images use a prefix of the position embeddings
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    with pytest.raises(ValueError, match="block"):
        vit_solution.VisionTransformer(block="sandwich")


# ----------------------------------------------------------------------------- utils


def test_synthetic_token_corpus(refmod):
    synthetic = refmod("utils.synthetic")
    corpus = synthetic.make_token_corpus(64, 20, vocab_size=12, seed=3)
    again = synthetic.make_token_corpus(64, 20, vocab_size=12, seed=3)
    assert all(torch.equal(corpus[k], again[k]) for k in ("source", "target", "mask"))
    source, target, mask = corpus["source"], corpus["target"], corpus["mask"]
    assert source.shape == target.shape == mask.shape == (64, 20)
    assert source.dtype == target.dtype == torch.long and mask.dtype == torch.float
    lengths = mask.sum(1)
    assert lengths.min() >= 10 and lengths.max() <= 20
    real = mask.bool()
    assert source[real].min() >= 1 and target[real].max() < 12
    assert (source[~real] == 0).all() and (target[~real] == 0).all()
    assert torch.equal(source[:, 1:][real[:, 1:]], target[:, :-1][real[:, 1:]])  # shifted by one
    other = synthetic.make_token_corpus(64, 20, vocab_size=12, seed=4)
    assert not torch.equal(other["source"], source)


def test_synthetic_images(refmod):
    synthetic = refmod("utils.synthetic")
    images, labels = synthetic.make_image_dataset(40, 8, num_classes=4, seed=0)
    assert images.shape == (40, 3, 8, 8) and images.dtype == torch.float
    assert labels.dtype == torch.long and labels.bincount().tolist() == [10] * 4
    # the class is visible: the nearest class mean recovers every label
    means = torch.stack([images[labels == k].mean(0) for k in range(4)])  # (4, 3, 8, 8)
    distances = ((images[:, None] - means[None]) ** 2).flatten(2).sum(-1)  # (40, 4)
    assert torch.equal(distances.argmin(1), labels)


def test_torch_utils(refmod):
    torch_utils = refmod("utils.torch_utils")
    nested = {"a": torch.ones(2), "b": [torch.zeros(1), (torch.ones(1), 3)], "c": "text"}
    moved = torch_utils.to_device(nested, "cpu")
    assert isinstance(moved["b"][1], tuple) and moved["b"][1][1] == 3 and moved["c"] == "text"
    torch_utils.seed_experiment(5)
    first = (torch.rand(3), np.random.rand())
    torch_utils.seed_experiment(5)
    assert torch.equal(first[0], torch.rand(3)) and first[1] == np.random.rand()


# ----------------------------------------------------------------------------- runners


@pytest.mark.parametrize(
    "script, config, keys",
    [
        ("run_lstm.py", 1, ["train_loss", "train_ppl", "valid_loss", "valid_ppl", "time"]),
        ("run_exp_vit.py", 5, ["train_loss", "train_acc", "valid_loss", "valid_acc", "time"]),
    ],
)
def test_runner_trains_one_epoch_on_synthetic_data(tmp_path, script, config, keys):
    command = [sys.executable, str(REFERENCE / script), "--config", str(config)]
    command += ["--epochs", "1", "--device", "cpu", "--log-dir", str(tmp_path)]
    # one thread: the models are tiny, and on a busy machine extra threads only contend
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout
    log = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert log["config"] == config and log["data"] == "synthetic"
    for key in keys:
        assert len(log[key]) == 1 and math.isfinite(log[key][0]), key
