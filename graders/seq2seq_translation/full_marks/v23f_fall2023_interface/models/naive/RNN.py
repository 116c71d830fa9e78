"""A vanilla recurrent cell written with linear layers (no built-in recurrent modules)."""

import torch
import torch.nn as nn


class VanillaRNN(nn.Module):
    """One step of an Elman network.

    Both the new hidden state and the output read the concatenation [input; hidden] of the
    current input and the previous hidden state.
    """

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size

        # Create, in this order, the linear layer that gives the new hidden state and the
        # linear layer that gives the output scores, plus the activations they need.
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)
        self.tanh = nn.Tanh()

    def forward(self, input, hidden):
        """One time step.

        Args:
            input: (B, input_size), the input at this step.
            hidden: (B, hidden_size), the previous hidden state.

        Returns:
            output: (B, output_size), log-softmax of a linear map of [input; hidden].
            hidden: (B, hidden_size), tanh of a linear map of [input; hidden].
        """
        combined = torch.cat([input, hidden], 1)
        hidden = self.tanh(self.i2h(combined))
        output = self.softmax(self.i2o(combined))
        return output, hidden
