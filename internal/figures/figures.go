// Package figures holds what the benchmark harness (internal/bench) and the
// demo chapters (internal/demo) share to report measurements: order
// statistics, a value formatted in its unit, and SVG plots (svg.go). It is
// pure: no I/O beyond the io.Writer it is given.
package figures

import (
	"math"
	"strconv"
)

// Median of sorted values; NaN for none.
func Median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Percentile of sorted values by the nearest-rank method: the smallest
// value with at least p% of the values at or below it; NaN for none.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// Format formats a value in its unit: "ms", "s", "MB", "B", "/s", "%",
// "x", "msgs", "bool"; any other unit prints the bare number, whole or to
// two decimals. NaN prints "-", +Inf "∞".
func Format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	if math.IsInf(v, 1) {
		return "∞"
	}
	switch unit {
	case "ms":
		switch {
		case v >= 10000:
			return strconv.FormatFloat(v/1000, 'f', 1, 64) + " s"
		case v >= 100:
			return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
		default:
			return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
		}
	case "s":
		return strconv.FormatFloat(v, 'f', 2, 64) + " s"
	case "MB":
		return strconv.FormatFloat(v, 'f', 1, 64) + " MB"
	case "B":
		switch {
		case v >= 10<<20:
			return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB"
		case v >= 10<<10:
			return strconv.FormatFloat(v/(1<<10), 'f', 1, 64) + " KiB"
		}
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	case "/s":
		return strconv.FormatFloat(v, 'f', 0, 64) + "/s"
	case "%":
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	case "x":
		return strconv.FormatFloat(v, 'f', 2, 64) + "x"
	case "msgs":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "bool":
		if v != 0 {
			return "yes"
		}
		return "no"
	}
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
