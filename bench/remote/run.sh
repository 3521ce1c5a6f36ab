#!/usr/bin/env bash
# Remote stages (SPEC 13) against plain ssh, on two network-namespace hosts
# with real sshds built here (root, openssh-server, iproute2):
#   stream:  256 MiB from a stage on h1 to a stage on h2 (two links, through
#            ipcflow's host), and from a local stage to a stage on h2 (one
#            link), each against `ssh h2 cat < file` (one link); and
#            between two stages on h2 (the edge stays there) against
#            `ssh h2 'cat file | cat'`;
#   startup: a 2-host flow of `true` stages against `ssh h1 true` over a warm
#            master: as a user who keeps masters up (ControlPath in the ssh
#            config, masters live) and has this ipcflow on the hosts' PATH;
#            then with no warm master (ipcflow starts its own), and with the
#            binary copied too (a build that never trusts a host's ipcflow).
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
	for h in h1 h2; do ssh -F "$W/warm_config" -O exit $h 2>/dev/null; done
	for p in "$W"/sshd-*.pid; do [ -f "$p" ] && kill "$(cat "$p")"; done
	for i in 0 1; do ip netns del "${NS[$i]}" 2>/dev/null; ip link del "${VE[$i]}" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/bin" "$W/src"
# The hosts' PATH has this very build (sshd's SetEnv below), which ipcflow
# uses only when its version stamp says it is the same code: a clean
# tree's build. Go stamps none in a git worktree here, so HEAD is built
# from a repository of its own (uncommitted changes are not measured).
git archive HEAD | tar -x -C "$W/src"
(cd "$W/src" && git init -q && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm bench &&
	CGO_ENABLED=0 go build -buildvcs=true -o "$W/bin/ipcflow" ./cmd/ipcflow)
go version -m "$W/bin/ipcflow" | grep -q 'vcs.modified=false' ||
	echo "bench/remote: ipcflow has no version stamp: it copies itself even where it is on PATH" >&2
CGO_ENABLED=0 go build -buildvcs=false -o "$W/ipcflow-copy" ./cmd/ipcflow
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
	SetEnv PATH=$W/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	CFG
	# The hosts' sessions see an empty ~/.bashrc (a mount namespace of
	# sshd's own), as a stock Debian user's returns at once when not
	# interactive: this machine's root runs pyenv init there, 0.1 to 0.5 s
	# per session, which every session pays, ipcflow's several and ssh's
	# one. USER_RC=1 keeps the user's own.
	rc=()
	if [ "${USER_RC:-0}" != 1 ] && [ -f "$HOME/.bashrc" ]; then
		rc=(unshare --mount --propagation private sh -c 'mount --bind /dev/null "$0" && shift && exec "$@"' "$HOME/.bashrc" --)
	fi
	ip netns exec "${NS[$i]}" "${rc[@]}" /usr/sbin/sshd -f "$W/$h.sshd_config"
	printf 'Host %s\n\tHostName %s\n\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tLogLevel ERROR\n' \
		"$h" "$addr" "$W/id" "$W/known_hosts" >> "$W/ssh_config"
	echo "$addr $(cat "$W/hostkey.pub")" >> "$W/known_hosts"
done
# The warm user's config: the same hosts, each with a ControlPath.
{ cat "$W/ssh_config"; printf 'Host *\n\tControlPath %s/cm-%%h\n' "$W"; } > "$W/warm_config"
sleep 0.5
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/data"

cat > "$W/stream.ipcflow" <<EOF2
stage src on h1 = cat $W/data
stage dst on h2 = cat > /dev/null
src -> dst
EOF2
cat > "$W/local.ipcflow" <<EOF2
stage src = cat $W/data
stage dst on h2 = cat > /dev/null
src -> dst
EOF2
cat > "$W/samehost.ipcflow" <<EOF2
stage src on h2 = cat $W/data
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

for h in h1 h2; do ssh -F "$W/warm_config" -o ControlMaster=yes -o ControlPersist=yes -fN $h; done
cold="ssh -F $W/ssh_config" warm="ssh -F $W/warm_config"
names=(stream local ssh same sshsame start nowarm copy sshtrue)
for n in "${names[@]}"; do : > "$W/t.$n"; done
for r in $(seq "$ROUNDS"); do
	IPCFLOW_SSH=$cold t "$W/bin/ipcflow" run "$W/stream.ipcflow" >> "$W/t.stream"
	IPCFLOW_SSH=$cold t "$W/bin/ipcflow" run "$W/local.ipcflow" >> "$W/t.local"
	t $cold h2 'cat > /dev/null' < "$W/data" >> "$W/t.ssh"
	IPCFLOW_SSH=$cold t "$W/bin/ipcflow" run "$W/samehost.ipcflow" >> "$W/t.same"
	t $cold h2 "cat $W/data | cat > /dev/null" >> "$W/t.sshsame"
	IPCFLOW_SSH=$warm t "$W/bin/ipcflow" run "$W/start.ipcflow" >> "$W/t.start"
	IPCFLOW_SSH=$cold t "$W/bin/ipcflow" run "$W/start.ipcflow" >> "$W/t.nowarm"
	IPCFLOW_SSH=$cold t "$W/ipcflow-copy" run "$W/start.ipcflow" >> "$W/t.copy"
	t $warm h1 true >> "$W/t.sshtrue"
done
declare -A m
for n in "${names[@]}"; do m[$n]=$(median < "$W/t.$n"); done
stream() {
	printf 'stream %d MiB %s: ipcflow %.3f s (%.0f MiB/s), ssh h2 cat < file %.3f s (%.0f MiB/s): ipcflow at %.2fx\n' \
		"$SIZE_MIB" "$1" "$2" "$(echo "$SIZE_MIB / $2" | bc -l)" "${m[ssh]}" "$(echo "$SIZE_MIB / ${m[ssh]}" | bc -l)" "$(echo "${m[ssh]} / $2" | bc -l)"
}
stream "h1 -> h2 (two links)" "${m[stream]}"
stream "local -> h2 (one link)" "${m[local]}"
printf 'stream %d MiB h2 -> h2 (both stages on h2): ipcflow %.3f s, ssh h2 '"'"'cat file | cat'"'"' %.3f s: ipcflow at %.2fx\n' \
	"$SIZE_MIB" "${m[same]}" "${m[sshsame]}" "$(echo "${m[sshsame]} / ${m[same]}" | bc -l)"
start() {
	printf 'startup 2-host flow, %s: ipcflow %.0f ms, ssh h1 true (warm master) %.0f ms: %+.0f ms\n' \
		"$1" "$(echo "$2 * 1000" | bc -l)" "$(echo "${m[sshtrue]} * 1000" | bc -l)" "$(echo "($2 - ${m[sshtrue]}) * 1000" | bc -l)"
}
start "warm masters, ipcflow on PATH" "${m[start]}"
start "own masters, ipcflow on PATH" "${m[nowarm]}"
start "own masters, binary copied" "${m[copy]}"
