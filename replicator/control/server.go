package control

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// NewHandler returns the API handler over b; the push endpoint is served
// when b also implements Pusher. A non-empty password is required on every
// request.
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
	if password == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(password)) != 1 {
			writeError(w, http.StatusUnauthorized, "password required or wrong (msync -K FILE)")
			return
		}
		mux.ServeHTTP(w, r)
	})
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
