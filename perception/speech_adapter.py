"""A low-rank adapter (LoRA, Hu et al., 2021) that tunes Whisper to the plant's spoken commands.

Why. tiny.en does not hear some spoken numbers as espeak-ng says them: "sixty nine degrees" comes out
"60", whatever the decoding (benchmarks/RESULTS.md, issue 5). The evidence is in the audio; the weights
map it to the wrong tokens. Fine-tuning on synthetic commands fixes the mapping, but a fine-tuned
tiny.en is 150 MB. A rank-``r`` update ``W + (alpha / r) * up @ down`` of the chosen Linear layers
learns the same correction in about 1 MB, and it ships beside the code.

Where. Every Linear layer of the decoder (self-attention, cross-attention, MLP) and of the last
``encoder_blocks`` encoder blocks; the token embedding (which is also the output projection) stays as
it is, so the vocabulary keeps its meaning for free text.

Use. Training wraps the layers with ``torch.nn.utils.parametrize`` (``add_lora``) so only the deltas
learn; ``save_adapter`` writes the deltas; ``apply_adapter`` adds them into a loaded model's weights
once, so inference runs at the speed of the plain model (and int8 quantization sees the sum).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from environments.errors import ShopfloorInputError

FORMAT = "shopfloor-whisper-lora/1"
SHIPPED_ADAPTER = Path(__file__).resolve().parent / "weights" / "speech_adapter.pt"


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    encoder_blocks: int = 2  # the last blocks of the encoder that adapt; the decoder adapts whole

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or self.encoder_blocks < 0:
            raise ShopfloorInputError(f"adapter {self} is invalid; allowed: rank >= 1, alpha > 0, encoder_blocks >= 0.")


class LowRankDelta(nn.Module):
    """A weight parametrization: ``weight + scale * up @ down``. ``up`` starts at zero, so training starts
    from the plain model."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float):
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.up @ self.down).to(weight.dtype)


def adapted_layers(model: nn.Module, cfg: LoraConfig) -> dict[str, nn.Linear]:
    """The Linear layers the adapter changes, by their name in ``model.state_dict()`` (without ``.weight``)."""
    first = len(model.encoder.blocks) - cfg.encoder_blocks
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if name.startswith("decoder.blocks.") or (name.startswith("encoder.blocks.")
                                                  and int(name.split(".")[2]) >= first):
            out[name] = module
    return out


def add_lora(model: nn.Module, cfg: LoraConfig, generator_seed: int = 0) -> list[nn.Parameter]:
    """Freeze ``model`` and give each adapted layer a trainable low-rank delta. Returns the new parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(generator_seed)
    params = []
    for linear in adapted_layers(model, cfg).values():
        delta = LowRankDelta(linear.out_features, linear.in_features, cfg.rank, cfg.alpha)
        parametrize.register_parametrization(linear, "weight", delta)
        params += [delta.down, delta.up]
    return params


def save_adapter(path: str | os.PathLike, model: nn.Module, cfg: LoraConfig, meta: dict) -> None:
    """Write the trained deltas of a model that ``add_lora`` wrapped (and nothing of the base weights)."""
    deltas = {}
    for name, linear in adapted_layers(model, cfg).items():
        delta = linear.parametrizations.weight[0]
        deltas[name] = {"down": delta.down.detach().clone(), "up": delta.up.detach().clone()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "dims": asdict(model.dims), "lora": asdict(cfg), "deltas": deltas, "meta": meta},
               path)


def read_adapter(path: str | os.PathLike) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a foreign file
        raise ShopfloorInputError(f"{str(path)!r} is not a speech adapter ({type(e).__name__}); allowed: a file "
                                  "written by `shopfloor train speech`.") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ShopfloorInputError(f"{str(path)!r} is not a speech adapter; allowed: a {FORMAT} file written by "
                                  "`shopfloor train speech`.")
    return blob


def fits(blob: dict, model: nn.Module) -> bool:
    """Was the adapter trained on a model of this shape (tiny.en's, for the shipped one)?"""
    return blob["dims"] == asdict(model.dims)


def apply_adapter(model: nn.Module, path: str | os.PathLike, blob: dict | None = None) -> nn.Module:
    """Add the adapter's deltas into ``model``'s weights, in place; returns ``model``. ``blob``: the file's
    contents when the caller has read them already (``read_adapter``)."""
    blob = blob if blob is not None else read_adapter(path)
    if not fits(blob, model):
        raise ShopfloorInputError(f"speech adapter {str(path)!r} was trained for Whisper dims {blob['dims']}, not "
                                  f"{asdict(model.dims)}; allowed: the model it was trained on (tiny.en).")
    cfg = LoraConfig(**blob["lora"])
    layers = adapted_layers(model, cfg)
    with torch.no_grad():
        for name, delta in blob["deltas"].items():
            weight = layers[name].weight
            weight += (cfg.alpha / cfg.rank) * (delta["up"] @ delta["down"]).to(weight.dtype)
    return model
