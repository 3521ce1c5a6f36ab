#!/usr/bin/env bash
# Remote stages (SPEC 13) against plain ssh, on two network-namespace hosts
# with real sshds built here (root, openssh-server, iproute2):
#   stream:  a 256 MiB stream from a stage on h1 to a stage on h2, against
#            `ssh h2 cat < file` over the same links;
#   startup: a 2-host flow of `true` stages, against `ssh h1 true` over a
#            warm master connection.
# Runs interleaved, ROUNDS times each (default 5); prints medians and ratios.
# Everything it makes is removed on exit, whatever the exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-256}
[ "$(id -u)" = 0 ] || { echo "bench/remote: needs root (network namespaces)"; exit 1; }
command -v /usr/sbin/sshd >/dev/null || { echo "bench/remote: needs openssh-server"; exit 1; }

W=$(mktemp -d /tmp/ipcflow-bench-remote.XXXXXX)
NS=(ipfb-$$-1 ipfb-$$-2)
VE=(ipfb$$a ipfb$$b)
cleanup() {
	set +e
	ssh -F "$W/ssh_config" -S "$W/warm" -O exit h1 2>/dev/null
	for p in "$W"/sshd-*.pid; do [ -f "$p" ] && kill "$(cat "$p")"; done
	for i in 0 1; do ip netns del "${NS[$i]}" 2>/dev/null; ip link del "${VE[$i]}" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$W/ipcflow" ./cmd/ipcflow
ssh-keygen -q -t ed25519 -N "" -f "$W/id"
ssh-keygen -q -t ed25519 -N "" -f "$W/hostkey"
cp "$W/id.pub" "$W/authorized_keys"
mkdir -p /run/sshd
: > "$W/ssh_config"; : > "$W/known_hosts"
for i in 0 1; do
	h=h$((i + 1)); net=10.78.$((RANDOM % 250)).$((4 * i))
	local_ip=${net%.*}.$((4 * i + 1)); addr=${net%.*}.$((4 * i + 2))
	ip netns add "${NS[$i]}"
	ip link add "${VE[$i]}" type veth peer name "${VE[$i]}p"
	ip link set "${VE[$i]}p" netns "${NS[$i]}"
	ip -n "${NS[$i]}" link set lo up
	ip -n "${NS[$i]}" addr add "$addr/30" dev "${VE[$i]}p"
	ip -n "${NS[$i]}" link set "${VE[$i]}p" up
	ip addr add "$local_ip/30" dev "${VE[$i]}"
	ip link set "${VE[$i]}" up
	cat > "$W/$h.sshd_config" <<-CFG
	ListenAddress $addr
	HostKey $W/hostkey
	AuthorizedKeysFile $W/authorized_keys
	PidFile $W/sshd-$h.pid
	StrictModes no
	UsePAM no
	PermitRootLogin prohibit-password
	PasswordAuthentication no
	UseDNS no
	MaxSessions 64
	CFG
	ip netns exec "${NS[$i]}" /usr/sbin/sshd -f "$W/$h.sshd_config"
	printf 'Host %s\n\tHostName %s\n\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tLogLevel ERROR\n' \
		"$h" "$addr" "$W/id" "$W/known_hosts" >> "$W/ssh_config"
	echo "$addr $(cat "$W/hostkey.pub")" >> "$W/known_hosts"
done
sleep 0.5
export IPCFLOW_SSH="ssh -F $W/ssh_config"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/data"

cat > "$W/stream.ipcflow" <<EOF2
stage src on h1 = cat $W/data
stage dst on h2 = cat > /dev/null
src -> dst
EOF2
cat > "$W/start.ipcflow" <<'EOF2'
stage a on h1 = true
stage b on h2 = true
a -> b
EOF2

now() { date +%s.%N; }
t() { local s; s=$(now); "$@" >/dev/null; echo "$(now) - $s" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

ssh -F "$W/ssh_config" -o ControlMaster=yes -o ControlPersist=yes -S "$W/warm" -fN h1
: > "$W/ipc"; : > "$W/ssh"; : > "$W/ipcstart"; : > "$W/sshstart"
for r in $(seq "$ROUNDS"); do
	t "$W/ipcflow" run "$W/stream.ipcflow" >> "$W/ipc"
	t ssh -F "$W/ssh_config" h2 'cat > /dev/null' < "$W/data" >> "$W/ssh"
	t "$W/ipcflow" run "$W/start.ipcflow" >> "$W/ipcstart"
	t ssh -F "$W/ssh_config" -S "$W/warm" h1 true >> "$W/sshstart"
done
ipc=$(median < "$W/ipc"); ssh_=$(median < "$W/ssh")
ipcs=$(median < "$W/ipcstart"); sshs=$(median < "$W/sshstart")
printf 'stream %d MiB h1 -> h2: ipcflow %.3f s (%.0f MiB/s), ssh h2 cat < file %.3f s (%.0f MiB/s): ipcflow at %.2fx\n' \
	"$SIZE_MIB" "$ipc" "$(echo "$SIZE_MIB / $ipc" | bc -l)" "$ssh_" "$(echo "$SIZE_MIB / $ssh_" | bc -l)" "$(echo "$ssh_ / $ipc" | bc -l)"
printf 'startup 2-host flow: ipcflow %.0f ms, ssh h1 true (warm master) %.0f ms: +%.0f ms\n' \
	"$(echo "$ipcs * 1000" | bc -l)" "$(echo "$sshs * 1000" | bc -l)" "$(echo "($ipcs - $sshs) * 1000" | bc -l)"
