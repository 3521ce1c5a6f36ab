// Package testkit is what the tests of ipcflow's packages share, so that
// each helper exists once:
//
//   - fd leak checks: FDs, Warm, NoLeak;
//   - the scan of ipcflow's kernel objects by name prefix (/dev/shm,
//     semaphores included, /dev/mqueue, run cgroups) that the leak checks
//     of channels, locks, exec and cmd's lock scripts build on:
//     KernelObjects;
//   - what runs in child processes left (their run directory base, and
//     objects named with the ids of the runs seen there), waited for and
//     failed on (LeakCheck) or listed (RunLeaks); a run's processes found
//     by the IPCFLOW_TEST_MARK in their environment (MarkedProcs,
//     WaitNoProcs, IsZombie);
//   - reference output from bash: Bash, with Stdin and InDir;
//   - stage stand-ins started with given fds (Start), pipes as the edges
//     make them (Pipe), feeders and collectors of bytes (PipeFeeder,
//     PipeCollector, FileFeeder, FileCollector, ReadAll), how a stand-in
//     ended (Signaled), a pseudo-terminal (Pty);
//   - the byte streams every edge, copy and mover must carry unchanged
//     (Inputs) and their hash (Sha);
//   - the real ipcflow binary, built once per test process (BuildIpcflow,
//     RemoveIpcflowBuild), and the module's root (ModuleRoot);
//   - small file helpers: WriteTemp, EmptyDir.
//
// Only tests may import it (TestImportedOnlyByTests holds that): ipcflow
// itself never runs this code.
package testkit
