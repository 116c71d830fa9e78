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
    T = x.shape[0]
    hs, ps = [torch.zeros_like(b)], []
    for t in range(T):
        a = U @ x[t] + W @ hs[-1] + b
        hs.append(torch.tanh(a))
        p = torch.exp(V @ hs[-1] + c)
        ps.append(p / p.sum())
    dL_db = torch.zeros_like(b)
    delta_next = torch.zeros_like(b)
    for t in range(T - 1, -1, -1):
        dy = ps[t].clone()
        dy[y[t]] = dy[y[t]] - 1
        dh = V.t() @ dy + W.t() @ delta_next
        delta = (1 - hs[t + 1] * hs[t + 1]) * dh
        dL_db += delta
        delta_next = delta
    return dL_db
