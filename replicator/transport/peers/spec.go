package peers

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is a peer as the operator names it: --peer HOST[:PORT] or a line
// of --peers-file.
type Spec struct {
	// Host is an IP address (a link-local IPv6 one may carry its zone) or
	// a DNS name, which stands for every address it resolves to.
	Host string
	Port uint16
}

func (s Spec) String() string { return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port))) }

// literal returns the address if Host is one.
func (s Spec) literal() (netip.Addr, bool) {
	a, err := netip.ParseAddr(s.Host)
	return a, err == nil
}

// MaxFileSize bounds --peers-file: a list of thousands of peers fits many
// times over, and a file named by mistake (a log, a disk image) is refused
// instead of read whole at every change.
const MaxFileSize = 1 << 20

// maxNameLen is the longest DNS name (RFC 1035), without the final dot.
const maxNameLen = 253

// ParseSpec parses HOST[:PORT]: an IPv4 address, an IPv6 address (in
// brackets when a port follows: [fd00::1]:5000), or a DNS name, with
// the port defPort when none is given.
func ParseSpec(s string, defPort int) (Spec, error) {
	if defPort < 1 || defPort > 65535 {
		return Spec{}, fmt.Errorf("default port %d out of range 1-65535", defPort)
	}
	host, port := s, defPort
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		// [IPv6] without a port.
		s = s[1 : len(s)-1]
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() {
			return Spec{}, fmt.Errorf("peer %q: brackets hold an IPv6 address", "["+s+"]")
		}
		host = s
	} else if _, err := netip.ParseAddr(s); err != nil {
		// Not an address alone, so a colon separates a port; a bare
		// IPv6 address with a port is ambiguous and goes in brackets.
		if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
			h, p, err := net.SplitHostPort(s)
			if err != nil {
				return Spec{}, fmt.Errorf("peer %q: want HOST, HOST:PORT or [IPv6]:PORT", s)
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 || p != strconv.Itoa(n) {
				return Spec{}, fmt.Errorf("peer %q: port %q is not a number in 1-65535", s, p)
			}
			if strings.HasPrefix(s, "[") {
				if a, err := netip.ParseAddr(h); err != nil || !a.Is6() {
					return Spec{}, fmt.Errorf("peer %q: brackets hold an IPv6 address", s)
				}
			}
			host, port = h, n
		}
	}
	if err := checkHost(host); err != nil {
		return Spec{}, fmt.Errorf("peer %q: %w", s, err)
	}
	return Spec{Host: host, Port: uint16(port)}, nil
}

// checkHost accepts an address a peer can have, or a well-formed DNS
// name.
func checkHost(h string) error {
	if h == "" {
		return errors.New("no host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return checkAddr(a)
	}
	if strings.Contains(h, "%") {
		return errors.New("a zone (%IF) goes with a link-local IPv6 address only")
	}
	name := strings.TrimSuffix(h, ".")
	if len(name) == 0 || len(name) > maxNameLen {
		return fmt.Errorf("host name of %d bytes (1-%d)", len(name), maxNameLen)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return fmt.Errorf("host name label %q must have 1-63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host name label %q starts or ends with '-'", l)
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host name %q has a character %q that no host name has", h, c)
			}
		}
	}
	// A name whose last label is a number is a mistyped address
	// (10.0.0.256, 10.0.0), which a resolver would look up as a name.
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Errorf("%q is neither an IP address nor a host name", h)
	}
	return nil
}

// checkAddr accepts an address one can send a member's datagrams to.
func checkAddr(a netip.Addr) error {
	switch {
	case a.Is4In6():
		return fmt.Errorf("%v is an IPv4-mapped IPv6 address: give the IPv4 address (%v)", a, a.Unmap())
	case a.IsMulticast():
		return fmt.Errorf("%v is a multicast address: a peer is one member (for a group use -m without --peer)", a)
	case a.IsUnspecified():
		return fmt.Errorf("%v is the unspecified address", a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%v is the broadcast address", a)
	case a.Is4() && a.As4()[0] == 0:
		return fmt.Errorf("%v is in 0.0.0.0/8, which names no host", a)
	case a.Is4() && a.As4()[0] >= 240:
		return fmt.Errorf("%v is in the reserved 240.0.0.0/4", a)
	case a.Zone() != "" && !a.IsLinkLocalUnicast():
		return fmt.Errorf("%v has a zone, which only a link-local IPv6 address takes", a)
	case !zoneOK(a.Zone()):
		return fmt.Errorf("%v: the zone is not an interface name", a)
	}
	return nil
}

// zoneOK accepts what can be an interface name (IFNAMSIZ bounds it to 15
// bytes) or index: "" too.
func zoneOK(z string) bool {
	if len(z) > 15 {
		return false
	}
	for _, c := range []byte(z) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// LineError is a --peers-file line that is not a peer.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ParseList reads a peers file: one HOST[:PORT] per line (ParseSpec, port
// defPort when none is given); blank lines and everything from a # on are
// ignored. The first bad line fails the whole list, as a *LineError: a
// list read in part would silently drop members. A list of more than
// MaxFileSize bytes is refused.
func ParseList(r io.Reader, defPort int) ([]Spec, error) { return parseList(r, defPort, 0) }

// parseList is ParseList that also refuses, with their line, literal
// addresses of the other family than fam (4 or 6; 0 takes either).
func parseList(r io.Reader, defPort, fam int) ([]Spec, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes: not a list of peers", MaxFileSize)
	}
	var specs []Spec
	seen := map[Spec]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 0, 4096), MaxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, &LineError{Line: n, Err: fmt.Errorf("%q: one peer per line", line)}
		}
		s, err := ParseSpec(line, defPort)
		if err == nil && fam != 0 {
			err = familyOK(s, fam)
		}
		if err != nil {
			return nil, &LineError{Line: n, Err: err}
		}
		if !seen[s] {
			seen[s] = true
			specs = append(specs, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return specs, nil
}
