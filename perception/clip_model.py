"""PartsCLIP: a tiny CLIP for inspection images: zero-shot defect typing and text search of the history.

The model is a plain open_clip ``CLIP`` registered as ``"shopfloor-parts-clip"`` (``register_model_config``)
and shipped in open_clip's ``local-dir:`` layout (``open_clip_config.json`` + ``open_clip_model.safetensors``),
so ``open_clip.create_model_from_pretrained("local-dir:perception/weights/parts_clip")`` loads it
once this module is imported (its image tower is a timm model registered here). ``load_clip`` is the one entry point: the shipped weights, any ``local-dir:``,
or an open_clip ``name[:tag]`` (downloaded by open_clip, so that needs internet).

Architecture (chosen by measurement on this 2-core machine)
-----------------------------------------------------------
==============  ==================================================================================
images          64 x 64 RGB (the inspection camera's size; other sizes are resized), normalised with
                the renderer's pixel mean/std
vision tower    ``DefectTrunk`` (timm name ``shopfloor_defect_trunk``): the defect CNN's five conv
                layers, started from the trained defect CNN and locked while CLIP trains (LiT,
                Zhai et al. 2022), then a trainable conv layer, max + mean pooling and the image's
                colour statistics, projected to the embedding (0.57 M parameters, 0.18 M of them trained)
text tower      open_clip's causal text transformer, width 64, 2 layers, 2 heads, context 32 tokens
                (the longest caption or prompt is ~20 BPE tokens; 77 would cost 2.5x more)
tokenizer       open_clip's standard BPE ``SimpleTokenizer`` (vocab 49,408): any query tokenises,
                no tokenizer files to ship, and ``open_clip.get_tokenizer("local-dir:...")`` works
embedding       128-d, cosine similarity, learnable temperature (``logit_scale``)
==============  ==================================================================================

Vision towers measured (``VISION_CHOICE`` and timm models via ``timm_model_name``), training ms per
64 px image at batch 128, two threads, idle machine, channels-last; and how fast each learns the
defect type (supervised probe: defect-type accuracy at ``EVAL_SHIFT`` after 2,500 steps of 64
domain-randomised images, chance = 0.14):

=============================  ==========  =========  ==============================================
tower                          parameters  ms/image   probe accuracy
=============================  ==========  =========  ==============================================
ModifiedResNet w8 (chosen)     0.36 M      1.5        0.33
timm test_byobnet              0.23 M      1.3        0.26
timm test_resnet               0.38 M      2.3        at 156 steps all of these were still at chance
ModifiedResNet w16             1.36 M      ~3.3 *     (0.15-0.20), so they were not run longer
ViT p8 w96 l4 / w128 l4        0.48/0.84 M ~4.7/~7.5 *
timm mobilenetv3/lcnet/ghost   0.8-1.7 M   2-7x slower (depthwise convolutions are slow on this CPU)
=============================  ==========  =========  ==============================================

(* scaled from a measurement under load, relative to ModifiedResNet w8 in the same run.)
Learning the defect features, not the text, is what limits a CLIP trained from scratch here: the
best of these, ModifiedResNet w8 trained contrastively for 4 epochs of 40,000 parts (16 minutes),
reached 0.22 zero-shot defect-type accuracy on validation and 0.00 on the held-out combinations.
The defect CNN learns those features with the masks' help (``perception/train_defect_cnn.py``);
reusing its convolutions, locked, lets the 20-minute CLIP budget go to aligning the text with them.
The price: the held-out combinations are held out of CLIP's training, not of the defect CNN's, so
the zero-shot figure on them measures how the *language* side generalises, not the vision side.

The 49k-token embedding. With the standard vocabulary the token table is ``49,408 x width``
parameters, while the captions use ~200 distinct tokens. Measured on this machine (one text-tower
training step, batch 128, context 32, one thread under load): width 128 / 3 layers costs 640 ms with
the table frozen, 710 ms with it dense and trainable (AdamW touches all 6.3 M rows every step) and
605 ms with sparse gradients; width 64 / 2 layers costs 150 ms frozen and 195 ms dense (idle, two
threads: 99 and 129 ms). At width 128 the text step alone would cost 2x the vision tower's step.
So: width 64, the table trained with *sparse* gradients (``nn.Embedding(sparse=True)`` + ``SparseAdam`` during training only:
only the rows a batch uses are updated, as cheap as freezing it), and the checkpoint stored in
float16 (the 3.2 M-parameter table alone would be 12.6 MB in float32; in float16 the whole model
fits the 10 MB budget). The model in memory is rounded to float16 values before saving, so what
training evaluates is exactly what ships.

Zero-shot defect typing (WinCLIP-style prompt ensembles)
--------------------------------------------------------
For each class of ``DEFECT_TYPES`` the text embedding is the mean of the normalised embeddings of
every (template x state word x part noun) prompt, e.g. "a cropped photo of the fractured gear",
"a dark photo of a washer with a crack", then renormalised. An image is classified by the softmax
of its cosine similarities to the seven class embeddings times the learned temperature. The part
nouns are all part types plus generic ones unless the caller names the part type; every class
averages over the same nouns, so class differences come from the state words alone. The state
words are part of the training caption grammar (a CLIP trained from scratch learns words only from
its captions); a third of the templates (``UNSEEN_TEMPLATES``) never occur in training.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from environments.errors import ShopfloorInputError
from environments.parts import DEFECT_TYPES, PART_TYPES
from perception.defect_cnn import (SHIPPED_CNN_64PX, VIEW_ORDER, DefectCNN, check_runtime, check_views,
                                   load_checkpoint, standardize, view)

MODEL_NAME = "shopfloor-parts-clip"
WEIGHTS_DIR = Path(__file__).parent / "weights" / "parts_clip"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
LOCAL_DIR = "local-dir:"
IMAGE_SIZE = 64  # px, the inspection camera's image side
CONTEXT_LENGTH = 32  # tokens
PIXEL_MEAN = (0.40, 0.38, 0.36)  # of rendered parts (as the defect CNN)
PIXEL_STD = (0.20, 0.20, 0.20)
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on the learned temperature

# The vision towers measured (train ms per image at batch 128 on this machine, one thread, under load;
# zero-shot accuracy of short pilots in perception/train_clip.py's docstring). open_clip builds each
# from the config alone: a tiny ViT, open_clip's ModifiedResNet, or a timm convnet by name.
VISION_CHOICE: dict[str, dict] = {
    "vit-p8-w96-l4": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 96, "layers": 4, "head_width": 32},
    "modified-resnet-w8": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
    "modified-resnet-w16": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "timm-test-resnet": {"image_size": IMAGE_SIZE, "timm_model_name": "test_resnet", "timm_pool": "avg",
                         "timm_proj": "linear"},
    # the defect CNN's convolutional trunk (registered with timm below), initialised from the trained
    # defect CNN and locked during contrastive training (LiT): see perception/train_clip.py
    "defect-cnn-trunk": {"image_size": IMAGE_SIZE, "timm_model_name": "shopfloor_defect_trunk", "timm_pool": "",
                         "timm_proj": ""},  # "": the trunk's own head maps to the embedding
}
VISION_TOWER = "defect-cnn-trunk"

#: Image embeddings average four quarter turns of each part by default: on the benchmark's held-out
#: combinations zero-shot typing rose from 0.931 to 0.954 and Recall@10 from 0.804 to 0.842 (earlier
#: CLIPs: 0.923 to 0.939 and 0.792 to 0.821; 0.794 to 0.815 and 0.786 to 0.799; benchmarks/RESULTS.md),
#: for 4x the encoding time.
DEFAULT_VIEWS = 4

MODEL_CFG: dict = {
    "embed_dim": 128,
    "vision_cfg": VISION_CHOICE[VISION_TOWER],
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
"""The registered architecture ``MODEL_NAME`` (the shipped weights' ``model_cfg``)."""

PREPROCESS_CFG: dict = {"size": IMAGE_SIZE, "mean": PIXEL_MEAN, "std": PIXEL_STD, "interpolation": "bilinear",
                        "resize_mode": "squash"}
"""open_clip preprocessing written next to the weights (used by open_clip's own PIL transform)."""

# --------------------------------------------------------------------------------------------------
# Prompt ensembles
# --------------------------------------------------------------------------------------------------
NORMAL_STATES: tuple[str, ...] = ("good", "flawless", "perfect", "unblemished", "intact", "undamaged",
                                  "defect-free", "normal")
DEFECT_STATES: dict[str, tuple[str, ...]] = {  # an adjective goes before the noun, a "with ..." phrase after
    "scratch": ("scratched", "scuffed", "with a scratch", "with scratches"),
    "crack": ("cracked", "fractured", "with a crack", "with a fracture"),
    "dent": ("dented", "deformed", "with a dent", "with a dent in it"),
    "stain": ("stained", "discoloured", "with a stain", "with a dirty stain"),
    "missing_hole": ("undrilled", "with a missing hole", "missing a hole", "with a hole missing"),
    "burr": ("burred", "with a burr", "with burrs", "with a sharp burr"),
}
STATES: dict[str, tuple[str, ...]] = {"good": NORMAL_STATES, **DEFECT_STATES}
GENERIC_NOUNS: tuple[str, ...] = ("part", "component", "object")
# "{a}" becomes the article and the object phrase, "{the}" "the" and the phrase
SEEN_TEMPLATES: tuple[str, ...] = ("a photo of {a}", "a photo of {the}", "a cropped photo of {the}",
                                   "a close-up photo of {a}", "an inspection image of {a}", "{a}")
UNSEEN_TEMPLATES: tuple[str, ...] = ("a bright photo of {a}", "a dark photo of {the}",
                                     "a low resolution photo of {the}")
TEMPLATES: tuple[str, ...] = SEEN_TEMPLATES + UNSEEN_TEMPLATES


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def state_phrase(state: str, noun: str) -> str:
    """"cracked gear" or "gear with a crack": adjectives go before the noun, phrases after it."""
    return f"{noun} {state}" if state.startswith(("with ", "missing ")) else f"{state} {noun}"


def fill_template(template: str, phrase: str) -> str:
    return template.replace("{a}", article(phrase)).replace("{the}", "the " + phrase)


def defect_prompts(defect: str, nouns: Iterable[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """Every prompt of one class: templates x state words x nouns."""
    return [fill_template(t, state_phrase(s, n)) for t in templates for s in STATES[defect] for n in nouns]


# --------------------------------------------------------------------------------------------------
# The defect CNN's trunk as an open_clip vision tower
# --------------------------------------------------------------------------------------------------
class DefectTrunk(torch.nn.Module):
    """The defect CNN's convolutions, then a trainable part: one conv layer, max and mean pooling, the
    image's colour statistics, and a linear map to the embedding.

    The defect CNN standardises each image per channel (so lighting does not move its features), which
    also removes the absolute colour the captions name ("red painted brackets"); the per-channel mean
    and spread of the input put it back. ``features`` has the defect CNN's layout, so its weights load
    as they are (``load_defect_features``).
    """

    def __init__(self, embed_dim: int = 128):
        super().__init__()
        cnn = DefectCNN()
        self.features, width = cnn.features, cnn.head.in_features
        self.adapt = torch.nn.Sequential(torch.nn.Conv2d(width, width, 3, 1, 1, bias=False),
                                         torch.nn.BatchNorm2d(width), torch.nn.ReLU(inplace=True))
        self.proj = torch.nn.Linear(2 * width + 6, embed_dim)

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (locked) defect-CNN feature map of normalised images (n, 3, H, W)."""
        return self.features(standardize(x))

    def colour_stats(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    def head(self, features: torch.Tensor, colour_stats: torch.Tensor) -> torch.Tensor:
        f = self.adapt(features)
        return self.proj(torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3)), colour_stats], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk_features(x), self.colour_stats(x))


def shopfloor_defect_trunk(pretrained: bool = False, num_classes: int = 128, **kwargs) -> DefectTrunk:
    """timm entry point (open_clip builds timm towers by name); ``num_classes`` is the embedding width."""
    if pretrained:
        raise ValueError("shopfloor_defect_trunk has no timm pretrained weights; it loads from a CLIP "
                         "local-dir checkpoint or is initialised from a defect CNN (load_defect_features)")
    return DefectTrunk(num_classes)


def register_timm_tower() -> None:
    """Register ``shopfloor_defect_trunk`` with timm (idempotent)."""
    import timm
    from timm.models import register_model

    if "shopfloor_defect_trunk" not in timm.list_models("shopfloor_*"):
        register_model(shopfloor_defect_trunk)


def load_defect_features(model: torch.nn.Module, cnn_checkpoint: str | os.PathLike | None = None) -> None:
    """Copy a trained defect CNN's convolutions into a CLIP's DefectTrunk; by default the shipped 64 px CNN's
    (``defect_cnn.SHIPPED_CNN_64PX``: CLIP sees parts at 64 px)."""
    trunk = getattr(model.visual, "trunk", None)
    if not isinstance(trunk, DefectTrunk):
        raise ShopfloorInputError("this CLIP's vision tower is not the defect-CNN trunk; allowed: a model built "
                                  "with vision 'defect-cnn-trunk'.")
    cnn, _ = load_checkpoint(SHIPPED_CNN_64PX if cnn_checkpoint is None else cnn_checkpoint)
    try:
        trunk.features.load_state_dict(cnn.features.state_dict())
    except RuntimeError as e:
        raise ShopfloorInputError(f"defect CNN {str(cnn_checkpoint)!r} has another layout than the CLIP trunk "
                                  f"({str(e).splitlines()[0][:100]}); allowed: the default DefectCNNDims.") from None


# --------------------------------------------------------------------------------------------------
# Registration, building, saving
# --------------------------------------------------------------------------------------------------
def register_model_config() -> str:
    """Register ``MODEL_CFG`` with open_clip as ``MODEL_NAME`` (idempotent) and return the name.

    ``open_clip.add_model_config`` reads JSON files (the model name is the file stem), so the config
    is written to a per-user temporary directory first. The timm tower is registered too: with it,
    ``open_clip.create_model_from_pretrained("local-dir:...")`` reads our weights directly.
    """
    import open_clip

    register_timm_tower()
    if MODEL_NAME not in open_clip.list_models():
        directory = Path(tempfile.gettempdir()) / f"shopfloor-open-clip-{os.getuid()}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{MODEL_NAME}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(MODEL_CFG, indent=2))
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        open_clip.add_model_config(path)
    return MODEL_NAME


def build_model(model_cfg: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised CLIP (``MODEL_CFG`` by default) with seed ``seed``."""
    import open_clip

    register_timm_tower()
    torch.manual_seed(seed)
    if model_cfg is None:
        model = open_clip.create_model(register_model_config())
    else:
        model = open_clip.model.CLIP(**model_cfg)
    open_clip.model.set_model_preprocess_cfg(model, PREPROCESS_CFG)
    return model


def save_local_dir(model: torch.nn.Module, out_dir: str | os.PathLike, model_cfg: dict) -> Path:
    """Write ``model`` in open_clip's ``local-dir:`` layout, weights in float16.

    The floating-point parameters and buffers of ``model`` are rounded to float16 values in place
    first, so the model in memory computes exactly what the saved one will.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(t.half().float())
                t = t.half()
            state[name] = t.detach().contiguous().clone()
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "model": MODEL_NAME})
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS_CFG}
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    return out


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
_ALLOWED = ("allowed: None (the shipped weights), 'local-dir:/path' (open_clip_config.json + weights), "
            "'hf-hub:org/repo', or an open_clip 'name' / 'name:tag' (tags download, needing internet)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else ''}"


def load_clip(spec: str | None = None, batch_size: int = 256, views: int = DEFAULT_VIEWS,
              image_runtime: str = "torch") -> PartsCLIP:
    """Load a CLIP for inspection images.

    Parameters
    ----------
    spec : None for the shipped weights (``perception/weights/parts_clip``); ``"local-dir:/path"`` for an
        open_clip local-dir checkpoint (loaded by open_clip itself); ``"hf-hub:org/repo"``; or an open_clip
        model ``"name"`` / ``"name:tag"`` (e.g. ``"ViT-B-32:laion2b_s34b_b79k"``), passed to
        ``open_clip.create_model_and_transforms(name, pretrained=tag)`` (a tag is downloaded: internet).
    batch_size : images per forward pass when encoding.
    views : turned and mirrored copies of each image whose embeddings are averaged (``PartsCLIP``).
    image_runtime : "torch" or "int8", where images are embedded (``PartsCLIP``).

    Raises
    ------
    ShopfloorInputError : a malformed spec, a missing directory or file, a corrupt checkpoint, an unknown
        model name or tag, or a failed download.
    """
    import open_clip

    register_model_config()
    if spec is None:
        spec = LOCAL_DIR + str(WEIGHTS_DIR)
    if not isinstance(spec, str) or not spec.strip():
        raise ShopfloorInputError(f"CLIP spec {spec!r} is invalid; {_ALLOWED}.")
    spec = spec.strip()
    if spec.startswith(LOCAL_DIR):
        path = Path(spec[len(LOCAL_DIR):]).expanduser()
        if not spec[len(LOCAL_DIR):]:
            raise ShopfloorInputError(f"CLIP spec {spec!r} names no directory; {_ALLOWED}.")
        if not path.is_dir():
            raise ShopfloorInputError(f"CLIP directory {str(path)!r} does not exist; {_ALLOWED}.")
        if not (path / CONFIG_FILE).is_file():
            raise ShopfloorInputError(f"CLIP directory {str(path)!r} has no {CONFIG_FILE}; allowed: a directory "
                                      f"written by `shopfloor train clip` or open_clip's local-dir layout.")
        if not any(any(path.glob(p)) for p in ("*.safetensors", "*.bin", "*.pth")):
            raise ShopfloorInputError(f"CLIP directory {str(path)!r} has no weights file ({WEIGHTS_FILE}); allowed: "
                                      "a directory written by `shopfloor train clip` or open_clip's local-dir layout.")
        try:
            model = open_clip.create_model_from_pretrained(LOCAL_DIR + str(path), return_transform=False)
            tokenizer = open_clip.get_tokenizer(LOCAL_DIR + str(path))
        except Exception as e:  # json, safetensors and state-dict errors come in many types
            raise ShopfloorInputError(f"CLIP directory {str(path)!r} holds no loadable open_clip model "
                                      f"({_first_line(e)}); allowed: a directory written by `shopfloor train clip`."
                                      ) from None
        return PartsCLIP(model, tokenizer, spec, batch_size, views, image_runtime)
    if spec.startswith("hf-hub:"):
        name, tag = spec, None
    else:
        name, _, tag = spec.partition(":")
        if not name or (":" in spec and not tag):
            raise ShopfloorInputError(f"CLIP spec {spec!r} is malformed; {_ALLOWED}.")
        name = name.replace("/", "-")  # open_clip's own spelling: "ViT-B/32" is "ViT-B-32"
        if name not in open_clip.list_models():
            raise ShopfloorInputError(f"CLIP model {name!r} is unknown to open_clip; {_ALLOWED} "
                                      f"(names: open_clip.list_models()).")
        known = open_clip.list_pretrained_tags_by_model(name)
        if tag and tag not in known and not os.path.isfile(tag):
            raise ShopfloorInputError(f"pretrained tag {tag!r} is unknown for {name}; allowed: one of {known} "
                                      "or a checkpoint file.")
    try:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=tag or None)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:
        raise ShopfloorInputError(f"open_clip could not load {spec!r} ({_first_line(e)}); pretrained tags and "
                                  f"hf-hub models are downloaded, which needs internet; {_ALLOWED}.") from None
    return PartsCLIP(model, tokenizer, spec, batch_size, views, image_runtime)


# --------------------------------------------------------------------------------------------------
# The model the agents and the CLI use
# --------------------------------------------------------------------------------------------------
class ImageTower(torch.nn.Module):
    """A CLIP's image embedding of normalised images (n, 3, h, w): unit length, the mean over ``views``
    turned and mirrored copies, renormalised. One module, so torch and the exported graph compute the same."""

    def __init__(self, model: torch.nn.Module, views: int):
        super().__init__()
        self.model, self.views = model, check_views(views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(sum(F.normalize(self.model.encode_image(view(x, k, m)), dim=-1)
                               for k, m in VIEW_ORDER[:self.views]), dim=-1)


class PartsCLIP:
    """An open_clip CLIP with the inspection station's conventions: uint8 images in, unit vectors out.

    Parameters
    ----------
    model : an open_clip CLIP (any size; its preprocess config gives the input size and normalisation).
    tokenizer : its tokenizer.
    source : where it came from (for messages and reports).
    batch_size : images per forward pass.
    views : turned and mirrored copies of each image whose embeddings are averaged (1, 2, 4 or 8; the
        defect CNN's test-time views, ``defect_cnn.VIEW_ORDER``): a part has no preferred orientation.
    image_runtime : "torch", or "int8": images are embedded in onnxruntime on the image tower's INT8 graph
        (``export.cached_int8``, built once per weights and views, then cached). For the shipped CLIP it
        embeds a batch of 4 parts at one view in one thread 3.6x faster (4.1 ms against 14.6), its
        embeddings at cosine ~0.999 to torch's, with the same bars met (zero-shot 0.946 against 0.948,
        Recall@10 0.829 against 0.822; benchmarks/RESULTS.md, 2026-12-08). That was measured on the shipped
        tower only: for another (a pretrained ViT, say), compare ``benchmarks/clip_bench.py --image-runtime``
        torch and int8 before trusting it. Texts are always encoded in torch.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, source: str = "", batch_size: int = 256,
                 views: int = DEFAULT_VIEWS, image_runtime: str = "torch"):
        check_runtime(image_runtime, "image_runtime")
        self.model = model.eval()
        self.views = check_views(views)
        self.image_runtime = image_runtime
        self._tower = ImageTower(self.model, self.views).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.batch_size = batch_size
        pp = getattr(model.visual, "preprocess_cfg", PREPROCESS_CFG)
        size = pp.get("size", IMAGE_SIZE)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self._mean = torch.tensor(pp.get("mean", PIXEL_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(pp.get("std", PIXEL_STD), dtype=torch.float32).view(1, 3, 1, 1)
        self._class_embeddings: dict[str | None, np.ndarray] = {}
        self._warm: set[int] = set()
        self._onnx = self._int8_session() if image_runtime == "int8" else None

    def _int8_session(self):
        """The image tower's INT8 graph in onnxruntime, with torch's thread count (one in a Ray actor) and no
        thread busy-waiting between calls, as the defect CNN's in the plant."""
        import hashlib

        from perception.export import cached_int8, export_module, ort_session

        digest = hashlib.sha256()
        for key, tensor in self.model.visual.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        side = self.image_size[0]
        path = cached_int8(f"clip_image-{digest.hexdigest()[:16]}-v{self.views}",
                           lambda out: export_module(self._tower, torch.rand(2, 3, side, side), out, output_name="embeddings"),
                           side, to_input=lambda images: self.to_input(images).numpy())
        return ort_session(path, threads=torch.get_num_threads(), spin=False)

    def warm_up(self, batch_size: int) -> None:
        """Encode a blank batch and a text once: torch's first call on a shape allocates and plans, which a
        real-time caller would otherwise pay inside its first deadline. Idempotent per batch size."""
        if batch_size not in self._warm:
            self.encode_images(np.zeros((batch_size, *self.image_size, 3), np.uint8))
            self.encode_texts(["a part"])
            self._warm.add(batch_size)

    @property
    def logit_scale(self) -> float:
        """The learned inverse temperature of the cosine similarities (clamped at 100 like CLIP)."""
        return float(self.model.logit_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images (n, H, W, 3) -> normalised float tensor (n, 3, h, w) at the model's input size."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ShopfloorInputError(f"images of shape {images.shape} and dtype {images.dtype} are invalid; "
                                      "allowed: an (n, H, W, 3) uint8 array.")
        x = torch.from_numpy(np.require(images, requirements=("C", "W"))).permute(0, 3, 1, 2).float().div_(255.0)
        if tuple(x.shape[2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """Unit-length image embeddings (n, d) float32 of uint8 images (n, H, W, 3)."""
        images = np.asarray(images)
        out = []
        for a in range(0, len(images), self.batch_size):
            x = self.to_input(images[a:a + self.batch_size])
            out.append(self._tower(x).float().numpy() if self._onnx is None else
                       self._onnx.run(None, {"images": x.numpy()})[0])
        if not out:
            self.to_input(images)  # still validate the shape
            return np.zeros((0, self.embed_dim), np.float32)
        return np.concatenate(out)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length text embeddings (n, d) float32."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ShopfloorInputError("texts must be a list of strings; allowed: e.g. ['a cracked gear'].")
        out = [F.normalize(self.model.encode_text(self.tokenizer(list(texts[a:a + 1024]))), dim=-1)
               for a in range(0, len(texts), 1024)]
        return torch.cat(out).float().numpy() if out else np.zeros((0, self.embed_dim), np.float32)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else \
            int(self.model.visual.output_dim)

    def class_embeddings(self, part_type: str | None = None) -> np.ndarray:
        """The prompt-ensemble embedding of each class in ``DEFECT_TYPES`` order, (7, d), unit length.

        ``part_type`` names the part in the prompts; None averages over every part type and generic nouns.
        """
        if part_type is not None and part_type not in PART_TYPES:
            raise ShopfloorInputError(f"part_type={part_type!r} is invalid; allowed: None or one of {PART_TYPES}.")
        if part_type not in self._class_embeddings:
            nouns = (part_type,) if part_type else PART_TYPES + GENERIC_NOUNS
            rows = []
            for defect in DEFECT_TYPES:
                emb = self.encode_texts(defect_prompts(defect, nouns)).mean(axis=0)
                rows.append(emb / np.linalg.norm(emb))
            self._class_embeddings[part_type] = np.stack(rows).astype(np.float32)
        return self._class_embeddings[part_type]

    def zero_shot_probs(self, images: np.ndarray, part_type: str | None = None) -> np.ndarray:
        """Class probabilities (n, len(DEFECT_TYPES)) of uint8 images by prompt ensembles (no trained head)."""
        return self.probs_from_embeddings(self.encode_images(images), part_type)

    def probs_from_embeddings(self, image_embeddings: np.ndarray, part_type: str | None = None) -> np.ndarray:
        """``zero_shot_probs`` from image embeddings already computed (e.g. those of a RetrievalIndex)."""
        logits = self.logit_scale * (np.asarray(image_embeddings, np.float32) @ self.class_embeddings(part_type).T)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def labels(self, images: np.ndarray, k: int = 3, part_type: str | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely defect types per image, as (label, probability), most likely first."""
        if not 1 <= k <= len(DEFECT_TYPES):
            raise ShopfloorInputError(f"k={k} is invalid; allowed: 1..{len(DEFECT_TYPES)}.")
        probs = self.zero_shot_probs(images, part_type)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(DEFECT_TYPES[j], float(p[j])) for j in row] for p, row in zip(probs, top)]


# --------------------------------------------------------------------------------------------------
# Text-to-image search over the inspection history
# --------------------------------------------------------------------------------------------------
class RetrievalIndex:
    """Image embeddings with ids (and optional metadata), searched by text: plain numpy, exact.

    Embeddings are stored unit-length in a growing float32 matrix (capacity doubles, so adding one
    inspection at a time costs amortised O(d)); a query is one matrix-vector product and a partial sort.
    For the plant's history (10^4..10^6 parts at d = 128) that is milliseconds; no ANN library needed.

    Parameters
    ----------
    clip : encodes the query text (and images given to ``add_images``).
    """

    def __init__(self, clip: PartsCLIP):
        self.clip = clip
        self._emb = np.zeros((0, clip.embed_dim), np.float32)
        self._n = 0
        self.ids: list[Hashable] = []
        self._metadata: dict[Hashable, dict] = {}

    def __len__(self) -> int:
        return self._n

    @property
    def embeddings(self) -> np.ndarray:
        """The stored unit-length embeddings (len, d), a read-only view."""
        view = self._emb[:self._n]
        view.flags.writeable = False
        return view

    def add(self, ids: Sequence[Hashable], embeddings: np.ndarray, metadata: Sequence[dict] | None = None) -> None:
        """Append image embeddings (n, d) under unique ``ids``; ``metadata`` is one dict per id, kept as given."""
        ids = list(ids)
        emb = np.asarray(embeddings, np.float32)
        if emb.ndim != 2 or emb.shape != (len(ids), self._emb.shape[1]):
            raise ShopfloorInputError(f"embeddings of shape {emb.shape} are invalid for {len(ids)} ids; allowed: "
                                      f"({len(ids)}, {self._emb.shape[1]}).")
        if metadata is not None and len(metadata) != len(ids):
            raise ShopfloorInputError(f"got {len(metadata)} metadata entries for {len(ids)} ids; they must match.")
        if len(set(ids)) != len(ids) or not self._metadata.keys().isdisjoint(ids):
            clash = sorted({repr(i) for i in ids if i in self._metadata or ids.count(i) > 1})
            raise ShopfloorInputError(f"ids {clash[:5]} are already in the index or repeated; allowed: new, unique ids.")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if len(emb) and not np.all(np.isfinite(norms) & (norms > 0)):
            raise ShopfloorInputError("embeddings contain zero or non-finite rows; allowed: finite nonzero vectors.")
        need = self._n + len(ids)
        if need > len(self._emb):
            grown = np.zeros((max(need, 2 * len(self._emb), 256), self._emb.shape[1]), np.float32)
            grown[:self._n] = self._emb[:self._n]
            self._emb = grown
        self._emb[self._n:need] = emb / norms if len(emb) else emb
        self._n = need
        self.ids.extend(ids)
        for i, m in zip(ids, metadata if metadata is not None else [None] * len(ids)):
            self._metadata[i] = {} if m is None else m

    def add_images(self, ids: Sequence[Hashable], images: np.ndarray, metadata: Sequence[dict] | None = None) -> None:
        """Encode uint8 images (n, H, W, 3) and ``add`` them."""
        self.add(ids, self.clip.encode_images(images), metadata)

    def metadata(self, id_: Hashable) -> dict:
        if id_ not in self._metadata:
            raise ShopfloorInputError(f"id {id_!r} is not in the index; allowed: one of the ids added.")
        return self._metadata[id_]

    def query(self, text: str, k: int = 10) -> list[tuple[Hashable, float]]:
        """The ``k`` images most similar to ``text``, as (id, cosine similarity), best first."""
        if not isinstance(text, str) or not text.strip():
            raise ShopfloorInputError(f"query {text!r} is invalid; allowed: a non-empty string.")
        return self.query_embedding(self.clip.encode_texts([text])[0], k)

    def query_embedding(self, embedding: np.ndarray, k: int = 10) -> list[tuple[Hashable, float]]:
        """``query`` with a query embedding (d,) instead of text."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ShopfloorInputError(f"k={k!r} is invalid; allowed: an int >= 1.")
        q = np.asarray(embedding, np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        scores = self._emb[:self._n] @ q
        k = min(int(k), self._n)
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by insertion order: deterministic
        return [(self.ids[i], float(scores[i])) for i in top]
