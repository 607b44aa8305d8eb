"""The defect CNN: reproducible training, the shipped weights against the bars at small scale, heat maps,
ONNX and INT8 export, bad image files, `shopfloor inspect`, and the agent in a plant run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agents.runtime import operator_log, start_local_run
from environments.errors import ShopfloorInputError
from environments.parts import PartSpec, render_part
from environments.scenario import Scenario
from perception.datasets import EVAL_SHIFT, render_dataset
from perception.defect_cnn import (SHIPPED_CNN, CNNInspector, DefectCNN, DefectCNNDims, grow_state_dict,
                                   load_checkpoint)
from perception.export import OnnxClassifier, export_onnx, quantize_int8
from perception.image_io import load_image
from perception.metrics import inspection_metrics, threshold_for_false_alarm
from perception.train_defect_cnn import DefectCNNTrainConfig, mask_loss, predict_probs, train_defect_cnn

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 777_001  # not a training, validation or benchmark dataset seed
#: the camera resolution the shipped CNN was trained for (the plant's inspection.image_size default)
SHIPPED_SIZE = load_checkpoint()[0].dims.image_size


@pytest.fixture(scope="module")
def held_out():
    return render_dataset(700, SHIPPED_SIZE, HELD_OUT_SEED, EVAL_SHIFT, keep_masks=True)


def test_training_is_reproducible_and_writes_metrics(tmp_path):
    # narrow layers: what is under test is the seed and the files, not the default width (~10 s less)
    cfg = DefectCNNTrainConfig(seed=3, channels=(8, 16, 24, 32, 32), n_train=256, n_val=64, epochs=1,
                               batch_size=64, workers=1)
    m1 = train_defect_cnn(cfg, tmp_path / "a.pt")
    train_defect_cnn(cfg, tmp_path / "b.pt")
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert a["reject_threshold"] == b["reject_threshold"]
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    metrics = json.loads((tmp_path / "a.metrics.json").read_text())
    assert metrics["config"]["seed"] == 3 and len(metrics["history"]) == 1
    assert set(m1["validation"]) >= {"accuracy", "defect_escape_rate", "false_alarm_rate", "auroc", "per_class"}
    # a threshold calibrated for every test-time view count; the default's is the checkpoint's own
    assert a["views"] == cfg.views == 4 and set(a["reject_thresholds"]) == {"1", "2", "4", "8"}
    assert a["reject_threshold"] == a["reject_thresholds"]["4"] == m1["validation"]["reject_threshold"]
    assert set(m1["validation_by_views"]) == {"1", "2", "4", "8"}
    inspector = CNNInspector(tmp_path / "a.pt", views=2)
    assert inspector.model.views == 2
    assert inspector.reject_threshold == a["reject_thresholds"]["2"]
    with pytest.raises(ShopfloorInputError, match="views=3 is invalid"):
        CNNInspector(tmp_path / "a.pt", views=3)


def test_chosen_layer_widths_are_trained_saved_and_loaded(tmp_path):
    cfg = DefectCNNTrainConfig(seed=1, channels=(8, 16, 24, 32, 32), n_train=128, n_val=32, epochs=1,
                               batch_size=64, workers=1)
    train_defect_cnn(cfg, tmp_path / "narrow.pt")
    model, _ = load_checkpoint(tmp_path / "narrow.pt")
    assert [c for c, _, _ in model.dims.layers] == [8, 16, 24, 32, 32]
    assert model.features[0].out_channels == 8 and model.head.in_features == 32
    with pytest.raises(ShopfloorInputError, match="channels"):
        DefectCNNTrainConfig(channels=(8, 16))


def test_training_on_from_a_checkpoint_starts_from_its_weights(tmp_path):
    small = dict(channels=(8, 16, 24, 32, 32), residual_blocks=(0, 0, 0, 0, 0), n_train=128, n_val=32, epochs=1,
                 batch_size=64, workers=1)
    train_defect_cnn(DefectCNNTrainConfig(seed=1, **small), tmp_path / "first.pt", command="shopfloor train defect-cnn A")
    # a learning rate near zero: the second run must end where the first did, not at a fresh initialisation
    cfg = DefectCNNTrainConfig(seed=2, lr=1e-7, init=str(tmp_path / "first.pt"), **small)
    train_defect_cnn(cfg, tmp_path / "second.pt")
    train_defect_cnn(DefectCNNTrainConfig(seed=2, lr=1e-7, **small), tmp_path / "fresh.pt")
    first, second, fresh = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("first", "second", "fresh"))
    conv = "features.0.weight"
    assert torch.allclose(second["state_dict"][conv], first["state_dict"][conv], atol=1e-5)
    assert not torch.allclose(fresh["state_dict"][conv], first["state_dict"][conv], atol=1e-2)
    assert second["meta"]["init"]["command"] == "shopfloor train defect-cnn A"
    with pytest.raises(ShopfloorInputError, match="layers"):
        train_defect_cnn(DefectCNNTrainConfig(seed=2, init=str(tmp_path / "first.pt"), n_train=64, n_val=16,
                                              epochs=1, workers=1), tmp_path / "wide.pt")
    # grown by a residual block after the third layer: the fourth layer's conv moves one place down
    cfg = DefectCNNTrainConfig(**dict(small, seed=2, lr=1e-7, init=str(tmp_path / "first.pt"),
                                      residual_blocks=(0, 0, 1, 0, 0)))
    train_defect_cnn(cfg, tmp_path / "grown.pt")
    grown = torch.load(tmp_path / "grown.pt", weights_only=True)
    assert tuple(grown["dims"]["residual_blocks"]) == (0, 0, 1, 0, 0)
    assert torch.allclose(grown["state_dict"]["features.10.weight"], first["state_dict"]["features.9.weight"], atol=1e-5)


def test_residual_blocks_grow_a_trained_cnn_without_changing_what_it_computes():
    torch.manual_seed(0)
    layers = ((8, 1, 3), (16, 2, 3), (24, 2, 3), (32, 2, 3), (32, 1, 3))
    small = DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(0, 1, 0, 0, 0)))
    images = torch.rand(16, 3, 64, 64)
    small.train()
    for _ in range(3):  # BN statistics and the block's weights away from their initial values
        small(images)
    with torch.no_grad():
        small.features[6].bn2.weight.uniform_(0.5, 1.5)
    small.eval()
    big = DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(1, 1, 2, 0, 1))).eval()
    big.load_state_dict(grow_state_dict(small, big))
    with torch.no_grad():
        assert torch.allclose(small(images), big(images), atol=1e-5)
        big.features[3].bn2.weight.fill_(1.0)  # a new block, trained away from the identity, changes the output
        assert not torch.allclose(small(images), big(images), atol=1e-3)
    with pytest.raises(ShopfloorInputError, match="no fewer residual blocks"):
        grow_state_dict(big, small)
    # a finer camera: the same weights start a network for 96 px images, which computes what the small
    # one computes on them (the network is convolutional and max-pools its last grid)
    finer = DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(0, 1, 0, 0, 0), image_size=96)).eval()
    finer.load_state_dict(grow_state_dict(small, finer))
    fine_images = torch.rand(4, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(small(fine_images), finer(fine_images), atol=1e-5)
    with pytest.raises(ShopfloorInputError, match="same layers and classes"):
        grow_state_dict(small, DefectCNN(DefectCNNDims(layers=layers[:4] + ((48, 1, 3),),
                                                       residual_blocks=(0, 1, 0, 0, 0))))
    with pytest.raises(ShopfloorInputError, match="residual_blocks"):
        DefectCNNDims(residual_blocks=(0, 1))


def test_space_to_depth_starts_from_a_cnn_without_it():
    """Grown into unshuffle 2, a trained CNN's first layer computes on each 2 x 2 cell what it computed on
    the image averaged down twice: the finer network starts where the coarser one stood."""
    torch.manual_seed(0)
    layers = ((8, 1, 3), (16, 2, 3), (24, 2, 3), (32, 2, 3), (32, 1, 3))
    coarse = DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(0, 1, 0, 0, 0), image_size=48)).eval()
    fine = DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(0, 1, 0, 0, 0), image_size=96, unshuffle=2)).eval()
    assert fine.features[0].in_channels == 12
    fine.load_state_dict(grow_state_dict(coarse, fine))
    images = torch.rand(4, 3, 96, 96)
    with torch.no_grad():
        # standardising commutes with 2 x 2 averaging up to the spread, which the first BN's scale absorbs
        # only approximately, so compare the first layer's output on the averaged, standardised image
        from perception.defect_cnn import standardize
        expected = coarse.features[0](torch.nn.functional.avg_pool2d(standardize(images), 2))
        assert torch.allclose(fine.features[0](fine.stem_input(images)), expected, atol=1e-5)
        assert fine(images).shape == (4, 7)
    with pytest.raises(ShopfloorInputError, match="the same unshuffle or 1"):
        grow_state_dict(fine, DefectCNN(DefectCNNDims(layers=layers, residual_blocks=(0, 1, 0, 0, 0), image_size=96,
                                                      unshuffle=4)))
    with pytest.raises(ShopfloorInputError, match="unshuffle=3 is invalid"):
        DefectCNNDims(image_size=96, unshuffle=3)
    with pytest.raises(ShopfloorInputError, match="unshuffle=4 is invalid for 90 px"):
        DefectCNNDims(image_size=90, unshuffle=4)


def test_distillation_trains_on_the_teachers_verdicts(tmp_path, monkeypatch):
    from perception.train_defect_cnn import distillation_loss

    monkeypatch.setenv("SHOPFLOOR_CACHE", str(tmp_path / "cache"))  # the teacher's INT8 graph is built here
    tiny = dict(channels=(8, 16, 24, 32, 32), residual_blocks=(0, 0, 0, 0, 0), n_train=128, n_val=32, epochs=1,
                batch_size=64, workers=1)
    train_defect_cnn(DefectCNNTrainConfig(seed=1, **tiny), tmp_path / "teacher.pt")
    cfg = DefectCNNTrainConfig(seed=2, lr=1e-7, init=str(tmp_path / "teacher.pt"), teacher=str(tmp_path / "teacher.pt"),
                               teacher_views=2, unshuffle=2, **tiny)
    metrics = train_defect_cnn(cfg, tmp_path / "student.pt")
    assert metrics["teacher_s"] > 0 and metrics["config"]["teacher"] == str(tmp_path / "teacher.pt")
    assert len(list((tmp_path / "cache" / "onnx").glob("*-v2-*.int8.onnx"))) == 1  # at the teacher's views
    student, _ = load_checkpoint(tmp_path / "student.pt")
    teacher, _ = load_checkpoint(tmp_path / "teacher.pt")
    assert student.dims.unshuffle == 2 and student.dims.image_size == 96
    assert torch.allclose(student.features[0].weight, teacher.features[0].weight.repeat_interleave(4, dim=1) / 4,
                          atol=1e-4)
    # the loss is zero where the model's verdict is the teacher's and grows as they part
    target = torch.softmax(torch.randn(16, 7), dim=1)
    assert float(distillation_loss(target.log(), target)) == pytest.approx(0.0, abs=1e-5)
    assert float(distillation_loss(torch.zeros(16, 7), target)) > 0.05
    with pytest.raises(ShopfloorInputError, match="teacher"):
        train_defect_cnn(DefectCNNTrainConfig(seed=2, image_size=64, unshuffle=2, teacher=str(tmp_path / "teacher.pt"),
                                              **tiny),
                         tmp_path / "wrong_size.pt")
    with pytest.raises(ShopfloorInputError, match="distill_weight"):
        DefectCNNTrainConfig(distill_weight=1.5)
    with pytest.raises(ShopfloorInputError, match="val_shift='dusk' is invalid; allowed: randomized, randomized_harsh"):
        DefectCNNTrainConfig(val_shift="dusk")
    # INT8: the student's space-to-depth stem stays in float (int16 pair sums saturate there without
    # VNNI); the teacher's 3-channel stem is quantized like every other conv
    calibration = render_dataset(32, 96, 5, "randomized", workers=1).images
    for name, model, float_stem in (("student", student, True), ("teacher", teacher, False)):
        int8 = quantize_int8(export_onnx(model, tmp_path / f"{name}.onnx"), tmp_path / f"{name}.int8.onnx", calibration)
        assert _first_conv_weights_are_float(int8) == float_stem, name


def _first_conv_weights_are_float(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    stem = next(node for node in graph.node if node.op_type == "Conv")
    return made_by.get(stem.input[1]) != "DequantizeLinear"


@pytest.fixture(scope="module")
def shipped_metrics(held_out):
    """The shipped CNN on the held-out parts at its default 4 views, computed once for the tests below (at
    4 views in torch, 700 parts take ~25 s). Returns (checkpoint, metrics, class probabilities)."""
    model, ckpt = load_checkpoint()
    probs = predict_probs(model, held_out.images)
    return ckpt, inspection_metrics(held_out.labels, probs, ckpt["reject_threshold"]), probs


def test_shipped_weights_hold_their_measured_quality(shipped_metrics):
    assert SHIPPED_CNN.stat().st_size <= 10 * 2**20
    ckpt, m, _ = shipped_metrics
    assert "shopfloor train defect-cnn" in ckpt["meta"]["command"] and ckpt["meta"]["complete"]
    # measured on these 700 parts (96 px) at the default 4 views: accuracy 0.984, escape 0.008 at false
    # alarm 0.036, AUROC 0.9979 (benchmarks/RESULTS.md has the 5,000-part figures: false alarm 0.026
    # there); floors a little below, to catch regressions. The false-alarm floor is loose: these parts
    # hold ~100 good ones, so one more false alarm moves it by 0.01, and the threshold is calibrated on
    # milder (domain-randomised) light.
    assert ckpt["views"] == 4
    assert m["accuracy"] >= 0.975, m["accuracy"]
    assert m["auroc"] >= 0.996, m["auroc"]
    assert m["defect_escape_rate"] <= 0.02 and m["false_alarm_rate"] <= 0.06, m


def test_shipped_weights_meet_the_quality_bars_at_small_scale(shipped_metrics):
    _, m, _ = shipped_metrics
    # the bars on 5,000 parts are accuracy >= 0.97, escape <= 0.005 at false alarm <= 0.02 (benchmarks/:
    # 0.988 and 0.0032 at 4 views); 700 parts carry ~100 good ones, so the threshold for 2 % false alarms
    # rests on two parts and the margins here are wider. Measured at 4 views: accuracy 0.984, escape at
    # 2 % false alarm 0.0097 (6 of 617 defects).
    assert m["accuracy"] >= 0.97, m["accuracy"]
    assert m["escape_at_false_alarm"]["defect_escape_rate"] <= 0.015, m["escape_at_false_alarm"]


def test_a_station_sets_its_threshold_on_its_own_known_good_parts():
    """Commissioning: known-good parts under the station's (dim, noisy) light set the reject threshold."""
    good = render_dataset(1000, SHIPPED_SIZE, HELD_OUT_SEED + 1, EVAL_SHIFT, defect="good")
    assert (good.labels == 0).all() and len(good) == 1000
    inspector = CNNInspector(views=1)
    stored = inspector.reject_threshold
    commissioning, later = good.images[:600], good.images[600:]
    threshold = inspector.calibrate(commissioning, false_alarm_target=0.01)
    assert inspector.reject_threshold == threshold > stored
    assert (inspector.p_defect(commissioning) >= threshold).mean() <= 0.01
    # the station's next good parts, measured: 0.018 false alarms (7 of 400) against 0.057 of all 1,000 at
    # the threshold stored at training, set under the training light
    later_alarms = sum(v.defect != "good" for v in inspector.verdicts(later)) / len(later)
    assert later_alarms <= 0.03 and (CNNInspector(views=1).p_defect(later) >= stored).mean() > 2 * later_alarms
    with pytest.raises(ShopfloorInputError, match=r"50 good parts cannot set a 1.0% .*allowed: at least 100"):
        inspector.calibrate(good.images[:50], false_alarm_target=0.01)
    with pytest.raises(ShopfloorInputError, match="false_alarm_target=0 is invalid"):
        inspector.calibrate(good.images, false_alarm_target=0)


def test_mask_loss_rewards_the_defect_channel_where_the_mask_is():
    masks = torch.zeros(2, 1, 64, 64)
    masks[0, 0, 8:12, 40:44] = 1.0  # a defect in cell (1, 5) of the 8 x 8 map
    labels = torch.tensor([2, 0])  # a crack, and a good part
    right = torch.full((2, 6, 8, 8), -6.0)
    right[0, 1, 1, 5] = 6.0  # crack channel (class 2 -> channel 1), at the defect's cell
    wrong_channel = right.clone()
    wrong_channel[0, 1, 1, 5], wrong_channel[0, 3, 1, 5] = -6.0, 6.0
    wrong_place = right.clone()
    wrong_place[0, 1, 1, 5], wrong_place[0, 1, 6, 2] = -6.0, 6.0
    assert mask_loss(right, masks, labels) < 0.1 * mask_loss(wrong_channel, masks, labels)
    assert mask_loss(right, masks, labels) < 0.1 * mask_loss(wrong_place, masks, labels)


def test_metrics_threshold_gives_at_most_the_target_false_alarms():
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    thr = threshold_for_false_alarm(scores, 0.02)
    assert (scores >= thr).mean() <= 0.02 and (scores >= np.nextafter(thr, -1) - 1e-3).mean() > 0.02


def test_heat_map_points_at_the_defect(held_out, shipped_metrics):
    inspector = CNNInspector()
    probs = shipped_metrics[2]
    assert np.allclose(probs[:8], inspector.class_probs(held_out.images[:8]), atol=1e-5)  # the inspector's own
    found = (held_out.labels > 0) & (probs.argmax(1) == held_out.labels)
    found &= held_out.masks.reshape(len(held_out), -1).sum(1) >= 12  # defects big enough to localise
    maps = inspector.heatmaps(held_out.images[found][:60])
    masks = held_out.masks[found][:60]
    assert maps.shape == masks.shape and maps.min() >= 0 and maps.max() <= 1
    inside = np.array([m[k].mean() for m, k in zip(maps, masks)])
    outside = np.array([m[~k].mean() for m, k in zip(maps, masks)])
    assert (inside > outside).mean() >= 0.85, (inside > outside).mean()  # measured: 0.98
    called_good = 1.0 - probs[:, 0] < inspector.reject_threshold
    good = held_out.images[called_good][:5]
    assert len(good) and np.all(inspector.heatmaps(good) == 0)  # nothing to show on a part called good


def test_onnx_and_int8_agree_with_torch(tmp_path, held_out):
    model, _ = load_checkpoint(views=1)
    path = export_onnx(model, tmp_path / "cnn.onnx")
    images = held_out.images[:200]
    p_torch = predict_probs(model, images)
    p_onnx = OnnxClassifier(path).class_probs(images)
    assert np.abs(p_torch - p_onnx).max() < 1e-4
    int8 = quantize_int8(path, tmp_path / "cnn.int8.onnx", held_out.images[200:328])
    p_int8 = OnnxClassifier(int8).class_probs(images)
    assert int8.stat().st_size < 0.5 * path.stat().st_size
    assert (p_int8.argmax(1) == p_torch.argmax(1)).mean() >= 0.95
    # with four quarter turns averaged, the graph holds the turns, and a turned part scores as it did
    model.views = 4
    p_views = predict_probs(model, images[:64])
    assert np.abs(OnnxClassifier(export_onnx(model, tmp_path / "views.onnx")).class_probs(images[:64]) - p_views).max() < 1e-4
    assert np.abs(predict_probs(model, np.ascontiguousarray(np.rot90(images[:64], 1, axes=(1, 2)))) - p_views).max() < 1e-4
    model.views = 1
    assert np.abs(predict_probs(model, np.ascontiguousarray(np.rot90(images[:64], 1, axes=(1, 2)))) - p_torch[:64]).max() > 1e-3


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {"empty": tmp / "empty.png", "text": tmp / "notes.png", "truncated": tmp / "truncated.png",
             "huge": tmp / "huge.png"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    part = render_part(PartSpec("gear", "steel", defect="crack"), seed=1, size=128).image
    Image.fromarray(part).save(tmp / "whole.png")
    files["truncated"].write_bytes((tmp / "whole.png").read_bytes()[:700])
    Image.new("L", (8000, 6250)).save(files["huge"])  # 50 megapixels
    return files


@pytest.mark.parametrize("kind, words", [("empty", "empty"), ("text", "not an image"), ("truncated", "corrupt"),
                                         ("huge", "megapixels")])
def test_bad_image_files_get_a_one_line_error(tmp_path, kind, words):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(ShopfloorInputError) as err:
        load_image(path)
    message = str(err.value)
    assert words in message and "allowed" in message and "\n" not in message


def _inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", "inspect", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_inspect_cli_reports_each_file_and_exits_2_on_bad_ones(tmp_path):
    bad = _bad_files(tmp_path)
    crack = tmp_path / "crack.png"
    good = tmp_path / "good.jpg"
    Image.fromarray(render_part(PartSpec("plate", "brass", defect="crack"), seed=5, size=SHIPPED_SIZE).image).save(crack)
    # another size than the CNN's: the command fits it to the CNN's input
    Image.fromarray(render_part(PartSpec("cap", "plastic", "blue"), seed=6, size=128).image).save(good, quality=95)
    files = [str(crack), str(bad["text"]), str(good), str(bad["huge"])]
    res = _inspect(*files, "--json")
    assert res.returncode == 2, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    assert rows[0]["defect"] == "crack" and rows[0]["p_defect"] > 0.5
    assert rows[2]["defect"] == "good" and rows[2]["p_defect"] < 0.5
    for row in (rows[0], rows[2]):
        assert set(row) == {"file", "defect", "p_defect", "clip_labels"} and len(row["clip_labels"]) == 3
        assert all(isinstance(label, str) and 0 <= score <= 1 for label, score in row["clip_labels"])
    assert "not an image" in rows[1]["error"] and "megapixels" in rows[3]["error"]
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert "Traceback" not in res.stderr
    # on the INT8 graphs, two files a batch: the same verdicts, in the same order
    res = _inspect(*files, "--json", "--runtime", "int8", "--batch", "2")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 2, res.stderr
    int8_rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in int8_rows] == [r["file"] for r in rows]
    for row, int8_row in zip(rows, int8_rows):
        assert row.get("defect") == int8_row.get("defect") and ("error" in row) == ("error" in int8_row)
        assert abs(row.get("p_defect", 0) - int8_row.get("p_defect", 0)) < 0.1
    res = _inspect(str(crack), "--runtime", "gpu")
    assert res.returncode == 2 and "runtime='gpu' is invalid" in res.stderr and "Traceback" not in res.stderr


def test_inspection_agent_in_a_run_catches_defects_and_answers_a_query():
    sc = Scenario.model_validate({
        "name": "inspect", "duration_h": 2.0, "fleet": {"road": {"n_nodes": 36, "size_km": 5}, "n_vehicles": 2},
        "line": {"base_defect_hazard": 0.15, "rework_fraction": 0.3},  # enough defects in 2 h; reworked parts return
        "agents": {"inspection": {"policy": "cnn", "clip": "shipped"}},
        "events": [{"type": "voice", "at_min": 100, "query": "parts with a crack"}],
    })
    run, board = start_local_run(sc, 4, None)
    while not run.done:
        run.step()
    kpis = run.kpis()
    verdicts = board.read(["perception/verdict"], 0)
    answers = board.read(["answer/parts"], 0)
    log = operator_log(board.read(["event/voice", "command/*", "veto/voice", "answer/parts"], 0))
    board.close()
    # the report's operator table: the search, and the answer the InspectionAgent gave a tick later
    assert [row["query"] for row in log] == ["parts with a crack"] and log[0]["answer"] == answers[0].value
    assert kpis["deadline_misses"] == 0
    defective = sum(1 for true, _ in run.inspections if true)
    assert defective >= 5
    # nominal light: the shipped CNN escapes ~0.18 of defects at ~0.01 false alarms (benchmarks/defect_cnn.py)
    assert kpis["defect_escape_rate"] <= 0.4 and kpis["false_alarm_rate"] <= 0.1, kpis
    assert {v.value["defect"] for v in verdicts if v.value["reject"]} <= {
        "scratch", "crack", "dent", "stain", "missing_hole", "burr"}
    assert len(answers) == 1
    answer = answers[0].value
    assert answer["text"] == "parts with a crack" and len(answer["results"]) == 10
    seen_by_then = [v for v in verdicts if v.tick <= answers[0].tick]  # the index holds every inspection so far
    assert answer["history_size"] == len(seen_by_then)
    assert {r["part_id"] for r in answer["results"]} <= {int(v.key) for v in seen_by_then}


def test_harsh_randomisation_keeps_the_ranges_and_draws_their_harsh_ends_more_often():
    from perception.datasets import parse_shift

    rng = np.random.default_rng(0)
    uniform, harsh = parse_shift("randomized"), parse_shift("randomized_harsh")

    def dim_low_noisy(sample):
        shifts = [sample(rng) for _ in range(4000)]
        for s in shifts:
            assert 0.5 <= s.brightness <= 1.3 and 0.0 <= s.noise_std <= 0.07 and 25 <= s.light_elevation_deg <= 85
        return np.mean([s.brightness <= 0.7 and s.noise_std >= 0.05 and s.light_elevation_deg <= 35 for s in shifts])

    assert dim_low_noisy(harsh) > 4 * dim_low_noisy(uniform)
    with pytest.raises(ShopfloorInputError, match="randomized_harsh"):
        parse_shift("harshest")


def test_defect_alarm_is_a_p_chart_whose_baseline_the_upset_does_not_raise():
    """120 parts at 15% defects, an upset of 40 parts at 40%, then 60 parts at 5%, through the shipped CNN.
    A running mean over every part (the old rule: alarm at twice it) had taken the upset into its own
    baseline, 0.21, and stayed quiet at 0.40; the p-chart's limit comes from the parts before the window."""
    from agents.agent import encode_image
    from agents.blackboard import Entry
    from agents.inspection_agent import InspectionAgent
    from environments.parts import sample_spec

    agent = InspectionAgent(CNNInspector(max_parts=4), max_parts=4)
    rng = np.random.default_rng(11)
    phases = [(120, 0.15), (40, 0.40), (60, 0.05)]
    defective = [i < round(n * share) for n, share in phases for i in rng.permutation(n)]
    alarms, part_id = [], 0
    for tick in range(len(defective) // 4):
        parts = []
        for is_bad in defective[4 * tick:4 * tick + 4]:
            spec = sample_spec(rng, defect=int(rng.integers(1, 7)) if is_bad else 0)
            image = render_part(spec, seed=part_id, size=SHIPPED_SIZE).image
            parts.append({"part_id": part_id, "png": encode_image(image)})
            part_id += 1
        inbox = [Entry("perception/parts", "station", {"parts": parts}, "plant", tick, tick + 1, tick + 1)]
        alarms += [(tick, p.value) for p in agent.decide(tick, inbox) if p.topic == "alarm/defect_rate"]
    assert [a["active"] for _, a in alarms] == [True, False], alarms
    (raised_at, raised), (cleared_at, _) = alarms
    assert 120 / 4 < raised_at < 160 / 4 < cleared_at  # raised in the upset, cleared after it
    assert raised["normal_rate"] < 0.2 and raised["reject_rate"] > raised["control_limit"] > raised["normal_rate"]


def test_int8_runtime_is_built_once_cached_and_agrees_with_torch(tmp_path, monkeypatch, held_out):
    monkeypatch.setenv("SHOPFLOOR_CACHE", str(tmp_path / "cache"))
    int8 = CNNInspector(views=1, runtime="int8")
    built = list((tmp_path / "cache" / "onnx").glob("*.int8.onnx"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    CNNInspector(views=1, runtime="int8")  # the second inspector reads the cached graph
    assert built[0].stat().st_mtime_ns == stamp
    torch_probs = CNNInspector(views=1).class_probs(held_out.images[:300])
    int8_probs = int8.class_probs(held_out.images[:300])
    assert int8_probs.shape == torch_probs.shape
    assert (int8_probs.argmax(1) == torch_probs.argmax(1)).mean() >= 0.97  # measured: 0.995 on 1,000 parts
    with pytest.raises(ShopfloorInputError, match="runtime='tensorrt'"):
        CNNInspector(runtime="tensorrt")
