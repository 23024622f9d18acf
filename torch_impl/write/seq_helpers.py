"""Helper classes for sequence models, written verbatim into model.py when used
(torch_impl/write/helpers.py merges them into HELPERS)."""

from __future__ import annotations

__all__ = ["SEQ_HELPERS"]

SEQ_HELPERS = {
    "KerasRecurrence": '''
def masked_scan(step, xw, mask, state, zero_output_for_mask=False):
    """Keras' recurrence loop (keras/src/backend/tensorflow/rnn.py): at a step
    whose mask is False the state and the output are carried over from the
    previous step (the output before the first step is zeros; with
    zero_output_for_mask, as Bidirectional sets it, masked outputs are zeros).
    xw: the input projection of every step, (N, T, G*H)."""
    outputs, out = [], None
    for t in range(xw.shape[1]):
        new_out, new_state = step(xw[:, t], state)
        if mask is not None:
            keep = mask[:, t, None]
            out = torch.zeros_like(new_out) if out is None or zero_output_for_mask else out
            new_out = torch.where(keep, new_out, out)
            new_state = tuple(torch.where(keep, n, s) for n, s in zip(new_state, state))
        out, state = new_out, new_state
        outputs.append(out)
    return torch.stack(outputs, dim=1), state


def take_steps(x, index):
    """x[n, index[n, t]] for every row n and step t (index_select on rows: fast on CPU)."""
    n, t = index.shape
    flat = (index + torch.arange(n, device=x.device)[:, None] * x.shape[1]).reshape(-1)
    return x.reshape(n * x.shape[1], -1).index_select(0, flat).reshape(n, t, -1)


def right_padded(mask):
    """True when every row is valid steps then padding, at least one valid."""
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)[None]
    return bool((lengths > 0).all()) and torch.equal(mask, steps < lengths[:, None])


class KerasRecurrence:
    """Keras' recurrent-layer flags around a torch recurrent module.

    Without a mask (or with nothing masked) torch's fused kernel runs: it is
    the fast path and computes what Keras computes. Right-padded masks also
    run fused, packed (`packed`). Other masks (left padding, holes) need
    Keras' rule (masked steps skipped, state and output carried over), which
    the fused kernel cannot express, so the same weights then run step by
    step (`masked_scan`).
    """

    fused = True
    activation, recurrent_activation = staticmethod(torch.tanh), staticmethod(torch.sigmoid)

    def set_flags(self, return_sequences, return_state, go_backwards, zero_output_for_mask=False,
                  activation=None, recurrent_activation=None):
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.zero_output_for_mask = zero_output_for_mask
        if activation is not None or recurrent_activation is not None:
            # torch's fused kernels hard-wire tanh/sigmoid (relu for nn.RNN):
            # other activations need the cell written out, step by step
            self.fused = False
            self.activation = activation or self.activation
            self.recurrent_activation = recurrent_activation or self.recurrent_activation

    def forward(self, x, mask=None, initial_state=None):
        """initial_state: Keras' [h] or [h, c], each (N, hidden); zeros when None."""
        if mask is not None and bool(mask.all()):
            mask = None
        hx = self.fused_state(initial_state)
        if mask is not None and self.fused and right_padded(mask):
            return self.finish(*self.packed(x, mask.sum(1), hx))
        if self.go_backwards:  # Keras reverses inputs and mask and returns the reversed sequence
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        if mask is None and self.fused:
            seq, states = super().forward(x, hx)
            states = [s[0] for s in (states if isinstance(states, tuple) else (states,))]
        else:
            start = tuple(initial_state) if initial_state is not None else self.initial_state(x)
            seq, states = masked_scan(self.step, self.input_projection(x), mask, start, self.zero_output_for_mask)
        return self.finish(seq, states)

    def fused_state(self, initial_state):
        """Keras' [h] / [h, c] as torch's h_0 / (h_0, c_0): one layer, (1, N, hidden)."""
        if initial_state is None:
            return None
        states = tuple(s.unsqueeze(0) for s in initial_state)
        return states if len(states) == 2 else states[0]

    def finish(self, seq, states):
        out = seq if self.return_sequences else seq[:, -1]
        return (out, *states) if self.return_state else out

    def packed(self, x, lengths, hx=None):
        """Right-padded sequences on the fused kernel (pack_padded_sequence),
        then Keras' outputs at the padded steps: the last valid output carried
        on (zeros with zero_output_for_mask); with go_backwards, Keras reads
        the padding first (zeros) and then the valid steps last to first."""
        steps = torch.arange(x.shape[1], device=x.device)[None]
        valid = steps < lengths[:, None]
        if self.go_backwards:  # each row's valid steps reversed in place
            x = take_steps(x, torch.where(valid, lengths[:, None] - 1 - steps, steps))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        seq, states = super().forward(packed, hx)
        seq = nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=x.shape[1])[0]
        states = [s[0] for s in (states if isinstance(states, tuple) else (states,))]
        if self.go_backwards:  # Keras' output r is valid step r - (T - L), zeros before
            shift = steps - (x.shape[1] - lengths[:, None])
            seq = take_steps(seq, shift.clamp(min=0)) * (shift >= 0)[..., None]
        elif not self.zero_output_for_mask:
            seq = torch.where(valid[..., None], seq, states[0][:, None])
        return seq, states

    def input_projection(self, x):
        return F.linear(x, self.weight_ih_l0, self.bias_ih_l0 if self.bias else None)

    def recurrent_projection(self, h):
        return F.linear(h, self.weight_hh_l0, self.bias_hh_l0 if self.bias else None)

    def initial_state(self, x):
        return (x.new_zeros(x.shape[0], self.hidden_size),)
''',
    "KerasSimpleRNN": '''
class KerasSimpleRNN(KerasRecurrence, nn.RNN):
    """Keras SimpleRNN on torch's fused nn.RNN. Keras has one bias, so
    bias_hh_l0 stays zero and frozen (trainable, it would double the step)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", **flags):
        super().__init__(input_size, hidden_size, bias=bias, nonlinearity=nonlinearity, batch_first=True)
        self.set_flags(**flags)
        if bias:
            self.bias_hh_l0.requires_grad_(False)

    def step(self, xw, state):
        pre = xw + self.recurrent_projection(state[0])
        if not self.fused:
            h = self.activation(pre)
        else:
            h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, (h,)
''',
    "KerasLSTM": '''
class KerasLSTM(KerasRecurrence, nn.LSTM):
    """Keras LSTM on torch's fused nn.LSTM (same gate order i,f,g,o). Keras
    has one bias, so bias_hh_l0 stays zero and frozen (trainable, it would
    take the same gradient and move the effective bias twice as fast)."""

    def __init__(self, input_size, hidden_size, bias=True, **flags):
        super().__init__(input_size, hidden_size, bias=bias, batch_first=True)
        self.set_flags(**flags)
        if bias:
            self.bias_hh_l0.requires_grad_(False)

    def step(self, xw, state):
        h, c = state
        i, f, g, o = (xw + self.recurrent_projection(h)).chunk(4, dim=-1)
        gate, act = self.recurrent_activation, self.activation
        c = gate(f) * c + gate(i) * act(g)
        h = gate(o) * act(c)
        return h, (h, c)

    def initial_state(self, x):
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return (zeros, zeros)
''',
    "KerasGRU": '''
class KerasGRU(KerasRecurrence, nn.GRU):
    """Keras GRU(reset_after=True) on torch's fused nn.GRU: the same cell.
    Keras' gates z,r,h were reordered to torch's r,z,n in the weights, and
    Keras' bias row 0 is bias_ih, row 1 bias_hh."""

    def __init__(self, input_size, hidden_size, bias=True, **flags):
        super().__init__(input_size, hidden_size, bias=bias, batch_first=True)
        self.set_flags(**flags)

    def step(self, xw, state):
        h = state[0]
        x_r, x_z, x_n = xw.chunk(3, dim=-1)
        h_r, h_z, h_n = self.recurrent_projection(h).chunk(3, dim=-1)
        r, z = self.recurrent_activation(x_r + h_r), self.recurrent_activation(x_z + h_z)
        n = self.activation(x_n + r * h_n)
        h = z * h + (1 - z) * n
        return h, (h,)
''',
    "KerasGRUResetBefore": '''
class KerasGRUResetBefore(KerasRecurrence, nn.Module):
    """Keras GRU(reset_after=False), the Keras 2 default, written as a cell.

    Why not nn.GRU: torch's GRU applies the reset gate AFTER the recurrent
    matmul, r * (W_hn h + b_hn); this variant applies it BEFORE,
    W_hn (r * h), with one bias. No weight mapping makes nn.GRU compute
    that, so the cell runs step by step. Gates are in torch's order r,z,n.
    """

    fused = False

    def __init__(self, input_size, hidden_size, bias=True, **flags):
        super().__init__()
        self.hidden_size, self.bias_on = hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size)) if bias else None
        self.set_flags(**flags)

    def input_projection(self, x):
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xw, state):
        h = state[0]
        x_r, x_z, x_n = xw.chunk(3, dim=-1)
        w_r, w_z, w_n = self.weight_hh.chunk(3, dim=0)
        r = self.recurrent_activation(x_r + h @ w_r.T)
        z = self.recurrent_activation(x_z + h @ w_z.T)
        n = self.activation(x_n + (r * h) @ w_n.T)
        h = z * h + (1 - z) * n
        return h, (h,)
''',
    "KerasMultiHeadAttention": '''
class KerasMultiHeadAttention(nn.Module):
    """Keras MultiHeadAttention: explicit query/key/value/output projections
    (key_dim need not be embed_dim / num_heads, so nn.MultiheadAttention's
    packed weight does not fit) and logits q.k * scale, scale = 1/sqrt(key_dim).

    The boolean mask is Keras' `_compute_attention_mask`: query mask (N, T, 1)
    AND value/key masks (N, 1, S) AND causal tril(T, S) AND attention_mask.
    fast=True is Keras' dot_product_attention path (masked logits replaced by
    -0.7 * float32 max, so a fully masked row is uniform); fast=False (Keras
    layer with dropout > 0) is its einsum path: masked logits -1e9, then
    masked probabilities zeroed.
    """

    def __init__(self, num_heads, key_dim, value_dim, query_in, key_in, value_in, out_features, bias=True,
                 scale=None, fast=True, fast_mask_value=-0.7 * 3.38953e38, softmax_mask_value=-1e9):
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.scale = scale if scale is not None else key_dim ** -0.5
        self.fast, self.fast_mask_value, self.softmax_mask_value = fast, fast_mask_value, softmax_mask_value
        self.query = nn.Linear(query_in, num_heads * key_dim, bias=bias)
        self.key = nn.Linear(key_in, num_heads * key_dim, bias=bias)
        self.value = nn.Linear(value_in, num_heads * value_dim, bias=bias)
        self.output = nn.Linear(num_heads * value_dim, out_features, bias=bias)

    def heads(self, x, dim):  # (N, T, H*d) -> (N, H, T, d)
        return x.unflatten(-1, (self.num_heads, dim)).transpose(1, 2)

    def forward(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                attention_mask=None, causal=False):
        key = value if key is None else key
        q = self.heads(self.query(query), self.key_dim)
        k = self.heads(self.key(key), self.key_dim)
        v = self.heads(self.value(value), self.value_dim)
        mask = attention_mask
        for m in (None if query_mask is None else query_mask[:, :, None],
                  None if value_mask is None else value_mask[:, None, :],
                  None if key_mask is None else key_mask[:, None, :]):
            mask = m if mask is None else (mask if m is None else mask & m)
        if causal:
            tril = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()[None]
            mask = tril if mask is None else mask & tril
        mask = None if mask is None else mask[:, None]  # (N, 1, T, S): the same for every head
        if self.fast and mask is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        elif self.fast:
            # Keras REPLACES masked logits (tf.where): no gradient flows to
            # them; an additive mask in scaled_dot_product_attention would let
            # one through on fully masked rows, so this path is explicit.
            scores = (q @ k.transpose(-1, -2)) * self.scale
            probs = torch.softmax(scores.masked_fill(~mask, self.fast_mask_value), dim=-1)
            out = probs @ v
        else:
            scores = (q * self.scale) @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores.masked_fill(~mask, self.softmax_mask_value)
            probs = torch.softmax(scores, dim=-1)
            if mask is not None:
                probs = probs.masked_fill(~mask, 0.0)
            out = probs @ v
        return self.output(out.transpose(1, 2).flatten(2))
''',
}
