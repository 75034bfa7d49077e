"""Exact fast CLIP text encoding.

CLIP's text tower is causal and pools at the EOT token, so the feature of a prompt depends only on its
tokens up to EOT. Two exact shortcuts follow:

* **length trimming**: run the tower on the first L positions only (L = longest prompt in the batch)
  instead of the padded context length;
* **prefix reuse**: candidates that share a token prefix (every chain step scores ``"{prompt}, {phrase}"``)
  compute the prefix's per-layer keys/values once and run only each candidate's own tokens against them.

Both run the model's own modules (embeddings, layer norms, MLPs, projections) and differ from
``model.encode_text`` only by floating-point summation order. Towers this does not recognise (non-causal,
cls-token or non-argmax pooling, custom attention) fall back to ``model.encode_text`` on padded tokens.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)
_IDENTITY = nn.Identity()
#: below this many texts the prefix tree cannot share enough to beat one flat batch
_TREE_MIN_ROWS = 64
#: the widest beam the chain runs (``prompts.chain``'s ``beam_width``; the engine refuses wider ones)
MAX_BEAM_WIDTH = 8
#: prefixes kept for the chain: while a step computes its beams' prefixes one by one, every parent prefix of
#: the previous step must still be cached, so two steps of the widest beam
_KV_CACHE_SIZE = 2 * MAX_BEAM_WIDTH
#: label encoding reports progress (where a host's Cancel is checked) after this much work, between layers
_TICK_SECONDS = 0.25
#: the clock of those reports (a module attribute so tests can drive it)
_clock = time.monotonic


@dataclass
class _Tower:
    token_embedding: nn.Module
    positional_embedding: torch.Tensor
    blocks: Sequence[nn.Module]
    ln_final: nn.Module
    text_projection: object  # nn.Linear, Parameter/Tensor or None
    cast_dtype: torch.dtype


def _attend_after_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_k: torch.Tensor,
                         past_v: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Attention of rows [B, H, T, d] that all follow one shared prefix (keys/values [1, H, P, d]): the
    softmax over [prefix keys | the row's own keys], ``visible`` masking the own part (broadcast to
    [B, H, T, T]). Same as concatenating the prefix in front of every row, without copying it B times."""
    b, h, t, d = q.shape
    p = past_k.shape[2]
    scale = d ** -0.5
    qh = q.transpose(0, 1).reshape(h, b * t, d)  # every row's queries against the one prefix: a matmul per head
    s_past = torch.bmm(qh, past_k[0].transpose(1, 2)).reshape(h, b, t, p).transpose(0, 1)
    s_own = (q @ k.transpose(-1, -2)).masked_fill(~visible, float("-inf"))
    w = torch.cat([s_past, s_own], dim=-1).float().mul_(scale).softmax(dim=-1).to(q.dtype)  # fp16: softmax in fp32
    w_past = w[..., :p].transpose(0, 1).reshape(h, b * t, p)
    o = torch.bmm(w_past, past_v[0]).reshape(h, b, t, d).transpose(0, 1)
    return o + w[..., p:] @ v


def _is_causal(mask: Optional[torch.Tensor]) -> bool:
    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    n = mask.shape[0]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=mask.device), 1)
    return bool(torch.isinf(mask[upper]).all() and (mask[upper] < 0).all() and (mask[~upper] == 0).all())


def _find_tower(model: nn.Module) -> Optional[_Tower]:
    """The text tower's parts when it is a standard causal, argmax-pooled open_clip tower, else None."""
    owner = model
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text, "token_embedding"):
        owner = text
        if getattr(owner, "cls_emb", None) is not None:
            return None
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    if not all(hasattr(owner, a) for a in needed):
        return None
    if getattr(owner, "text_pool_type", getattr(owner, "pool_type", "argmax")) != "argmax":
        return None
    if not _is_causal(getattr(owner, "attn_mask", None)):
        return None
    transformer = owner.transformer
    blocks = list(getattr(transformer, "resblocks", []))
    if not blocks:
        return None
    for b in blocks:
        attn = getattr(b, "attn", None)
        if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
            return None
        if not all(hasattr(b, a) for a in ("ln_1", "ln_2", "mlp")) or hasattr(b, "ln_1_kv"):
            return None
        if not isinstance(getattr(b, "ln_attn", nn.Identity()), nn.Identity):
            return None
    cast = transformer.get_cast_dtype() if hasattr(transformer, "get_cast_dtype") else owner.token_embedding.weight.dtype
    return _Tower(owner.token_embedding, owner.positional_embedding, blocks, owner.ln_final,
                  getattr(owner, "text_projection", None), cast)


class _Ticker:
    """Calls ``progress(done, total)`` at the end of each batch and, inside a batch, between layers whenever
    :data:`_TICK_SECONDS` have passed: a host's interrupt check in ``progress`` then lands within a fraction
    of a second of work however large the batch and however slow the device."""

    def __init__(self, progress: Optional[Callable[[int, int], None]], total: int) -> None:
        self.progress, self.total, self.done, self.last = progress, total, 0, _clock()

    def __call__(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = _clock()
        if force or now - self.last >= _TICK_SECONDS:
            self.last = now
            self.progress(self.done, self.total)


def _length_batches(eot: torch.Tensor, batch_size: int) -> List[torch.Tensor]:
    """Row indices grouped by equal EOT position, each group split into batches of at most ``batch_size``."""
    order = torch.argsort(eot, stable=True)
    lengths = eot[order]
    batches = []
    for length in torch.unique_consecutive(lengths):
        rows = order[lengths == length]
        batches.extend(rows[i:i + batch_size] for i in range(0, len(rows), batch_size))
    return batches


class _KV:
    """Per-layer keys/values of a shared prefix: lists of [1, heads, P, head_dim]."""

    def __init__(self) -> None:
        self.k: List[torch.Tensor] = []
        self.v: List[torch.Tensor] = []


def _simple_bpe(tokenize: Callable):
    """open_clip's SimpleTokenizer behind ``tokenize`` when it is the plain lower-casing, truncating one."""
    try:
        from open_clip import tokenizer as oc_tok
    except ImportError:  # pragma: no cover
        return None
    tok = tokenize
    if not isinstance(tok, getattr(oc_tok, "SimpleTokenizer", ())):
        tok = getattr(oc_tok, "_tokenizer", None) if tokenize is getattr(oc_tok, "tokenize", None) else None
    if tok is None or getattr(tok, "reduction_fn", None) is not None:
        return None
    clean = getattr(tok, "clean_fn", None)
    if clean is not None and clean is not getattr(oc_tok, "_clean_lower", None):
        return None
    return tok


def _plain_ascii(text: str) -> bool:
    """Printable ASCII without '&': open_clip's ftfy/html cleaning leaves such text unchanged but for
    whitespace and case, so its tokens can be concatenated at a ", " boundary exactly."""
    return text.isascii() and text.isprintable() and "&" not in text


class TextEncoder:
    """Encodes token batches of one open_clip model, exactly and fast where the tower allows.

    Args:
        model: an open_clip CLIP / CustomTextCLIP.
        tokenize: ``tokenize(texts, context_length=...) -> LongTensor`` (open_clip's tokenizer).
        context_length: the model's text context (77 for CLIP).
    """

    def __init__(self, model: nn.Module, tokenize: Callable, context_length: int) -> None:
        self.model = model
        self._tokenize = tokenize
        self.context_length = context_length
        self.tower = _find_tower(model)
        self._bpe = _simple_bpe(tokenize)
        self._phrase_ids: dict = {}
        self._kv_cache: List[tuple] = []  # (prefix tokens, _KV, device) of recent chain prefixes, newest first
        if self.tower is None:
            log.info("text tower not recognised as causal/argmax; using the model's own padded encode_text")

    @property
    def fast(self) -> bool:
        return self.tower is not None

    # -- tokens ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tokens [N, ctx] as the model sees them, and a bool [N] that is True where the text fits the window.

        Tokenizing one position longer tells a text that fills the window exactly from one that was cut.
        """
        ids = self._tokenize(list(texts), context_length=self.context_length + 1)
        fits = ids[:, self.context_length] == 0
        ids = ids[:, : self.context_length].clone()
        cut = ~fits
        if cut.any():  # exactly what the tokenizer does to an over-long text: truncate, EOT last
            ids[cut] = self._tokenize([t for t, c in zip(texts, cut.tolist()) if c], context_length=self.context_length)
        return ids, fits

    def candidate_ids(self, prompt: str, phrases: Sequence[str], sep: str = ", ") -> Tuple[torch.Tensor, torch.Tensor]:
        """``tokenize([prompt + sep + p for p in phrases])`` — computed by concatenating cached BPE ids where
        that is provably identical (see :func:`_plain_ascii`; the prompt must end in a letter or digit so the
        separator starts a new token), by the tokenizer itself otherwise."""
        texts = [prompt + sep + p for p in phrases]
        bpe = self._bpe
        if bpe is None or sep != ", " or not _plain_ascii(prompt) or not prompt.rstrip()[-1:].isalnum():
            return self.tokenize(texts)
        ctx = self.context_length
        head = [bpe.sot_token_id if hasattr(bpe, "sot_token_id") else bpe.encoder["<start_of_text>"]]
        head += bpe.encode(prompt) + bpe.encode(",")
        eot = bpe.eot_token_id if hasattr(bpe, "eot_token_id") else bpe.encoder["<end_of_text>"]
        ids = torch.zeros(len(texts), ctx, dtype=torch.long)
        fits = torch.ones(len(texts), dtype=torch.bool)
        slow = []
        for i, p in enumerate(phrases):
            tail = self._phrase_ids.get(p)
            if tail is None:
                tail = bpe.encode(p) if _plain_ascii(p) and p.strip() else False
                self._phrase_ids[p] = tail
            if tail is False:
                slow.append(i)
                continue
            row = head + tail + [eot]
            if len(row) > ctx:  # the tokenizer truncates and puts EOT last
                row = row[:ctx]
                row[-1] = eot
                fits[i] = False
            ids[i, : len(row)] = torch.tensor(row)
        if slow:
            ids[slow], fits[slow] = self.tokenize([texts[i] for i in slow])
        return ids, fits

    # -- encoding ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_tokens(self, ids: torch.Tensor, tick: Optional[Callable[[], None]] = None) -> torch.Tensor:
        """Unnormalized features [N, D] (float32) of padded token rows, as ``model.encode_text`` gives
        (``tick()`` is called between layers)."""
        device = self._device()
        ids = ids.to(device)
        if self.tower is None:
            return self.model.encode_text(ids).float()
        eot = ids.argmax(dim=-1)
        length = int(eot.max().item()) + 1
        return self._forward(self._embed(ids[:, :length], 0), eot, None, tick)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256,
                     progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
        """Normalized float32 features [N, D] of ``texts`` (over-long texts cut as the tokenizer cuts them).

        Texts are sorted by their tokens and each batch runs as a prefix tree: a token shared by several
        texts at the same position after the same tokens ("by ", "a photo of ", the start token) is computed
        once. Towers without the fast path run padded batches of equal length.
        """
        if not texts:
            return torch.zeros(0, self.embed_dim)
        ids = self._tokenize(list(texts), context_length=self.context_length)
        out = torch.empty(len(texts), self.embed_dim)
        eot = ids.argmax(dim=-1)
        flat = torch.ones(len(texts), dtype=torch.bool)
        tree_batches: List[torch.Tensor] = []
        if self.tower is not None and len(texts) >= _TREE_MIN_ROWS:
            # the tree runs one depth at a time, which pays off while many rows share each depth; the
            # longest few rows (a long tail of depths with one or two rows each) go the flat way instead
            cut = int(eot.float().quantile(0.95).item())
            flat = eot > cut
            seqs = {i: row[: e + 1] for i, (row, e) in enumerate(zip(ids.tolist(), eot.tolist())) if e <= cut}
            order = sorted(seqs, key=seqs.__getitem__)
            tree_batches = [torch.tensor(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
        flat_idx = flat.nonzero().flatten()
        # the rest in batches of neighbouring lengths (sorted): a few rows of padding cost less than a forward
        # per distinct length when there are few rows (scoring a handful of prompts)
        order = flat_idx[torch.argsort(eot[flat_idx], stable=True)]
        flat_batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        tick = _Ticker(progress, len(texts))
        for idx in tree_batches + flat_batches:
            if flat[idx[0]]:
                feats = self.encode_tokens(ids[idx], tick)
            else:
                feats = self._encode_tree([seqs[i] for i in idx.tolist()], tick)
            out[idx] = F.normalize(feats, dim=-1).cpu()
            tick.done += len(idx)
            tick(force=True)
        return out

    @torch.inference_mode()
    def encode_with_prefix(self, ids: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Normalized features [N, D] of token rows that share a common prefix, computing the prefix once.

        Exact for any rows: the shared prefix is measured, not assumed, and never reaches a row's EOT.
        """
        n = ids.shape[0]
        if self.tower is None or n < 2:
            return F.normalize(self.encode_tokens(ids), dim=-1)
        device = self._device()
        ids = ids.to(device)
        eot = ids.argmax(dim=-1)
        same = (ids == ids[:1]).all(dim=0)
        prefix = int(same.long().cumprod(0).sum().item())
        prefix = min(prefix, int(eot.min().item()))  # every row keeps at least its EOT in the suffix
        if prefix < 2:
            return F.normalize(self.encode_tokens(ids), dim=-1)
        kv = self._prefix_kv(ids[0, :prefix])
        out = torch.empty(n, self.embed_dim, device=device)
        # rows of one suffix length per batch: no row computes another's padding (phrase lengths vary a lot)
        for rows in _length_batches(eot.cpu(), batch_size):
            rows = rows.to(device)
            row_eot = eot[rows]
            end = int(row_eot[0].item()) + 1
            out[rows] = self._forward(self._embed(ids[rows, prefix:end], prefix), row_eot - prefix, kv)
        return F.normalize(out.float(), dim=-1)

    def _prefix_kv(self, tokens: torch.Tensor) -> _KV:
        """Keys/values of a prefix; a prefix that extends the previous one (the chain's next step) only
        computes its new tokens."""
        key = tokens.tolist()
        past: Optional[_KV] = None
        start = 0
        for cached_key, cached_kv, device in self._kv_cache:  # the longest cached prefix of this one
            if device == tokens.device and start < len(cached_key) <= len(key) and key[: len(cached_key)] == cached_key:
                start, past = len(cached_key), cached_kv
        if past is not None and start == len(key):
            return past
        x = self._embed(tokens[None, start:], start)
        kv = _KV()
        for i, blk in enumerate(self.tower.blocks):
            x, k, v = self._block(blk, x, past.k[i] if past else None, past.v[i] if past else None,
                                  keep_kv=True)
            kv.k.append(k)
            kv.v.append(v)
        self._kv_cache = [(key, kv, tokens.device)] + self._kv_cache[: _KV_CACHE_SIZE - 1]
        return kv

    def release(self) -> None:
        """Drop cached device tensors (call when the model leaves the device)."""
        self._kv_cache = []

    # -- internals --------------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        proj = self.tower.text_projection if self.tower is not None else getattr(self.model, "text_projection", None)
        if isinstance(proj, nn.Linear):
            return proj.out_features
        if isinstance(proj, torch.Tensor):
            return proj.shape[-1]
        return int(self.model.encode_text(torch.zeros(1, self.context_length, dtype=torch.long,
                                                      device=self._device())).shape[-1])

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _embed(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        t = self.tower
        x = t.token_embedding(ids).to(t.cast_dtype)
        return x + t.positional_embedding[offset:offset + ids.shape[1]].to(t.cast_dtype)

    def _forward(self, x: torch.Tensor, eot: torch.Tensor, kv: Optional[_KV],
                 tick: Optional[Callable[[], None]] = None) -> torch.Tensor:
        """Embedded tokens [B, T, C] (after an optional prefix) → projected EOT features [B, D] (float32).

        The last block computes queries, MLP and output only at each row's EOT position: nothing else of it
        reaches the pooled feature.
        """
        blocks = self.tower.blocks
        for i, blk in enumerate(blocks[:-1]):
            x, _, _ = self._block(blk, x, kv.k[i] if kv else None, kv.v[i] if kv else None, keep_kv=False)
            if tick is not None:
                tick()
        return self._project(self._last_block(blocks[-1], x, eot, kv.k[-1] if kv else None, kv.v[-1] if kv else None))

    def _encode_tree(self, seqs: List[List[int]], tick: Optional[Callable[[], None]] = None) -> torch.Tensor:
        """Projected EOT features [N, D] of token sequences (SOT..EOT), computing each distinct prefix once.

        Depth by depth, every node of the prefix tree is one token attending to its ancestors' keys/values
        (all of them: causal attention), which is exactly what the padded forward computes for it.
        """
        device = self._device()
        t = self.tower
        n, depth_max = len(seqs), max(len(s) for s in seqs)
        node = [-1] * n
        levels = []  # per depth: (token ids, parent node index at depth-1, {node: rows ending there})
        for d in range(depth_max):
            index: dict = {}
            toks, parents, ends = [], [], {}
            for r, s in enumerate(seqs):
                if len(s) <= d:
                    continue
                key = (node[r], s[d])
                j = index.get(key)
                if j is None:
                    j = index[key] = len(toks)
                    toks.append(s[d])
                    parents.append(node[r])
                node[r] = j
                if d == len(s) - 1:
                    ends.setdefault(j, []).append(r)
            levels.append((toks, parents, ends))
        out = torch.empty(n, self.embed_dim, device=device)
        past_k: List[Optional[torch.Tensor]] = [None] * len(t.blocks)  # [nodes, heads, depth, head_dim]
        past_v: List[Optional[torch.Tensor]] = [None] * len(t.blocks)
        for d, (toks, parents, ends) in enumerate(levels):
            x = t.token_embedding(torch.tensor(toks, device=device)).to(t.cast_dtype)
            x = (x + t.positional_embedding[d].to(t.cast_dtype)).unsqueeze(1)  # [nodes, 1, C]
            par = torch.tensor(parents, device=device)
            last = len(t.blocks) - 1
            for i, blk in enumerate(t.blocks):
                pk = None if d == 0 else past_k[i][par]
                pv = None if d == 0 else past_v[i][par]
                if i < last:
                    x, k, v = self._block(blk, x, pk, pv, keep_kv=True)
                else:  # the last block: every node's keys/values (deeper nodes attend to them), the rest below
                    k, v = self._keys_values(blk.attn, blk.ln_1(x), pk, pv)
                past_k[i], past_v[i] = k, v
                if tick is not None:
                    tick()
            if ends:
                nodes = list(ends)
                rows = [r for j in nodes for r in ends[j]]
                reps = torch.tensor([len(ends[j]) for j in nodes], device=device)
                at = torch.tensor(nodes, device=device)
                # the last block's output only where a text ends: nothing else of it reaches a feature
                feats = self._project(self._tree_end(t.blocks[-1], x[at], past_k[-1][at], past_v[-1][at]))
                out[torch.tensor(rows, device=device)] = feats.repeat_interleave(reps, dim=0)
        return out

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tower
        x = t.ln_final(x)
        proj = t.text_projection
        if isinstance(proj, nn.Linear):
            x = proj(x)
        elif proj is not None:
            x = x @ proj
        return x.float()

    @staticmethod
    def _last_block(blk: nn.Module, x: torch.Tensor, eot: torch.Tensor, past_k: Optional[torch.Tensor],
                    past_v: Optional[torch.Tensor]) -> torch.Tensor:
        """The final residual block evaluated at the EOT rows only: [B, T, C] → [B, C]."""
        b, t, c = x.shape
        rows = torch.arange(b, device=x.device)
        h = blk.ln_1(x)
        q = TextEncoder._queries(blk.attn, h[rows, eot].unsqueeze(1))
        k, v = TextEncoder._keys_values(blk.attn, h, None, None)
        visible = torch.arange(t, device=x.device)[None, :] <= eot[:, None]  # causal, per row
        if past_k is None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
        else:
            o = _attend_after_prefix(q, k, v, past_k, past_v, visible[:, None, None, :])
        return TextEncoder._residual(blk, x[rows, eot], o.reshape(b, c))

    @staticmethod
    def _queries(attn: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
        """Queries [B, heads, T, head_dim] of normed rows [B, T, C]."""
        b, t, c = h.shape
        bias = attn.in_proj_bias
        q = F.linear(h, attn.in_proj_weight[:c], None if bias is None else bias[:c])
        return q.reshape(b, t, attn.num_heads, c // attn.num_heads).transpose(1, 2)

    @staticmethod
    def _keys_values(attn: nn.MultiheadAttention, h: torch.Tensor, past_k: Optional[torch.Tensor],
                     past_v: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keys/values [B, heads, P+T, head_dim] of normed rows [B, T, C] after the rows' own past ones
        ([B, heads, P, head_dim], or None)."""
        b, t, c = h.shape
        bias = attn.in_proj_bias
        k, v = F.linear(h, attn.in_proj_weight[c:], None if bias is None else bias[c:]).split(c, dim=-1)
        k, v = (z.reshape(b, t, attn.num_heads, c // attn.num_heads).transpose(1, 2) for z in (k, v))
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        return k, v

    @staticmethod
    def _tree_end(blk: nn.Module, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A block's output [B, C] for single tokens [B, 1, C] that see all of their keys/values ([B, heads,
        L, head_dim], their ancestors' and their own: a prefix-tree node)."""
        b, _, c = x.shape
        o = F.scaled_dot_product_attention(TextEncoder._queries(blk.attn, blk.ln_1(x)), k, v)
        return TextEncoder._residual(blk, x[:, 0], o.reshape(b, c))

    @staticmethod
    def _residual(blk: nn.Module, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """The rest of a residual block after attention: ``x`` + projected attention output ``o`` (both
        [..., C]), then + the MLP."""
        x = x + getattr(blk, "ls_1", _IDENTITY)(blk.attn.out_proj(o))
        return x + getattr(blk, "ls_2", _IDENTITY)(blk.mlp(blk.ln_2(x)))

    @staticmethod
    def _block(blk: nn.Module, x: torch.Tensor, past_k: Optional[torch.Tensor], past_v: Optional[torch.Tensor],
               keep_kv: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """One residual attention block on [B, T, C] with optional prefix keys/values (causal attention).

        With ``keep_kv`` it also returns the keys/values it attended to (the prefix's and the rows' own), which
        a longer prefix or a deeper prefix-tree level continues from."""
        attn: nn.MultiheadAttention = blk.attn
        b, t, c = x.shape
        heads = attn.num_heads
        h = blk.ln_1(x)
        q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(c, dim=-1)
        q, k, v = (z.reshape(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
        if past_k is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif not keep_kv and past_k.shape[0] == 1:  # many rows after one shared prefix (a chain step)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            o = _attend_after_prefix(q, k, v, past_k, past_v, causal)
        else:
            p = past_k.shape[2]
            k = torch.cat([past_k.expand(b, -1, -1, -1), k], dim=2)
            v = torch.cat([past_v.expand(b, -1, -1, -1), v], dim=2)
            # query i sits at absolute position p+i and sees keys 0..p+i
            mask = torch.ones(t, p + t, dtype=torch.bool, device=x.device).tril(diagonal=p)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = TextEncoder._residual(blk, x, o.transpose(1, 2).reshape(b, t, c))
        return (x, k, v) if keep_kv else (x, None, None)
