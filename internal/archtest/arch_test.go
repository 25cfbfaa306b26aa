package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
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
	}
	for _, p := range listPackages(t) {
		rules, ok := forbidden[p.ImportPath]
		if !ok {
			continue
		}
		for _, d := range p.Deps {
			for _, bad := range rules {
				if strings.HasPrefix(d, bad) && d != p.ImportPath {
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
