package metrics

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		"x{ 2\n",
		"x 1 2 3\n",
		"x one\n",
		"1x 1\n",
		`x{a-b="1"} 1` + "\n",
		`x{a=1} 1` + "\n",
		`x{a="1",a="2"} 1` + "\n",
		`x{a="\q"} 1` + "\n",
		"x{a=\"\xff\"} 1\n",
		"# HELP x not UTF-8: \xc3\n",
		`x{__name__="y"} 1` + "\n",
		"# HELP x bad \\q escape\n",
		"# TYPE x histogram\nx_bucket 1\n",
		"# TYPE x nonsense\n",
		"# TYPE x gauge\n# TYPE x counter\n",
		"x 1\n# TYPE x gauge\n",
	} {
		if fams, err := parse(text); err == nil {
			t.Errorf("parse(%q) = %v, nil; want an error", text, fams)
		}
	}
}

// What parse reads, Merge writes back unchanged, but for a sample's labels
// sorted by name (le and quantile last) and the series sorted.
func TestParseRoundTrip(t *testing.T) {
	text := "# HELP s A summary.\n# TYPE s summary\n" +
		"s{b=\"2\",a=\"1\",quantile=\"0.5\"} 3\ns_sum{a=\"1\",b=\"2\"} 4\ns_count{a=\"1\",b=\"2\"} 5\n" +
		"# comment\n\n" +
		"# HELP u Untyped, with a timestamp.\nu 1 1700000000000\n" +
		"no_type_line NaN\n"
	want := "# TYPE no_type_line untyped\nno_type_line NaN\n" +
		"# HELP s A summary.\n# TYPE s summary\n" +
		"s{a=\"1\",b=\"2\",quantile=\"0.5\"} 3\ns_sum{a=\"1\",b=\"2\"} 4\ns_count{a=\"1\",b=\"2\"} 5\n" +
		"# HELP u Untyped, with a timestamp.\n# TYPE u untyped\nu 1 1700000000000\n"
	var m Merge
	if err := m.AddText([]byte(text), nil); err != nil {
		t.Fatalf("AddText: %v", err)
	}
	var b bytes.Buffer
	m.WriteTo(&b)
	if got := b.String(); got != want {
		t.Errorf("WriteTo wrote\n%s\nwant\n%s", got, want)
	}
}

// FuzzMerge: any text merges (all of it, some of it, or nothing if it does
// not parse) into valid UTF-8 that merges again whole, with no family left
// out, to the same exposition, and no sample has a label name twice.
func FuzzMerge(f *testing.F) {
	f.Add("# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n" +
		"d_seconds_bucket{class=\"2xx\",le=\"0.1\"} 1\nd_seconds_bucket{class=\"2xx\",le=\"+Inf\"} 2\n" +
		"d_seconds_sum{class=\"2xx\"} 0.35\nd_seconds_count{class=\"2xx\"} 2\n")
	f.Add("# HELP e_total Back\\\\slash.\n# TYPE e_total counter\ne_total{path=\"a\\\"b\\\\c\\nd\"} 1 17\n")
	f.Add("# TYPE s summary\ns{quantile=\"1\"} -Inf\ns_sum 1e300\n")
	f.Add("# TYPE x gauge\nx{role=\"a\",exported_role=\"b\",exported_exported_role=\"c\",slot=\"d\"} 1\n")
	f.Add("# TYPE h histogram\nh_bucket{le=\"1\",role=\"a\"} 1\nh_sum{le=\"2\",role=\"a\"} 1\n")
	f.Add("# HELP x \xc3.\nx{a=\"\xff\",__name__=\"y\"} 1\n")
	f.Add("# TYPE h histogram\nh_count 1\n# TYPE h_count gauge\nh_count 2\n")
	f.Fuzz(func(t *testing.T, text string) {
		var m Merge
		m.AddText([]byte(text), map[string]string{"role": "worker", "slot": "0"}) // an error leaves out some families, or all
		for _, fam := range m.fams {
			for _, s := range fam.series {
				for _, smp := range s.samples {
					if name, ok := repeatedLabel(s.labels, smp.bound); ok {
						t.Fatalf("a sample of %s%s has the label %s twice: %v %v", fam.name, smp.suffix, name, s.labels, smp.bound)
					}
				}
			}
		}
		var once, twice bytes.Buffer
		m.WriteTo(&once)
		var again Merge
		if err := again.AddText(once.Bytes(), nil); err != nil {
			t.Fatalf("the merged text does not merge whole again: %v\n%s", err, once.String())
		}
		if err := oneFamilyPerName(once.String()); err != nil {
			t.Fatalf("%v:\n%s", err, once.String())
		}
		if !utf8.Valid(once.Bytes()) {
			t.Fatalf("the merged text is not valid UTF-8:\n%q", once.String())
		}
		again.WriteTo(&twice)
		if once.String() != twice.String() {
			t.Fatalf("merged again:\n%s\nwant\n%s", twice.String(), once.String())
		}
	})
}

// repeatedLabel returns a name that labels and bound (if it has a name)
// have more than once.
func repeatedLabel(labels []label, bound label) (string, bool) {
	seen := make(map[string]bool, len(labels)+1)
	if bound.name != "" {
		seen[bound.name] = true
	}
	for _, l := range labels {
		if seen[l.name] {
			return l.name, true
		}
		seen[l.name] = true
	}
	return "", false
}

// oneFamilyPerName returns an error if a TYPE line names a family twice, or
// if samples of one name follow the TYPE lines of two families: Prometheus
// would read them as one family written twice.
func oneFamilyPerName(text string) error {
	typed := map[string]bool{}
	under := map[string]string{} // sample name: the family of the TYPE line before it
	var family string
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			family, _, _ = strings.Cut(rest, " ")
			if typed[family] {
				return fmt.Errorf("TYPE %s twice", family)
			}
			typed[family] = true
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		if f, ok := under[name]; ok && f != family {
			return fmt.Errorf("samples %s in the families %s and %s", name, f, family)
		}
		under[name] = family
	}
	return nil
}
