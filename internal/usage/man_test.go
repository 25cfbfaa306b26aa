package usage

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func testPage() Page {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringP("base", "b", "", "base `DIR` to keep [required]")
	fs.Bool("json", false, "print JSON, it's shorter")
	fs.IntP("port", "p", 5000, "UDP `PORT`")
	fs.StringArrayP("target-host", "t", nil, "only `HOST` (repeatable)")
	fs.StringArray("exclude-from", nil, "read patterns from `FILE`")
	fs.String("secret", "", "hidden")
	_ = fs.MarkHidden("secret")
	return Page{
		Name: "demo", Section: 8, Summary: "keep things in sync", Version: "1.2.3",
		Head: "Usage: demo -b DIR [options]\n       demo --json\n\ndemo keeps DIR in sync.\nIt never forks.\n\n.dots and \\back slashes\n\nOptions:\n",
		Tail: "\nEnvironment (a flag wins):\n  DEMO_BASE sets -b.\n\n" +
			"The daemon is found at tcp:127.0.0.1:5000.\n\n" +
			"Examples:\n  demo -b /srv\n  demo --json\n\nExit status: 0 after a clean shutdown,\n2 on a usage error.\n",
		Flags: fs, Args: "PATH",
		Files:   [][2]string{{"/etc/default/demo", "its environment"}},
		SeeAlso: []string{"msync(1)", "systemd.service(5)"},
	}
}

func TestManPage(t *testing.T) {
	got := testPage().Man()
	for _, want := range []string{
		".TH DEMO 8 \"\" \"makuo 1.2.3\" \"makuo\"\n",
		".SH NAME\ndemo \\- keep things in sync\n",
		".SH SYNOPSIS\n\\fBdemo\\fR \\-b DIR [options]\n.br\n\\fBdemo\\fR \\-\\-json\n",
		".SH DESCRIPTION\ndemo keeps DIR in sync.\nIt never forks.\n.PP\n\\&.dots and \\eback slashes\n.PP\nThe daemon is found at tcp:127.0.0.1:5000.\n.SH OPTIONS\n",
		".TP\n\\fB\\-b\\fR, \\fB\\-\\-base\\fR \\fIDIR\\fR\nbase DIR to keep [required]\n",
		".TP\n\\fB\\-\\-json\\fR\nprint JSON, it's shorter\n",
		".TP\n\\fB\\-p\\fR, \\fB\\-\\-port\\fR \\fIPORT\\fR\nUDP PORT (default 5000)\n",
		".SH ENVIRONMENT\nA flag wins.\n.RS 4\n.nf\nDEMO_BASE sets \\-b.\n.fi\n.RE\n",
		".SH EXAMPLES\n.RS 4\n.nf\ndemo \\-b /srv\ndemo \\-\\-json\n.fi\n.RE\n",
		".SH EXIT STATUS\n0 after a clean shutdown,\n2 on a usage error.\n",
		".SH FILES\n.TP\n.I /etc/default/demo\nits environment\n",
		".SH SEE ALSO\n.BR msync (1) ,\n.BR systemd.service (5)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("man page lacks\n%s\n--- page:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret") {
		t.Error("hidden flag on the man page")
	}
	if strings.Contains(got, "Options:") {
		t.Error(`"Options:" line copied into the page`)
	}
	// Sections in manual order: the description before the options, the
	// tail's sections after, in the order the help text has them.
	order := []string{".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH ENVIRONMENT", ".SH EXAMPLES", ".SH EXIT STATUS", ".SH FILES", ".SH SEE ALSO"}
	last := -1
	for _, s := range order {
		i := strings.Index(got, s)
		if i <= last {
			t.Fatalf("%s out of order in\n%s", s, got)
		}
		last = i
	}
}

func TestCompletionsNameEveryFlag(t *testing.T) {
	p := testPage()
	bash, zsh := p.Bash(), p.Zsh()
	p.Flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			if strings.Contains(bash+zsh, f.Name) {
				t.Errorf("hidden --%s completed", f.Name)
			}
			return
		}
		if !strings.Contains(bash, "--"+f.Name) || !strings.Contains(zsh, "--"+f.Name) {
			t.Errorf("--%s missing from a completion", f.Name)
		}
	})
}

func TestBashCompletion(t *testing.T) {
	got := testPage().Bash()
	for _, want := range []string{
		"_demo() {\n",
		"\t-b|--base)\n\t\tcompopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\"))\n\t\treturn ;;\n",
		"\t--exclude-from)\n\t\tcompopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\"))\n",
		"\t-p|--port|-t|--target-host)\n\t\t:\n\t\treturn ;;\n",
		"COMPREPLY=($(compgen -W '-b --base --json -p --port -t --target-host --exclude-from' -- \"$cur\"))",
		"complete -F _demo demo\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bash completion lacks\n%s\n--- script:\n%s", want, got)
		}
	}
}

func TestZshCompletion(t *testing.T) {
	got := testPage().Zsh()
	for _, want := range []string{
		"#compdef demo\n",
		"\t'(-b --base)'{-b+,--base=}'[base DIR to keep \\[required\\]]:DIR:_files -/'",
		"\t--json'[print JSON, it'\\''s shorter]'",
		"\t'(-p --port)'{-p+,--port=}'[UDP PORT]:PORT: '",
		"\t'*'{-t+,--target-host=}'[only HOST (repeatable)]:HOST: '",
		"\t'*'--exclude-from='[read patterns from FILE]:FILE:_files'",
		"\t'*:PATH:_files'\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("zsh completion lacks\n%s\n--- script:\n%s", want, got)
		}
	}
}

func TestWriteAndStaleGenerated(t *testing.T) {
	dir := t.TempDir()
	p := testPage()
	stale, err := p.StaleGenerated(dir)
	if err != nil || len(stale) != 3 {
		t.Fatalf("empty dir: stale %v, %v; want all 3 files", stale, err)
	}
	if err := p.WriteGenerated(dir); err != nil {
		t.Fatal(err)
	}
	if stale, err := p.StaleGenerated(dir); err != nil || len(stale) != 0 {
		t.Fatalf("after writing: stale %v, %v", stale, err)
	}
	p.Flags.Bool("new-flag", false, "added after the files were generated")
	stale, err = p.StaleGenerated(dir)
	if err != nil || strings.Join(stale, " ") != "completion/bash/demo completion/zsh/_demo man/demo.8" {
		t.Fatalf("after a new flag: stale %v, %v; want all 3 files", stale, err)
	}
}
