"""The defect CNN: a compact convolutional classifier of the defect type, with defect heat maps.

Each image is first standardised per channel (``standardize``: lighting scales the channels, and this
undoes it before the first layer). Then five conv-BN-ReLU layers (a stride-1 first layer at full
resolution, which one-pixel scratches and cracks need: a stride-2 stem learned far slower in our
trials), three stride-2 stages, global *max* pooling (a defect is a small local event; averaging over
the part dilutes it, and with average pooling training stalled near 45 % accuracy), and one linear
layer over ``DEFECT_TYPES`` (class 0 = good). Beside the classifier, a 1x1 convolution gives each cell
of the last feature grid a logit per defect type; it is trained against the renderer's defect masks
(``train_defect_cnn.mask_loss``) and is the heat map.

The widths are (16, 32, 96, 128, 128). The stride-1 first layer's activations (64 x 64 x width) are
the memory traffic that bounds the speed on a CPU: at width 32 (the first shipped CNN) ONNX ran ~600
images/s on an AVX2 machine, at 16 ~1,350; see benchmarks/defect_cnn.py. Depth is cheaper where the
grid is smaller, so the shipped network adds residual blocks: one after the second layer (32 x 32, for
fine detail), two after the third (16 x 16) and one after the fourth (8 x 8). That is ~153 M
multiply-adds, and a receptive field that spans the part, which telling a crack from a scratch needs.
The blocks start as the identity, so they were grown into the trained five-layer CNN
(``grow_state_dict``), two at a time, rather than trained from scratch. The shipped network then moved
from 64 px images to 96 px (2.25x the multiply-adds): the camera's noise is per pixel, so a finer
image shows each defect at 1.5x the signal-to-noise ratio, and the faint dents and hairline cracks
that escaped at 64 px are what the escape bar counts.

The layers can also follow a space-to-depth stem (``DefectCNNDims.unshuffle`` = 2): each 2 x 2 block
of pixels becomes one cell of 12 channels, so the 96 px image is seen whole but every grid is half as
wide, for 89 M multiply-adds, ~2.5x the INT8 speed. Started from the 64 px CNN and distilled from the
shipped one (``train_defect_cnn``), it has not yet reached the shipped one's accuracy, so it does not
ship (benchmarks/RESULTS.md, 2026-12-07).

At inference the model can average over turned and mirrored copies of each image (``views``): a part
has no preferred orientation, and the copies' errors are partly independent. The checkpoint carries a
reject threshold calibrated for each view count and a default. The model takes uint8 images
(n, H, W, 3) through ``to_input``; the standardisation and the views live in the model, so the ONNX
graph takes the same [0, 1] input.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from environments.errors import ShopfloorInputError
from environments.parts import DEFECT_TYPES
from environments.plant import reject_flags, station_threshold

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED_CNN = WEIGHTS_DIR / "defect_cnn.pt"
SHIPPED_CNN_64PX = WEIGHTS_DIR / "defect_cnn_64px.pt"
"""The shipped CNN's fourth run, trained on 64 px parts (the shipped one is its fifth, at 96 px): CLIP's image
tower works at 64 px and starts from these convolutions (``clip_model.load_defect_features``). At 64 px the
96 px CNN's features gave CLIP 0.893 zero-shot and 0.766 Recall@10 on the benchmark, against 0.948 and
0.822 from these for the shipped CLIP (benchmarks/RESULTS.md, 2026-12-07). It also serves a 64 px camera (``cnn:<this path>``)."""


@dataclass(frozen=True)
class DefectCNNDims:
    """Architecture: (out_channels, stride, kernel) per conv layer, residual blocks after each layer,
    the input size and the classes."""

    layers: tuple[tuple[int, int, int], ...] = ((16, 1, 3), (32, 2, 3), (96, 2, 3), (128, 2, 3), (128, 1, 3))
    residual_blocks: tuple[int, ...] = (0, 1, 2, 1, 0)
    """Per conv layer, how many ``ResidualBlock``s at its width follow it."""
    image_size: int = 64
    n_classes: int = len(DEFECT_TYPES)
    unshuffle: int = 1
    """Space-to-depth before the first conv layer: each ``unshuffle`` x ``unshuffle`` block of pixels
    becomes one cell with 3 x unshuffle**2 channels (``F.pixel_unshuffle``). Nothing is lost, and every
    grid after it is ``unshuffle`` times smaller on a side, so a finer camera costs no more compute."""

    def __post_init__(self) -> None:
        if len(self.residual_blocks) != len(self.layers) or min(self.residual_blocks, default=0) < 0:
            raise ShopfloorInputError(f"residual_blocks={self.residual_blocks} is invalid; allowed: "
                                      f"{len(self.layers)} ints >= 0, one per conv layer.")
        if self.unshuffle not in (1, 2, 4) or self.image_size % self.unshuffle:
            raise ShopfloorInputError(f"unshuffle={self.unshuffle} is invalid for {self.image_size} px images; "
                                      "allowed: 1, 2 or 4, dividing the image side.")


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers at one width, added to their input (He et al., 2016). The second BN's
    scale starts at zero, so a new block is the identity on the ReLU output before it: a trained CNN
    grown by such blocks (``grow_state_dict``) computes what it did, and training starts from there."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(y)))


#: Test-time views, in the order they are added: (quarter turns, mirrored). A part on the conveyor
#: has no preferred orientation, and training saw all eight (``train_defect_cnn.dihedral``).
VIEW_ORDER = ((0, False), (2, False), (1, False), (3, False), (0, True), (2, True), (1, True), (3, True))
ALLOWED_VIEWS = (1, 2, 4, 8)


def check_views(views: int) -> int:
    if views not in ALLOWED_VIEWS:
        raise ShopfloorInputError(f"views={views} is invalid; allowed: {', '.join(map(str, ALLOWED_VIEWS))} "
                                  "(turned and mirrored copies of each image, averaged).")
    return views


def view(x: torch.Tensor, quarter_turns: int, mirrored: bool) -> torch.Tensor:
    """``torch.rot90(x, quarter_turns, (2, 3))``, then mirrored, from flips and a transpose (ONNX has no rot90)."""
    y = {0: x, 1: x.flip(3).transpose(2, 3), 2: x.flip(2).flip(3), 3: x.transpose(2, 3).flip(3)}[quarter_turns % 4]
    return y.flip(3) if mirrored else y


class DefectCNN(nn.Module):
    """The classifier. In eval mode with ``views`` > 1 it averages its log-probabilities over that many
    turned and mirrored copies of each image (test-time augmentation; the ONNX export includes it)."""

    def __init__(self, dims: DefectCNNDims = DefectCNNDims(), views: int = 1):
        super().__init__()
        self.dims, self.views = dims, check_views(views)
        blocks, c_in = [], 3 * dims.unshuffle ** 2
        for (c_out, stride, k), n_residual in zip(dims.layers, dims.residual_blocks):
            blocks += [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            blocks += [ResidualBlock(c_out) for _ in range(n_residual)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, dims.n_classes)
        # Per-cell defect-type logits on the last feature grid, trained against the renderer's defect
        # masks (see train_defect_cnn); they are also the heat map.
        self.segment = nn.Conv2d(c_in, dims.n_classes - 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (n, n_classes) for images (n, 3, H, W) scaled to [0, 1]; with views, the mean
        log-probabilities over the views (their softmax is the views' normalised geometric mean)."""
        if self.training or self.views == 1:
            return self._class_logits(x)
        copies = torch.cat([view(x, k, m) for k, m in VIEW_ORDER[:self.views]])
        log_probs = F.log_softmax(self._class_logits(copies), dim=1)
        return log_probs.reshape(self.views, x.shape[0], -1).mean(dim=0)

    def _class_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x).amax(dim=(2, 3)))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv layer's grid (n, width, h, w) for images (n, 3, H, W) in [0, 1].

        (Folding the space-to-depth into the first conv, as a 6 x 6 conv of stride 2 over the pixels, gives
        the same numbers without pixel_unshuffle's 6-d transpose in the ONNX graph; measured here, the INT8
        graph ran no faster, 79 ms for that conv against 27 + 57 for conv and transpose per 256 images.)"""
        return self.features(self.stem_input(x))

    def stem_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the first conv layer's weights apply to: the standardised image, space-to-depth by
        ``dims.unshuffle``."""
        x, u = standardize(x), self.dims.unshuffle
        return F.pixel_unshuffle(x, u) if u > 1 else x

    def logits_and_segments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (n, n_classes) and defect-type logits per cell of the last feature grid
        (n, n_classes - 1, h, w; channel k - 1 is defect class k)."""
        f = self.feature_map(x)
        return self.head(f.amax(dim=(2, 3))), self.segment(f)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per image and channel, zero mean and unit variance: a brighter or dimmer light, or a warmer or
    cooler one, scales each channel, and this undoes it before the first layer sees the image."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    return (x - mean) / (std + 1e-3)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1], channels-last in memory."""
    x = torch.from_numpy(np.require(images, requirements=("C", "W"))).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: DefectCNN, reject_thresholds: dict[int, float], meta: dict) -> None:
    """Write ``{"dims", "state_dict", "views", "reject_threshold", "reject_thresholds", "classes", "meta"}``.

    ``views`` is the model's default number of test-time views and ``reject_threshold`` the threshold
    calibrated for it; ``reject_thresholds`` maps each calibrated view count (as a string) to its own.
    ``meta``: training command, seed, metrics.
    """
    torch.save({"dims": asdict(model.dims), "state_dict": model.state_dict(), "views": model.views,
                "reject_threshold": float(reject_thresholds[model.views]),
                "reject_thresholds": {str(v): float(t) for v, t in reject_thresholds.items()},
                "classes": list(DEFECT_TYPES), "meta": meta}, path)


def dims_from_dict(dims: dict) -> DefectCNNDims:
    """``DefectCNNDims`` from a checkpoint's ``dims`` (checkpoints before residual blocks have none)."""
    layers = tuple(tuple(x) for x in dims["layers"])
    return DefectCNNDims(layers=layers, residual_blocks=tuple(dims.get("residual_blocks", (0,) * len(layers))),
                         image_size=dims["image_size"], n_classes=dims["n_classes"],
                         unshuffle=dims.get("unshuffle", 1))


def grow_state_dict(model: DefectCNN, into: DefectCNN) -> dict[str, torch.Tensor]:
    """``into``'s state dict with ``model``'s weights in place: the same conv layers, at least as many
    residual blocks after each; the extra blocks keep their identity initialisation. The image sizes may
    differ: the network is convolutional and max-pools its last grid, so weights trained at one size
    start training at another. A CNN without space-to-depth also starts one with it (``into.dims.unshuffle``
    u > 1): its first layer's weights are spread over the u x u pixels of each cell, divided by u**2, so
    ``into`` first computes what ``model`` would on the image averaged down u times, and learns the finer
    detail from there. Raises ShopfloorInputError when ``model`` does not fit in ``into``."""
    small, big = model.dims, into.dims
    if (small.layers, small.n_classes) != (big.layers, big.n_classes) or any(
            a > b for a, b in zip(small.residual_blocks, big.residual_blocks)) or small.unshuffle not in (
            1, big.unshuffle):
        raise ShopfloorInputError(f"a CNN with layers {small.layers}, residual blocks {small.residual_blocks} and "
                                  f"unshuffle {small.unshuffle} does not fit one with layers {big.layers}, residual "
                                  f"blocks {big.residual_blocks} and unshuffle {big.unshuffle}; allowed: the same layers "
                                  "and classes, no fewer residual blocks after any layer, and the same unshuffle or 1.")

    def starts(dims: DefectCNNDims) -> list[int]:  # index in ``features`` of each conv layer
        out, at = [], 0
        for n_residual in dims.residual_blocks:
            out.append(at)
            at += 3 + n_residual
        return out

    moved = {}
    for a, b, n_residual in zip(starts(small), starts(big), small.residual_blocks):
        for offset in range(3 + n_residual):
            moved[f"features.{a + offset}."] = f"features.{b + offset}."
    state = into.state_dict()
    for key, value in model.state_dict().items():
        prefix = next((p for p in moved if key.startswith(p)), None)
        state[moved[prefix] + key[len(prefix):] if prefix else key] = value.clone()
    if big.unshuffle > small.unshuffle:  # pixel_unshuffle puts channel c's u*u pixels at c*u*u ... c*u*u + u*u - 1
        stem = model.features[0].weight
        state["features.0.weight"] = stem.repeat_interleave(big.unshuffle ** 2, dim=1) / big.unshuffle ** 2
    return state


def load_checkpoint(path: str | os.PathLike | None = None, views: int | None = None) -> tuple[DefectCNN, dict]:
    """Load a defect CNN (the shipped one by default) with ``views`` test-time views (None: the
    checkpoint's default). Returns the model in eval mode and the checkpoint dict, whose
    ``reject_threshold`` is the one calibrated for those views."""
    path = Path(path) if path is not None else SHIPPED_CNN
    if not path.is_file():
        raise ShopfloorInputError(f"defect CNN checkpoint {str(path)!r} does not exist; allowed: a file written by "
                                  "`shopfloor train defect-cnn` (the shipped one is perception/weights/defect_cnn.pt).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = DefectCNN(dims_from_dict(ckpt["dims"]))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # torch raises many types for a foreign file
        raise ShopfloorInputError(f"{str(path)!r} is not a defect CNN checkpoint ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:120]}); allowed: a file written by "
                                  "`shopfloor train defect-cnn`.") from None
    if ckpt.get("classes") != list(DEFECT_TYPES):
        raise ShopfloorInputError(f"{str(path)!r} was trained for classes {ckpt.get('classes')}; this build has "
                                  f"{list(DEFECT_TYPES)}; retrain with `shopfloor train defect-cnn`.")
    thresholds = ckpt.get("reject_thresholds") or {str(ckpt.get("views", 1)): ckpt["reject_threshold"]}
    if views is not None:
        if str(check_views(views)) not in thresholds:
            raise ShopfloorInputError(f"{str(path)!r} has no reject threshold calibrated for {views} views; allowed: "
                                      f"{', '.join(sorted(thresholds, key=int))}.")
        model.views, ckpt = views, dict(ckpt, views=views, reject_threshold=thresholds[str(views)])
    else:
        model.views = check_views(int(ckpt.get("views", 1)))
    model.eval().to(memory_format=torch.channels_last)
    return model, ckpt


# --------------------------------------------------------------------------------------------------
# The inspector the agents and the CLI use
# --------------------------------------------------------------------------------------------------
RUNTIMES = ("torch", "int8")


def check_runtime(runtime: str, name: str = "runtime") -> str:
    if runtime not in RUNTIMES:
        raise ShopfloorInputError(f"{name}={runtime!r} is invalid; allowed: {', '.join(RUNTIMES)} (int8: onnxruntime "
                                  "on the model's INT8 graph, built once and cached).")
    return runtime


@dataclass
class DefectVerdict:
    defect: str
    p_defect: float
    class_probs: dict[str, float] = field(default_factory=dict)


class CNNInspector:
    """Classify part images with a defect CNN; the same interface as the threshold inspector.

    Parameters
    ----------
    path : checkpoint; None loads the shipped weights.
    max_parts : images per plant observation (for ``act``).
    reject_threshold : reject when p(defect) >= this; None uses the threshold calibrated at training
        for these views.
    views : test-time views (1, 2, 4 or 8); None uses the checkpoint's default.
    runtime : "torch", or "int8": the classification runs in onnxruntime on the INT8 graph
        (``export.deployed_int8``, built once and cached), ~3x faster on a few parts at 96 px here, at
        ~0.001 accuracy (benchmarks/defect_cnn.py). Heat maps always come from the torch model.
    """

    def __init__(self, path: str | os.PathLike | None = None, max_parts: int = 1,
                 reject_threshold: float | None = None, batch_size: int = 256, views: int | None = None,
                 runtime: str = "torch"):
        check_runtime(runtime)
        self.model, ckpt = load_checkpoint(path, views)
        self.image_size = self.model.dims.image_size
        self.reject_threshold = float(ckpt["reject_threshold"] if reject_threshold is None else reject_threshold)
        self.max_parts, self.batch_size = max_parts, batch_size
        self.onnx = None
        if runtime == "int8":
            from perception.export import OnnxClassifier, deployed_int8  # export imports this module

            # as many threads as torch has here (one in a Ray actor), and none busy-waiting between ticks
            self.onnx = OnnxClassifier(deployed_int8(path if path is not None else SHIPPED_CNN, self.model),
                                       threads=torch.get_num_threads(), spin=False)

    def reset(self, seed: int | None = None) -> None:
        pass

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ShopfloorInputError(f"images of shape {images.shape} are invalid; allowed: (n, H, W, 3) uint8.")
        if images.shape[1:3] != (self.image_size, self.image_size):
            from PIL import Image

            size = (self.image_size, self.image_size)
            images = np.stack([np.asarray(Image.fromarray(im).resize(size, Image.BILINEAR)) for im in images])
        return images

    @torch.inference_mode()
    def class_probs(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (n, len(DEFECT_TYPES)) for uint8 images (n, H, W, 3); other sizes are resized."""
        images = self._prepare(np.asarray(images, dtype=np.uint8))
        if self.onnx is not None:
            return self.onnx.class_probs(images, self.batch_size)
        out = [F.softmax(self.model(to_input(images[a:a + self.batch_size])), dim=1)
               for a in range(0, len(images), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(DEFECT_TYPES)), np.float32)

    def p_defect(self, images: np.ndarray) -> np.ndarray:
        return 1.0 - self.class_probs(images)[:, 0] if len(images) else np.zeros(0)

    def calibrate(self, good_images: np.ndarray, false_alarm_target: float = 0.01) -> float:
        """Set the reject threshold from known-good parts seen at this station (``metrics.station_threshold``)
        and return it."""
        self.reject_threshold = station_threshold(self.p_defect(good_images), false_alarm_target)
        return self.reject_threshold

    def verdicts(self, images: np.ndarray) -> list[DefectVerdict]:
        """The defect type (``good`` unless p(defect) reaches the threshold) and probabilities per image."""
        out = []
        for probs in self.class_probs(images):
            pd = float(1.0 - probs[0])
            defect = DEFECT_TYPES[int(probs[1:].argmax()) + 1] if pd >= self.reject_threshold else "good"
            out.append(DefectVerdict(defect, pd, {n: float(p) for n, p in zip(DEFECT_TYPES, probs)}))
        return out

    @torch.inference_mode()
    def heatmaps(self, images: np.ndarray) -> np.ndarray:
        """Where the model sees the predicted defect: (n, H, W) float in [0, 1] (zeros for parts it calls good).

        The map is the probability, per cell of the last feature grid, that the cell holds the predicted
        defect type (the head trained against the renderer's masks), upsampled to the image.
        """
        images = self._prepare(np.asarray(images, dtype=np.uint8))
        x = to_input(images)
        logits, segments = self.model.logits_and_segments(x)
        # the verdict's own probabilities: over the views, when there are several
        probs = F.softmax(self.model(x) if self.model.views > 1 else logits, dim=1)
        channel = probs[:, 1:].argmax(dim=1)  # segment channel k is defect class k + 1
        maps = torch.sigmoid(segments[torch.arange(len(images)), channel])
        maps = F.interpolate(maps[:, None], size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
        called_good = (1.0 - probs[:, 0]) < self.reject_threshold
        maps[called_good] = 0.0
        return maps.numpy()

    def act(self, observation: dict) -> np.ndarray:
        """Plant inspection action: 1 = reject, for each of the ``n_parts`` images shown."""
        return reject_flags(observation, self.p_defect, self.max_parts, self.reject_threshold)
