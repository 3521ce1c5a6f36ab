package parser

// Warnings are what a checked script may do wrong without being wrong,
// as `FILE:LINE:COL: warning: ...` lines: check and --dry-run print them,
// and they never change the exit status.
func Warnings(g *Graph) ErrorList {
	var w ErrorList
	for _, s := range g.Stages {
		if need := NeedsBash(s.Script); need != nil {
			w = append(w, &Error{File: g.File, Pos: s.ShellPos(need.Pos),
				Msg: "warning: stage " + s.Name + ": " + need.What + " needs bash: the stage will run with bash, not ipcflow's stage shell"})
		}
	}
	w = append(w, semCycleWarnings(g)...)
	w.Sort()
	return w
}
