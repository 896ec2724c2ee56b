package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/peerctl/peerctl/internal/figures"
)

// writeLatencySVG plots each write's stable latency against the time it
// was sent (seconds from the first write of its repetition), one colour
// per repetition, with the p50 and p99 of all of them as lines. Writes
// that never reached every node are red crosses along the top.
func writeLatencySVG(path, title string, ws []propWrite) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	plotLatency(f, title, ws)
	if err := f.Close(); err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	return nil
}

func plotLatency(w io.Writer, title string, ws []propWrite) {
	const (
		width, height = 900, 420
		left, right   = 70, 20
		top, bottom   = 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	first := map[int]int64{}
	var lat []float64
	maxX, maxY := 1.0, 1.0
	for _, x := range ws {
		if t, ok := first[x.Rep]; !ok || x.Sent.UnixNano() < t {
			first[x.Rep] = x.Sent.UnixNano()
		}
		if x.Stable >= 0 {
			lat = append(lat, ms(x.Stable))
			maxY = math.Max(maxY, ms(x.Stable))
		}
	}
	for _, x := range ws {
		maxX = math.Max(maxX, float64(x.Sent.UnixNano()-first[x.Rep])/1e9)
	}
	maxY = niceCeil(maxY * 1.05)
	maxX = math.Ceil(maxX)
	sort.Float64s(lat)
	px := func(s float64) float64 { return float64(left) + s/maxX*pw }
	py := func(v float64) float64 { return float64(top) + ph - v/maxY*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", left, xmlEscape(title))
	// Axes and grid.
	for i := 0; i <= 5; i++ {
		v := maxY * float64(i) / 5
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-right, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtFigure(v, "ms"))
	}
	for i := 0; i <= 10; i++ {
		s := maxX * float64(i) / 10
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`+"\n", px(s), height-bottom+16, s)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">seconds since the first write of the run</text>`+"\n", float64(left)+pw/2, height-12)
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">stable latency</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	// Points.
	colors := []string{"#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}
	for _, x := range ws {
		if x.Ack.IsZero() {
			continue
		}
		s := float64(x.Sent.UnixNano()-first[x.Rep]) / 1e9
		if x.Stable < 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="red" text-anchor="middle">×</text>`+"\n", px(s), top+10)
			continue
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s" fill-opacity="0.6"/>`+"\n", px(s), py(ms(x.Stable)), colors[x.Rep%len(colors)])
	}
	// Percentile lines.
	for _, q := range []struct {
		p     float64
		color string
	}{{50, "#ff7f0e"}, {99, "#d62728"}} {
		if len(lat) == 0 {
			break
		}
		v := percentile(lat, q.p)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`+"\n", left, width-right, py(v), py(v), q.color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="%s" text-anchor="end">p%.0f %s</text>`+"\n", width-right-4, py(v)-4, q.color, q.p, fmtFigure(v, "ms"))
	}
	b.WriteString("</svg>\n")
	io.WriteString(w, b.String())
}

// The shared SVG helpers (internal/figures), by the names bench uses.
var (
	niceCeil  = figures.NiceCeil
	xmlEscape = figures.Escape
)
