package schedule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string // substrings of the error; none: valid
	}{
		{"interval", Spec{Name: "pull_refresh", Interval: 10 * time.Second, Type: Worker}, nil},
		{"cron", Spec{Name: "nightly", Cron: "0 0 3 * * *", Type: All}, nil},
		{"cron descriptor", Spec{Name: "hourly", Cron: "@hourly", Type: Worker}, nil},
		{"cron every", Spec{Name: "every", Cron: "@every 90s", Type: Worker}, nil},
		{"cron time zone", Spec{Name: "tz", Cron: "CRON_TZ=UTC 0 30 * * * *", Type: Worker}, nil},
		{"disabled is still validated", Spec{Name: "off", Interval: time.Second, Type: Worker, Disable: true}, nil},
		{"name of 64", Spec{Name: strings.Repeat("a", 64), Interval: time.Second, Type: Worker}, nil},
		{"name chars", Spec{Name: "Az09_-", Interval: time.Second, Type: Worker}, nil},
		{"shortest interval", Spec{Name: "t", Interval: MinInterval, Type: Worker}, nil},
		{"longest interval", Spec{Name: "t", Interval: MaxInterval, Type: Worker}, nil},
		{"longest every", Spec{Name: "t", Cron: "@every 8760h", Type: Worker}, nil},
		{"timeout", Spec{Name: "t", Interval: time.Second, Type: Worker, Timeout: time.Hour}, nil},

		{"both set", Spec{Name: "pull_refresh", Interval: time.Second, Cron: "* * * * * *", Type: Worker},
			[]string{`schedule "pull_refresh": interval and cron are both set`}},
		{"neither set", Spec{Name: "x", Type: Worker}, []string{`schedule "x": neither interval nor cron is set`}},
		{"negative interval", Spec{Name: "x", Interval: -time.Second, Type: Worker}, []string{`schedule "x": interval -1s is negative`}},
		{"interval without unit", Spec{Name: "x", Interval: 10, Type: Worker}, []string{`schedule "x": interval 10ns is shorter than 1ms`}},
		{"interval too long", Spec{Name: "x", Interval: MaxInterval + 1, Type: Worker}, []string{`schedule "x": interval 8760h0m0.000000001s is longer than 8760h0m0s`}},
		{"every too long", Spec{Name: "x", Cron: "@every 8761h", Type: Worker}, []string{`schedule "x": cron "@every 8761h": delay 8761h0m0s is longer than 8760h0m0s`}},
		{"negative timeout", Spec{Name: "x", Interval: time.Second, Timeout: -1, Type: Worker}, []string{`schedule "x": timeout -1ns is negative`}},
		{"bad cron", Spec{Name: "x", Cron: "every day", Type: Worker}, []string{`schedule "x": cron "every day": `}},
		{"cron without seconds", Spec{Name: "x", Cron: "0 3 * * *", Type: Worker}, []string{`schedule "x": cron "0 3 * * *": expected exactly 6 fields`}},
		{"cron out of range", Spec{Name: "x", Cron: "0 0 25 * * *", Type: Worker}, []string{`schedule "x": cron "0 0 25 * * *": `}},
		{"cron never fires", Spec{Name: "x", Cron: "0 0 0 31 4 *", Type: Worker}, []string{`schedule "x": cron "0 0 0 31 4 *" never fires`}},
		{"cron tz without spec", Spec{Name: "x", Cron: "CRON_TZ=UTC", Type: Worker}, []string{`schedule "x": cron "CRON_TZ=UTC": `}},
		{"cron bad tz", Spec{Name: "x", Cron: "CRON_TZ=Nowhere/Land * * * * * *", Type: Worker}, []string{`schedule "x": cron `}},
		{"type unset", Spec{Name: "x", Interval: time.Second}, []string{`schedule "x": type is not set`}},
		{"type unknown", Spec{Name: "x", Interval: time.Second, Type: 7}, []string{`schedule "x": unknown type 7`}},
		{"empty name", Spec{Interval: time.Second, Type: Worker}, []string{`schedule "": name must be`}},
		{"name too long", Spec{Name: strings.Repeat("a", 65), Interval: time.Second, Type: Worker}, []string{"name must be 1 to 64"}},
		{"name with dot", Spec{Name: "a.b", Interval: time.Second, Type: Worker}, []string{`schedule "a.b": name must be`}},
		{"name with space", Spec{Name: "a b", Interval: time.Second, Type: Worker}, []string{`schedule "a b": name must be`}},
		{"name with wildcard", Spec{Name: "*", Interval: time.Second, Type: Worker}, []string{`schedule "*": name must be`}},
		{"every problem", Spec{Name: "a>", Interval: -1, Timeout: -1, Type: 9}, []string{
			"name must be", "interval -1ns is negative", "timeout -1ns is negative", "unknown type 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.spec, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error containing %q", tt.spec, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate(%+v) = %q, want it to contain %q", tt.spec, err, w)
				}
			}
		})
	}
}

func TestRunTimeout(t *testing.T) {
	tests := []struct {
		spec Spec
		want time.Duration
	}{
		{Spec{Interval: 10 * time.Second}, 10 * time.Second},
		{Spec{Interval: time.Hour}, 10 * time.Minute},
		{Spec{Interval: time.Hour, Timeout: 2 * time.Hour}, 2 * time.Hour},
		{Spec{Interval: 10 * time.Second, Timeout: time.Second}, time.Second},
		{Spec{Cron: "0 0 3 * * *"}, time.Minute},
		{Spec{Cron: "0 0 3 * * *", Timeout: 5 * time.Minute}, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := tt.spec.RunTimeout(); got != tt.want {
			t.Errorf("%+v.RunTimeout() = %v, want %v", tt.spec, got, tt.want)
		}
	}
}

func TestTypeText(t *testing.T) {
	for _, typ := range []Type{Worker, All} {
		text, err := typ.MarshalText()
		if err != nil {
			t.Fatalf("%v.MarshalText() error = %v", typ, err)
		}
		if string(text) != typ.String() {
			t.Errorf("%v.MarshalText() = %q, want %q", typ, text, typ.String())
		}
		var got Type
		if err := got.UnmarshalText(text); err != nil || got != typ {
			t.Errorf("UnmarshalText(%q) = %v, %v, want %v", text, got, err, typ)
		}
	}
	if got := Worker.String(); got != "worker" {
		t.Errorf("Worker.String() = %q, want %q", got, "worker")
	}
	if got := All.String(); got != "all" {
		t.Errorf("All.String() = %q, want %q", got, "all")
	}
	if got := Type(0).String(); got != "Type(0)" {
		t.Errorf("Type(0).String() = %q, want %q", got, "Type(0)")
	}
	if _, err := Type(0).MarshalText(); err == nil {
		t.Errorf("Type(0).MarshalText() error = nil, want an error")
	}
	typ := All
	if err := typ.UnmarshalText([]byte("Worker")); err == nil || typ != All {
		t.Errorf("UnmarshalText(%q) = %v leaving %v, want an error leaving all", "Worker", err, typ)
	}
}

func TestRunJSON(t *testing.T) {
	run := Run{Name: "pull_refresh", Type: All, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Seq: 7}
	data, err := json.Marshal(run)
	if err != nil {
		t.Fatalf("json.Marshal(%+v) error = %v", run, err)
	}
	const want = `{"name":"pull_refresh","type":"all","at":"2026-01-02T03:04:05.000000006Z","seq":7}`
	if string(data) != want {
		t.Errorf("json.Marshal(%+v) = %s, want %s", run, data, want)
	}
	var got Run
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("json.Unmarshal(%s) error = %v", data, err)
	}
	if got != run {
		t.Errorf("json.Unmarshal(%s) = %+v, want %+v", data, got, run)
	}
	if err := json.Unmarshal([]byte(`{"name":"x","type":"some"}`), &got); err == nil {
		t.Errorf("json.Unmarshal with type %q: error = nil, want an error", "some")
	}
}
