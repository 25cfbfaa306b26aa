package usage

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// argKind is what a flag's argument names, by its back-quoted word in the
// usage text ("base `DIR` to ..."), and so how a shell completes it.
type argKind int

const (
	argOther argKind = iota // free-form: no completion
	argDir
	argFile
	argUser
	argGroup
	argGroups // comma-separated groups
	argInterface
)

var argKinds = map[string]argKind{
	"DIR": argDir, "FILE": argFile, "PATH": argFile,
	"USER": argUser, "GROUP": argGroup, "GROUPS": argGroups, "IF": argInterface,
}

// bashActions are the case branches of the bash completion, in this order.
var bashActions = []struct {
	kind argKind
	body string
}{
	{argDir, `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))`},
	{argFile, `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))`},
	{argUser, `COMPREPLY=($(compgen -u -- "$cur"))`},
	{argGroup, `COMPREPLY=($(compgen -g -- "$cur"))`},
	{argGroups, `COMPREPLY=($(compgen -g -- "${cur##*,}"))`},
	{argInterface, `COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur"))`},
	{argOther, `:`},
}

var zshActions = map[argKind]string{
	argDir: "_files -/", argFile: "_files", argUser: "_users", argGroup: "_groups",
	argGroups: "_sequence _groups", argInterface: "_net_interfaces", argOther: " ",
}

// Bash renders a bash completion script for the command: flag names after
// "-", then each flag's argument by its kind, then files for Args.
func (p Page) Bash() string {
	var words []string
	byKind := map[argKind][]string{}
	p.visible(func(f *pflag.Flag, arg string) {
		names := []string{"--" + f.Name}
		if f.Shorthand != "" {
			names = append([]string{"-" + f.Shorthand}, names...)
		}
		words = append(words, names...)
		if f.Value.Type() != "bool" {
			k := argKinds[arg]
			byKind[k] = append(byKind[k], names...)
		}
	})
	fn := "_" + strings.ReplaceAll(p.Name, "-", "_")
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s(%d), generated from its flags (make docs): do not edit.\n", p.Name, p.Section)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n")
	b.WriteString("\tCOMPREPLY=()\n")
	b.WriteString("\tcase $prev in\n")
	for _, a := range bashActions {
		if names := byKind[a.kind]; len(names) > 0 {
			fmt.Fprintf(&b, "\t%s)\n\t\t%s\n\t\treturn ;;\n", strings.Join(names, "|"), a.body)
		}
	}
	b.WriteString("\tesac\n")
	b.WriteString("\tif [[ $cur == -* ]]; then\n")
	fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W '%s' -- \"$cur\"))\n", strings.Join(words, " "))
	b.WriteString("\t\treturn\n\tfi\n")
	if p.Args != "" {
		b.WriteString("\tcompopt -o filenames 2>/dev/null\n")
		b.WriteString("\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n")
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn, p.Name)
	return b.String()
}

// Zsh renders a zsh completion function (#compdef) built on _arguments.
func (p Page) Zsh() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %s\n", p.Name)
	fmt.Fprintf(&b, "# zsh completion for %s(%d), generated from its flags (make docs): do not edit.\n", p.Name, p.Section)
	b.WriteString("_arguments -s -S")
	p.visible(func(f *pflag.Flag, arg string) {
		_, text := pflag.UnquoteUsage(f)
		takesArg := f.Value.Type() != "bool"
		repeatable := strings.HasSuffix(f.Value.Type(), "Array") || strings.HasSuffix(f.Value.Type(), "Slice")
		short, long := "-"+f.Shorthand, "--"+f.Name
		if takesArg {
			short, long = short+"+", long+"="
		}
		var spec string
		switch {
		case f.Shorthand != "" && repeatable:
			spec = "'*'{" + short + "," + long + "}"
		case f.Shorthand != "":
			spec = "'(-" + f.Shorthand + " --" + f.Name + ")'{" + short + "," + long + "}"
		case repeatable:
			spec = "'*'" + long
		default:
			spec = long
		}
		spec += "'[" + zshEscape(text) + "]"
		if takesArg {
			spec += ":" + zshEscape(strings.ReplaceAll(arg, ":", `\:`)) + ":" + zshActions[argKinds[arg]]
		}
		spec += "'"
		b.WriteString(" \\\n\t" + spec)
	})
	if p.Args != "" {
		b.WriteString(" \\\n\t'*:" + p.Args + ":_files'")
	}
	b.WriteString("\n")
	return b.String()
}

// visible calls fn for every flag shown in help, with its argument name.
func (p Page) visible(fn func(f *pflag.Flag, arg string)) {
	p.Flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		arg, _ := pflag.UnquoteUsage(f)
		fn(f, arg)
	})
}

// zshEscape makes s safe inside a single-quoted _arguments spec: quotes
// closed and reopened, brackets escaped for the description.
func zshEscape(s string) string {
	return strings.NewReplacer(`'`, `'\''`, `\`, `\\`, `[`, `\[`, `]`, `\]`).Replace(s)
}
