package control

import (
	"context"
	"time"
)

// DefaultSocket is the path of makuosan's control socket when -U does not
// name another: the daemon serves control there (mode 0660) unless -o, and
// msync tries it first. /run/makuosan is the systemd unit's
// RuntimeDirectory=.
const DefaultSocket = "/run/makuosan/makuosan.sock"

// DefaultTarget is makuosan's TCP control listener on its default address
// and port: a daemon opens it only when asked (-l ADDR, or -K FILE).
const DefaultTarget = "tcp:127.0.0.1:5000"

// Member describes one cluster member.
type Member struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	Addr     string `json:"addr"`
	Version  string `json:"version"`
	Roles    string `json:"roles"`
	// Segment is the member's --segment, "" for none.
	Segment          string    `json:"segment,omitempty"`
	Self             bool      `json:"self,omitempty"`
	Joined           time.Time `json:"joined"`
	LastHeardSeconds float64   `json:"last_heard_seconds"`
	// Root is the member's tree root hash as announced (hex; empty when
	// unknown). InSync tells whether it equals this daemon's; LagSeconds
	// how long it has differed (0 when in sync).
	Root       string  `json:"root,omitempty"`
	InSync     bool    `json:"in_sync"`
	LagSeconds float64 `json:"lag_seconds"`
}

// Status describes the daemon.
type Status struct {
	PID      int    `json:"pid"`
	Version  string `json:"version"`
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
	Base     string `json:"base"`
	Group    string `json:"group"`
	// Segment is --segment; Relay says, of a relay candidate, whether it
	// is its segment's active relay ("active") or stands by ("standby").
	Segment           string            `json:"segment,omitempty"`
	Relay             string            `json:"relay,omitempty"`
	Started           time.Time         `json:"started"`
	UptimeSeconds     float64           `json:"uptime_seconds"`
	Members           int               `json:"members"`
	TransfersInFlight int               `json:"transfers_in_flight"`
	Counters          map[string]uint64 `json:"counters"`
	// Recent lists the latest pushes this daemon sent, newest first.
	Recent []Transfer `json:"recent"`
}

// Transfer summarises one finished push.
type Transfer struct {
	Started       time.Time `json:"started"`
	Seconds       float64   `json:"seconds"`
	Paths         []string  `json:"paths"`  // as requested (first few)
	Origin        string    `json:"origin"` // msync or watcher
	Members       int       `json:"members"`
	FailedMembers []string  `json:"failed_members,omitempty"`
	Changed       int       `json:"changed"`
	Failed        int       `json:"failed"`
	PayloadBytes  uint64    `json:"payload_bytes"`
	Error         string    `json:"error,omitempty"`
}

// Backend is what the server needs from the daemon. Implementations must be
// safe for concurrent use.
type Backend interface {
	Members(ctx context.Context) ([]Member, error)
	Status(ctx context.Context) (Status, error)
}
