package metrics

import (
	"bytes"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/yolkgo/yolk/prom"
)

type source struct {
	text   string
	labels map[string]string
}

func TestMerge(t *testing.T) {
	worker := func(slot string) map[string]string { return map[string]string{"role": "worker", "slot": slot} }
	for _, tc := range []struct {
		name    string
		sources []source
		want    string // the whole exposition
		wantErr string // in AddText's error for the last source
	}{{
		name: "families from several processes appear once, samples sorted",
		sources: []source{
			{"# HELP up_total Ups.\n# TYPE up_total counter\nup_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n", worker("1")},
			{"# HELP up_total Ups, said otherwise.\n# TYPE up_total counter\nup_total 4\n", worker("0")},
			{"# HELP g A gauge.\n# TYPE g gauge\ng -2\n", map[string]string{"role": "agent"}},
		},
		want: "# HELP g A gauge.\n# TYPE g gauge\n" +
			"g{role=\"agent\"} -2\n" +
			"g{role=\"worker\",slot=\"1\"} 1.5\n" +
			"# HELP up_total Ups.\n# TYPE up_total counter\n" +
			"up_total{role=\"worker\",slot=\"0\"} 4\n" +
			"up_total{role=\"worker\",slot=\"1\"} 3\n",
	}, {
		name: "histogram buckets keep le, and get the process labels",
		sources: []source{{
			"# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n" +
				"d_seconds_bucket{class=\"2xx\",le=\"0.1\"} 1\nd_seconds_bucket{class=\"2xx\",le=\"+Inf\"} 2\n" +
				"d_seconds_sum{class=\"2xx\"} 0.35\nd_seconds_count{class=\"2xx\"} 2\n",
			worker("0"),
		}},
		want: "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n" +
			"d_seconds_bucket{class=\"2xx\",role=\"worker\",slot=\"0\",le=\"0.1\"} 1\n" +
			"d_seconds_bucket{class=\"2xx\",role=\"worker\",slot=\"0\",le=\"+Inf\"} 2\n" +
			"d_seconds_sum{class=\"2xx\",role=\"worker\",slot=\"0\"} 0.35\n" +
			"d_seconds_count{class=\"2xx\",role=\"worker\",slot=\"0\"} 2\n",
	}, {
		name: "escapes in label values and HELP survive",
		sources: []source{{
			"# HELP e_total Back\\\\slash and\\nnewline.\n# TYPE e_total counter\n" +
				"e_total{path=\"a\\\"b\\\\c\\nd\"} 1\n",
			worker("0"),
		}},
		want: "# HELP e_total Back\\\\slash and\\nnewline.\n# TYPE e_total counter\n" +
			"e_total{path=\"a\\\"b\\\\c\\nd\",role=\"worker\",slot=\"0\"} 1\n",
	}, {
		name: "a label of the process's own is renamed exported_",
		sources: []source{{
			"# HELP x X.\n# TYPE x gauge\nx{role=\"cache\"} 1\n",
			map[string]string{"role": "agent"},
		}},
		want: "# HELP x X.\n# TYPE x gauge\nx{exported_role=\"cache\",role=\"agent\"} 1\n",
	}, {
		name: "exported_ is prefixed again until the name is free",
		sources: []source{{
			"# HELP x X.\n# TYPE x gauge\n" +
				"x{exported_exported_slot=\"c\",exported_role=\"a\",exported_slot=\"b\",role=\"r\",slot=\"s\"} 1\n",
			worker("0"),
		}},
		want: "# HELP x X.\n# TYPE x gauge\n" +
			"x{exported_exported_exported_slot=\"s\",exported_exported_role=\"r\",exported_exported_slot=\"c\"," +
			"exported_role=\"a\",exported_slot=\"b\",role=\"worker\",slot=\"0\"} 1\n",
	}, {
		name: "a family of another type is left out, the rest added",
		sources: []source{
			{"# HELP x X.\n# TYPE x gauge\nx 1\n", worker("0")},
			{"# HELP x X.\n# TYPE x counter\nx 2\n# HELP y Y.\n# TYPE y gauge\ny 3\n", worker("1")},
		},
		want:    "# HELP x X.\n# TYPE x gauge\nx{role=\"worker\",slot=\"0\"} 1\n# HELP y Y.\n# TYPE y gauge\ny{role=\"worker\",slot=\"1\"} 3\n",
		wantErr: "left out: x (counter, merged as gauge)",
	}, {
		name: "a family named as a sample of another family merged is left out",
		sources: []source{
			{"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n", worker("0")},
			{"# HELP h_count C.\n# TYPE h_count gauge\nh_count 3\n# HELP s_sum S.\n# TYPE s_sum counter\ns_sum 4\n", worker("1")},
			{"# HELP s S.\n# TYPE s summary\ns_sum 5\ns_count 6\n# HELP y Y.\n# TYPE y gauge\ny 7\n", worker("2")},
		},
		want: "# HELP h H.\n# TYPE h histogram\n" +
			"h_bucket{role=\"worker\",slot=\"0\",le=\"+Inf\"} 1\nh_sum{role=\"worker\",slot=\"0\"} 2\nh_count{role=\"worker\",slot=\"0\"} 1\n" +
			"# HELP s_sum S.\n# TYPE s_sum counter\ns_sum{role=\"worker\",slot=\"1\"} 4\n" +
			"# HELP y Y.\n# TYPE y gauge\ny{role=\"worker\",slot=\"2\"} 7\n",
		wantErr: "left out: s (summary, clashes with the counter s_sum)",
	}, {
		name: "text that does not parse adds nothing",
		sources: []source{
			{"# HELP x X.\n# TYPE x gauge\nx 1\n", worker("0")},
			{"# TYPE y gauge\ny 1\ny{ 2\n", worker("1")},
		},
		want:    "# HELP x X.\n# TYPE x gauge\nx{role=\"worker\",slot=\"0\"} 1\n",
		wantErr: "parse",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var m Merge
			var err error
			for _, s := range tc.sources {
				err = m.AddText([]byte(s.text), s.labels)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("AddText: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("AddText: error %v, want one with %q", err, tc.wantErr)
			}
			var b bytes.Buffer
			if _, err := m.WriteTo(&b); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if got := b.String(); got != tc.want {
				t.Errorf("WriteTo wrote\n%s\nwant\n%s", got, tc.want)
			}
			// What it writes parses again.
			if _, err := parse(b.String()); err != nil {
				t.Errorf("the merged text does not parse: %v", err)
			}
		})
	}
}

// Two processes' registries merge with their own labels, each family once,
// and the sources are not changed.
func TestMergeRegistries(t *testing.T) {
	reg := NewRegistry("v1.2.3")
	var before, after bytes.Buffer
	reg.WriteTo(&before)
	var m Merge
	for _, labels := range []map[string]string{{"role": "master"}, {"role": "worker", "slot": "0"}} {
		var text bytes.Buffer
		reg.WriteTo(&text)
		if err := m.AddText(text.Bytes(), labels); err != nil {
			t.Fatalf("AddText(%v): %v", labels, err)
		}
	}
	var out bytes.Buffer
	m.WriteTo(&out)
	for _, want := range []string{
		`yolk_build_info{goversion="go`,
		`",role="master",version="v1.2.3"} 1`,
		`",role="worker",slot="0",version="v1.2.3"} 1`,
		`go_goroutines{role="master"} `,
		`go_gc_duration_seconds{role="worker",slot="0",quantile="0.5"} `,
		`go_gc_duration_seconds_count{role="master"} `,
		`process_resident_memory_bytes{role="worker",slot="0"} `,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("merged exposition lacks %s", want)
		}
	}
	if strings.Count(out.String(), "# TYPE go_goroutines ") != 1 {
		t.Errorf("go_goroutines announced %d times, want once", strings.Count(out.String(), "# TYPE go_goroutines "))
	}
	reg.WriteTo(&after)
	if strings.Contains(after.String(), "role=") {
		t.Errorf("merging changed the registry:\n%s", after.String())
	}
}

func TestInstrument(t *testing.T) {
	reg := prom.NewRegistry()
	h, _ := Instrument(reg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/flush":
			w.(http.Flusher).Flush()
		case "/quiet":
		default:
			w.Write([]byte("ok"))
		}
	}))
	for _, path := range []string{"/", "/", "/missing", "/flush", "/quiet"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	var text bytes.Buffer
	reg.WriteTo(&text)
	fams, err := parse(text.String())
	if err != nil || len(fams) != 1 || fams[0].name != "yolk_http_request_duration_seconds" || fams[0].kind != "histogram" {
		t.Fatalf("parse(the registry's text) = %v, %v; want the histogram yolk_http_request_duration_seconds\n%s", fams, err, text.String())
	}
	got := map[string]float64{}
	for _, s := range fams[0].series {
		if len(s.labels) != 1 || s.labels[0].name != "class" {
			t.Errorf("yolk_http_request_duration_seconds has the labels %v, want class", s.labels)
			continue
		}
		for _, smp := range s.samples {
			if smp.suffix == "_count" {
				got[s.labels[0].value] = smp.value
			}
		}
	}
	want := map[string]float64{"2xx": 4, "3xx": 0, "4xx": 1, "5xx": 0} // and no 1xx series, which nothing could fill
	if !maps.Equal(got, want) {
		t.Errorf("yolk_http_request_duration_seconds counts by class = %v, want %v", got, want)
	}
}

// An unstamped build is "dev", never "(devel)"; a stamped one is its stamp.
func TestBuildVersion(t *testing.T) {
	if got := buildVersion("v1.2.3"); got != "v1.2.3" {
		t.Errorf(`buildVersion("v1.2.3") = %q, want v1.2.3`, got)
	}
	for _, stamped := range []string{"", "dev"} {
		if got := buildVersion(stamped); got == "(devel)" || got == "" {
			t.Errorf("buildVersion(%q) = %q, want dev or the module's version", stamped, got)
		}
	}
}
