package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/makuo/makuo/exclude"
)

func TestNormalizeTarget(t *testing.T) {
	tests := []struct{ in, want string }{
		{"unix:/run/m.sock", "unix:/run/m.sock"},
		{"tcp:127.0.0.1:5000", "tcp:127.0.0.1:5000"},
		{"/run/makuosan/makuosan.sock", "unix:/run/makuosan/makuosan.sock"},
		{"makuosan.sock", "unix:makuosan.sock"},
		{"./m", "unix:./m"},
		{"dir/m:5000", "unix:dir/m:5000"},
		{"127.0.0.1:5000", ""},
		{"web1:5000", ""},
		{"x.sock:80", ""},
		{"makuosan", ""},
		{"udp:1.2.3.4:5", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := normalizeTarget(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("normalizeTarget(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		"send -r htdocs":      {"send", "-r", "htdocs"},
		"  send\t a   b ":     {"send", "a", "b"},
		`send my\ file x`:     {"send", "my file", "x"},
		`send a\\b c\`:        {"send", `a\\b`, `c\`},
		`echo one\ \ two`:     {"echo", "one  two"},
		"members":             {"members"},
		`exclude add *.log\ `: {"exclude", "add", "*.log "},
	}
	for in, want := range tests {
		if got := splitWords(in); !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSizeAndCount(t *testing.T) {
	for in, want := range map[uint64]string{0: "0 B", 1: "1 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := size(in); got != want {
			t.Errorf("size(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int]string{0: "0 paths", 1: "1 path", 2: "2 paths"} {
		if got := count(in, "path"); got != want {
			t.Errorf("count(%d) = %q, want %q", in, got, want)
		}
	}
}

// readPatterns (--exclude-from -) must read what exclude.ReadFile reads
// from a file.
func TestReadPatternsAsExclude(t *testing.T) {
	const text = "# comment\n*.log\r\n\n   \n;semi\n cache/\n/tmp\n#x\n**/a b\n"
	f := filepath.Join(t.TempDir(), "patterns")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := exclude.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readPatterns(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || len(got) != 4 {
		t.Errorf("readPatterns = %q, exclude.ReadFile = %q", got, want)
	}
}

func TestLevelOrder(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"x"}, levelChanged},
		{[]string{"-v", "x"}, 2},
		{[]string{"-vv", "x"}, 3},
		{[]string{"-l", "0", "-v", "x"}, 1},
		{[]string{"-v", "-l", "0", "x"}, 0},
		{[]string{"-l5", "x"}, 5},
		{[]string{"--verbose=false", "x"}, levelChanged},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, nil, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if o.level != tt.want {
			t.Errorf("%q: level %d, want %d", tt.args, o.level, tt.want)
		}
	}
}

func TestRelPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"htdocs/", "htdocs"},
		{"./a/../b", "b"},
		{"/srv/www/a", "a"},
		{"/srv/www", "."},
		{"/srv/wwwx/a", ""},
		{"../a", ""},
		{"a/../../b", ""},
	}
	for _, tt := range tests {
		got, err := relPath("/srv/www/", tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("relPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
