"""Where a flavor is chosen: one :class:`ClipEncoder` per CLIP text encoder a target reads.

It holds that model's label tables, ranks them against image features, runs the chains and scores prompts.
It is told the target's :class:`~interrogator_core.prompts.PromptGrammar` and whether it writes negatives; it
never reads the target or another encoder. Models and tables come from the pipeline's
:class:`~interrogator_core.pool.ModelPool`.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Dict, Hashable, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from . import prompts
from .cache import LabelCache
from .clip import ClipModel
from .compose import HEAD_TOKENS, MIN_TERMS, clip_head, token_counts
from .host import retry_smaller_on_oom
from .labels import TABLE_NAMES, builtin_labels, read_blocklist, user_tables
from .pool import LabelTables, ModelPool, clip_key, tables_key
from .request import Request
from .result import InterrogationResult
from .tables import LabelIndex

if TYPE_CHECKING:
    from .interrogator import InterrogatorConfig


def eta_text(done: int, total: int, elapsed: float) -> str:
    """"ETA 3m05s" for work ``done`` of ``total`` after ``elapsed`` seconds at the rate so far ("" before any
    work is done or once all is)."""
    if done <= 0 or done >= total or elapsed <= 0:
        return ""
    left = int(round(elapsed * (total - done) / done))
    h, rest = divmod(left, 3600)
    m, sec = divmod(rest, 60)
    return f"ETA {h}h{m:02d}m" if h else f"ETA {m}m{sec:02d}s" if m else f"ETA {sec}s"


def lists_key(config: "InterrogatorConfig") -> Hashable:
    """What a CLIP model's label tables are built from (two configs with the same key share them)."""
    blocklist = config.blocklist
    if blocklist is not None and not isinstance(blocklist, (str, bytes)) and not hasattr(blocklist, "__fspath__"):
        blocklist = tuple(blocklist)
    return tuple(str(x) if x is not None and not isinstance(x, tuple) else x
                 for x in (config.data_dir, config.user_tables_dir, blocklist, config.cache_dir))


class ClipEncoder:
    """One CLIP text encoder: its model, label tables, ranking, chains and scoring.

    Args:
        key: the prompt key it writes (``clip_l``, ``clip_g``; "" for a target that reads ``positive`` only).
        clip_model: the open_clip model.
        config: the pipeline's settings (lists, cache, batch sizes, model folders).
        pool: the pipeline's model pool.
        grammar: how the target joins caption, terms and tags.
    """

    def __init__(self, key: str, clip_model: str, config: "InterrogatorConfig", pool: ModelPool,
                 grammar: prompts.PromptGrammar) -> None:
        self.key, self.clip_model, self.config, self.pool, self.grammar = key, clip_model, config, pool, grammar
        self._cache = LabelCache(config.cache_dir)

    # -- models and tables ----------------------------------------------------------------------------------
    @property
    def clip(self) -> ClipModel:
        """The CLIP model (loaded on first use, put on the device)."""
        return self.pool.clip(self.clip_model, self.config.model_dirs, self.config.download_dir)

    def pool_keys(self, dtype: torch.dtype) -> List[Hashable]:
        """The pool entries this encoder uses (its CLIP model and tables)."""
        clip = clip_key(self.clip_model, dtype)
        return [clip, tables_key(clip, lists_key(self.config))]

    def tables(self) -> LabelTables:
        """The label tables, encoded (or read from the cache) on first use."""
        clip = self.clip
        return self.pool.tables(self.pool_keys(clip.handle.dtype)[1], lambda: self._build_tables(clip))

    def _build_tables(self, clip: ClipModel) -> LabelTables:
        host, cfg = self.pool.host, self.config
        raw = builtin_labels(cfg.data_dir)
        raw.update(user_tables(cfg.user_tables_dir))
        blocked = read_blocklist(cfg.blocklist)
        tables = {}
        for name, labels in raw.items():
            def compute(labels: Sequence[str], name: str = name) -> torch.Tensor:
                started = time.monotonic()

                def report(done: int, total: int) -> None:
                    host.check_interrupt()
                    eta = eta_text(done, total, time.monotonic() - started)
                    host.progress(done, total, f"encoding labels: {name}" + (f" ({eta})" if eta else ""))
                return retry_smaller_on_oom(lambda bs: clip.text.encode_texts(labels, bs, report),
                                            cfg.text_batch_size, f"encoding the {name} labels")

            key = name if name in TABLE_NAMES else f"user_{name}"
            embeds = self._cache.get_or_compute(clip.cache_name, key, labels, compute, clip.embed_dim)
            tables[name] = LabelIndex.from_table(name, labels, embeds, blocked)
        # one block of memory, ordered so that both pools are contiguous slices of it:
        # [other positive tables | flavors | negative]; pool = all but negative, negative pool = the tail
        order = [n for n in tables if n not in ("flavors", "negative")] + ["flavors", "negative"]
        every = LabelIndex.concat("all", [tables[n] for n in order])
        start, bounds = 0, {}
        for n in order:
            bounds[n] = (start, start + len(tables[n]))
            start += len(tables[n])
        return LabelTables({n: every.slice(n, *bounds[n]) for n in tables},
                           every.slice("pool", 0, bounds["negative"][0]),
                           every.slice("negative pool", bounds["flavors"][0], bounds["negative"][1]))

    # -- features and similarity ----------------------------------------------------------------------------
    def image_features(self, batch: List[Image.Image]) -> torch.Tensor:
        """Normalized image features [B, D], in batches of ``image_batch_size`` (halved on a device OOM)."""
        clip, host = self.clip, self.pool.host

        def run(bs: int) -> torch.Tensor:
            parts = []
            for start in range(0, len(batch), bs):
                host.check_interrupt()
                pixels = torch.stack([clip.preprocess(im) for im in batch[start:start + bs]])
                parts.append(clip.encode_images(pixels))
            return torch.cat(parts)

        return retry_smaller_on_oom(run, self.config.image_batch_size, "encoding images")

    def text_similarity(self, feats: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity [B, len(texts)] of each image with each text."""
        emb = retry_smaller_on_oom(lambda bs: self.clip.text.encode_texts(list(texts), bs),
                                   self.config.text_batch_size, "scoring prompts").to(feats.device)
        return feats.float() @ emb.float().T

    def top(self, feats: torch.Tensor, names: Sequence[str], top_n: int) -> Dict[str, List[List[Tuple[str, float]]]]:
        """Per table in ``names``, per image, its ``top_n`` labels and their similarity."""
        tables = self.tables().tables
        return {n: tables[n].top(feats, top_n) for n in names}

    # -- prompts --------------------------------------------------------------------------------------------
    def heads(self, captions: Sequence[str]) -> List[Tuple[str, bool]]:
        """Per caption, the start of its positive prompts (prefix + caption's head) and whether the caption
        was cut (see :mod:`compose`)."""
        text, grammar = self.clip.text, self.grammar
        budget = HEAD_TOKENS
        if grammar.prefix:  # prefix + head within HEAD_TOKENS, but the head gets at least half of what is left
            used = token_counts(text, [grammar.prefix])[0] - 1  # its tokens and the comma after it
            budget = max(HEAD_TOKENS - used, (text.context_length - used) // 2)
        out = []
        for c in captions:
            head, cut = clip_head(text, c, grammar.tags, budget) if c else ("", False)
            out.append((grammar.start(head), cut))
        return out

    def build(self, mode: str, feats: torch.Tensor, captions: List[str], request: Request,
              positive: bool = True, negative: bool = True) -> List[InterrogationResult]:
        """Both prompts of each image from its normalized features [B, D] (``positive``/``negative`` False: that
        prompt stays empty). ``captions`` stay whole in the results; the prompts start with their heads.

        Work that is the same for every image runs once for the batch: one matrix product ranks the tables for
        all images, and one text batch scores every prompt that needs a similarity. Chains run per image."""
        _, min_flavors, max_flavors, negative_count, beam_width = request.as_tuple()
        self.tables()
        n = len(captions)
        heads = self.heads(captions)
        known: List[Dict[str, float]] = [{} for _ in range(n)]  # similarities the chains already computed
        options: List[Dict[str, str]] = [{} for _ in range(n)]  # positive candidates per image
        if mode != "negative" and positive:
            options = self._positive_options(mode, feats, heads, min_flavors, max_flavors, beam_width, known)
        count = 0 if not negative else max_flavors if mode == "negative" else negative_count
        negs = [""] * n
        if count > 0:
            negs = self._negatives(mode, feats, min(min_flavors, count), count, beam_width, known)
        # best mode picks its positive by similarity; the rest is only reported, so ``similarities`` decides
        picked = [p for o in options for p in o.values()] if mode == "best" else []
        reported = [o.get(mode, "") for o in options] + negs if request.similarities else []
        sim = self._scorer(feats, picked + reported, known)
        results = []
        for i in range(n):
            cands = {k: v for k, v in options[i].items() if v}
            candidates, pos, similarity = {}, options[i].get(mode, ""), None
            if mode == "best":
                candidates = {k: sim(i, v) for k, v in cands.items()}
                if candidates:
                    key = max(candidates, key=candidates.__getitem__)
                    pos, similarity = cands[key], candidates[key]
            elif pos and (request.similarities or pos in known[i]):
                similarity = sim(i, pos)
            results.append(InterrogationResult(
                mode=mode, positive=pos, negative=negs[i], caption=captions[i], similarity=similarity,
                negative_similarity=sim(i, negs[i]) if negs[i] and (request.similarities or negs[i] in known[i])
                else None, candidates=candidates))
        return results

    def _scorer(self, feats: torch.Tensor, texts: Sequence[str], known: List[Dict[str, float]]):
        """``score(i, text)``: cosine similarity of image ``i`` with ``text`` (one of ``texts``): ``known[i]``'s
        value, else computed (the texts no image knows are encoded together, once)."""
        unique = [t for t in dict.fromkeys(t for t in texts if t) if not all(t in k for k in known)]
        sims: List[List[float]] = [[] for _ in known]
        if unique:
            sims = self.text_similarity(feats, unique).tolist()
        row = {t: j for j, t in enumerate(unique)}
        return lambda i, t: known[i][t] if t in known[i] else sims[i][row[t]]

    def _chain(self, desc: str, known: Dict[str, float], **kwargs) -> str:
        """One image's chain (``prompts.chain``) with progress/Cancel, its text batch halved on a device OOM;
        its prompt's similarity goes to ``known``."""
        host, text = self.pool.host, self.clip.text

        def on_step(i: int, total: int) -> None:
            host.check_interrupt()
            host.progress(i, total, desc)

        res = retry_smaller_on_oom(lambda bs: prompts.chain(text, batch_size=bs, on_step=on_step, **kwargs),
                                   self.config.text_batch_size, f"building the {desc}")
        if res.prompt:
            known[res.prompt] = res.similarity
        return res.prompt

    def _positive_options(self, mode: str, feats: torch.Tensor, heads: List[Tuple[str, bool]], min_flavors: int,
                          max_flavors: int, beam_width: int, known: List[Dict[str, float]]) -> List[Dict[str, str]]:
        """Per image, the candidate positives of ``mode`` by name (caption, fast, classic, chain), by
        clip-interrogator's rules: best keeps the most similar, the other modes their own. A cut caption has no
        caption-alone candidate, and its chain keeps at least ``MIN_TERMS`` terms."""
        text, lt = self.clip.text, self.tables()
        tables, host = lt.tables, self.pool.host
        out: List[Dict[str, str]] = [{} if cut else {"caption": h} for h, cut in heads]
        if mode in ("fast", "best"):
            for o, (h, _), top in zip(out, heads, lt.pool.top(feats, max_flavors)):
                o["fast"] = prompts.join_fitting(text, h, [l for l, _ in top])
        if mode in ("classic", "best"):
            top1 = {n: [prompts.argmax_label(t) for t in tables[n].top(feats, 1)]
                    for n in ("mediums", "artists", "trendings", "movements")}
            flavors = tables["flavors"].top(feats, max_flavors if mode == "best" else min(max_flavors, 3))
            for i, (o, (h, _)) in enumerate(zip(out, heads)):
                o["classic"] = prompts.truncate_to_fit(text, self.grammar.classic(
                    h, top1["mediums"][i], top1["artists"][i], top1["trendings"][i], top1["movements"][i],
                    [l for l, _ in flavors[i]]))
        if mode == "best":
            pools = lt.pool.top(feats, self.config.flavor_intermediate_count)
            for i, (o, (h, cut)) in enumerate(zip(out, heads)):
                host.check_interrupt()
                least = MIN_TERMS if cut else 0
                o["chain"] = self._chain("flavor chain", known[i], features=feats[i],
                                         phrases=[l for l, _ in pools[i]], start=h or None,
                                         min_count=max(min_flavors, least), max_count=max(max_flavors, least),
                                         beam_width=beam_width, min_terms=least)
        return out

    def _negatives(self, mode: str, feats: torch.Tensor, min_count: int, count: int, beam_width: int,
                   known: List[Dict[str, float]]) -> List[str]:
        """Per image, the negative prompt after the grammar's negative base: a reversed chain (best/negative)
        or the least similar terms (fast/classic)."""
        text, lt, host = self.clip.text, self.tables(), self.pool.host
        base = prompts.truncate_to_fit(text, self.grammar.negative_base) if self.grammar.negative_base else ""
        if mode not in ("best", "negative"):
            return [prompts.join_fitting(text, base, [l for l, _ in worst])
                    for worst in lt.negative_pool.top(feats, count, reverse=True)]
        out = []
        tables = lt.tables
        for i, flavors in enumerate(tables["flavors"].top(feats, self.config.flavor_intermediate_count, reverse=True)):
            host.check_interrupt()
            out.append(self._chain("negative chain", known[i], features=feats[i],
                                   phrases=[l for l, _ in flavors] + tables["negative"].labels, start=base or None,
                                   min_count=min_count, max_count=count, reverse=True, beam_width=beam_width))
        return out
