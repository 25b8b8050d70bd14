package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// svgDoc is what the test reads back of a plot's SVG.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Texts   []string `xml:"text"`
	Groups  []struct {
		Class    string `xml:"class,attr"`
		Name     string `xml:"data-name,attr"`
		Polyline *struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
		Circles []struct{} `xml:"circle"`
		Texts   []string   `xml:"text"`
	} `xml:"g"`
}

func TestPlotSVG(t *testing.T) {
	tests := []struct {
		name   string
		p      plot
		points []int // drawn points per series
	}{
		{
			name: "linear",
			p: plot{Title: "Fan-out <total> & more", X: axis{Label: "workers"}, Y: axis{Label: "msgs/s", Zero: true},
				Series: []series{
					{Name: "yolk", Points: []point{{1, 5e5}, {2, 9e5}, {4, 1e6}}},
					{Name: "raw \"NATS\" <&>", Points: []point{{1, 7e5}, {2, math.NaN()}, {4, 1.2e6}}, Dashed: true},
				}},
			points: []int{3, 2},
		},
		{
			name: "log axes with explicit ticks",
			p: plot{Title: "Convergence", X: axis{Label: "data", Log: true, Fmt: func(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) + " B" }},
				Y: axis{Label: "ms", Log: true},
				Series: []series{
					{Name: "p50", Points: []point{{1e3, 1.5}, {1e5, 3}, {1e6, 12}, {1e7, 130}, {5e7, 700}}},
					{Name: "zero is not on a log axis", Points: []point{{0, 1}, {1e3, 0}, {1e4, 2}}},
				}},
			points: []int{5, 1},
		},
		{
			name:   "no series",
			p:      plot{Title: "empty", X: axis{Label: "x", Ticks: []float64{1, 2, 4}}, Y: axis{Label: "y"}},
			points: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.p.SVG()
			dec := xml.NewDecoder(bytes.NewReader(b))
			for { // well-formed to the end
				_, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("SVG() is not well-formed XML: %v\n%s", err, b)
				}
			}
			var doc svgDoc
			if err := xml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("xml.Unmarshal(SVG()) = %v", err)
			}
			if len(doc.Texts) == 0 || doc.Texts[0] != tt.p.Title {
				t.Errorf("SVG() title = %q, want %q", doc.Texts, tt.p.Title)
			}
			var got []int
			var legend []string
			for _, g := range doc.Groups {
				switch g.Class {
				case "series":
					if g.Polyline == nil {
						t.Fatalf("series %q has no polyline", g.Name)
					}
					pts := strings.Fields(g.Polyline.Points)
					got = append(got, len(pts))
					if len(g.Circles) != len(pts) {
						t.Errorf("series %q: %d markers for %d points", g.Name, len(g.Circles), len(pts))
					}
					for _, pt := range pts {
						xs, ys, ok := strings.Cut(pt, ",")
						x, errx := strconv.ParseFloat(xs, 64)
						y, erry := strconv.ParseFloat(ys, 64)
						if !ok || errx != nil || erry != nil || x < padLeft-0.5 || x > padLeft+innerW+0.5 || y < padTop-0.5 || y > padTop+innerH+0.5 {
							t.Errorf("series %q: point %q outside the plot area", g.Name, pt)
						}
					}
				case "legend":
					legend = append(legend, g.Texts...)
				}
			}
			if len(got) != len(tt.points) {
				t.Fatalf("SVG() has %d series, want %d", len(got), len(tt.points))
			}
			for i := range got {
				if got[i] != tt.points[i] {
					t.Errorf("series %q: %d points drawn, want %d", tt.p.Series[i].Name, got[i], tt.points[i])
				}
				if legend[i] != tt.p.Series[i].Name {
					t.Errorf("legend %d = %q, want %q", i, legend[i], tt.p.Series[i].Name)
				}
			}
		})
	}
}

func TestPlotPointsInOrder(t *testing.T) {
	p := plot{X: axis{Label: "x"}, Y: axis{Label: "y"}, Series: []series{{Name: "up", Points: []point{{1, 1}, {2, 2}, {3, 3}}}}}
	var doc svgDoc
	if err := xml.Unmarshal(p.SVG(), &doc); err != nil {
		t.Fatal(err)
	}
	var pts []string
	for _, g := range doc.Groups {
		if g.Class == "series" {
			pts = strings.Fields(g.Polyline.Points)
		}
	}
	last := [2]float64{-1, math.Inf(1)}
	for _, pt := range pts { // x grows to the right, y up (smaller SVG y)
		xs, ys, _ := strings.Cut(pt, ",")
		x, _ := strconv.ParseFloat(xs, 64)
		y, _ := strconv.ParseFloat(ys, 64)
		if x <= last[0] || y >= last[1] {
			t.Errorf("points %v: %q is not right of and above the one before", pts, pt)
		}
		last = [2]float64{x, y}
	}
}
