"""Train PartsCLIP contrastively on rendered parts (``shopfloor train clip``).

Recipe: render a domain-randomised training set with some (part, defect) and (colour, defect)
combinations held out (``HELD_OUT``), caption every image afresh each epoch from a small grammar
(``caption_variant``: the renderer's own caption, or any subset of part, material, colour, defect
and region in varied words and templates), and train the open_clip CLIP with a multi-positive
InfoNCE loss and a learnable temperature. The image tower's convolutions come from the trained defect
CNN and stay locked (LiT: locked-image tuning, Zhai et al. 2022), so they are run once over the
training images and the steps train the tower's head (one conv layer, pooling, colour statistics,
projection) and the whole text tower: why, in ``perception/clip_model.py``. Everything is seeded; on
one machine the same seed (and the same defect CNN) gives the same weights.

Why multi-positive: a caption that names only some attributes ("a cracked gear") is true of every
cracked gear in the batch, so plain InfoNCE would push the others away as negatives. Here the target
of an image is spread uniformly over all captions in the batch that are true of it, and the target
of a caption over all images it is true of (the diagonal pair is always among them). With complete
captions the loss is CLIP's.

Why 144,000 parts under ``randomized_harsh`` light, six epochs: the defect CNN under the tower trains on
that light, and the benchmark's light is harsher still. Measured on an older trunk (benchmarks/RESULTS.md):
36,000 parts under uniform light gave 0.767 zero-shot accuracy on the held-out combinations and 0.672
Recall@10; 108,000 gave 0.776 and 0.694; 108,000 under the harsh light 0.786 and 0.749; 216,000 under it
0.794 and 0.786. On the 64 px defect CNN with residual blocks (``defect_cnn.SHIPPED_CNN_64PX``), 216,000
parts and six epochs gave 0.954 and 0.842, in 16 minutes on a Xeon with bfloat16 but ~30 on the AMD EPYC
(AVX2, no bfloat16) this was last trained on. There (2026-12-07), in float32: 216,000 parts and two epochs
ran 17.9 minutes for 0.949 and 0.764; 144,000 and six epochs 19.7 minutes for 0.948 and 0.822 (20.1 in a
re-run, of which ~1.5 minutes went on watching each epoch at four views; at one view, 18.6). Retrieval
needs the steps more than the parts. The locked trunk runs once over the training parts
(``locked_trunk_pass``), and a step costs ~90 ms: the head's convolution, the text tower on captions cut
to their length (``encode_captions``), and tokens cached by word (``CaptionTokens``).

Why the captions name attributes partially: the retrieval queries name one to four attributes, and
the zero-shot prompts name a state word and a noun; the text tower only learns what its captions say.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from environments.errors import ShopfloorInputError
from environments.parts import (COLOURS, DEFECT_TYPES, MATERIALS, METALS, PART_TYPES, REGIONS, PartSpec, render_part,
                                sample_spec, valid_regions)
from perception.clip_model import (CONFIG_FILE, DEFECT_STATES, GENERIC_NOUNS, IMAGE_SIZE, MODEL_CFG, MODEL_NAME,
                                   NORMAL_STATES, SEEN_TEMPLATES, VISION_CHOICE, VISION_TOWER, WEIGHTS_FILE,
                                   DefectTrunk, PartsCLIP, RetrievalIndex, article, build_model, fill_template,
                                   load_clip, load_defect_features, save_local_dir, state_phrase)
from perception.datasets import EVAL_SHIFT, PartsData, item_plan, parse_shift, render_dataset
from perception.export import export_module, ort_session
from perception.train_defect_cnn import dihedral, native_bf16

Progress = Callable[[str, int, int], None]  # (stage, done, total)

HELD_OUT: tuple[tuple[str, str], ...] = (("gear", "crack"), ("plate", "burr"), ("blue", "dent"), ("cap", "stain"),
                                         ("copper", "scratch"))
"""Combinations never rendered for training; the zero-shot bar is measured on them."""

COMMAND = "shopfloor train clip --seed 0"


@dataclass(frozen=True)
class CLIPTrainConfig:
    """The training recipe; the defaults reproduce the shipped weights (``COMMAND``)."""

    seed: int = 0
    n_train: int = 144_000
    n_val: int = 1_400
    n_val_held_out: int = 700
    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    canonical_caption_frac: float = 0.25  # share of captions that are PartSpec.caption() verbatim
    twins: bool = True  # render the training set as twin pairs (hard negatives), see render_twins
    held_out: tuple[tuple[str, str], ...] = HELD_OUT
    train_shift: str = "randomized_harsh"
    val_shift: str = "randomized"  # validation never uses the benchmark's EVAL_SHIFT
    vision: str = VISION_TOWER  # a key of clip_model.VISION_CHOICE
    # the defect CNN checkpoint whose convolutions initialise and lock the "defect-cnn-trunk" tower
    # (LiT): "shipped" is perception/weights/defect_cnn_64px.pt (the shipped CNN's 64 px run: CLIP sees 64 px
    # parts); None trains the tower from scratch, end to end
    vision_init: str | None = "shipped"
    embed_dim: int = 128
    text_width: int = 64
    text_layers: int = 2
    threads: int = 2
    workers: int | None = None
    bf16: bool | None = None
    """Run the locked trunk over the training images under bfloat16 autocast (the features are cached
    in float16 either way, and the trained head and text tower stay float32). None: where the CPU has
    native bfloat16 (``train_defect_cnn.native_bf16``), where that pass runs ~2x faster."""

    def __post_init__(self) -> None:
        for name in ("n_train", "epochs", "batch_size", "embed_dim", "text_width", "text_layers", "threads"):
            if getattr(self, name) < 1:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 1.")
        for name in ("n_val", "n_val_held_out"):
            if getattr(self, name) < 0:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 0.")
        if self.vision not in VISION_CHOICE:
            raise ShopfloorInputError(f"vision={self.vision!r} is invalid; allowed: {tuple(VISION_CHOICE)}.")
        parse_shift(self.train_shift), parse_shift(self.val_shift)  # a bad name fails here, not after rendering
        if self.text_width % 32:
            raise ShopfloorInputError(f"text_width={self.text_width} is invalid; allowed: a multiple of 32.")
        known = set(PART_TYPES + MATERIALS + COLOURS + DEFECT_TYPES + REGIONS)
        bad = [c for c in self.held_out if not set(c) <= known]
        if bad:
            raise ShopfloorInputError(f"held_out={bad} names unknown values; allowed: tuples of part types, "
                                      "materials, colours, defects and regions.")

    def model_cfg(self) -> dict:
        """The open_clip ``model_cfg`` of this recipe (``MODEL_CFG`` for the defaults)."""
        text = dict(MODEL_CFG["text_cfg"], width=self.text_width, heads=self.text_width // 32,
                    layers=self.text_layers)
        return {"embed_dim": self.embed_dim, "vision_cfg": dict(VISION_CHOICE[self.vision]), "text_cfg": text}


# Dataset seeds: training and validation sets never share one with each other, with the defect CNN's
# (1_000_003 * seed + 11/12) or with the benchmark's (BENCH_SEEDS).
def dataset_seeds(seed: int) -> dict[str, int]:
    return {"train": 1_000_003 * seed + 21, "val": 1_000_003 * seed + 22, "val_held_out": 1_000_003 * seed + 23}


BENCH_SEEDS = {"gallery": 880_000_001, "held_out": 880_000_002, "test_held_out": 880_000_003,
               "test_gallery": 880_000_004}
"""Dataset seeds of the benchmark and the tests (unseen by any training set)."""


# --------------------------------------------------------------------------------------------------
# Attributes and captions
# --------------------------------------------------------------------------------------------------
ATTRIBUTES: dict[str, tuple[str, ...]] = {"part_type": PART_TYPES, "material": MATERIALS, "colour": COLOURS,
                                          "defect": DEFECT_TYPES, "region": REGIONS + ("none",)}
_SLICES, _o = {}, 0
for _name, _values in ATTRIBUTES.items():
    _SLICES[_name] = slice(_o, _o + len(_values))
    _o += len(_values)
N_ATTRIBUTE_VALUES = _o
Constraint = dict[str, tuple[str, ...]]  # attribute -> allowed values; an attribute not named is free


def spec_codes(specs: Sequence[PartSpec]) -> np.ndarray:
    """(n, 5) int: the index of each spec's value per attribute of ``ATTRIBUTES``."""
    out = np.empty((len(specs), len(ATTRIBUTES)), np.int64)
    for i, s in enumerate(specs):
        values = (s.part_type, s.material, s.colour, s.defect, s.defect_region or "none")
        out[i] = [ATTRIBUTES[a].index(v) for a, v in zip(ATTRIBUTES, values)]
    return out


def constraint_mask(constraint: Constraint) -> np.ndarray:
    """(N_ATTRIBUTE_VALUES,) bool: which attribute values a caption allows."""
    mask = np.ones(N_ATTRIBUTE_VALUES, bool)
    for name, allowed in constraint.items():
        sl = _SLICES[name]
        mask[sl] = [v in allowed for v in ATTRIBUTES[name]]
    return mask


def matches(codes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n_images, n_captions) bool: caption j is true of image i (every attribute it names agrees)."""
    ok = np.ones((len(codes), len(masks)), bool)
    for k, name in enumerate(ATTRIBUTES):
        ok &= masks[:, _SLICES[name]][:, codes[:, k]].T
    return ok


def matches_constraint(specs: Sequence[PartSpec], constraint: Constraint) -> np.ndarray:
    """(n,) bool: the specs a query's constraint is true of."""
    return matches(spec_codes(specs), constraint_mask(constraint)[None])[:, 0]


_PLURAL = {"gear": "gears", "plate": "plates", "bracket": "brackets", "cap": "caps", "washer": "washers",
           "part": "parts", "component": "components", "object": "objects"}
_DEFECT_NOUN = {"scratch": "scratch", "crack": "crack", "dent": "dent", "stain": "stain",
                "missing_hole": "missing hole", "burr": "burr"}
_REGION_WORDS = ("near the", "at the", "on the")
_DEFECTIVE_WORDS = ("defective", "damaged", "faulty")


def caption_variant(spec: PartSpec, rng: np.random.Generator, canonical_frac: float = 0.25
                    ) -> tuple[str, Constraint]:
    """One random caption of ``spec`` and the attributes it names.

    E.g. "a brass gear with a crack near the rim" (``spec.caption()``), "cracked gears",
    "a close-up photo of a flawless blue plastic cap", "copper parts with a scratch", "a red component".
    """
    u = rng.random(12)  # a fixed number of draws per caption
    if u[0] < canonical_frac:
        return spec.caption(), {"part_type": (spec.part_type,), "material": (spec.material,),
                                "colour": (spec.colour,), "defect": (spec.defect,),
                                "region": (spec.defect_region or "none",)}
    named: Constraint = {}
    if u[1] < 0.75:
        noun = spec.part_type
        named["part_type"] = (spec.part_type,)
    else:
        noun = GENERIC_NOUNS[int(u[2] * len(GENERIC_NOUNS))]
    plural = u[3] < 0.25
    if plural:
        noun = _PLURAL[noun]
    look = ""
    if u[4] < 0.55:  # material and/or colour
        pick = int(u[5] * 3)
        if spec.material in METALS:
            if pick == 2:
                look, named["material"] = "metal", METALS
            else:
                look, named["material"] = spec.material, (spec.material,)
        elif pick == 0:
            look = f"{spec.colour} {spec.material}"
            named["material"], named["colour"] = (spec.material,), (spec.colour,)
        elif pick == 1:
            look, named["colour"] = spec.colour, (spec.colour,)
        else:
            look, named["material"] = spec.material, (spec.material,)
    phrase = f"{look} {noun}" if look else noun
    if u[6] < 0.85:  # the state
        named["defect"] = (spec.defect,)
        if spec.defect == "good":
            phrase = f"{NORMAL_STATES[int(u[7] * len(NORMAL_STATES))]} {phrase}"
        elif u[7] < 0.08:
            named["defect"] = DEFECT_TYPES[1:]
            phrase = f"{_DEFECTIVE_WORDS[int(u[8] * len(_DEFECTIVE_WORDS))]} {phrase}"
        else:
            states = DEFECT_STATES[spec.defect]
            state = states[int(u[8] * len(states))]
            if u[9] < 0.45:  # name the region: "<noun> with a <defect> near the <region>"
                noun_d = _DEFECT_NOUN[spec.defect]
                state = f"with {article(noun_d)} {_REGION_WORDS[int(u[10] * 3)]} {spec.defect_region}"
                named["region"] = (spec.defect_region,)
            phrase = state_phrase(state, phrase)
    if plural:
        return phrase, named
    if u[11] < 0.5:
        return fill_template(SEEN_TEMPLATES[int(u[11] * 2 * len(SEEN_TEMPLATES))], phrase), named
    return article(phrase), named


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def render_combos(n: int, size: int, seed: int, combos: Sequence[tuple[str, ...]], shift: str = "nominal"
                  ) -> tuple[np.ndarray, np.ndarray, list[PartSpec]]:
    """Render ``n`` parts that each show one of ``combos`` (cycling), e.g. held-out gears with a crack.

    Item ``i`` is determined by ``(seed, i)`` as in ``perception.datasets``. Returns (images, labels, specs).
    """
    if not combos:
        raise ShopfloorInputError("combos is empty; allowed: one or more tuples such as ('gear', 'crack').")
    sampler = parse_shift(shift)
    images = np.empty((n, size, size, 3), np.uint8)
    labels, specs = np.empty(n, np.int64), []
    for i in range(n):
        combo = set(combos[i % len(combos)])
        rng = np.random.default_rng([seed, i])
        defect = next((v for v in combo if v in DEFECT_TYPES), None)
        part = next((v for v in combo if v in PART_TYPES), None)
        material = next((v for v in combo if v in MATERIALS), None)
        for _ in range(10_000):  # colour and region cannot be fixed in sample_spec: draw until they match
            spec = sample_spec(rng, defect=defect, part_type=part, material=material)
            if combo <= {spec.part_type, spec.material, spec.colour, spec.defect, spec.defect_region}:
                break
        else:
            raise ShopfloorInputError(f"combination {sorted(combo)} cannot be rendered; allowed: values that "
                                      "can occur together.")
        part_ = render_part(spec, int(rng.integers(2**31)), size, sampler(rng))
        images[i], labels[i] = part_.image, spec.defect_code
        specs.append(spec)
    return images, labels, specs


def _excluded(spec: PartSpec, exclude: Sequence[tuple[str, ...]]) -> bool:
    values = {spec.part_type, spec.material, spec.colour, spec.defect, spec.defect_region}
    return any(set(rule) <= values for rule in exclude)


def _render_twin_chunk(args: tuple) -> tuple[np.ndarray, list[PartSpec], np.ndarray]:
    seed, start, stop, size, shift, exclude = args
    images = np.empty((2 * (stop - start), size, size, 3), np.uint8)
    specs, seeds = [], np.empty(2 * (stop - start), np.int64)
    for k, i in enumerate(range(start, stop)):
        spec, render_seed, cond = item_plan(seed, i, shift, exclude=exclude)
        rng = np.random.default_rng([seed, i, 1])
        while True:  # the twin: the same part, pose and light with another defect (or none)
            defect = DEFECT_TYPES[int(rng.integers(len(DEFECT_TYPES)))]
            regions = valid_regions(spec.part_type, defect)
            twin = PartSpec(spec.part_type, spec.material, spec.colour, defect,
                            regions[int(rng.integers(len(regions)))] if regions else None)
            if defect != spec.defect and not _excluded(twin, exclude):
                break
        for j, s in enumerate((spec, twin)):
            images[2 * k + j] = render_part(s, render_seed, size, cond).image
            specs.append(s)
            seeds[2 * k + j] = render_seed
    return images, specs, seeds


def render_twins(n_scenes: int, size: int, seed: int, shift: str = "randomized", exclude: Sequence = (),
                 workers: int | None = None, progress: Callable[[int], None] | None = None) -> PartsData:
    """Render ``n_scenes`` pairs of twins: items 2k and 2k + 1 show the same part in the same pose and light
    with two different defect types (one may be "good"). In one batch, a pair is a hard negative that
    only the defect tells apart. Scene ``k`` of dataset ``seed`` is ``perception.datasets.item_plan(seed, k)``.
    """
    workers = workers or min(4, len(os.sched_getaffinity(0)))
    chunk = max(32, min(1000, math.ceil(n_scenes / (4 * workers)) if n_scenes else 32))
    exclude = tuple(tuple(e) for e in exclude)
    jobs = [(seed, a, min(a + chunk, n_scenes), size, shift, exclude) for a in range(0, n_scenes, chunk)]
    results = []
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_render_twin_chunk(job))
            if progress:
                progress(2 * (job[2] - job[1]))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork, as perception.datasets: the workers only run numpy and Pillow
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for job, res in zip(jobs, pool.map(_render_twin_chunk, jobs)):
                results.append(res)
                if progress:
                    progress(2 * (job[2] - job[1]))
    specs = [s for r in results for s in r[1]]
    return PartsData(images=np.concatenate([r[0] for r in results]) if results else
                     np.empty((0, size, size, 3), np.uint8),
                     labels=np.array([s.defect_code for s in specs], np.int64), masks=None, specs=specs,
                     seeds=np.concatenate([r[2] for r in results]) if results else np.empty(0, np.int64))


# --------------------------------------------------------------------------------------------------
# Evaluation (shared with benchmarks/clip_bench.py and the tests)
# --------------------------------------------------------------------------------------------------
RETRIEVAL_QUERIES: tuple[tuple[str, Constraint], ...] = (
    ("gears with a crack near the rim", {"part_type": ("gear",), "defect": ("crack",), "region": ("rim",)}),
    ("blue plastic parts with a dent", {"colour": ("blue",), "material": ("plastic",), "defect": ("dent",)}),
    ("brass plates with a missing hole", {"material": ("brass",), "part_type": ("plate",),
                                          "defect": ("missing_hole",)}),
    ("caps with a stain", {"part_type": ("cap",), "defect": ("stain",)}),
    ("plates with a burr on the edge", {"part_type": ("plate",), "defect": ("burr",), "region": ("edge",)}),
    ("copper parts with a scratch", {"material": ("copper",), "defect": ("scratch",)}),
    ("flawless steel washers", {"material": ("steel",), "part_type": ("washer",), "defect": ("good",)}),
    ("red painted brackets", {"colour": ("red",), "material": ("painted",), "part_type": ("bracket",)}),
    ("a bracket with a missing hole near the corner", {"part_type": ("bracket",), "defect": ("missing_hole",),
                                                       "region": ("corner",)}),
    ("aluminium gears with a dent", {"material": ("aluminium",), "part_type": ("gear",), "defect": ("dent",)}),
    ("yellow plastic caps", {"colour": ("yellow",), "material": ("plastic",), "part_type": ("cap",)}),
    ("washers with a burr near the rim", {"part_type": ("washer",), "defect": ("burr",), "region": ("rim",)}),
    ("black parts with a scratch", {"colour": ("black",), "defect": ("scratch",)}),
    ("green painted plates", {"colour": ("green",), "material": ("painted",), "part_type": ("plate",)}),
    ("a stained brass cap", {"material": ("brass",), "part_type": ("cap",), "defect": ("stain",)}),
    ("cracked washers", {"part_type": ("washer",), "defect": ("crack",)}),
    ("orange parts with a stain near the centre", {"colour": ("orange",), "defect": ("stain",),
                                                   "region": ("centre",)}),
    ("good copper gears", {"material": ("copper",), "part_type": ("gear",), "defect": ("good",)}),
    ("grey brackets with a burr", {"colour": ("grey",), "part_type": ("bracket",), "defect": ("burr",)}),
    ("steel plates with a scratch near the corner", {"material": ("steel",), "part_type": ("plate",),
                                                     "defect": ("scratch",), "region": ("corner",)}),
)
"""20 written queries and what makes a result relevant (every attribute the query names must match)."""


def zero_shot_report(clip: PartsCLIP, images: np.ndarray, labels: np.ndarray,
                     embeddings: np.ndarray | None = None) -> dict:
    """Zero-shot defect-type accuracy overall and per class, and the confusion matrix (rows = truth)."""
    emb = clip.encode_images(images) if embeddings is None else embeddings
    pred = clip.probs_from_embeddings(emb).argmax(axis=1)
    k = len(DEFECT_TYPES)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    per_class = {name: {"n": int(confusion[c].sum()),
                        "accuracy": float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None}
                 for c, name in enumerate(DEFECT_TYPES)}
    return {"n": int(len(labels)), "accuracy": float((pred == labels).mean()) if len(labels) else None,
            "per_class": per_class, "confusion": confusion.tolist()}


def retrieval_report(index: RetrievalIndex, specs: Sequence[PartSpec],
                     queries: Sequence[tuple[str, Constraint]] = RETRIEVAL_QUERIES, k: int = 10) -> dict:
    """Recall@k = |relevant in top k| / min(k, |relevant|) and hit rate (>= 1 relevant in top k), per query.

    ``index`` must hold the images of ``specs`` under ids 0..n-1.
    """
    rows = []
    for text, constraint in queries:
        relevant = matches_constraint(specs, constraint)
        top = [i for i, _ in index.query(text, k)]
        hits = int(relevant[top].sum()) if top else 0
        n_rel = int(relevant.sum())
        rows.append({"query": text, "n_relevant": n_rel, "hits": hits,
                     "recall": hits / min(k, n_rel) if n_rel else None, "hit": hits > 0})
    scored = [r for r in rows if r["recall"] is not None]
    return {"k": k, "recall_at_k": float(np.mean([r["recall"] for r in scored])) if scored else None,
            "hit_rate": float(np.mean([r["hit"] for r in scored])) if scored else None, "queries": rows}


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def multi_positive_clip_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: soft targets spread over the true pairs.

    logits : (n_images, n_captions) scaled cosine similarities.
    positives : (n_images, n_captions) bool, caption j is true of image i (the diagonal always is).
    """
    t = positives.float()
    img_to_txt = -(t / t.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    txt_to_img = -(t / t.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (img_to_txt + txt_to_img) / 2


def _to_input(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


class CaptionTokens:
    """open_clip's token ids of a caption, from ids cached per whitespace-separated word.

    Tokenizing a caption whole costs ~0.25 ms (text repair, regular expressions), and the recipe's
    captions are new nearly every time (``caption_variant``), which was ~20 ms of each training step.
    Its words are few, and the tokenizer splits at whitespace before anything else, so the ids of the
    words joined are the ids of the caption (checked against the tokenizer in the tests).
    """

    def __init__(self, tokenizer):
        if getattr(tokenizer, "reduction_fn", None) is not None or not hasattr(tokenizer, "encode"):
            raise ShopfloorInputError("CaptionTokens needs open_clip's SimpleTokenizer with plain truncation.")
        self.tokenizer, self.words = tokenizer, {}

    def __call__(self, caption: str) -> torch.Tensor:
        t = self.tokenizer
        ids = [t.sot_token_id]
        for word in caption.split():
            if word not in self.words:
                self.words[word] = t.encode(word)
            ids += self.words[word]
        ids = ids[:t.context_length - 1] + [t.eot_token_id]
        out = torch.zeros(t.context_length, dtype=torch.long)
        out[:len(ids)] = torch.tensor(ids)
        return out


def encode_captions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)``, with the padding after the batch's longest caption cut off first.

    The text tower is causal and pools at the end-of-text token, so the padding after it changes nothing
    (the same embeddings to float precision, tested), and the recipe's captions fill under half of the 32
    positions, so the text tower's steps cost less than half as much.
    """
    n = int((tokens != 0).sum(dim=1).max())
    if n >= tokens.shape[1] or model.attn_mask is None or model.text_pool_type != "argmax":
        return model.encode_text(tokens)
    tokens = tokens[:, :n]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(len(x)), tokens.argmax(dim=-1)]  # the end-of-text token has the largest id
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _optimizers(model: torch.nn.Module, cfg: CLIPTrainConfig) -> list[torch.optim.Optimizer]:
    """SparseAdam for the token table (only used rows move), AdamW for the rest (no decay on gains/biases)."""
    model.token_embedding.sparse = True
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name == "token_embedding.weight":
            continue
        (no_decay if p.ndim < 2 or "positional_embedding" in name or name == "logit_scale" else decay).append(p)
    return [torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr),
            torch.optim.SparseAdam([model.token_embedding.weight], lr=cfg.lr)]


class _TrunkFeatures(torch.nn.Module):
    """``DefectTrunk.trunk_features`` as a module of its own, for the ONNX exporter."""

    def __init__(self, trunk: DefectTrunk):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.trunk_features(x)


def locked_trunk_pass(trunk: DefectTrunk, images: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                      g: torch.Generator, cfg: CLIPTrainConfig,
                      batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The locked trunk's feature maps (float16) and colour statistics of every training image, each image
    in one random orientation of the square (drawn from ``g``).

    Where the CPU has native bfloat16 (``cfg.bf16``), torch runs the trunk under bfloat16 autocast;
    otherwise onnxruntime runs it in float32 from a graph exported here, with the same features to 1e-5
    and faster than torch: 596 against 365 images/s at 64 px (the trunk alone; AMD EPYC, AVX2, two threads,
    2026-12-07). With the orienting and colour statistics the shipped run's pass took ~410 s for 144,000
    parts, of the 20 minutes the whole run may take.
    """
    trunk.features.eval()
    bf16 = native_bf16() if cfg.bf16 is None else cfg.bf16
    batches = (dihedral(_to_input(images[a:a + batch_size], mean, std), g) for a in range(0, len(images), batch_size))
    if bf16:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            cached = [(trunk.trunk_features(x.contiguous(memory_format=torch.channels_last)).half(),
                       trunk.colour_stats(x)) for x in batches]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            size = images.shape[1]
            session = ort_session(export_module(_TrunkFeatures(trunk).eval(), torch.rand(2, 3, size, size),
                                                Path(tmp) / "trunk.onnx"), cfg.threads)
        with torch.inference_mode():
            cached = [(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]).half(), trunk.colour_stats(x))
                      for x in batches]
    return torch.cat([c[0] for c in cached]), torch.cat([c[1] for c in cached])


def fit(model: torch.nn.Module, tokenizer, images: np.ndarray, specs: Sequence[PartSpec], cfg: CLIPTrainConfig,
        progress: Progress, on_epoch: Callable[[int], dict] | None = None, pairs: bool = False) -> list[dict]:
    """Train ``model`` in place on (images, specs); returns the per-epoch history.

    Parameters
    ----------
    model, tokenizer : an open_clip CLIP (with its preprocess config set) and its tokenizer.
    images, specs : uint8 training images (n, 64, 64, 3) and what each shows.
    cfg : the recipe (batch size, learning rate, epochs, seed, caption mix).
    progress : called after every step with (f"epoch {e}/{E}", step, steps per epoch).
    on_epoch : called with the model in eval mode after each epoch; its dict joins the history row.
    pairs : items 2k and 2k + 1 are twins (``render_twins``) and are kept in the same batch.

    A locked defect-CNN trunk (its ``features`` not trainable) is run once over the training images
    (each in one random orientation of the square); the steps then train only its head and the text
    tower, which is what makes this tower affordable here.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    codes = spec_codes(specs)
    opts = _optimizers(model, cfg)
    model.visual.to(memory_format=torch.channels_last)  # ~10-25 % faster convolutions on CPU
    n = len(specs)
    steps_per_epoch = max(1, n // cfg.batch_size)  # drop the ragged last batch: every step sees a full batch
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_frac * total))
    caption_tokens = CaptionTokens(tokenizer)
    max_scale = math.log(100.0)
    history = []
    step = 0
    trunk = getattr(model.visual, "trunk", None)
    locked = isinstance(trunk, DefectTrunk) and not any(p.requires_grad for p in trunk.features.parameters())
    if locked:
        cached_features, cached_stats = locked_trunk_pass(trunk, images, mean, std, g, cfg)
    for epoch in range(cfg.epochs):
        model.train()
        if pairs:  # items 2k and 2k + 1 are twins (one scene, two defects): keep them in one batch
            scenes = torch.randperm(n // 2, generator=g).numpy()
            order = np.stack([2 * scenes, 2 * scenes + 1], axis=1).reshape(-1)
        else:
            order = torch.randperm(n, generator=g).numpy()
        loss_sum = 0.0
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            lr = cfg.lr * min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total)))
            for opt in opts:
                for group in opt.param_groups:
                    group["lr"] = lr
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            caps = [caption_variant(specs[i], rng, cfg.canonical_caption_frac) for i in idx]
            texts = [c[0] for c in caps]
            unique, inverse = np.unique(texts, return_inverse=True)  # encode each distinct caption once
            tokens = torch.stack([caption_tokens(t) for t in unique])
            positives = torch.from_numpy(matches(codes[idx], np.stack([constraint_mask(c[1]) for c in caps])))
            if locked:
                trunk.features.eval()  # its batch-norm statistics stay the CNN's
                img = F.normalize(trunk.head(cached_features[idx].float(), cached_stats[idx]), dim=-1)
            else:
                x = dihedral(_to_input(images[idx], mean, std), g).contiguous(memory_format=torch.channels_last)
                img = F.normalize(model.encode_image(x), dim=-1)
            txt = F.normalize(encode_captions(model, tokens), dim=-1)[torch.from_numpy(inverse)]
            loss = multi_positive_clip_loss(model.logit_scale.exp() * img @ txt.T, positives)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_scale)
            loss_sum += float(loss.detach())
            step += 1
            progress(f"epoch {epoch + 1}/{cfg.epochs}", s + 1, steps_per_epoch)
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / steps_per_epoch, 4),
               "logit_scale": round(float(model.logit_scale.detach().exp()), 2), "epoch_s": round(time.perf_counter() - t0, 1)}
        if on_epoch is not None:
            model.eval()
            row.update(on_epoch(epoch))
        history.append(row)
    model.token_embedding.sparse = False  # the saved model is a plain open_clip CLIP
    model.eval()
    return history


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / CONFIG_FILE, path / WEIGHTS_FILE))


def train_clip(cfg: CLIPTrainConfig = CLIPTrainConfig(), out_dir: str | os.PathLike = "perception/weights/parts_clip",
               progress: Progress | None = None, command: str = COMMAND) -> dict:
    """Render, train, save ``out_dir`` (open_clip local-dir) and ``out_dir/train_metrics.json``; return the metrics.

    The validation figures are computed from the saved directory loaded back with ``load_clip``, so
    they describe exactly the shipped files.
    """
    import open_clip

    out = Path(out_dir)
    progress = progress or (lambda stage, done, total: None)
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    if cfg.twins and cfg.n_train % 2:
        raise ShopfloorInputError(f"n_train={cfg.n_train} is invalid with twins; allowed: an even number.")
    seeds = dataset_seeds(cfg.seed)
    n_all, done = cfg.n_train + cfg.n_val, [0]

    def rendered(k: int) -> None:
        done[0] += k
        progress("render", done[0], n_all)

    if cfg.twins:
        train = render_twins(cfg.n_train // 2, IMAGE_SIZE, seeds["train"], cfg.train_shift, cfg.held_out,
                             cfg.workers, rendered)
    else:
        train = render_dataset(cfg.n_train, IMAGE_SIZE, seeds["train"], cfg.train_shift, exclude=cfg.held_out,
                               workers=cfg.workers, progress=rendered)
    val = render_dataset(cfg.n_val, IMAGE_SIZE, seeds["val"], cfg.val_shift, workers=cfg.workers, progress=rendered)
    val_held = render_combos(cfg.n_val_held_out, IMAGE_SIZE, seeds["val_held_out"], cfg.held_out, cfg.val_shift)
    t_render = time.perf_counter() - t_start

    model_cfg = cfg.model_cfg()
    model = build_model(model_cfg, seed=cfg.seed)
    if cfg.vision == "defect-cnn-trunk" and cfg.vision_init is not None:
        load_defect_features(model, None if cfg.vision_init == "shipped" else cfg.vision_init)
        model.visual.trunk.features.requires_grad_(False)
    tokenizer = open_clip.get_tokenizer("", context_length=model_cfg["text_cfg"]["context_length"])
    # The epochs are watched at one view: at the default four, watching 2,100 parts took ~33 s an epoch, a
    # sixth of the whole run here. The final figures below are at the default views. Watching changes no
    # weight (no random draw, eval mode), so the saved model is the same either way.
    monitor = PartsCLIP(model, tokenizer, "training", views=1)

    def on_epoch(epoch: int) -> dict:
        monitor._class_embeddings.clear()
        row = {}
        if cfg.n_val:
            row["val_zero_shot_accuracy_1view"] = round(
                zero_shot_report(monitor, val.images, val.labels)["accuracy"], 4)
        if cfg.n_val_held_out:
            row["val_held_out_zero_shot_accuracy_1view"] = round(
                zero_shot_report(monitor, val_held[0], val_held[1])["accuracy"], 4)
        return row

    history = fit(model, tokenizer, train.images, train.specs, cfg, progress, on_epoch, pairs=cfg.twins)
    t_train = time.perf_counter() - t_start - t_render

    save_local_dir(model, out, model_cfg)
    progress("evaluate", 0, 1)
    loaded = load_clip("local-dir:" + str(out))
    validation: dict = {"shift": cfg.val_shift}
    if cfg.n_val:
        emb = loaded.encode_images(val.images)
        validation["zero_shot"] = zero_shot_report(loaded, val.images, val.labels, emb)
        index = RetrievalIndex(loaded)
        index.add(range(len(val)), emb)
        validation["retrieval"] = retrieval_report(index, val.specs)
    if cfg.n_val_held_out:
        validation["zero_shot_held_out"] = zero_shot_report(loaded, val_held[0], val_held[1])
    progress("evaluate", 1, 1)
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {
        "command": command,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "held_out": [list(c) for c in cfg.held_out],
        "dataset_seeds": seeds,
        "model": {"name": MODEL_NAME, "model_cfg": model_cfg, "n_params": n_params,
                  "n_params_token_embedding": model.token_embedding.weight.numel(),
                  "stored_dtype": "float16", "dir_bytes": _dir_size(out)},
        "timings_s": {"render": round(t_render, 1), "train": round(t_train, 1),
                      "evaluate": round(time.perf_counter() - t_start - t_render - t_train, 1),
                      "total": round(time.perf_counter() - t_start, 1)},
        "machine": {"cpus": os.cpu_count(), "threads": cfg.threads, "load_avg_1min_start": round(load_start, 2),
                    "load_avg_1min_end": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                    "torch": torch.__version__, "open_clip": open_clip.__version__},
        "eval_shift_of_benchmark": EVAL_SHIFT,
        "history": history,
        "validation": validation,
    }
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
