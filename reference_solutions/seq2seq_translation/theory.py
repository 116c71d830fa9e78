"""The theory question, answered in code: the gradient of an RNN's loss with respect to b.

For a tanh RNN read over x_1..x_4 from h_0 = 0:

    a_t = U x_t + W h_{t-1} + b,   h_t = tanh(a_t),   o_t = V h_t + c,
    L = sum_t CE(softmax(o_t), y_t).

Back-propagation through time, written out by hand (no autograd in this file):

    dL/do_t = softmax(o_t) - onehot(y_t)
    dL/dh_t = V^T dL/do_t + W^T dL/da_{t+1}        (the second term is 0 at the last step)
    dL/da_t = dL/dh_t * (1 - h_t^2)
    dL/db   = sum_t dL/da_t
"""

import torch


def rnn_bias_gradient(x, y, U, W, V, b, c):
    """dL/db for the sequence loss above.

    Args:
        x: (T, D) float inputs x_1..x_T (T = 4 in the question).
        y: (T,) long class targets.
        U: (H, D); W: (H, H); V: (K, H); b: (H,); c: (K,).

    Returns:
        (H,) the gradient of the summed cross-entropy with respect to b.
    """
    # BEGIN SOLUTION
    T = x.shape[0]
    h = torch.zeros_like(b)  # h_0 = 0, (H,)
    hs, probs = [], []
    for t in range(T):
        h = torch.tanh(U @ x[t] + W @ h + b)  # (H,)
        hs.append(h)
        probs.append(torch.softmax(V @ h + c, dim=0))  # (K,)
    grad_b = torch.zeros_like(b)
    grad_a_next = torch.zeros_like(b)  # dL/da_{t+1}
    for t in reversed(range(T)):
        grad_o = probs[t].clone()
        grad_o[y[t]] -= 1.0  # softmax minus one-hot
        grad_h = V.T @ grad_o + W.T @ grad_a_next  # (H,)
        grad_a = grad_h * (1 - hs[t] ** 2)  # (H,)
        grad_b = grad_b + grad_a
        grad_a_next = grad_a
    return grad_b
    # END SOLUTION
