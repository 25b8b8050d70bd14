package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A family is a metric family read from an exposition.
type family struct {
	name, help, kind string // kind: counter, gauge, histogram, summary or untyped
	series           []*series
}

// A series is the samples of one set of labels. A histogram's or a
// summary's has several (_bucket{le=...} or {quantile=...}, _sum, _count); a
// counter's or a gauge's, one.
type series struct {
	labels  []label // sorted by name, without le or quantile
	samples []sample
}

type label struct{ name, value string }

type sample struct {
	suffix    string // "", _bucket, _sum or _count
	bound     label  // le or quantile; name "" for none
	value     float64
	timestamp string // milliseconds, or ""
}

// parse reads an exposition in the Prometheus text format (version 0.0.4):
// # HELP and # TYPE lines, other comments, and samples
// name{label="value",...} value [timestamp]. A sample without a TYPE line
// before it is an untyped family of its own name. Like Prometheus, it
// refuses HELP text and label values that are not valid UTF-8, and a label
// named __name__.
func parse(text string) ([]*family, error) {
	var fams []*family
	byName := make(map[string]*family)
	get := func(name string) *family {
		f, ok := byName[name]
		if !ok {
			f = &family{name: name, kind: "untyped"}
			byName[name] = f
			fams = append(fams, f)
		}
		return f
	}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := parseLine(line, byName, get); err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	return fams, nil
}

func parseLine(line string, byName map[string]*family, get func(string) *family) error {
	if rest, ok := strings.CutPrefix(line, "#"); ok {
		keyword, rest := token(rest)
		name, rest := token(rest)
		if keyword != "HELP" && keyword != "TYPE" || name == "" {
			return nil // a comment
		}
		if !validName(name, true) {
			return fmt.Errorf("invalid metric name %q", name)
		}
		_, seen := byName[name]
		f := get(name)
		if keyword == "HELP" {
			help, err := unescape(rest, false)
			if err != nil {
				return fmt.Errorf("HELP %s: %w", name, err)
			}
			if !utf8.ValidString(help) {
				return fmt.Errorf("HELP %s: not valid UTF-8", name)
			}
			f.help = help
			return nil
		}
		kind, rest := token(rest)
		switch {
		case rest != "":
			return fmt.Errorf("TYPE %s: more than a type", name)
		case kind != "counter" && kind != "gauge" && kind != "histogram" && kind != "summary" && kind != "untyped":
			return fmt.Errorf("TYPE %s: unknown type %q", name, kind)
		case seen && (f.kind != "untyped" || len(f.series) > 0):
			return fmt.Errorf("TYPE %s after its samples or a second time", name)
		}
		f.kind = kind
		return nil
	}
	name, labels, s, err := parseSample(line)
	if err != nil {
		return err
	}
	f := familyOf(name, byName)
	if f == nil {
		f = get(name)
	}
	s.suffix = name[len(f.name):]
	var bound string
	switch {
	case f.kind == "histogram" && s.suffix == "_bucket":
		bound = "le"
	case f.kind == "summary" && s.suffix == "":
		bound = "quantile"
	}
	if bound != "" {
		i := -1
		for j, l := range labels {
			if l.name == bound {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("%s without %s", name, bound)
		}
		s.bound = labels[i]
		labels = append(labels[:i], labels[i+1:]...)
	}
	sortLabels(labels)
	f.add(labels, s)
	return nil
}

// familyOf returns the family a sample named name belongs to, known by a
// TYPE line: a histogram's _bucket, _sum and _count, a summary's _sum and
// _count, or the family of its name. It returns nil for none.
func familyOf(name string, byName map[string]*family) *family {
	if f, ok := byName[name]; ok {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f := byName[base]; ok && f != nil && (f.kind == "histogram" || f.kind == "summary" && suffix != "_bucket") {
			return f
		}
	}
	return nil
}

// add adds s to the series of labels: a histogram's or a summary's own if
// it has one already, else a new one.
func (f *family) add(labels []label, s sample) {
	if f.kind == "histogram" || f.kind == "summary" {
		for i := len(f.series) - 1; i >= 0; i-- {
			if slices.Equal(f.series[i].labels, labels) {
				f.series[i].samples = append(f.series[i].samples, s)
				return
			}
		}
	}
	f.series = append(f.series, &series{labels: labels, samples: []sample{s}})
}

// parseSample reads name{labels} value [timestamp].
func parseSample(line string) (string, []label, sample, error) {
	end := strings.IndexAny(line, "{ \t")
	if end < 0 {
		return "", nil, sample{}, errors.New("a sample without a value")
	}
	name, rest := line[:end], line[end:]
	if !validName(name, true) {
		return "", nil, sample{}, fmt.Errorf("invalid metric name %q", name)
	}
	var labels []label
	if strings.HasPrefix(rest, "{") {
		var err error
		labels, rest, err = parseLabels(rest[1:])
		if err != nil {
			return "", nil, sample{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return "", nil, sample{}, fmt.Errorf("%s: want a value and maybe a timestamp, got %q", name, rest)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, sample{}, fmt.Errorf("%s: value: %w", name, err)
	}
	s := sample{value: v}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return "", nil, sample{}, fmt.Errorf("%s: timestamp: %w", name, err)
		}
		s.timestamp = fields[1]
	}
	return name, labels, s, nil
}

// parseLabels reads label="value",... up to the closing brace, and returns
// what follows it.
func parseLabels(s string) ([]label, string, error) {
	var labels []label
	for {
		s = strings.TrimLeft(s, " \t")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			return labels, rest, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, "", errors.New("a label without a value")
		}
		name := strings.TrimSpace(s[:eq])
		if !validName(name, false) || name == "__name__" {
			return nil, "", fmt.Errorf("invalid label name %q", name)
		}
		for _, l := range labels {
			if l.name == name {
				return nil, "", fmt.Errorf("label %s twice", name)
			}
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return nil, "", fmt.Errorf("label %s: value not quoted", name)
		}
		end := closingQuote(s[1:])
		if end < 0 {
			return nil, "", fmt.Errorf("label %s: value not closed", name)
		}
		value, err := unescape(s[1:1+end], true)
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", name, err)
		}
		if !utf8.ValidString(value) {
			return nil, "", fmt.Errorf("label %s: value not valid UTF-8", name)
		}
		labels = append(labels, label{name, value})
		s = strings.TrimLeft(s[2+end:], " \t")
		if rest, ok := strings.CutPrefix(s, ","); ok {
			s = rest
		} else if !strings.HasPrefix(s, "}") {
			return nil, "", fmt.Errorf("label %s: want , or } after the value", name)
		}
	}
}

// closingQuote returns the index of the first double quote in s that no
// backslash escapes, or -1.
func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unescape undoes the escapes of a HELP text (\\ and \n) or, with quote, of
// a label value (\" as well). Any other backslash is an error, as it is to
// Prometheus.
func unescape(s string, quote bool) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch {
		case i < len(s) && s[i] == '\\':
			b.WriteByte('\\')
		case i < len(s) && s[i] == 'n':
			b.WriteByte('\n')
		case i < len(s) && s[i] == '"' && quote:
			b.WriteByte('"')
		default:
			return "", errors.New("invalid escape sequence")
		}
	}
	return b.String(), nil
}

// token returns the first word of s, words being separated by spaces and
// tabs, and the rest after the separators that follow it.
func token(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t")
	end := strings.IndexAny(s, " \t")
	if end < 0 {
		return s, ""
	}
	return s[:end], strings.TrimLeft(s[end:], " \t")
}

// validName reports whether s is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
// or, without metric, label name (no colon).
func validName(s string, metric bool) bool {
	for i, c := range []byte(s) {
		if !(c == '_' || metric && c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
