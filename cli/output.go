package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// Helpers shared by the client commands: flags, the API client, and output.

// client returns an API client for the daemon at the global --addr.
// with the global --token and --ca (checked by checkAddr).
func client(c *cli.Context) *api.Client {
	cl, err := api.NewClientOptions(c.String("addr"), api.Options{Token: c.String("token"), CAFile: c.String("ca")})
	if err != nil {
		return api.NewClient(c.String("addr")) // --ca was checked before any command ran
	}
	return cl
}

// jsonFlag is --json. Each call returns a new flag: flags hold parse state.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print indented JSON for scripts instead of text"}
}

// nodeFlag is --node; what "acts on" means is the command's to say.
func nodeFlag(acts string) cli.Flag {
	return &cli.StringFlag{
		Name:  "node",
		Usage: acts + " member `NAME`, reached through the daemon at --addr (default: that daemon itself)",
	}
}

// wantArgs checks the number of positional arguments: between min and max
// (max < 0: no limit). The error names the command's usage.
func wantArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n >= min && (max < 0 || n <= max) {
		return nil
	}
	usage := c.Command.HelpName
	if c.Command.ArgsUsage != "" {
		usage += " " + c.Command.ArgsUsage
	}
	switch {
	case n < min:
		return fmt.Errorf("missing arguments: usage: %s (see `%s --help`)", usage, c.Command.HelpName)
	default:
		return fmt.Errorf("too many arguments %q: usage: %s (see `%s --help`)",
			c.Args().Slice()[max:], usage, c.Command.HelpName)
	}
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// newTable returns a tabwriter for column output; the caller must Flush.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// previewLen is how many characters of a value a table shows.
const previewLen = 40

// preview renders a value for one table cell: UTF-8 text with control
// characters escaped, cut to previewLen characters with "..."; binary as
// its size.
func preview(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes, binary)", len(b))
	}
	s := string(b)
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		q := strconv.Quote(s)
		s = q[1 : len(q)-1]
	}
	if utf8.RuneCountInString(s) > previewLen {
		s = string([]rune(s)[:previewLen-3]) + "..."
	}
	if s == "" {
		s = `""`
	}
	return s
}

// humanBytes formats a byte count as 512 B, 1.5 KiB, 3.2 MiB...
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
