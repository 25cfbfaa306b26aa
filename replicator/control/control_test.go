package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeBackend struct{}

func (fakeBackend) Members(context.Context) ([]Member, error) {
	return []Member{{ID: "01", Hostname: "a", Self: true}, {ID: "02", Hostname: "b"}}, nil
}

func (fakeBackend) Status(context.Context) (Status, error) {
	return Status{}, errors.New("status broke")
}

func serve(t *testing.T, network, addr, password string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewHandler(fakeBackend{}, password)}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return network + ":" + ln.Addr().String()
}

func TestClientServer(t *testing.T) {
	ctx := context.Background()
	unixTarget := serve(t, "unix", filepath.Join(t.TempDir(), "s"), "")
	tcpTarget := serve(t, "tcp", "127.0.0.1:0", "secret")

	tests := []struct {
		name, target, password, wantErr string
	}{
		{"unix", unixTarget, "", ""},
		{"tcp with password", tcpTarget, "secret", ""},
		{"tcp without password", tcpTarget, "", "password required"},
		{"tcp wrong password", tcpTarget, "nope", "password required"},
		{"nobody listening", "unix:" + filepath.Join(t.TempDir(), "none"), "", "connect to makuosan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.target, tt.password)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := c.Members(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 2 || ms[0].Hostname != "a" || !ms[0].Self {
				t.Fatalf("members = %+v", ms)
			}
			if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "status broke") {
				t.Fatalf("status error = %v", err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, network, addr string
		ok                bool
	}{
		{"unix:/run/m.sock", "unix", "/run/m.sock", true},
		{"tcp:127.0.0.1:5000", "tcp", "127.0.0.1:5000", true},
		{"tcp:[::1]:5000", "tcp", "[::1]:5000", true},
		{"tcp:localhost", "", "", false},
		{"udp:1.2.3.4:5", "", "", false},
		{"unix:", "", "", false},
		{"/run/m.sock", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		n, a, err := ParseTarget(tt.in)
		if (err == nil) != tt.ok || n != tt.network || a != tt.addr {
			t.Errorf("ParseTarget(%q) = %q, %q, %v", tt.in, n, a, err)
		}
		if err != nil && !errors.Is(err, ErrTarget) {
			t.Errorf("ParseTarget(%q) error %v is not ErrTarget", tt.in, err)
		}
	}
}
