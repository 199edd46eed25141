# make demo: install, bring up the lab, run the whole runbook against it.
# make test: lint, notebook hygiene, the lab's own check and every test (unit, lab, notebooks).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo demo-nodes test lint unit lab lab-down lab-reset nodes nodes-down install clean browser mutation

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The lab: this machine's engine behind an sshd on 127.0.0.1:2222, and a fresh Debian host
# (no Docker until the runbook installs it) at 10.204.0.2. `make demo` leaves it running and
# reuses it; `make lab-down` removes it.
lab: install
	bash tests/lab/up.sh
	bash tests/lab/fresh-host.sh up

lab-down:
	bash tests/lab/nodes.sh down
	bash tests/lab/fresh-host.sh reset
	bash tests/lab/down.sh

lab-reset:
	bash tests/lab/fresh-host.sh reset
	bash tests/lab/fresh-host.sh up
	bash tests/lab/reset.sh

# The lab's three nodes for a multi-node swarm: fresh Debian hosts (no Docker) at 10.203.0.11-13
# (parameters/lab-nodes.yaml). Not part of `make lab` or `make test`.
nodes:
	bash tests/lab/nodes.sh up

nodes-down:
	bash tests/lab/nodes.sh down

demo: lab
	$(VENV)/bin/runbook run parameters/lab.yaml

# The runbook on the lab's three nodes (tests/lab/nodes.sh): a swarm of three hosts.
demo-nodes: install
	bash tests/lab/nodes.sh up
	$(VENV)/bin/runbook run parameters/lab-nodes.yaml

lint: install
	$(VENV)/bin/ruff check runbook_lib tests benchmarks
	$(VENV)/bin/ruff format --check runbook_lib tests benchmarks

unit: install
	$(VENV)/bin/pytest tests/unit -q

# The browser tests drive Debian's Chromium (never a browser download); the CJK fonts make
# the tutorial's section titles legible in the screenshots and the report.
browser:
	@test -x /usr/bin/chromium && dpkg -s fonts-noto-cjk >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }

test: lint lab browser
	bash tests/lab/check.sh
	RUNBOOK_REQUIRE_LAB=1 RUNBOOK_REQUIRE_BROWSER=1 $(VENV)/bin/pytest -q -ra

# Mutation testing of the pure modules and the parameter model against tests/unit only: a
# measurement (tests/README.md), not part of `make test`. Results stay in mutants/ (list the
# survivors with `mutmut results`, one with `mutmut show NAME`). One module at a time:
# make mutation MUTANTS='runbook_lib.params.*'
MUTANTS ?=
mutation: install
	rm -rf mutants
	nice -n 19 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	@$(VENV)/bin/mutmut results --all true | awk -F': ' '{ if ($$2 == "not checked") next; split($$1, p, "."); m = p[1] "." p[2]; \
	  sub(/^ +/, "", m); n[m]++; if ($$2 == "killed" || $$2 == "timeout") k[m]++; else s[m]++ } \
	  END { for (m in n) printf "%-24s %5d mutants %5d killed %4d not %6.1f%%\n", m, n[m], k[m], s[m], 100 * k[m] / n[m] }' | sort

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
