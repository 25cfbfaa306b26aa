package netiftest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IPv6LinkLocal returns an interface that is up, multicast-capable and not
// the loopback, with a link-local IPv6 address: IPv6 multicast never works
// on lo, so tests of ff02:: groups need such an interface.
func IPv6LinkLocal() (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	for i := range ifs {
		ifi := &ifs[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
				return ifi, nil
			}
		}
	}
	return nil, errors.New("no interface is up, multicast and has a link-local IPv6 address (IPv6 multicast cannot run on lo)")
}
