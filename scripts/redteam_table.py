"""The red-team attack table of docs/security.md, from the JSON files tests/test_redteam.py writes.

usage: DLGRADE_REDTEAM_TABLE=DIR pytest tests/test_hostile.py tests/test_redteam.py
       python scripts/redteam_table.py DIR          # prints the Markdown table (one column per mode found)

Each cell is "score (bound)" then "blocked / worked": how many attempts the attack printed as blocked and as
having worked; a worked attempt is allowed only in a mode its `known_gap` names (marked "gap").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODES = ("process", "nons", "docker")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    runs = {m: json.loads((folder / f"redteam-{m}.json").read_text()) for m in MODES if (folder / f"redteam-{m}.json").is_file()}
    if not runs:
        sys.exit(f"no redteam-<mode>.json in {folder}")
    rows: dict[str, dict[str, dict]] = {}
    submission: dict[str, str] = {}
    for mode, run in runs.items():
        for row in run["rows"]:
            rows.setdefault(row["attack"], {})[mode] = row
            submission[row["attack"]] = row["submission"]
    print("| attack | submission | " + " | ".join(f"{m} ({runs[m]['gap_mode']})" if runs[m].get("gap_mode", m) != m else m
                                             for m in runs) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in runs) + " |")
    for attack, by_mode in rows.items():
        cells = []
        for mode in runs:
            r = by_mode.get(mode)
            if r is None:
                cells.append("")
                continue
            cell = f"{r['score']:g} ({r['bound']:g}); {r['blocked']} / {r['worked']}"
            cells.append(cell + (" gap" if r["known_gap"] and r["worked"] else ""))
        print(f"| {attack} | {submission[attack]} | " + " | ".join(cells) + " |")
    print()
    for mode, run in runs.items():
        print(f"- {mode}: {run['students']} submissions{' (with the hostile fixtures)' if run.get('hostile_fixtures') else ''}, "
              f"graded in {run['seconds']:.0f} s")


if __name__ == "__main__":
    main()
