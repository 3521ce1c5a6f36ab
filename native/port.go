package native

import (
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OpenReader opens port (IPCFLOW_PORT_<PORT>) for reading, whatever its
// type: an *ShmReader, *MQReader or *MmapReader (type-assert it for the
// in-place, whole-message or random-access calls).
func OpenReader(port string) (io.ReadCloser, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	switch s.Type {
	case "shm":
		return NewShmReader(s)
	case "mq":
		return NewMQReader(s)
	case "mmap":
		return NewMmapReader(s)
	}
	return nil, fmt.Errorf("port %s: %s ports are not in this client yet", s.Name, s.Type)
}

// OpenWriter opens port for writing, whatever its type: an *ShmWriter,
// *MQWriter or *MmapWriter.
func OpenWriter(port string) (io.WriteCloser, error) {
	s, err := Lookup(port)
	if err != nil {
		return nil, err
	}
	switch s.Type {
	case "shm":
		return NewShmWriter(s)
	case "mq":
		return NewMQWriter(s)
	case "mmap":
		return NewMmapWriter(s)
	}
	return nil, fmt.Errorf("port %s: %s ports are not in this client yet", s.Name, s.Type)
}

// DieOfSIGPIPE ends the process killed by SIGPIPE, as a pipe's writer
// whose readers have gone ends: ipcflow counts that as a success (SPEC
// 6), as it does `yes | head`. Call it on ErrReadersGone when the stage
// has nothing else to do. (A Go program ignores a SIGPIPE it sends
// itself, so the default action is put back first.)
func DieOfSIGPIPE() {
	var act [4]uint64 // struct sigaction for rt_sigaction: handler SIG_DFL
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGPIPE), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	unix.Kill(os.Getpid(), unix.SIGPIPE)
	for {
		time.Sleep(time.Second) // the signal is on its way
	}
}
