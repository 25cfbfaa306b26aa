package exclude

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		rel      string
		isDir    bool
		want     bool
	}{
		// Base-name patterns match at any depth.
		{"basename top", []string{"*.swp"}, "a.swp", false, true},
		{"basename deep", []string{"*.swp"}, "x/y/.a.swp", false, true},
		{"basename no match", []string{"*.swp"}, "x/y/a.swpx", false, false},
		{"basename exact", []string{"4913"}, "dir/4913", false, true},
		{"basename is not substring", []string{"4913"}, "dir/49130", false, false},
		{"basename matches dir too", []string{"node_modules"}, "a/node_modules", true, true},
		{"star does not cross slash", []string{"a*b"}, "a/b", false, false},
		{"question mark", []string{"?.tmp"}, "d/x.tmp", false, true},
		{"class", []string{"[ab].log"}, "b.log", false, true},
		{"negated class", []string{"[!ab].log"}, "b.log", false, false},
		{"alternatives", []string{"*.{swp,swx}"}, "d/f.swx", false, true},
		{"escaped star", []string{`\*`}, "d/*", false, true},
		{"escaped star literal only", []string{`\*`}, "d/x", false, false},
		{"dotfile matched by star", []string{"*"}, ".hidden", false, true},

		// Anchored patterns.
		{"anchored top", []string{"/tmp"}, "tmp", true, true},
		{"anchored not deep", []string{"/tmp"}, "x/tmp", true, false},
		{"anchored nested", []string{"/var/cache"}, "var/cache", true, true},
		{"anchored nested not deep", []string{"/var/cache"}, "x/var/cache", true, false},
		{"anchored glob", []string{"/*.conf"}, "a.conf", false, true},
		{"anchored glob not deep", []string{"/*.conf"}, "etc/a.conf", false, false},

		// Floating patterns with an inner slash.
		{"floating top", []string{"cache/*.dat"}, "cache/a.dat", false, true},
		{"floating deep", []string{"cache/*.dat"}, "x/y/cache/a.dat", false, true},
		{"floating component boundary", []string{"cache/*.dat"}, "xcache/a.dat", false, false},
		{"floating too deep for star", []string{"cache/*.dat"}, "cache/sub/a.dat", false, false},

		// Directory-only patterns.
		{"dir only matches dir", []string{"build/"}, "build", true, true},
		{"dir only skips file", []string{"build/"}, "build", false, false},
		{"dir only deep", []string{"build/"}, "src/build", true, true},
		{"dir only anchored", []string{"/build/"}, "build", true, true},
		{"dir only anchored not deep", []string{"/build/"}, "src/build", true, false},
		{"dir only excludes contents", []string{"build/"}, "build/out/x.o", false, true},
		{"file named like dir pattern under dir", []string{"x/"}, "a/x", false, false},

		// Double star.
		{"doublestar middle zero dirs", []string{"/a/**/z"}, "a/z", false, true},
		{"doublestar middle many dirs", []string{"/a/**/z"}, "a/b/c/d/z", false, true},
		{"doublestar middle anchored", []string{"/a/**/z"}, "q/a/b/z", false, false},
		{"doublestar leading", []string{"**/tmp"}, "x/y/tmp", true, true},
		{"doublestar leading top", []string{"**/tmp"}, "tmp", true, true},
		{"doublestar trailing", []string{"/logs/**"}, "logs/2024/01/a.log", false, true},
		{"doublestar floating", []string{"**.bak"}, "d/e/f.bak", false, true},
		{"doublestar alone", []string{"**"}, "a/b", false, true},

		// Parent directory matches exclude everything below.
		{"parent basename", []string{".git"}, "repo/.git/objects/ab/cd", false, true},
		{"parent anchored", []string{"/var"}, "var/log/x", false, true},
		{"parent anchored dir-only", []string{"/var/"}, "var/log/x", false, true},
		{"parent middle", []string{"a/b"}, "a/b/c", false, true},
		{"sibling not excluded", []string{"/a/b"}, "a/bc/d", false, false},

		// Base directory and odd input.
		{"base dot", []string{"*"}, ".", true, false},
		{"base empty", []string{"*"}, "", true, false},
		{"escapes base", []string{"*"}, "../x", false, false},
		{"dotdot", []string{"*"}, "..", true, false},
		{"leading slash tolerated", []string{"/a"}, "/a", false, true},
		{"unclean path", []string{"/a/b"}, "a//./b", false, true},
		{"no patterns", nil, "a", false, false},
		{"second pattern matches", []string{"*.x", "*.y"}, "f.y", false, true},

		// Defaults.
		{"default swp", DefaultPatterns(), "www/.index.html.swp", false, true},
		{"default swx", DefaultPatterns(), ".x.swx", false, true},
		{"default backup", DefaultPatterns(), "www/index.html~", false, true},
		{"default emacs lock", DefaultPatterns(), "www/.#index.html", false, true},
		{"default emacs autosave", DefaultPatterns(), "www/#index.html#", false, true},
		{"default vim probe", DefaultPatterns(), "www/4913", false, true},
		{"default kate", DefaultPatterns(), "www/.index.html.kate-swp", false, true},
		{"default makuo temp", DefaultPatterns(), "www/.makuo-1234.tmp", false, true},
		{"default ordinary file", DefaultPatterns(), "www/index.html", false, false},
		{"default hash in middle", DefaultPatterns(), "www/a#b", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.patterns)
			if err != nil {
				t.Fatalf("New(%q): %v", tt.patterns, err)
			}
			if got := s.Match(tt.rel, tt.isDir); got != tt.want {
				t.Errorf("New(%q).Match(%q, %v) = %v, want %v", tt.patterns, tt.rel, tt.isDir, got, tt.want)
			}
		})
	}
}

func TestNilSetMatchesNothing(t *testing.T) {
	var s *Set
	if s.Match("a.swp", false) {
		t.Error("nil Set matched")
	}
	if s.Patterns() != nil {
		t.Error("nil Set has patterns")
	}
	var zero Set
	if zero.Match("a", true) {
		t.Error("zero Set matched")
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
	}{
		{"empty", ""},
		{"only slash", "/"},
		{"only slashes", "//"},
		{"unclosed class", "a[b"},
		{"unclosed alternative", "{a,b"},
		{"trailing backslash", `a\`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New([]string{"*.ok", tt.pattern})
			if err == nil {
				t.Fatalf("New(%q) succeeded, want error", tt.pattern)
			}
			if !errors.Is(err, ErrBadPattern) {
				t.Errorf("error %v does not wrap ErrBadPattern", err)
			}
			if want := fmt.Sprintf("%q", tt.pattern); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name the pattern %s", err, want)
			}
		})
	}
}

func TestPatternsIsACopy(t *testing.T) {
	in := []string{"a", "b"}
	s, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = "changed"
	got := s.Patterns()
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Patterns() = %q", got)
	}
	got[1] = "changed"
	if s.Patterns()[1] != "b" {
		t.Fatal("Patterns() exposes internal slice")
	}
}

func TestDefaultPatternsFresh(t *testing.T) {
	a := DefaultPatterns()
	a[0] = "changed"
	if DefaultPatterns()[0] == "changed" {
		t.Fatal("DefaultPatterns shares its slice")
	}
	if _, err := New(DefaultPatterns()); err != nil {
		t.Fatalf("default patterns invalid: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{"empty", "", nil},
		{"plain", "*.swp\n/tmp/\n", []string{"*.swp", "/tmp/"}},
		{"no final newline", "a\nb", []string{"a", "b"}},
		{"comments and blanks", "# comment\n\n; other comment\n   \n\t\n*.o\n", []string{"*.o"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"escaped hash", "\\#*#\n", []string{`\#*#`}},
		{"inner hash kept", "a#b\n", []string{"a#b"}},
		{"spaces kept", " lead\ntrail \n", []string{" lead", "trail "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "excludes")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFile(p)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ReadFile = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadFileEscapedHashMatches(t *testing.T) {
	p := filepath.Join(t.TempDir(), "excludes")
	if err := os.WriteFile(p, []byte("\\#*#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	patterns, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Match("d/#autosave#", false) {
		t.Error(`"\#*#" does not match "#autosave#"`)
	}
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadFile(missing) = %v, want wrapped ErrNotExist", err)
	}
}

func FuzzMatch(f *testing.F) {
	seeds := []struct {
		pattern, rel string
		isDir        bool
	}{
		{"*.swp", "a/b.swp", false},
		{"/a/**/z", "a/b/z", false},
		{"build/", "x/build", true},
		{"{a,b}/c", "b/c", false},
		{`\`, "..", false},
		{"[", "a/../../b", true},
		{"**/", "//", true},
		{"a/**/**/b", "a/x/y/b", false},
	}
	for _, s := range seeds {
		f.Add(s.pattern, s.rel, s.isDir)
	}
	f.Fuzz(func(t *testing.T, pattern, rel string, isDir bool) {
		s, err := New([]string{pattern})
		if err != nil {
			if !errors.Is(err, ErrBadPattern) {
				t.Fatalf("New(%q) error %v does not wrap ErrBadPattern", pattern, err)
			}
			return
		}
		// A match on a directory implies a match on everything below it.
		if s.Match(rel, true) && !s.Match(rel+"/child", false) {
			t.Errorf("pattern %q matches dir %q but not %q", pattern, rel, rel+"/child")
		}
		checkMatchListed(t, s, rel, isDir)
	})
}

// TestSimpleRulesMatchLikeGlobs: a base-name pattern matched by prefix and
// suffix (no glob engine) decides every name as the glob does, dots,
// overlaps and empty halves included.
func TestSimpleRulesMatchLikeGlobs(t *testing.T) {
	patterns := append(DefaultPatterns(), "*", "a*a", "ab*", "*b", "x", ".*", "*.", "é*ü")
	names := []string{"", "a", "aa", "aba", "ab", "b", "x", "xx", ".", "..", ".x", "x.", "f.swp", ".f.swp", "f.swpx",
		"f~", "~", ".#f", "#f#", "#", "##", "4913", "49130", ".a.kate-swp", ".kate-swp", ".makuo-1.tmp", ".makuo-.tmp", "éaü", "éü"}
	for _, p := range patterns {
		r, err := compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !r.simple {
			t.Errorf("%q is not matched the simple way", p)
			continue
		}
		for _, n := range names {
			if n == "" {
				continue
			}
			if got, want := r.match("dir/"+n, n, utf8.ValidString(n)), globMatch(r.glob, n); got != want {
				t.Errorf("pattern %q, name %q: simple match %v, glob %v", p, n, got, want)
			}
		}
	}
}

// FuzzSimpleRule: wherever a pattern compiles to a simple rule, it
// matches a name exactly when its glob does.
func FuzzSimpleRule(f *testing.F) {
	for _, p := range DefaultPatterns() {
		f.Add(p, "x"+p)
	}
	f.Add("a*a", "a")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		r, err := compile(pattern)
		if err != nil || !r.simple || name == "" || strings.Contains(name, "/") {
			return
		}
		if got, want := r.match(name, name, utf8.ValidString(name)), globMatch(r.glob, name); got != want {
			t.Errorf("pattern %q, name %q: simple match %v, glob %v", pattern, name, got, want)
		}
	})
}

func globMatch(pattern, name string) bool { return doublestar.MatchUnvalidated(pattern, name) }

// BenchmarkMatchDefault: what a tree walk pays per name with the default
// patterns (the name, then each parent as a directory).
func BenchmarkMatchDefault(b *testing.B) {
	s, err := New(DefaultPatterns())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if s.Match("www/assets/12/index-345.html", false) {
			b.Fatal("excluded")
		}
	}
}

// checkMatchListed: for a clean rel none of whose parents is excluded,
// MatchListed decides as Match.
func checkMatchListed(t *testing.T, s *Set, rel string, isDir bool) {
	t.Helper()
	if rel == "" || path.Clean(rel) != rel || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/") {
		return
	}
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		if s.Match(p, true) {
			return
		}
	}
	if got, want := s.MatchListed(path.Dir(rel), path.Base(rel), isDir), s.Match(rel, isDir); got != want {
		t.Errorf("patterns %q: MatchListed(%q, %q, %v) = %v, Match = %v", s.Patterns(), path.Dir(rel), path.Base(rel), isDir, got, want)
	}
}

// TestMatchListed: a walker that asks MatchListed about every name it
// lists, and enters only the directories it leaves in, keeps exactly the
// paths Match keeps, for patterns that all match by name (the defaults and
// "*.log": the path is never built) and for anchored, floating and
// directory-only ones too.
func TestMatchListed(t *testing.T) {
	byName := append(DefaultPatterns(), "*.log", "build")
	mixed := append(DefaultPatterns(), "/top/skip", "a/b", "**/deep/x", "build/", "*.log", "cache/**")
	for _, c := range []struct {
		patterns, excluded []string
	}{
		{byName, []string{"build", "x/4913", "f.swp", "top/f.log", "a/c/a/build"}},
		{mixed, []string{"top/skip", "a/b", "a/c/deep/x", "build", "cache/anything", "x/4913"}},
	} {
		s, err := New(c.patterns)
		if err != nil {
			t.Fatal(err)
		}
		checkWalk(t, s, c.excluded)
	}
}

// checkWalk walks a fixed tree with MatchListed and with Match, compares
// what each keeps, and checks that MatchListed excludes each of excluded.
func checkWalk(t *testing.T, s *Set, excluded []string) {
	t.Helper()
	dirs := map[string][]string{
		".":        {"top", "a", "x", "build", "cache", "f.swp", "ok"},
		"top":      {"skip", "keep", "f.log"},
		"top/keep": {"a", "skip"},
		"a":        {"b", "c", "x.swp~"},
		"a/c":      {"a", "deep"},
		"a/c/a":    {"b", "build"},
		"a/c/deep": {"x", "y"},
		"x":        {"4913", ".#lock", "build"},
		"cache":    {"anything"},
	}
	// visit calls f for every path of dirs below dir, in order; f says
	// whether to go below a directory.
	var visit func(dir string, f func(rel string, isDir bool) bool)
	visit = func(dir string, f func(rel string, isDir bool) bool) {
		for _, name := range dirs[dir] {
			rel := name
			if dir != "." {
				rel = dir + "/" + name
			}
			_, isDir := dirs[rel]
			if f(rel, isDir || name == "build") {
				visit(rel, f)
			}
		}
	}
	var below, whole []string
	visit(".", func(rel string, isDir bool) bool {
		if s.MatchListed(path.Dir(rel), path.Base(rel), isDir) {
			return false // a walker does not enter what it leaves out
		}
		below = append(below, rel)
		return true
	})
	visit(".", func(rel string, isDir bool) bool {
		if !s.Match(rel, isDir) {
			whole = append(whole, rel)
		}
		return true
	})
	if !slices.Equal(below, whole) {
		t.Fatalf("patterns %q: walk with MatchListed keeps %q, Match keeps %q", s.Patterns(), below, whole)
	}
	if len(whole) < 10 {
		t.Fatalf("only %d paths kept: the patterns leave too little to compare", len(whole))
	}
	for _, rel := range excluded {
		_, isDir := dirs[rel]
		if !s.MatchListed(path.Dir(rel), path.Base(rel), isDir || rel == "build") {
			t.Errorf("patterns %q: MatchListed(%q) = false, want it excluded", s.Patterns(), rel)
		}
	}
}
