package main

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/makuo/makuo/internal/usage"
)

// The option table of -h is grouped into sections, each flag annotated
// with its section's title by endSection, and wrapped to helpWidth.
const (
	sectionKey = "makuosan/section"
	// helpWidth leaves the 80th column free: some terminals wrap a line
	// that fills it.
	helpWidth = 79
	// helpIndent is where the descriptions start; a flag and argument
	// longer than fits before it get a line of their own.
	helpIndent = 30
)

// endSection puts every flag defined so far without a section into title.
func endSection(fs *pflag.FlagSet, title string) {
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[sectionKey]; !ok {
			_ = fs.SetAnnotation(f.Name, sectionKey, []string{title})
		}
	})
}

// helpTable renders fs as the sections of the -h option table, in the
// order the flags were defined: "-x, --long ARG  text (default D)", the
// text wrapped under itself.
func helpTable(fs *pflag.FlagSet) string {
	var b strings.Builder
	section := ""
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if s := f.Annotations[sectionKey]; len(s) > 0 && s[0] != section {
			if section != "" {
				b.WriteString("\n")
			}
			section = s[0]
			b.WriteString(section + ":\n")
		}
		arg, text := pflag.UnquoteUsage(f)
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		if f.Value.Type() != "bool" {
			left += " " + arg
		}
		lines := wrap(text+usage.DefaultSuffix(f), helpWidth-helpIndent)
		if len(left)+2 > helpIndent {
			b.WriteString(left + "\n")
		} else {
			b.WriteString(left + strings.Repeat(" ", helpIndent-len(left)) + lines[0] + "\n")
			lines = lines[1:]
		}
		for _, l := range lines {
			b.WriteString(strings.Repeat(" ", helpIndent) + l + "\n")
		}
	})
	return b.String()
}

// wrap breaks text into lines of at most width bytes at spaces; a word
// longer than width gets a line of its own.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	return append(lines, line)
}
