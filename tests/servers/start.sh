#!/usr/bin/env bash
# Installs (when missing) and starts the local test servers on 127.0.0.1:
#   * a single-node Ceph RADOS Gateway (memstore OSD) — the strict S3 server;
#   * moto server — SQS, Secrets Manager and a second S3; and a second moto,
#     serving one request at a time, for DynamoDB (moto_serial.py).
# Writes the endpoints to $FERRY_TEST_DIR/servers.env (source it) and the
# process ids to $FERRY_TEST_DIR/pids. Stop with tests/servers/stop.sh.
#
# FERRY_OSD_STORE=memstore (default, for tests: up to 12 GiB held in RAM) or
# bluestore (for benchmarks: a sparse block file of FERRY_OSD_BLOCK_BYTES,
# default 40 GiB, under $FERRY_TEST_DIR, so multi-GiB data sets stay on disk).
set -euo pipefail

DIR=${FERRY_TEST_DIR:-/tmp/ferry-test-servers}
RGW_PORT=${FERRY_RGW_PORT:-7480}
MOTO_PORT=${FERRY_MOTO_PORT:-5055}
MOTO_DYNAMODB_PORT=${FERRY_MOTO_DYNAMODB_PORT:-$((MOTO_PORT + 1))}
MOTO_IAM_PORT=${FERRY_MOTO_IAM_PORT:-$((MOTO_PORT + 2))}
MON_PORT=${FERRY_MON_PORT:-3300}
MON_V1_PORT=${FERRY_MON_V1_PORT:-6789}
MOTO_VENV=${FERRY_MOTO_VENV:-/opt/ferry-moto}
OSD_STORE=${FERRY_OSD_STORE:-memstore}
OSD_BLOCK_BYTES=${FERRY_OSD_BLOCK_BYTES:-42949672960}
AK=ferrytestaccess
SK=ferrytestsecretkey0123456789
log() { echo "[servers] $*" >&2; }

install() {
  # faketime: the clock-skew scenario runs a worker with its clock shifted.
  # rclone: the independent reader of the modification times ferry keeps.
  # time (GNU time): the memory test reads a process's peak RSS from it.
  if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v uuidgen >/dev/null || ! command -v curl >/dev/null || ! command -v jq >/dev/null || ! command -v faketime >/dev/null || ! command -v rclone >/dev/null || [ ! -x /usr/bin/time ]; then
    log "installing Ceph (ceph-mon, ceph-osd, radosgw), faketime, rclone and GNU time from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl jq faketime rclone time >/dev/null
  fi
  if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    log "installing moto[server]==5.1.22 into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q 'moto[server]==5.1.22'
  fi
}

wait_http() {
  local url=$1 name=$2
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.2
  done
  log "$name did not answer at $url; its log:"; tail -n 30 "$DIR/$name.log" >&2 || true
  return 1
}

osd_store_conf() {
  case "$OSD_STORE" in
    memstore) printf 'osd_objectstore = memstore\nmemstore_device_bytes = 12884901888\n' ;;
    bluestore)
      printf 'osd_objectstore = bluestore\nbluestore_block_path = %s/bluestore.img\n' "$DIR"
      printf 'bluestore_block_create = true\nbluestore_block_size = %s\n' "$OSD_BLOCK_BYTES"
      printf 'bluestore_block_db_create = false\nbluestore_block_wal_create = false\n'
      printf 'osd_memory_target = 2147483648\nbluestore_cache_autotune = true\n' ;;
    *) log "FERRY_OSD_STORE must be memstore or bluestore, not '$OSD_STORE'"; exit 2 ;;
  esac
}

install
"$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
rm -rf "$DIR"; mkdir -p "$DIR"/{mon,osd,rgw,run}
FSID=$(uuidgen)
CONF="$DIR/ceph.conf"
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$MON_PORT
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
mon_data_avail_crit = 1
mon_data_avail_warn = 2
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
run_dir = $DIR/run
log_file = $DIR/\$name.ceph.log
admin_socket = $DIR/run/\$name.asok
keyring = $DIR/keyring
[mon.a]
mon_data = $DIR/mon
[osd]
osd_data = $DIR/osd
osd_max_object_size = 1073741824
$(osd_store_conf)
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw_dns_name = localhost
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 10
rgw_data = $DIR/rgw
CONF
export CEPH_CONF=$CONF
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" -c "$CONF"
ceph-mon -f -i a -c "$CONF" >"$DIR/mon.log" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 1 100); do timeout 5 ceph -c "$CONF" mon stat >/dev/null 2>&1 && break; sleep 0.2; done
OSD_UUID=$(uuidgen)
OSD_ID=$(ceph -c "$CONF" osd new "$OSD_UUID")
mkdir -p "$DIR/osd"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" --osd-data "$DIR/osd" >"$DIR/osd-mkfs.log" 2>&1
ceph-osd -f -c "$CONF" -i "$OSD_ID" --osd-data "$DIR/osd" >"$DIR/osd.log" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 1 150); do ceph -c "$CONF" osd stat 2>/dev/null | grep -q ' 1 up' && break; sleep 0.2; done
radosgw-admin -c "$CONF" user create --uid=test --display-name=test --access-key=$AK --secret-key=$SK >/dev/null
radosgw -f -c "$CONF" -n client.rgw.a >"$DIR/radosgw.log" 2>&1 &
echo $! >>"$DIR/pids"
wait_http "http://127.0.0.1:$RGW_PORT" radosgw

"$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$DIR/moto.log" 2>&1 &
echo $! >>"$DIR/pids"
wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/" moto
# DynamoDB on a moto that serves one request at a time: conditional writes
# stay atomic, as in DynamoDB (see moto_serial.py).
"$MOTO_VENV/bin/python" "$(dirname "$0")/moto_serial.py" 127.0.0.1 "$MOTO_DYNAMODB_PORT" >"$DIR/moto-dynamodb.log" 2>&1 &
echo $! >>"$DIR/pids"
wait_http "http://127.0.0.1:$MOTO_DYNAMODB_PORT/moto-api/" moto-dynamodb

# A third moto that enforces IAM after its first 3 requests, which create the
# admin user (its keys go to servers.env): the CloudFormation stack is deployed
# there and each binary runs with exactly its role's policies. A TCP connect,
# not an HTTP probe, waits for it (a probe would spend one of the 3 requests).
# A server of an earlier start may still hold the port while it exits; the
# connect below must reach a fresh one, whose 3 requests are not yet spent.
for _ in $(seq 1 100); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_IAM_PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
INITIAL_NO_AUTH_ACTION_COUNT=3 "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_IAM_PORT" >"$DIR/moto-iam.log" 2>&1 &
echo $! >>"$DIR/pids"
for _ in $(seq 1 150); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_IAM_PORT") 2>/dev/null; then break; fi
  sleep 0.2
done
IAM_ADMIN=$("$MOTO_VENV/bin/python" - "http://127.0.0.1:$MOTO_IAM_PORT" <<'PY'
import sys, json, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="ferry-admin")
iam.put_user_policy(UserName="ferry-admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="ferry-admin")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
)
read -r IAM_ADMIN_KEY IAM_ADMIN_SECRET <<<"$IAM_ADMIN"

# Virtual-hosted addressing: radosgw takes the bucket from the Host header
# (rgw_dns_name = localhost), so the test bucket's host name must resolve
# to 127.0.0.1 (glibc resolves no subdomain of localhost by itself).
VHOST_BUCKET=ferry-vhost
if ! getent hosts "$VHOST_BUCKET.localhost" >/dev/null; then
  if [ -w /etc/hosts ]; then
    echo "127.0.0.1 $VHOST_BUCKET.localhost" >>/etc/hosts
    log "added $VHOST_BUCKET.localhost to /etc/hosts (virtual-hosted addressing test)"
  else
    log "cannot add $VHOST_BUCKET.localhost to /etc/hosts (run as root): the virtual-hosted addressing test will fail"
  fi
fi

cat >"$DIR/servers.env" <<ENV
export FERRY_TEST_RGW=http://127.0.0.1:$RGW_PORT
export FERRY_TEST_RGW_ACCESS_KEY=$AK
export FERRY_TEST_RGW_SECRET_KEY=$SK
export FERRY_TEST_MOTO=http://127.0.0.1:$MOTO_PORT
export FERRY_TEST_MOTO_DYNAMODB=http://127.0.0.1:$MOTO_DYNAMODB_PORT
export FERRY_TEST_RGW_LOG=$DIR/client.rgw.a.ceph.log
export FERRY_TEST_MOTO_PYTHON=$MOTO_VENV/bin/python
export FERRY_TEST_MOTO_IAM=http://127.0.0.1:$MOTO_IAM_PORT
export FERRY_TEST_MOTO_IAM_ADMIN_KEY=$IAM_ADMIN_KEY
export FERRY_TEST_MOTO_IAM_ADMIN_SECRET=$IAM_ADMIN_SECRET
export FERRY_TEST_VHOST_BUCKET=$VHOST_BUCKET
ENV
log "radosgw on 127.0.0.1:$RGW_PORT, moto on 127.0.0.1:$MOTO_PORT (env: $DIR/servers.env)"
