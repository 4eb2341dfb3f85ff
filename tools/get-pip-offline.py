"""Stand-in for ansible-test's get-pip bootstrap script, whose download host CI cannot reach.

ansible-test runs it as `python get_pip.py [pip options] PACKAGES` inside a new virtualenv with a
filtered environment; this installs pip from the interpreter's own ensurepip, keeps the machine's
CA bundle for every later pip call in that virtualenv, then installs the requested packages.
"""

import ensurepip
import os
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null for the rest of the process
if os.path.exists(CA_BUNDLE):
    with open(os.path.join(sys.prefix, "pip.conf"), "w") as conf:
        conf.write(f"[global]\ncert = {CA_BUNDLE}\n")
arguments = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *arguments])
