package usage

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestFlagTable(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.StringP("base", "b", "", "base `DIR` to use")
	fs.Bool("json", false, "print JSON")
	fs.IntP("port", "p", 5000, "UDP `PORT`")
	want := "" +
		"  -b, --base DIR   base DIR to use\n" +
		"      --json       print JSON\n" +
		"  -p, --port PORT  UDP PORT (default 5000)\n"
	fs.SortFlags = false
	if got := FlagTable(fs); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
