"""gradlab.executors: a bounded pool of worker processes and Ray run specs exactly as `gradlab check` does
in-process; a job that dies or hangs fails alone; `check --executor` and `fuzz --executor` change nothing
but where the work runs."""

import ctypes
import os
import time

import pytest
import torch
from click.testing import CliRunner

from gradlab import runner
from gradlab.batch import check_specs
from gradlab.cli import main
from gradlab.commands.fuzz import fuzz
from gradlab.errors import GradlabError
from gradlab.executors import (
    JobTimeout,
    WorkerCrashed,
    check_spec_path,
    check_spec_text,
    gpu_share,
    make_executor,
)
from gradlab.spec import load_spec

from .conftest import ROOT

SMALL = [ROOT / "specs" / n for n in ("seed000_tanh.yaml", "seed002_classifier.yaml", "seed003_two_layer.yaml", "deep_sigmoid_10.yaml")]
BAD = "input: {dim: 3}\nnetwork: {layers: [{type: dense, units: 0}]}\nloss: {fn: mse}\n"


def _rows(result):
    return result.passed, [(c.parameter, c.reference, c.candidate, c.device, c.status, c.mismatched, c.size) for c in result.comparisons]


@pytest.fixture(scope="module")
def pool():
    with make_executor("local", workers=2) as ex:
        yield ex


def test_local_pool_checks_specs_like_the_process_itself(pool):
    futures = [pool.submit(check_spec_path, str(p)) for p in SMALL]
    for path, future in zip(SMALL, futures):
        got, want = future.result(timeout=120), runner.check_file(path)
        assert got.path == str(path) and got.error is None
        assert _rows(got) == _rows(want)
        assert [c.max_rel_err for c in got.comparisons] == pytest.approx([c.max_rel_err for c in want.comparisons], rel=1e-6, abs=1e-12, nan_ok=True)


def _exit_hard():
    os._exit(7)


def test_a_job_that_dies_fails_alone_and_the_pool_keeps_going(pool):
    exited = pool.submit(_exit_hard)
    segfault = pool.submit(ctypes.string_at, 0)
    after = pool.submit(check_spec_path, str(SMALL[0]))
    with pytest.raises(WorkerCrashed, match="exited with code 7"):
        exited.result(timeout=60)
    with pytest.raises(WorkerCrashed, match="SIGSEGV"):
        segfault.result(timeout=60)
    assert after.result(timeout=120).passed


def test_a_job_past_its_timeout_is_killed(pool):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"after 0\.5 s"):
        pool.submit(time.sleep, 60, timeout=0.5).result(timeout=30)
    assert time.monotonic() - t0 < 10
    assert pool.submit(os.getpid).result(timeout=30) != os.getpid()  # each job its own process, and the pool is alive


def test_a_job_raising_fails_with_its_own_exception_and_its_stderr_is_passed_on(pool, capsys):
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(timeout=30)
    assert pool.submit(os.write, 2, b"a warning from the job\n").result(timeout=30) == 23
    assert "a warning from the job" in capsys.readouterr().err


def test_a_bad_spec_is_an_error_result_not_an_exception(pool):
    result = pool.submit(check_spec_text, "team/bad.yaml", BAD).result(timeout=60)
    assert result.error.startswith("team/bad.yaml: network.layers[0].units: ") and not result.passed
    assert "gradlab-spec-" not in result.error  # the temporary path is never shown
    assert check_spec_text("x.yaml", "input: [").error.startswith("x.yaml: ")


@pytest.mark.parametrize("name", ["", "..", "../", "a/..", "bad\x00.yaml", "\n.yaml", "x" * 300 + ".yaml", None])
def test_check_spec_text_refuses_odd_names(name, tmp_path):
    result = check_spec_text(name, (ROOT / "specs" / "seed000_tanh.yaml").read_text())
    assert result.error is not None and "(name)" in result.error


def test_check_spec_text_writes_only_into_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "specs" / "seed000_tanh.yaml").read_text()
    result = check_spec_text("../../etc/evil.yaml", text, {"engines": "analytic,numeric", "stats": True})
    assert result.passed and result.path == "../../etc/evil.yaml"
    assert {c.spec for c in result.comparisons} == {"../../etc/evil.yaml"}
    assert {c.candidate for c in result.comparisons} | {c.reference for c in result.comparisons} == {"analytic", "numeric"}
    assert result.stats.path == "../../etc/evil.yaml" and result.stats.layers
    assert list(tmp_path.iterdir()) == []


def test_check_options_are_checked():
    with pytest.raises(GradlabError, match="unknown key"):
        check_spec_text("a.yaml", BAD, {"device": ["cpu"]})
    with pytest.raises(GradlabError, match="--engines"):
        check_spec_text("a.yaml", BAD, {"engines": ["analytic"]})


def test_check_spec_path_keeps_the_memory_guard(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("input: {dim: 4000, batch: 4}\nnetwork: {layers: [{type: dense, units: 4000}]}\nloss: {fn: mse}\n"
                   "check: {memory_limit: 1 MiB}\n")
    assert "limit 1 MiB" in check_spec_path(str(big)).error


HOSTILE = ROOT / "tests" / "hostile"


def test_the_deadline_holds_in_a_worker_and_a_hard_stop_is_that_specs_error(pool):
    """User code that sleeps past check.timeout: the spec's timeout error. User code that swallows the timeout:
    the watchdog ends the worker (not the caller), and run_on reports that spec alone."""
    from gradlab.batch import load_all
    from gradlab.executors import run_on

    slept = pool.submit(check_spec_path, str(HOSTILE / "impl_sleep_in_backward.yaml")).result(timeout=60)
    assert "timed out after 1 s while running" in slept.error
    loaded, _ = load_all([str(HOSTILE / "impl_loop_swallows_timeout.yaml"), str(SMALL[0])])
    swallowed, fine = run_on(pool, loaded, progress=False)
    name = str(HOSTILE / "impl_loop_swallows_timeout.yaml")
    assert swallowed.error.startswith(f"{name}: the worker process exited with code 2 before it answered: timed out after 1 s while running ")
    assert name not in swallowed.error[len(name):] and "specs after this one" not in swallowed.error
    assert fine.passed


def test_gpu_share_asks_only_for_cuda_checks():
    assert gpu_share(load_spec(SMALL[0])) == 0.0
    cuda = load_spec(SMALL[1])  # devices: [cpu, cuda]
    assert 0.1 <= gpu_share(cuda) <= 1.0
    assert gpu_share(cuda, engines=["analytic", "numeric"]) == 0.0


def test_cli_check_with_the_local_executor_prints_what_in_process_prints(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    args = ["check", *map(str, SMALL), str(bad), "--format", "json"]
    alone = CliRunner().invoke(main, args)
    pooled = CliRunner().invoke(main, [*args, "--executor", "local", "--workers", "2"])
    assert alone.exit_code == pooled.exit_code == 2
    strip = lambda out: [l for l in out.splitlines() if '"seconds"' not in l and not l.startswith("[")]  # noqa: E731
    assert strip(pooled.stdout) == strip(alone.stdout)
    assert pooled.stderr.count("\n[") + pooled.stderr.startswith("[") == len(SMALL)  # one progress line per spec that ran


def test_cli_executor_options_need_an_executor():
    result = CliRunner().invoke(main, ["check", str(SMALL[0]), "--workers", "2"])
    assert result.exit_code == 2 and "--workers: needs --executor" in result.output
    result = CliRunner().invoke(main, ["check", str(SMALL[0]), "--executor", "local", "--address", "auto"])
    assert result.exit_code == 2 and "--address" in result.output


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(GradlabError, match=r"pip install 'gradlab\[ray\]'"):
        make_executor("ray")
    result = CliRunner().invoke(main, ["check", str(SMALL[0]), "--executor", "ray"])
    assert result.exit_code == 2 and "pip install 'gradlab[ray]'" in result.output


# --- fuzz on an executor: the same finds -------------------------------------------------------------------


def planted_judge(data: dict) -> tuple:
    """A stand-in for the engines (module-level, so worker processes can import it): refuses float32 nets
    on a batch of 4 or more, and 'finds' a disagreement in every net with two or more dense layers of width >= 3."""
    layers = data["network"]["layers"]
    if data.get("dtype") == "float32" and data["input"]["batch"] >= 4:
        return ("refused", "<fuzz>: loss: planted refusal")
    if sum(l.get("type") == "dense" and l.get("units", 0) >= 3 for l in layers) >= 2:
        return ("disagree", ["planted: two wide dense layers"], "")
    return ("pass",)


def _summary(result):
    return result.examples, result.refused, [(f.spec, f.lines) for f in result.found]


def test_fuzz_on_an_executor_finds_what_the_sequential_search_finds(pool):
    alone = fuzz(20, 1, ("mlp",), judge=planted_judge)
    assert alone.found and alone.refused  # the planted judge exercises both paths
    assert _summary(fuzz(20, 1, ("mlp",), executor=pool, judge=planted_judge)) == _summary(alone)


def test_cli_fuzz_on_an_executor_prints_what_it_prints_alone(tmp_path):
    import re

    args = ["fuzz", "--examples", "6", "--architectures", "mlp", "--seed", "4", "--output-dir", str(tmp_path)]
    alone, pooled = CliRunner().invoke(main, args), CliRunner().invoke(main, [*args, "--executor", "local", "--workers", "2"])
    assert alone.exit_code == pooled.exit_code == 0
    assert re.sub(r"\d+\.\d+ s", "", pooled.output) == re.sub(r"\d+\.\d+ s", "", alone.output)


@pytest.mark.slow
def test_fuzz_with_the_engines_on_an_executor_matches(pool):
    assert _summary(fuzz(8, 2, ("mlp", "cnn"), executor=pool)) == _summary(fuzz(8, 2, ("mlp", "cnn")))


# --- Ray: one local instance for the module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_pool():
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'gradlab[ray]' (the test extra includes it)")
    with make_executor("ray", workers=2) as ex:
        yield ex


@pytest.mark.slow
def test_ray_runs_specs_like_the_process_itself(ray_pool):
    futures = [ray_pool.submit(check_spec_path, str(p), gpus=gpu_share(load_spec(p))) for p in SMALL[:2]]
    for path, future in zip(SMALL, futures):
        assert _rows(future.result(timeout=300)) == _rows(runner.check_file(path))
    text = ray_pool.submit(check_spec_text, "sub/bad.yaml", BAD).result(timeout=120)
    assert text.error.startswith("sub/bad.yaml: network.layers[0].units")


@pytest.mark.slow
def test_ray_a_dead_worker_or_a_timeout_fails_only_its_job(ray_pool):
    with pytest.raises(WorkerCrashed, match="Ray worker died"):
        ray_pool.submit(_exit_hard).result(timeout=120)
    with pytest.raises(JobTimeout, match=r"after 1 s"):
        ray_pool.submit(time.sleep, 60, timeout=1).result(timeout=120)
    assert ray_pool.submit(os.getpid).result(timeout=120) != os.getpid()


@pytest.mark.slow
def test_cli_check_on_ray_matches(ray_pool):
    args = ["check", *map(str, SMALL[:2]), "-q"]
    alone, on_ray = CliRunner().invoke(main, args), CliRunner().invoke(main, [*args, "--executor", "ray"])
    assert on_ray.exit_code == alone.exit_code == (0 if torch.cuda.is_available() else 4)  # seed002 asks for cuda too
    assert on_ray.stdout == alone.stdout


def test_a_cluster_without_our_files_gets_the_spec_text(pool, monkeypatch):
    """On a Ray cluster elsewhere the workers cannot read the spec's path: run_on sends the text, and the
    result still names the path as given."""
    from gradlab.batch import load_all
    from gradlab.executors import run_on

    monkeypatch.setattr(pool, "shares_files", False)
    weird = ROOT / "specs" / "seed000_tanh.yaml"
    loaded, _ = load_all([str(weird), str(SMALL[2])])
    got = run_on(pool, loaded, progress=False)
    assert [r.path for r in got] == [str(weird), str(SMALL[2])]
    assert [_rows(r) for r in got] == [_rows(runner.check_file(p)) for p, _ in loaded]
    assert {c.spec for c in got[0].comparisons} == {str(weird)}


def test_check_specs_order_is_kept(pool):
    from gradlab.executors import run_on
    from gradlab.batch import load_all

    loaded, _ = load_all(list(map(str, SMALL)))
    assert [r.path for r in run_on(pool, loaded, progress=False)] == [r.path for r in check_specs(list(map(str, SMALL)), progress=False)[1]]
