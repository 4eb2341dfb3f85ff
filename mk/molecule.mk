# Molecule scenarios under molecule/, sharing .config/molecule/config.yml and molecule/shared/.
# Included by the main Makefile, which defines BIN. See docs/testing.md.

.PHONY: molecule-roles

## molecule-roles: the role scenarios, each against endpoints it starts and stops; part of make test
molecule-roles: setup
	$(BIN)/molecule test --all
