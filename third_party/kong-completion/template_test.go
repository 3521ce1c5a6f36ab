package kongcompletion

import "testing"

// TestTemplatesParse fills every shell's templates: since they are parsed
// lazily, a malformed one would otherwise only panic when a user asks for it.
func TestTemplatesParse(t *testing.T) {
	data := templateData{BinName: "greet", BinPath: "/usr/bin/greet", SubCmdName: "completion", UseShellDefault: true}
	for name, sh := range shells {
		if got := data.fill(sh.initCode); got == "" {
			t.Errorf("%s: empty init code", name)
		}
		if got := data.fill(sh.configFileCode); got == "" {
			t.Errorf("%s: empty config file code", name)
		}
	}
	if got := data.fill(bash.initCode); got != "complete -o default -o bashdefault -C /usr/bin/greet greet" {
		t.Errorf("bash init code = %q", got)
	}
}
