"""Stand-in for flannel's CNI plugin (github.com/flannel-io/cni-plugin) on the local test nodes.

The Go module proxy does not serve flannel's CNI plugin, so the test image `flannel-cni-plugin`
carries this script instead; flanneld itself is the real one. It does what the real plugin does
for IPv4: read /run/flannel/subnet.env (written by flanneld), build the delegate network
configuration (bridge with host-local IPAM on this node's flannel subnet, a route to the whole pod
network, the MTU and masquerading flanneld chose), remember it under /var/lib/cni/flannel/<id> and
run the delegate plugin with it; DEL runs the delegate with the remembered configuration.
Runs on the node (python3 is in the test rootfs), called by containerd with the CNI environment.
"""

import contextlib
import ipaddress
import json
import os
import subprocess
import sys

SUBNET_ENV = "/run/flannel/subnet.env"
STATE_DIR = "/var/lib/cni/flannel"


def fail(code, msg, details=""):
    print(json.dumps({"cniVersion": "0.3.1", "code": code, "msg": msg, "details": details}))
    sys.exit(1)


def subnet_env():
    env = {}
    try:
        with open(SUBNET_ENV) as f:
            for line in f:
                key, _sep, value = line.strip().partition("=")
                if key:
                    env[key] = value
    except OSError as e:
        fail(11, f"failed to load flannel 'subnet.env' file: {e}. Check the flannel pod log for this node.")
    for key in ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU"):
        if key not in env:
            fail(11, f"{SUBNET_ENV} is missing {key}")
    return env


def delegate_conf(conf, env):
    delegate = dict(conf.get("delegate") or {})
    delegate.setdefault("name", conf["name"])
    delegate.setdefault("type", "bridge")
    delegate.setdefault("ipMasq", env.get("FLANNEL_IPMASQ", "false") != "true")
    delegate.setdefault("mtu", int(env["FLANNEL_MTU"]))
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    delegate["cniVersion"] = conf.get("cniVersion", "0.3.1")
    ipam = {
        "type": "host-local",
        # flanneld writes the gateway address (10.244.1.1/24); host-local wants the network.
        "ranges": [[{"subnet": str(ipaddress.ip_network(env["FLANNEL_SUBNET"], strict=False))}]],
        "routes": [{"dst": env["FLANNEL_NETWORK"]}],
    }
    ipam.update(conf.get("ipam") or {})
    delegate["ipam"] = ipam
    return delegate


def run_delegate(delegate):
    plugin = None
    for d in os.environ.get("CNI_PATH", "/opt/cni/bin").split(":"):
        if os.access(os.path.join(d, delegate["type"]), os.X_OK):
            plugin = os.path.join(d, delegate["type"])
            break
    if plugin is None:
        fail(7, f"delegate plugin {delegate['type']} not found in CNI_PATH")
    done = subprocess.run([plugin], input=json.dumps(delegate).encode(), capture_output=True, check=False)
    sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    sys.exit(done.returncode)


def main():
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}))
        return
    conf = json.loads(sys.stdin.read() or "{}")
    state = os.path.join(STATE_DIR, os.environ.get("CNI_CONTAINERID", "unknown"))
    if command == "ADD":
        delegate = delegate_conf(conf, subnet_env())
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        with open(state, "w") as f:
            json.dump(delegate, f)
        run_delegate(delegate)
    elif command in ("DEL", "CHECK"):
        try:
            with open(state) as f:
                delegate = json.load(f)
        except OSError:
            if command == "DEL":  # nothing was set up, or it was already removed
                return
            delegate = delegate_conf(conf, subnet_env())
        if command == "DEL":
            with contextlib.suppress(OSError):
                os.unlink(state)
        run_delegate(delegate)
    else:
        fail(4, f"unknown CNI_COMMAND {command!r}")


if __name__ == "__main__":
    main()
