"""The training command under torchrun: 2 CPU processes (gloo) train as one process with the
same global batch, write one checkpoint and summary, resume with 2 or 1 processes; a failing
process stops the run with a message instead of a hang."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")

from sltt_kernels import train_command  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 3 iterations of the digits model per epoch, 2 epochs: seconds, and a cosine step between them
RUN = ["--dataset", "digits", "--T", "2", "--epochs", "2", "--max-iterations", "3", "--no-progress", "--seed", "3"]


def _torchrun(script_args, timeout=240):
    with socket.socket() as sock:  # a free port on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", *script_args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _weights(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_two_processes_train_as_one_and_resume_with_two_or_one(tmp_path):
    two = str(tmp_path / "two")
    res = _torchrun(["-m", "sltt_kernels.train", *RUN, "--stop-after", "1", "--out", two])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    # process 0 alone logs and writes: one checkpoint, one summary, one epoch line
    assert sorted(os.listdir(two)) == ["checkpoint.pt", "summary.json"]
    assert res.stdout.count("epoch   1 ") == 1 and "2 processes" in res.stdout
    summary = json.load(open(os.path.join(two, "summary.json")))
    assert summary["world_size"] == 2 and summary["epochs_done"] == 1

    one = str(tmp_path / "one")
    train_command.main([*RUN, "--stop-after", "1", "--out", one])
    ck_two = torch.load(os.path.join(two, "checkpoint.pt"), weights_only=True)
    ck_one = torch.load(os.path.join(one, "checkpoint.pt"), weights_only=True)
    _assert_same_weights(ck_two["model"], ck_one["model"])
    assert ck_two["history"][0]["loss"] == pytest.approx(ck_one["history"][0]["loss"], rel=1e-5)
    assert ck_two["history"][0]["test_acc"] == ck_one["history"][0]["test_acc"]  # evaluated in halves, summed

    # the interrupted 2-process run, resumed by 2 processes and (a copy) by 1, ends where an
    # uninterrupted single process does
    shutil.copytree(two, tmp_path / "two_then_one")
    res = _torchrun(["-m", "sltt_kernels.train", "--resume", "--out", two])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "resumed from" in res.stdout
    train_command.main(["--resume", "--out", str(tmp_path / "two_then_one"), "--no-progress"])
    straight = str(tmp_path / "straight")
    train_command.main([*RUN, "--out", straight])
    for resumed in (two, str(tmp_path / "two_then_one")):
        _assert_same_weights(_weights(resumed), _weights(straight))
    assert json.load(open(os.path.join(two, "summary.json")))["world_size"] == 2
    assert json.load(open(os.path.join(tmp_path / "two_then_one", "summary.json")))["world_size"] == 1


def test_a_failing_process_stops_the_run_with_a_message(tmp_path):
    start = time.monotonic()
    res = _torchrun([os.path.join(ROOT, "tests", "training", "ddp_train_failing.py"), *RUN, "--out", str(tmp_path / "r")],
                    timeout=180)
    assert res.returncode != 0
    assert "process 1 of 2 failed: RuntimeError: injected failure of process 1" in res.stderr
    assert time.monotonic() - start < 120  # process 0 was stopped, not left waiting (gloo's timeout is 30 min)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    res = _torchrun(["-m", "sltt_kernels.train", *RUN, "--batch-size", "63", "--out", str(tmp_path / "r")])
    assert res.returncode != 0
    assert "--batch-size 63 (the global batch) does not split evenly over 2 processes" in res.stderr


def test_sigterm_every_process_names_the_kept_checkpoint_truly(tmp_path):
    """SIGTERM to torchrun after an epoch: process 0 names the checkpoint it kept; the others,
    which do not write it, refer to process 0 instead of claiming that none was written."""
    import signal

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "sltt_kernels.train", "--dataset", "digits", "--T", "8", "--epochs", "30",
           "--seed", "5", "--no-progress", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # process 1 is past the epoch whose checkpoint process 0 wrote
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert kept >= 1
    assert f"process 0 of 2 failed: sltt-train: interrupted in epoch {kept + 1}; the checkpoint of epoch {kept}" in err \
        or "process 0 of 2 failed: sltt-train: interrupted after" in err, err[-3000:]
    assert "process 1 of 2 failed" in err, err[-3000:]
    assert "no epoch was completed" not in err, err[-3000:]
