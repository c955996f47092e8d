// Package format holds the number formats the bench reports share: thousands
// separators, milliseconds, medians and the dash for a missing cell.
package format

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// OrDash returns s, or an em dash when s is empty.
func OrDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// Median returns the median of v, which must not be empty.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Int rounds v and writes it with thousands separators.
func Int(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// MS writes milliseconds with 3 significant digits or so.
func MS(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// ReplaceSection replaces doc's section between the markers begin and end (inclusive)
// with section, which should carry the same markers, and leaves the rest alone; a doc
// without the section gets it appended after a blank line.
func ReplaceSection(doc, begin, end, section string) string {
	section = strings.TrimRight(section, "\n") + "\n"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i >= 0 && j > i {
		rest := doc[j+len(end):]
		rest = strings.TrimPrefix(rest, "\n")
		return doc[:i] + section + rest
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	if doc != "" {
		doc += "\n"
	}
	return doc + section
}

// ExtractSection returns doc's section between begin and end (markers included), or "".
func ExtractSection(doc, begin, end string) string {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return ""
	}
	return doc[i:j+len(end)] + "\n"
}
