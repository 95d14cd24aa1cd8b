#!/usr/bin/env bash
# Throwaway local services for the tests, on Debian bookworm as root: PostgreSQL, a one-node SLURM
# cluster (munge + slurmctld + slurmd), headless Chromium + chromedriver, and LaTeX.
#
#   .ci/services.sh install            apt-get install the packages (idempotent)
#   env=$(.ci/services.sh start)       start PostgreSQL and SLURM on 127.0.0.1 (tests/services.py) and
#   eval "$env"                        export VBENCH_TEST_POSTGRES_URL, VBENCH_TEST_POSTGRES_DATA, SLURM_CONF, VBENCH_CI=1
#   .ci/services.sh stop               stop what `start` started (reads those variables)
#
# `start` and `stop` import pytest: run them after `pip install -e ".[dev]"`.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    postgresql                     # server binaries: /usr/lib/postgresql/*/bin/{initdb,pg_ctl}
    slurm-wlm munge                # slurmctld, slurmd, sbatch & co. (22.05 on bookworm)
    chromium chromium-driver       # /usr/bin/chromium, /usr/bin/chromedriver for selenium
    texlive-latex-base             # pdflatex for the LaTeX report tests
)

case "${1:-}" in
    install)
        if [ "$(id -u)" -ne 0 ]; then
            echo "services.sh install: apt-get needs root" >&2
            exit 2
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
        ;;
    start | stop)
        exec python3 tests/services.py "$1"
        ;;
    *)
        echo "usage: $0 install | start | stop" >&2
        exit 2
        ;;
esac
