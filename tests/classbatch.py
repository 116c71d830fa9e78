"""One class per sandbox mode, graded once per test session and shared by test_hostile.py and test_redteam.py.

Grading a class is the expensive part of both files (every submission runs the hidden suite), so each mode
grades ONE class, two at a time, with short limits, and both files assert on it:

- the hostile and broken fixtures of ``fixtures/lstm_lm_vit/hostile.toml`` (the reference with one patch each,
  and a zipped project), in the ``process`` and ``docker`` modes (broken code that attacks nothing: ``process``
  only, see its ``sandboxes``);
- the red-team corpus of ``fixtures/lstm_lm_vit/redteam.toml`` (the blank skeleton with an attack, hostile
  archives, two controls), the blank skeleton and two honest classmates whose files hold a secret, in every mode
  (``process``, ``nons``: the process sandbox with DLGRADE_NAMESPACES=0 as on Gradescope, ``docker``).

Every batch has a token of its own: the processes an attack leaves running name themselves ``rt-<token>-...``,
the files they plant carry it, and the batch's containers carry the tag ``<session tag>-<token>``, so a batch
counts only what it made, beside other batches and other runs of the suite on a busy machine.

The classmates (and the two hostile fixtures that the sandboxes are compared on) are also graded once alone, in
the process sandbox with the same seed: each batch's results for them must equal those.
"""

from __future__ import annotations

import functools
import io
import os
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import ROOT, SESSION_TAG, CliRun, load_hostile, materialise, run_dlgrade, write_files

from dlgrade.release import reference_submission, skeleton_files
from dlgrade.tomlcompat import tomllib

SEED = 1234
CALL_TIMEOUT = 5
SUBMISSION_TIMEOUT = 120   # a cap only: no fixture runs into it, and a loaded machine may need it
JOBS = 2                   # submissions graded at once (CI's machine has 2 cores)
MODES = ("process", "nons", "docker")
HOSTILE_MODES = ("process", "docker")   # nons: the Gradescope bundle's tests run hostile code without namespaces
CORPUS = Path(__file__).resolve().parent / "fixtures" / "lstm_lm_vit" / "redteam.toml"
CLASSMATES = ("classmate_honest", "classmate_partial")
BLANK = "blank"
ZIPPED = "zipped_project"      # the reference as a student zips it: nested, with junk and an escaping entry
COMPARED = ("passes_all", "wrong_values")   # hostile fixtures graded alone too (same seed, same results)


# ----------------------------------------------------------------------------- the grader's network listener


class Listener:
    """TCP and UDP sockets on the grader's loopback that record anything a worker sends them."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.received: list[str] = []
        self._stop = False
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            for sock in (self.tcp, self.udp):
                try:
                    if sock is self.tcp:
                        conn, addr = sock.accept()
                        self.received.append(f"tcp connection from {addr}")
                        conn.close()
                    else:
                        data, addr = sock.recvfrom(4096)
                        self.received.append(f"udp {data!r} from {addr}")
                except OSError:  # includes timeouts
                    pass

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.tcp.close()
        self.udp.close()


# ----------------------------------------------------------------------------- the red-team corpus


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
    gap: str = ""                 # why the modes of known_gap cannot stop it (docs/security.md says it too)

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
        assert set(attacks[-1].known_gap) <= {*MODES, "nons-without-landlock"}, f"{entry['name']}: unknown mode in known_gap"
        assert bool(attacks[-1].known_gap) == bool(attacks[-1].gap), f"{entry['name']}: a known gap says why (gap = ...)"
    assert len({a.name for a in attacks}) == len(attacks), "duplicate attack names"
    return raw["prelude"]["code"], attacks


PRELUDE, CORPUS_ENTRIES = load_corpus()
ATTACKS = [a for a in CORPUS_ENTRIES if not a.control]
CONTROLS = [a for a in CORPUS_ENTRIES if a.control]
FIXTURES = load_hostile()


def _fill(text: str, ph: dict[str, str]) -> str:
    for key, value in ph.items():
        text = text.replace("{" + key + "}", value)
    return text


def blank_files(cfg) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    skeleton = skeleton_files(cfg)
    return {rel: skeleton[rel] for rel in cfg.submit}


def _attack_files(cfg, attack: Attack, ph: dict[str, str]) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    files = {rel: data.decode() for rel, data in blank_files(cfg).items()}
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
    files = {rel: data.decode() for rel, data in blank_files(cfg).items()}
    files["lstm_solution.py"] = _fill(PRELUDE, ph) + "\n" + runner + "\n" + files["lstm_solution.py"]
    return {rel: t.encode() for rel, t in files.items()}


def _zip_attack(cfg, kind: str, folder: Path, name: str, token: str) -> None:  # type: ignore[no-untyped-def]
    """Hostile archives and folders: what intake must refuse or neutralise."""
    blank = blank_files(cfg)
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
            for entry in slipped_entries(token):
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


def slipped_entries(token: str) -> tuple[str, ...]:
    return (f"../../rt-{token}-slipped/lstm_solution.py", f"/tmp/rt-{token}-slipped/lstm_solution.py",
            f"a/../../../rt-{token}-slipped.py")


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


def secret_classmates(cfg, secret: str) -> dict[str, dict[str, bytes]]:  # type: ignore[no-untyped-def]
    ref = reference_submission(cfg)
    mark = f"# {secret}\n".encode()
    return {"classmate_honest": {rel: mark + data for rel, data in ref.items()},
            "classmate_partial": {"lstm_solution.py": mark + ref["lstm_solution.py"],
                                  "vit_solution.py": mark + blank_files(cfg)["vit_solution.py"]}}


def zipped_project(cfg, path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = reference_submission(cfg)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {"hw3/src/lstm_solution.py": ref["lstm_solution.py"], "hw3/vit_solution.py": ref["vit_solution.py"],
                           "__MACOSX/hw3/src/._lstm_solution.py": b"\x00\x05\x16\x07", "__MACOSX/hw3/vit_solution.py": b"junk",
                           "../../escaped/lstm_solution.py": b"raise SystemExit('climbed out')"}.items():
            zf.writestr(zipfile.ZipInfo(name), data)


# ----------------------------------------------------------------------------- what a batch left behind


def leftovers(token: str) -> list[str]:
    """Live processes that a batch's attacks started and left running (they name themselves rt-<token>-...)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm.startswith(f"rt-{token}-") and state not in ("Z", "X"):
            found.append(f"{pid} {comm}")
    return found


def planted(token: str) -> list[Path]:
    """Files a batch's attacks left in the machine's shared folders (only a worker without a view of its own can)."""
    return [p for folder in (Path("/tmp"), Path("/dev/shm")) for p in folder.glob(f"rt-{token}-*")]


def containers(token: str) -> list[str]:
    """The batch's containers that still exist (running or not)."""
    import docker

    label = f"dlgrade.tag={SESSION_TAG}-{token}"
    return [c.short_id for c in docker.from_env().containers.list(all=True, filters={"label": [label]})]


# ----------------------------------------------------------------------------- grading


@dataclass
class Batch:
    mode: str
    run: CliRun
    base: Path
    token: str
    secret: str
    placeholders: dict[str, str]
    students: set[str]
    hostile: bool                  # the hostile fixtures are in the class
    seconds: float
    leftovers: list[str]           # rt-<token>-* processes a second after the batch
    planted: list[str]             # rt-<token>-* files in /tmp and /dev/shm after the batch
    listener_got: list[str]
    landlock: bool = True          # nons: the worker was confined by Landlock ABI 6+ (else file permissions alone)
    outcomes: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.run.out

    @property
    def gap_mode(self) -> str:
        """The mode as known_gap names it ("nons-without-landlock" where the kernel offers no Landlock)."""
        return "nons-without-landlock" if self.mode == "nons" and not self.landlock else self.mode

    def results(self, student: str) -> dict[str, Any]:
        return self.run.results(student)

    def student_output(self, student: str) -> str:
        return self.run.student_output(student)


def grade(path: Path, out: Path, mode: str, *extra: str, tag: str | None = None) -> CliRun:
    sandbox = "docker" if mode == "docker" else mode if mode == "inprocess" else "process"
    env = {"DLGRADE_NAMESPACES": "0"} if mode == "nons" else {}
    if tag:
        env["DLGRADE_CONTAINER_TAG"] = tag
    proc = run_dlgrade("grade", "lstm_lm_vit", str(path), "--out", str(out), "--sandbox", sandbox, "--seed", str(SEED),
                       "--call-timeout", str(CALL_TIMEOUT), "--submission-timeout", str(SUBMISSION_TIMEOUT), "--no-report",
                       "--allow-broken", *extra, timeout=1500, env=env)
    assert proc.returncode == 0, f"dlgrade grade exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return CliRun(proc.returncode, proc.stdout, proc.stderr, out)


class ClassBatches:
    """The session's graded classes, one per mode, graded on first use; removed at the end of the session."""

    def __init__(self, cfg, tmp: Path) -> None:  # type: ignore[no-untyped-def]
        self.cfg = cfg
        self.tmp = tmp
        self.secret = "CLASSMATE-SECRET-" + secrets.token_hex(8)
        self.batches: dict[str, Batch] = {}
        self._alone: CliRun | None = None
        self._bases: list[Path] = []

    def get(self, mode: str) -> Batch:
        if mode not in self.batches:
            self.batches[mode] = self._grade(mode)
        return self.batches[mode]

    def alone(self) -> CliRun:
        """The classmates and COMPARED fixtures graded alone (process sandbox, the batches' seed)."""
        if self._alone is None:
            base = self.tmp / "alone"
            for name, files in secret_classmates(self.cfg, self.secret).items():
                write_files(files, base / "class" / name)
            fixtures = {f.name: f for f in FIXTURES}
            for name in COMPARED:
                materialise(self.cfg, fixtures[name], base / "class")
            self._alone = grade(base / "class", base / "results", "process", "--jobs", str(JOBS))
        return self._alone

    def _grade(self, mode: str) -> Batch:
        token = secrets.token_hex(2)
        if mode == "nons":
            # without namespaces file permissions are the only barrier besides Landlock: the batch stays root-only (0700)
            base = Path(tempfile.mkdtemp(prefix=f"dlgrade-class-{mode}-", dir=self.tmp))
        else:
            # world-readable, as a class folder usually is: only the sandbox keeps it from the workers
            base = Path(tempfile.mkdtemp(prefix=f"dlgrade-class-{mode}-", dir="/tmp"))
            self._bases.append(base)
        subs, out = base / "class", base / "results"
        listener = Listener()
        ph = {"OUT": str(out), "BATCH": str(subs), "ROOT": str(ROOT), "SECRET": self.secret, "PORT": str(listener.port),
              "TOKEN": token}
        hostile = mode in HOSTILE_MODES
        if hostile:
            for fixture in (f for f in FIXTURES if mode in f.sandboxes):
                materialise(self.cfg, fixture, subs, ph)
            zipped_project(self.cfg, subs / f"{ZIPPED}.zip")
        write_files(blank_files(self.cfg), subs / BLANK)
        for name, files in secret_classmates(self.cfg, self.secret).items():
            write_files(files, subs / name)
        groups: dict[str, list[Attack]] = {}
        for attack in ATTACKS + CONTROLS:
            if attack.zip:
                _zip_attack(self.cfg, attack.zip, subs, attack.name, token)
            elif attack.group:
                groups.setdefault(attack.group, []).append(attack)
            else:
                write_files(_attack_files(self.cfg, attack, ph), subs / attack.name)
        for group, members in groups.items():
            write_files(_group_files(self.cfg, members, ph), subs / f"group_{group}")
        students = {p.name.removesuffix(".zip") for p in subs.iterdir()}
        assert len(students) == len(list(subs.iterdir())), "two submissions of the class share a name"
        if mode != "nons":
            for path in [base, *base.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
        started = time.monotonic()
        try:
            run = grade(subs, out, mode, "--jobs", str(JOBS), tag=f"{SESSION_TAG}-{token}")
            seconds = time.monotonic() - started
            time.sleep(1.0)  # give anything left behind a moment to show itself
            left, files = leftovers(token), [str(p) for p in planted(token)]
        finally:
            listener.close()
            for path in planted(token):  # what a worker without a view of its own could leave in /tmp and /dev/shm
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        landlock = True
        if mode == "nons":
            warnings = run.results(BLANK)["extra_data"]["warnings"]
            # Landlock from ABI 6 on: the file system, abstract unix sockets and signals (dlgrade.worker.landlock)
            landlock = any("Landlock (ABI" in w and "abstract unix sockets and signals outside" in w for w in warnings)
        return Batch(mode, run, base, token, self.secret, ph, students, hostile, seconds, left, files,
                     list(listener.received), landlock)

    def cleanup(self) -> None:
        for base in self._bases:
            shutil.rmtree(base, ignore_errors=True)
