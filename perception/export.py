"""Deploy the inspection models: ONNX export, onnxruntime inference and INT8 post-training quantization.

The defect CNN's ONNX graph takes float images (n, 3, H, W) in [0, 1] with a dynamic batch and returns
logits. ``deployed_int8`` builds the INT8 graph of a checkpoint once and keeps it in a cache directory, so
the plant's InspectionAgent (``CNNInspector(runtime="int8")``) pays for the build on the first run only.
``cached_int8`` does the same for any one-tensor module, such as CLIP's image tower
(``clip_model.PartsCLIP(image_runtime="int8")``).
INT8 uses onnxruntime's static quantization (QDQ, per-channel weights, activation ranges calibrated
on rendered parts), the usual route for a CNN on a CPU. Whether it pays off depends on the CPU: on
one without VNNI instructions the int8 convolutions can be slower than the fp32 ones. The benchmark
(benchmarks/defect_cnn.py) measures FP32 torch, FP32 ONNX and INT8 ONNX side by side, and the
runtime uses whichever format the caller names.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from environments.errors import ShopfloorInputError
from perception.datasets import render_dataset
from perception.defect_cnn import DefectCNN


def export_module(module: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike, input_name: str = "images",
                  output_name: str = "logits", opset: int = 17) -> Path:
    """Write an eval-mode module of one tensor as ONNX, its first axis dynamic. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():  # the TorchScript exporter is deprecated but still the
        warnings.simplefilter("ignore")                 # simplest for a plain CNN
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "n"}, output_name: {0: "n"}}, opset_version=opset,
                          dynamo=False)
    return path


def ort_session(path: str | os.PathLike, threads: int = 2, spin: bool = True):
    """An onnxruntime CPU session. threads: intra-op threads; spin: whether idle threads busy-wait for
    work, which is fastest alone on the cores and steals them from other processes (the plant's other actors)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ShopfloorInputError(f"ONNX model {str(path)!r} does not exist; allowed: a file written by export_onnx.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ShopfloorInputError(f"{str(path)!r} is not a valid ONNX model ({str(e).splitlines()[0][:120]}).") from None


def export_onnx(model: DefectCNN, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write the model as ONNX with a dynamic batch axis. Returns the path."""
    size = model.dims.image_size
    model = model.eval().to(memory_format=torch.contiguous_format)
    path = export_module(model, torch.rand(2, 3, size, size), path, opset=opset)
    model.to(memory_format=torch.channels_last)
    return path


class _Calibration:
    """onnxruntime CalibrationDataReader over a few batches of the graph's inputs (n, 3, H, W)."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 64):
        self.batches = iter([{"images": inputs[a:a + batch_size]} for a in range(0, len(inputs), batch_size)])

    def get_next(self):
        return next(self.batches, None)


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration_images: np.ndarray,
                  to_input: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """Static INT8 quantization of an exported model, calibrated on uint8 images (n, H, W, 3), which
    ``to_input`` makes the graph's float input (n, 3, H, W); by default scaled to [0, 1], as the defect
    CNN's graph takes them.

    A space-to-depth stem (``DefectCNNDims.unshuffle`` > 1: the first conv sees more than 3 channels)
    stays in float. On CPUs without VNNI the int8 kernels add pairs of uint8 x int8 products in 16 bits,
    which saturate on the stem's 12-channel standardised input: quantized, the space-to-depth CNN agreed
    with itself in float on 0.981 of parts and its AUROC fell from 0.998 to 0.985; with the stem in float,
    0.998 and 0.998, and the graph ran faster (1,042 img/s against 993, AMD EPYC, 2026-12-07). A 3-channel
    stem is quantized: for the shipped CNN a float stem cost speed (460 -> 334 img/s) and gained nothing.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    pre = out_path.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre))
    graph = onnx.load(str(pre)).graph
    stem = next(n for n in graph.node if n.op_type == "Conv")
    weights = {t.name: t for t in graph.initializer}
    stem_channels = numpy_helper.to_array(weights[stem.input[1]]).shape[1] if stem.input[1] in weights else 3
    inputs = (to_input or _to_nchw)(calibration_images)
    quantize_static(str(pre), str(out_path), _Calibration(inputs), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=[stem.name] if stem_channels > 3 else [])
    pre.unlink(missing_ok=True)
    return out_path


#: Seed of the rendered parts that calibrate a deployed INT8 graph (no training, validation or test set uses it).
CALIBRATION_SEED = 20_261_206


def cache_dir() -> Path:
    """Where deployed graphs are kept: ``$SHOPFLOOR_CACHE`` or ``~/.cache/shopfloor``."""
    return Path(os.environ.get("SHOPFLOOR_CACHE") or Path.home() / ".cache" / "shopfloor")


def deployed_int8(checkpoint: str | os.PathLike, model: DefectCNN, n_calibration: int = 128) -> Path:
    """The INT8 ONNX graph of ``model`` (loaded from ``checkpoint``, at its views), built on first use and
    cached under ``cache_dir()`` by the checkpoint's hash and the views. The calibration parts are
    rendered with a fixed seed, so a rebuild gives the same graph."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:16]
    return cached_int8(f"defect_cnn-{digest}-v{model.views}", lambda path: export_onnx(model, path),
                       model.dims.image_size, n_calibration)


def cached_int8(name: str, export: Callable[[Path], Path], image_size: int, n_calibration: int = 128,
                to_input: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """The INT8 ONNX graph of a model of images (n, 3, image_size, image_size), built on first use and cached
    under ``cache_dir()`` as ``name`` (which must say what the weights are: their hash) and the onnxruntime
    version, whose quantizer built it. ``export(path)`` writes the float graph (``export_onnx``,
    ``export_module``); ``to_input``: see ``quantize_int8``. The calibration parts are rendered with a
    fixed seed at ``image_size``, so a rebuild gives the same graph."""
    import onnxruntime

    out = cache_dir() / "onnx" / f"{name}-ort{onnxruntime.__version__}.int8.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    calibration = render_dataset(n_calibration, image_size, CALIBRATION_SEED, "randomized", workers=1)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # built aside, then renamed: two actors may race
        fp32 = export(Path(tmp) / "fp32.onnx")
        os.replace(quantize_int8(fp32, Path(tmp) / "int8.onnx", calibration.images, to_input), out)
    return out


def _to_nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


class OnnxClassifier:
    """Class probabilities from an ONNX defect CNN (FP32 or INT8) with onnxruntime on the CPU."""

    def __init__(self, path: str | os.PathLike, threads: int = 2, spin: bool = True):
        """threads, spin: see ``ort_session``."""
        self.session = ort_session(path, threads, spin)

    def class_probs(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = []
        for a in range(0, len(images), batch_size):
            logits = self.session.run(None, {"images": _to_nchw(images[a:a + batch_size])})[0]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out.append(e / e.sum(axis=1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, 7), np.float32)
