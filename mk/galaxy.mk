# galaxy-importer: the checks Ansible Galaxy runs on an uploaded artifact, run on ours. Part of make test.
# Included by the main Makefile, which defines VENV and BIN.
#
# The importer has its own venv (requirements-galaxy.txt says why) and works in .cache/galaxy-importer,
# where it also writes its importer_result.json. Config: .config/galaxy-importer.cfg.

GALAXY_DIR := .cache/galaxy-importer
GALAXY_VENV := $(GALAXY_DIR)/venv
GALAXY_BUILD := $(GALAXY_DIR)/build
GALAXY_LOG := $(GALAXY_DIR)/import.log

# Warnings about the importer's own environment, not about the collection, which do not fail the target:
#   "flake8 not found": flake8 is off (run_flake8 = False, the importer's default) and not in the venv.
# Deliberately not filtered, although also about the environment: "ansible-lint not found" and
# "ansible-doc not found" mean a check silently did not run; they fail until the venv is repaired.
# Every other WARNING is about our code: ansible-lint findings ("WARNING: <file>:<line>: <rule>"),
# ansible-lint errors, a missing changelog or role description, ignore files, meta/execution-environment.yml.
GALAXY_ENV_WARNINGS := ^WARNING: flake8 not found

.PHONY: galaxy-import

$(GALAXY_VENV)/.installed: requirements-galaxy.txt
	python3 -m venv $(GALAXY_VENV)
	$(GALAXY_VENV)/bin/pip install -q --upgrade pip
	$(GALAXY_VENV)/bin/pip install -q -r requirements-galaxy.txt
	touch $@

## galaxy-import: build the artifact and run galaxy-importer on it (ansible-lint included); fails on any ERROR or WARNING about our code
galaxy-import: setup $(GALAXY_VENV)/.installed
	rm -rf $(GALAXY_BUILD) $(GALAXY_LOG) && mkdir -p $(GALAXY_BUILD)
	$(BIN)/ansible-galaxy collection build --force --output-path $(GALAXY_BUILD) .
	@status=0; \
	( cd $(GALAXY_DIR) && GALAXY_IMPORTER_CONFIG=$(CURDIR)/.config/galaxy-importer.cfg \
	  PATH=$(CURDIR)/$(GALAXY_VENV)/bin:$$PATH venv/bin/python -m galaxy_importer.main build/*.tar.gz \
	) > $(GALAXY_LOG) 2>&1 || status=$$?; \
	cat $(GALAXY_LOG); \
	if [ $$status -ne 0 ]; then echo "galaxy-import: galaxy-importer exited $$status"; exit 1; fi; \
	if ! grep -q '^Importer processing completed successfully' $(GALAXY_LOG); then \
	  echo "galaxy-import: the import did not complete"; exit 1; fi; \
	if grep -E '^(ERROR|CRITICAL|Traceback)' $(GALAXY_LOG); then echo "galaxy-import: errors above"; exit 1; fi; \
	if grep -E '^WARNING' $(GALAXY_LOG) | grep -vE '$(GALAXY_ENV_WARNINGS)'; then \
	  echo "galaxy-import: the warnings above concern the collection"; exit 1; fi; \
	echo "galaxy-import: no errors, no warnings about the collection"
