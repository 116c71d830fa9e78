"""The red-team corpus (``fixtures/lstm_lm_vit/redteam.toml``), graded as part of one class per sandbox mode.

The class (``tests/classbatch.py``, shared with test_hostile.py) holds the blank skeleton, two honest classmates
(their files hold a secret string) and every attack (the blank skeleton with an attack at import, or a hostile
archive), graded two at a time with short limits. Then:

- every attack scores no more than the blank skeleton, and none printed HOSTILE-SUCCESS (outside its documented
  ``known_gap`` modes);
- no attack's results or printed output hold the classmates' secret (nothing of theirs was read), in every mode;
- nothing an attack started is still running, no file it planted is left, and no container of the batch is left;
  a submission whose processes had to be killed after its worker ended has that in its results;
- the classmates' results equal those of grading them alone, with the same seed;
- nothing reached the grader's network listener, and no results file was forged.

Modes: ``process`` (as root: namespaces, the allow-listed view, a PID namespace per worker, seccomp),
``nons`` (the process sandbox with DLGRADE_NAMESPACES=0, as on Gradescope: a uid of its own, rlimits,
Landlock where the kernel has it, and seccomp) and ``docker``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from classbatch import (
    ATTACKS,
    BLANK,
    CLASSMATES,
    SUBMISSION_TIMEOUT,
    Attack,
    Batch,
    containers,
    leftovers,
    planted,
    slipped_entries,
)
from conftest import check_gradescope, require_docker

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the red-team batch checks the sandbox as root sets it up")]

LEAVES_PROCESSES = "group_persistence"   # its daemons outlive the worker unless the sandbox ends them


@pytest.fixture(scope="module", params=["process", "nons", pytest.param("docker", marks=pytest.mark.docker)])
def batch(request: pytest.FixtureRequest, class_batches: Any) -> Batch:
    if request.param == "docker":
        require_docker()
    graded: Batch = class_batches.get(request.param)
    return graded


@pytest.fixture(scope="module")
def blank_score(batch: Batch) -> float:
    data = batch.results(BLANK)
    check_gradescope(data)
    return float(data["score"])


def _lines(batch: Batch, attack: Attack) -> list[str]:
    """What the attack printed (in a group, the lines tagged with its name)."""
    printed = batch.student_output(attack.student).splitlines()
    if not attack.group:
        return printed
    return [line for line in printed if line.startswith(("HOSTILE-BLOCKED: [", "HOSTILE-SUCCESS: [")) and f"[{attack.name}]" in line]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_scores_no_more_than_blank_and_achieves_nothing(batch: Batch, attack: Attack, blank_score: float) -> None:
    data = batch.results(attack.student)
    check_gradescope(data)
    bound = blank_score if attack.at_most == BLANK else batch.results(attack.at_most)["score"]
    assert data["score"] <= bound, f"{attack.name} scored {data['score']} > {attack.at_most} {bound}"
    lines = _lines(batch, attack)
    text = json.dumps(data) + "\n" + batch.student_output(attack.student)
    if batch.gap_mode not in attack.known_gap:
        worked = [line for line in (lines if attack.group else text.splitlines()) if "HOSTILE-SUCCESS" in line]
        assert not worked, f"{attack.name} worked under {batch.gap_mode}:\n" + "\n".join(worked)[:3000]
    assert batch.secret not in text, f"{attack.name} read a classmate's files"
    if not attack.zip:
        assert any("HOSTILE-BLOCKED" in line for line in lines), f"{attack.name} did not run:\n{data['output'][:2000]}"
    assert data["execution_time"] < SUBMISSION_TIMEOUT + 30, "the submission time limit did not hold"


def test_nothing_an_attack_started_is_still_running(batch: Batch) -> None:
    assert batch.leftovers == [], f"processes left by attacks: {batch.leftovers}"
    assert leftovers(batch.token) == []
    assert batch.planted == [] or batch.gap_mode == "nons-without-landlock", f"files planted outside the sandbox: {batch.planted}"
    assert planted(batch.token) == []
    if batch.mode == "docker":
        assert containers(batch.token) == [], "containers of the batch are left behind"


def test_processes_killed_after_their_worker_are_in_the_results(batch: Batch) -> None:
    """The persistence attacks leave daemons behind: the sandbox killed them, and the results say so."""
    data = batch.results(LEAVES_PROCESSES)
    notes = data["extra_data"]["leftovers"]
    assert notes and all("started by the submission were still running when its worker ended" in n for n in notes), notes
    assert set(notes) <= set(data["extra_data"]["warnings"]), "the instructor's report shows the warnings"
    assert any(f"rt-{batch.token}-" in n for n in notes), f"the daemons' names are not in {notes}"
    assert f"dlgrade: {LEAVES_PROCESSES}: " in batch.run.stderr and "were killed" in batch.run.stderr
    assert batch.results(BLANK)["extra_data"]["leftovers"] == []


def test_classmates_are_graded_as_if_alone(batch: Batch, class_batches: Any) -> None:
    alone = class_batches.alone()
    for name in CLASSMATES:
        together, by_itself = batch.results(name), alone.results(name)
        assert together["score"] == by_itself["score"], name
        assert [(t["name"], t["status"], t["output"]) for t in together["tests"]] == \
            [(t["name"], t["status"], t["output"]) for t in by_itself["tests"]], name
        assert together["extra_data"]["student"] == name
    assert batch.results("classmate_honest")["score"] == batch.results("classmate_honest")["extra_data"]["max_score"]
    assert 0 < batch.results("classmate_partial")["score"] < batch.results("classmate_partial")["extra_data"]["max_score"]


def test_no_result_forged_and_nothing_reached_the_network(batch: Batch) -> None:
    out = batch.out
    for path in out.glob("*/results.json"):
        data = json.loads(path.read_text())
        assert data["extra_data"]["student"] == path.parent.name
        assert data["score"] <= data["extra_data"]["max_score"]
        assert "HOSTILE-SUCCESS" not in data.get("output", "")
    assert "9999" not in (out / "grades.csv").read_text()
    assert batch.listener_got == []
    names = {f"rt-{batch.token}-slipped", f"rt-{batch.token}-slipped.py"}
    assert all(any(n in entry for n in names) for entry in slipped_entries(batch.token))
    for folder in (batch.base, batch.base.parent, batch.base / "class", Path("/tmp")):
        for name in names:
            assert not (folder / name).exists(), f"zip slip wrote {folder / name}"


def test_batch_time_and_outcome_table(batch: Batch, blank_score: float) -> None:
    """Write the outcome of every attack (for docs/security.md) and keep the batch within its time budget."""
    rows = []
    for attack in ATTACKS:
        data = batch.results(attack.student)
        lines = _lines(batch, attack)
        blocked = sum(1 for line in lines if line.startswith("HOSTILE-BLOCKED"))
        worked = sum(1 for line in lines if line.startswith("HOSTILE-SUCCESS"))
        rows.append({"attack": attack.name, "submission": attack.student, "score": data["score"], "blank": blank_score,
                     "bound": blank_score if attack.at_most == BLANK else batch.results(attack.at_most)["score"],
                     "blocked": blocked, "seconds": round(data["execution_time"], 2), "worked": worked,
                     "known_gap": batch.gap_mode in attack.known_gap, "leftovers": data["extra_data"]["leftovers"]})
    table = Path(os.environ.get("DLGRADE_REDTEAM_TABLE", batch.base.parent)) / f"redteam-{batch.mode}.json"
    try:
        table.write_text(json.dumps({"mode": batch.mode, "gap_mode": batch.gap_mode, "seconds": batch.seconds,
                                     "students": len(batch.students), "hostile_fixtures": batch.hostile, "rows": rows},
                                    indent=1))
    except OSError:
        pass
    # measured on this 2-core machine at load 1-3 (docs/security.md): process 214 s, docker 321-400 s, nons 59 s
    budget = 600 if batch.hostile else 240   # with the hostile fixtures the class is twice as large, mostly training
    assert batch.seconds < budget, f"the {batch.mode} class took {batch.seconds:.0f} s"
