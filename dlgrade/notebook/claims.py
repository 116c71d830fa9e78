"""Training-log claims: what a submitted notebook's saved outputs show of its training (``[[claims]]``).

Handouts ask for the training log and the final metric to be left in a notebook's output ("Training log and final
accuracy should be shown in the output of the cell, otherwise you will get 0 point"). The grader cannot rerun a
30-minute training on the real data set; a threshold test re-measures the metric on generated data instead. This module
reads, on the trusted side and without running anything, the text outputs intake kept (:class:`CellOutput`: streams and
``text/plain`` results, error tracebacks left out), finds the training log and the last line giving the final metric,
and applies the handout's rule when either is missing (``missing = "zero"``: every test of the claim's part scores 0;
``"warn"``: the points stand, the student is warned). docs/notebooks.md, "Training logs and claimed metrics", has the
rules in words.

Entry points: ``find_claims(cfg, notebooks)`` after intake, then ``settle(cfg, found, tests)`` whenever results are
written (after every test and at the end, so partial, resumed and final results agree).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from dlgrade.config import AssignmentConfig, Claim
from dlgrade.notebook import Extracted
from dlgrade.results import ClaimRecord, TestResult

MAX_LINE = 2000          # characters of a line read (a log line is short; a printed tensor can be huge)
LINE_SHOWN = 300         # characters of the claimed line kept in the results
PROGRESS_WINDOW = 3      # lines after an "Epoch 3" line whose metrics belong to that epoch's log entry
MAX_CHARS = 4_000_000    # output read per notebook: its last 4 M characters (each cell's output is at most 200,000)
MAX_LINES = 5_000        # lines read closely per notebook: the last ones with a metric keyword or a progress token
DIAGNOSIS = "no training log or final result in the notebook's output"

# ----------------------------------------------------------------------------- reading one line

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_WRAP = r"(?:(?:tensor|np\.float\d*|numpy\.float\d*|float\d*)\(\s*)?"   # tensor(0.7130), np.float64(0.713)
_KEYWORD = re.compile(r"(?<![A-Za-z])(?:(?P<accuracy>acc(?:uracy)?)|(?P<perplexity>ppl|perplexity)|(?P<loss>loss(?:es)?))"
                      r"(?![A-Za-z])", re.I)
# the value right after the keyword: "acc 0.71", "Accuracy: 71.3%", "'eval_accuracy': 0.7", "Acc (%) = 71", "acc │ 0.7"
_AFTER = re.compile(rf"\s*['\"]?\s*(?P<pct>[(\[]\s*%\s*[)\]])?\s*(?:[:=│|]|is\b|was\b|of\b)?\s*{_WRAP}(?P<num>{_NUM})"
                    rf"(?:\s*/\s*(?P<den>\d+))?(?P<unit>\s*%)?", re.I)
# or after a few words and a colon: "Accuracy of the network on the 10000 test images: 66 %"
_LATER = re.compile(rf"(?P<gap>[^|;:=,{{}}\n]{{1,80}}?)[:=]\s*{_WRAP}(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+))?(?P<unit>\s*%)?",
                    re.I)
_CODE_AFTER = re.compile(r"\s*[*/]\s*[A-Za-z_(]")       # "acc = 100 * correct / total" is code, not a value
_SPLIT = re.compile(r"(?<![A-Za-z])(?:(?P<test>test(?:ing|set)?)|(?P<valid>val(?:id|idation)?|dev|eval(?:uation)?)"
                    r"|(?P<train>train(?:ing)?))(?![A-Za-z])", re.I)
_SEPARATOR = re.compile(r"[|,;\t{}│]| - ")
_LABEL_END = re.compile(r"[|,;:\t│]| - ")
# "Epoch 3", "epoch: 3/10", "[Epoch 3]", "Step 500", "iter 10", "'epoch': 3.0", the PyTorch tutorial's "[1,  2000] loss: 2.2",
# a tqdm bar "391/391 [00:12<00:00, ..."
_PROGRESS = re.compile(r"(?<![A-Za-z])(?:epoch|ep|step|iter|iteration|batch(?:es)?)s?(?![A-Za-z])['\"]?\s*[#:=\[(]?\s*\d"
                       r"|^\s*\[\s*\d+\s*,\s*\d+\s*\]|\d+\s*/\s*\d+\s*\[\d+:\d+", re.I)
# source code shown as text (an f-string, a print call, a format placeholder), never a result
_CODE = re.compile(r"\bprint\s*\(|\.format\s*\(|(?<![\w])f[\"']|\{[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:[:!][^}]*)?\}"
                   r"|%[-+0#]*\d*(?:\.\d+)?[dfgeis](?![A-Za-z])|^\s*(?:def|return|for|while|if|elif|import|from|class|with)\s"
                   r"|\.item\(\)")
# a goal, not a result, when it comes before the metric: "Target accuracy: 65%" (but "Test acc: 71% (target 70%)" is one)
_GOAL = re.compile(r"\b(?:target|goal|should|must|expected|required|threshold|baseline|needs?)\b", re.I)
_FINAL = re.compile(r"\b(?:final|overall|results?)\b", re.I)   # "Final accuracy: 66%" after the last epoch is no log line
# a cheap first look: could the line hold a metric or a progress token at all?
_QUICK = re.compile(r"acc|ppl|perplex|loss|epoch|\bep\b|step|iter|batch|\[|\d\s*/\s*\d", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # control characters but tabs, line ends and \r


@dataclass(frozen=True)
class Value:
    """One metric value read from a line: its kind, the value (accuracies as fractions) and its split."""

    kind: str      # "accuracy" | "perplexity" | "loss"
    value: float
    split: str     # "test" | "valid" | "train" | "" (not labelled)


def _redrawn(line: str) -> str:
    drawn = [piece for piece in line.split("\r") if piece.strip()]
    return drawn[-1][:MAX_LINE] if drawn else ""


def shown_lines(text: str) -> list[str]:
    """The lines as a terminal shows them: after a carriage return (tqdm redraws its bar) only the last text counts."""
    return [_redrawn(line) if "\r" in line else line[:MAX_LINE] for line in _CONTROL.sub("", text).split("\n")]


def looks_like_code(line: str) -> bool:
    """Source code shown as text (a traceback printed to stdout, ``inspect.getsource``): never a result nor a log line."""
    return bool(_CODE.search(line))


def _split_at(text: str, last: bool) -> str:
    found = [m.lastgroup or "" for m in _SPLIT.finditer(text)]
    return (found[-1] if last else found[0]) if found else ""


def _split_of(line: str, start: int, gap: str) -> str:
    """Which data a value at ``start`` is about: the nearest split word before it in its segment ("| Val. PPL: 6.2"),
    else one between the keyword and the number ("accuracy on the test images: 66 %"), else the line's label
    ("Test set: Average loss: 0.03, Accuracy: 98/100")."""
    segment = 0
    for m in _SEPARATOR.finditer(line, 0, start):
        segment = m.end()
    split = _split_at(line[segment:start], last=True) or _split_at(gap, last=False)
    if split:
        return split
    label = _LABEL_END.search(line)
    return _split_at(line[:label.start()], last=True) if label and label.start() < start else ""


def _number(kind: str, m: re.Match[str], percent: bool) -> float | None:
    value = float(m.group("num"))
    if not math.isfinite(value):
        return value if kind != "accuracy" else None
    if m.group("den"):
        if kind != "accuracy":
            return None
        den = float(m.group("den"))
        return value / den if 0 < den and 0 <= value <= den else None
    if kind == "accuracy":
        value = value / 100 if percent or value > 1 else value
        return value if 0 <= value <= 1 else None
    if kind == "perplexity":
        return value if value > 0 else None
    return value


def line_values(line: str) -> list[Value]:
    """Every metric value of a line of output, in order (a diverged ``loss: nan`` included: it still makes a log line)."""
    out: list[Value] = []
    for k in _KEYWORD.finditer(line):
        kind = k.lastgroup or ""
        m, gap = _AFTER.match(line, k.end()), ""
        if m is None:
            m = _LATER.match(line, k.end())
            if m is None or _KEYWORD.search(m.group("gap")):
                continue
            gap = m.group("gap")
        after = line[m.end():m.end() + 1]
        if (not m.group("unit") and after and (after.isalnum() or after in "_.")) or _CODE_AFTER.match(line, m.end()):
            continue
        percent = bool(m.group("unit") or m.groupdict().get("pct") or "%" in gap)
        value = _number(kind, m, percent)
        if value is not None:
            out.append(Value(kind, value, _split_of(line, k.start(), gap)))
    return out


# ----------------------------------------------------------------------------- reading a notebook


@dataclass(frozen=True)
class Found:
    """What one notebook's outputs show for one claim."""

    claim: Claim
    claimed: float | None = None
    cell: int | None = None
    execution_count: int | None = None
    line: str = ""
    log_lines: int = 0
    log_cells: tuple[int, ...] = ()
    problem: str = ""          # why the notebook's outputs could not be read at all ('' when they were)

    @property
    def log_found(self) -> bool:
        return self.log_lines >= max(1, self.claim.min_log_lines)

    @property
    def complete(self) -> bool:
        """Both what the handout asks for were found: the final value, and the log (when the claim asks for one)."""
        return not self.problem and self.claimed is not None and self.log_lines >= self.claim.min_log_lines


@dataclass(frozen=True)
class _Line:
    cell: int
    count: int | None            # the cell's In [n]
    text: str
    progress: bool               # an epoch/step line
    after_progress: bool         # within PROGRESS_WINDOW lines after one, in the same cell


@dataclass
class _Scan:
    claim: Claim
    log_lines: int = 0
    log_cells: dict[int, None] = field(default_factory=dict)
    best: tuple[int, _Line, float] | None = None    # (tier, line, value)

    def offer(self, tier: int, line: _Line, value: float) -> None:
        if tier and (self.best is None or tier >= self.best[0]):
            self.best = (tier, line, value)


def _tier(claim: Claim, values: Sequence[Value], is_log: bool) -> tuple[int, float | None]:
    """How good a line is as the final value (0: not at all; higher wins, later wins among equals), and the value.

    ``split = "test"``: a value labelled test (2), else an unlabelled one on a line that is not a log line (1);
    ``"valid"`` the same with validation values; ``"any"``: every value of the kind (1)."""
    mine = [v for v in values if v.kind == claim.kind and math.isfinite(v.value)]
    if claim.split == "any":
        return (1, mine[-1].value) if mine else (0, None)
    labelled = [v for v in mine if v.split == claim.split]
    if labelled:
        return 2, labelled[-1].value
    plain = [v for v in mine if not v.split]
    return (1, plain[-1].value) if plain and not is_log else (0, None)


def _custom(claim: Claim, line: str) -> float | None:
    m = re.search(claim.pattern, line)
    if m is None or m.group(1) is None:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if claim.kind == "accuracy":
        percent = line[m.end(1):].lstrip().startswith("%")
        value = value / 100 if percent or value > 1 else value
        return value if 0 <= value <= 1 else None
    return value


def _lines(claim: Claim, ex: Extracted) -> list[_Line]:
    """The lines worth reading, in order: the last MAX_LINES of the last MAX_CHARS of output that hold a metric keyword or
    a progress token (or match the claim's own patterns), each with where it stands in its cell's log. Found from the end
    backwards, so that a huge output costs no more than MAX_LINES lines."""
    own = [re.compile(p) for p in (claim.pattern, claim.log_pattern) if p]
    picked: list[_Line] = []
    budget = MAX_CHARS
    for out in sorted(ex.outputs, key=lambda o: -o.cell):
        if budget <= 0 or len(picked) >= MAX_LINES:
            break
        text = out.printed[-budget:]
        budget -= len(text)
        if not _QUICK.search(text) and not any(p.search(text) for p in own):
            continue
        lines = shown_lines(text)
        for i in range(len(lines) - 1, -1, -1):
            line = lines[i]
            if not line.strip() or (not _QUICK.search(line) and not any(p.search(line) for p in own)):
                continue
            before: list[str] = []   # the non-blank lines just above it: is one of them an epoch/step line?
            for j in range(i - 1, -1, -1):
                if len(before) == PROGRESS_WINDOW:
                    break
                if lines[j].strip():
                    before.append(lines[j])
            picked.append(_Line(out.cell, out.execution_count, line, bool(_PROGRESS.search(line)),
                                any(_PROGRESS.search(b) for b in before)))
            if len(picked) >= MAX_LINES:
                break
    picked.reverse()
    return picked


def _read_line(scan: _Scan, ln: _Line) -> None:
    claim, line = scan.claim, ln.text
    if looks_like_code(line):
        return
    values = line_values(line) if _KEYWORD.search(line) else []
    if claim.log_pattern:
        is_log = re.search(claim.log_pattern, line) is not None
    else:  # a metric on an epoch/step line, or labelled as training, or (not a test or final value) on a line right after one
        after = ln.after_progress and not _FINAL.search(line) and any(v.split != "test" for v in values)
        is_log = bool(values) and (ln.progress or after or any(v.split == "train" for v in values))
    if is_log:
        scan.log_lines += 1
        scan.log_cells[ln.cell] = None
    keywords = list(_KEYWORD.finditer(line))
    if keywords and _GOAL.search(line, 0, keywords[-1].end()):
        return
    if claim.pattern:
        value = _custom(claim, line)
        if value is not None:
            scan.offer(1, ln, value)
        return
    tier, found = _tier(claim, values, is_log)
    if found is not None:
        scan.offer(tier, ln, found)


def read_claim(claim: Claim, ex: Extracted | None) -> Found:
    """The training log and final value ``claim`` asks for, as ``ex``'s saved outputs show them (None: not submitted)."""
    if ex is None:
        return Found(claim, problem=f"{claim.notebook} was not found in the submission")
    if not ex.readable:
        return Found(claim, problem=f"{claim.notebook} could not be read")
    scan = _Scan(claim)
    for line in _lines(claim, ex):
        _read_line(scan, line)
    cells = tuple(scan.log_cells)
    if scan.best is None:
        return Found(claim, log_lines=scan.log_lines, log_cells=cells)
    _, ln, value = scan.best
    return Found(claim, value, ln.cell, ln.count, ln.text.strip()[:LINE_SHOWN], scan.log_lines, cells)


def find_claims(cfg: AssignmentConfig, notebooks: Mapping[str, Extracted]) -> tuple[Found, ...]:
    """Every ``[[claims]]`` entry of the assignment, read from the submission's notebooks."""
    return tuple(read_claim(c, notebooks.get(c.notebook)) for c in cfg.claims)


# ----------------------------------------------------------------------------- the rule, and the records


def _label(claim: Claim) -> str:
    return {"test": "test ", "valid": "validation ", "any": ""}[claim.split] + claim.kind


def _cells(cells: Iterable[int]) -> str:
    shown = list(cells)
    text = ", ".join(str(c) for c in shown[:5]) + (" ..." if len(shown) > 5 else "")
    return f"cell {text}" if len(shown) == 1 else f"cells {text}"


def missing_message(f: Found) -> str:
    """What the handout asks for and the notebook does not show ('' when nothing is missing)."""
    c = f.claim
    wants_log = c.min_log_lines > 0
    if f.problem:
        what = f"neither a training log nor a final {c.kind}" if wants_log else f"no final {c.kind}"
        return f"{f.problem}, so {what} could be read from its output"
    if f.complete:
        return ""
    has_log = f.log_lines >= c.min_log_lines
    if f.claimed is None and not has_log:
        return f"{c.notebook}: no training log with a final {c.kind} was found in any cell's output"
    if f.claimed is None:
        found = f" ({_cells(f.log_cells)})" if f.log_lines else ""
        return (f"{c.notebook}: " + (f"a training log was found{found} but " if wants_log else "")
                + f"no final {_label(c)} in any cell's output")
    where = f"cell {f.cell}: {f.line!r}"
    if f.log_lines:
        return (f"{c.notebook}: a final {_label(c)} was found ({where}) but the training log has only {f.log_lines} "
                f"line{'s' if f.log_lines != 1 else ''} ({_cells(f.log_cells)}); at least {c.min_log_lines} are required")
    return (f"{c.notebook}: a final {_label(c)} was found ({where}) but no training log (lines of epochs or steps with "
            "a loss, an accuracy or a perplexity) in any cell's output")


def _hint(c: Claim) -> str:
    example = {"accuracy": "accuracy: 71.3%", "perplexity": "perplexity: 6.2", "loss": "loss: 1.73"}[c.kind]
    example = {"test": "Test ", "valid": "Validation ", "any": ""}[c.split] + example
    return ("The grader reads the outputs saved in the notebook: run the cells and keep their outputs when you save it"
            + (" (a line per epoch or step with the loss)" if c.min_log_lines else "")
            + f", and print the final result, e.g. '{example[0].upper() + example[1:]}'.")


def _measured(tests: Sequence[TestResult], threshold: str) -> tuple[float | None, str]:
    """The value the threshold test recorded (``record.update(value=...)``) and that test's visibility."""
    if not threshold:
        return None, ""
    for t in tests:
        if t.extra.get("threshold_name") == threshold:
            value = t.extra.get("value")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return float(value), t.visibility
            return None, t.visibility
    return None, ""


def _zero(t: TestResult, part: str, text: str) -> TestResult:
    """A test of ``part`` that earned points loses them; one that failed already keeps its own message (and a test the
    rule zeroed scores 0, so a resumed run leaves it as it is)."""
    if t.part != part or t.advice or t.score <= 0:
        return t
    return replace(t, score=0.0, status="failed", output=f"{text}\n\nThe test's own result: {t.output}",
                   diagnosis=t.diagnosis or DIAGNOSIS)


@dataclass(frozen=True)
class Settled:
    tests: tuple[TestResult, ...]         # with the rule applied
    records: tuple[ClaimRecord, ...]      # extra_data.claims
    notes: tuple[str, ...]                # lines for the submission's summary


def settle(cfg: AssignmentConfig, found: Sequence[Found], tests: Sequence[TestResult], apply: bool = True) -> Settled:
    """Apply each claim's rule to ``tests`` and build its record. Idempotent: results already settled (a resumed run)
    come out unchanged. ``apply=False`` (validate, calibrate: reference notebooks have no outputs) records only."""
    out = list(tests)
    notes: list[str] = []
    rules: list[tuple[str, str]] = []
    for f in found:
        c = f.claim
        message = missing_message(f)
        rule, text = "none", message
        if message:
            graded = not c.part or c.part in cfg.parts   # a part turned off this term is not graded at all
            rule = c.missing if apply and graded else "off"
            spec = f" ({c.spec})" if c.spec else ""
            if rule == "zero":
                text = f"{message}; the handout gives this part 0 points{spec}."
                out = [_zero(t, c.part, text) for t in out]
                notes.append(f"{text} {_hint(c)}")
            elif rule == "warn":
                text = (f"{message}; the handout gives this part 0 points{spec}, but it is graded with a warning only: "
                        "the points stand.")
                notes.append(f"Warning: {text} {_hint(c)}")
        rules.append((rule, text))
    records = []
    for f, (rule, text) in zip(found, rules, strict=True):
        c = f.claim
        measured, visibility = _measured(out, c.threshold)
        b = cfg.thresholds.get(c.threshold) if c.threshold else None
        records.append(ClaimRecord(
            name=c.name, notebook=c.notebook, kind=c.kind, claimed=f.claimed, cell=f.cell, execution_count=f.execution_count,
            line=f.line, log_found=f.log_found, log_lines=f.log_lines, log_cells=f.log_cells, measured=measured,
            measured_visibility=visibility, metric=b.metric if b else "", threshold_name=c.threshold,
            threshold=b.threshold if b else None, direction=b.direction if b else "", handout_target=c.handout_target,
            part=c.part, rule=rule, message=text, spec=c.spec))
    return Settled(tuple(out), tuple(records), tuple(notes))
