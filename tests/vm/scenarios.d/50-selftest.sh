# `rds-csi selftest --node` on the real kernel: the simulated RDS (rds-sim --nvmet) exports the
# selftest volume through nvmet, and the selftest's node half connects it with the node plugin's
# initiator, checks the size the kernel sees, writes a pattern, reconnects, reads it back and
# disconnects; then every command shape runs to the end and the cleanup leaves nothing. Sourced
# by /scenario.sh (busybox ash): uses its helpers and counters.
#
# CHECK names: selftest.*

ST_OUT=/tmp/selftest.out
ST_ERR=/tmp/selftest.err
ST_REPORT=/tmp/selftest-report.json
rds-csi selftest --node --log-level warn \
    --rds-address 127.0.0.1 --rds-port 2222 --rds-user admin \
    --rds-key-file /etc/rds/id_ed25519 --rds-host-key /etc/rds/host_key.pub \
    --nvme-address 127.0.0.1 --nvme-port 4420 --timeout 240s \
    --report "$ST_REPORT" > "$ST_OUT" 2> "$ST_ERR"
ST_RC=$?
st_line() { grep -E "^[A-Z]+ +$1 " "$ST_OUT" | head -n1; }
if [ "$ST_RC" = 0 ]; then
    pass selftest.run "$(grep '^summary' "$ST_OUT")"
else
    fail selftest.run "exit $ST_RC: $(grep -E '^FAIL' "$ST_OUT" | head -n3 | cut -c1-300 | tr '\n' ' ') $(tail -n3 "$ST_ERR" | tr '\n' ' ' | cut -c1-200)"
fi
for st_step in node-connect node-write node-reconnect node-read node-disconnect; do
    st_l=$(st_line "$st_step")
    case "$st_l" in
        PASS*) pass "selftest.$st_step" "$(echo "$st_l" | sed 's/.* — //' | cut -c1-200)" ;;
        *) fail "selftest.$st_step" "${st_l:-no line for $st_step}" ;;
    esac
done
st_ctrls=""
for c in /sys/class/nvme/nvme*; do
    [ -e "$c/subsysnqn" ] && grep -q rds-csi-selftest "$c/subsysnqn" && st_ctrls="$st_ctrls ${c##*/}"
done
check selftest.disconnected "no selftest controller left on the initiator${st_ctrls}" -- [ -z "$st_ctrls" ]
check selftest.target-clean "no selftest subsystem left in nvmet" -- \
    sh -c "! ls '$CFG/subsystems' | grep -q rds-csi-selftest"
# Files only: the simulator's backing store keeps the empty host directory it once created,
# which is not part of the simulated RDS (its /file listing shows no directory without files).
check selftest.rds-clean "no selftest file left in the simulated RDS's storage" -- \
    sh -c "! find /srv/rds -type f 2>/dev/null | grep -q rds-csi-selftest"
check selftest.report "report written with raw outputs and no address" -- \
    sh -c "jq -e '.steps | length > 20' '$ST_REPORT' > /dev/null && ! grep -q '127.0.0.1' '$ST_REPORT'"
