#!/usr/bin/env bash
# ansible-test sanity on a copy of the checkout at the path layout ansible-test requires
# (.../ansible_collections/helix/kubeadm_aws), in the project's own virtualenv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.cache/sanity/ansible_collections/helix/kubeadm_aws
rm -rf "$dest" && mkdir -p "$dest"
cd "$root"
pip_version=$(grep -oP "pip='\K[0-9.]+" .venv/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
mkdir -p ~/.ansible/test/cache
cp tools/get-pip-offline.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest" 2>/dev/null || true
# The collections ours builds on (amazon.aws, kubernetes.core), from the ansible package, beside it.
for dependency in amazon kubernetes; do
  ln -sfn "$(echo "$root"/.venv/lib/python3*/site-packages/ansible_collections/$dependency)" "$root/.cache/sanity/ansible_collections/$dependency"
done
cd "$dest"
git init -q && git add -A >/dev/null
exec "$root/.venv/bin/ansible-test" sanity --python "$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
  --requirements --color no "$@"
