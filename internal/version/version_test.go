package version

import (
	"regexp"
	"runtime/debug"
	"testing"
)

func TestFormat(t *testing.T) {
	stamp := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8"}
		for i := 0; i < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	rev := "97b2879abcdef0123456789abcdef0123456789a"
	tests := []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{nil, "makuosan " + Release},
		{stamp(), "makuosan " + Release + " (no VCS stamp, go1.26.8)"},
		{stamp("vcs.revision", rev, "vcs.time", "2026-05-01T10:00:00Z", "vcs.modified", "false"),
			"makuosan " + Release + " (" + rev + ", 2026-05-01T10:00:00Z, go1.26.8)"},
		{stamp("vcs.revision", rev, "vcs.time", "2026-05-01T10:00:00Z", "vcs.modified", "true"),
			"makuosan " + Release + " (" + rev + "+modified, 2026-05-01T10:00:00Z, go1.26.8)"},
	}
	for _, tt := range tests {
		if got := format("makuosan", tt.bi); got != tt.want {
			t.Errorf("got %q\nwant %q", got, tt.want)
		}
	}
}

func TestLineStartsWithRelease(t *testing.T) {
	if !regexp.MustCompile(`^msync \d+\.\d+\.\d+( \(.*\))?$`).MatchString(Line("msync")) {
		t.Fatalf("Line = %q", Line("msync"))
	}
}
