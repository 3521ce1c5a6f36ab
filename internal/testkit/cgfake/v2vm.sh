#!/bin/sh
# v2vm.sh MODULE_DIR KERNEL ["PKG REGEXP"...]: the kernel path of cgroup
# v2 limits, which these machines cannot take (they bind every controller
# to v1, so their v2 hierarchy has none: docs/supervision.md). It boots
# KERNEL under qemu with an initramfs of busybox, bash, GNU head/tr/seq/cat,
# a static ipcflow and the test binaries of contain, isolate, rundir and
# exec, on a pure cgroup v2 hierarchy (every controller on v2, ipcflow in
# its root), and runs each PKG's tests matching REGEXP there (all of a
# package not named), then $EXTRA (a sh script) if set.
#
# Needs qemu-system-x86, busybox-static and cpio (apt-get install), and a
# kernel: apt-get download linux-image-6.1.0-57-cloud-amd64 (or any
# Debian linux-image-*-cloud-amd64), dpkg -x it, and give its
# boot/vmlinuz-*. NOKVM=1 runs without KVM (TCG): on these machines
# nested KVM stops the guest at its first cmpxchg16b (an emulation
# failure), and TCG runs the limit tests in a minute or two.
#
#   internal/testkit/cgfake/v2vm.sh . vmlinuz "contain ." "isolate ." \
#     "exec TestMemoryLimitV2|TestPidsAndFilesLimits|TestLimitGroupsGoAfterSigkill"
#
# EXTRA=internal/testkit/cgfake/v2deleg.sh then runs ipcflow in a
# non-root group delegated to it, and in one shared with a shell
# (contain/self.go).
set -eu
mod=$(cd "$1" && pwd); kernel=$2
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p $root/bin $root/usr/local/bin $root/t $root/proc $root/sys $root/dev $root/tmp $root/root $root/etc \
  $root/lib/x86_64-linux-gnu $root/lib64
cp /bin/busybox $root/bin/busybox
# bash and GNU head, tr, seq: the tests' stages use them (busybox's head takes no 400M).
mkdir -p $root/usr/bin
for b in /bin/bash /usr/bin/head /usr/bin/tr /usr/bin/seq /usr/bin/cat; do
  cp $b $root$b
  for lib in $(ldd $b | grep -o '/lib[^ ]*'); do cp -n "$lib" "$root$lib"; done
done
echo 'root:x:0:0:root:/root:/bin/sh' > $root/etc/passwd
echo 'root:x:0:' > $root/etc/group
(cd "$mod" && CGO_ENABLED=0 go build -o $root/usr/local/bin/ipcflow ./cmd/ipcflow)
for p in contain isolate rundir exec; do
  (cd "$mod" && CGO_ENABLED=0 go test -c -o $root/t/$p.test ./$p)
  mkdir -p $root/mod/$p
done
cp "$mod/go.mod" $root/mod/
# testkit builds ipcflow with `go build`: in the VM, `go` hands over the one built here.
cat > $root/usr/local/bin/go <<'GO'
#!/bin/sh
case "$1" in
env) echo /mod/go.mod ;;
build) cp /usr/local/bin/ipcflow "$3" ;;
list) exit 1 ;;
*) exit 1 ;;
esac
GO
chmod +x $root/usr/local/bin/go
cat > $root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/shm /dev/mqueue; mount -t tmpfs shm /dev/shm; mount -t mqueue mq /dev/mqueue
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
export PATH=/usr/bin:/bin:/usr/local/bin HOME=/root TMPDIR=/tmp
echo "VM: $(uname -r); cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers); ipcflow in $(cat /proc/self/cgroup)"
for p in contain isolate rundir exec; do
  grep -q "^$p " /tests || continue
  run=$(sed -n "s/^$p //p" /tests)
  cd /mod/$p && /t/$p.test -test.v -test.count=1 ${run:+-test.run "$run"} 2>&1 | grep -v '^=== ' | grep -Ev '^        (Accepted|Received|Disconnected)'
done
[ -x /extra.sh ] && /extra.sh 2>&1
echo VM-DONE
poweroff -f
INIT
chmod +x $root/init
shift 2
[ -n "${EXTRA:-}" ] && cp "$EXTRA" $root/extra.sh && chmod +x $root/extra.sh
printf '%s\n' "$@" > $root/tests
(cd $root && find . | cpio -o -H newc --quiet | gzip -1) > $work/initrd.gz
kvm=; [ -w /dev/kvm ] && [ -z "${NOKVM:-}" ] && kvm=-enable-kvm
timeout 600 qemu-system-x86_64 $kvm ${kvm:+-cpu host} ${kvm:--cpu max} -m 1024 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd $work/initrd.gz -append "console=ttyS0 quiet panic=-1"
