"""Problem 1: an LSTM language model over GPT token ids.

Pipeline: token ids -> embedding -> nn.LSTM -> 2-layer MLP -> log-softmax over the vocabulary.
The output layer of the MLP shares its weight with the embedding (weight tying), so the
model scores the next token by how well the predicted vector matches each token's embedding.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LSTM(nn.Module):
    def __init__(
        self,
        vocabulary_size=40479,
        embedding_size=768,
        hidden_size=512,
        num_layers=1,
        learn_embeddings=False,
        _embedding_weight=None,
    ):
        super().__init__()
        self.vocabulary_size = vocabulary_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.learn_embeddings = learn_embeddings

        # id 0 is the padding token: its embedding never receives gradient
        self.embedding = nn.Embedding(
            vocabulary_size, embedding_size, padding_idx=0, _weight=_embedding_weight
        )
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, embedding_size),
            nn.ReLU(),
            nn.Linear(embedding_size, vocabulary_size, bias=False),
        )

        # Tie the output layer to the embedding: one (V, E) matrix serves both ends.
        self.classifier[2].weight = self.embedding.weight

        # Pretrained embeddings stay fixed unless asked otherwise (this also freezes the
        # tied output layer, since it is the same tensor).
        self.embedding.weight.requires_grad = learn_embeddings

    def forward(self, inputs, hidden_states):
        """Run the language model over a batch of token sequences.

        Args:
            inputs: LongTensor (B, T) of token ids (0 is padding).
            hidden_states: pair (h, c), each (num_layers, B, hidden_size): the LSTM state
                before the first step (see `initial_states`).

        Returns:
            log_probas: (B, T, vocabulary_size), log-probabilities (log-softmax over the
                vocabulary, not logits) of the token that follows each position.
            hidden_states: pair (h, c), each (num_layers, B, hidden_size): the LSTM state
                after the last step.
        """
        embeds = self.embedding(inputs)
        out, (h_n, c_n) = self.lstm(embeds, hidden_states)
        logits = self.classifier(out)
        log_probas = torch.log_softmax(logits, dim=2)
        return log_probas, (h_n, c_n)

    def loss(self, log_probas, targets, mask):
        """Mean negative log-likelihood of the target tokens.

        For each sequence, average the NLL of the targets over the positions where
        mask == 1 (padding is ignored); then average these per-sequence losses over the
        batch. A sequence whose mask is all zeros contributes 0.

        Args:
            log_probas: (B, T, vocabulary_size), as returned by `forward`.
            targets: LongTensor (B, T), the ids of the next tokens.
            mask: (B, T), 1 where the target is a real token and 0 on padding.

        Returns:
            a scalar tensor.
        """
        # the handout's formula: 1/T * sum over the T real tokens of the sequence, then the mean over the batch
        log_p = torch.gather(log_probas, 2, targets.unsqueeze(2)).squeeze(2)
        per_seq = -(log_p * mask).sum(dim=1) / mask.sum(dim=1)
        return per_seq.mean()

    def initial_states(self, batch_size, device=None):
        """Zero LSTM state (h, c), each (num_layers, batch_size, hidden_size)."""
        if device is None:
            device = next(self.parameters()).device
        shape = (self.num_layers, batch_size, self.hidden_size)
        h_0 = torch.zeros(shape, dtype=torch.float, device=device)
        c_0 = torch.zeros(shape, dtype=torch.float, device=device)
        return (h_0, c_0)

    @classmethod
    def load_embeddings_from(cls, filename, hidden_size=512, num_layers=1, learn_embeddings=False):
        """Build a model around pretrained embeddings stored in an .npz file.

        The file holds one array, `tokens`, of shape (vocabulary_size, embedding_size);
        both sizes of the model are read from it.
        """
        with np.load(filename, allow_pickle=False) as archive:
            weight = torch.from_numpy(np.asarray(archive["tokens"], dtype=np.float32))  # (V, E)
        vocabulary_size, embedding_size = weight.shape
        return cls(
            vocabulary_size,
            embedding_size,
            hidden_size,
            num_layers,
            learn_embeddings,
            _embedding_weight=weight,
        )
