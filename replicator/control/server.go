package control

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// NewHandler returns the API handler over b; the push endpoint is served
// when b also implements Pusher. A non-empty password is required on every
// request. Whatever the password, the handler refuses what only a web
// browser sends (see the package doc): the API has no browser client, and
// a page open in a browser on the host must not be able to drive it.
func NewHandler(b Backend, password string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		ms, err := b.Members(r.Context())
		reply(w, ms, err)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.Status(r.Context())
		reply(w, st, err)
	})
	if p, ok := b.(Pusher); ok {
		mux.HandleFunc("POST /v1/push", handlePush(p))
	}
	var h http.Handler = mux
	if password != "" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(password)) != 1 {
				writeError(w, http.StatusUnauthorized, "password required or wrong (msync -K FILE)")
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	return browserGuard(h)
}

// Healthz is a liveness probe (GET or HEAD /healthz on makuosan's metrics
// listener): 200 "ok" for as long as the process serves HTTP at all.
func Healthz() http.Handler {
	return probe(func() bool { return true }, "ok", "")
}

// Readyz is a readiness probe (GET or HEAD /readyz): 503 "starting" until
// ready reports true, 200 "ready" from then on. makuosan passes
// Node.Ready: the multicast socket is up and the first scan of the base
// directory finished, so the member announces a meaningful tree root.
func Readyz(ready func() bool) http.Handler {
	return probe(ready, "ready", "starting")
}

// probe answers a health check with a one-word plain text body, never
// cached; any method but GET and HEAD gets 405.
func probe(ok func() bool, yes, no string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, no)
			return
		}
		fmt.Fprintln(w, yes)
	})
}

// browserGuard answers 403 or 415 to a request that a browser could have
// been made to send, before authentication:
//
//   - an Origin header, or a Sec-Fetch-Site other than "none" (a page made
//     the request; "none" is an address typed by the user): neither msync
//     nor curl sends them, and browsers add them to cross-site requests;
//   - a body (any method but GET and HEAD) that is not application/json: a
//     cross-site form or fetch may post text/plain, form or multipart
//     bodies without a CORS preflight, but not JSON;
//   - on TCP, a Host that is neither a loopback name (localhost,
//     *.localhost) nor a loopback address nor the address the request
//     arrived on: DNS rebinding points an attacker's name at 127.0.0.1, and
//     the browser then sends that name. An address cannot be rebound, and
//     browsers resolve localhost themselves. A unix socket is out of a
//     browser's reach, so its Host is not checked.
func browserGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, msg := refuseBrowser(r); code != 0 {
			writeError(w, code, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func refuseBrowser(r *http.Request) (code int, msg string) {
	if o := r.Header.Get("Origin"); o != "" {
		return http.StatusForbidden, fmt.Sprintf("request made by a web page (Origin %q) refused: the control API is for msync", o)
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "none" {
		return http.StatusForbidden, fmt.Sprintf("request made by a web page (Sec-Fetch-Site %q) refused: the control API is for msync", s)
	}
	if !hostAllowed(r) {
		return http.StatusForbidden, fmt.Sprintf("Host %q refused: not a loopback name or address, nor the address of this listener (a guard against DNS rebinding)", r.Host)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q refused: send application/json", ct)
		}
	}
	return 0, ""
}

// hostAllowed applies the Host rule of browserGuard.
func hostAllowed(r *http.Request) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if local != nil && local.Network() == "unix" {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.WithZone("").Unmap()
	if ip.IsLoopback() {
		return true
	}
	if ta, ok := local.(*net.TCPAddr); ok {
		lip, ok := netip.AddrFromSlice(ta.IP)
		return ok && lip.Unmap() == ip
	}
	return false
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}
