# Molecule scenarios under molecule/, sharing .config/molecule/config.yml and molecule/shared/.
# Included by the main Makefile, which defines BIN. See docs/testing.md.

.PHONY: molecule molecule-roles

## molecule-roles: the role scenarios (all but cluster), each against endpoints it starts and stops; part of make test
molecule-roles: setup
	$(BIN)/molecule test --all --exclude cluster

## molecule: every Molecule scenario, molecule/cluster included (root; its node images take ~30 min cold, then cached)
molecule: setup node-tools node-rootfs node-images
	$(BIN)/molecule test --all
