"""PartsCLIP: registration, local-dir round trip, a tiny training run, the shipped weights, loading errors, search."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from environments.errors import ShopfloorInputError
from environments.parts import DEFECT_TYPES, PART_TYPES, sample_spec
from perception.clip_model import (CONFIG_FILE, MODEL_NAME, WEIGHTS_DIR, WEIGHTS_FILE, PartsCLIP, RetrievalIndex,
                                   build_model, defect_prompts, load_clip, load_defect_features, register_model_config,
                                   save_local_dir)
from perception.defect_cnn import SHIPPED_CNN_64PX, DefectCNN, load_checkpoint, save_checkpoint
from perception.datasets import EVAL_SHIFT, render_dataset
from perception.train_clip import (BENCH_SEEDS, HELD_OUT, RETRIEVAL_QUERIES, CaptionTokens, CLIPTrainConfig,
                                   caption_variant, constraint_mask, dataset_seeds, encode_captions, matches,
                                   render_combos, render_twins, retrieval_report, spec_codes, train_clip,
                                   zero_shot_report)

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_registered_config_builds():
    name = register_model_config()
    assert name == MODEL_NAME and MODEL_NAME in open_clip.list_models()
    model = open_clip.create_model(MODEL_NAME)
    assert model.visual.image_size == (64, 64) or model.visual.image_size == 64
    with torch.no_grad():
        img = model.encode_image(torch.zeros(2, 3, 64, 64))
        txt = model.encode_text(open_clip.get_tokenizer(MODEL_NAME)(["a cracked gear"]))
    assert img.shape == (2, 128) and txt.shape == (1, 128)
    assert register_model_config() == MODEL_NAME  # idempotent
    assert CLIPTrainConfig().model_cfg() == open_clip.get_model_config(MODEL_NAME)  # the default recipe ships it


def test_captions_are_true_of_their_part_and_deterministic():
    rng = np.random.default_rng(1)
    specs = [sample_spec(rng) for _ in range(300)]
    caps = [caption_variant(s, np.random.default_rng([1, i])) for i, s in enumerate(specs)]
    again = [caption_variant(s, np.random.default_rng([1, i])) for i, s in enumerate(specs)]
    assert caps == again
    m = matches(spec_codes(specs), np.stack([constraint_mask(c[1]) for c in caps]))
    assert m.diagonal().all()  # every caption is true of its own image
    assert 0 < m.mean() < 0.5  # and not of everything
    assert any(text == s.caption() for (text, _), s in zip(caps, specs))
    assert len({c[0] for c in caps}) > 150  # varied wording
    prompts = defect_prompts("crack", ["gear"])
    assert "a photo of a cracked gear" in prompts and "a photo of a gear with a crack" in prompts


def test_twins_share_the_scene_and_differ_in_defect():
    d = render_twins(20, 64, seed=3, exclude=HELD_OUT, workers=1)
    assert d.images.shape == (40, 64, 64, 3)
    for a, b in zip(d.specs[0::2], d.specs[1::2]):
        assert (a.part_type, a.material, a.colour) == (b.part_type, b.material, b.colour) and a.defect != b.defect
    assert (d.seeds[0::2] == d.seeds[1::2]).all()
    held = {tuple(sorted(c)) for c in HELD_OUT}
    for s in d.specs:
        values = {s.part_type, s.material, s.colour, s.defect, s.defect_region}
        assert not any(set(c) <= values for c in held)


def test_local_dir_round_trip_gives_identical_embeddings(tmp_path):
    model = build_model(seed=5)
    tokenizer = open_clip.get_tokenizer(register_model_config())
    save_local_dir(model, tmp_path / "m", open_clip.get_model_config(MODEL_NAME))
    assert {p.name for p in (tmp_path / "m").iterdir()} == {CONFIG_FILE, WEIGHTS_FILE}
    ours, loaded = PartsCLIP(model, tokenizer), load_clip(f"local-dir:{tmp_path / 'm'}")
    images, texts = _images(5), ["a cracked gear", "flawless blue plastic caps"]
    np.testing.assert_array_equal(ours.encode_images(images), loaded.encode_images(images))
    np.testing.assert_array_equal(ours.encode_texts(texts), loaded.encode_texts(texts))
    # open_clip alone reads the directory too
    plain = open_clip.create_model_from_pretrained(f"local-dir:{tmp_path / 'm'}", return_transform=False)
    assert torch.equal(plain.logit_scale, model.logit_scale)


def _random_defect_cnn(path):
    torch.manual_seed(11)
    save_checkpoint(path, DefectCNN().eval(), {1: 0.5}, {"command": "test"})
    return path


def test_tiny_training_run_writes_a_loadable_local_dir(tmp_path):
    cnn_path = _random_defect_cnn(tmp_path / "cnn.pt")
    cfg = CLIPTrainConfig(n_train=256, n_val=70, n_val_held_out=35, epochs=1, batch_size=64, workers=1,
                          vision_init=str(cnn_path))
    stages = []
    metrics = train_clip(cfg, tmp_path / "clip", lambda s, d, t: stages.append(s), command="test")
    out = tmp_path / "clip"
    assert (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file()
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["command"] == "test" and saved["seed"] == 0
    assert saved["held_out"] == [list(c) for c in HELD_OUT]
    assert {"render", "train", "total"} <= set(saved["timings_s"])
    assert {"render", "epoch 1/1", "evaluate"} <= set(stages)
    # the reported validation accuracy is that of the saved files, recomputed after loading
    val = render_dataset(70, 64, dataset_seeds(0)["val"], "randomized", workers=1)
    loaded = load_clip(f"local-dir:{out}")
    again = zero_shot_report(loaded, val.images, val.labels)
    assert again["accuracy"] == metrics["validation"]["zero_shot"]["accuracy"]
    # the image tower's convolutions are the defect CNN's, locked (stored in float16), its head trained
    cnn, _ = load_checkpoint(cnn_path)
    trunk = loaded.model.visual.trunk
    for key, value in cnn.features.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(trunk.features.state_dict()[key].float(), value.half().float()), key
    fresh = build_model(cfg.model_cfg(), seed=cfg.seed).visual.trunk
    assert not torch.equal(fresh.proj.weight.half().float(), trunk.proj.weight.float())


def test_defect_features_need_the_defect_cnn_trunk(tmp_path):
    cnn_path = _random_defect_cnn(tmp_path / "cnn.pt")
    resnet = build_model(CLIPTrainConfig(vision="modified-resnet-w8").model_cfg())
    with pytest.raises(ShopfloorInputError, match="not the defect-CNN trunk"):
        load_defect_features(resnet, cnn_path)
    with pytest.raises(ShopfloorInputError, match="does not exist"):
        load_defect_features(build_model(), tmp_path / "missing.pt")


def test_same_seed_gives_the_same_weights(tmp_path):
    cfg = CLIPTrainConfig(n_train=128, n_val=0, n_val_held_out=0, epochs=1, batch_size=64, workers=1,
                          vision_init=str(_random_defect_cnn(tmp_path / "cnn.pt")))
    train_clip(cfg, tmp_path / "a")
    train_clip(cfg, tmp_path / "b")
    from safetensors.torch import load_file

    # tensors, not file bytes: safetensors writes its metadata map in no fixed order
    a, b = load_file(tmp_path / "a" / WEIGHTS_FILE), load_file(tmp_path / "b" / WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def shipped():
    return load_clip(None)


def test_shipped_weights_are_small_and_load_through_open_clip(shipped):
    size = sum(f.stat().st_size for f in WEIGHTS_DIR.iterdir())
    assert size <= 10 * 1024**2
    meta = json.loads((WEIGHTS_DIR / "train_metrics.json").read_text())
    # the defaults made them (a command may also spell out a default, as --n-train 216000 did)
    assert meta["command"].startswith("shopfloor train clip --seed 0") and meta["timings_s"]["total"] <= 20 * 60
    assert meta["config"] == json.loads(json.dumps(asdict(CLIPTrainConfig(seed=0))))
    assert shipped.image_size == (64, 64)


def test_shipped_image_tower_starts_from_the_shipped_64px_defect_cnn(shipped):
    """`shopfloor train clip --seed 0` reproduces the shipped CLIP from shipped files: its locked convolutions
    are the 64 px defect CNN's (stored in float16), and that CNN records the command that made it."""
    assert SHIPPED_CNN_64PX.stat().st_size <= 10 * 2**20
    cnn, ckpt = load_checkpoint(SHIPPED_CNN_64PX)
    assert cnn.dims.image_size == 64 == shipped.image_size[0]
    assert ckpt["meta"]["command"].startswith("shopfloor train defect-cnn") and ckpt["meta"]["complete"]
    trunk = shipped.model.visual.trunk.features.state_dict()
    for key, value in cnn.features.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(trunk[key].float(), value.half().float()), key


def test_image_embeddings_average_the_views_and_a_turned_part_embeds_as_it_was(shipped):
    images = render_dataset(8, 64, 4_242, "randomized").images
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2)))
    assert shipped.views == 4
    assert np.abs(shipped.encode_images(images) - shipped.encode_images(turned)).max() < 1e-4
    single = load_clip(None, views=1)
    assert np.abs(single.encode_images(images) - single.encode_images(turned)).max() > 1e-3
    with pytest.raises(ShopfloorInputError, match="views=3"):
        load_clip(None, views=3)


def test_int8_image_tower_is_built_once_cached_and_embeds_as_torch_does(tmp_path, monkeypatch, held_out_combos):
    monkeypatch.setenv("SHOPFLOOR_CACHE", str(tmp_path / "cache"))
    images = held_out_combos[0][:96]
    # two views: the graph averages them as torch does
    in_torch, int8 = load_clip(None, views=2), load_clip(None, views=2, image_runtime="int8")
    torch_embeddings, int8_embeddings = in_torch.encode_images(images), int8.encode_images(images)
    cosines = (torch_embeddings * int8_embeddings).sum(axis=1)
    assert cosines.mean() >= 0.995 and cosines.min() >= 0.97, cosines.min()  # measured at 4 views: 0.9995, 0.998
    agree = in_torch.probs_from_embeddings(torch_embeddings).argmax(1) == int8.probs_from_embeddings(
        int8_embeddings).argmax(1)
    assert agree.mean() >= 0.9, agree.mean()
    built = list((tmp_path / "cache" / "onnx").glob("clip_image-*-v2-*.int8.onnx"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    load_clip(None, views=2, image_runtime="int8")  # reads the cached graph
    assert built[0].stat().st_mtime_ns == stamp
    assert int8.encode_images(images[:0]).shape == (0, int8.embed_dim)
    with pytest.raises(ShopfloorInputError, match="image_runtime='tensorrt'"):
        load_clip(None, image_runtime="tensorrt")


@pytest.fixture(scope="module")
def held_out_combos():
    return render_combos(210, 64, BENCH_SEEDS["test_held_out"], HELD_OUT, EVAL_SHIFT)


@pytest.fixture(scope="module")
def gallery_report(shipped):
    gallery = render_dataset(700, 64, BENCH_SEEDS["test_gallery"], EVAL_SHIFT, workers=2)
    index = RetrievalIndex(shipped)
    index.add_images(range(len(gallery)), gallery.images)
    queries = [q for q in RETRIEVAL_QUERIES if q[0] in (
        "gears with a crack near the rim", "caps with a stain", "red painted brackets", "good copper gears",
        "yellow plastic caps", "brass plates with a missing hole")]
    return retrieval_report(index, gallery.specs, queries)


def test_shipped_weights_meet_the_bars_at_small_scale(shipped, held_out_combos, gallery_report):
    images, labels, _ = held_out_combos
    assert zero_shot_report(shipped, images, labels)["accuracy"] >= 0.85
    assert gallery_report["recall_at_k"] >= 0.7


def test_shipped_zero_shot_on_held_out_combinations(shipped, held_out_combos):
    images, labels, specs = held_out_combos
    report = zero_shot_report(shipped, images, labels)
    assert report["accuracy"] >= ZERO_SHOT_FLOOR, report
    probs = shipped.zero_shot_probs(images[:4])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    top = shipped.labels(images[:4], k=3)
    assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] and t[0][0] in DEFECT_TYPES for t in top)
    # other image sizes are resized to 64 px
    big = np.repeat(np.repeat(images[:3], 2, axis=1), 2, axis=2)
    assert shipped.zero_shot_probs(big).shape == (3, len(DEFECT_TYPES))


def test_shipped_retrieval_on_a_small_gallery(gallery_report):
    assert gallery_report["recall_at_k"] >= RETRIEVAL_FLOOR, gallery_report


def test_bad_load_specs_raise_input_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / CONFIG_FILE).write_text(json.dumps({"model_cfg": {}}))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / CONFIG_FILE).write_text((WEIGHTS_DIR / CONFIG_FILE).read_text())
    (tmp_path / "corrupt" / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / CONFIG_FILE).write_text("{ not json")
    (tmp_path / "badjson" / WEIGHTS_FILE).write_bytes((WEIGHTS_DIR / WEIGHTS_FILE).read_bytes())
    for spec, words in [("", "invalid"), ("local-dir:", "names no directory"),
                        (f"local-dir:{tmp_path / 'missing'}", "does not exist"),
                        (f"local-dir:{tmp_path / 'empty'}", CONFIG_FILE),
                        (f"local-dir:{tmp_path / 'noweights'}", "no weights"),
                        (f"local-dir:{tmp_path / 'corrupt'}", "no loadable"),
                        (f"local-dir:{tmp_path / 'badjson'}", "no loadable"),
                        ("no-such-model", "unknown to open_clip"), ("ViT-B-32:not-a-tag", "unknown for ViT-B-32"),
                        ("ViT-B-32:", "malformed")]:
        with pytest.raises(ShopfloorInputError) as e:
            load_clip(spec)
        assert words in str(e.value) and "\n" not in str(e.value), (spec, str(e.value))


def test_name_spec_is_routed_to_open_clip():
    # a registered name without a tag: open_clip.create_model_and_transforms builds it (no network)
    clip = load_clip(MODEL_NAME)
    assert clip.source == MODEL_NAME and clip.encode_images(_images(2)).shape == (2, 128)


def test_retrieval_index_adds_incrementally_and_ranks(shipped):
    index = RetrievalIndex(shipped)
    emb = shipped.encode_texts(["a cracked gear", "a flawless blue plastic cap", "red painted brackets"])
    index.add(["a"], emb[:1], [{"line": 1}])
    index.add(["b", "c"], emb[1:])  # images stand-ins: the text embeddings themselves
    assert len(index) == 3 and index.metadata("a") == {"line": 1} and index.metadata("b") == {}
    hits = index.query("a cracked gear", k=5)
    assert [h[0] for h in hits][0] == "a" and len(hits) == 3 and hits[0][1] > hits[1][1] >= hits[2][1]
    with pytest.raises(ShopfloorInputError):
        index.add(["a"], emb[:1])  # duplicate id
    with pytest.raises(ShopfloorInputError):
        index.add(["d", "e"], emb[:1])  # shape mismatch
    with pytest.raises(ShopfloorInputError):
        index.query("", k=3)
    with pytest.raises(ShopfloorInputError):
        shipped.encode_images(np.zeros((2, 64, 64), np.uint8))
    assert set(PART_TYPES) <= {w for q, _ in RETRIEVAL_QUERIES for w in q.replace("s ", " ").split()} | set(PART_TYPES)


# Regression floors at small scale (210 held-out parts, a 700-part gallery, 6 queries), a little below what
# the shipped weights measured here (0.962 and 0.917); the bars (0.90, 0.8) are in benchmarks/clip_bench.py,
# and test_shipped_weights_meet_the_bars_at_small_scale holds them with a margin for the small sets.
ZERO_SHOT_FLOOR = 0.93
RETRIEVAL_FLOOR = 0.85


def test_recipe_rejects_an_unknown_imaging_condition_before_rendering():
    with pytest.raises(ShopfloorInputError, match="shift 'dusk' is invalid; allowed: 'nominal', 'randomized'"):
        CLIPTrainConfig(train_shift="dusk")
    res = subprocess.run([sys.executable, "-m", "cluster.cli", "train", "clip", "--train-shift", "dusk"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "shift 'dusk' is invalid" in res.stderr and "Traceback" not in res.stderr


def test_training_shortcuts_give_what_open_clip_gives():
    """The steps tokenize captions word by word (cached) and cut the padding before the text tower; both must
    equal open_clip's own tokenizer and encode_text."""
    tokenizer = open_clip.get_tokenizer("", context_length=32)
    rng = np.random.default_rng(3)
    specs = [sample_spec(rng) for _ in range(400)]
    captions = [caption_variant(s, rng)[0] for s in specs] + [s.caption() for s in specs[:50]] + ["a " * 40]
    tokens = tokenizer(captions)
    words = CaptionTokens(tokenizer)
    assert torch.equal(torch.stack([words(c) for c in captions]), tokens)
    model = build_model()
    with torch.no_grad():
        short = tokens[:64]  # captions of at most ~18 tokens: the cut applies
        assert int((short != 0).sum(dim=1).max()) < 32
        torch.testing.assert_close(encode_captions(model, short), model.encode_text(short), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(encode_captions(model, tokens), model.encode_text(tokens))  # a full-length one
