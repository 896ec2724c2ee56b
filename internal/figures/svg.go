package figures

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// NiceCeil rounds v up to 1, 2 or 5 times a power of ten; 1 for v <= 0.
func NiceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// Escape escapes s for XML text and attribute values.
func Escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// Series is one line of a LineChart: a value at each of the chart's X
// positions (NaN: no point there).
type Series struct {
	Name string
	Y    []float64
}

// LineChart is a line plot over a few discrete X values (say 1, 3 and 5
// nodes), one line and legend entry per series, the Y axis from 0.
type LineChart struct {
	Title  string
	XLabel string
	YLabel string
	YUnit  string // the unit Format prints Y ticks and point labels in
	X      []float64
	Series []Series
}

// WriteSVG writes the chart as a standalone SVG document.
func (c LineChart) WriteSVG(w io.Writer) error {
	const (
		width, height = 720, 400
		left, right   = 80, 170
		top, bottom   = 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	maxY, minX, maxX := 0.0, math.Inf(1), math.Inf(-1)
	for _, x := range c.X {
		minX, maxX = math.Min(minX, x), math.Max(maxX, x)
	}
	if len(c.X) == 0 || minX == maxX {
		minX, maxX = minX-1, maxX+1
	}
	for _, s := range c.Series {
		for _, y := range s.Y {
			if !math.IsNaN(y) {
				maxY = math.Max(maxY, y)
			}
		}
	}
	maxY = NiceCeil(maxY * 1.1)
	px := func(x float64) float64 { return float64(left) + (x-minX)/(maxX-minX)*pw }
	py := func(y float64) float64 { return float64(top) + ph - y/maxY*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", left, Escape(c.Title))
	for i := 0; i <= 5; i++ {
		v := maxY * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, float64(left)+pw, py(v), py(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(v)+4, Escape(Format(v, c.YUnit)))
	}
	for _, x := range c.X {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(x), height-bottom+16, Escape(Format(x, "")))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, height-12, Escape(c.XLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">%s</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2, Escape(c.YLabel))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}
	for k, s := range c.Series {
		col := colors[k%len(colors)]
		var pts []string
		for i, y := range s.Y {
			if i >= len(c.X) || math.IsNaN(y) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(c.X[i]), py(y)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", px(c.X[i]), py(y), col)
			dy := -8.0 // labels above the points, every other series' below
			if k%2 == 1 {
				dy = 18
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" text-anchor="middle">%s</text>`+"\n", px(c.X[i]), py(y)+dy, col, Escape(Format(y, c.YUnit)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), col)
		ly := top + 16 + 20*k
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", float64(left)+pw+12, float64(left)+pw+32, ly, ly, col)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d">%s</text>`+"\n", float64(left)+pw+38, ly+4, Escape(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
