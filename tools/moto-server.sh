#!/usr/bin/env bash
# Start or stop the local AWS endpoint (moto in server mode) on loopback, over TLS as AWS is,
# with a certificate of its own (.cache/moto/cert.pem).
set -euo pipefail
action=$1 port=$2
state_dir=.cache/moto
pid_file=$state_dir/$port.pid
cert=$state_dir/cert.pem key=$state_dir/key.pem
url=https://127.0.0.1:$port

answering() { curl -fsS --cacert "$cert" -o /dev/null "$url/moto-api/" 2>/dev/null; }

case $action in
start)
  mkdir -p "$state_dir"
  if [ ! -s "$cert" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$key" -out "$cert" 2>/dev/null
  fi
  if answering; then echo "local AWS endpoint already running at $url"; exit 0; fi
  # tests/moto_server.py: moto, evaluating the TLS-only bucket policy as AWS does over TLS.
  nohup .venv/bin/python tests/moto_server.py -H 127.0.0.1 -p "$port" -c "$cert" -k "$key" >"$state_dir/$port.log" 2>&1 &
  echo $! >"$pid_file"
  for _ in $(seq 100); do answering && { echo "local AWS endpoint started at $url"; exit 0; }; sleep 0.1; done
  echo "moto server did not answer at $url; see $state_dir/$port.log" >&2; exit 1 ;;
stop)
  [ -f "$pid_file" ] || exit 0
  pid=$(cat "$pid_file")
  rm -f "$pid_file"
  kill "$pid" 2>/dev/null || exit 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  echo "local AWS endpoint at $url stopped" ;;
*) echo "usage: $0 start|stop PORT" >&2; exit 2 ;;
esac
