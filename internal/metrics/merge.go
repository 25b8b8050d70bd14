package metrics

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// Merge joins the metrics of several processes into one exposition, as
// prom-client's AggregatorRegistry does for a Node cluster, but without summing:
// every sample keeps its own series, told apart by the labels of the process
// it came from (role, slot). Each family appears once, with the HELP and TYPE
// of the first process that had it. The zero Merge is empty and ready; it is
// not safe for concurrent use.
type Merge struct {
	fams map[string]*dto.MetricFamily
}

// AddText parses text, a process's exposition in the Prometheus text format,
// and adds its samples with labels. It adds nothing when the text does not
// parse. A family whose type differs from the one already merged under its
// name is left out, and named in the error; the others are added.
func (m *Merge) AddText(text []byte, labels map[string]string) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return fmt.Errorf("metrics: parse: %w", err)
	}
	return m.Add(slices.Collect(maps.Values(fams)), labels)
}

// Add adds families, a process's own (as a registry's Gather returns them),
// with labels; it copies them, and changes nothing of fams. A label that a
// sample already has under one of these names is renamed exported_<name>, as
// Prometheus does when a target's labels clash with its own. See AddText for
// a family whose type differs.
func (m *Merge) Add(fams []*dto.MetricFamily, labels map[string]string) error {
	if m.fams == nil {
		m.fams = make(map[string]*dto.MetricFamily)
	}
	var clash []string
	for _, f := range fams {
		have, ok := m.fams[f.GetName()]
		if ok && have.GetType() != f.GetType() {
			clash = append(clash, fmt.Sprintf("%s (%s, merged as %s)", f.GetName(), f.GetType(), have.GetType()))
			continue
		}
		if !ok {
			have = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit}
			m.fams[f.GetName()] = have
		}
		for _, s := range f.Metric {
			s = proto.CloneOf(s)
			s.Label = relabel(s.Label, labels)
			have.Metric = append(have.Metric, s)
		}
	}
	if len(clash) > 0 {
		slices.Sort(clash)
		return fmt.Errorf("metrics: types differ: %s", strings.Join(clash, ", "))
	}
	return nil
}

// relabel returns pairs with labels added, sorted by name.
func relabel(pairs []*dto.LabelPair, labels map[string]string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(pairs)+len(labels))
	for _, p := range pairs {
		if _, clash := labels[p.GetName()]; clash {
			p = &dto.LabelPair{Name: proto.String("exported_" + p.GetName()), Value: p.Value}
		}
		out = append(out, p)
	}
	for k, v := range labels {
		out = append(out, &dto.LabelPair{Name: proto.String(k), Value: proto.String(v)})
	}
	slices.SortFunc(out, func(a, b *dto.LabelPair) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

// WriteTo writes the merged families to w in the Prometheus text format
// (version 0.0.4), sorted by name, each family's samples sorted by their
// labels.
func (m *Merge) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, name := range slices.Sorted(maps.Keys(m.fams)) {
		f := m.fams[name]
		slices.SortStableFunc(f.Metric, func(a, b *dto.Metric) int { return compareLabels(a.Label, b.Label) })
		k, err := expfmt.MetricFamilyToText(w, f)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func compareLabels(a, b []*dto.LabelPair) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Or(cmp.Compare(a[i].GetName(), b[i].GetName()), cmp.Compare(a[i].GetValue(), b[i].GetValue())); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}
