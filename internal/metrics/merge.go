package metrics

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/yolkgo/yolk/prom"
)

// Merge joins the metrics of several processes into one exposition, as
// prom-client's AggregatorRegistry does for a Node cluster, but without summing:
// every sample keeps its own series, told apart by the labels of the process
// it came from (role, slot). Each family appears once, with the HELP and TYPE
// of the first process that had it. The zero Merge is empty and ready; it is
// not safe for concurrent use.
type Merge struct {
	fams  map[string]*family
	names map[string]string // the name of every sample merged, and its family's
}

// AddText parses text, a process's exposition in the Prometheus text format,
// and adds its samples with labels. A label that a sample already has under
// one of these names is renamed exported_<name> (exported_exported_<name> if
// that is taken too, and so on), as Prometheus does when a target's labels
// clash with its own. It adds nothing when the text does not parse. A
// family is left out, and named in the error, if its type differs from the
// one already merged under its name, or if one of its samples' names is a
// sample of another family merged (h_count, a gauge, when a histogram h is
// merged): Prometheus would read the two as one. The others are added.
func (m *Merge) AddText(text []byte, labels map[string]string) error {
	fams, err := parse(string(text))
	if err != nil {
		return fmt.Errorf("metrics: parse: %w", err)
	}
	if m.fams == nil {
		m.fams = make(map[string]*family)
		m.names = make(map[string]string)
	}
	var clash []string
	for _, f := range fams {
		if len(f.series) == 0 {
			continue // never written
		}
		have, ok := m.fams[f.name]
		if ok && have.kind != f.kind {
			clash = append(clash, fmt.Sprintf("%s (%s, merged as %s)", f.name, f.kind, have.kind))
			continue
		}
		if !ok {
			if other := m.claim(f); other != nil {
				clash = append(clash, fmt.Sprintf("%s (%s, clashes with the %s %s)", f.name, f.kind, other.kind, other.name))
				continue
			}
			have = &family{name: f.name, help: f.help, kind: f.kind}
			m.fams[f.name] = have
		}
		for _, s := range f.series {
			s.labels = relabel(s.labels, labels)
			have.series = append(have.series, s)
		}
	}
	if len(clash) > 0 {
		slices.Sort(clash)
		return fmt.Errorf("metrics: left out: %s", strings.Join(clash, ", "))
	}
	return nil
}

// claim takes the names of the samples of f, a family not merged yet, for
// it, and returns nil; or, if another family merged has one of them, that
// family.
func (m *Merge) claim(f *family) *family {
	names := []string{f.name}
	switch f.kind {
	case "histogram":
		names = append(names, f.name+"_bucket", f.name+"_sum", f.name+"_count")
	case "summary":
		names = append(names, f.name+"_sum", f.name+"_count")
	}
	for _, n := range names {
		if other, ok := m.names[n]; ok {
			return m.fams[other]
		}
	}
	for _, n := range names {
		m.names[n] = f.name
	}
	return nil
}

// relabel returns pairs with labels added, sorted by name. A pair named as
// one of labels is renamed exported_<name>, or exported_exported_<name> and
// so on until the name is free, as Prometheus does (the shortest names
// first): a sample never has a label name twice.
func relabel(pairs []label, labels map[string]string) []label {
	out := make([]label, 0, len(pairs)+len(labels))
	var clash []label
	for _, p := range pairs {
		if _, ok := labels[p.name]; ok {
			clash = append(clash, p)
		} else {
			out = append(out, p)
		}
	}
	for k, v := range labels {
		out = append(out, label{k, v})
	}
	slices.SortStableFunc(clash, func(a, b label) int { return cmp.Compare(len(a.name), len(b.name)) })
	for _, p := range clash {
		p.name = "exported_" + p.name
		for slices.ContainsFunc(out, func(l label) bool { return l.name == p.name }) {
			p.name = "exported_" + p.name
		}
		out = append(out, p)
	}
	sortLabels(out)
	return out
}

func sortLabels(l []label) {
	slices.SortFunc(l, func(a, b label) int { return cmp.Compare(a.name, b.name) })
}

func compareLabels(a, b []label) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Or(cmp.Compare(a[i].name, b[i].name), cmp.Compare(a[i].value, b[i].value)); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// WriteTo writes the merged families to w in the Prometheus text format
// (version 0.0.4), sorted by name, each family's series sorted by their
// labels, and a histogram's le (a summary's quantile) last of a sample's
// labels. A family without a sample is left out, and one without HELP text
// has no HELP line.
func (m *Merge) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(m.fams)) {
		f := m.fams[name]
		if len(f.series) == 0 {
			continue
		}
		slices.SortStableFunc(f.series, func(a, b *series) int { return compareLabels(a.labels, b.labels) })
		if f.help != "" {
			fmt.Fprintf(&b, "# HELP %s %s\n", f.name, prom.EscapeHelp(f.help))
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n", f.name, f.kind)
		for _, s := range f.series {
			for _, smp := range s.samples {
				writeSample(&b, f.name, s.labels, smp)
			}
		}
	}
	return b.WriteTo(w)
}

func writeSample(b *bytes.Buffer, name string, labels []label, s sample) {
	b.WriteString(name)
	b.WriteString(s.suffix)
	all := labels
	if s.bound.name != "" {
		all = append(labels[:len(labels):len(labels)], s.bound)
	}
	for i, l := range all {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(l.name)
		b.WriteString(`="`)
		b.WriteString(prom.EscapeLabelValue(l.value))
		b.WriteByte('"')
	}
	if len(all) > 0 {
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(prom.FormatValue(s.value))
	if s.timestamp != "" {
		b.WriteByte(' ')
		b.WriteString(s.timestamp)
	}
	b.WriteByte('\n')
}
