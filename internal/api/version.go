package api

import (
	"runtime/debug"
	"strings"
)

// Version is the peerctl version: the daemon advertises it in serf tags and
// Info, the CLI prints it. Set it at link time with
// -ldflags "-X github.com/peerctl/peerctl/internal/api.Version=v1.2.3";
// otherwise init derives it from the build info (buildVersion).
var Version string

func init() {
	if Version == "" { // not set with -ldflags -X
		info, _ := debug.ReadBuildInfo()
		Version = buildVersion(info)
	}
}

// buildVersion derives the version from the build info: the main module's
// version when it is a release (go install ...@v1.2.3); else, built from a
// checkout, "dev-" and the first 12 digits of the VCS revision, with
// "-dirty" if the work tree had changes; else "dev". info may be nil.
func buildVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "dev"
	}
	v := info.Main.Version
	// Go stamps a checkout's build with a pseudo-version
	// (v0.0.0-20261129120000-abcdef123456+dirty): the revision says more.
	if v != "" && v != "(devel)" && !strings.HasPrefix(v, "v0.0.0-") {
		return v
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	out := "dev-" + rev[:min(12, len(rev))]
	if dirty {
		out += "-dirty"
	}
	return out
}
