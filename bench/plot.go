package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// A line plot written as SVG with the standard library alone: axes with
// ticks and labels, linear or log scales, one polyline with markers per
// series, and a legend. It is what bench-scale draws its curves with; it
// knows nothing of what the numbers mean.

// plot is one chart. Points whose coordinates are not finite (or not
// positive on a log axis) are left out of their series' line.
type plot struct {
	Title  string
	X, Y   axis
	Series []series
}

// axis is one axis of a plot.
type axis struct {
	Label string
	Log   bool                 // log scale (base 10 ticks unless Ticks is set)
	Zero  bool                 // a linear axis starts at 0 whatever the data
	Ticks []float64            // where the ticks go; nil: chosen from the data
	Fmt   func(float64) string // tick labels; nil: %g
}

// series is one line of a plot.
type series struct {
	Name   string
	Points []point
	Dashed bool
}

type point struct{ X, Y float64 }

// The drawing's geometry, in SVG user units.
const (
	plotW, plotH                   = 720, 420
	padLeft, padRight              = 80, 190 // the legend sits on the right
	padTop, padBottom              = 44, 60
	innerW                         = plotW - padLeft - padRight
	innerH                         = plotH - padTop - padBottom
	legendLine, legendGap, fontPx  = 24, 20, 12
	markerRadius, lineWidth, gridW = 3, 2, 1
)

// palette is the series' colours, in order (distinct for colour-blind readers).
var palette = []string{"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000"}

// scale maps data values of one axis onto a pixel range.
type scale struct {
	lo, hi   float64 // in the transformed domain (log10 when log)
	log      bool
	from, to float64 // pixels
}

func (s scale) tr(v float64) float64 {
	if s.log {
		return math.Log10(v)
	}
	return v
}

func (s scale) px(v float64) float64 {
	t := (s.tr(v) - s.lo) / (s.hi - s.lo)
	return s.from + t*(s.to-s.from)
}

// usable reports whether v can be drawn on the axis.
func (a axis) usable(v float64) bool {
	return finite(v) && (!a.Log || v > 0)
}

// newScale fits the axis to vals (and its ticks), onto the pixels from..to.
func (a axis) newScale(vals []float64, from, to float64) scale {
	s := scale{log: a.Log, from: from, to: to, lo: math.Inf(1), hi: math.Inf(-1)}
	for _, v := range append(vals, a.Ticks...) {
		if a.usable(v) {
			s.lo, s.hi = min(s.lo, s.tr(v)), max(s.hi, s.tr(v))
		}
	}
	if math.IsInf(s.lo, 0) { // no data: 0 to 1, or 1 to 10 on a log axis
		s.lo, s.hi = 0, 1
	}
	if a.Zero && !a.Log {
		s.lo = min(s.lo, 0)
	}
	if s.hi-s.lo < 1e-12 {
		s.lo, s.hi = s.lo-0.5, s.hi+0.5
	}
	if a.Ticks == nil { // round the ends out to the ticks' steps
		if a.Log {
			s.lo, s.hi = math.Floor(s.lo+1e-9), math.Ceil(s.hi-1e-9)
		} else {
			step := niceStep((s.hi - s.lo) / 5)
			s.lo, s.hi = math.Floor(s.lo/step+1e-9)*step, math.Ceil(s.hi/step-1e-9)*step
		}
	} else { // leave a margin so the end points are not on the frame
		m := (s.hi - s.lo) * 0.04
		s.lo, s.hi = s.lo-m, s.hi+m
	}
	return s
}

// ticks returns where the axis's ticks go within s.
func (a axis) ticks(s scale) []float64 {
	if a.Ticks != nil {
		return a.Ticks
	}
	var out []float64
	if a.Log {
		decades := s.hi - s.lo
		for e := s.lo; e <= s.hi+1e-9; e++ {
			for _, m := range []float64{1, 2, 5} {
				if m != 1 && decades > 2 {
					continue
				}
				if v := m * math.Pow(10, e); math.Log10(v) <= s.hi+1e-9 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep((s.hi - s.lo) / 5)
	for v := s.lo; v <= s.hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func (a axis) label(v float64) string {
	if a.Fmt != nil {
		return a.Fmt(v)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e7 {
		return strconv.FormatFloat(v, 'f', -1, 64) // 10000, not 1e+04
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// svgWriter accumulates the document; text goes through xml.EscapeText.
type svgWriter struct{ b strings.Builder }

func (w *svgWriter) printf(format string, args ...any) { fmt.Fprintf(&w.b, format, args...) }

func (w *svgWriter) text(x, y float64, anchor, extra, s string) {
	w.printf(`<text x="%.1f" y="%.1f" text-anchor="%s"%s>`, x, y, anchor, extra)
	xml.EscapeText(&w.b, []byte(s))
	w.b.WriteString("</text>\n")
}

// SVG renders the plot as a standalone SVG document.
func (p plot) SVG() []byte {
	var xs, ys []float64
	for _, s := range p.Series {
		for _, pt := range s.Points {
			xs, ys = append(xs, pt.X), append(ys, pt.Y)
		}
	}
	sx := p.X.newScale(xs, padLeft, padLeft+innerW)
	sy := p.Y.newScale(ys, padTop+innerH, padTop)
	inX := func(v float64) bool { t := sx.tr(v); return t >= sx.lo-1e-9 && t <= sx.hi+1e-9 }
	inY := func(v float64) bool { t := sy.tr(v); return t >= sy.lo-1e-9 && t <= sy.hi+1e-9 }

	w := &svgWriter{}
	w.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="%d">`+"\n",
		plotW, plotH, plotW, plotH, fontPx)
	w.printf(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", plotW, plotH)
	w.text(plotW/2, 24, "middle", ` font-size="15" font-weight="bold"`, p.Title)

	// Grid and ticks.
	w.printf(`<g class="grid" stroke="#dddddd" stroke-width="%d">`+"\n", gridW)
	for _, v := range p.X.ticks(sx) {
		if p.X.usable(v) && inX(v) {
			x := sx.px(v)
			w.printf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x, padTop, x, padTop+innerH)
		}
	}
	for _, v := range p.Y.ticks(sy) {
		if p.Y.usable(v) && inY(v) {
			y := sy.px(v)
			w.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", padLeft, y, padLeft+innerW, y)
		}
	}
	w.b.WriteString("</g>\n")
	w.printf(`<rect class="frame" x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333333"/>`+"\n", padLeft, padTop, innerW, innerH)
	w.b.WriteString(`<g class="ticks">` + "\n")
	for _, v := range p.X.ticks(sx) {
		if p.X.usable(v) && inX(v) {
			x := sx.px(v)
			w.printf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333333"/>`+"\n", x, padTop+innerH, x, padTop+innerH+5)
			w.text(x, padTop+innerH+19, "middle", "", p.X.label(v))
		}
	}
	for _, v := range p.Y.ticks(sy) {
		if p.Y.usable(v) && inY(v) {
			y := sy.px(v)
			w.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333333"/>`+"\n", padLeft-5, y, padLeft, y)
			w.text(padLeft-8, y+4, "end", "", p.Y.label(v))
		}
	}
	w.b.WriteString("</g>\n")
	xl, yl := p.X.Label, p.Y.Label
	if p.X.Log {
		xl += " (log scale)"
	}
	if p.Y.Log {
		yl += " (log scale)"
	}
	w.text(padLeft+innerW/2, plotH-16, "middle", "", xl)
	w.text(18, padTop+innerH/2, "middle", fmt.Sprintf(` transform="rotate(-90 18 %d)"`, padTop+innerH/2), yl)

	// The series, then the legend.
	for i, s := range p.Series {
		color := palette[i%len(palette)]
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		var pts []string
		for _, pt := range s.Points {
			if p.X.usable(pt.X) && p.Y.usable(pt.Y) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx.px(pt.X), sy.px(pt.Y)))
			}
		}
		w.printf(`<g class="series" data-name="%s">`+"\n", attr(s.Name))
		w.printf(`<polyline fill="none" stroke="%s" stroke-width="%d"%s points="%s"/>`+"\n", color, lineWidth, dash, strings.Join(pts, " "))
		for _, xy := range pts {
			x, y, _ := strings.Cut(xy, ",")
			w.printf(`<circle cx="%s" cy="%s" r="%d" fill="%s"/>`+"\n", x, y, markerRadius, color)
		}
		w.b.WriteString("</g>\n")
		lx, ly := float64(padLeft+innerW+16), float64(padTop+10+i*legendGap)
		w.printf(`<g class="legend"><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%d"%s/>`,
			lx, ly, lx+legendLine, ly, color, lineWidth, dash)
		w.printf(`<circle cx="%.1f" cy="%.1f" r="%d" fill="%s"/>`, lx+legendLine/2, ly, markerRadius, color)
		w.text(lx+legendLine+6, ly+4, "start", "", s.Name)
		w.b.WriteString("</g>\n")
	}
	w.b.WriteString("</svg>\n")
	return []byte(w.b.String())
}

// attr escapes s for an attribute value in double quotes.
func attr(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeSVG writes the plot to path.
func (p plot) writeSVG(path string) error {
	if err := os.WriteFile(path, p.SVG(), 0o644); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	return nil
}
