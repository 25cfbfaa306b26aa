package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrTarget reports a malformed target string.
var ErrTarget = errors.New("control: target must be unix:PATH or tcp:HOST:PORT")

// ParseTarget splits "unix:PATH" or "tcp:HOST:PORT" into a network and an
// address for net.Dial.
func ParseTarget(target string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(target, ":")
	if !ok || addr == "" {
		return "", "", fmt.Errorf("%w: %q", ErrTarget, target)
	}
	switch network {
	case "unix":
		return network, addr, nil
	case "tcp":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("%w: %q: %v", ErrTarget, target, err)
		}
		return network, addr, nil
	}
	return "", "", fmt.Errorf("%w: %q", ErrTarget, target)
}

// Client talks to one daemon.
type Client struct {
	target   string
	password string
	http     *http.Client
}

// NewClient returns a client for target; password is sent when non-empty.
func NewClient(target, password string) (*Client, error) {
	network, addr, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	return &Client{target: target, password: password, http: &http.Client{Transport: tr}}, nil
}

// Members lists the cluster members as the daemon sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	return ms, c.get(ctx, "/v1/members", &ms)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.get(ctx, "/v1/status", &st)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("makuosan at %s: bad response: %w", c.target, err)
	}
	return nil
}

// newRequest builds a request for path. The Host is always localhost,
// whatever the target: the daemon's rebinding guard accepts it on every
// listener, so a target given by name (tcp:web1:5000) works too; the dialer
// alone decides where the request goes. A body is JSON, and says so: the
// daemon refuses any other body.
func newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do sends req with the password and turns transport failures and error
// statuses into errors that name the daemon.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	if c.password != "" {
		req.Header.Set("Authorization", "Bearer "+c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("connect to makuosan at %s: %w", c.target, unwrapURL(err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var eb errorBody
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			return nil, fmt.Errorf("makuosan at %s: %s", c.target, eb.Error)
		}
		return nil, fmt.Errorf("makuosan at %s: %s", c.target, resp.Status)
	}
	return resp, nil
}

// unwrapURL drops net/http's "Get \"http://localhost/...\":" prefix, which
// names a URL the user never typed.
func unwrapURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
