package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PushRequest asks the daemon to push paths to the members (msync PATH...).
type PushRequest struct {
	// Paths are relative to the daemon's base directory (or absolute under
	// it). Empty with Recursive means the whole base directory.
	Paths     []string `json:"paths"`
	Recursive bool     `json:"recursive,omitempty"`
	DryRun    bool     `json:"dry_run,omitempty"`
	Check     bool     `json:"check,omitempty"`
	// Delete mirrors the given directories: members delete what the sender
	// does not have below them (excluded paths are spared).
	Delete bool `json:"delete,omitempty"`
	// Sync turns a path missing on the sender into a delete on members.
	Sync bool `json:"sync,omitempty"`
	// Targets limits the push to these member hostnames.
	Targets  []string `json:"targets,omitempty"`
	Excludes []string `json:"excludes,omitempty"`
	// Verbose also reports unchanged paths.
	Verbose bool `json:"verbose,omitempty"`
	// Itemize reports, for a dry run or a check, what differs per path
	// and member (Event.Items), like rsync -i.
	Itemize bool `json:"itemize,omitempty"`
}

// Event kinds streamed back for a push, one JSON object per line.
const (
	EventPath     = "path"     // a path changed (or would, or differs) on the listed members
	EventFailure  = "failure"  // a member could not apply a path, or failed as a whole
	EventProgress = "progress" // bytes sent so far
	EventSummary  = "summary"  // last event: totals
	EventError    = "error"    // the push could not run at all
)

// Event is one line of a push's response stream.
type Event struct {
	Type string `json:"type"`
	// EventPath / EventFailure
	Path    string   `json:"path,omitempty"`
	Action  string   `json:"action,omitempty"` // send, update, delete, differs, same
	Members []string `json:"members,omitempty"`
	// Items, with PushRequest.Itemize, says what differs on Members, as
	// rsync -i does: YXctpo, Y '>' content to send, 'c' created or changed
	// otherwise, '.' metadata only, '*' for "*deleting"; X the kind (f
	// file, d directory, L symbolic link, D device, S FIFO, h hard link);
	// then c content, t mtime, p permissions, o owner, '.' where the same
	// and '+' for a new path.
	Items  string `json:"items,omitempty"`
	Member string `json:"member,omitempty"`
	Reason string `json:"reason,omitempty"`
	// EventProgress
	BytesSent  uint64 `json:"bytes_sent,omitempty"`
	BytesTotal uint64 `json:"bytes_total,omitempty"`
	// EventSummary
	Summary *Summary `json:"summary,omitempty"`
	// EventError
	Error string `json:"error,omitempty"`
}

// Summary totals a push.
type Summary struct {
	Members       []string `json:"members"`        // members the push was for
	FailedMembers []string `json:"failed_members"` // members that did not complete
	// Of FailedMembers, those dropped from the push and still (or again)
	// members when it ended, which catch-up will bring in line, and those
	// no longer heard at its end.
	CatchUp      []string `json:"catch_up,omitempty"`
	Lost         []string `json:"lost,omitempty"`
	Entries      int      `json:"entries"`       // paths offered
	Changed      int      `json:"changed"`       // paths changed on at least one member
	Failed       int      `json:"failed"`        // path×member failures
	Deleted      int      `json:"deleted"`       // paths deleted by mirroring, all members
	PayloadBytes uint64   `json:"payload_bytes"` // content bytes sent once for all
	WireBytes    uint64   `json:"wire_bytes"`    // datagram bytes sent, repairs included
	Seconds      float64  `json:"seconds"`
	DryRun       bool     `json:"dry_run,omitempty"`
	Check        bool     `json:"check,omitempty"`
}

// OK reports whether every targeted member did everything asked (and, for
// a check, matched).
func (s *Summary) OK() bool {
	if len(s.FailedMembers) > 0 || s.Failed > 0 {
		return false
	}
	return !s.Check || s.Changed == 0
}

// Pusher is implemented by a daemon that can push. emit is called from
// one goroutine at a time, in order.
type Pusher interface {
	Push(ctx context.Context, req PushRequest, emit func(Event)) error
}

func handlePush(p Pusher) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req PushRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "bad push request: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		emit := func(ev Event) {
			_ = enc.Encode(ev)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err := p.Push(r.Context(), req, emit); err != nil {
			emit(Event{Type: EventError, Error: err.Error()})
		}
	}
}

// Push runs a push and calls fn for every event. It returns the summary, or
// an error when the push could not run.
func (c *Client) Push(ctx context.Context, req PushRequest, fn func(Event)) (*Summary, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	hreq, err := newRequest(ctx, http.MethodPost, "/v1/push", body)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("makuosan at %s: bad event: %w", c.target, err)
		}
		switch ev.Type {
		case EventError:
			return nil, fmt.Errorf("makuosan: %s", ev.Error)
		case EventSummary:
			if ev.Summary == nil {
				return nil, fmt.Errorf("makuosan at %s: empty summary", c.target)
			}
			return ev.Summary, nil
		}
		fn(ev)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("makuosan at %s: %w", c.target, err)
	}
	return nil, fmt.Errorf("makuosan at %s: stream ended without a summary", c.target)
}
