#!/bin/bash
# The guest side of the VM harness (run by carlinkd-vmtest from the 9p share at /mnt/host):
# installs carlinkd the way README "Installing on a head unit" says, from the wheels in the share
# (no index, no network), then runs the checks. One line per check goes to /mnt/host/out/results:
#   PASS|FAIL|SKIP <check> <detail>
# Exit code: 0 when no check failed. Everything else this script prints is the guest log.
set -u
share=/mnt/host
out=$share/out
results=$out/results
: >"$results"
unit=carlinkd
conf=/etc/carlinkd/carlinkd.toml
failed=0
t_boot=$(cut -d' ' -f1 /proc/uptime)

log() { printf '[%7.1f] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
result() {  # result PASS|FAIL|SKIP name detail...
  local status=$1 name=$2; shift 2
  [ "$status" = FAIL ] && failed=1
  local detail
  detail=$(printf '%s' "$*" | tr -s '\n\t' '  ')
  printf '%s %s %s\n' "$status" "$name" "$detail" >>"$results"
  log "$status $name $detail"
}
prop() { systemctl show -P "$2" "$1"; }
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
# wait_for SECONDS COMMAND...: poll every 0.5 s until COMMAND succeeds; 1 on timeout.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}
journal_since() { journalctl -u "$unit" --no-pager -o cat --since "@$1" "${@:2}"; }

log "guest up after ${t_boot}s; installing carlinkd"

# ---------------------------------------------------------------- install (README, verbatim where it can be)
install_carlinkd() {
  set -e
  cd "$share"
  # README: sudo /opt/carlinkd/bin/pip install dist/carlinkd-*.whl (the venv exists in the image;
  # the dependencies' wheels are in the same folder: --no-index --find-links, no network).
  /opt/carlinkd/bin/pip install -q --disable-pip-version-check --no-index --find-links wheels/ wheels/carlinkd-*.whl
  install -m 0644 systemd/carlinkd.sysusers /usr/lib/sysusers.d/carlinkd.conf
  install -m 0644 systemd/carlinkd.tmpfiles /usr/lib/tmpfiles.d/carlinkd.conf
  install -m 0644 systemd/org.carlinkd.Daemon1.conf /usr/share/dbus-1/system.d/
  install -D -m 0644 systemd/carlinkd.toml "$conf"
  # The example configuration names can0; this machine's bus is vcan0.
  sed -i 's/^channel = "can0"/channel = "vcan0"/' "$conf"
  grep -q '^channel = "vcan0"' "$conf"
  # can0's bring-up file, for vcan0: the shipped .network with Name= changed, plus a .netdev that
  # creates the virtual interface (a real can0 exists once its driver loads).
  sed 's/^Name=can0$/Name=vcan0/' systemd/80-can0.network >/etc/systemd/network/80-vcan0.network
  grep -q '^Name=vcan0$' /etc/systemd/network/80-vcan0.network
  install -m 0644 guest/80-vcan0.netdev /etc/systemd/network/
  install -m 0644 systemd/carlinkd.service /etc/systemd/system/
  systemd-sysusers && systemd-tmpfiles --create
  systemctl enable --now systemd-networkd
  systemctl reload dbus && systemctl daemon-reload
  systemctl enable carlinkd
  set +e
}
t0=$(date +%s.%N)
if ( install_carlinkd ) >"$out/install.log" 2>&1; then
  result PASS install "pip install from the share (no index) + systemd/ files, sysusers, tmpfiles, D-Bus policy, networkd vcan0 in $(seconds_since "$t0")s"
else
  result FAIL install "see install.log: $(tail -n 3 "$out/install.log")"
  exit 1
fi
# vcan0 comes from systemd-networkd (80-vcan0.netdev + the shipped .network), as can0 would.
if wait_for 20 sh -c 'ip -br link show vcan0 2>/dev/null | grep -q UP'; then
  result PASS vcan0-networkd "vcan0 created and up by systemd-networkd: $(networkctl --no-pager --no-legend list vcan0 2>/dev/null | tr -s ' ')"
else
  result FAIL vcan0-networkd "vcan0 not up after 20 s: $(networkctl --no-pager list 2>&1 | tr '\n' ';')"
fi
# README's doctor step, run as the service user; informational (the image has no speech output).
runuser -u carlinkd -- /opt/carlinkd/bin/carlinkd --config "$conf" doctor >"$out/doctor.log" 2>&1
log "doctor exit $?: $(tr '\n' ';' <"$out/doctor.log" | cut -c1-400)"

# ---------------------------------------------------------------- start: Type=notify, STATUS=
t_start=$(date +%s)
t0=$(date +%s.%N)
systemctl start "$unit"
rc=$?
elapsed=$(seconds_since "$t0")
state="$(prop $unit ActiveState)/$(prop $unit SubState)"
status_line=$(systemctl status "$unit" --no-pager 2>&1 | sed -n 's/^ *Status: //p')
if [ $rc -eq 0 ] && [ "$state" = active/running ] && [ "$(prop $unit Type)" = notify ] && [ -n "$status_line" ]; then
  result PASS start-notify "systemctl start returned after ${elapsed}s (READY=1), $state, Status: $status_line"
else
  result FAIL start-notify "rc=$rc state=$state type=$(prop $unit Type) status='$status_line' after ${elapsed}s; $(journalctl -u $unit --no-pager -o cat -n 5 | tr '\n' ';')"
fi
main_pid=$(prop $unit MainPID)

# ---------------------------------------------------------------- watchdog armed
wd_usec=$(prop $unit WatchdogUSec)
wd_ts1=$(prop $unit WatchdogTimestampMonotonic)
if [ "$wd_usec" = 20s ] && [ "${wd_ts1:-0}" != 0 ]; then
  result PASS watchdog-armed "WatchdogUSec=$wd_usec, WatchdogTimestamp=$(prop $unit WatchdogTimestamp)"
else
  result FAIL watchdog-armed "WatchdogUSec=$wd_usec WatchdogTimestampMonotonic=$wd_ts1"
fi

# ---------------------------------------------------------------- CAN: simulator, cansend, what the daemon sends
# vcan0 is the daemon's bus. The simulator and cansend sit on vcan1 ("the rest of the car"),
# joined to vcan0 by the kernel's CAN gateway both ways. The gateway routes a frame at most once
# (can-gw max_hops=1), so a third interface vcan2, fed from vcan0 only, receives exactly the
# frames that originate on vcan0: the daemon's own. candump on vcan2 is the daemon's transmit log.
modprobe can-gw
for i in vcan1 vcan2; do ip link add dev $i type vcan && ip link set $i up; done
cangw -A -s vcan1 -d vcan0 -e
cangw -A -s vcan0 -d vcan1 -e
cangw -A -s vcan0 -d vcan2 -e
candump -L vcan2 >"$out/daemon-tx.log" 2>&1 &
dump_tx=$!
candump -L vcan0 >"$out/vcan0.log" 2>&1 &
dump_bus=$!

t_sim=$(date +%s)
sleep 1
log "simulator: tire-leak (steady 90 km/h) for 20 s, answering OBD-II, on vcan1"
/opt/carlinkd/bin/carlinkd-sim --output socketcan:vcan1 --scenario tire-leak \
  --duration 20 --obd >"$out/sim.log" 2>&1
sim_rc=$?
sim_frames=$(grep -c ' vcan0 ' "$out/vcan0.log")

# D-Bus API present? (carlinkd/hmi, org.carlinkd.Daemon1 on the system bus)
dbus_name=org.carlinkd.Daemon1
dbus_reason=""
if hmi_consts=$(/opt/carlinkd/bin/python -c 'from carlinkd.hmi.api import BUS_NAME, OBJECT_PATH, INTERFACE; print(BUS_NAME, OBJECT_PATH, INTERFACE)' 2>"$out/hmi-import.log"); then
  read -r dbus_name dbus_path dbus_iface <<<"$hmi_consts"
  if ! busctl --system status "$dbus_name" >/dev/null 2>&1; then
    dbus_reason="carlinkd.hmi is installed but $dbus_name is not on the system bus (the daemon does not start HmiService in this tree)"
  fi
else
  dbus_reason="the installed carlinkd has no importable carlinkd.hmi: $(tail -n 1 "$out/hmi-import.log")"
fi
get_signal() {  # get_signal NAME -> busctl's JSON reply of GetSignals([NAME]) as root
  busctl --system --json=short call "$dbus_name" "$dbus_path" "$dbus_iface" GetSignals as 1 "$1"
}

# What the daemon made of the simulator's traffic, through the public command first: the cloud
# outbox ("carlinkd status") holds a vehicle status snapshot built from decoded signals (the
# sync service queues one as soon as it has any; the outbox is empty before the first frame).
# Then the snapshot itself, read from the daemon's database: by consent ([sync] location =
# help, the default) it carries the odometer but no speed or position; the speed the scenario
# drives (steady 90 km/h) is read over D-Bus instead.
status=$(runuser -u carlinkd -- /opt/carlinkd/bin/carlinkd --config "$conf" status 2>&1 | tr '\n' ';')
snapshot=$(python3 - <<'PY' 2>&1
import json, sqlite3
db = sqlite3.connect("file:/var/lib/carlinkd/sync.db?mode=ro", uri=True)
row = db.execute("SELECT body FROM sync_outbox WHERE class = 'status' ORDER BY seq DESC LIMIT 1").fetchone()
body = json.loads(row[0]) if row else {}
body = body.get("body", body) if isinstance(body, dict) else {}
vehicle = body.get("vehicle", {}) if isinstance(body, dict) else {}
print(json.dumps({k: vehicle[k] for k in sorted(vehicle)}) if vehicle else "no status snapshot")
PY
)
detail="sim exit $sim_rc, $sim_frames frames reached vcan0; carlinkd status: $status snapshot: $snapshot"
speed_ok=0
if echo "$snapshot" | grep -q '"Vehicle.TraveledDistance"' \
    && ! echo "$snapshot" | grep -q -e 'Vehicle.Speed' -e 'CurrentLocation'; then
  speed_ok=1
fi
if [ -z "$dbus_reason" ]; then
  dspeed=$(get_signal Vehicle.Speed 2>&1)
  detail="$detail; D-Bus GetSignals(Vehicle.Speed) = $dspeed"
  speed=$(echo "$dspeed" | sed -n 's/.*"Vehicle.Speed":\[{"type":"d","data":\([0-9.e+-]*\)}.*/\1/p')
  [ -n "$speed" ] && awk -v v="$speed" 'BEGIN {exit !(v + 0 > 60 && v + 0 < 120)}' || speed_ok=0
else
  speed_ok=0
fi
if [ $sim_rc -eq 0 ] && [ "$sim_frames" -gt 1000 ] && [ $speed_ok = 1 ] && echo "$status" | grep -q 'outbox status: [1-9]'; then
  result PASS sim-drives-daemon "$detail"
else
  result FAIL sim-drives-daemon "$detail; sim: $(tail -n 2 "$out/sim.log" | tr '\n' ';')"
fi

# cansend (can-utils): EngineTemps (0x3D1) with coolant 125 degC (raw 165 = 0xA5), a value the
# simulator never plays, held for 8 s so the critical-coolant rule (3 s hold) raises its alert,
# whose warning quotes the decoded value.
t_send=$(date +%s)
for _ in $(seq 16); do cansend vcan1 3D1#A5505000; sleep 0.5; done
coolant=$(journal_since "$t_send" | grep -m1 'Coolant temperature 125')
detail="journal: '${coolant:-no coolant alert quoting 125}'"
ok=1
[ -n "$coolant" ] || ok=0
if [ -z "$dbus_reason" ]; then
  ect=$(get_signal Vehicle.Powertrain.CombustionEngine.ECT 2>&1)
  detail="$detail; D-Bus GetSignals(ECT) = $ect"
  echo "$ect" | grep -Eq '"data":[^0-9]*125([^0-9]|$)|125[^0-9]' || ok=0
else
  detail="$detail; D-Bus SKIPPED: $dbus_reason"
fi
if [ $ok = 1 ]; then result PASS cansend-decoded "$detail"; else result FAIL cansend-decoded "$detail"; fi

# A control frame sent straight on vcan0 must show up in the daemon-transmit log (the monitor
# works); it is then left out of the verdict. 0x123 is nothing the daemon or the sim sends.
cansend vcan0 123#C0FFEE
sleep 1
kill "$dump_tx" "$dump_bus" 2>/dev/null
wait "$dump_tx" "$dump_bus" 2>/dev/null
# candump -L: "(time) vcan2 ID#DATA". Allowed: OBD-II request IDs (11-bit 0x7DF functional,
# 0x7E0-0x7E7 physical; 29-bit 0x18DB33F1 / 0x18DAxxF1) carrying either a single-frame request
# for an SAE J1979 service 0x01-0x0A (PCI 0x01-0x07) or ISO 15765-2 flow control (PCI 0x3N).
classify() {
  awk '{split($3, f, "#"); id = f[1]; d = f[2]
        if (id == "123" && d == "C0FFEE") next
        if (!(id == "7DF" || id ~ /^7E[0-7]$/ || id == "18DB33F1" || id ~ /^18DA..F1$/)) { print "bad", id "#" d; next }
        pci = substr(d, 1, 1); len = substr(d, 2, 1); sid = substr(d, 3, 2)
        if (pci == "3") { print "fc", id; next }
        if (pci == "0" && len ~ /^[1-7]$/ && sid ~ /^0[1-9A]$/) { print "req", id; next }
        print "bad", id "#" d}' "$1"
}
classes=$(classify "$out/daemon-tx.log")
n_req=$(echo "$classes" | grep -c '^req')
n_fc=$(echo "$classes" | grep -c '^fc')
bad=$(echo "$classes" | awk '$1 == "bad" {print $2}' | sort | uniq -c | head -n 10 | awk '{printf "%s (x%s) ", $2, $1}')
ids=$(echo "$classes" | awk 'NF == 2 && $1 != "bad" {print $2}' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')
if ! grep -q ' 123#C0FFEE' "$out/daemon-tx.log"; then
  result FAIL daemon-tx-obd-only "the monitor missed the control frame sent on vcan0: cannot attribute frames"
elif [ -n "$bad" ]; then
  result FAIL daemon-tx-obd-only "the daemon sent frames that are neither OBD-II requests nor flow control: $bad"
else
  result PASS daemon-tx-obd-only "every frame the daemon sent is an OBD-II request ($n_req) or ISO-TP flow control ($n_fc); by ID: ${ids:-none} (seen on vcan2, which only gets frames originating on vcan0; control frame seen there too)"
fi

# ---------------------------------------------------------------- watchdog fed from the event loop
wd_ts2=$(prop $unit WatchdogTimestampMonotonic)
if [ "$(prop $unit MainPID)" = "$main_pid" ] && [ "${wd_ts2:-0}" -gt "${wd_ts1:-0}" ]; then
  result PASS watchdog-fed "WatchdogTimestamp moved on by $(( (wd_ts2 - wd_ts1) / 1000000 ))s while the daemon ran (same PID $main_pid)"
else
  result FAIL watchdog-fed "WatchdogTimestampMonotonic $wd_ts1 -> $wd_ts2, MainPID $main_pid -> $(prop $unit MainPID)"
fi

# ---------------------------------------------------------------- D-Bus under the shipped policy
if [ -n "$dbus_reason" ]; then
  result SKIP dbus-policy "$dbus_reason"
else
  useradd --system -M -s /usr/sbin/nologin vmtest-outsider
  useradd --system -M -s /usr/sbin/nologin -G carlinkd-hmi vmtest-hmi
  intro=$(runuser -u vmtest-outsider -- busctl --system introspect "$dbus_name" "$dbus_path" 2>&1)
  refused=$(runuser -u vmtest-outsider -- busctl --system call "$dbus_name" "$dbus_path" "$dbus_iface" GetSignals as 1 Vehicle.Speed 2>&1)
  refused_rc=$?
  allowed=$(runuser -u vmtest-hmi -- busctl --system call "$dbus_name" "$dbus_path" "$dbus_iface" GetSignals as 1 Vehicle.Speed 2>&1)
  allowed_rc=$?
  if echo "$intro" | grep -q "$dbus_iface" && [ $refused_rc -ne 0 ] && echo "$refused" | grep -qi 'access denied\|AccessDenied' && [ $allowed_rc -eq 0 ]; then
    result PASS dbus-policy "outsider introspects ($(echo "$intro" | grep -c '^\.') members) and is refused GetSignals ('$refused'); a carlinkd-hmi member may call it"
  else
    result FAIL dbus-policy "introspect as outsider: $(echo "$intro" | head -n 3 | tr '\n' ';'); call as outsider rc=$refused_rc '$refused'; call as carlinkd-hmi member rc=$allowed_rc '$(echo "$allowed" | head -c 200)'"
  fi
fi

# ---------------------------------------------------------------- kill -9: restarted by systemd
restarted() {  # restarted OLD_PID: a new main process is up and running
  local pid
  pid=$(prop $unit MainPID)
  [ "$pid" != 0 ] && [ "$pid" != "$1" ] && [ "$(prop $unit SubState)" = running ]
}
n0=$(prop $unit NRestarts)
pid=$(prop $unit MainPID)
t0=$(date +%s)
kill -9 "$pid"
if wait_for 120 restarted "$pid"; then
  result PASS kill9-restart "PID $pid killed, PID $(prop $unit MainPID) running after $(( $(date +%s) - t0 ))s, NRestarts $n0 -> $(prop $unit NRestarts)"
else
  result FAIL kill9-restart "no running replacement for PID $pid after 120 s: $(prop $unit ActiveState)/$(prop $unit SubState) $(prop $unit Result)"
fi

# ---------------------------------------------------------------- hung event loop: watchdog restart
n0=$(prop $unit NRestarts)
pid=$(prop $unit MainPID)
t0=$(date +%s)
kill -STOP "$pid"
if wait_for 150 restarted "$pid"; then
  wd_msg=$(journalctl -u "$unit" --no-pager -o cat --since "@$t0" | grep -m1 -i 'watchdog timeout')
  if [ -n "$wd_msg" ]; then
    result PASS watchdog-restart "PID $pid stopped (SIGSTOP); systemd: '$wd_msg'; PID $(prop $unit MainPID) running after $(( $(date +%s) - t0 ))s, NRestarts $n0 -> $(prop $unit NRestarts)"
  else
    result FAIL watchdog-restart "restarted, but not by the watchdog (no 'Watchdog timeout' in the journal)"
  fi
else
  result FAIL watchdog-restart "no running replacement for stopped PID $pid after 150 s: $(prop $unit ActiveState)/$(prop $unit SubState) $(prop $unit Result)"
fi

# ---------------------------------------------------------------- journal: expected warnings, no tracebacks
journalctl -u "$unit" --no-pager -o short-monotonic >"$out/journal-carlinkd.log"
warnings=$(journalctl -u "$unit" --no-pager -o cat -p warning --since "@$t_start")
n_warn=$(echo -n "$warnings" | grep -c .)
tb_warn=$(echo "$warnings" | grep -c 'Traceback')
tb_all=$(journalctl -u "$unit" --no-pager -o cat --since "@$t_start" | grep -c 'Traceback')
expected=$(echo "$warnings" | grep -c 'alert coolant_critical (critical, new): Coolant temperature 125')
kinds=$(echo "$warnings" | sed -E 's/[0-9]+/N/g' | cut -c1-70 | sort | uniq -c | sort -rn | head -n 6 | sed -E 's/^ +//' | tr '\n' ';')
if [ "$tb_warn" = 0 ] && [ "$tb_all" = 0 ] && [ "$expected" -ge 1 ]; then
  result PASS journal-warnings "$n_warn lines at -p warning, the expected coolant alert among them, no tracebacks at any priority; kinds: $kinds"
else
  result FAIL journal-warnings "$n_warn lines at -p warning, $tb_warn tracebacks there ($tb_all at any priority), $expected expected alert lines; kinds: $kinds"
fi

# ---------------------------------------------------------------- clean stop, store flushed
pid=$(prop $unit MainPID)
t0=$(date +%s.%N)
systemctl stop "$unit"
rc=$?
elapsed=$(seconds_since "$t0")
result_prop=$(prop $unit Result)
stop_log=$(journalctl -u "$unit" --no-pager -o cat --since "@${t0%.*}" | tr '\n' ';' | cut -c1-300)
wal=$(find /var/lib/carlinkd -name '*-wal' -size +0 2>/dev/null | tr '\n' ' ')
if [ $rc = 0 ] && [ "$result_prop" = success ] && awk -v e="$elapsed" 'BEGIN {exit !(e < 15)}' \
   && ! echo "$stop_log" | grep -qi 'sigkill\|timed out' && [ -z "$wal" ]; then
  result PASS stop-clean "stopped in ${elapsed}s (< TimeoutStopSec=15s), Result=success, store closed (no WAL left): $stop_log"
else
  result FAIL stop-clean "rc=$rc in ${elapsed}s, Result=$result_prop, leftover WAL: '${wal}'; journal: $stop_log"
fi

log "checks done"
journalctl -b --no-pager -o short-monotonic >"$out/journal-all.log"
exit $failed
