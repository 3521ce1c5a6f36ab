// Package native is the client side of a native stage's ports (SPEC 8,
// 12): a program run by a stage marked `native` opens its mq, shm and
// mmap ports with it and talks to the kernel objects itself, with no
// bridge in ipcflow. ipcflow's own side (package channels, exec) uses the
// same package for the description it hands over and for the mq control
// page, so that both sides share one definition of the protocol.
//
// A port is described by the variable IPCFLOW_PORT_<PORT> (PORT upper-
// cased: IPCFLOW_PORT_IN, IPCFLOW_PORT_OUT, IPCFLOW_PORT_DICT), for
// instance
//
//	ipcflow-port/1 shm reader fd=5 life=6 reader=0 readers=2 capacity=1048576 name=/dev/shm/ipcflow.k3j...e1
//
// the protocol and its version, the edge type, the stage's role on it,
// then key=value fields, name= last (it takes the rest of the line, so a
// path may hold spaces). The object itself is the inherited descriptor
// fd=: by the time a stage starts, ipcflow has removed every name (SPEC 6:
// names go as soon as every end is open), so name= is for messages only.
// life= is a pipe whose other end ipcflow watches: the stage keeps it open
// for as long as it uses the port, and its closing (at exit, or a
// SIGKILL) is how ipcflow learns that the end is gone and tells the peer.
//
// The types, and what each gives:
//
//   - shm: the ring of package ring (same layout, same code): ShmWriter
//     with Reserve/Commit (write in place) and Write; ShmReader with
//     Borrow/Release (read in place) and Read.
//   - mq: the POSIX queue with the mq edge's framing (one trailer byte per
//     message, MQEOF alone ends the stream): MQWriter.Send and
//     MQReader.Receive move whole messages, Write and Read move a stream.
//     ctl= is a control page (ControlSize bytes) with the flags that a
//     queue cannot carry: writer done or dead, reader gone.
//   - mmap: the file that records the stream, with ctl= a control page
//     in the ring's header layout whose write cursor is the length
//     published so far: MmapReader.Bytes maps the published recording for
//     random reads, Read streams it; MmapWriter appends.
//
// A port of another protocol version is refused with one error
// (*VersionError). The C header c/ipcflow_port.h is the same client in
// C99 (libc and raw system calls only); TestCHeader holds it to this one.
package native
