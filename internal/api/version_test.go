package api

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	rev := func(r, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: r}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		info *debug.BuildInfo
		want string
	}{
		{nil, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: rev("0123456789abcdef0123", "true")}, "v1.2.3"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("0123456789abcdef0123", "false")}, "dev-0123456789ab"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261129120000-0123456789ab+dirty"}, Settings: rev("0123456789abcdef0123", "true")}, "dev-0123456789ab-dirty"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("abc", "false")}, "dev-abc"},
	}
	for _, tt := range tests {
		if got := buildVersion(tt.info); got != tt.want {
			t.Errorf("buildVersion(%+v) = %q; want %q", tt.info, got, tt.want)
		}
	}
	if Version == "" {
		t.Error("Version is empty after init")
	}
}
