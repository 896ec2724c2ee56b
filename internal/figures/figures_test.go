package figures

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestPercentileNearestRank(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {0, 1}, {100, 10}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(1..10, %v) = %v; want %v", c.p, got, c.want)
		}
	}
	if got := Median([]float64{1, 2, 3, 4}); got != 2.5 {
		t.Errorf("Median(1..4) = %v; want 2.5", got)
	}
	if !math.IsNaN(Median(nil)) || !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Median and Percentile of nothing should be NaN")
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{{12.34, "ms", "12.3 ms"}, {12345, "ms", "12.3 s"}, {1500, "/s", "1500/s"}, {3, "", "3"}, {2.5, "", "2.50"}, {math.NaN(), "ms", "-"}} {
		if got := Format(c.v, c.unit); got != c.want {
			t.Errorf("Format(%v, %q) = %q; want %q", c.v, c.unit, got, c.want)
		}
	}
}

// The chart is well-formed XML with a line per series, and hostile names
// are escaped.
func TestLineChartSVG(t *testing.T) {
	var b bytes.Buffer
	c := LineChart{Title: "a <b> & c", X: []float64{1, 3, 5}, YUnit: "/s",
		Series: []Series{{Name: "reads", Y: []float64{100, 90, math.NaN()}}, {Name: `"writes"`, Y: []float64{50, 30, 20}}}}
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 2 {
		t.Errorf("%d polylines; want 2", lines)
	}
	if strings.Contains(b.String(), "<b>") {
		t.Error("title not escaped")
	}
}
