"""The `shopfloor` command end to end: a real run writes a complete run directory."""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def shopfloor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_run_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    res = shopfloor("run", "scenarios/smart_factory.yaml", "--seeds", "2", "--out", str(out), "--local",
                    "--set", "coupling.parts_per_order=8")
    assert res.returncode == 0, res.stderr
    assert "throughput_per_hour" in res.stdout and str(out) in res.stdout
    for name in ("scenario.yaml", "kpis.json", "report.md", "plots/line.png", "plots/reactor.png",
                 "plots/routes.png", "plots/inspection.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["seeds"] == [1, 2]
    tp = kpis["kpis"]["throughput_per_hour"]
    assert tp["n"] == 2 and tp["ci95_low"] <= tp["mean"] <= tp["ci95_high"] and tp["mean"] > 10
    assert len(kpis["per_seed"]) == 2
    resolved = (out / "scenario.yaml").read_text()
    assert "parts_per_order: 8" in resolved and "mtbf_h" in resolved  # overrides and defaults filled in
    assert (out / "events-seed1.sqlite").is_file() and (out / "events-seed2.sqlite").is_file()
    report = (out / "report.md").read_text()
    assert "| pacing | rl |" in report and "plots/routes.png" in report
    assert "## Coordination" in report and "| 1 | 0 | 0 | 1 |" in report  # seed 1: operator meets policy


def test_envs_lists_the_registered_environments():
    res = shopfloor("envs")
    assert res.returncode == 0, res.stderr
    for env_id in ("shopfloor/ProcessControl-v0", "shopfloor/LinePacing-v0", "shopfloor/Dispatch-v0"):
        assert env_id in res.stdout


def test_train_defect_cnn_takes_layer_widths_and_refuses_bad_ones(tmp_path):
    out = tmp_path / "cnn.pt"
    done = shopfloor("train", "defect-cnn", "--quick", "--channels", "8,16,24,32,32", "--out", str(out))
    assert done.returncode == 0, done.stderr
    ckpt = torch.load(out, weights_only=True)
    assert [c for c, _, _ in ckpt["dims"]["layers"]] == [8, 16, 24, 32, 32]
    assert "--channels 8,16,24,32,32" in ckpt["meta"]["command"]
    bad = shopfloor("train", "defect-cnn", "--quick", "--channels", "8,x", "--out", str(tmp_path / "bad.pt"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "--channels" in bad.stderr
    assert not (tmp_path / "bad.pt").exists()
