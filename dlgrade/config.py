"""Assignment settings, resolved once into frozen dataclasses.

Precedence (lowest first): ``assignment.toml`` < environment (``DLGRADE_<LIMIT>``, e.g.
``DLGRADE_MEMORY_MB``) < command line < a test's own marker. A bad value is reported with
where it came from (the file and the table or entry).

Tables of ``assignment.toml`` read here:

- ``submit``, ``release``: the files a student submits, and what the release holds;
- ``[parts]``: ``name = "title"``, or a table ``name = { title = "...", enabled = false, files = [...] }``; a part
  that is not enabled is not graded, and its files are not required;
- ``[limits]``: see :class:`Limits`;
- ``[[forbidden]]`` and ``[[imports]]``: the handout's rules, each scoped to files and, optionally, to classes or
  functions in them (see :class:`Rule`);
- ``[thresholds.<name>]``: threshold tests (see :class:`Threshold`);
- ``[[claims]]``: a metric a notebook's saved output must show, with its training log (see :class:`Claim`);
- ``[worker] preload``: installed modules imported before any student code (once by the process sandbox's zygote, by
  each docker container while it waits), so that each worker starts with them
  (``matplotlib.pyplot``, ``nltk``: a second or more each in a fresh interpreter); only a speed-up, never a
  requirement: a submission that does not import them behaves the same, and its own file of the same name wins.
Other tables (``[gradescope]``, ``[slurm]``, ``[notebooks]`` ...) belong to the stage that reads them, through ``raw``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dlgrade.errors import ConfigError
from dlgrade.tomlcompat import tomllib


@dataclass(frozen=True)
class Limits:
    call_timeout_s: float = 20.0
    submission_timeout_s: float = 600.0
    memory_mb: int = 3072
    processes: int = 64
    file_size_mb: int = 64
    cpus: int = 2


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    enabled: bool = True
    files: tuple[str, ...] = ()  # submitted files that belong to this part only (not required when it is turned off)


@dataclass(frozen=True)
class Rule:
    """One rule of the handout: an API ban (``[[forbidden]]``) or an import allow-list (``[[imports]]``).

    ``apis`` are dotted names; for ``forbidden`` they may end in a pattern (``torch.nn.*``, ``torch.nn.*Loss``), with
    ``allow`` listing the exceptions; for ``imports`` they are the module prefixes that may be imported. ``scope``
    names classes or functions of the files (``LayerNorm``, ``MultiHeadedAttention.forward``) where the rule applies,
    together with whatever they call in the same file; empty means the whole file. A broken rule costs the tests of
    ``parts``. ``runtime`` rules are also watched in the worker while their scope runs.
    """

    kind: str
    apis: tuple[str, ...]
    files: tuple[str, ...]
    parts: tuple[str, ...]
    scope: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    runtime: bool = True
    why: str = ""
    origin: str = ""

    @property
    def label(self) -> str:
        return self.apis[0] if len(self.apis) == 1 else f"{self.apis[0]} (and {len(self.apis) - 1} more)"

    def applies_to(self, filename: str) -> bool:
        return filename in self.files


@dataclass(frozen=True)
class Threshold:
    """A threshold test: train for a fixed budget, then a metric must pass ``threshold`` in ``direction``."""

    name: str
    recipe: str
    metric: str
    direction: str                       # "lower" (perplexity) or "higher" (accuracy)
    threshold: float
    steps: int
    batch_size: int
    lr: float
    model_args: dict[str, Any]
    data_args: dict[str, Any]
    bad: tuple[str, ...] = ()            # catalogued bugs calibration trains next to the reference
    required_bad: tuple[str, ...] = ()   # the ones the threshold must reject on every seed
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # calibration: the reference with other model_args
    options: dict[str, Any] = field(default_factory=dict)  # other keys (decay, kind, warmup_steps ...), passed to the recipe

    def passes(self, value: float) -> bool:
        return value <= self.threshold if self.direction == "lower" else value >= self.threshold

    def recipe_kwargs(self) -> dict[str, Any]:
        """What the recipe takes besides the data and the seed."""
        return {"model_args": dict(self.model_args), "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                **self.options}


@dataclass(frozen=True)
class Claim:
    """A result the handout wants shown in a notebook's output (``[[claims]]``): the training log and a final metric.

    The saved outputs are read on the trusted side, never run (:mod:`dlgrade.notebook.claims`); reports show the claimed
    value next to the one the test of ``[thresholds.<threshold>]`` re-measures on generated data. Without a training log
    (at least ``min_log_lines`` lines) or a final value, ``missing = "zero"`` takes the points of every test of ``part``
    (the handout's rule) and ``"warn"`` only warns. ``split`` says which value is the final one (``test``: a test
    value, or else an unlabelled one outside the log; ``valid``; ``any``). ``pattern`` (one group: the number) and
    ``log_pattern`` replace the built-in readings.
    """

    name: str
    notebook: str
    kind: str                            # "accuracy" (a fraction; percents are converted) | "perplexity" | "loss"
    part: str = ""
    threshold: str = ""
    handout_target: float | None = None  # the handout's target on the real data set (shown in reports)
    missing: str = "zero"                # "zero" | "warn"
    split: str = "test"                  # "test" | "valid" | "any"
    spec: str = ""                       # the handout sentence of the rule (quoted in the message)
    pattern: str = ""
    log_pattern: str = ""
    min_log_lines: int = 1               # 0: only the final value is required
    origin: str = ""


@dataclass(frozen=True)
class AssignmentConfig:
    id: str
    title: str
    root: Path
    submit: tuple[str, ...]
    release: tuple[str, ...]
    all_parts: dict[str, Part]
    limits: Limits
    rules: tuple[Rule, ...]
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    claims: tuple[Claim, ...] = ()
    preload: tuple[str, ...] = ()        # [worker] preload: modules the zygote imports for every worker

    @property
    def parts(self) -> dict[str, str]:
        """The graded parts (name -> title), in order: the columns of grades.csv."""
        return {p.name: p.title for p in self.all_parts.values() if p.enabled}

    @property
    def disabled_parts(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.all_parts.values() if not p.enabled)

    @property
    def optional_files(self) -> tuple[str, ...]:
        """Submitted files that belong only to parts that are turned off."""
        return tuple(f for p in self.all_parts.values() if not p.enabled for f in p.files)

    @property
    def assignment_dir(self) -> Path:
        return self.root / "assignments" / self.id

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference_solutions" / self.id

    @property
    def grader_dir(self) -> Path:
        return self.root / "graders" / self.id

    @property
    def modules(self) -> tuple[str, ...]:
        # models/naive/RNN.py -> models.naive.RNN (flat files keep their stem; a notebook gives its stem too)
        return tuple(module_name(f) for f in self.submit)

    def with_limits(self, **overrides: Any) -> AssignmentConfig:
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, limits=_limits(given, dict(vars(self.limits)), "the command line"))


def module_name(submitted: str) -> str:
    """The importable module of a submitted file: ``models/naive/RNN.py`` -> ``models.naive.RNN``."""
    return Path(submitted).with_suffix("").as_posix().replace("/", ".")


def find_root(start: Path | None = None) -> Path:
    """The project root: $DLGRADE_ROOT, else the nearest folder above holding assignments/ and graders/."""
    env = os.environ.get("DLGRADE_ROOT")
    if env:
        return Path(env).resolve()
    for base in [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]:
        for cand in [base, *base.parents]:
            if (cand / "assignments").is_dir() and (cand / "graders").is_dir():
                return cand
    raise ConfigError("cannot find the dlgrade project root (a folder with assignments/ and graders/); set DLGRADE_ROOT")


def known_assignments(root: Path | None = None) -> list[str]:
    root = root or find_root()
    folder = root / "assignments"
    return sorted(p.name for p in folder.iterdir() if (p / "assignment.toml").is_file()) if folder.is_dir() else []


def _limits(values: dict[str, Any], base: dict[str, Any], origin: str) -> Limits:
    out = dict(base)
    types = {f.name: f.type for f in fields(Limits)}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"{origin}: unknown limit {key!r} (known: {', '.join(sorted(types))})")
        cast = float if "float" in str(types[key]) else int
        try:
            number = cast(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: limit {key} must be a number, got {value!r}") from None
        if number <= 0:
            raise ConfigError(f"{origin}: limit {key} must be positive, got {value!r}")
        out[key] = number
    return Limits(**out)


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a string or a list of strings, got {value!r}")
    return tuple(value)


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _preload(raw: dict[str, Any], submit: tuple[str, ...], where: str) -> tuple[str, ...]:
    worker = raw.get("worker", {})
    if not isinstance(worker, dict):
        raise ConfigError(f"{where}: [worker] must be a table")
    unknown = sorted(set(worker) - {"preload"})
    if unknown:
        raise ConfigError(f"{where} [worker]: unknown key(s) {', '.join(unknown)} (known: preload)")
    names = _strings(worker.get("preload", []), f"{where} [worker]", "preload")
    own = {module_name(f).split(".")[0] for f in submit}
    for name in names:
        if not _MODULE.fullmatch(name):
            raise ConfigError(f"{where} [worker] preload: {name!r} is not a module name (e.g. matplotlib.pyplot)")
        if name.split(".")[0] in own:
            raise ConfigError(f"{where} [worker] preload: {name!r} is a submitted module; only installed ones can be preloaded")
    return names


def _parts(raw: dict[str, Any], submit: tuple[str, ...], where: str) -> dict[str, Part]:
    out: dict[str, Part] = {}
    for name, value in raw.get("parts", {}).items():
        if isinstance(value, str):
            out[name] = Part(name, value)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where} [parts] {name}: a title or a table with title, enabled, files")
        unknown = set(value) - {"title", "enabled", "files"}
        if unknown:
            raise ConfigError(f"{where} [parts.{name}]: unknown keys {sorted(unknown)} (known: title, enabled, files)")
        files = _strings(value.get("files", []), f"{where} [parts.{name}]", "files")
        stray = [f for f in files if f not in submit]
        if stray:
            raise ConfigError(f"{where} [parts.{name}]: files {stray} are not in submit")
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where} [parts.{name}]: enabled must be true or false, got {enabled!r}")
        out[name] = Part(name, str(value.get("title", name)), enabled, files)
    return out


_RULE_KEYS = {"api", "apis", "files", "parts", "scope", "allow", "runtime", "why"}
_QUALNAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")


def _rules(raw: dict[str, Any], submit: tuple[str, ...], parts: dict[str, Part], where: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for kind in ("forbidden", "imports"):
        for i, entry in enumerate(raw.get(kind, []), 1):
            origin = f"{where} [[{kind}]] entry {i}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{origin}: must be a table")
            unknown = set(entry) - _RULE_KEYS
            if unknown:
                raise ConfigError(f"{origin}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(_RULE_KEYS))})")
            key = "allow" if kind == "imports" else ("apis" if "apis" in entry else "api")
            if key not in entry:
                raise ConfigError(f"{origin}: needs {'allow (the modules that may be imported)' if kind == 'imports' else 'apis'}")
            apis = _strings(entry[key], origin, key)
            files = _strings(entry.get("files", list(submit)), origin, "files")
            stray = [f for f in files if f not in submit]
            if stray:
                raise ConfigError(f"{origin}: files {stray} are not in submit")
            rule_parts = _strings(entry.get("parts", []), origin, "parts")
            unknown_parts = [p for p in rule_parts if p not in parts]
            if unknown_parts:
                raise ConfigError(f"{origin}: unknown parts {unknown_parts} (known: {', '.join(parts)})")
            scope = _strings(entry.get("scope", []), origin, "scope")
            bad_scope = [s for s in scope if not _QUALNAME.match(s)]
            if bad_scope:
                raise ConfigError(f"{origin}: scope entries must be Class, function or Class.method, got {bad_scope}")
            runtime = entry.get("runtime", kind == "forbidden")
            if not isinstance(runtime, bool):
                raise ConfigError(f"{origin}: runtime must be true or false")
            rules.append(Rule(kind=kind, apis=apis, files=files, parts=rule_parts, scope=scope,
                              allow=_strings(entry.get("allow", []), origin, "allow") if kind == "forbidden" else (),
                              runtime=runtime and kind == "forbidden", why=str(entry.get("why", "")), origin=origin))
    return tuple(rules)


_THRESHOLD_KEYS = {"recipe", "metric", "direction", "threshold", "steps", "batch_size", "lr", "model_args", "data_args",
                   "bad", "required_bad", "variants"}


def _thresholds(raw: dict[str, Any], where: str) -> dict[str, Threshold]:
    out: dict[str, Threshold] = {}
    for name, t in raw.get("thresholds", {}).items():
        origin = f"{where} [thresholds.{name}]"
        missing = {"threshold", "steps", "batch_size", "lr", "direction"} - set(t)
        if missing:
            raise ConfigError(f"{origin}: missing {sorted(missing)}")
        if t["direction"] not in ("lower", "higher"):
            raise ConfigError(f"{origin}: direction must be 'lower' or 'higher', got {t['direction']!r}")
        try:
            out[name] = Threshold(
                name=name, recipe=str(t.get("recipe", f"train_{name}")), metric=str(t.get("metric", name)),
                direction=t["direction"], threshold=float(t["threshold"]), steps=int(t["steps"]),
                batch_size=int(t["batch_size"]), lr=float(t["lr"]), model_args=dict(t.get("model_args", {})),
                data_args=dict(t.get("data_args", {})), bad=_strings(t.get("bad", []), origin, "bad"),
                required_bad=_strings(t.get("required_bad", t.get("bad", [])), origin, "required_bad"),
                variants={str(k): dict(v.get("model_args", {})) for k, v in t.get("variants", {}).items()},
                options={k: v for k, v in t.items() if k not in _THRESHOLD_KEYS})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    return out


_CLAIM_KEYS = {"name", "notebook", "kind", "part", "threshold", "handout_target", "missing", "split", "spec", "pattern",
               "log_pattern", "min_log_lines"}
CLAIM_KINDS = ("accuracy", "perplexity", "loss")
_CLAIM_NAME = re.compile(r"^[A-Za-z0-9_][\w.-]*$")


def _regex(value: Any, origin: str, key: str, groups: int) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{origin}: {key} must be a regular expression (a non-empty string), got {value!r}")
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{origin}: {key} {value!r} is not a regular expression ({exc})") from None
    if compiled.groups < groups:
        raise ConfigError(f"{origin}: {key} {value!r} needs a group around the number, e.g. 'accuracy: ([0-9.]+)'")
    return value


def _claims(raw: dict[str, Any], submit: tuple[str, ...], parts: dict[str, Part], thresholds: dict[str, Threshold],
            where: str) -> tuple[Claim, ...]:
    entries = raw.get("claims", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where} claims: write each claim as a [[claims]] table")
    out: list[Claim] = []
    for i, entry in enumerate(entries, 1):
        origin = f"{where} [[claims]] entry {i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: must be a table")
        origin += f" ({entry['name']})" if isinstance(entry.get("name"), str) else ""
        unknown = set(entry) - _CLAIM_KEYS
        if unknown:
            raise ConfigError(f"{origin}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(_CLAIM_KEYS))})")
        for key in ("name", "notebook", "kind"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{origin}: {key} is required (a string)")
        for key in ("part", "threshold", "missing", "split", "spec"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(f"{origin}: {key} must be a string, got {entry[key]!r}")
        name, nb, kind = entry["name"], entry["notebook"], entry["kind"]
        if not _CLAIM_NAME.match(name):
            raise ConfigError(f"{origin}: name {name!r} may hold letters, digits, '_', '.' and '-' only")
        if any(c.name == name for c in out):
            raise ConfigError(f"{origin}: name {name!r} is used by another [[claims]] entry")
        if nb not in submit or not nb.endswith(".ipynb"):
            notebooks = [f for f in submit if f.endswith(".ipynb")]
            raise ConfigError(f"{origin}: notebook {nb!r} is not a notebook of submit ({', '.join(notebooks) or 'none'})")
        if kind not in CLAIM_KINDS:
            raise ConfigError(f"{origin}: kind must be one of {', '.join(CLAIM_KINDS)}, got {kind!r}")
        missing = entry.get("missing", "zero")
        if missing not in ("zero", "warn"):
            raise ConfigError(f"{origin}: missing must be 'zero' (the handout's rule) or 'warn', got {missing!r}")
        part = entry.get("part", "")
        if part and part not in parts:
            raise ConfigError(f"{origin}: part {part!r} is not a part of [parts] (known: {', '.join(parts) or 'none'})")
        if missing == "zero" and not part:
            raise ConfigError(f"{origin}: part is required with missing = 'zero' (the part whose points the rule takes)")
        threshold = entry.get("threshold", "")
        if threshold and threshold not in thresholds:
            raise ConfigError(f"{origin}: threshold {threshold!r} has no [thresholds.{threshold}] "
                              f"(known: {', '.join(thresholds) or 'none'})")
        split = entry.get("split", "test")
        if split not in ("test", "valid", "any"):
            raise ConfigError(f"{origin}: split must be 'test', 'valid' or 'any', got {split!r}")
        target = entry.get("handout_target")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
                raise ConfigError(f"{origin}: handout_target must be a number, got {target!r}")
            if kind == "accuracy" and not 0 <= target <= 1:
                raise ConfigError(f"{origin}: handout_target of an accuracy is a fraction (65 % is 0.65), got {target!r}")
        min_lines = entry.get("min_log_lines", 1)
        if isinstance(min_lines, bool) or not isinstance(min_lines, int) or min_lines < 0:
            raise ConfigError(f"{origin}: min_log_lines must be a whole number >= 0, got {min_lines!r}")
        out.append(Claim(name=name, notebook=nb, kind=kind, part=part, threshold=threshold,
                         handout_target=None if target is None else float(target), missing=missing, split=split,
                         spec=entry.get("spec", "").strip(),
                         pattern=_regex(entry["pattern"], origin, "pattern", 1) if "pattern" in entry else "",
                         log_pattern=_regex(entry["log_pattern"], origin, "log_pattern", 0) if "log_pattern" in entry else "",
                         min_log_lines=min_lines, origin=origin))
    return tuple(out)


def load_assignment(assignment_id: str, root: Path | None = None) -> AssignmentConfig:
    root = root or find_root()
    path = root / "assignments" / assignment_id / "assignment.toml"
    if not path.is_file():
        raise ConfigError(f"no assignment {assignment_id!r} (looked for {path}); known: {', '.join(known_assignments(root)) or 'none'}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    where = str(path)
    limits = _limits(raw.get("limits", {}), dict(vars(Limits())), f"{where} [limits]")
    env = {f.name: os.environ[f"DLGRADE_{f.name.upper()}"] for f in fields(Limits) if f"DLGRADE_{f.name.upper()}" in os.environ}
    limits = _limits(env, dict(vars(limits)), "environment")
    submit = tuple(raw.get("submit", []))
    if not submit:
        raise ConfigError(f"{where}: 'submit' must list the files a student submits")
    parts = _parts(raw, submit, where)
    thresholds = _thresholds(raw, where)
    return AssignmentConfig(id=raw.get("id", assignment_id), title=raw.get("title", assignment_id), root=root,
                            submit=submit, release=tuple(raw.get("release", submit)), all_parts=parts, limits=limits,
                            rules=_rules(raw, submit, parts, where), thresholds=thresholds, raw=raw,
                            claims=_claims(raw, submit, parts, thresholds, where), preload=_preload(raw, submit, where))
