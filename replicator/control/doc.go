// Package control is the API between msync and the local makuosan: HTTP
// with JSON bodies over a unix socket or a TCP listener, so that framing,
// status codes and streaming come for free and `curl --unix-socket` works
// for debugging. It holds the request and response types, the Client used
// by msync, and the Server side, which depends only on the small Backend
// interface that the replicator implements; msync therefore links neither
// the transport nor the crypto code.
//
// Targets are written as in the original msync: "unix:/path/to/socket" or
// "tcp:host:port". A TCP listener started with a password requires every
// request to carry it (Authorization: Bearer); the unix socket is guarded
// by its file mode instead.
//
// The API has no browser client, so the server refuses what a web page
// could make a browser on the host send (403 or 415, before the password
// check): a request with an Origin header or a Sec-Fetch-Site other than
// "none"; a body that is not Content-Type application/json (cross-site
// forms post the other types without a CORS preflight); and on TCP a Host
// that is not a loopback name or address, nor the listener's own address,
// which is what DNS rebinding sends. The Client always sends Host localhost
// and a JSON Content-Type.
//
// Endpoints (version 1):
//
//	GET /v1/members   []Member, this daemon included (Self set)
//	GET /v1/status    Status
//	POST /v1/push     PushRequest in, a stream of Event out (NDJSON),
//	                  ending with a summary or an error event
//
// Errors are answered with a non-2xx status and {"error": "..."}.
package control
