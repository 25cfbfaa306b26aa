package e2e

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// TestStartupErrors: bad configuration exits 2 with one clear line.
func TestStartupErrors(t *testing.T) {
	lab := NewLab(t, 1)
	h := lab.Hosts[0]
	h.Start()
	eventually(t, 3*time.Second, func() bool { return len(h.Members()) == 1 }, "first daemon not up")

	bin := filepath.Join(binDir, "makuosan")
	state := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no base", []string{"--state-dir", state}, "base directory not set (-b DIR)"},
		{"missing base", []string{"-b", "/nonexistent/dir", "--state-dir", state}, "no such file or directory"},
		{"base is a file", []string{"-b", "/etc/hostname", "--state-dir", state}, "is not a directory"},
		{"invalid group", []string{"-b", h.Base, "--state-dir", state, "-m", "10.1.2.3"}, "10.1.2.3 is not a multicast address"},
		{"unparsable group", []string{"-b", h.Base, "--state-dir", state, "-m", "nope"}, "is not an IP address"},
		{"port in use", []string{"-b", h.Base, "--state-dir", state, "-U", filepath.Join(state, "sock"), "--metrics-listen", h.Addr + ":9758"}, "address already in use"},
		{"bad port", []string{"-b", h.Base, "--state-dir", state, "-p", "70000"}, "out of range"},
		{"unknown flag", []string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{"bad interface", []string{"-b", h.Base, "--state-dir", state, "-i", "nosuch0"}, "nosuch0"},
		{"missing key file", []string{"-b", h.Base, "--state-dir", state, "-k", "/nonexistent/key"}, "-k: read key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// -n: in the foreground, where the error is printed (without it
			// the daemon detaches, and only its starting errors come back).
			_, stderr, code := h.Run(ctx, bin, append([]string{"-n"}, tt.args...)...)
			checkStartupError(t, stderr, code, tt.want)
		})
	}
}

// TestHostileDatagrams replays the wire fuzz corpus, random bytes and
// truncated or mangled datagrams at the group: every member keeps running,
// keeps its membership, and counts the drops.
func TestHostileDatagrams(t *testing.T) {
	lab := NewLab(t, 3)
	lab.StartAll()
	h := lab.Hosts
	all := []string{"h1", "h2", "h3"}
	eventually(t, 3*time.Second, func() bool { return allSee(h, all) }, "members did not join")
	before := make([]uint64, len(h))
	for i, host := range h {
		before[i] = dropped(t, host)
	}

	conn := h[0].DialGroup()
	sent := 0
	send := func(b []byte) {
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("send: %v", err)
		}
		sent++
		if sent%200 == 0 {
			time.Sleep(5 * time.Millisecond) // stay under the receive buffers
		}
	}
	// Every datagram below is one the daemons must refuse.
	valid := wire.Append(nil, wire.Header{Node: 99, Incarnation: 1, Seq: 1},
		&wire.Heartbeat{Roles: wire.RoleSend, Interval: time.Second, Hostname: "intruder", Version: "x"})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, rng.IntN(1500))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if len(b) >= 2 && b[0] == 'M' && b[1] == 'k' {
			b[0] = 0
		}
		send(b)
	}
	for n := range len(valid) - 1 { // every truncation of a valid heartbeat but the empty one
		if n == 0 {
			continue
		}
		send(valid[:n])
	}
	bad := append([]byte(nil), valid...)
	bad[2] = 99 // future version
	send(bad)
	bad = append([]byte(nil), valid...)
	bad[3] = 250 // unknown type
	send(bad)
	for _, c := range fuzzCorpus(t) {
		if _, _, err := wire.Parse(c); err == nil {
			continue // a valid datagram in the corpus is not hostile
		}
		send(c)
	}

	eventually(t, 5*time.Second, func() bool {
		for i, host := range h {
			if dropped(t, host)-before[i] < uint64(sent) {
				return false
			}
		}
		return true
	}, "not every hostile datagram was counted as dropped (sent %d)", sent)
	for _, host := range h {
		if !host.Running() {
			t.Fatalf("%s died:\n%s", host.Name, host.Log())
		}
		if strings.Contains(host.Log(), "panic") {
			t.Fatalf("%s logged a panic:\n%s", host.Name, host.Log())
		}
	}
	if !allSee(h, all) {
		t.Fatalf("membership disturbed: h1 sees %v", h[0].Hostnames())
	}
	t.Logf("sent %d hostile datagrams; every member counted them all as dropped and kept running", sent)
	h[1].Signal(syscall.SIGTERM)
	if code := h[1].Wait(5 * time.Second); code != 0 {
		t.Fatalf("h2 exit %d after SIGTERM", code)
	}
}

func dropped(t *testing.T, h *Host) uint64 {
	t.Helper()
	st, err := h.Status()
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	var n uint64
	for k, v := range st.Counters {
		if strings.HasPrefix(k, "dropped_") {
			n += v
		}
	}
	return n
}

// fuzzCorpus reads the wire decoder's seed corpus ("go test fuzz v1" files
// holding one []byte each).
func fuzzCorpus(t *testing.T) [][]byte {
	t.Helper()
	dir := filepath.Join("..", "replicator", "wire", "testdata", "fuzz", "FuzzParse")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("fuzz corpus %s: %v (%d files)", dir, err, len(entries))
	}
	var out [][]byte
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if s, ok := strings.CutPrefix(line, "[]byte("); ok {
				v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				out = append(out, []byte(v))
			}
		}
		f.Close()
	}
	return out
}

// checkStartupError checks that a daemon refused to start as it should:
// exit status 2 and one line saying what is wrong (log lines may come
// before it: the start-up line says what the daemon was about to open),
// and no crash output.
func checkStartupError(t *testing.T, stderr string, code int, want string) {
	t.Helper()
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	var errs []string
	for line := range strings.SplitSeq(stderr, "\n") {
		if strings.HasPrefix(line, "makuosan: ") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], want) {
		t.Fatalf("error lines %q, want one containing %q", errs, want)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Fatalf("crash output:\n%s", stderr)
	}
}
