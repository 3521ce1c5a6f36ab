package main

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/muesli/roff"
)

// ManCmd is `ipcflow man` (SPEC 15): a roff man page made from kong's model
// of the command line, the same model --help shows, so that no command,
// argument, flag, default or IPCFLOW_* variable can be missing from it.
// The rest (exit statuses, files, examples) is written here.
type ManCmd struct{}

// Help is shown by `ipcflow man --help`.
func (ManCmd) Help() string {
	return `Print ipcflow's manual page in roff on stdout: every command, argument,
flag, default and environment variable, the exit statuses, the files a run
makes, and examples. Read it with

  man -l <(ipcflow man)

or install it: ipcflow man > ~/.local/share/man/man1/ipcflow.1`
}

func (ManCmd) Run(s *Streams, kctx *kong.Context) error {
	// The page is made from the whole command line's model, whichever
	// model parsed this call.
	k, err := newKong(&CLI{}, s.Stdout, s.Stderr, func(int) {})
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(s.Stdout, manPage(k.Model))
	return err
}

// man wraps muesli/roff's Document with what a page needs: a line break
// (EndSection writes one, and never an empty line), tagged paragraphs, and
// the escapes its Text lacks. Text is escaped by the library (backslashes,
// dots) and then used as a format string, so '%' is doubled here; a '-'
// becomes a placeholder that String turns into roff's \- (a minus, so that
// flags copied from the page are typed right), and a line starting with '
// gets \& in front, which the library's escaping would mangle if given to
// Text.
type man struct{ *roff.Document }

const minusMark = "\uE000" // a private-use rune, never in help text

func manText(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	return strings.ReplaceAll(s, "-", minusMark)
}

func (m man) text(s string)  { m.Text(manText(s)); m.EndSection() }
func (m man) bold(s string)  { m.TextBold(manText(s)) }
func (m man) ital(s string)  { m.TextItalic(manText(s)) }
func (m man) plain(s string) { m.Text(manText(s)) }
func (m man) br()            { m.EndSection() }

// para is text in a paragraph of its own (after a tagged one).
func (m man) para(s string) { m.Paragraph(); m.text(s) }

// tagged is a tagged paragraph: tag in bold, then body.
func (m man) tagged(tag, body string) {
	m.TaggedParagraph(-1)
	m.bold(tag)
	m.br()
	m.text(body)
}

// String is the finished page.
func (m man) String() string {
	lines := strings.Split(m.Document.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	// No hyphenation: a flag split over two lines could not be copied.
	if len(lines) > 0 && strings.HasPrefix(lines[0], ".TH ") {
		lines = slices.Insert(lines, 1, ".nh")
	}
	return strings.ReplaceAll(strings.Join(lines, "\n"), minusMark, `\-`)
}

func newDoc() *roff.Document { return roff.NewDocument() }

// manDate is the page's date: the commit's, when the binary knows it.
func manDate() time.Time {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, kv.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Now()
}

// manPage renders the page of app.
func manPage(app *kong.Application) string {
	m := man{newDoc()}
	m.Heading(1, "ipcflow", "ipcflow manual", manDate())
	m.br()

	m.Section("Name")
	m.text("ipcflow - wire Unix processes into graphs: run .ipcflow scripts")

	m.Section("Synopsis")
	for _, n := range visibleCommands(app.Node) {
		m.bold("ipcflow " + n.Summary())
		m.br()
		m.Paragraph()
	}
	m.bold("ipcflow FILE [NAME=VALUE...]")
	m.br()

	m.Section("Description")
	m.text(strings.ReplaceAll(description, "\n\n", "\n"))
	m.text("A script declares stages (shell commands) and typed edges between them: " +
		"pipe, fifo, mq (POSIX message queue), shm (shared-memory ring), mmap (memory-mapped file) " +
		"and socket (unix, tcp, udp). ipcflow checks the script, creates the kernel objects, " +
		"starts the stages, and removes everything it created, whatever happens. " +
		"Errors in a script are printed as FILE:LINE:COL: message; on a terminal each is followed " +
		"by its source line and a caret under the column (see --color and NO_COLOR).")

	m.Section("Commands")
	for _, n := range visibleCommands(app.Node) {
		m.TaggedParagraph(-1)
		m.bold("ipcflow " + n.Summary())
		m.br()
		m.text(n.Help)
		if n.Detail != "" {
			m.Paragraph()
			m.text(n.Detail)
		}
		m.Indent(-1)
		if len(n.Positional) > 0 {
			m.Paragraph()
			m.ital("Arguments:")
			m.br()
			for _, a := range n.Positional {
				m.arg(a)
			}
		}
		if flags := visibleFlags(n.Flags); len(flags) > 0 {
			m.Paragraph()
			m.ital("Flags:")
			m.br()
			for _, f := range flags {
				m.flag(f)
			}
		}
		m.IndentEnd()
	}

	m.Section("Global flags")
	m.text("These are taken by every command.")
	for _, f := range visibleFlags(app.Node.Flags) {
		m.flag(f)
	}

	m.Section("Environment")
	m.text("Every flag can be given as a variable instead (the flag wins):")
	for _, ev := range flagEnvironment(app.Node) {
		m.tagged(ev.name, ev.help)
	}
	m.para("ipcflow sets in every stage's environment:")
	m.tagged("IPCFLOW_SCRIPT_DIR", "The script's own directory, absolute; usable in params too.")
	m.tagged("IPCFLOW_SEM_<NAME>", "The POSIX name of semaphore NAME (upper-cased), for sem_open(3) or 'ipcflow lock'.")
	m.tagged("IPCFLOW_LOCK_SOCKET", "The lease server that 'ipcflow lock' asks for a unit.")
	m.para("ipcflow reads:")
	m.tagged("NO_COLOR", "When set and not empty, errors on a terminal are not coloured (--color=auto).")
	m.tagged("XDG_RUNTIME_DIR", "Where runs make their private directories (else TMPDIR).")
	m.tagged("TMPDIR", "The fallback for XDG_RUNTIME_DIR.")
	m.tagged("COMP_LINE, COMP_POINT", "Set by the shell when it asks ipcflow for completions (see the completion command); ipcflow removes them from what it starts.")

	m.Section("Exit status")
	for _, st := range exitStatuses {
		m.tagged(st[0], st[1])
	}

	m.Section("Files")
	m.tagged("$XDG_RUNTIME_DIR/ipcflow/<id>/", "A run's private directory (mode 0700): its FIFOs, sockets, mapped files and a manifest of every object it makes, locked for the run's life. Without XDG_RUNTIME_DIR: $TMPDIR/ipcflow-<uid>/<id>/.")
	m.tagged("/dev/shm/ipcflow.<id>.*, /dev/shm/sem.ipcflow.<id>.*", "A run's shared-memory rings and named semaphores.")
	m.tagged("/dev/mqueue/ipcflow.<id>.*", "A run's POSIX message queues.")
	m.para("Names are unlinked as soon as they are open at both ends; 'ipcflow clean' removes what a crashed run left.")

	m.Section("Examples")
	for _, ex := range manExamples {
		m.tagged(ex[0], ex[1])
	}

	m.Section("See also")
	m.text("bash(1), mkfifo(3), mq_overview(7), shm_overview(7), sem_overview(7), and the documentation in the ipcflow sources: README.md and docs/.")
	return m.String()
}

// exitStatuses are ipcflow's exit statuses (SPEC 6, README).
var exitStatuses = [][2]string{
	{"0", "Every stage that ran exited 0, or ended because the stage it wrote to had finished reading (SIGPIPE, as yes | head)."},
	{"1..125", "The status of the first stage to fail, in time; stderr names it. Other commands: 1 when they failed."},
	{"2", "A usage or check error, before anything starts."},
	{"124", "run: --timeout expired."},
	{"127", "A stage's program was not found."},
	{"128+N", "A stage was ended by signal N; or ipcflow itself got SIGINT, SIGTERM or SIGHUP (N) and stopped the flow."},
}

// manExamples are command lines with what they do.
var manExamples = [][2]string{
	{"ipcflow run wordfreq.ipcflow N=5", "Run a flow, setting its param N."},
	{"./wordfreq.ipcflow N=5", "The same, through the script's #!/usr/bin/env ipcflow line."},
	{"ipcflow check *.ipcflow", "Check scripts; errors as FILE:LINE:COL: message, status 2."},
	{"ipcflow graph flow.ipcflow | dot -Tsvg > flow.svg", "Draw a flow."},
	{"ipcflow run --dry-run --timeout=10s flow.ipcflow", "Print the plan of a run, with its objects and each process's fds."},
	{"ipcflow watch flow.ipcflow --on data/", "Run again whenever the script or data/ changes."},
	{"source <(ipcflow completion bash)", "Tab completion in bash (zsh: the same with zsh; fish: ipcflow completion fish | source)."},
	{"man -l <(ipcflow man)", "Read this page."},
}

// arg describes a positional argument.
func (m man) arg(a *kong.Positional) {
	tag := strings.ToUpper(a.Name)
	if a.IsCumulative() {
		tag += "..."
	}
	help := a.Help
	if !a.Required {
		help += " (optional)"
	}
	if a.Enum != "" {
		help += " One of: " + strings.ReplaceAll(a.Enum, ",", ", ") + "."
	}
	m.tagged(tag, help)
}

// flag describes a flag: its forms, help, default and variables.
func (m man) flag(f *kong.Flag) {
	help := f.Help
	if f.Enum != "" {
		help += " One of: " + strings.ReplaceAll(f.Enum, ",", ", ") + "."
	}
	if f.HasDefault && f.Default != "" {
		help += " Default: " + f.Default + "."
	}
	if len(f.Envs) > 0 {
		help += " Environment: " + strings.Join(f.Envs, ", ") + "."
	}
	m.tagged(f.String(), help)
}

// visibleCommands are the commands of node and below, as --help lists them.
func visibleCommands(node *kong.Node) []*kong.Node {
	var out []*kong.Node
	for _, c := range node.Children {
		if c.Hidden {
			continue
		}
		out = append(out, c)
		out = append(out, visibleCommands(c)...)
	}
	return out
}

// visibleFlags are flags not hidden.
func visibleFlags(flags []*kong.Flag) []*kong.Flag {
	var out []*kong.Flag
	for _, f := range flags {
		if !f.Hidden {
			out = append(out, f)
		}
	}
	return out
}

type envVar struct{ name, help string }

// flagEnvironment lists every flag's variables, once each, with the flag
// they stand for.
func flagEnvironment(node *kong.Node) []envVar {
	seen := map[string]int{}
	var out []envVar
	var walk func(n *kong.Node, cmd string)
	walk = func(n *kong.Node, cmd string) {
		for _, f := range visibleFlags(n.Flags) {
			for _, e := range f.Envs {
				where := "--" + f.Name
				if cmd != "" {
					where = cmd + " " + where
				}
				if i, ok := seen[e]; ok {
					out[i].help += ", " + where
					continue
				}
				seen[e] = len(out)
				out = append(out, envVar{e, where})
			}
		}
		for _, c := range n.Children {
			walk(c, strings.TrimSpace(cmd+" "+c.Name))
		}
	}
	walk(node, "")
	slices.SortFunc(out, func(a, b envVar) int { return strings.Compare(a.name, b.name) })
	return out
}
