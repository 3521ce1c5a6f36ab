package stats

import "golang.org/x/sys/unix"

// What a blocked system call waits for, for the calls stages block in
// on their edges. The fd it waits on is argument fdArg (-1: none); for
// splice and sendfile, both directions are looked at (classify).
type callKind uint8

const (
	callOther callKind = iota
	callRead
	callWrite
	callSplice   // splice(in, _, out, ...): args 0 and 2
	callSendfile // sendfile(out, in, ...): args 0 and 1
	callFutex
	callWait
)

var callKinds = map[int64]callKind{
	unix.SYS_READ:            callRead,
	unix.SYS_READV:           callRead,
	unix.SYS_PREAD64:         callRead,
	unix.SYS_RECVFROM:        callRead,
	unix.SYS_RECVMSG:         callRead,
	unix.SYS_MQ_TIMEDRECEIVE: callRead,
	unix.SYS_WRITE:           callWrite,
	unix.SYS_WRITEV:          callWrite,
	unix.SYS_PWRITE64:        callWrite,
	unix.SYS_SENDTO:          callWrite,
	unix.SYS_SENDMSG:         callWrite,
	unix.SYS_MQ_TIMEDSEND:    callWrite,
	unix.SYS_SPLICE:          callSplice,
	unix.SYS_SENDFILE:        callSendfile,
	unix.SYS_FUTEX:           callFutex,
	unix.SYS_WAIT4:           callWait,
	unix.SYS_WAITID:          callWait,
}

// callWords say what a process waits for elsewhere, in the live view.
var callWords = map[int64]string{
	unix.SYS_NANOSLEEP:       "sleeping",
	unix.SYS_CLOCK_NANOSLEEP: "sleeping",
	unix.SYS_FUTEX:           "futex",
	unix.SYS_PPOLL:           "poll",
	unix.SYS_PSELECT6:        "select",
	unix.SYS_EPOLL_PWAIT:     "epoll",
	unix.SYS_OPENAT:          "opening a file",
	unix.SYS_FLOCK:           "flock",
	unix.SYS_MQ_TIMEDSEND:    "mq_send",
	unix.SYS_RT_SIGSUSPEND:   "sigsuspend",
}
