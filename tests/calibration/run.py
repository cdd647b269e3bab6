"""Run every calibration program N times under `gilwise profile` and print a table:
program -> true verdict, runs correct / total.

    python tests/calibration/run.py --runs 5 [name ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import calibration_cases as calibration


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every verdict")
    parser.add_argument("names", nargs="*", help="only these cases")
    options = parser.parse_args()
    cases = [c for c in calibration.CASES if not options.names or c.name in options.names]
    failed = 0
    with calibration.local_server() as url, tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            correct, notes = 0, []
            for run in range(options.runs):
                workdir = Path(scratch) / f"{case.name}-{run}"
                workdir.mkdir()
                profile = calibration.profile_program(case, workdir, url)
                wrong = calibration.problems(case, profile)
                correct += not wrong
                if wrong or options.verbose:
                    notes.append(
                        f"    run {run + 1}: {'; '.join(wrong) or 'ok'}: "
                        f"{calibration.describe(profile)}"
                    )
            failed += correct < options.runs
            flag = "ok " if correct == options.runs else "BAD"
            print(f"{flag} {case.name:28} {case.kind:22} {correct}/{options.runs}", flush=True)
            for note in notes:
                print(note, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
