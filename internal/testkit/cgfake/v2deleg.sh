#!/bin/sh
# v2deleg.sh: EXTRA for v2vm.sh. ipcflow in a non-root cgroup v2 group,
# /sys/fs/cgroup/deleg, alone (delegated: it leaves it for a leaf of its
# own, ipcflow.<run>.self) and shared with a shell (nothing moves; the
# limits go to setrlimit, and --dry-run says why). After each: nothing
# left in deleg, which passes nothing down and holds no process.
#
#   NOKVM=1 EXTRA=internal/testkit/cgfake/v2deleg.sh internal/testkit/cgfake/v2vm.sh . vmlinuz
cd /tmp
C=/sys/fs/cgroup
echo "+memory +cpu +pids" > $C/cgroup.subtree_control
mkdir $C/deleg
cat > mem.ipcflow <<'F'
stage r limit memory=64MiB, pids=20 = bash -c 'x=$(head -c 400M /dev/zero | tr "\0" a); echo survived'
stage other = bash -c 'echo "other in $(cut -d: -f3 /proc/self/cgroup)"'
F
cat > ok.ipcflow <<'F'
stage ok limit memory=64MiB, pids=20 = cat /proc/self/cgroup
stage look after ok = sh -c 'cat /proc/self/cgroup; echo "deleg holds: $(cd /sys/fs/cgroup/deleg && ls -d ipcflow.*)"; echo "deleg passes down: $(cat /sys/fs/cgroup/deleg/cgroup.subtree_control)"; echo "deleg procs: [$(cat /sys/fs/cgroup/deleg/cgroup.procs)]"; echo "self leaf procs: $(cat /sys/fs/cgroup/deleg/ipcflow.*.self/cgroup.procs | tr "\n" " ")"'
F
cat > sleep.ipcflow <<'F'
stage s limit memory=64MiB = sleep 100
F
state() { echo "  left in deleg: [$(cd $C/deleg && ls -d ipcflow.* 2>/dev/null)] passes down: [$(cat $C/deleg/cgroup.subtree_control)] procs: [$(cat $C/deleg/cgroup.procs)]"; }
echo "== DELEGATED: ipcflow alone in /deleg"
sh -c "echo \$\$ > $C/deleg/cgroup.procs; exec ipcflow run --dry-run mem.ipcflow" | grep -E 'processes|limit'
sh -c "echo \$\$ > $C/deleg/cgroup.procs; exec ipcflow run mem.ipcflow"; echo "  status $?"; state
sh -c "echo \$\$ > $C/deleg/cgroup.procs; exec ipcflow run ok.ipcflow"; echo "  status $?"; state
echo "== DELEGATED, ipcflow SIGKILLed: the guardian's reclaim"
sh -c "echo \$\$ > $C/deleg/cgroup.procs; exec ipcflow run sleep.ipcflow" &
pid=$!; sleep 3; echo "  running: $(cd $C/deleg && ls -d ipcflow.*)"; kill -9 $pid; wait $pid; echo "  status $?"; sleep 3; state
echo "  sleep left: [$(ps | grep "[s]leep 100")]"
echo "== DELEGATED: contain's kernel test in /deleg"
(cd /mod/contain && sh -c "echo \$\$ > $C/deleg/cgroup.procs; exec /t/contain.test -test.v -test.run 'TestDelegateOnThisKernel|TestLeave'" 2>&1 | grep -E -- '^(---|ok|FAIL|PASS)|_test.go'); state
echo "== SHARED: a shell and ipcflow in /deleg"
sh -c "echo \$\$ > $C/deleg/cgroup.procs; ipcflow run --dry-run mem.ipcflow | grep -E 'processes|limit'; ipcflow run mem.ipcflow; echo \"  status \$?\""; state
