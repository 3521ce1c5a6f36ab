// Package remote runs stages on other hosts over the system's OpenSSH
// client (SPEC 13, docs/remote.md): one multiplexed connection per host,
// ipcflow itself on the far side, every stream of a remote stage an ssh
// session of its own over that connection, so that no port is opened on
// either host and ssh's channel windows give each stream its backpressure.
//
// The pieces, and where each runs:
//
//	ipcflow (local)                                host H
//	  Connect: ssh -G H (ControlPath, SendEnv); a warm master of the user's
//	     there, or ssh -M (ControlPath in the run directory)
//	     session "boot":  mkdir a private HOSTDIR, say `ipcflow version`,
//	                      then hold until stdin ends, rm -rf HOSTDIR
//	     (ipcflow copied to HOSTDIR when H has none of our version)
//	  stage x on H: exec starts the stand-in (role "remote") with x's fd table
//	     stand-in ──mux── control session ── agent (role "agent")
//	        stdin: the spec, then "ping" / "kill N" lines    ── heartbeat, signals
//	        stdout: "exit N" or "signal N" at the end       ── x's status
//	        stderr: x's fd 2 as it is
//	     stand-in ──mux── one session per other fd ── port (role "port")
//	        the session's stdin (x reads) or stdout (x writes) is the local
//	        edge's fd, which the master itself reads or writes;
//	        port hands its own stdin or stdout to the agent (SCM_RIGHTS on
//	        HOSTDIR/x.sock) and waits until the agent lets go of it
//	  agent: makes each fd's edge type on H (a pipe: the session's own fd;
//	     shm, mq, ...: a channel of that type, bridged to the session), starts
//	     x in a process group of its own, reports its status.
//
// "mux" is OpenSSH's multiplexing protocol, spoken here (mux.go): each
// session is opened on the master's ControlPath with its three fds
// handed over, as `ssh -S` would, without an ssh process per session.
//
// The agent is H's guardian: when its control session ends (stdin EOF,
// SIGHUP) or no ping came for HeartbeatTimeout (a dropped link), it kills
// x's group, removes x's objects and, for a lost connection, HOSTDIR.
//
// Package remote knows nothing of plans: exec builds a Spec per remote
// stage and names the roles; this package does the ssh side.
package remote
