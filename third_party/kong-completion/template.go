package kongcompletion

import (
	"bytes"
	gotemplate "text/template"
)

type templateData struct {
	BinName         string // The canonical name of the binary, e.g. `greet`
	BinPath         string // The full path to the binary, e.g. `/usr/bin/greet`
	SubCmdName      string // The name of the invoked subcommand, e.g. `completion` for `greet completion`.
	UseShellDefault bool   // Whether to fall back to default shell completions.
}

// template is the text of a template, parsed only when it is filled: the
// package-level shells are built at every start of the importing binary, and
// parsing their six templates there cost about 0.3 ms that almost no run uses.
type template struct {
	text string
}

// tmpl records a template's text; fill parses it and panics if it is malformed
// (TestTemplatesParse checks every shell's templates).
func tmpl(tmpl string) *template {
	return &template{text: tmpl}
}

func (bi templateData) fill(t *template) string {
	parsed, err := gotemplate.New("").Parse(t.text)
	if err != nil {
		panic(err)
	}
	result := &bytes.Buffer{}
	err = parsed.Execute(result, bi)
	if err != nil {
		panic(err)
	}
	return result.String()
}
