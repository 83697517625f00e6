"""Two-process DDP on CPU (gloo) through the real entry point: ``torchrun --nproc-per-node 2 -m clinclip.cli.main
train ...``. It must log and save once, and its losses must be those of one process on the same global batch
(the loss gathers both ranks' embeddings; the sampler hands each rank half of the same shuffled batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clinclip.train import TrainConfig, run_training
from train_helpers import make_prepared_manifest, small_overrides


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    manifest = make_prepared_manifest(tmp_path, n_rows=8)
    values = small_overrides(manifest, tmp_path / "ddp", steps=2, batch_size=8)
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "clinclip.cli.main", "train", "clip-ng-dtcg", *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    out = tmp_path / "ddp"
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "event" not in r]
    assert [r["step"] for r in steps] == [1, 2]  # rank 0 alone logs: no duplicated lines
    assert [r["event"] for r in rows if "event" in r] == ["start", "summary"]
    assert rows[0]["world_size"] == 2
    assert all(r["global_batch"] == 8 for r in steps)  # the loss saw both ranks' 4 rows
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]  # saved once, no temp files
    assert (out / "model" / "model.safetensors").is_file()
    assert proc.stdout.count("trained 2 steps") == 1  # only rank 0 reports

    single = run_training(TrainConfig.from_presets("tiny", "clip-ng-dtcg",
                                                   small_overrides(manifest, tmp_path / "one", steps=2, batch_size=8)))
    one = [r["loss"] for r in single.history]
    assert steps[0]["loss"] == pytest.approx(one[0], abs=1e-5)  # same weights, same global batch
    assert steps[1]["loss"] == pytest.approx(one[1], abs=1e-4)  # and the same update (gradients averaged right)


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_uninterrupted_losses(tmp_path):
    """A real kill (SIGKILL of the `clinclip train` process mid-run), then `--resume` to the end."""
    import signal
    import time

    manifest = make_prepared_manifest(tmp_path, n_rows=16)
    values = small_overrides(manifest, tmp_path / "killed", steps=10, save_every=4, **{"data.augment": True})
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items()]
    command = [sys.executable, "-m", "clinclip.cli.main", "train", "clip-ng-dtcg", *args]
    log_path = tmp_path / "killed" / "log.jsonl"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            steps = [json.loads(line).get("step", 0) for line in log_path.read_text().splitlines()
                     if line.endswith("}")] if log_path.exists() else []
            if steps and max(steps) >= 6:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run_training(TrainConfig.from_presets("tiny", "clip-ng-dtcg", {
        **values, "out_dir": str(tmp_path / "straight")}))
    losses = [json.loads(line) for line in log_path.read_text().splitlines()]
    losses = [r["loss"] for r in losses if "event" not in r]
    assert losses == pytest.approx([r["loss"] for r in straight.history], abs=1e-6, rel=0)
