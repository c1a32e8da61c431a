"""The model and the tokenizer: a decoder-only transformer written from scratch, and a vocabulary.

`GPT(GPTConfig(...))` maps token ids (B, T) to next-token logits (B, T, vocab_size).
`Vocab` turns prompts such as "a?", "a!ab?" or "21 ?" into ids and back.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int  # context length: the model has one learned position embedding per position
    n_layer: int = 1
    n_head: int = 4
    n_embd: int = 128


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)  # q, k, v in one matrix
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        causal = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, x):
        """Returns the attention output (B, T, C) and the attention weights (B, n_head, T, T)."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # The original scales by the model width, not by the head size: kept for fidelity.
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C)  # (B, nh, T, T)
        att = att.masked_fill(~self.causal[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y), att


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.ReLU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
        )

    def forward(self, x):
        y, att = self.attn(self.ln_1(x))
        x = x + y
        x = x + self.mlp(self.ln_2(x))
        return x, att


class GPT(nn.Module):
    """Token + position embeddings, blocks, final LayerNorm, untied linear head.

    Weights keep PyTorch's default initialisation, as in the original.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def trunk(self, idx):
        """Final hidden states (B, T, C) and every layer's attention weights (B, n_head, T, T)."""
        B, T = idx.size()
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        attention = []
        for block in self.blocks:
            x, att = block(x)
            attention.append(att)
        return self.ln_f(x), attention

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab_size) and, given targets (B, T) with -1 where not scored, the mean loss."""
        x, _ = self.trunk(idx)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss

    def attention(self, idx):
        """Attention weights of every layer: a list of (B, n_head, T, T) tensors."""
        return self.trunk(idx)[1]


class Vocab:
    """Tokens by id. Encoding takes the longest token that matches; spaces only separate tokens."""

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.longest = max(len(token) for token in self.tokens)

    def __len__(self):
        return len(self.tokens)

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            for n in range(min(self.longest, len(text) - i), 0, -1):
                if text[i:i + n] in self.ids:
                    ids.append(self.ids[text[i:i + n]])
                    i += n
                    break
            else:
                raise ValueError(f"unknown character {text[i]!r}")
        return ids

    def decode(self, ids, sep=""):
        return sep.join(self.tokens[i] for i in ids)
