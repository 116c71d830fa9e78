"""The red-team corpus (``fixtures/lstm_lm_vit/redteam.toml``), graded as one class per sandbox mode.

Each mode grades one batch, two at a time with short limits: the blank skeleton, two honest
classmates (their files hold a secret string) and every attack (the blank skeleton with an attack
at import, or a hostile archive). Then:

- every attack scores no more than the blank skeleton, and none printed HOSTILE-SUCCESS;
- no attack's results or printed output hold the classmates' secret (nothing of theirs was read);
- nothing an attack started is still running, and no container is left;
- the classmates' results equal those of grading them alone, with the same seed;
- nothing reached the grader's network listener, and no results file was forged.

Modes: ``process`` (as root: namespaces, the allow-listed view, a PID namespace per worker, seccomp),
``nons`` (the process sandbox with DLGRADE_NAMESPACES=0, as on Gradescope: a uid of its own, rlimits
and seccomp only) and ``docker``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, CliRun, check_gradescope, docker_containers, require_docker, run_dlgrade, write_files
from test_hostile import Listener

from dlgrade.release import reference_submission, skeleton_files
from dlgrade.tomlcompat import tomllib

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the red-team batch checks the sandbox as root sets it up")]

CORPUS = Path(__file__).resolve().parent / "fixtures" / "lstm_lm_vit" / "redteam.toml"
SEED = 4321
CLASSMATES = ("classmate_honest", "classmate_partial")
BLANK = "blank"
LIMITS = ("--seed", str(SEED), "--call-timeout", "10", "--submission-timeout", "40", "--no-report")


@dataclass(frozen=True)
class Attack:
    name: str
    why: str
    file: tuple[str, ...] = ("lstm_solution.py",)
    prepend: str | None = None
    find: str | None = None
    replace: str | None = None
    replace_all: bool = False
    zip: str | None = None
    group: str | None = None
    control: bool = False
    at_most: str = "blank"
    known_gap: tuple[str, ...] = ()

    @property
    def student(self) -> str:
        """The submission that carries the attack (a group's attacks share one)."""
        return f"group_{self.group}" if self.group else self.name


def load_corpus() -> tuple[str, list[Attack]]:
    raw = tomllib.loads(CORPUS.read_text())
    attacks = []
    for entry in raw["attack"]:
        unknown = set(entry) - set(Attack.__dataclass_fields__)
        assert not unknown, f"{entry.get('name')}: unknown fields {unknown}"
        files = entry.get("file", "lstm_solution.py")
        attacks.append(Attack(**{**entry, "known_gap": tuple(entry.get("known_gap", ())),
                                 "file": (files,) if isinstance(files, str) else tuple(files)}))
        assert not (attacks[-1].group and (attacks[-1].find or attacks[-1].zip)), f"{entry['name']}: a group shares the blank files"
    assert len({a.name for a in attacks}) == len(attacks), "duplicate attack names"
    return raw["prelude"]["code"], attacks


PRELUDE, CORPUS_ENTRIES = load_corpus()
ATTACKS = [a for a in CORPUS_ENTRIES if not a.control]
CONTROLS = [a for a in CORPUS_ENTRIES if a.control]


def _fill(text: str, ph: dict[str, str]) -> str:
    for key, value in ph.items():
        text = text.replace("{" + key + "}", value)
    return text


def _blank(cfg) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    skeleton = skeleton_files(cfg)
    return {rel: skeleton[rel] for rel in cfg.submit}


def _attack_files(cfg, attack: Attack, ph: dict[str, str]) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    files = {rel: data.decode() for rel, data in _blank(cfg).items()}
    for rel in attack.file:
        text = files[rel]
        if attack.find is not None:
            assert attack.find in text, f"{attack.name}: the find text is not in {rel}"
            text = text.replace(attack.find, _fill(attack.replace or "", ph), -1 if attack.replace_all else 1)
        if attack.prepend is not None:
            text = _fill(PRELUDE, ph) + "\n" + _fill(attack.prepend, ph) + "\n" + text
        files[rel] = text
    return {rel: t.encode() for rel, t in files.items()}


def _group_files(cfg, attacks: list[Attack], ph: dict[str, str]) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """One submission running several attacks, each in its own namespace, its printed lines tagged with its name."""
    codes = {a.name: _fill(a.prepend or "", ph) for a in attacks}
    runner = (f"_ATTACKS = {codes!r}\n"
              "for _attack_name, _code in _ATTACKS.items():\n"
              "    _TAG[0] = _attack_name\n"
              "    try:\n"
              "        exec(compile(_code, _attack_name, 'exec'), dict(globals()))\n"
              "    except BaseException as _exc:  # noqa: B036\n"
              "        _say(False, f'{type(_exc).__name__} ({_exc})')\n"
              "_TAG[0] = ''\n")
    files = {rel: data.decode() for rel, data in _blank(cfg).items()}
    files["lstm_solution.py"] = _fill(PRELUDE, ph) + "\n" + runner + "\n" + files["lstm_solution.py"]
    return {rel: t.encode() for rel, t in files.items()}


def _zip_attack(cfg, kind: str, folder: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """Hostile archives and folders: what intake must refuse or neutralise."""
    blank = _blank(cfg)
    ref = ROOT / "reference_solutions" / "lstm_lm_vit" / "lstm_solution.py"
    if kind == "folder_symlinks":
        sub = write_files({"vit_solution.py": blank["vit_solution.py"]}, folder / name)
        (sub / "lstm_solution.py").symlink_to(ref)
        (sub / "shadow.py").symlink_to("/etc/shadow")
        return
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("vit_solution.py", blank["vit_solution.py"])
        if kind == "symlink":
            info = zipfile.ZipInfo("lstm_solution.py")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, str(ref))
        elif kind == "slip":
            for entry in ("../../rt-slipped/lstm_solution.py", "/tmp/rt-slipped/lstm_solution.py", "a/../../../rt-slipped.py"):
                zf.writestr(zipfile.ZipInfo(entry), blank["lstm_solution.py"])
        elif kind == "bomb":
            zf.writestr(zipfile.ZipInfo("bomb.zip"), _bomb())
            with zf.open(zipfile.ZipInfo("lstm_solution.py"), "w", force_zip64=True) as member:
                chunk = b"#" * (1 << 20)
                for _ in range(64):
                    member.write(chunk)
        else:
            raise AssertionError(f"unknown archive attack {kind}")
    (folder / f"{name}.zip").write_bytes(buf.getvalue())


@functools.lru_cache(maxsize=1)
def _bomb() -> bytes:
    """A zip whose one member inflates to 1 GiB (about 1 MB compressed), built once per test run."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(zipfile.ZipInfo("lstm_solution.py"), "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 22)
            for _ in range(256):
                member.write(chunk)
    return buf.getvalue()


def _secret_classmates(cfg, secret: str) -> dict[str, dict[str, bytes]]:  # type: ignore[no-untyped-def]
    ref = reference_submission(cfg)
    mark = f"# {secret}\n".encode()
    return {"classmate_honest": {rel: mark + data for rel, data in ref.items()},
            "classmate_partial": {"lstm_solution.py": mark + ref["lstm_solution.py"],
                                  "vit_solution.py": mark + _blank(cfg)["vit_solution.py"]}}


def _leftovers() -> list[str]:
    """Processes an attack left running (they name themselves rt-...)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm.startswith("rt-") and state not in ("Z", "X"):
            found.append(f"{pid} {comm}")
    return found


@dataclass
class Batch:
    mode: str
    run: CliRun
    alone: CliRun
    secret: str
    leftovers: list[str]
    listener_got: list[str]
    base: Path
    seconds: float
    outcomes: dict[str, Any] = field(default_factory=dict)

    def results(self, student: str) -> dict[str, Any]:
        return self.run.results(student)


def _grade(path: Path, out: Path, mode: str, *extra: str) -> CliRun:
    sandbox = "docker" if mode == "docker" else "process"
    env = {"DLGRADE_NAMESPACES": "0"} if mode == "nons" else {}
    proc = run_dlgrade("grade", "lstm_lm_vit", str(path), "--out", str(out), "--sandbox", sandbox, *LIMITS, *extra,
                       timeout=900, env=env)
    assert proc.returncode == 0, f"dlgrade grade exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return CliRun(proc.returncode, proc.stdout, proc.stderr, out)


# "nons" and "docker" are written but not yet run here: MODES_NOT_YET_VERIFIED
@pytest.fixture(scope="module", params=["process"])
def batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cfg) -> Any:  # type: ignore[no-untyped-def]
    mode = request.param
    if mode == "docker":
        require_docker()
    if mode == "nons":
        # without namespaces file permissions are the only barrier: the batch stays root-only (0700), as documented
        base = tmp_path_factory.mktemp("redteam-nons")
    else:
        # world-readable, as a class folder usually is: only the allow-listed view keeps it from the workers
        base = Path(tempfile.mkdtemp(prefix="dlgrade-redteam-", dir="/tmp"))
    subs, out = base / "class", base / "results"
    secret = "CLASSMATE-SECRET-" + secrets.token_hex(8)
    listener = Listener()
    ph = {"OUT": str(out), "BATCH": str(subs), "ROOT": str(ROOT), "SECRET": secret, "PORT": str(listener.port)}
    write_files(_blank(cfg), subs / BLANK)
    for name, files in _secret_classmates(cfg, secret).items():
        write_files(files, subs / name)
        write_files(files, base / "alone" / name)
    groups: dict[str, list[Attack]] = {}
    for attack in ATTACKS + CONTROLS:
        if attack.zip:
            _zip_attack(cfg, attack.zip, subs, attack.name)
        elif attack.group:
            groups.setdefault(attack.group, []).append(attack)
        else:
            write_files(_attack_files(cfg, attack, ph), subs / attack.name)
    for group, members in groups.items():
        write_files(_group_files(cfg, members, ph), subs / f"group_{group}")
    if mode != "nons":
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
    started = time.monotonic()
    try:
        run = _grade(subs, out, mode, "--jobs", "2")
        seconds = time.monotonic() - started
        time.sleep(1.0)  # give anything left behind a moment to show itself
        leftovers = _leftovers()
        alone = _grade(base / "alone", base / "alone-results", mode)
    finally:
        listener.close()
    yield Batch(mode, run, alone, secret, leftovers, list(listener.received), base, seconds)
    if mode != "nons":
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def blank_score(batch: Batch) -> float:
    data = batch.results(BLANK)
    check_gradescope(data)
    return float(data["score"])


def _lines(batch: Batch, attack: Attack) -> list[str]:
    """What the attack printed (in a group, the lines tagged with its name)."""
    printed = batch.run.student_output(attack.student).splitlines()
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
    text = json.dumps(data) + "\n" + batch.run.student_output(attack.student)
    if batch.mode not in attack.known_gap:
        worked = [line for line in (lines if attack.group else text.splitlines()) if "HOSTILE-SUCCESS" in line]
        assert not worked, f"{attack.name} worked under {batch.mode}:\n" + "\n".join(worked)[:3000]
    assert batch.secret not in text, f"{attack.name} read a classmate's files"
    if not attack.zip:
        assert any("HOSTILE-BLOCKED" in line for line in lines), f"{attack.name} did not run:\n{data['output'][:2000]}"
    assert data["execution_time"] < 40 + 30, "the submission time limit did not hold"


def test_nothing_an_attack_started_is_still_running(batch: Batch) -> None:
    assert batch.leftovers == [], f"processes left by attacks: {batch.leftovers}"
    assert _leftovers() == []
    if batch.mode == "docker":
        assert docker_containers() == [], "containers of the batch are left behind"


def test_classmates_are_graded_as_if_alone(batch: Batch) -> None:
    for name in CLASSMATES:
        together, alone = batch.results(name), batch.alone.results(name)
        assert together["score"] == alone["score"], name
        assert [(t["name"], t["status"], t["output"]) for t in together["tests"]] == \
            [(t["name"], t["status"], t["output"]) for t in alone["tests"]], name
        assert together["extra_data"]["student"] == name
    assert batch.results("classmate_honest")["score"] == batch.results("classmate_honest")["extra_data"]["max_score"]
    assert 0 < batch.results("classmate_partial")["score"] < batch.results("classmate_partial")["extra_data"]["max_score"]


def test_no_result_forged_and_nothing_reached_the_network(batch: Batch) -> None:
    out = batch.run.out
    for path in out.glob("*/results.json"):
        data = json.loads(path.read_text())
        assert data["extra_data"]["student"] == path.parent.name
        assert data["score"] <= data["extra_data"]["max_score"]
        assert "HOSTILE-SUCCESS" not in data.get("output", "")
    assert "9999" not in (out / "grades.csv").read_text()
    assert batch.listener_got == []
    for escaped in (batch.base / "rt-slipped", batch.base.parent / "rt-slipped", Path("/tmp/rt-slipped")):
        assert not escaped.exists(), f"zip slip wrote {escaped}"


def test_batch_time_and_outcome_table(batch: Batch, blank_score: float) -> None:
    """Write the outcome of every attack (for docs/security.md) and keep the batch within its time budget."""
    rows = []
    for attack in ATTACKS:
        data = batch.results(attack.student)
        lines = _lines(batch, attack)
        blocked = sum(1 for line in lines if line.startswith("HOSTILE-BLOCKED"))
        worked = sum(1 for line in lines if line.startswith("HOSTILE-SUCCESS"))
        rows.append({"attack": attack.name, "submission": attack.student, "score": data["score"], "blank": blank_score,
                     "blocked": blocked,
                     "seconds": round(data["execution_time"], 2),
                     "worked": worked, "known_gap": batch.mode in attack.known_gap})
    table = Path(os.environ.get("DLGRADE_REDTEAM_TABLE", batch.base.parent)) / f"redteam-{batch.mode}.json"
    try:
        table.write_text(json.dumps({"mode": batch.mode, "seconds": batch.seconds, "rows": rows}, indent=1))
    except OSError:
        pass
    assert batch.seconds < 240, f"the {batch.mode} red-team batch took {batch.seconds:.0f} s"
