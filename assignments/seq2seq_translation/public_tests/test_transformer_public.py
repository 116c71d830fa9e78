"""Public tests for Part 3: `TransformerTranslator` and `FullTransformerTranslator` (models/Transformer.py).

The models are built small (hidden_dim 16, two heads of size 8) so the tests run in a second.
"""

import pytest
import torch
from checks import assert_close, require

B, T, SRC_V, TGT_V = 3, 7, 11, 13
SMALL = dict(hidden_dim=16, num_heads=2, dim_feedforward=32, dim_k=8, dim_v=8, dim_q=8, max_length=T)
FULL_SMALL = dict(hidden_dim=16, num_heads=2, dim_feedforward=32, num_layers_enc=1, num_layers_dec=1, dropout=0.0, max_length=T)
NAMES = ("embeddingL", "posembeddingL", "k1", "v1", "q1", "k2", "v2", "q2", "softmax", "attention_head_projection", "norm_mh")


def tokens(vocab, batch=B, steps=T):
    x = torch.randint(4, vocab, (batch, steps))
    x[:, 0] = 2  # <sos>
    return x


@pytest.fixture
def encoder_model(student):
    model = student("models.Transformer").TransformerTranslator(SRC_V, TGT_V, "cpu", **SMALL)
    missing = [name for name in NAMES if not hasattr(model, name)]
    require(not missing, f"TransformerTranslator.__init__ must create the layers named {', '.join(missing)}")
    return model.eval()


@pytest.mark.part("transformer")
@pytest.mark.points(1)
def test_embed_adds_token_and_position_embeddings(encoder_model):
    """embed(inputs) (B, T) -> (B, T, hidden_dim) = embeddingL(inputs) + posembeddingL(positions)."""
    x = tokens(SRC_V)
    with torch.no_grad():
        out = encoder_model.embed(x)
        want = encoder_model.embeddingL(x) + encoder_model.posembeddingL(torch.arange(T)).unsqueeze(0)
    assert_close(out, want, "embed(inputs)", "add the learned embedding of positions 0 .. T-1 to the token embedding")


@pytest.mark.part("transformer")
@pytest.mark.points(2)
def test_multi_head_attention_matches_the_formula(encoder_model):
    """multi_head_attention: two heads of softmax(QK^T / sqrt(dim_k)) V, projection, residual, LayerNorm."""
    m = encoder_model
    x = torch.randn(B, T, SMALL["hidden_dim"])
    with torch.no_grad():
        out = m.multi_head_attention(x)
        heads = []
        for q, k, v in ((m.q1, m.k1, m.v1), (m.q2, m.k2, m.v2)):
            scores = q(x) @ k(x).transpose(1, 2) / SMALL["dim_k"] ** 0.5  # (B, T, T)
            heads.append(scores.softmax(dim=-1) @ v(x))  # (B, T, dim_v)
        want = m.norm_mh(x + m.attention_head_projection(torch.cat(heads, dim=-1)))
    assert_close(out, want, "multi_head_attention(inputs)", "concatenate head 1 then head 2, project, add the input, then norm_mh")


@pytest.mark.part("transformer")
@pytest.mark.points(1)
def test_encoder_transformer_forward_shape_and_equivariance(encoder_model):
    """forward (B, T) -> (B, T, V); feedforward_layer keeps (B, T, hidden_dim) and is position-wise."""
    with torch.no_grad():
        out = encoder_model(tokens(SRC_V))
        h = torch.randn(B, T, SMALL["hidden_dim"])
        ff = encoder_model.feedforward_layer(h)
        perm = torch.randperm(T)
        ff_perm = encoder_model.feedforward_layer(h[:, perm])
    require(isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, TGT_V), f"forward must return (B, T, V) = {(B, T, TGT_V)}")
    require(tuple(ff.shape) == h.shape, f"feedforward_layer must keep the shape {tuple(h.shape)}")
    assert_close(ff_perm, ff[:, perm], "feedforward_layer on permuted positions", "the feed-forward layer acts on each position alone")
    require(
        torch.allclose(ff.mean(dim=-1), torch.zeros(B, T), atol=1e-4),
        "feedforward_layer must end with the residual connection and a LayerNorm (freshly built: mean 0 per position)",
    )


@pytest.fixture
def full_model(student):
    return student("models.Transformer").FullTransformerTranslator(SRC_V, TGT_V, "cpu", **FULL_SMALL).eval()


@pytest.mark.part("full_transformer")
@pytest.mark.points(1)
def test_full_transformer_shapes(full_model):
    """forward(src, tgt) and generate_translation(src) both return (B, T, V)."""
    with torch.no_grad():
        out = full_model(tokens(SRC_V), tokens(TGT_V))
        gen = full_model.generate_translation(tokens(SRC_V))
    require(isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, TGT_V), f"forward must return (B, T, V) = {(B, T, TGT_V)}")
    require(isinstance(gen, torch.Tensor) and tuple(gen.shape) == (B, T, TGT_V), f"generate_translation must return {(B, T, TGT_V)}")


@pytest.mark.part("full_transformer")
@pytest.mark.points(2)
def test_full_transformer_is_causal(full_model):
    """The prediction at position t reads only the target tokens before t (shifted right, causal mask)."""
    src, tgt = tokens(SRC_V), tokens(TGT_V)
    j = 3
    changed = tgt.clone()
    changed[:, j:] = torch.randint(4, TGT_V, (B, T - j))
    with torch.no_grad():
        out = full_model(src, tgt)
        again = full_model(src, changed)
    assert_close(
        again[:, : j + 1],
        out[:, : j + 1],
        f"outputs at positions 0..{j} after changing target tokens {j}..{T - 1}",
        "position t must not see target tokens t, t+1, ...: shift the target right with add_start_token and use a causal mask",
    )
    require(not torch.allclose(again[:, j + 1 :], out[:, j + 1 :]), "later positions must depend on the earlier target tokens")
