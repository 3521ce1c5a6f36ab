package native

import (
	"fmt"
	"io"
)

// OpenReader opens port (IPCFLOW_PORT_<PORT>) for reading, whatever its
// type: an *ShmReader or an *MQReader (type-assert it for the in-place
// or whole-message calls).
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
	}
	return nil, fmt.Errorf("port %s: %s ports are not in this client yet", s.Name, s.Type)
}

// OpenWriter opens port for writing, whatever its type: an *ShmWriter or
// an *MQWriter.
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
	}
	return nil, fmt.Errorf("port %s: %s ports are not in this client yet", s.Name, s.Type)
}
