"""Per-file test time from pytest's JUnit XML files: what each part of the suite costs.

    python3 tests/durations.py reports/*.xml

pytest's JUnit ``time`` of a test case covers its setup, call and teardown, so a module's
shared fixtures are counted in the file that uses them.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def per_file(paths: list[str]) -> dict[str, dict[str, float]]:
    files: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            # classname is "tests.lab.test_x" (or "...test_x.Class"): keep the module
            module = case.get("classname", "?")
            parts = module.split(".")
            while parts and not parts[-1].startswith("test_"):
                parts.pop()
            key = "/".join(parts) + ".py" if parts else module
            entry = files[key]
            entry["seconds"] += float(case.get("time", 0) or 0)
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
            entry[outcome] += 1
    return files


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python3 tests/durations.py JUNIT.xml ...", file=sys.stderr)
        return 2
    files = per_file(argv)
    total = sum(f["seconds"] for f in files.values())
    print(f"{'file':48} {'min':>6} {'passed':>6} {'failed':>6} {'skipped':>7}")
    for name, f in sorted(files.items(), key=lambda kv: -kv[1]["seconds"]):
        print(
            f"{name:48} {f['seconds'] / 60:6.1f} {int(f['passed']):6d} {int(f['failed']):6d} "
            f"{int(f['skipped']):7d}"
        )
    print(f"{'total':48} {total / 60:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
