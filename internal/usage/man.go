package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// Page describes one command for its manual page and shell completions.
// Head and Tail are the command's own help text around the option table,
// so the page says what -h says.
type Page struct {
	Name    string         // the command
	Section int            // manual section: 1 for msync, 8 for the daemon
	Summary string         // the NAME line: what the command does, in a few words
	Version string         // the release, in the page footer
	Head    string         // help text before the option table: "Usage:" lines, description, "Options:"
	Tail    string         // help text after it: paragraphs, some headed "Examples:", "Exit status: ..."
	Flags   *pflag.FlagSet // the flags the command parses
	Args    string         // what positional arguments name ("PATH"), empty if the command takes none
	Files   [][2]string    // the FILES section: path, what it is
	SeeAlso []string       // references such as "msync(1)"
}

// Generated returns every file generated for p, by path relative to the
// deploy directory: the manual page and the bash and zsh completions.
func (p Page) Generated() map[string]string {
	return map[string]string{
		fmt.Sprintf("man/%s.%d", p.Name, p.Section): p.Man(),
		"completion/bash/" + p.Name:                 p.Bash(),
		"completion/zsh/_" + p.Name:                 p.Zsh(),
	}
}

// WriteGenerated writes the files of Generated under dir.
func (p Page) WriteGenerated(dir string) error {
	for rel, content := range p.Generated() {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// StaleGenerated lists the files of Generated that are missing under dir
// or differ from what p generates now, sorted.
func (p Page) StaleGenerated(dir string) ([]string, error) {
	var stale []string
	for rel, content := range p.Generated() {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			stale = append(stale, rel)
		case err != nil:
			return nil, err
		case string(b) != content:
			stale = append(stale, rel)
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// Man renders the manual page in man(7) roff.
func (p Page) Man() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated from the flags and help text of %s (make docs): do not edit.\n", p.Name)
	fmt.Fprintf(&b, ".TH %s %d \"\" \"makuo %s\" \"makuo\"\n", strings.ToUpper(p.Name), p.Section, p.Version)
	b.WriteString(".SH NAME\n" + p.Name + " \\- " + roff(p.Summary) + "\n")

	synopsis, description := splitHead(p.Head)
	b.WriteString(".SH SYNOPSIS\n")
	for i, line := range synopsis {
		if i > 0 {
			b.WriteString(".br\n")
		}
		cmd, rest, _ := strings.Cut(line, " ")
		b.WriteString(`\fB` + roff(cmd) + `\fR ` + roff(rest) + "\n")
	}
	sections := tailSections(p.Tail)
	b.WriteString(".SH DESCRIPTION\n")
	for i, para := range append(description, sections.byTitle[""]...) {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(para)
	}

	b.WriteString(".SH OPTIONS\n")
	p.Flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		arg, text := pflag.UnquoteUsage(f)
		b.WriteString(".TP\n")
		if f.Shorthand != "" {
			b.WriteString(`\fB\-` + roff(f.Shorthand) + `\fR, `)
		}
		b.WriteString(`\fB\-\-` + roff(f.Name) + `\fR`)
		if f.Value.Type() != "bool" {
			b.WriteString(` \fI` + roff(arg) + `\fR`)
		}
		b.WriteString("\n" + roffLine(text+DefaultSuffix(f)) + "\n")
	})
	for _, title := range sections.order {
		if title == "" {
			continue
		}
		b.WriteString(".SH " + title + "\n")
		for i, para := range sections.byTitle[title] {
			if i > 0 {
				b.WriteString(".PP\n")
			}
			b.WriteString(para)
		}
	}
	if len(p.Files) > 0 {
		b.WriteString(".SH FILES\n")
		for _, f := range p.Files {
			b.WriteString(".TP\n.I " + roff(f[0]) + "\n" + roff(f[1]) + "\n")
		}
	}
	if len(p.SeeAlso) > 0 {
		refs := make([]string, len(p.SeeAlso))
		for i, r := range p.SeeAlso {
			name, sec, _ := strings.Cut(r, "(")
			refs[i] = ".BR " + roff(name) + " (" + sec
		}
		b.WriteString(".SH SEE ALSO\n" + strings.Join(refs, " ,\n") + "\n")
	}
	return b.String()
}

// splitHead returns the synopsis lines of a help head ("Usage: a b" and the
// indented lines under it) and its description, one rendered paragraph per
// blank-line-separated block, up to the "Options:" line.
func splitHead(head string) (synopsis []string, description []string) {
	paras := paragraphs(head)
	for i, para := range paras {
		if i == 0 && strings.HasPrefix(para[0], "Usage: ") {
			for _, l := range para {
				synopsis = append(synopsis, strings.TrimSpace(strings.TrimPrefix(l, "Usage: ")))
			}
			continue
		}
		if len(para) == 1 && strings.HasSuffix(para[0], ":") && i == len(paras)-1 {
			break // "Options:", introducing the table
		}
		description = append(description, renderBody(para))
	}
	return synopsis, description
}

// headingRE matches a paragraph's first line that names a section:
// "Examples:", "Exit status: 0 after ...", "Environment (a note):".
var headingRE = regexp.MustCompile(`^([A-Z][a-z]+(?: [a-z]+)?)(?: \(([^)]*)\))?:(?: (.*))?$`)

type sectionSet struct {
	order   []string
	byTitle map[string][]string
}

// tailSections sorts the paragraphs of a help tail into manual sections;
// paragraphs under no heading belong to the description (key "").
func tailSections(tail string) sectionSet {
	s := sectionSet{byTitle: map[string][]string{}}
	for _, para := range paragraphs(tail) {
		title := ""
		if m := headingRE.FindStringSubmatch(para[0]); m != nil {
			title = strings.ToUpper(m[1])
			var first []string
			if m[2] != "" {
				first = append(first, sentence(m[2]))
			}
			if m[3] != "" {
				first = append(first, m[3])
			}
			para = append(first, para[1:]...)
		}
		if _, ok := s.byTitle[title]; !ok {
			s.order = append(s.order, title)
		}
		if len(para) > 0 {
			s.byTitle[title] = append(s.byTitle[title], renderBody(para))
		}
	}
	return s
}

// renderBody renders a paragraph: unindented lines are running text
// (filled by the formatter), indented ones are shown as they are.
func renderBody(lines []string) string {
	var b strings.Builder
	literal := false
	for _, l := range lines {
		indented := strings.HasPrefix(l, " ")
		switch {
		case indented && !literal:
			b.WriteString(".RS 4\n.nf\n")
		case !indented && literal:
			b.WriteString(".fi\n.RE\n")
		}
		literal = indented
		if literal {
			l = strings.TrimPrefix(l, "  ")
		}
		b.WriteString(roffLine(l) + "\n")
	}
	if literal {
		b.WriteString(".fi\n.RE\n")
	}
	return b.String()
}

// paragraphs splits text into blocks of non-blank lines.
func paragraphs(text string) [][]string {
	var out [][]string
	var cur []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.TrimSpace(l) == "" {
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, strings.TrimRight(l, " "))
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// sentence turns a parenthesised note into a sentence.
func sentence(s string) string {
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// roff escapes text for a roff line: backslashes, and hyphens as \- so
// that flags copied from the page are ASCII minus signs.
func roff(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// roffLine is roff for a whole line, which must not start a request.
func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
