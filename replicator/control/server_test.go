package control

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// pushBackend is a fakeBackend that can push; it counts the pushes that
// reached it.
type pushBackend struct {
	fakeBackend
	pushes atomic.Int32
}

func (b *pushBackend) Push(_ context.Context, req PushRequest, emit func(Event)) error {
	b.pushes.Add(1)
	emit(Event{Type: EventPath, Path: strings.Join(req.Paths, ","), Action: "send", Members: []string{"b"}})
	emit(Event{Type: EventSummary, Summary: &Summary{Members: []string{"b"}, Entries: len(req.Paths), Changed: len(req.Paths)}})
	return nil
}

const pushJSON = `{"paths":["index.html"]}`

// TestBrowserRequestsRefused: what a web page in a browser on the host can
// make the browser send to 127.0.0.1 is refused with a JSON error, and no
// push reaches the backend.
func TestBrowserRequestsRefused(t *testing.T) {
	b := &pushBackend{}
	srv := httptest.NewServer(NewHandler(b, ""))
	t.Cleanup(srv.Close)

	tests := []struct {
		name, method, path, host string
		header                   map[string]string
		want                     int
	}{
		// A cross-site <form> or fetch(mode: "no-cors") posts these bodies
		// without a preflight; the body itself may well be JSON.
		{"form post", "POST", "/v1/push", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"text/plain post", "POST", "/v1/push", "", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, 415},
		{"multipart post", "POST", "/v1/push", "", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 415},
		{"post without content type", "POST", "/v1/push", "", nil, 415},
		{"json post from a page", "POST", "/v1/push", "", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, 403},
		{"form post from a page", "POST", "/v1/push", "", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403},
		{"get from a page", "GET", "/v1/members", "", map[string]string{"Origin": "http://evil.example"}, 403},
		{"get from a sandboxed page", "GET", "/v1/status", "", map[string]string{"Origin": "null"}, 403},
		{"cross-site fetch metadata", "GET", "/v1/members", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch metadata", "POST", "/v1/push", "", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, 403},
		// DNS rebinding: evil.example now resolves to 127.0.0.1 and the
		// page is same-origin with the daemon.
		{"rebinding get", "GET", "/v1/members", "evil.example", nil, 403},
		{"rebinding get with port", "GET", "/v1/status", "evil.example:5000", nil, 403},
		{"rebinding json post", "POST", "/v1/push", "evil.example:5000", map[string]string{"Content-Type": "application/json"}, 403},
		{"loopback-looking name", "GET", "/v1/members", "127.0.0.1.evil.example", nil, 403},
		{"localhost-looking name", "GET", "/v1/members", "localhost.evil.example", nil, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(pushJSON))
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == "GET" {
				req.Body, req.ContentLength = nil, 0
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb errorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
				t.Fatalf("status %d, body is not a JSON error: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.want || eb.Error == "" {
				t.Fatalf("status %d, error %q; want %d with an error", resp.StatusCode, eb.Error, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	if n := b.pushes.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the backend's Push", n)
	}
}

// TestLocalRequestsPass: curl-like requests addressed to a loopback name or
// address pass, as does a page the user typed in the address bar.
func TestLocalRequestsPass(t *testing.T) {
	b := &pushBackend{}
	srv := httptest.NewServer(NewHandler(b, ""))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	tests := []struct {
		name, method, path, host string
		header                   map[string]string
	}{
		{"ip", "GET", "/v1/members", "", nil},
		{"localhost", "GET", "/v1/members", "localhost:" + port, nil},
		{"LOCALHOST.", "GET", "/v1/members", "LOCALHOST.:" + port, nil},
		{"sub.localhost", "GET", "/v1/members", "makuo.localhost", nil},
		{"other loopback address", "GET", "/v1/members", "127.0.0.2:" + port, nil},
		{"ipv6 loopback", "GET", "/v1/members", "[::1]:" + port, nil},
		{"typed in the address bar", "GET", "/v1/members", "", map[string]string{"Sec-Fetch-Site": "none"}},
		{"json push", "POST", "/v1/push", "", map[string]string{"Content-Type": "application/json"}},
		{"json push with charset", "POST", "/v1/push", "localhost", map[string]string{"Content-Type": "Application/JSON; charset=utf-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == "POST" {
				req, _ = http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(pushJSON))
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
		})
	}
	if n := b.pushes.Load(); n != 2 {
		t.Fatalf("backend saw %d pushes, want 2", n)
	}
}

// TestHostOfListenerAddress: on a listener bound to a non-loopback address
// (-l 10.0.0.5), that address is a valid Host, a name or another address
// is not.
func TestHostOfListenerAddress(t *testing.T) {
	h := NewHandler(&pushBackend{}, "")
	local := &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 5000}
	for host, want := range map[string]int{
		"10.0.0.5:5000":   200,
		"10.0.0.5":        200,
		"localhost:5000":  200,
		"10.0.0.6:5000":   403,
		"web1:5000":       403,
		"evil.example:80": 403,
	} {
		req := httptest.NewRequest("GET", "/v1/members", nil)
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q on a listener at %v: status %d, want %d (%s)", host, local, rec.Code, want, rec.Body)
		}
	}
}

// TestUnixSocketHostNotChecked: a browser cannot reach a unix socket, so
// any Host passes there (curl --unix-socket sends localhost; others send
// what they like); the Origin and Content-Type checks still apply.
func TestUnixSocketHostNotChecked(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewHandler(&pushBackend{}, "")}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	for _, tt := range []struct {
		host, origin, ctype string
		want                int
	}{
		{"evil.example", "", "application/json", 200},
		{"makuosan", "", "application/json", 200},
		{"localhost", "http://evil.example", "application/json", 403},
		{"localhost", "", "text/plain", 415},
	} {
		req, _ := http.NewRequest("POST", "http://x/v1/push", strings.NewReader(pushJSON))
		req.Host = tt.host
		req.Header.Set("Content-Type", tt.ctype)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("unix socket, Host %q Origin %q Content-Type %q: status %d, want %d", tt.host, tt.origin, tt.ctype, resp.StatusCode, tt.want)
		}
	}
}

// TestClientPushPasses: msync's requests (members, status, push) pass the
// guard over TCP, with and without a password, and over a unix socket.
func TestClientPushPasses(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, network, addr, password string
	}{
		{"tcp", "tcp", "127.0.0.1:0", ""},
		{"tcp with password", "tcp", "127.0.0.1:0", "secret"},
		{"unix", "unix", filepath.Join(t.TempDir(), "s"), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &pushBackend{}
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: NewHandler(b, tt.password)}
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close(); <-done })
			c, err := NewClient(tt.network+":"+ln.Addr().String(), tt.password)
			if err != nil {
				t.Fatal(err)
			}
			if ms, err := c.Members(ctx); err != nil || len(ms) != 2 {
				t.Fatalf("members = %v, %v", ms, err)
			}
			var events []Event
			sum, err := c.Push(ctx, PushRequest{Paths: []string{"index.html"}}, func(ev Event) { events = append(events, ev) })
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			if sum.Changed != 1 || len(events) != 1 || events[0].Path != "index.html" || b.pushes.Load() != 1 {
				t.Fatalf("push: summary %+v, events %+v, backend pushes %d", sum, events, b.pushes.Load())
			}
		})
	}
}

// TestProbes: /healthz answers 200 whatever the node does; /readyz 503
// until the node is ready, 200 after; neither accepts a write.
func TestProbes(t *testing.T) {
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/healthz", Healthz())
	mux.Handle("/readyz", Readyz(ready.Load))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusMethodNotAllowed && resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", method, path, resp.Header.Get("Cache-Control"))
		}
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		ready        bool
		method, path string
		code         int
		body         string
	}{
		{false, "GET", "/healthz", 200, "ok\n"},
		{false, "HEAD", "/healthz", 200, ""},
		{false, "GET", "/readyz", 503, "starting\n"},
		{true, "GET", "/readyz", 200, "ready\n"},
		{true, "HEAD", "/readyz", 200, ""},
		{true, "GET", "/healthz", 200, "ok\n"},
		{true, "POST", "/readyz", 405, "method not allowed\n"},
		{true, "DELETE", "/healthz", 405, "method not allowed\n"},
	} {
		ready.Store(tt.ready)
		if code, body := get(tt.method, tt.path); code != tt.code || body != tt.body {
			t.Errorf("ready %v: %s %s = %d %q, want %d %q", tt.ready, tt.method, tt.path, code, body, tt.code, tt.body)
		}
	}
}
