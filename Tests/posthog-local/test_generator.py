"""The generator is deterministic, writes atomically, and the truth CLI answers any parameters."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from phl_support import SERVER, Server


def generate(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SERVER), "generate", *args, str(target)],
                          capture_output=True, text=True, timeout=120)


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_other_seed_other_truths(tmp_path: Path) -> None:
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert generate(tmp_path / name, "--users", "300", "--seed", seed).returncode == 0
    a, b, c = (digest(tmp_path / n) for n in "abc")
    assert a == b
    assert set(a) == {"events.parquet", "persons.parquet", "resources.json", "truths.json", "meta.json"}
    assert a["truths.json"] != c["truths.json"]


def test_concurrent_generation_into_one_directory(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, str(SERVER), "generate", "--users", "200", str(target)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert json.loads((target / "meta.json").read_text())["users"] == 200
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no temporary directory left behind


def test_mismatched_dataset_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "d"
    assert generate(target, "--users", "100").returncode == 0
    refused = generate(target, "--users", "120")
    assert refused.returncode != 0 and "holds a dataset" in refused.stderr


def truth_cli(data_dir: Path, template: str, *params: str) -> dict:
    args = [sys.executable, str(SERVER), "truth", template, "--data", str(data_dir)]
    for param in params:
        args += ["--param", param]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_truth_cli_agrees_with_truths_json_and_takes_parameters(server: Server) -> None:
    truths = server.truths()["templates"]
    assert truth_cli(server.data_dir, "top_events") == truths["top_events"][0]["answer"]
    funnel = truths["conversion_funnel"][0]["answer"]
    assert truth_cli(server.data_dir, "conversion_funnel",
                     "steps=signed_up,onboarding_completed,first_report_created,subscription_started") == funnel
    top3 = truth_cli(server.data_dir, "top_events", "days=30", "limit=3")
    assert len(top3["events"]) == 3 and top3["total_events"] > truths["top_events"][0]["answer"]["total_events"]
    export = truth_cli(server.data_dir, "export_events", "start=2026-10-25", "end=2026-11-01T00:00:00Z",
                       'event_names=["signed_up"]')
    assert set(export["by_event"]) == {"signed_up"} and export["rows"] == export["by_event"]["signed_up"]


def test_planted_behaviour(server: Server) -> None:
    truths = server.truths()["templates"]
    experiment = truths["analyze_experiment"][0]["answer"]
    (test,) = experiment["comparisons"]
    assert test["frequentist"]["significant"] and test["bayesian"]["significant"] and test["frequentist"]["lift"] > 0.3
    rates = {v["variant"]: v["rate"] for v in experiment["variants"]}
    assert rates["test"] > rates["control"]
    assert experiment["excluded_multiple_variant_users"] > 0 and experiment["non_variant_exposures"] > 0
    (aa,) = truths["analyze_experiment"][1]["answer"]["comparisons"]  # the A/A test
    assert not aa["frequentist"]["significant"] and not aa["bayesian"]["significant"]
    tips = {v["variant"]: v for v in truths["analyze_experiment"][2]["answer"]["variants"]}
    assert tips["tips-b"]["conversions"] == 0 and tips["tips-a"]["conversions"] > tips["control"]["conversions"]
    steps = [s["users"] for s in truths["conversion_funnel"][0]["answer"]["steps"]]
    assert steps == sorted(steps, reverse=True) and steps[-1] > 0
    churn = truths["identify_churn_risk"][0]["answer"]
    assert churn["at_risk_count"] >= 300 and churn["bounced_count"] > 50
    assert truths["find_power_users"][0]["answer"]["power_user_count"] >= 150
    hard = server.truths()["planted"]["hard_cases"]
    assert {len(v) for v in hard["funnel"].values()} and len(hard["time_edges"]) == 21
    meta = json.loads((server.data_dir / "meta.json").read_text())
    assert 100_000 < meta["counts"]["events"] < 400_000 and meta["counts"]["persons"] == 3000
    # nothing before the 60 days: the bulk mode's events own the 30 days before them
    assert server.rows("SELECT min(timestamp) >= now() - INTERVAL 60 DAY FROM events") == [[True]]
