package peers

import (
	"strings"
	"testing"
)

// FuzzParseList: no peers file panics the parser, and every peer it
// accepts parses again, from its String, to itself.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1\nweb2:6000 # b\n\n[fd00::3]:5001\n",
		"# nothing\n",
		"fe80::1%eth0\n[fe80::1%eth0]:1\nweb_1.example.\n",
		"10.0.0.256\n",
		"a b\n",
		"[::ffff:1.2.3.4]:5\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseList(strings.NewReader(s), 5000)
		if err != nil {
			return
		}
		for _, sp := range specs {
			again, err := ParseSpec(sp.String(), 1)
			if err != nil || again != sp {
				t.Fatalf("%+v printed as %q parses as %+v, %v", sp, sp.String(), again, err)
			}
		}
	})
}
