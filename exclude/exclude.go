package exclude

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
)

// ErrBadPattern is wrapped by the error [New] returns for a pattern that
// cannot be used (empty, only slashes, or malformed glob syntax).
var ErrBadPattern = errors.New("exclude: bad pattern")

// Set is a compiled, immutable list of exclude patterns. The zero value and
// a nil *Set exclude nothing.
type Set struct {
	rules    []rule
	patterns []string
	// byName: every rule matches the last element alone (no '/', no
	// "**"), so a name decides without its directory's path.
	byName bool
}

// New compiles patterns into a Set. It returns an error wrapping
// [ErrBadPattern] and naming the first invalid pattern.
func New(patterns []string) (*Set, error) {
	s := &Set{
		rules:    make([]rule, 0, len(patterns)),
		patterns: append([]string(nil), patterns...),
	}
	for _, p := range patterns {
		r, err := compile(p)
		if err != nil {
			return nil, err
		}
		s.rules = append(s.rules, r)
	}
	s.byName = !slices.ContainsFunc(s.rules, func(r rule) bool { return r.kind != baseName })
	return s, nil
}

// ReadFile reads exclude patterns from the file at path, in the format of
// rsync's --exclude-from: one pattern per line; blank lines and lines whose
// first character is '#' or ';' are ignored; a trailing "\r" is dropped.
// Other whitespace is kept, as rsync does, because it may be part of a
// name. A pattern that must start with '#' or ';' can escape it ("\#*#").
// The patterns are not validated; pass them to [New].
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("exclude: read patterns: %w", err)
	}
	defer f.Close()
	patterns, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("exclude: read patterns from %s: %w", path, err)
	}
	return patterns, nil
}

// DefaultPatterns returns a fresh slice of the patterns makuo excludes unless
// told otherwise: editor swap, backup and probe files, which are written and
// removed constantly while someone edits a file and are never worth
// replicating, and makuo's own staging files.
func DefaultPatterns() []string {
	return []string{
		"*.swp",        // vim swap file
		"*.swx",        // vim swap file (second candidate name)
		"*~",           // vim, emacs, gedit backup file
		".#*",          // emacs lock file
		"#*#",          // emacs auto-save file
		"4913",         // vim's probe file for "can I create files here"
		".*.kate-swp",  // kate swap file
		".makuo-*.tmp", // makuo's receiver staging file (temp file, then rename)
	}
}

// Match reports whether rel, a slash-separated path relative to the base
// directory, is excluded. isDir says whether rel itself is a directory,
// which matters for patterns with a trailing '/'. rel is also excluded when
// one of its parent directories is. See the package documentation for the
// pattern rules.
func (s *Set) Match(rel string, isDir bool) bool {
	if s == nil || len(s.rules) == 0 {
		return false
	}
	rel = strings.TrimLeft(rel, "/")
	if rel == "" {
		return false
	}
	rel = path.Clean(rel)
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return false
	}
	// Check rel itself, then each parent as a directory, from the deepest up.
	for p, dir := rel, isDir; p != "."; p, dir = path.Dir(p), true {
		if s.matchOne(p, dir) {
			return true
		}
	}
	return false
}

// MatchListed is Match for a walker that never enters an excluded
// directory: name is a name it listed in the directory dir (clean,
// relative, "." for the base) that it entered, so no parent of dir/name
// is excluded, and only dir/name itself is matched. It decides as Match
// does under that condition, without Match's cleaning and its walk over
// the parents, which an index scan would pay for every name of the tree;
// and the path dir/name is only built when a pattern needs more than the
// name, which the usual ones (the defaults, "*.log") do not.
func (s *Set) MatchListed(dir, name string, isDir bool) bool {
	if s == nil || len(s.rules) == 0 {
		return false
	}
	if s.byName {
		return s.matchName("", name, isDir)
	}
	if dir == "." {
		return s.matchOne(name, isDir)
	}
	return s.matchOne(dir+"/"+name, isDir)
}

// Patterns returns a copy of the patterns the Set was built from, in order.
func (s *Set) Patterns() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.patterns...)
}

// rule is one compiled pattern.
type rule struct {
	glob    string // doublestar pattern, without leading or trailing '/'
	dirOnly bool   // pattern had a trailing '/'
	kind    ruleKind
	// simple: a base-name glob with at most one '*' and no other special
	// character (the usual "*.swp", ".#*", "4913"), which matches a name
	// with prefix and suffix around the star (or equal to prefix, without
	// one) at a fraction of a glob match's cost: walkers ask for every
	// name of a tree, and every parent of it.
	simple         bool
	star           bool
	prefix, suffix string
}

type ruleKind uint8

const (
	baseName ruleKind = iota // no '/' and no "**": match path.Base at any depth
	anchored                 // leading '/': match the whole path from the base dir
	floating                 // inner '/' or "**": match the path's tail at a component boundary
)

func compile(p string) (rule, error) {
	var r rule
	g := p
	for strings.HasSuffix(g, "/") && !strings.HasSuffix(g, `\/`) {
		r.dirOnly = true
		g = strings.TrimSuffix(g, "/")
	}
	switch {
	case strings.HasPrefix(g, "/"):
		r.kind = anchored
		g = strings.TrimLeft(g, "/")
	case strings.Contains(g, "/") || strings.Contains(g, "**"):
		r.kind = floating
	default:
		r.kind = baseName
	}
	if g == "" {
		return rule{}, fmt.Errorf("%w %q: matches no name", ErrBadPattern, p)
	}
	if !doublestar.ValidatePattern(g) {
		return rule{}, fmt.Errorf("%w %q: malformed glob (unbalanced [ ] or { }, or trailing \\)", ErrBadPattern, p)
	}
	r.glob = g
	if r.kind == baseName && !strings.ContainsAny(g, `?[]{}\`) && strings.Count(g, "*") <= 1 && utf8.ValidString(g) {
		r.simple = true
		r.prefix, r.suffix, r.star = strings.Cut(g, "*")
	}
	return r, nil
}

// matchOne matches p (clean, relative, not ".") against every rule, without
// looking at p's parents.
func (s *Set) matchOne(p string, isDir bool) bool {
	return s.matchName(p, path.Base(p), isDir)
}

// matchName is matchOne for p whose last element is name; p is not
// looked at (and may be empty) when every rule matches by name.
func (s *Set) matchName(p, name string, isDir bool) bool {
	// The glob engine compares runes, and every invalid byte decodes to
	// the same one: names that are not UTF-8 go its way.
	valid := utf8.ValidString(name)
	for _, r := range s.rules {
		if r.dirOnly && !isDir {
			continue
		}
		if r.match(p, name, valid) {
			return true
		}
	}
	return false
}

// match matches the path p, whose last element is name (valid UTF-8 if
// valid), against r.
func (r rule) match(p, name string, valid bool) bool {
	switch {
	case r.simple && valid:
		if !r.star {
			return name == r.prefix
		}
		return len(name) >= len(r.prefix)+len(r.suffix) && strings.HasPrefix(name, r.prefix) && strings.HasSuffix(name, r.suffix)
	case r.kind == baseName:
		return doublestar.MatchUnvalidated(r.glob, name)
	case r.kind == anchored:
		return doublestar.MatchUnvalidated(r.glob, p)
	default:
		// Try the whole path, then every tail that starts after a '/'.
		for {
			if doublestar.MatchUnvalidated(r.glob, p) {
				return true
			}
			i := strings.IndexByte(p, '/')
			if i < 0 {
				return false
			}
			p = p[i+1:]
		}
	}
}

// Parse reads rsync --exclude-from lines from r (a pattern a line; blank
// lines and lines starting with # or ; skipped), as ReadFile does.
func Parse(r io.Reader) ([]string, error) {
	var patterns []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		patterns = append(patterns, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return patterns, nil
}
