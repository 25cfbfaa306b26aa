package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/makuo/makuo/replicator/transport"
)

// TestGenKey: --gen-key writes a key -k accepts, mode 0600, prints no
// part of it, and refuses (exit 2) to replace an existing file.
func TestGenKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--gen-key", path}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) != 2*genKeySize || strings.Contains(out.String()+errOut.String(), secret[:16]) || out.Len() != 0 {
		t.Fatalf("key %d chars; stdout %q, stderr %q", len(secret), out.String(), errOut.String())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode().Perm(), err)
	}
	if _, err := transport.ReadKey(path); err != nil {
		t.Fatalf("-k would refuse the key: %v", err)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"--gen-key", path}, nil, &out, &errOut); code != exitConfig || !strings.Contains(errOut.String(), "exists; not overwriting") {
		t.Fatalf("second --gen-key: exit %d, %s", code, errOut.String())
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, b) {
		t.Fatal("the key was replaced")
	}
	other := filepath.Join(t.TempDir(), "key")
	if code := run(context.Background(), []string{"--gen-key", other}, nil, &out, &errOut); code != exitOK {
		t.Fatal(errOut.String())
	}
	if b2, _ := os.ReadFile(other); bytes.Equal(b2, b) {
		t.Fatal("two --gen-key runs wrote the same key")
	}
}

// TestSecretWarnings: a key or password file its group or others may
// read is named in a start-up warning; one of mode 0600 is not. Two -k
// start a sealed daemon that accepts one old key.
func TestSecretWarnings(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("a group key of at least sixteen bytes "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private, groupRead, worldRead := write("private", 0o600), write("group", 0o640), write("world", 0o604)
	for _, tt := range []struct {
		name  string
		args  []string
		warns []string
	}{
		{"private key", []string{"-k", private}, nil},
		{"group-readable key", []string{"-k", groupRead}, []string{"key file " + groupRead + " is readable by its group or others (mode -rw-r-----)"}},
		{"two keys, the old world-readable", []string{"-k", private, "-k", worldRead}, []string{"key file " + worldRead + " is readable"}},
		{"world-readable password", []string{"-k", private, "-K", worldRead}, []string{"password file " + worldRead + " is readable"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(daemonArgs(t, t.TempDir()), "--state-dir", t.TempDir())
			p := startInProcess(t, append(args, tt.args...))
			log := p.stop(t)
			warnings := 0
			for line := range strings.Lines(log) {
				if strings.Contains(line, "is readable by its group or others") {
					warnings++
				}
			}
			if warnings != len(tt.warns) {
				t.Errorf("%d warnings, want %d:\n%s", warnings, len(tt.warns), log)
			}
			for _, w := range tt.warns {
				if !strings.Contains(log, "level=WARN msg=\""+w) {
					t.Errorf("no warning %q:\n%s", w, log)
				}
			}
			if got := logField(t, log, "makuosan starting", "sealed"); got != "true" {
				t.Errorf("sealed=%s", got)
			}
			if n := strings.Count(strings.Join(tt.args, " "), "-k "); logField(t, log, "makuosan starting", "old_keys") != map[int]string{1: "0", 2: "1"}[n] {
				t.Errorf("old_keys=%s with %d -k", logField(t, log, "makuosan starting", "old_keys"), n)
			}
		})
	}
}
