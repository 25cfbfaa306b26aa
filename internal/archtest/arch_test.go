package archtest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/makuo/makuo"

type pkg struct {
	ImportPath string
	Dir        string
	Doc        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.HasPrefix(p.ImportPath, module+"/cmd/") {
			if p.Doc == "" {
				t.Errorf("%s: no command doc comment", p.ImportPath)
			}
			continue
		}
		hasDoc := false
		for _, f := range p.GoFiles {
			hasDoc = hasDoc || f == "doc.go"
		}
		if !hasDoc || p.Doc == "" {
			t.Errorf("%s: needs a doc.go with the package comment", p.ImportPath)
		}
	}
}

func TestDependencyDirection(t *testing.T) {
	// forbidden[pkg] lists import prefixes pkg must not depend on, directly
	// or indirectly.
	forbidden := map[string][]string{
		module + "/cmd/msync": {module + "/replicator/transport", module + "/replicator/membership",
			module + "/watcher", "golang.org/x/crypto", "github.com/fsnotify/fsnotify", "github.com/prometheus/"},
		module + "/watcher":              {module + "/replicator", module + "/metrics"},
		module + "/exclude":              {module + "/"},
		module + "/metrics":              {module + "/"},
		module + "/replicator/wire":      {module + "/"},
		module + "/replicator/chunk":     {module + "/"},
		module + "/replicator/stage":     {module + "/"},
		module + "/replicator/control":   {module + "/"},
		module + "/replicator/transport": {module + "/replicator/membership", module + "/replicator/control"},
		// The protocol core knows messages, not sockets, files or clocks.
		module + "/replicator/session": {module + "/replicator/transport", module + "/replicator/stage",
			module + "/replicator/tree", module + "/metrics", "golang.org/x/sys"},
		module + "/replicator/apply":  {module + "/replicator/transport", module + "/replicator/membership", module + "/replicator/control"},
		module + "/replicator/source": {module + "/replicator/transport", module + "/replicator/membership", module + "/replicator/control", module + "/replicator/session", module + "/metrics"},
	}
	for _, p := range listPackages(t) {
		rules, ok := forbidden[p.ImportPath]
		if !ok {
			continue
		}
		for _, d := range p.Deps {
			for _, bad := range rules {
				if (d == bad || strings.HasPrefix(d, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(d, bad))) && d != p.ImportPath {
					t.Errorf("%s depends on %s", p.ImportPath, d)
				}
			}
		}
	}
	for _, p := range listPackages(t) {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/cmd/") {
				t.Errorf("%s imports command %s", p.ImportPath, d)
			}
		}
	}
}

// TestSessionWithoutIO: the protocol core imports the standard library's
// pure packages and package wire only, and never reads the clock or
// sleeps: time comes in as an argument.
func TestSessionWithoutIO(t *testing.T) {
	allowed := map[string]bool{"errors": true, "fmt": true, "math": true, "math/bits": true, "slices": true,
		"sort": true, "sync/atomic": true, "time": true, module + "/replicator/wire": true}
	for _, p := range listPackages(t) {
		if p.ImportPath != module+"/replicator/session" {
			continue
		}
		for _, imp := range p.Imports {
			if !allowed[imp] {
				t.Errorf("session imports %s", imp)
			}
		}
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []string{"time.Now", "time.Since", "time.Until", "time.Sleep", "time.After", "time.NewTimer", "time.NewTicker", "time.Tick"} {
				if strings.Contains(string(b), call+"(") {
					t.Errorf("session/%s calls %s: time must come in as an argument", f, call)
				}
			}
		}
	}
}

// TestSizes: no file over 500 lines and no function over 100 lines under
// replicator/ (tests excepted): one role per file, functions one can read
// at once.
func TestSizes(t *testing.T) {
	for _, p := range listPackages(t) {
		if !strings.HasPrefix(p.ImportPath, module+"/replicator") {
			continue
		}
		for _, f := range p.GoFiles {
			name := filepath.Join(p.Dir, f)
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "\n"); n > 500 {
				t.Errorf("%s: %d lines", name, n)
			}
			fset := token.NewFileSet()
			af, err := parser.ParseFile(fset, name, b, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Body != nil {
					if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > 100 {
						t.Errorf("%s: func %s is %d lines", name, fn.Name.Name, n)
					}
				}
			}
		}
	}
}
