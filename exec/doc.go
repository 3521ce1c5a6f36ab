// Package exec runs a checked graph: it plans a flow, then runs the plan.
// docs/exec.md tells the whole story; the files, in the order a run
// happens:
//
//	load.go       Load: the script and its NAME=VALUE arguments checked
//	run.go        Run: the entry point, from a parser.Graph and the flags
//	plan.go       BuildPlan: params expanded, wires planned, sizes fitted
//	wiring.go     Plan.wire: edges to wires, movers and fd tables
//	process.go    Plan.Process(es): what each stage's process gets
//	dryrun.go     Plan.Print, for --dry-run
//	flow.go       the live flow: newFlow, supervise, teardown
//	start.go      movers and stages started, semaphores taken
//	shell.go      the stage shell (an internal role; shellbuiltins.go)
//	replicas.go   stage NAME[N]: the count, the runner's process
//	replicarun.go the replica runner (an internal role): blocks, copies, joins
//	reap.go       the one wait4; when a writer's failure is a broken pipe
//	supervise.go  the supervisor's decisions: states, stop, exit status
//	finish.go     movers and bridges drained at the end
//	restart.go    restart clauses: edges held across copies, back-offs (package restart)
//	limit.go      limit clauses: a stage's cgroups and rlimits (package isolate)
//
// and beside them: guard.go (the guardian), contain.go (the run's
// cgroup), signals.go, stdio.go (closed stdout or stderr), limits.go (the
// user's process and file budgets), paramenv.go (what params expand
// against) and internal.go (the one table of internal roles). The run directory, its
// manifest and clean are package rundir's.
//
// A stage has four types, one per step: parser.Stage (what the script
// says), StagePlan (its fd table as planned), Process (its process as
// built) and liveStage (its state in a live flow); a wire two: Wire (as
// planned) and liveWire (its open object).
package exec
