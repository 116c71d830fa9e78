"""Similarity: disguised copies are found, independent solutions and the given code are not, and the results reach
the instructor only (``dlgrade similarity``, ``dlgrade grade --similarity``, the class summary)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, grade_cli, run_dlgrade, write_files

from dlgrade.config import AssignmentConfig, load_assignment
from dlgrade.release import reference_submission, skeleton_files
from dlgrade.similarity import SimilarityOptions, compare_documents, detect
from dlgrade.similarity.sources import boilerplate_sources, join_files

_spec = importlib.util.spec_from_file_location("similarity_variants", FIXTURES / "similarity" / "variants.py")
assert _spec is not None and _spec.loader is not None
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)

INDEPENDENT = FIXTURES / "similarity" / "independent"
COPY_FLOOR = 0.85          # a disguised copy keeps at least this share
INDEPENDENT_CEILING = 0.6  # an independently written solution stays at or below this


def texts(files: dict[str, bytes]) -> dict[str, str]:
    return {name: data.decode() for name, data in files.items()}


def document(cfg: AssignmentConfig, name: str, files: dict[str, str]) -> object:
    return join_files(name, "student", [(f, files[f]) for f in cfg.submit if f in files])


def scores(cfg: AssignmentConfig, subs: dict[str, dict[str, str]], **options: object) -> dict[frozenset[str], float]:
    """max(share both ways) of every pair of the named submissions."""
    docs = [document(cfg, name, files) for name, files in subs.items()]
    pairs, _ = compare_documents(docs, [], boilerplate_sources(cfg), SimilarityOptions(**options))  # type: ignore[arg-type]
    return {frozenset((p.student, p.other)): p.score for p in pairs}


def independent(cfg: AssignmentConfig) -> dict[str, str]:
    """The release's skeleton with the stubs filled by tests/fixtures/similarity/independent/<id>/ (graded 41/41)."""
    sk = texts(skeleton_files(cfg))
    return {f: variants.fill(sk[f], (INDEPENDENT / cfg.id / f).read_text()) for f in cfg.submit}


def full_marks(cfg: AssignmentConfig, tmp: Path) -> dict[str, dict[str, str]]:
    """The full-marks alternatives (patches of the reference) wherever this checkout keeps them."""
    out = {}
    patches = sorted((cfg.grader_dir / "full_marks").glob("*.patch")) + sorted((FIXTURES / cfg.id / "full_marks").glob("*.patch"))
    for patch in patches:
        folder = write_files(reference_submission(cfg), tmp / patch.stem)
        subprocess.run(["patch", "-s", "-p1", "-d", str(folder), "-i", str(patch.resolve())], check=True)
        out[patch.stem] = {f: (folder / f).read_text() for f in cfg.submit}
    assert len(out) >= 3, "the full-marks alternatives were not found"
    return out


# ----------------------------------------------------------------------------- what is and is not a copy


@pytest.mark.parametrize("assignment", ["lstm_lm_vit", "seq2seq_translation"])
@pytest.mark.parametrize("variant", sorted(variants.VARIANTS))
def test_disguised_copies_are_found(assignment: str, variant: str) -> None:
    """Renamed variables, reordered functions, reformatted code and added comments do not hide a copy."""
    cfg = load_assignment(assignment)
    ref = texts(reference_submission(cfg))
    copy = {f: variants.VARIANTS[variant](t) for f, t in ref.items()}
    assert copy != ref
    docs = [document(cfg, "original", ref), document(cfg, "copy", copy)]
    pairs, _ = compare_documents(docs, [], boilerplate_sources(cfg), SimilarityOptions())  # type: ignore[arg-type]
    (pair,) = pairs
    assert pair.flagged and pair.score >= COPY_FLOOR, pair
    # the copied solution code is what is marked, file by file
    for name in cfg.submit:
        assert name in pair.student_lines or name in pair.other_lines, (name, pair)


def test_independent_solutions_score_clearly_below_copies(tmp_path: Path) -> None:
    """A correct solution written independently (full marks) shares little with the reference or the full-marks
    alternatives, while every disguised copy of it shares nearly all of it."""
    cfg = load_assignment("lstm_lm_vit")
    mine = independent(cfg)
    subs = {"independent": mine, "reference": texts(reference_submission(cfg)), **full_marks(cfg, tmp_path)}
    subs.update({f"copy_{v}": {f: fn(t) for f, t in mine.items()} for v, fn in variants.VARIANTS.items()})
    got = scores(cfg, subs)
    copies = [got[frozenset(("independent", f"copy_{v}"))] for v in variants.VARIANTS]
    others = [got[frozenset(("independent", name))] for name in subs if not name.startswith(("copy_", "independent"))]
    assert min(copies) >= COPY_FLOOR, copies
    assert max(others) <= INDEPENDENT_CEILING, others
    assert min(copies) - max(others) >= 0.25
    # the full-marks alternatives keep most of the reference (each rewrites a few methods): they score as its copies do
    fm = [got[frozenset(("reference", name))] for name in subs if name not in ("reference", "independent") and not name.startswith("copy_")]
    assert all(0.45 <= s <= 1.0 for s in fm), fm


@pytest.mark.parametrize("assignment", ["lstm_lm_vit", "seq2seq_translation"])
def test_the_skeleton_alone_scores_zero(assignment: str) -> None:
    """The release's given code never counts: a blank skeleton matches nothing, not even another blank skeleton."""
    cfg = load_assignment(assignment)
    sk = texts(skeleton_files(cfg))
    blank = {f: sk[f] for f in cfg.submit}
    reformatted = {f: variants.reformat(t) for f, t in blank.items()}
    got = scores(cfg, {"blank": blank, "blank_again": dict(blank), "reformatted": reformatted,
                       "reference": texts(reference_submission(cfg))})
    for pair, score in got.items():
        if "blank" in pair or "blank_again" in pair:
            assert score == 0.0, pair
    assert got[frozenset(("reformatted", "reference"))] <= 0.05


def test_matched_lines_are_the_copied_lines() -> None:
    """Lines are reported where the copy is: one copied class in otherwise different code."""
    cfg = load_assignment("lstm_lm_vit")
    ref = texts(reference_submission(cfg))["vit_solution.py"]
    copied = ref[ref.index("class MultiHeadedAttention"):ref.index("class PostNormAttentionBlock")]
    filler = "".join(f"def helper_{i}(a, b):\n    return [a * {i}, b - {i}, (a, b), str({i})]\n\n" for i in range(12))
    mine = filler + copied
    a = detect.fingerprint(join_files("a", "student", [("vit_solution.py", ref)]), set())
    b = detect.fingerprint(join_files("b", "student", [("mine.py", mine)]), set())
    ranges = detect.matched_lines(b, detect.compare(b, a).a_slices)
    assert ranges and {r[0] for r in ranges} == {"mine.py"}
    assert ranges[0][1] == filler.count("\n") + 1, ranges     # from the `class` line
    assert ranges[-1][2] >= mine.rstrip().count("\n")         # to the end of the copied class


def test_shared_positions_are_copydetects_overlap() -> None:
    """detect.shared_positions finds exactly the fingerprint positions copydetect's own find_fingerprint_overlap finds."""
    from copydetect.utils import find_fingerprint_overlap

    cfg = load_assignment("lstm_lm_vit")
    bp = detect.boilerplate_hashes(boilerplate_sources(cfg))
    ref = texts(reference_submission(cfg))
    a = detect.fingerprint(document(cfg, "a", ref), bp)  # type: ignore[arg-type]
    b = detect.fingerprint(document(cfg, "b", independent(cfg)), bp)  # type: ignore[arg-type]
    ours = detect.shared_positions(a, b)
    theirs = find_fingerprint_overlap(a.code.hashes, b.code.hashes, a.code.hash_idx, b.code.hash_idx)
    assert ours[0].size > 100
    for x, y in zip(ours, theirs, strict=True):
        assert np.array_equal(np.sort(x), np.sort(np.asarray(y, dtype=np.int64)))


def test_class_names_map_back_onto_the_source() -> None:
    """copydetect records a class name's offset wrongly (its own length instead of the running offset), so a match
    that starts or ends at a class name would be placed near the top of the file; detect repairs the table."""
    text = '"""A module."""\nimport torch\n\n\nclass First(torch.nn.Module):\n    pass\n\n\nclass Second(First):\n    x = 1\n'
    fp = detect.fingerprint(join_files("a", "student", [("a.py", text)]), set())
    normalised = fp.code.filtered_code
    starts = [i for i, ch in enumerate(normalised) if ch == "O"]
    assert len(starts) == 2
    mapped = detect._to_source(fp, np.array([starts, starts]))[0]
    assert [text[i:i + 6] for i in mapped] == ["First(", "Second"]


def _disguise_notebook(data: bytes, salt: str, output: str) -> bytes:
    """Every code cell disguised (cells that do not parse on their own kept), every cell given an output."""
    nb = json.loads(data)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                cell["source"] = variants.disguise(src, salt)
            except SyntaxError:
                pass
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": output}]
    return json.dumps(nb).encode()


def test_notebook_submissions_compare_the_code_grading_extracts(tmp_path: Path) -> None:
    """A notebook assignment: the student's code as dlgrade.notebook extracts it is compared, outputs never count."""
    from dlgrade.similarity.sources import student_documents

    cfg = load_assignment("transformer_vit_gpt")
    (name,) = cfg.submit
    ref, blank = reference_submission(cfg)[name], skeleton_files(cfg)[name]
    printed = _disguise_notebook(blank, "carol", output=ref.decode(errors="replace"))   # the reference only in outputs
    for student, data in {"alice": ref, "bob": _disguise_notebook(ref, "bob", "loss 1.2\n"), "carol": printed,
                          "dave": blank}.items():
        write_files({f"Copy of {name}": data}, tmp_path / student)
    docs, problems = student_documents(cfg, tmp_path)
    assert not problems and [d.name for d in docs] == ["alice", "bob", "carol", "dave"]
    assert all("get_ipython" not in d.text for d in docs)
    pairs, _ = compare_documents(docs, [], boilerplate_sources(cfg), SimilarityOptions())
    got = {frozenset((p.student, p.other)): p for p in pairs}
    assert got[frozenset(("alice", "bob"))].flagged and got[frozenset(("alice", "bob"))].score >= 0.8
    for other in ("carol", "dave"):
        assert got[frozenset(("alice", other))].score == 0.0, other


# ----------------------------------------------------------------------------- the command line


def _zip(files: dict[str, str], path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(prefix + name, text)
    return path


def _notebook(code: str, output: str = "") -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Homework"]},
             {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["!pip install torch\n", code],
              "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}] if output else []}]
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})


def test_similarity_cli_ranks_pairs_and_writes_pages(tmp_path: Path) -> None:
    cfg = load_assignment("lstm_lm_vit")
    ref = texts(reference_submission(cfg))
    mine = independent(cfg)
    subs = tmp_path / "subs"
    write_files({f: t.encode() for f, t in ref.items()}, subs / "alice")
    _zip({f: variants.disguise(t, "bob") for f, t in ref.items()}, subs / "bob.zip", prefix="hw/project/")
    hostile = {**mine, "vit_solution.py": mine["vit_solution.py"] + "\n# </code></pre><script>alert(1)</script>\n"}
    write_files({f: t.encode() for f, t in hostile.items()}, subs / "carol" / "nested")
    write_files({f: t.encode() for f, t in texts(skeleton_files(cfg)).items() if f in cfg.submit}, subs / "dave")
    corpus = tmp_path / "public"
    (corpus / "someone_github").mkdir(parents=True)
    (corpus / "someone_github" / "solution.ipynb").write_text(_notebook(variants.rename(mine["vit_solution.py"], "z")))
    # a notebook whose *outputs* hold the reference: outputs never count
    (corpus / "printed.ipynb").write_text(_notebook("import torch\n", output=ref["vit_solution.py"]))
    out = tmp_path / "sim"
    proc = run_dlgrade("similarity", "lstm_lm_vit", str(subs), "--corpus", str(corpus), "--out", str(out), "--top", "3")
    assert proc.returncode == 0, proc.stderr
    assert "Compared 4 submission(s)" in proc.stdout and "2 corpus file(s)" in proc.stdout

    rows = list(csv.DictReader((out / "pairs.csv").open()))
    assert len(rows) == 6 + 4 * 2                       # every pair of students, every student with every corpus file
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    top = {(rows[i]["student"], rows[i]["other"]) for i in range(2)}
    assert top == {("alice", "bob"), ("carol", "public/someone_github/solution.ipynb")}
    assert all(r["flagged"] == "yes" for r in rows[:2]) and all(r["flagged"] == "no" for r in rows[2:])
    by_pair = {(r["student"], r["other"]): r for r in rows}
    assert float(by_pair[("alice", "bob")]["student_share"]) >= COPY_FLOOR
    assert "vit_solution.py:" in by_pair[("alice", "bob")]["student_lines"]
    assert float(by_pair[("alice", "carol")]["student_share"]) <= INDEPENDENT_CEILING
    for r in rows:
        if "dave" in (r["student"], r["other"]) or r["other"] == "public/printed.ipynb":
            assert float(r["student_share"]) == 0.0 and float(r["other_share"]) == 0.0, r

    pages = sorted((out / "pairs").glob("*.html"))
    assert [p.name for p in pages] == ["001.html", "002.html", "003.html"]
    assert [r["page"] for r in rows[:3]] == ["pairs/001.html", "pairs/002.html", "pairs/003.html"] and not rows[3]["page"]
    carol_page = (out / by_pair[("carol", "public/someone_github/solution.ipynb")]["page"]).read_text()
    assert "<script>" not in carol_page and "&lt;script&gt;" in carol_page
    assert "highlight-red" in carol_page and "highlight-green" in carol_page
    index = (out / "index.html").read_text()
    assert 'href="pairs/001.html"' in index and 'href="pairs.csv"' in index
    summary = json.loads((out / "similarity.json").read_text())
    assert summary["flagged_count"] == 2 and summary["students"] == 4 and summary["corpus_files"] == 2


def test_similarity_cli_errors(tmp_path: Path) -> None:
    proc = run_dlgrade("similarity", "lstm_lm_vit", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "no such submission" in proc.stderr
    (tmp_path / "subs" / "a").mkdir(parents=True)
    proc = run_dlgrade("similarity", "lstm_lm_vit", str(tmp_path / "subs"), "--threshold", "1.5")
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr
    proc = run_dlgrade("grade", "lstm_lm_vit", str(tmp_path / "subs"), "--corpus", str(tmp_path))
    assert proc.returncode == 2 and "--corpus is for --similarity" in proc.stderr


@pytest.mark.slow
def test_grade_with_similarity_reaches_the_instructor_only(tmp_path: Path) -> None:
    """`grade --similarity` writes RESULTS/similarity/, the class summary links it, and nothing of it is in a student's
    results.json (Gradescope's format) or report."""
    cfg = load_assignment("lstm_lm_vit")
    ref = texts(reference_submission(cfg))
    subs = tmp_path / "subs"
    write_files({f: t.encode() for f, t in ref.items()}, subs / "alice")
    write_files({f: variants.disguise(t, "bob").encode() for f, t in ref.items()}, subs / "bob")
    write_files({f: t.encode() for f, t in independent(cfg).items()}, subs / "carol")
    run = grade_cli(subs, tmp_path / "results", "--similarity", "-j", "2", timeout=900)
    assert "Compared 3 submission(s)" in run.stdout
    sim = tmp_path / "results" / "similarity"
    rows = list(csv.DictReader((sim / "pairs.csv").open()))
    assert (rows[0]["student"], rows[0]["other"], rows[0]["flagged"]) == ("alice", "bob", "yes")

    summary = (tmp_path / "results" / "reports" / "index.html").read_text()
    assert 'id="similarity"' in summary and 'id="similar-pairs"' in summary
    assert 'href="../similarity/index.html"' in summary and 'href="../similarity/pairs/001.html"' in summary
    assert (tmp_path / "results" / "reports" / "../similarity/pairs/001.html").is_file()
    for student in ("alice", "bob", "carol"):
        others = {"alice", "bob", "carol"} - {student}
        assert run.results(student)["tests"], student  # graded: a Gradescope results.json with its tests
        student_files = [tmp_path / "results" / student / "results.json",
                         *sorted((tmp_path / "results" / "reports" / "students").glob(f"{student}.*"))]
        assert len(student_files) == 3
        for path in student_files:
            text = path.read_text().lower()
            assert "similar" not in text and "pairs.csv" not in text, path
            assert not any(f'"{o}"' in text or f">{o}<" in text for o in others), path
    assert not (tmp_path / "results" / "similarity" / "results.json").exists()
    assert "similarity" not in (tmp_path / "results" / "grades.csv").read_text()


def test_summary_without_or_with_a_broken_similarity_file(tmp_path: Path) -> None:
    """The class summary shows the section only for a readable similarity run; a broken file never breaks it."""
    from dlgrade.report import write_reports

    src = FIXTURES / "reports" / "graded"
    results = tmp_path / "results"
    subprocess.run(["cp", "-r", str(src), str(results)], check=True)
    write_reports(results)
    assert 'id="similarity"' not in (results / "reports" / "index.html").read_text()
    (results / "similarity").mkdir()
    (results / "similarity" / "similarity.json").write_text('{"flagged": [{"student": 3}]}')
    write_reports(results)
    assert 'id="similarity"' not in (results / "reports" / "index.html").read_text()
    (results / "similarity" / "similarity.json").write_text(json.dumps({
        "threshold": 0.7, "students": 2, "corpus_files": 0, "compared": 1, "flagged_count": 1,
        "flagged": [{"student": "a<b>", "other": "c", "other_kind": "student", "student_share": 0.9, "other_share": 0.8,
                     "page": "pairs/001.html"}, {"student": "x", "other": "y", "student_share": 0.9, "other_share": 0.8,
                                                 "page": "../../etc/passwd"}]}))
    write_reports(results)
    page = (results / "reports" / "index.html").read_text()
    assert 'id="similarity"' in page and "a&lt;b&gt;" in page and 'href="../similarity/pairs/001.html"' in page
    assert "passwd" not in page
