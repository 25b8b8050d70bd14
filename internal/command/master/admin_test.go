package master

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/yolkgo/yolk/internal/masterapi"
)

func TestAdminPageAndEvents(t *testing.T) {
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	m := newModel(fleetOf(1))
	view := func() statusReply { return m.view(processStatus{Role: "master"}, statusReply{Mode: "fork"}) }
	a, err := newAdmin(ctx, config{AdminAddr: "127.0.0.1:0", adminSet: true}, view, m.subscribe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + a.Addr()

	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) ||
			resp.Header.Get("Content-Security-Policy") != "default-src 'self'" {
			t.Errorf("GET %s = %s, %q, CSP %q; want 200, %s, default-src 'self'", path, resp.Status,
				resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"), ctype)
		}
	}
	// Nothing but GET.
	for _, path := range []string{"/", "/api/status", "/api/events"} {
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %s, want 405", path, resp.Status)
		}
	}

	// The stream: a view at once, another after a change of the model, and
	// its end when the master stops.
	resp, err := http.Get(base + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET /api/events Content-Type %q, want text/event-stream", ct)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended, waiting for %q", want)
				}
				if strings.Contains(l, want) {
					return l
				}
			case <-deadline:
				t.Fatalf("no line with %q on the stream within 5s", want)
			}
		}
	}
	next(`"mode":"fork"`)
	m.report("w0", "worker", masterapi.State{Version: "v7", By: "push", UpdatedAt: time.Now()}, time.Now())
	next(`"version":"v7"`)
	stop()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the event stream outlives the master's context")
		}
	}
}

func TestAdminOff(t *testing.T) {
	a, err := newAdmin(t.Context(), config{AdminAddr: "off"}, nil, nil, slog.New(slog.DiscardHandler))
	if a != nil || err != nil || a.Addr() != "" {
		t.Errorf("newAdmin(off) = %v, %v; want nil, nil", a, err)
	}
	a.Close() // a nil admin closes quietly
}
