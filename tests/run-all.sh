#!/usr/bin/env bash
# The whole test suite: lint, types, unit and TUI tests on this machine while the lab boots (QEMU uses
# one host core, the unit tests the other), then every lab test file inside the lab's dom0
# against a real Xen 4.17 (all guests), then tests/lab_host on this machine against the
# running lab. Prints each part's time and each test file's; JUnit files land in reports/.
# Needs root and the README's set-up command (pip install -e '.[test,dev]', xenvmi lab deps).
# XENVMI_LAB_RELEASE=trixie runs the same suite against Debian 13's lab (Xen 4.20, Python
# 3.13, no LibVMI): the README's "Tested releases" says when and with what result.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p reports
rm -f reports/*.xml
t0=$SECONDS
stamp() { printf '[run-all %5ds] %s\n' $((SECONDS - t0)) "$*"; }
status=0

# 10 integrity runs: the corruption they guard against showed in every run.
stamp "lab up (in the background; its lines are prefixed 'lab|')"
( python3 -m xenvmi lab up --release "${XENVMI_LAB_RELEASE:-bookworm}" \
    --check-runs "${XENVMI_CHECK_RUNS:-10}" 2>&1 | sed -u 's/^/lab| /';
  exit "${PIPESTATUS[0]}" ) &
lab_pid=$!

stamp "lint and types (ruff check, ruff format --check, mypy)"
python3 -m ruff check xenvmi plugins tests benchmarks || status=1
python3 -m ruff format --check xenvmi plugins tests benchmarks || status=1
python3 -m mypy || status=1
stamp "lint and types done (status $status)"

stamp "unit and TUI tests"
python3 -m pytest tests/unit tests/tui -q -p no:cacheprovider \
  --junitxml=reports/unit-junit.xml || status=1
stamp "unit and TUI tests done (status $status)"

# Host tests that need no lab (arm64 and x86 guests' memory captured under QEMU's TCG
# without Xen, and the fuzzer that corrupts it) run in the background on the core the
# lab's QEMU leaves free, while it boots and while the dom0 tests run (TCG is
# single-threaded: the host's second core is idle then); their output is printed when
# they end.
NO_LAB_TESTS="tests/lab_host/test_arm64_guest.py tests/lab_host/test_x86_guest.py
  tests/lab_host/test_fuzz_real_guest.py"
stamp "host tests needing no lab (in the background: reports/no-lab.log)"
python3 -m pytest $NO_LAB_TESTS -v -p no:cacheprovider \
  --junitxml=reports/no-lab-junit.xml > reports/no-lab.log 2>&1 &
no_lab_pid=$!
no_lab_done() {
  local rc=0
  wait "$no_lab_pid" || rc=$?
  cat reports/no-lab.log
  [ "$rc" -eq 0 ] || status=1
  stamp "host tests needing no lab done (status $status)"
}

stamp "waiting for the lab"

if ! wait "$lab_pid"; then
  stamp "the lab did not come up: no lab test can run"
  python3 -m xenvmi lab log --lines 60 || true
  no_lab_done
  exit 6
fi
stamp "lab up"

# Every lab test file, the memory views on every memory guest (XENVMI_LAB_MEMORY_GUESTS
# narrows them, e.g. to xvm-hvm, when working on one guest).
LAB_TESTS=${XENVMI_LAB_TESTS:-tests/lab}
python3 -m xenvmi lab exec -- env XENVMI_LAB_MEMORY_GUESTS="${XENVMI_LAB_MEMORY_GUESTS-}" \
  python -m pytest $LAB_TESTS -m xen -v -p no:cacheprovider --durations=25 \
  --junitxml=/tmp/lab-junit.xml || status=1
python3 -m xenvmi lab exec --no-sync -- cat /tmp/lab-junit.xml > reports/lab-junit.xml || true
stamp "lab tests in dom0 done (status $status)"
no_lab_done

python3 -m pytest tests/lab_host $(printf -- '--ignore=%s ' $NO_LAB_TESTS) -v \
  -p no:cacheprovider --junitxml=reports/lab-host-junit.xml || status=1
stamp "host-side lab tests done (status $status)"

python3 -m xenvmi lab exec --no-sync -- xl list || true
python3 tests/durations.py reports/*.xml || true
stamp "all done (status $status)"
exit "$status"
