package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpliceScale(t *testing.T) {
	notes := notesMarker + "\n## What bounds each figure\n\nhand-written\n"
	tests := []struct {
		name, doc string
	}{
		{"no file", ""},
		{"no notes marker", "# yolk benchmarks\n\ngenerated\n"},
		{"notes, no scale section", "# yolk benchmarks\n\ngenerated\n\n" + notes},
		{"an old scale section", "# yolk benchmarks\n\n" + notesMarker + "\n\n" + scaleBegin + "\n\nold\n\n" + scaleEnd + "\n## What bounds each figure\n\nhand-written\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spliceScale(tt.doc, "## How the cost grows\n\nnew\n")
			if strings.Count(got, scaleBegin) != 1 || strings.Count(got, scaleEnd) != 1 || strings.Count(got, notesMarker) != 1 {
				t.Fatalf("spliceScale(%q) = %q: want one of each marker", tt.doc, got)
			}
			if strings.Contains(got, "old") || !strings.Contains(got, "new") {
				t.Errorf("spliceScale(%q) = %q: want the new block only", tt.doc, got)
			}
			if strings.Index(got, notesMarker) > strings.Index(got, scaleBegin) {
				t.Errorf("spliceScale(%q) = %q: the scale section is before the notes marker, where make bench rewrites", tt.doc, got)
			}
			if strings.Contains(tt.doc, "hand-written") && !strings.HasSuffix(got, "\nhand-written\n") {
				t.Errorf("spliceScale(%q) = %q: the notes are not kept at the end", tt.doc, got)
			}
			if again := spliceScale(got, "## How the cost grows\n\nnew\n"); again != got {
				t.Errorf("spliceScale twice = %q, want %q", again, got)
			}
		})
	}
}

// make bench and make bench-scale each rewrite their part and keep the other's.
func TestScaleSectionSurvivesMakeBench(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := writeMarkdown(path, "# report 1\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeScaleMarkdown(path, "## How the cost grows\n\nscale 1\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeMarkdown(path, "# report 2\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeScaleMarkdown(path, "## How the cost grows\n\nscale 2\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"# report 2\n", "scale 2\n", "What bounds each figure"} {
		if !strings.Contains(got, want) {
			t.Errorf("BENCHMARKS.md = %q, want it to hold %q", got, want)
		}
	}
	for _, old := range []string{"report 1", "scale 1"} {
		if strings.Contains(got, old) {
			t.Errorf("BENCHMARKS.md = %q, still holds %q", got, old)
		}
	}
}

func TestPadValue(t *testing.T) {
	for _, n := range []int{4, 16, 17, 90, 91, 92, 93, 100, 1000, 12345, padMax} {
		v := padValue(n)
		if len(v) != n {
			t.Errorf("len(padValue(%d)) = %d", n, len(v))
		}
		var a []any
		if err := json.Unmarshal(v, &a); err != nil {
			t.Errorf("padValue(%d) is not a JSON array: %v", n, err)
		}
	}
}
