#!/usr/bin/env bash
# Start or stop the local AWS endpoint (moto in server mode) on loopback, over TLS as AWS is,
# with a self-signed certificate of its own (.cache/moto/cert.pem, the CA bundle to trust).
#
#   tools/moto-server.sh start PORT [--enforce-iam]
#   tools/moto-server.sh stop PORT
#
# --enforce-iam: moto checks every request against IAM (as AWS does), after making two users whose keys
# it writes as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY lines (0600): an administrator
# (.cache/moto/admin-PORT.env) and the EC2 service of the local cloud (.cache/moto/ec2-PORT.env: reads
# instances and gets their roles' credentials, see tests/moto_server.py).
# The certificate also names the AWS API hosts (*.amazonaws.com and friends): the local cloud's
# nodes reach the endpoint under those names (localcloud/, docs/local-cloud.md).
set -euo pipefail
action=$1 port=$2 enforce=${3:-}
state_dir=.cache/moto
pid_file=$state_dir/$port.pid
admin_env=$state_dir/admin-$port.env
ec2_env=$state_dir/ec2-$port.env
cert=$state_dir/cert.pem key=$state_dir/key.pem
url=https://127.0.0.1:$port
regions=${HELIX_LOCALCLOUD_REGIONS:-us-east-1}

answering() { curl -fsS --cacert "$cert" -o /dev/null "$url/moto-api/" 2>/dev/null; }

sans() {
  local r out="IP:127.0.0.1,DNS:localhost,DNS:*.amazonaws.com,DNS:*.s3.amazonaws.com"
  for r in ${regions//,/ }; do
    out+=",DNS:*.$r.amazonaws.com,DNS:*.ecr.$r.amazonaws.com,DNS:*.s3.$r.amazonaws.com,DNS:*.dkr.ecr.$r.amazonaws.com"
  done
  echo "$out"
}

make_cert() {
  if [ -s "$cert" ] && openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | tr -d ' \n' \
      | grep -qF "$(sans | sed 's/IP:/IPAddress:/')"; then
    return
  fi
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=helix local AWS endpoint" \
    -addext "subjectAltName=$(sans)" -keyout "$key" -out "$cert" 2>/dev/null
}

# Moto takes its first requests without checking them (INITIAL_NO_AUTH_ACTION_COUNT is infinite by
# default): make the administrator, then switch enforcement on for everything after.
make_users() {
  (umask 077 && AWS_CA_BUNDLE=$cert .venv/bin/python - "$url" "$admin_env" "$ec2_env") <<'PY'
import sys, json, boto3
url, admin_env, ec2_env = sys.argv[1:]
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
users = {
    admin_env: ("localcloud-admin", ["*"]),
    ec2_env: ("localcloud-ec2", ["ec2:Describe*", "iam:GetInstanceProfile", "s3:ListAllMyBuckets",
                                 "sts:AssumeRole", "sts:GetCallerIdentity"]),
}
for path, (name, actions) in users.items():
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    with open(path, "w") as env:
        env.write(f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
PY
  curl -fsS --cacert "$cert" -o /dev/null -H "Content-Type: text/plain" --data 0 "$url/moto-api/reset-auth"
}

case $action in
start)
  mkdir -p "$state_dir"
  make_cert
  if answering; then echo "local AWS endpoint already running at $url"; exit 0; fi
  rm -f "$admin_env" "$ec2_env"
  # tests/moto_server.py: moto, evaluating the TLS-only bucket policy as AWS does over TLS.
  # 0.0.0.0 would reach beyond this machine; the local cloud forwards its VPCs' API address here.
  nohup .venv/bin/python tests/moto_server.py -H 127.0.0.1 -p "$port" -c "$cert" -k "$key" >"$state_dir/$port.log" 2>&1 &
  echo $! >"$pid_file"
  for _ in $(seq 100); do
    if answering; then
      [ "$enforce" = --enforce-iam ] && make_users
      echo "local AWS endpoint started at $url${enforce:+ (IAM enforced; administrator keys in $admin_env)}"
      exit 0
    fi
    sleep 0.1
  done
  echo "moto server did not answer at $url; see $state_dir/$port.log" >&2; exit 1 ;;
stop)
  rm -f "$admin_env" "$ec2_env"
  [ -f "$pid_file" ] || exit 0
  pid=$(cat "$pid_file")
  rm -f "$pid_file"
  kill "$pid" 2>/dev/null || exit 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  echo "local AWS endpoint at $url stopped" ;;
*) echo "usage: $0 start PORT [--enforce-iam] | stop PORT" >&2; exit 2 ;;
esac
