package locks

import "strings"

// SemEnvPrefix starts the variable through which every stage learns the
// POSIX name of each of the run's semaphores (SPEC 8).
const SemEnvPrefix = "IPCFLOW_SEM_"

// SemEnv returns the variable that holds the POSIX name of the script's
// semaphore name: `sem db = 1` gives IPCFLOW_SEM_DB.
func SemEnv(name string) string { return SemEnvPrefix + strings.ToUpper(name) }
