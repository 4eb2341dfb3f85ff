"""A fake kubeadm on disk for helix.kubeadm_aws.join_command: the `kubeadm` fixture.

It answers `kubeadm token list` and `kubeadm token create --print-join-command` from a file of
tokens and logs every call, so tests can revoke tokens and see how they were made.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

FAKE_KUBEADM = textwrap.dedent(
    """\
    #!{python}
    # A stand-in for kubeadm's token commands; its tokens live in $FAKE_KUBEADM_STATE (one per line).
    import os, random, string, sys
    state = os.environ["FAKE_KUBEADM_STATE"]
    tokens = open(state).read().split() if os.path.exists(state) else []
    with open(state + ".calls", "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    args = sys.argv[1:]
    if args[:2] == ["token", "list"]:
        print("TOKEN                     TTL   EXPIRES                USAGES                   DESCRIPTION")
        for t in tokens:
            print(t + "   1h    2030-01-01T00:00:00Z   authentication,signing   test")
    elif args[:2] == ["token", "create"]:
        alphabet = string.ascii_lowercase + string.digits
        token = "".join(random.choices(alphabet, k=6)) + "." + "".join(random.choices(alphabet, k=16))
        open(state, "a").write(token + "\\n")
        print("kubeadm join 10.0.0.10:6443 --token", token, "--discovery-token-ca-cert-hash sha256:" + "ab" * 32, "")
    else:
        sys.exit("unexpected: " + " ".join(args))
    """
)


@pytest.fixture
def kubeadm(tmp_path, monkeypatch):
    path = tmp_path / "kubeadm"
    path.write_text(FAKE_KUBEADM.format(python=sys.executable))
    path.chmod(0o755)
    state = tmp_path / "tokens"
    monkeypatch.setenv("FAKE_KUBEADM_STATE", str(state))

    class Fake:
        executable = str(path)

        @staticmethod
        def tokens():
            return state.read_text().split() if state.exists() else []

        @staticmethod
        def revoke_all():
            state.write_text("")

        @staticmethod
        def calls():
            calls = tmp_path / "tokens.calls"
            return calls.read_text().splitlines() if calls.exists() else []

    return Fake
