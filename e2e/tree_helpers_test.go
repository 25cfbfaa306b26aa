package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Helpers shared by the transfer tests (options_test.go, hostile_test.go):
// build and compare directory trees on the lab's shared filesystem, and
// read msync's per-path output.

// writeTreeFiles creates files below base, path → content, with parent
// directories. A path ending in "/" is made a directory (content ignored).
func writeTreeFiles(t *testing.T, base string, files map[string]string) {
	t.Helper()
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(base, filepath.FromSlash(rel))
		if strings.HasSuffix(rel, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[rel]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// removeAll removes paths (relative to base) and everything below them.
func removePaths(t *testing.T, base string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if err := os.RemoveAll(filepath.Join(base, filepath.FromSlash(rel))); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot describes every entry below dir, keyed by slash path relative to
// dir: "dir" for a directory, "link -> TARGET" for a symbolic link, and
// "file MODE MTIME CONTENT" for a regular file (mode and mtime are
// replicated, so two copies of one file describe the same). Directories'
// times are left out: filling a directory changes them.
func describeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			out[rel] = "dir"
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case m.IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %q", m.Perm(), fi.ModTime().UnixNano(), b)
		default:
			out[rel] = m.String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// treeDiff lists how got differs from want, one line per path; empty when
// they are equal.
func describeDiff(want, got map[string]string) []string {
	var diffs []string
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s (want %s)", p, want[p]))
		case g != want[p]:
			diffs = append(diffs, fmt.Sprintf("differs %s: got %s, want %s", p, g, want[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra   %s (%s)", p, got[p]))
		}
	}
	return diffs
}

// checkTree reports (without stopping the test) every difference between
// h's base directory and want.
func expectTree(t *testing.T, h *Host, want map[string]string, when string) {
	t.Helper()
	if d := describeDiff(want, describeTree(t, h.Base)); len(d) > 0 {
		t.Errorf("%s: %s's tree is wrong:\n  %s", when, h.Name, strings.Join(d, "\n  "))
	}
}

// subtree returns the entries of snap at or below one of the given paths.
func subtreeOf(snap map[string]string, roots ...string) map[string]string {
	out := map[string]string{}
	for p, v := range snap {
		for _, r := range roots {
			if p == r || strings.HasPrefix(p, r+"/") {
				out[p] = v
			}
		}
	}
	return out
}

// without returns a copy of snap minus the given paths.
func withoutPaths(snap map[string]string, paths ...string) map[string]string {
	out := maps.Clone(snap)
	for _, p := range paths {
		delete(out, p)
	}
	return out
}

// exists reports whether p exists (without following a final symlink).
func lexists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// msyncOutput is msync's output for a push: the per-path lines as
// "ACTION PATH" → comma-separated members (sorted), FAILED lines, and the
// summary line.
type msyncOutput struct {
	paths   map[string]string
	failed  []string
	summary string
}

// summaryRE matches msync's summary line ("1 member, 2 paths: ...").
var summaryRE = regexp.MustCompile(`^\d+ members?, \d+ paths?: `)

// parsePush reads msync's push output (paths without spaces).
func parseMsyncOutput(t *testing.T, stdout string) msyncOutput {
	t.Helper()
	out := msyncOutput{paths: map[string]string{}}
	for line := range strings.Lines(stdout) {
		line = strings.TrimRight(line, "\n")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "FAILED":
			out.failed = append(out.failed, line)
		case summaryRE.MatchString(line):
			out.summary = line
		case len(f) == 2 || len(f) == 3:
			members := ""
			if len(f) == 3 {
				ms := strings.Split(f[2], ",")
				slices.Sort(ms)
				members = strings.Join(ms, ",")
			}
			out.paths[f[0]+" "+f[1]] = members
		default:
			t.Errorf("unexpected msync output line %q", line)
		}
	}
	return out
}

// msyncExpect runs msync on h and fails the test unless it exits with code.
func runMsync(t *testing.T, h *Host, code int, args ...string) (stdout, stderr string) {
	t.Helper()
	start := time.Now()
	stdout, stderr, got := h.Msync(args...)
	t.Logf("%s$ msync %s  (exit %d, %v)\n%s%s", h.Name, strings.Join(args, " "), got,
		time.Since(start).Round(time.Millisecond), stdout, stderr)
	if got != code {
		t.Fatalf("msync %s on %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s\n%s log:\n%s",
			strings.Join(args, " "), h.Name, got, code, stdout, stderr, h.Name, h.Log())
	}
	return stdout, stderr
}

// wantPaths checks that the per-path lines are exactly want ("ACTION PATH"
// → sorted members).
func expectPathLines(t *testing.T, got msyncOutput, want map[string]string) {
	t.Helper()
	if !maps.Equal(got.paths, want) {
		t.Errorf("msync path lines:\n  got  %v\n  want %v", got.paths, want)
	}
	if len(got.failed) > 0 {
		t.Errorf("msync reported failures:\n  %s", strings.Join(got.failed, "\n  "))
	}
}

// startedLab builds a lab of n hosts, starts each daemon with its flags
// (flags[i] for host i+1, none past the end), and waits until every host
// lists every member.
func startLab(t *testing.T, n int, flags ...[]string) *Lab {
	t.Helper()
	return startLabOn(t, NewLab(t, n), flags...)
}

// startLabOn is startLab on a lab already built (unicast mode, say).
func startLabOn(t *testing.T, lab *Lab, flags ...[]string) *Lab {
	t.Helper()
	var names []string
	for i, h := range lab.Hosts {
		var extra []string
		if i < len(flags) {
			extra = flags[i]
		}
		h.Start(extra...)
		names = append(names, h.Name)
	}
	eventually(t, 5*time.Second, func() bool { return allSee(lab.Hosts, names) }, "members did not join")
	return lab
}

// inNetns runs f in h's network namespace (see Host.InNamespace).
func inNetns(h *Host, f func() error) error { return h.InNamespace(f) }

// dialGroup is Host.DialGroup.
func dialGroup(t *testing.T, h *Host) *net.UDPConn {
	t.Helper()
	return h.DialGroup()
}

// expectSameTree checks that every host of rcv holds src's tree, as it
// is now.
func expectSameTree(t *testing.T, src *Host, rcv []*Host, when string) {
	t.Helper()
	want := describeTree(t, src.Base)
	for _, h := range rcv {
		expectTree(t, h, want, when)
	}
}
