package usage

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// FlagTable renders fs as aligned "-x, --long ARG  text (default D)" rows.
// pflag's own FlagUsages adds "[=true|false]" noise to every switch and
// names arguments by Go type; here the argument is the back-quoted word of
// the usage text (pflag.UnquoteUsage), as in "read `FILE`".
func FlagTable(fs *pflag.FlagSet) string {
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		name, text := pflag.UnquoteUsage(f)
		text += DefaultSuffix(f)
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		if f.Value.Type() != "bool" {
			left += " " + name
		}
		rows = append(rows, row{left, text})
		width = max(width, len(left))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s  %s\n", width, r.left, r.right)
	}
	return b.String()
}

// DefaultSuffix is " (default D)" for a flag whose default says something.
func DefaultSuffix(f *pflag.Flag) string {
	switch d := f.DefValue; d {
	case "", "0", "false", "[]":
		return ""
	default:
		return " (default " + d + ")"
	}
}
