package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/pflag"
)

// TestHelpText: -h keeps every line under 80 columns, and lists every
// flag once, under its section, the sections in a fixed order.
func TestHelpText(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, nil, &out); err != errHelp {
		t.Fatal(err)
	}
	help := out.String()
	for i, line := range strings.Split(help, "\n") {
		if n := utf8.RuneCountInString(line); n > helpWidth {
			t.Errorf("line %d has %d columns (at most %d): %q", i+1, n, helpWidth, line)
		}
	}
	wantSections := []string{"Replication", "Network", "Security", "Control", "Process", "Logging and monitoring", "Information"}
	var sections []string
	_, fs := newFlagSet()
	fs.VisitAll(func(f *pflag.Flag) {
		s := f.Annotations[sectionKey]
		if len(s) != 1 {
			t.Errorf("--%s is in no section", f.Name)
			return
		}
		if len(sections) == 0 || sections[len(sections)-1] != s[0] {
			sections = append(sections, s[0])
		}
		if n := strings.Count(help, "--"+f.Name+" ") + strings.Count(help, "--"+f.Name+"\n"); n < 1 {
			t.Errorf("--%s is not in the help", f.Name)
		}
	})
	if !slices.Equal(sections, wantSections) {
		t.Errorf("sections %q, want %q (each flag's section must follow the one before)", sections, wantSections)
	}
	at := 0
	for _, s := range wantSections {
		i := strings.Index(help[at:], "\n"+s+":\n")
		if i < 0 {
			t.Fatalf("no heading %q after the previous one", s)
		}
		at += i + 1
	}
}

func TestWrap(t *testing.T) {
	for _, tt := range []struct {
		text  string
		width int
		want  []string
	}{
		{"one two three", 7, []string{"one two", "three"}},
		{"one two three", 13, []string{"one two three"}},
		{"a verylongword b", 4, []string{"a", "verylongword", "b"}},
		{"", 10, []string{""}},
	} {
		if got := wrap(tt.text, tt.width); !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.text, tt.width, got, tt.want)
		}
	}
}
