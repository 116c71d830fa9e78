"""The sequence-to-sequence translator: an encoder, then a greedy decoding loop."""

import torch
import torch.nn as nn


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device):
        super().__init__()
        self.device = device
        self.encoder = encoder.to(device)
        self.decoder = decoder.to(device)

    def forward(self, source):
        """Translate a batch greedily.

        Encode `source`, then run the decoder for as many steps as `source` has positions.
        The first decoder input is the start token `source[:, 0]`; every later input is the
        arg-max of the previous step's prediction (no teacher forcing).

        Args:
            source: (B, T) token ids, each row starting with the start token.

        Returns:
            (B, T, output_size): the decoder's log-probabilities at every step.
        """
        # BEGIN SOLUTION
        B, T = source.shape
        outputs = torch.zeros(B, T, self.decoder.output_size, device=source.device)  # (B, T, V)
        encoder_outputs, hidden = self.encoder(source)  # (B, T, enc_h)
        input = source[:, 0].unsqueeze(1)  # (B, 1): the start token
        for t in range(T):
            output, hidden = self.decoder(input, hidden, encoder_outputs)  # (B, V)
            outputs[:, t, :] = output
            input = output.argmax(dim=1).unsqueeze(1)  # (B, 1)
        return outputs
        # END SOLUTION
