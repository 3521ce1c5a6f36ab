package exec

// RunInternal runs one of ipcflow's internal roles (a stage's shell, the
// run's guardian) when args name one, and reports whether it did.
// SCAFFOLD: the executor replaces this file.
func RunInternal(args []string) (int, bool) { return 0, false }
