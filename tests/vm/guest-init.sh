#!/bin/sh
# /init of the VM suite's initramfs (busybox ash, PID 1). Brings up the kernel side (modules,
# configfs, loopback), starts the RDS simulator exporting through nvmet and the driver
# (controller + node on one socket), runs /scenario.sh, and powers off. Everything the host
# needs is on the serial console: CHECK/TIMING lines and the final "N passed, M failed" line.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Kernel messages would tear CHECK lines apart on the shared serial console.
dmesg -n 1
mkdir -p /dev/pts /run /tmp /srv /var/lib/rds-csi /etc/nvme /var/log
mount -t tmpfs -o size=64m run /run
mount -t tmpfs -o size=64m tmp /tmp
# Backing files of the simulated RDS: sparse, so a few GiB of "disks" cost only what is written.
mount -t tmpfs -o size=2g srv /srv
mount -t tmpfs -o size=16m state /var/lib/rds-csi

up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$(up)] $*"; }
finish() { # rc message
    log "$2"
    sync
    poweroff -f
    sleep 5
    exit "$1"
}

# A setup failure is a CHECK failure too, so the host never mistakes it for a clean run.
setup_fail() {
    echo "CHECK vm.setup FAIL $1"
    echo "0 passed, 1 failed, 0 skipped"
    finish 1 "setup failed"
}

log "INIT kernel=$(uname -r)"
for m in $(cat /etc/vm-modules); do
    modprobe "$m" 2>/dev/null || log "modprobe $m failed (may be built in)"
done
mount -t configfs none /sys/kernel/config || log "configfs mount failed"
log "modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
ip link set lo up
# nvme-cli (used by the scenario's raw checks) needs a host NQN/ID pair that agree (kernel 6.12
# rejects a mismatch); the driver derives its own identity in its state directory.
U=$(cat /proc/sys/kernel/random/uuid)
echo "nqn.2014-08.org.nvmexpress:uuid:$U" > /etc/nvme/hostnqn
echo "$U" > /etc/nvme/hostid

[ -e /dev/nvme-fabrics ] || setup_fail "no /dev/nvme-fabrics: nvme-tcp did not load"
[ -d /sys/kernel/config/nvmet ] || setup_fail "no nvmet configfs tree"

export RDS_CSI_LOG=${RDS_CSI_LOG:-info}
# JSON logs: the scenario reads the driver's own timestamps to split NodeStage into phases.
export RDS_CSI_LOG_FORMAT=json
# Two listen addresses, like an RDS's two interfaces: every disk is exported on 127.0.0.1 and
# 127.0.0.2 (same TCP port), so a volume can be staged over two NVMe/TCP paths (multipath).
rds-csi sim --listen 127.0.0.1:2222 --host-key-file /etc/rds/host_key \
    --authorized-keys /etc/rds/authorized_keys --storage-dir /srv/rds --capacity 8G \
    --nvmet --nvmet-address 127.0.0.1,127.0.0.2 > /var/log/sim.log 2>&1 &
SIM_PID=$!
i=0; until grep -q 'rds-sim listening' /var/log/sim.log 2>/dev/null; do
    i=$((i+1)); [ $i -lt 300 ] || break; sleep 0.1
done
grep -q 'rds-sim listening' /var/log/sim.log || { cat /var/log/sim.log; setup_fail "simulator did not start"; }
log "simulator up (pid $SIM_PID)"

ENDPOINT=unix:///run/csi/csi.sock
mkdir -p /run/csi
# One start command for the first start and for every restart a scenario does (node plugin
# restarted with volumes mounted): same arguments, same log (appended), the new pid in
# /run/driver.pid. It returns once the new socket is there (the old file is removed first so a
# restart never mistakes it for the new one); exit 1 if it never appears.
cat > /usr/bin/start-driver <<'EOF'
#!/bin/sh
rm -f /run/csi/csi.sock
RDS_CSI_LOG=${RDS_CSI_DRIVER_LOG:-info,driver=debug,nvme=debug,mount=debug} RDS_CSI_LOG_FORMAT=json \
rds-csi all --no-kubernetes --endpoint unix:///run/csi/csi.sock --node-id vm-node \
    --kubelet-dir /run/kubelet \
    --rds-address 127.0.0.1 --rds-port 2222 --rds-user admin \
    --rds-key-file /etc/rds/id_ed25519 --rds-host-key /etc/rds/host_key.pub \
    --nvme-address 127.0.0.1 --nvme-port 4420 >> /var/log/driver.log 2>&1 &
echo $! > /run/driver.pid
i=0; until [ -S /run/csi/csi.sock ]; do
    i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1
done
EOF
chmod +x /usr/bin/start-driver
: > /var/log/driver.log
start-driver || { tail -n 40 /var/log/driver.log; setup_fail "driver socket never appeared"; }
DRIVER_PID=$(cat /run/driver.pid)
log "driver up (pid $DRIVER_PID)"

export ENDPOINT DRIVER_PID SIM_PID
/scenario.sh
rc=$?
log "scenario exit $rc; driver log tail:"
for f in driver sim; do
    tail -n 80 /var/log/$f.log | jq -r -R --arg f "$f" 'fromjson? // {message: .} | "    \($f): \(.timestamp // "" | .[11:23]) \(.level // "") \(.message // "") \(del(.timestamp, .level, .message, .target) | tostring)"'
done
finish "$rc" "VM-DONE"
