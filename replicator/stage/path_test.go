package stage

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	long := strings.Repeat("n", MaxNameLen)
	// A path of exactly MaxPathLen bytes made of 255-byte elements.
	var parts []string
	for n := 0; n+MaxNameLen+1 <= MaxPathLen; n += MaxNameLen + 1 {
		parts = append(parts, long)
	}
	maxPath := strings.Join(parts, "/")
	maxPath += "/" + strings.Repeat("x", MaxPathLen-len(maxPath)-1)
	if len(maxPath) != MaxPathLen {
		t.Fatalf("bad fixture: %d", len(maxPath))
	}

	tests := []struct {
		rel string
		ok  bool
	}{
		{"a", true},
		{"a/b/c.txt", true},
		{"with space/and\nnewline", true},
		{"\xff\xfe/latin1-\xe9", true},
		{`back\slash`, true},
		{"..a/b..", true},
		{".hidden/...", true},
		{long, true},
		{maxPath, true},
		{".makuo-0123456789ABCDEF.tmp", true}, // upper case: not the pattern
		{".makuo-0123456789abcdef.tmpx", true},
		{".makuo-0123456789abcde.tmp", true},

		{"", false},
		{"/", false},
		{"/etc/passwd", false},
		{"..", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/..", false},
		{".", false},
		{"./a", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{"a\x00b", false},
		{long + "n", false},
		{"a/" + long + "n", false},
		{maxPath + "x", false},
		{".makuo-0123456789abcdef.tmp", false},
		{"d/.makuo-0123456789abcdef.tmp", false},
		{".makuo-0123456789abcdef.tmp/f", false},
	}
	for _, tt := range tests {
		err := CheckPath(tt.rel)
		if tt.ok && err != nil {
			t.Errorf("CheckPath(%.40q) = %v, want nil", tt.rel, err)
		}
		if !tt.ok && !errors.Is(err, ErrBadPath) {
			t.Errorf("CheckPath(%.40q) = %v, want ErrBadPath", tt.rel, err)
		}
	}
}

func TestTempName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := newTempName()
		if !IsTempName(n) {
			t.Fatalf("IsTempName(%q) = false for a generated name", n)
		}
		if len(n) != 27 {
			t.Fatalf("len(%q) = %d, want 27", n, len(n))
		}
		if seen[n] {
			t.Fatalf("duplicate temp name %q", n)
		}
		seen[n] = true
	}
	for _, n := range []string{"", ".makuo-.tmp", "makuo-0123456789abcdef.tmp", ".makuo-0123456789abcdeg.tmp"} {
		if IsTempName(n) {
			t.Errorf("IsTempName(%q) = true", n)
		}
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "a/../b", "/a", "a//b", "a/", ".", "\xff/\n", ".makuo-0123456789abcdef.tmp", "a\x00"} {
		f.Add(s)
	}
	const base = "/srv/base"
	f.Fuzz(func(t *testing.T, rel string) {
		err := CheckPath(rel)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("CheckPath(%q) = %v, not ErrBadPath", rel, err)
			}
			return
		}
		j := filepath.Join(base, rel)
		if !strings.HasPrefix(j, base+"/") {
			t.Fatalf("accepted %q joins to %q, outside %s", rel, j, base)
		}
		if !filepath.IsLocal(rel) || path.Clean(rel) != rel {
			t.Fatalf("accepted %q is not local and clean", rel)
		}
		if j != base+"/"+rel {
			t.Fatalf("accepted %q is rewritten by Join to %q", rel, j)
		}
	})
}
